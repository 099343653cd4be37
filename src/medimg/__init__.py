"""medimg: medical imaging analytics, from raw DICOM to a validated, reproducible result.

``import medimg`` defines names only: submodules (``medimg.io``, ``medimg.datasets``, ...) and
``medimg.Image`` load when first used, and heavy dependencies (torch, MONAI) load inside the functions that need them.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from medimg.errors import MedimgError, UserInputError

if TYPE_CHECKING:
    from medimg.core.image import Image

__version__ = "0.1.0"
__all__ = ["Image", "MedimgError", "UserInputError", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())

def _submodules() -> list[str]:
    """The package's own submodules, as they are on disk (no second list to keep in step)."""
    import pkgutil

    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def __getattr__(name: str) -> Any:
    if name == "Image":  # loaded on first use: ``import medimg`` (and the CLI's start) skips NumPy
        from medimg.core.image import Image

        return Image
    if not name.startswith("_") and name in _submodules():
        return importlib.import_module(f"medimg.{name}")
    raise AttributeError(f"module 'medimg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_submodules()})
