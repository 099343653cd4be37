"""The core: the Image type, errors, the registry and provenance (no I/O)."""

from medimg.core.image import Image

__all__ = ["Image"]
