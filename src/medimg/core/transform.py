"""Spatial transforms: one type, wrapping a SimpleITK transform, for the whole package.

Convention (the one ITK, SimpleITK, elastix, ITK-SNAP and Slicer's ``.tfm`` files use): a
:class:`Transform` maps a point of the **fixed** image's physical space (LPS, mm) to the point of
the **moving** image's physical space that lands there. Resampling the moving image onto the
fixed grid evaluates ``moving(T(x))`` at each fixed voxel centre ``x``; a point set drawn on the
fixed image goes to the moving image with :meth:`Transform.transform_points`. To carry points
drawn on the *moving* image to the fixed image, use ``T.inverse()``.

The class lives in :mod:`medimg.core` (beside :class:`~medimg.core.image.Image`) so that the one
resampler (:mod:`medimg.core.resample`), the filters and the readers can use it without importing
:mod:`medimg.registration`, which re-exports it.

A linear transform ``y = A x + offset`` is built with :meth:`Transform.from_matrix` and exposes
``matrix`` (A), ``offset``, and ITK's ``center``/``translation`` pair (``offset = translation +
center - A center``). Files are written with ``SimpleITK.WriteTransform`` (``.tfm``/``.txt``:
ITK text, linear and B-spline; ``.h5``/``.hdf5``: ITK HDF5, any transform incl. displacement
fields and composites) and read back with :meth:`Transform.load`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medimg.errors import FileFormatError, ParameterError

if TYPE_CHECKING:
    import SimpleITK

    from medimg.core.image import Image

__all__ = ["Transform", "TRANSFORM_SUFFIXES"]

#: File suffixes :meth:`Transform.save` writes (ITK text and ITK HDF5).
TRANSFORM_SUFFIXES = (".tfm", ".txt", ".h5", ".hdf5")

#: SimpleITK transform classes whose map is ``y = A x + offset`` (MatrixOffsetTransformBase and kin).
_LINEAR = {
    "AffineTransform", "Euler2DTransform", "Euler3DTransform", "Similarity2DTransform",
    "Similarity3DTransform", "VersorRigid3DTransform", "VersorTransform", "ScaleTransform",
    "ScaleSkewVersor3DTransform", "ScaleVersor3DTransform", "ComposeScaleSkewVersor3DTransform",
    "TranslationTransform", "MatrixOffsetTransformBase",
}


def _downcast(tfm: SimpleITK.Transform) -> SimpleITK.Transform:
    """The transform as its concrete SimpleITK class (ReadTransform returns the base class)."""
    try:
        return tfm.Downcast()
    except (AttributeError, RuntimeError):  # pragma: no cover - very old SimpleITK
        return tfm


class Transform:
    """A spatial transform mapping fixed-image points to moving-image points (LPS, mm).

    Wraps a ``SimpleITK.Transform`` (any kind: Euler, similarity, affine, B-spline, displacement
    field, composite). Build one with :meth:`identity`, :meth:`from_matrix`, :meth:`from_sitk` or
    :meth:`load`; it is immutable from the outside (every method returns a new Transform).
    """

    def __init__(self, sitk_transform: SimpleITK.Transform) -> None:
        import SimpleITK as sitk

        if not isinstance(sitk_transform, sitk.Transform):
            raise ParameterError(f"Transform: expected a SimpleITK.Transform, got {type(sitk_transform).__name__}")
        dim = sitk_transform.GetDimension()
        if dim not in (2, 3):
            raise ParameterError(f"Transform: only 2-D and 3-D transforms are supported, got {dim}-D")
        self._tfm = _downcast(sitk_transform)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_sitk(cls, sitk_transform: SimpleITK.Transform) -> Transform:
        """Wrap (a copy of) a SimpleITK transform."""
        import SimpleITK as sitk

        return cls(sitk.Transform(sitk_transform))

    @classmethod
    def identity(cls, ndim: int = 3) -> Transform:
        """The identity transform in ``ndim`` (2 or 3) dimensions."""
        import SimpleITK as sitk

        if ndim not in (2, 3):
            raise ParameterError(f"Transform.identity: ndim must be 2 or 3, got {ndim!r}")
        return cls(sitk.AffineTransform(ndim))

    @classmethod
    def from_matrix(
        cls,
        matrix: np.ndarray | Sequence[Sequence[float]],
        translation: np.ndarray | Sequence[float] | None = None,
        *,
        center: np.ndarray | Sequence[float] | None = None,
    ) -> Transform:
        """A linear transform ``y = A x + offset`` (x fixed, y moving; LPS mm).

        Parameters
        ----------
        matrix
            Either a homogeneous 4x4 matrix (3-D; last row ``0 0 0 1``) whose last column is the
            offset, or an ``n x n`` matrix ``A`` (3x3 for 3-D, 2x2 for 2-D).
        translation
            With an ``n x n`` matrix: the offset in mm (default zero). Not allowed with a
            homogeneous matrix.
        center
            ITK's centre of rotation in mm (default the origin). It does not change the map,
            only how it is parameterised (``translation = offset - center + A center``), which
            matters to optimisers and to how other programs display it.
        """
        import SimpleITK as sitk

        m = np.asarray(matrix, dtype=float)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] not in (2, 3, 4):
            raise ParameterError(f"Transform.from_matrix: matrix must be 2x2, 3x3 or 4x4, got shape {m.shape}")
        if not np.all(np.isfinite(m)):
            raise ParameterError("Transform.from_matrix: matrix has non-finite values")
        homogeneous = m.shape[0] == 4
        if homogeneous:
            if translation is not None:
                raise ParameterError("Transform.from_matrix: give the offset either in the 4x4 matrix or as translation, not both")
            if not np.allclose(m[-1], [0, 0, 0, 1]):
                raise ParameterError(f"Transform.from_matrix: last row of a homogeneous matrix must be 0 0 0 1, got {m[-1]}")
            a, offset = m[:3, :3], m[:3, 3]
        else:
            a = m
            n = a.shape[0]
            offset = np.zeros(n) if translation is None else np.asarray(translation, dtype=float).reshape(-1)
            if offset.shape != (n,) or not np.all(np.isfinite(offset)):
                raise ParameterError(f"Transform.from_matrix: translation must be {n} finite values in mm, got {translation!r}")
        n = a.shape[0]
        c = np.zeros(n) if center is None else np.asarray(center, dtype=float).reshape(-1)
        if c.shape != (n,) or not np.all(np.isfinite(c)):
            raise ParameterError(f"Transform.from_matrix: center must be {n} finite values in mm, got {center!r}")
        tfm = sitk.AffineTransform(n)
        tfm.SetMatrix(tuple(float(v) for v in a.ravel()))
        tfm.SetCenter(tuple(float(v) for v in c))
        tfm.SetTranslation(tuple(float(v) for v in (offset - c + a @ c)))
        return cls(tfm)

    @classmethod
    def load(cls, path: str | Path) -> Transform:
        """Read an ITK transform file (``.tfm``/``.txt``/``.h5``/``.mat``) written by medimg, ITK,
        SimpleITK, elastix (ITK format), ANTs or Slicer; :class:`FileFormatError` if it is not one."""
        import SimpleITK as sitk

        p = Path(path)
        if not p.is_file():
            raise FileFormatError(p, "no such transform file")
        try:
            tfm = sitk.ReadTransform(str(p))
        except RuntimeError as err:
            first = next((ln.strip() for ln in str(err).splitlines() if ln.strip().startswith("Description")), "")
            detail = f" ({first.removeprefix('Description:').strip()})" if first else ""
            raise FileFormatError(p, f"not an ITK transform file (.tfm/.txt/.h5/.mat){detail}") from None
        if tfm.GetDimension() not in (2, 3):
            raise FileFormatError(p, f"a {tfm.GetDimension()}-D transform; only 2-D and 3-D are supported")
        return cls(tfm)

    # ------------------------------------------------------------------ properties
    def to_sitk(self) -> SimpleITK.Transform:
        """A copy of the wrapped SimpleITK transform."""
        import SimpleITK as sitk

        return _downcast(sitk.Transform(self._tfm))

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return int(self._tfm.GetDimension())

    @property
    def kind(self) -> str:
        """The SimpleITK class name, e.g. ``"Euler3DTransform"``, ``"BSplineTransform"``."""
        return type(self._tfm).__name__

    @property
    def is_linear(self) -> bool:
        """True when the map is ``y = A x + offset`` (rigid, similarity, affine, ...)."""
        import SimpleITK as sitk

        if self.kind in _LINEAR:
            return True
        if isinstance(self._tfm, sitk.CompositeTransform):
            return all(Transform(self._tfm.GetNthTransform(i)).is_linear
                       for i in range(self._tfm.GetNumberOfTransforms()))
        return False

    def _linear_parts(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.is_linear:
            raise ParameterError(f"Transform: a {self.kind} is not linear; it has no matrix")
        n = self.ndim
        origin = np.zeros(n)
        y0 = np.asarray(self._tfm.TransformPoint(tuple(origin)))
        a = np.empty((n, n))
        for j in range(n):
            e = np.zeros(n)
            e[j] = 1.0
            a[:, j] = np.asarray(self._tfm.TransformPoint(tuple(e))) - y0
        if hasattr(self._tfm, "GetMatrix"):  # exact, not by differences
            a = np.asarray(self._tfm.GetMatrix(), dtype=float).reshape(n, n)
        return a, y0

    @property
    def matrix(self) -> np.ndarray:
        """The ``n x n`` matrix ``A`` of a linear transform (``y = A x + offset``)."""
        return self._linear_parts()[0]

    @property
    def offset(self) -> np.ndarray:
        """The offset (mm) of a linear transform: the image of the origin."""
        return self._linear_parts()[1]

    @property
    def center(self) -> np.ndarray:
        """ITK's fixed centre (mm) of a linear transform (zero for a pure translation)."""
        self._linear_parts()
        if hasattr(self._tfm, "GetCenter"):
            return np.asarray(self._tfm.GetCenter(), dtype=float)
        return np.zeros(self.ndim)

    @property
    def translation(self) -> np.ndarray:
        """ITK's translation (mm) of a linear transform about its centre:
        ``y = A (x - center) + center + translation``."""
        a, offset = self._linear_parts()
        c = self.center
        return offset - c + a @ c

    @property
    def homogeneous(self) -> np.ndarray:
        """The ``(n+1) x (n+1)`` homogeneous matrix of a linear transform."""
        a, offset = self._linear_parts()
        n = self.ndim
        h = np.eye(n + 1)
        h[:n, :n] = a
        h[:n, n] = offset
        return h

    # ------------------------------------------------------------------ use
    def transform_points(self, points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Map points ``(N, n)`` in the fixed space (LPS mm) to the moving space (mm), float64."""
        pts = np.asarray(points, dtype=float)
        single = pts.ndim == 1
        pts = np.atleast_2d(pts)
        if pts.ndim != 2 or pts.shape[1] != self.ndim:
            raise ParameterError(f"transform_points: points must have shape (N, {self.ndim}), got {np.shape(points)}")
        if not np.all(np.isfinite(pts)):
            raise ParameterError("transform_points: points contain non-finite values")
        if self.is_linear:
            a, offset = self._linear_parts()
            out = pts @ a.T + offset
        else:
            tp = self._tfm.TransformPoint
            out = np.array([tp(tuple(p)) for p in pts.tolist()], dtype=float).reshape(pts.shape)
        return out[0] if single else out

    def __call__(self, points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        return self.transform_points(points)

    def compose(self, other: Transform) -> Transform:
        """The composition ``self ∘ other``: ``self.compose(other)(x) == self(other(x))``.

        With transforms that map fixed to moving: if ``other`` maps image A to image B and
        ``self`` maps B to C, the result maps A to C (ITK ``CompositeTransform`` order: the
        transform added last is applied first).
        """
        import SimpleITK as sitk

        if not isinstance(other, Transform):
            raise ParameterError(f"compose: expected a Transform, got {type(other).__name__}")
        if other.ndim != self.ndim:
            raise ParameterError(f"compose: a {self.ndim}-D transform cannot be composed with a {other.ndim}-D one")
        if self.is_linear and other.is_linear:
            h = self.homogeneous @ other.homogeneous
            center = other.center if other.kind != "TranslationTransform" else None
            return Transform.from_matrix(h, center=center)
        comp = sitk.CompositeTransform(self.ndim)
        for t in (self, other):  # applied in reverse order of addition
            inner = t._tfm
            if isinstance(inner, sitk.CompositeTransform):
                for i in range(inner.GetNumberOfTransforms()):
                    comp.AddTransform(_downcast(inner.GetNthTransform(i)))
            else:
                comp.AddTransform(sitk.Transform(inner))
        return Transform(comp)

    def inverse(self) -> Transform:
        """The inverse map (moving to fixed).

        Exact for linear transforms; for a displacement field, an iterative inverse on the
        field's own grid (``SimpleITK.InvertDisplacementField``); a composite is inverted piece by
        piece. A B-spline transform has no closed-form inverse: convert it first with
        :meth:`to_displacement_field` (raises :class:`ParameterError` otherwise).
        """
        import SimpleITK as sitk

        if self.is_linear:
            a, offset = self._linear_parts()
            ainv = np.linalg.inv(a) if abs(np.linalg.det(a)) > 1e-12 else None
            if ainv is None:
                raise ParameterError("inverse: the linear transform is singular (det A = 0)")
            return Transform.from_matrix(ainv, -ainv @ offset, center=self.center if self.kind != "TranslationTransform" else None)
        tfm = self._tfm
        if isinstance(tfm, sitk.CompositeTransform):
            parts = [Transform(tfm.GetNthTransform(i)) for i in range(tfm.GetNumberOfTransforms())]
            inv = parts[-1].inverse()  # (a∘b)^-1 = b^-1 ∘ a^-1; parts[0] was added first (applied last)
            for p in reversed(parts[:-1]):
                inv = inv.compose(p.inverse())
            return inv
        if isinstance(tfm, sitk.DisplacementFieldTransform):
            field = tfm.GetDisplacementField()
            inv_field = sitk.InvertDisplacementField(
                field, maximumNumberOfIterations=50, maxErrorToleranceThreshold=0.01,
                meanErrorToleranceThreshold=0.0001, enforceBoundaryCondition=True)
            return Transform(sitk.DisplacementFieldTransform(sitk.Cast(inv_field, sitk.sitkVectorFloat64)))
        raise ParameterError(
            f"inverse: a {self.kind} has no closed-form inverse; convert it with "
            "transform.to_displacement_field(reference).inverse() (iterative inverse on that grid)")

    def to_displacement_field(self, reference: Image) -> Transform:
        """The same map sampled as a dense displacement field on ``reference``'s grid
        (``DisplacementFieldTransform``, linear interpolation between voxels)."""
        import SimpleITK as sitk

        if reference.spatial_ndim != self.ndim:
            raise ParameterError(f"to_displacement_field: {self.ndim}-D transform, {reference.spatial_ndim}-D reference")
        ref = reference.to_sitk() if reference.n_channels == 1 else sitk.Image(reference.size, sitk.sitkUInt8)
        conv = sitk.TransformToDisplacementFieldFilter()
        conv.SetReferenceImage(ref)
        conv.SetOutputPixelType(sitk.sitkVectorFloat64)
        field = conv.Execute(self._tfm)
        return Transform(sitk.DisplacementFieldTransform(field))

    def save(self, path: str | Path) -> Path:
        """Write as an ITK transform file that ``SimpleITK.ReadTransform``, ITK-SNAP and Slicer
        read: ``.tfm``/``.txt`` (text; not for displacement fields) or ``.h5``/``.hdf5``.
        Written atomically; returns the path."""
        import SimpleITK as sitk

        from medimg.core.files import atomic_path

        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in TRANSFORM_SUFFIXES:
            raise ParameterError(f"Transform.save: {p.name}: use one of {', '.join(TRANSFORM_SUFFIXES)}")
        if suffix in (".tfm", ".txt") and self._has_field():
            raise ParameterError(f"Transform.save: {p.name}: a displacement field is written as .h5, not {suffix}")
        with atomic_path(p) as tmp:
            sitk.WriteTransform(self._tfm, str(tmp))
        return p

    def _has_field(self) -> bool:
        import SimpleITK as sitk

        tfm = self._tfm
        if isinstance(tfm, sitk.DisplacementFieldTransform):
            return True
        if isinstance(tfm, sitk.CompositeTransform):
            return any(Transform(tfm.GetNthTransform(i))._has_field() for i in range(tfm.GetNumberOfTransforms()))
        return False

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: kind, dimension, and for linear transforms the matrix and offset."""
        out: dict[str, Any] = {"kind": self.kind, "ndim": self.ndim, "linear": self.is_linear,
                               "n_parameters": int(self._tfm.GetNumberOfParameters())}
        if self.is_linear:
            a, offset = self._linear_parts()
            out["matrix"] = a.tolist()
            out["offset_mm"] = offset.tolist()
            out["center_mm"] = self.center.tolist()
        return out

    def __repr__(self) -> str:
        return f"Transform({self.kind}, {self.ndim}-D)"
