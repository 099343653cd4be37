"""Helpers shared by the filters: input checks, mm -> voxel conversion, outputs with history."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from medimg.core.image import Image
from medimg.errors import ParameterError

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "check_scalar",
    "float_array",
    "filter_output",
    "mm_to_voxels",
    "radius_voxels",
    "region",
    "to_sitk_float",
    "positive",
    "spacing_zyx",
    "xyz",
    "min_spacing",
    "search_space",
]


def check_scalar(image: Any, name: str = "image") -> Image:
    """Raise :class:`ParameterError` unless ``image`` is a scalar :class:`Image`; return it."""
    if not isinstance(image, Image):
        msg = f"{name} must be a medimg.Image, got {type(image).__name__}"
        raise ParameterError(msg)
    if image.channel_axis is not None:
        msg = (
            f"{name} must be a scalar image, got {image.n_channels} channels per voxel; "
            "select one channel first"
        )
        raise ParameterError(msg)
    return image


def float_array(image: Image, dtype: type = np.float32) -> np.ndarray:
    """The voxels as a new or shared floating-point array (never written to by callers)."""
    array = image.array
    if array.dtype == dtype:
        return array
    return array.astype(dtype)


def positive(value: float, name: str, unit: str, *, allow_zero: bool = False) -> float:
    """Check that ``value`` is finite and positive (or >= 0); return it as float."""
    value = float(value)
    ok = np.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ParameterError(f"{name} must be a finite number {bound} ({unit}), got {value!r}")
    return value


def spacing_zyx(image: Image) -> np.ndarray:
    """Voxel size in mm in array order: (z, y, x) for 3-D, (y, x) for 2-D."""
    return np.asarray(image.spacing[: image.spatial_ndim][::-1], dtype=float)


def mm_to_voxels(image: Image, value_mm: float | Sequence[float], name: str) -> np.ndarray:
    """A length in mm (one value, or one per axis in (x, y, z) order) as voxels per array axis.

    Returns a float array in array order ((z, y, x) or (y, x)).
    """
    nd = image.spatial_ndim
    vals = np.atleast_1d(np.asarray(value_mm, dtype=float))
    if vals.size == 1:
        vals = np.repeat(vals, nd)
    if vals.size != nd or not np.all(np.isfinite(vals)) or np.any(vals < 0):
        msg = (
            f"{name} must be one length >= 0 in mm or {nd} of them in (x, y{', z' if nd == 3 else ''}) "
            f"order, got {value_mm!r}"
        )
        raise ParameterError(msg)
    return vals[::-1] / spacing_zyx(image)


def radius_voxels(image: Image, radius_mm: float | Sequence[float], name: str, *,
                  require_nonzero: bool = True) -> np.ndarray:
    """A radius in mm rounded to whole voxels per array axis (int array, array order)."""
    radius = np.rint(mm_to_voxels(image, radius_mm, name)).astype(int)
    if require_nonzero and not np.any(radius > 0):
        sp = ", ".join(f"{s:.3g}" for s in image.spacing[: image.spatial_ndim])
        msg = (
            f"{name}={radius_mm!r} mm is less than half a voxel along every axis (spacing {sp} mm); "
            "use a larger radius"
        )
        raise ParameterError(msg)
    return radius


def region(image: Image, mask: Image | None, name: str = "mask") -> np.ndarray | None:
    """Boolean ``mask != 0`` after checking that ``mask`` is a scalar image on ``image``'s grid."""
    if mask is None:
        return None
    check_scalar(mask, name)
    image.check_same_grid(mask, names=("image", name))
    roi = np.asarray(mask.array) != 0
    if not roi.any():
        raise ParameterError(f"{name} is empty (no non-zero voxel)")
    return roi


def filter_output(image: Image, array: np.ndarray, step: dict[str, Any],
                  **meta_updates: Any) -> Image:
    """A new Image on ``image``'s grid with ``array``; meta copied, ``meta['history']`` + ``step``."""
    meta = dict(image.meta)
    meta["history"] = [*image.meta.get("history", []), step]
    meta.update(meta_updates)
    return image.with_array(array, meta=meta)


def to_sitk_float(image: Image, array: np.ndarray | None = None) -> SimpleITK.Image:
    """``image`` (or ``array`` on its grid) as a float32 SimpleITK image with its geometry."""
    import SimpleITK as sitk

    values = float_array(image) if array is None else np.asarray(array, dtype=np.float32)
    out = sitk.GetImageFromArray(values)
    nd = image.spatial_ndim
    out.SetSpacing(image.spacing[:nd])
    out.SetOrigin(image.origin[:nd])
    out.SetDirection(tuple(image.direction[:nd, :nd].ravel()))
    return out


def xyz(values: np.ndarray) -> list:
    """Array-order (z, y, x) values as an (x, y, z) list, the order SimpleITK wants."""
    return [v.item() if hasattr(v, "item") else v for v in np.asarray(values)[::-1]]


def min_spacing(image: Image) -> float:
    """The finest voxel spacing of ``image`` in mm."""
    return float(min(image.spacing[: image.spatial_ndim]))


def search_space(builder: Callable[[Image, float], list[dict[str, Any]]]) -> Callable[[F], F]:
    """Decorator: attach a small parameter grid to a filter, for ``denoise-compare --search``.

    ``builder(image, sigma)`` returns the candidate keyword arguments for a noisy ``image`` whose
    estimated noise standard deviation is ``sigma`` (image units); the grid is declared next to
    the filter, so there is no separate table of method names.
    """

    def deco(func: F) -> F:
        func.search_space = builder  # type: ignore[attr-defined]
        return func

    return deco
