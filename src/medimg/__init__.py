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

_SUBMODULES = {
    "io", "datasets", "segmentation", "features", "ml", "evaluation", "report", "core",
    "errors", "filters", "quality", "registration", "pipeline", "catalog", "deid", "pacs", "demo",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"medimg.{name}")
    raise AttributeError(f"module 'medimg' has no attribute {name!r}")
