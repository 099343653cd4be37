"""The registration transform type: :class:`medimg.core.transform.Transform`, re-exported.

It lives in :mod:`medimg.core` so that the one resampler (:mod:`medimg.core.resample`), the
filters and the readers use it without importing :mod:`medimg.registration` (dependencies point
down, DESIGN.md). Convention: a transform maps fixed-image points (LPS mm) to moving-image points.
"""

from medimg.core.transform import TRANSFORM_SUFFIXES, Transform

__all__ = ["Transform", "TRANSFORM_SUFFIXES"]
