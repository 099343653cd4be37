"""The core: the Image type, errors, the registry and provenance (no I/O).

``medimg.core.Image`` loads on first use, so that light modules of the core (progress, files)
can be imported without NumPy (the CLI's start-up, see docs/development.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medimg.core.image import Image

__all__ = ["Image"]


def __getattr__(name: str) -> Any:
    if name == "Image":
        from medimg.core.image import Image

        return Image
    raise AttributeError(f"module 'medimg.core' has no attribute {name!r}")
