"""The core :class:`Image` type: voxels, geometry and metadata, always together.

Conventions (written once, here):

* The array is in **(z, y, x)** order for 3-D images and **(y, x)** for 2-D ones — the order
  ``SimpleITK.GetArrayFromImage`` gives. A vector image (RGB, multi-echo stacked as channels)
  has one more, trailing axis and ``channel_axis == -1``.
* Geometry lives in DICOM/ITK **patient space, LPS, millimetres**. ``spacing`` and ``origin``
  are in (x, y, z) order; ``direction`` is the 3x3 matrix whose *columns* are the direction
  cosines of the x, y and z voxel axes.
* :attr:`Image.affine` is the 4x4 matrix that maps the voxel index **(x, y, z, 1)** — the
  array's axes reversed, as in ITK — to LPS mm:
  ``affine[:3, :3] = direction @ diag(spacing)``, ``affine[:3, 3] = origin``.
* A 2-D image still lives in 3-D patient space: it is the plane z = 0 of its affine.
* NIfTI's RAS convention appears only in :meth:`Image.to_nibabel` / :meth:`Image.from_nibabel`.
* An integer-typed image is a label map wherever the difference matters (resampling uses
  nearest neighbour for label maps, always).

An :class:`Image` is treated as immutable: operations return new images and never write into
an input's array.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from medimg.errors import GeometryMismatchError, ParameterError

if TYPE_CHECKING:  # pragma: no cover
    import nibabel
    import SimpleITK
    import torch

__all__ = ["Image", "orientation_code", "LPS_TO_RAS"]

#: Flips x and y: maps LPS coordinates to RAS (and back; it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))  # positive, negative LPS direction


def orientation_code(direction: np.ndarray) -> str:
    """Three-letter code of the direction each voxel axis (x, y, z) points *to*, in LPS terms.

    The identity direction is ``"LPS"``; a NIfTI-style RAS-stored volume is ``"RAS"``. This is
    the convention of DICOM, dcm2niix and nibabel's ``aff2axcodes`` (ITK's legacy
    ``SpatialOrientation`` names use the opposite, "from" convention).
    """
    direction = np.asarray(direction, dtype=float)
    letters = []
    used: set[int] = set()
    for column in direction.T:
        order = np.argsort(-np.abs(column))
        axis = next(int(a) for a in order if int(a) not in used)
        used.add(axis)
        letters.append(_AXIS_LETTERS[axis][0 if column[axis] >= 0 else 1])
    return "".join(letters)


def _as_vec3(value: Sequence[float] | np.ndarray, name: str, *, ndim: int) -> np.ndarray:
    vec = np.asarray(value, dtype=float).ravel()
    if vec.size == ndim == 2:
        vec = np.append(vec, 0.0 if name == "origin" else 1.0)
    if vec.size != 3:
        msg = f"{name} must have {ndim} or 3 values in (x, y, z) order, got {vec.size}"
        raise ParameterError(msg)
    return vec


class Image:
    """An N-d voxel array with its LPS geometry and metadata.

    Parameters
    ----------
    array
        Voxels in (z, y, x) order (or (y, x) for 2-D), with an optional trailing channel axis.
    affine
        4x4 matrix mapping the voxel index (x, y, z, 1) to LPS millimetres. Defaults to the
        identity (1 mm voxels at the origin).
    meta
        Metadata from the file (modality, series UID, rescale, window presets, ...). Copied.
    channel_axis
        ``None`` for a scalar image, ``-1`` when the last array axis holds components
        (RGB samples, echoes).
    has_patient_geometry
        ``False`` for images whose geometry is unknown (PNG/JPEG, DICOM secondary capture
        without Image Plane module); their affine is the identity or pixel-spacing only.
    """

    __slots__ = ("_array", "_affine", "meta", "channel_axis", "has_patient_geometry")

    def __init__(
        self,
        array: np.ndarray,
        affine: np.ndarray | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
        channel_axis: int | None = None,
        has_patient_geometry: bool = True,
    ) -> None:
        array = np.asarray(array)
        if channel_axis not in (None, -1):
            msg = f"channel_axis must be None or -1 (a trailing component axis), got {channel_axis}"
            raise ParameterError(msg)
        spatial = array.ndim - (1 if channel_axis == -1 else 0)
        if spatial not in (2, 3):
            msg = (
                f"Image array must have 2 or 3 spatial axes (plus a trailing channel axis when "
                f"channel_axis=-1), got shape {array.shape} with channel_axis={channel_axis}"
            )
            raise ParameterError(msg)
        if affine is None:
            affine = np.eye(4)
        affine = np.array(affine, dtype=float)
        if affine.shape != (4, 4):
            raise ParameterError(f"affine must be 4x4, got shape {affine.shape}")
        if not np.all(np.isfinite(affine)):
            raise ParameterError("affine contains non-finite values")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ParameterError("affine is singular (a spacing is zero or axes are parallel)")
        affine.flags.writeable = False
        self._array = array
        self._affine = affine
        self.meta: dict[str, Any] = copy.deepcopy(dict(meta)) if meta else {}
        self.channel_axis = channel_axis
        self.has_patient_geometry = bool(has_patient_geometry)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_geometry(
        cls,
        array: np.ndarray,
        *,
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        origin: Sequence[float] = (0.0, 0.0, 0.0),
        direction: np.ndarray | Sequence[float] | None = None,
        meta: Mapping[str, Any] | None = None,
        channel_axis: int | None = None,
        has_patient_geometry: bool = True,
    ) -> Image:
        """Build an Image from spacing (mm), origin (mm, LPS) and direction cosines.

        ``spacing`` and ``origin`` are in (x, y, z) order; ``direction`` is a 3x3 matrix (or
        its 9 values row by row, as SimpleITK gives them) whose columns are the axis directions.
        """
        ndim = np.asarray(array).ndim - (1 if channel_axis == -1 else 0)
        spacing_v = _as_vec3(spacing, "spacing", ndim=ndim)
        origin_v = _as_vec3(origin, "origin", ndim=ndim)
        if np.any(spacing_v <= 0):
            raise ParameterError(f"spacing must be positive (mm), got {tuple(spacing_v)}")
        if direction is None:
            direction_m = np.eye(3)
        else:
            direction_m = np.asarray(direction, dtype=float)
            if direction_m.size == 4:
                direction_m = np.block(
                    [[direction_m.reshape(2, 2), np.zeros((2, 1))], [np.zeros((1, 2)), np.ones((1, 1))]]
                )
            direction_m = direction_m.reshape(3, 3)
        affine = np.eye(4)
        affine[:3, :3] = direction_m * spacing_v[np.newaxis, :]
        affine[:3, 3] = origin_v
        return cls(
            array,
            affine,
            meta=meta,
            channel_axis=channel_axis,
            has_patient_geometry=has_patient_geometry,
        )

    def with_array(self, array: np.ndarray, *, meta: Mapping[str, Any] | None = None) -> Image:
        """A new Image with this geometry and ``array`` (same spatial shape), meta copied or given."""
        array = np.asarray(array)
        if array.shape[: self.spatial_ndim] != self.spatial_shape:
            msg = (
                f"new array's spatial shape {array.shape[: self.spatial_ndim]} differs from the "
                f"image's {self.spatial_shape}"
            )
            raise GeometryMismatchError(msg)
        channel_axis = -1 if array.ndim == self.spatial_ndim + 1 else None
        return Image(
            array,
            self._affine,
            meta=self.meta if meta is None else meta,
            channel_axis=channel_axis,
            has_patient_geometry=self.has_patient_geometry,
        )

    def copy(self) -> Image:
        """A deep copy (array and meta)."""
        return Image(
            self._array.copy(),
            self._affine,
            meta=self.meta,
            channel_axis=self.channel_axis,
            has_patient_geometry=self.has_patient_geometry,
        )

    # ------------------------------------------------------------------ properties
    @property
    def array(self) -> np.ndarray:
        """The voxels, (z, y, x) order (plus a trailing channel axis when ``channel_axis == -1``)."""
        return self._array

    @property
    def affine(self) -> np.ndarray:
        """Read-only 4x4 matrix: voxel index (x, y, z, 1) -> LPS mm."""
        return self._affine

    @property
    def dtype(self) -> np.dtype:
        """The array's dtype."""
        return self._array.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape, (z, y, x[, c])."""
        return tuple(self._array.shape)

    @property
    def spatial_ndim(self) -> int:
        """2 or 3."""
        return self._array.ndim - (1 if self.channel_axis == -1 else 0)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The array's spatial shape in array order, (z, y, x) or (y, x)."""
        return tuple(self._array.shape[: self.spatial_ndim])

    @property
    def size(self) -> tuple[int, ...]:
        """Number of voxels along (x, y[, z]) — ITK's ``GetSize()`` order."""
        return tuple(reversed(self.spatial_shape))

    @property
    def n_channels(self) -> int:
        """Components per voxel (1 for a scalar image)."""
        return int(self._array.shape[-1]) if self.channel_axis == -1 else 1

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the x, y, z voxel axes."""
        return tuple(float(v) for v in np.linalg.norm(self._affine[:3, :3], axis=0))

    @property
    def origin(self) -> tuple[float, float, float]:
        """LPS position (mm) of the centre of voxel (0, 0, 0)."""
        return tuple(float(v) for v in self._affine[:3, 3])

    @property
    def direction(self) -> np.ndarray:
        """3x3 direction cosines; column i is the LPS direction of voxel axis i (x, y, z)."""
        return self._affine[:3, :3] / np.asarray(self.spacing)[np.newaxis, :]

    @property
    def orientation(self) -> str:
        """Orientation code of the voxel axes (x, y, z) such as ``"LPS"`` or ``"RAS"``."""
        return orientation_code(self.direction)

    @property
    def is_label(self) -> bool:
        """True for integer or boolean arrays (label maps are resampled with nearest neighbour)."""
        return self._array.dtype.kind in "iub"

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm^3 (area in mm^2 for a 2-D image)."""
        sp = self.spacing
        return float(np.prod(sp[: self.spatial_ndim]))

    # ------------------------------------------------------------------ coordinates
    def index_to_physical(self, index_xyz: np.ndarray | Sequence[float]) -> np.ndarray:
        """Map voxel indices (x, y, z), shape (..., 3), to LPS mm."""
        idx = np.asarray(index_xyz, dtype=float)
        if idx.shape[-1] == 2:
            idx = np.concatenate([idx, np.zeros(idx.shape[:-1] + (1,))], axis=-1)
        return idx @ self._affine[:3, :3].T + self._affine[:3, 3]

    def physical_to_index(self, point_lps: np.ndarray | Sequence[float]) -> np.ndarray:
        """Map LPS points (mm), shape (..., 3), to continuous voxel indices (x, y, z)."""
        pts = np.asarray(point_lps, dtype=float)
        inv = np.linalg.inv(self._affine)
        return pts @ inv[:3, :3].T + inv[:3, 3]

    def same_grid(self, other: Image, *, tol_mm: float = 1e-4) -> bool:
        """True when both images have the same spatial shape and affines within ``tol_mm``."""
        if self.spatial_shape != other.spatial_shape:
            return False
        return bool(np.max(np.abs(self._affine - other._affine)) <= tol_mm)

    def check_same_grid(self, other: Image, *, names: tuple[str, str] = ("image", "mask"),
                        tol_mm: float = 1e-4) -> None:
        """Raise :class:`GeometryMismatchError` naming both grids unless they are the same."""
        if self.same_grid(other, tol_mm=tol_mm):
            return
        delta = (
            float(np.max(np.abs(self._affine - other._affine)))
            if self.spatial_shape == other.spatial_shape
            else float("nan")
        )
        msg = (
            f"{names[1]} grid differs from {names[0]} grid: {names[0]} {self.grid_summary()}; "
            f"{names[1]} {other.grid_summary()}"
            + (f"; max affine delta {delta:.3g} mm > tol {tol_mm}" if delta == delta else "")
            + f". Resample the {names[1]} onto the {names[0]}'s grid first."
        )
        raise GeometryMismatchError(msg)

    def grid_summary(self) -> str:
        """One line: size, spacing, origin and orientation."""
        sp = ", ".join(f"{v:.4g}" for v in self.spacing[: self.spatial_ndim])
        org = ", ".join(f"{v:.4g}" for v in self.origin)
        return f"size {self.size} spacing ({sp}) mm origin ({org}) mm {self.orientation}"

    # ------------------------------------------------------------------ conversions
    def to_sitk(self) -> SimpleITK.Image:
        """Convert to a ``SimpleITK.Image`` (vector image when there is a channel axis).

        A 2-D image becomes a 2-D SimpleITK image: the z part of its origin and direction is
        dropped there (SimpleITK 2-D images have no third axis).
        """
        import SimpleITK as sitk

        array = self._array
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        out = sitk.GetImageFromArray(array, isVector=self.channel_axis == -1)
        nd = self.spatial_ndim
        out.SetSpacing(self.spacing[:nd])
        out.SetOrigin(self.origin[:nd])
        out.SetDirection(tuple(self.direction[:nd, :nd].ravel()))
        return out

    @classmethod
    def from_sitk(cls, image: SimpleITK.Image, *, meta: Mapping[str, Any] | None = None) -> Image:
        """Convert from a ``SimpleITK.Image`` (2-D or 3-D, scalar or vector)."""
        import SimpleITK as sitk

        nd = image.GetDimension()
        if nd not in (2, 3):
            msg = f"only 2-D and 3-D SimpleITK images convert to Image, got {nd}-D"
            raise ParameterError(msg)
        array = sitk.GetArrayFromImage(image)
        channel_axis = -1 if image.GetNumberOfComponentsPerPixel() > 1 else None
        return cls.from_geometry(
            array,
            spacing=image.GetSpacing(),
            origin=image.GetOrigin(),
            direction=image.GetDirection(),
            meta=meta,
            channel_axis=channel_axis,
        )

    def to_nibabel(self) -> nibabel.Nifti1Image:
        """Convert to a ``nibabel.Nifti1Image``: RAS affine (sform and qform, code 1), (i, j, k) array."""
        import nibabel as nib

        array = self._array
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        if self.channel_axis == -1:
            array = np.moveaxis(array, -1, 0)  # (c, z, y, x) -> transposed below to (x, y, z, c)
        array = array.T if self.channel_axis is None else np.transpose(
            array, tuple(range(array.ndim - 1, 0, -1)) + (0,)
        )
        affine = LPS_TO_RAS @ self._affine
        img = nib.Nifti1Image(np.ascontiguousarray(array), affine)
        img.set_sform(affine, code=1)
        img.set_qform(affine, code=1)
        img.header.set_xyzt_units("mm", "sec")
        return img

    @classmethod
    def from_nibabel(cls, image: nibabel.spatialimages.SpatialImage, *,
                     meta: Mapping[str, Any] | None = None) -> Image:
        """Convert from a nibabel image (RAS affine; scaling by scl_slope/scl_inter applied).

        A 4-D NIfTI (x, y, z, t) becomes a 3-D image with a trailing channel axis.
        """
        data = np.asanyarray(image.dataobj)
        if data.ndim == 5 and data.shape[3] == 1:  # NIfTI vector intent (x, y, z, 1, c)
            data = data[:, :, :, 0, :]
        if data.ndim not in (2, 3, 4):
            msg = f"NIfTI data with {data.ndim} dimensions is not supported (2-4)"
            raise ParameterError(msg)
        channel_axis = -1 if data.ndim == 4 else None
        if data.ndim == 4 and data.shape[3] == 1:
            data, channel_axis = data[..., 0], None
        if channel_axis is None:
            array = data.T
        else:
            array = np.transpose(data, (2, 1, 0, 3))
        affine = LPS_TO_RAS @ np.asarray(image.affine, dtype=float)
        return cls(np.ascontiguousarray(array), affine, meta=meta, channel_axis=channel_axis)

    def to_torch(self) -> torch.Tensor:
        """A ``torch.Tensor`` of shape (C, z, y, x) (C = 1 for a scalar image); no copy when possible."""
        from medimg.core.optional import require

        torch = require("torch", extra="dl")
        array = self._array
        if self.channel_axis == -1:
            array = np.moveaxis(array, -1, 0)
        else:
            array = array[np.newaxis]
        if array.dtype == np.uint16:
            array = array.astype(np.int32)
        return torch.from_numpy(np.ascontiguousarray(array))

    # ------------------------------------------------------------------ dunder
    def __repr__(self) -> str:
        extra = "" if self.has_patient_geometry else ", no patient geometry"
        ch = f", {self.n_channels} channels" if self.channel_axis == -1 else ""
        return f"Image({self.dtype}, {self.grid_summary()}{ch}{extra})"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if dtype is None:
            return self._array if not copy else self._array.copy()
        return self._array.astype(dtype)
