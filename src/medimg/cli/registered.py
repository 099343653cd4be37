"""Import the modules that fill the registries, so the CLI can list them."""

from __future__ import annotations

import importlib

from medimg.core.registry import REGISTRIES, Registry

__all__ = ["load_registries", "REGISTERING_MODULES"]

#: Modules whose import registers operations (a list of modules, not of names).
REGISTERING_MODULES = ("medimg.segmentation", "medimg.features", "medimg.ml", "medimg.filters", "medimg.quality")


def load_registries() -> dict[str, Registry]:
    """Every registry, after importing the modules that fill them."""
    for module in REGISTERING_MODULES:
        importlib.import_module(module)
    return dict(REGISTRIES)
