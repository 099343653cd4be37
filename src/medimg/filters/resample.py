"""Resampling onto a new spacing or onto another image's grid (SimpleITK).

Label maps (integer or boolean images) are resampled with nearest neighbour, always: an
interpolated label value would be a label that does not exist. Asking for another interpolator
on a label map is an error; convert the image to float first if it really holds intensities
(an int16 CT, for instance).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.filters._common import check_scalar

__all__ = ["resample", "resample_to", "Interpolator"]

_filters = registry("filters")

Interpolator = Literal["linear", "bspline", "nearest"]


def _interpolator(image: Image, interpolator: str | None) -> tuple[str, int]:
    import SimpleITK as sitk

    table = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline, "nearest": sitk.sitkNearestNeighbor}
    if interpolator is None:
        interpolator = "nearest" if image.is_label else "linear"
    if interpolator not in table:
        from medimg.errors import UnknownNameError

        raise UnknownNameError("interpolator", str(interpolator), table)
    if image.is_label and interpolator != "nearest":
        msg = (
            f"resample: image is a label map ({image.dtype}), which is resampled with 'nearest' only, "
            f"not {interpolator!r}; if it holds intensities, convert it to float first "
            "(image.with_array(image.array.astype('float32')))"
        )
        raise ParameterError(msg)
    return interpolator, table[interpolator]


def _grid(affine: np.ndarray, size: Sequence[int]) -> object:
    """An empty SimpleITK image with the grid of ``affine`` and ``size`` (x, y[, z])."""
    import SimpleITK as sitk

    nd = len(size)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction = affine[:3, :3] / spacing[np.newaxis, :]
    ref = sitk.Image([int(v) for v in size], sitk.sitkUInt8)
    ref.SetSpacing(tuple(float(v) for v in spacing[:nd]))
    ref.SetOrigin(tuple(float(v) for v in affine[:nd, 3]))
    ref.SetDirection(tuple(float(v) for v in direction[:nd, :nd].ravel()))
    return ref


def _run(image: Image, affine: np.ndarray, size: Sequence[int], interpolator: str | None,
         default_value: float, step: dict) -> Image:
    import SimpleITK as sitk

    name, interp = _interpolator(image, interpolator)
    if not np.isfinite(default_value):
        raise ParameterError(f"resample: default_value must be finite, got {default_value!r}")
    src = image.to_sitk()
    if not image.is_label and src.GetPixelID() != sitk.sitkFloat32:
        src = sitk.Cast(src, sitk.sitkFloat32)
    out = sitk.Resample(src, _grid(affine, size), sitk.Transform(), interp, float(default_value),
                        src.GetPixelID())
    array = sitk.GetArrayFromImage(out)
    if image.dtype == np.bool_:
        array = array.astype(bool)
    elif image.is_label:
        array = array.astype(image.dtype, copy=False)
    meta = dict(image.meta)
    meta["history"] = [*image.meta.get("history", []), {**step, "interpolator": name}]
    return Image(array, affine, meta=meta, has_patient_geometry=image.has_patient_geometry)


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
        ``"linear"``, ``"bspline"`` (cubic) or ``"nearest"``; ``None``: nearest for label maps
        (integer/boolean dtype), linear otherwise. Label maps accept only ``"nearest"``.
    default_value
        Value of output voxels that fall outside the input.

    Returns
    -------
    Image
        The resampled image: size ``round(size * spacing / spacing_mm)`` per axis (at least 1),
        same origin and direction; float32 for intensities, the input dtype for label maps.
    """
    check_scalar(image)
    nd = image.spatial_ndim
    new = np.atleast_1d(np.asarray(spacing_mm, dtype=float))
    if new.size == 1:
        new = np.repeat(new, nd)
    if new.size != nd or not np.all(np.isfinite(new)) or np.any(new <= 0):
        raise ParameterError(f"resample: spacing_mm must be one or {nd} positive values in mm (x, y[, z]), got {spacing_mm!r}")
    old = np.asarray(image.spacing[:nd])
    size = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(image.size, old, new, strict=True))
    affine = np.array(image.affine)
    affine[:3, :nd] = image.direction[:, :nd] * new[np.newaxis, :]
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
        ``"linear"``, ``"bspline"`` or ``"nearest"``; ``None``: nearest for label maps, linear
        otherwise. Label maps accept only ``"nearest"``.
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
