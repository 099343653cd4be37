"""The one resampler of medimg: an image onto a voxel grid, through an optional transform.

Every resampling in the package goes through :func:`resample_image` (``filters.resample`` /
``filters.resample_to``, the U-Net's resampling to its training spacing and back, registration's
warps). It is SimpleITK's ``Resample``: for each output voxel centre ``x`` (LPS mm) it reads the
input at ``T(x)``, where ``T`` is a :class:`~medimg.core.transform.Transform` mapping output
(fixed) points to input (moving) points, as ITK does; ``T = None`` is plain resampling.

Interpolators (:data:`INTERPOLATORS`):

- ``"nearest"``: the nearest voxel (the default for label maps);
- ``"linear"``: trilinear (the default for intensities);
- ``"bspline"`` (alias ``"cubic"``): cubic B-spline (may overshoot at edges);
- ``"label_linear"``: label-wise linear (ITK ``LabelImageGenericInterpolateImageFunction``):
  each label's indicator is interpolated linearly and the label with the highest weight wins, so
  boundaries are smoother than nearest and no label value that is not in the input appears.

Label maps (integer or boolean dtype) accept ``"nearest"`` and ``"label_linear"`` only and keep
their dtype; intensities become float32.

The reader of irregular DICOM slice stacks (``io/dicom/volume.py``, ``_resample_regular``) does
not use this function on purpose: its input is not a voxel grid (slices at arbitrary positions
along the normal, each possibly shifted in plane), so a grid-to-grid resampler cannot read it;
it interpolates between the two nearest slices along the normal instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from medimg.core.image import Image
from medimg.errors import ParameterError, UnknownNameError

if TYPE_CHECKING:
    from medimg.core.transform import Transform

__all__ = ["INTERPOLATORS", "Interpolator", "resample_image", "resample_like", "grid_for_spacing",
           "warp_points"]

Interpolator = Literal["nearest", "linear", "bspline", "cubic", "label_linear"]

#: Interpolator names and whether each is allowed on label maps.
INTERPOLATORS: dict[str, bool] = {"nearest": True, "linear": False, "bspline": False, "cubic": False,
                                  "label_linear": True}


def _sitk_interpolator(name: str) -> int:
    import SimpleITK as sitk

    return {"nearest": sitk.sitkNearestNeighbor, "linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline,
            "cubic": sitk.sitkBSpline, "label_linear": sitk.sitkLabelLinear}[name]


def check_interpolator(image: Image, interpolator: str | None, *, where: str = "resample") -> str:
    """The interpolator to use for ``image`` (the default when None); errors name the problem."""
    if interpolator is None:
        return "nearest" if image.is_label else "linear"
    if interpolator not in INTERPOLATORS:
        raise UnknownNameError("interpolator", str(interpolator), INTERPOLATORS)
    if image.is_label and not INTERPOLATORS[interpolator]:
        msg = (
            f"{where}: image is a label map ({image.dtype}), which is resampled with 'nearest' or "
            f"'label_linear' only, not {interpolator!r}; if it holds intensities, convert it to float "
            "first (image.with_array(image.array.astype('float32')))"
        )
        raise ParameterError(msg)
    if not image.is_label and interpolator == "label_linear":
        raise ParameterError(f"{where}: 'label_linear' is for label maps (integer dtype); "
                             f"this image is {image.dtype}")
    return interpolator


def grid_for_spacing(image: Image, spacing_mm: float | Sequence[float]) -> tuple[np.ndarray, tuple[int, ...]]:
    """The grid (4x4 affine, size x, y[, z]) of spacing ``spacing_mm`` covering ``image``'s extent:
    same origin and direction, size ``round(size * spacing / spacing_mm)`` per axis (at least 1)."""
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
    return affine, size


def _reference(affine: np.ndarray, size: Sequence[int]) -> object:
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


def resample_image(
    image: Image,
    affine: np.ndarray,
    size: Sequence[int],
    *,
    transform: Transform | None = None,
    interpolator: Interpolator | None = None,
    default_value: float = 0.0,
) -> Image:
    """Resample ``image`` onto the grid (``affine``, ``size`` in x, y[, z]) through ``transform``.

    Parameters
    ----------
    image
        Scalar or multi-channel image, or label map, 2-D or 3-D.
    affine, size
        Output grid: 4x4 LPS affine of the index (x, y, z) and the number of voxels per axis.
    transform
        Maps output-grid points (mm) to ``image`` points (mm); ``None``: identity.
    interpolator
        See the module docstring; ``None``: nearest for label maps, linear otherwise.
    default_value
        Value of output voxels whose ``T(x)`` falls outside ``image`` (a label value for label maps).

    Returns
    -------
    Image
        On the output grid, with ``image``'s meta: float32 for intensities, the input dtype for
        label maps (boolean stays boolean).
    """
    import SimpleITK as sitk

    name = check_interpolator(image, interpolator)
    if not np.isfinite(default_value):
        raise ParameterError(f"resample: default_value must be finite, got {default_value!r}")
    nd = image.spatial_ndim
    if len(size) != nd:
        raise ParameterError(f"resample: output size {tuple(size)} has {len(size)} axes, image is {nd}-D")
    if transform is not None and transform.ndim != nd:
        raise ParameterError(f"resample: a {transform.ndim}-D transform cannot warp a {nd}-D image")
    src = image.to_sitk()
    if image.is_label:
        if name == "label_linear" and src.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkUInt16, sitk.sitkUInt32,
                                                               sitk.sitkInt8, sitk.sitkInt16, sitk.sitkInt32):
            src = sitk.Cast(src, sitk.sitkInt32 if image.array.min(initial=0) < 0 else sitk.sitkUInt32)
        out_type = src.GetPixelID()
    else:
        want = sitk.sitkVectorFloat32 if src.GetNumberOfComponentsPerPixel() > 1 else sitk.sitkFloat32
        if src.GetPixelID() != want:
            src = sitk.Cast(src, want)
        out_type = want
    tfm = sitk.Transform(nd, sitk.sitkIdentity) if transform is None else transform.to_sitk()
    out = sitk.Resample(src, _reference(affine, size), tfm, _sitk_interpolator(name), float(default_value), out_type)
    array = sitk.GetArrayFromImage(out)
    if image.dtype == np.bool_:
        array = array.astype(bool)
    elif image.is_label:
        array = array.astype(image.dtype, copy=False)
    return Image(array, affine, meta=image.meta, channel_axis=image.channel_axis,
                 has_patient_geometry=image.has_patient_geometry)


def resample_like(
    image: Image,
    reference: Image,
    *,
    transform: Transform | None = None,
    interpolator: Interpolator | None = None,
    default_value: float = 0.0,
) -> Image:
    """:func:`resample_image` onto ``reference``'s grid (the result has ``reference``'s grid)."""
    if not isinstance(reference, Image):
        raise ParameterError(f"resample: reference must be a medimg.Image, got {type(reference).__name__}")
    if reference.spatial_ndim != image.spatial_ndim:
        raise ParameterError(f"resample: image is {image.spatial_ndim}-D but reference is {reference.spatial_ndim}-D")
    return resample_image(image, reference.affine, reference.size, transform=transform,
                          interpolator=interpolator, default_value=default_value)


def warp_points(points: np.ndarray | Sequence[Sequence[float]], transform: Transform) -> np.ndarray:
    """Map points ``(N, n)`` (LPS mm) through ``transform`` (fixed to moving space)."""
    return transform.transform_points(points)
