"""Resampling onto a new spacing or onto another image's grid.

Both filters are thin users of the package's one resampler, :mod:`medimg.core.resample`.
Label maps (integer or boolean images) are resampled with nearest neighbour (or label-wise
linear, ``"label_linear"``), never with an interpolator that could create a label value that
does not exist. Asking for another interpolator on a label map is an error; convert the image to
float first if it really holds intensities (an int16 CT, for instance).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.core.resample import check_interpolator, grid_for_spacing, resample_image
from medimg.errors import ParameterError
from medimg.filters._common import check_scalar

__all__ = ["resample", "resample_to", "Interpolator"]

_filters = registry("filters")

Interpolator = Literal["linear", "bspline", "nearest", "label_linear"]


def _run(image: Image, affine: np.ndarray, size: Sequence[int], interpolator: str | None,
         default_value: float, step: dict) -> Image:
    """The one resampler (:func:`medimg.core.resample.resample_image`), plus the history step."""
    name = check_interpolator(image, interpolator)
    out = resample_image(image, affine, size, interpolator=name, default_value=default_value)  # type: ignore[arg-type]
    out.meta["history"] = [*image.meta.get("history", []), {**step, "interpolator": name}]
    return out


@_filters.register("resample", tags=("geometry",))
def resample(
    image: Image,
    *,
    spacing_mm: float | list[float],
    interpolator: Interpolator | None = None,
    default_value: float = 0.0,
) -> Image:
    """Resample to a new voxel spacing, keeping the origin, direction and physical extent.

    Parameters
    ----------
    image
        Scalar image or label map, 2-D or 3-D.
    spacing_mm
        New spacing in mm: one value for every axis or one per axis in (x, y[, z]) order.
    interpolator
        ``"linear"``, ``"bspline"`` (cubic), ``"nearest"`` or ``"label_linear"``; ``None``:
        nearest for label maps (integer/boolean dtype), linear otherwise. Label maps accept only
        ``"nearest"`` and ``"label_linear"``.
    default_value
        Value of output voxels that fall outside the input.

    Returns
    -------
    Image
        The resampled image: size ``round(size * spacing / spacing_mm)`` per axis (at least 1),
        same origin and direction; float32 for intensities, the input dtype for label maps.
    """
    check_scalar(image)
    affine, size = grid_for_spacing(image, spacing_mm)
    new = np.linalg.norm(affine[:3, :image.spatial_ndim], axis=0)
    step = {"op": "filters.resample", "spacing_mm": new.tolist(), "size_xyz": list(size)}
    return _run(image, affine, size, interpolator, default_value, step)


@_filters.register("resample_to", tags=("geometry",))
def resample_to(
    image: Image,
    *,
    reference: Image,
    interpolator: Interpolator | None = None,
    default_value: float = 0.0,
) -> Image:
    """Resample ``image`` onto the voxel grid of ``reference`` (its size, spacing, origin, direction).

    Parameters
    ----------
    image
        Scalar image or label map, 2-D or 3-D.
    reference
        The image whose grid the result takes (same number of dimensions).
    interpolator
        ``"linear"``, ``"bspline"``, ``"nearest"`` or ``"label_linear"``; ``None``: nearest for
        label maps, linear otherwise. Label maps accept only ``"nearest"`` and ``"label_linear"``.
    default_value
        Value of output voxels that fall outside ``image``.

    Returns
    -------
    Image
        An image on ``reference``'s grid (``result.same_grid(reference)`` is true): float32 for
        intensities, the input dtype for label maps; ``image``'s meta.
    """
    check_scalar(image)
    if not isinstance(reference, Image):
        raise ParameterError(f"resample_to: reference must be a medimg.Image, got {type(reference).__name__}")
    if reference.spatial_ndim != image.spatial_ndim:
        raise ParameterError(f"resample_to: image is {image.spatial_ndim}-D but reference is {reference.spatial_ndim}-D")
    step = {"op": "filters.resample_to", "reference": reference.grid_summary()}
    return _run(image, reference.affine, reference.size, interpolator, default_value, step)
