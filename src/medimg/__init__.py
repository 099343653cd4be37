"""medimg: medical imaging analytics, from raw DICOM to a validated, reproducible result.

``import medimg`` defines names only: submodules (``medimg.io``, ``medimg.datasets``, ...) load
when first used, and heavy dependencies (torch, MONAI) load inside the functions that need them.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from medimg.core.image import Image
from medimg.errors import MedimgError, UserInputError

__version__ = "0.1.0"
__all__ = ["Image", "MedimgError", "UserInputError", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())

def _submodules() -> list[str]:
    """The package's own submodules, as they are on disk (no second list to keep in step)."""
    import pkgutil

    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def __getattr__(name: str) -> Any:
    if not name.startswith("_") and name in _submodules():
        return importlib.import_module(f"medimg.{name}")
    raise AttributeError(f"module 'medimg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_submodules()})
