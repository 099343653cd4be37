"""Intensity-based registration: rigid, similarity, affine, B-spline FFD and diffeomorphic demons.

Engines: rigid / similarity / affine run on our own linear engine
(:mod:`medimg.registration._linear`: block-average pyramid, seeded random metric samples with
the analytic gradient of the metric with respect to the parameters, a Gauss-Newton-
preconditioned L-BFGS that stops on parameter change in mm). The affine start of a B-spline or
``"syn"`` registration still runs SimpleITK's ``ImageRegistrationMethod`` (regular-step
gradient descent) then our L-BFGS-B polish; then our own sparse cubic B-spline FFD optimiser
(:mod:`medimg.registration._ffd`: coarse-to-fine control grids, L-BFGS-B, ITK-exact
``BSplineTransform`` output); SimpleITK's ``DiffeomorphicDemonsRegistrationFilter`` for the
guarded dense refinement of ``"syn"``. All run on a multi-resolution scheme whose level
spacings are chosen in mm per axis (a thick-slice axis is not shrunk further), and the metric is
evaluated on a fixed random subset of the fixed voxels (seeded). Why these engines and not
elastix: see ``docs/registration.md`` (measured in ``benchmarks/bench_registration.py``).

Convention: the returned :class:`~medimg.core.transform.Transform` maps fixed-image points
(LPS mm) to moving-image points; ``result.resampled`` is the moving image on the fixed grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.core.resample import resample_like
from medimg.core.transform import Transform
from medimg.errors import ParameterError, UserInputError

if TYPE_CHECKING:
    import SimpleITK

__all__ = ["register", "RegistrationResult", "RegistrationError", "TASKS", "TransformKind", "Metric",
           "jacobian_stats"]

TransformKind = Literal["rigid", "similarity", "affine", "bspline", "syn"]
Metric = Literal["mi", "ncc", "ms"]
Task = Literal["mono-modal", "multi-modal", "longitudinal"]
Init = Literal["moments", "geometry", "none"]

#: Defaults per task: metric and the transform a user gets when passing only two images.
TASKS: dict[str, dict[str, str]] = {
    "mono-modal": {"metric": "ncc", "transform": "affine"},
    "multi-modal": {"metric": "mi", "transform": "rigid"},
    "longitudinal": {"metric": "mi", "transform": "rigid"},
}

_registration = registry("registration")


class RegistrationError(UserInputError):
    """Registration cannot run or did not produce a transform (no overlap, bad input)."""


@dataclass
class RegistrationResult:
    """What :func:`register` returns.

    Attributes
    ----------
    transform
        Maps fixed-image points (LPS mm) to moving-image points.
    resampled
        The moving image warped onto the fixed grid (float32; linear interpolation).
    quality
        ``metric`` (name), ``final_metric`` (value at the end, on the finest level; lower is
        better for every metric as SimpleITK defines them), ``metric_trace`` (one value per
        iteration, all levels), ``levels`` (per level: spacing mm, iterations, stop condition),
        ``time_s``, and for deformable transforms ``jacobian`` (:func:`jacobian_stats`).
    """

    transform: Transform
    resampled: Image
    quality: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- helpers
def _float_sitk(image: Image) -> SimpleITK.Image:
    import SimpleITK as sitk

    return sitk.Cast(image.to_sitk(), sitk.sitkFloat32)


def _check_inputs(fixed: Image, moving: Image, fixed_mask: Image | None, moving_mask: Image | None) -> None:
    for name, im in (("fixed", fixed), ("moving", moving)):
        if not isinstance(im, Image):
            raise ParameterError(f"register: {name} must be a medimg.Image, got {type(im).__name__}")
        if im.n_channels != 1:
            raise ParameterError(f"register: {name} image has {im.n_channels} channels; give one scalar image")
    if fixed.spatial_ndim != moving.spatial_ndim:
        raise RegistrationError(f"register: fixed image is {fixed.spatial_ndim}-D but moving image is "
                                f"{moving.spatial_ndim}-D; both must have the same dimension")
    if fixed_mask is not None:
        fixed.check_same_grid(fixed_mask, names=("fixed image", "fixed mask"), tol_mm=1e-3)
        if not np.any(fixed_mask.array):
            raise RegistrationError("register: the fixed mask is empty")
    if moving_mask is not None:
        moving.check_same_grid(moving_mask, names=("moving image", "moving mask"), tol_mm=1e-3)
        if not np.any(moving_mask.array):
            raise RegistrationError("register: the moving mask is empty")


def _pyramid_level(img: SimpleITK.Image, spacing_mm: float, *, label: bool = False) -> SimpleITK.Image:
    """``img`` smoothed (sigma = half the target spacing, mm) and shrunk towards ``spacing_mm``."""
    import SimpleITK as sitk

    from medimg.registration._linear import shrink_factors

    factors = shrink_factors(img, spacing_mm)
    if all(f == 1 for f in factors):
        return img
    if label:
        return sitk.Shrink(img, factors)
    sigmas = [0.5 * (f - 1) * s for f, s in zip(factors, img.GetSpacing(), strict=True)]
    smooth = img
    if max(sigmas) > 0:
        smooth = sitk.SmoothingRecursiveGaussian(img, [max(s, 1e-3) for s in sigmas])
    return sitk.Shrink(smooth, factors)


def _default_levels(fixed: Image, kind: str) -> list[float]:
    """Pyramid spacings (mm), coarse to fine; the last is the native grid (0 = native)."""
    finest = float(min(fixed.spacing[: fixed.spatial_ndim]))
    if kind in ("rigid", "similarity", "affine"):
        return [v for v in (4.0, 2.0) if v > 1.5 * finest] + [0.0]
    return [v for v in (4.0, 2.0) if v > 1.5 * finest] + [0.0]


def _initial_linear(kind: str, fixed: SimpleITK.Image, moving: SimpleITK.Image, init: str,
                    initial: Transform | None) -> SimpleITK.Transform:
    import SimpleITK as sitk

    nd = fixed.GetDimension()
    base = {
        "rigid": sitk.Euler3DTransform() if nd == 3 else sitk.Euler2DTransform(),
        "similarity": sitk.Similarity3DTransform() if nd == 3 else sitk.Similarity2DTransform(),
        "affine": sitk.AffineTransform(nd),
    }[kind]
    if initial is not None:
        if not initial.is_linear:
            raise ParameterError("register: initial transform for a linear registration must be linear")
        a, offset = initial.matrix, initial.offset
        c = np.asarray(fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()]))
        if kind == "affine":
            base.SetMatrix(tuple(a.ravel()))
        else:
            try:
                base.SetMatrix(tuple(a.ravel()))
            except RuntimeError as err:
                raise ParameterError(f"register: the initial transform is not a {kind} transform ({err})") from None
        base.SetCenter(tuple(c))
        base.SetTranslation(tuple(offset - c + a @ c))
        return base
    if init == "none":
        c = fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()])
        base.SetCenter(c)
        return base
    if init == "moments":  # centres of mass in numpy (SimpleITK's MOMENTS initializer: 75 ms on brain1)
        cf, cm = _centre_of_mass(fixed), _centre_of_mass(moving)
        if cf is not None and cm is not None:
            base.SetCenter(tuple(float(v) for v in cf))
            base.SetTranslation(tuple(float(v) for v in cm - cf))
            return base
    return sitk.CenteredTransformInitializer(fixed, moving, base, sitk.CenteredTransformInitializerFilter.GEOMETRY)


def _centre_of_mass(img: SimpleITK.Image) -> np.ndarray | None:
    """Intensity-weighted centre (mm), as ITK's ``ImageMomentsCalculator``; None if the mass is 0."""
    import SimpleITK as sitk

    arr = sitk.GetArrayViewFromImage(img)
    total = float(arr.sum(dtype=np.float64))
    if not np.isfinite(total) or abs(total) < 1e-12:
        return None
    nd = arr.ndim
    mean_idx = np.array([float(arr.sum(axis=tuple(a for a in range(nd) if a != d), dtype=np.float64)
                               @ np.arange(arr.shape[d])) for d in range(nd)]) / total
    return _index_to_physical(img, mean_idx[None, :])[0]


def _index_to_physical(img: SimpleITK.Image, zyx: np.ndarray) -> np.ndarray:
    """Physical points (mm, x-first) of array indices ``(n, nd)`` (z-first) of ``img``."""
    nd = img.GetDimension()
    direction = np.asarray(img.GetDirection(), float).reshape(nd, nd)
    return (zyx[:, ::-1] * np.asarray(img.GetSpacing(), float)) @ direction.T + np.asarray(img.GetOrigin(), float)


def _overlap_fraction(fixed: SimpleITK.Image, moving: SimpleITK.Image, tfm: SimpleITK.Transform,
                      mask: np.ndarray | None) -> float:
    """Fraction of (a sample of) the fixed foreground that maps inside the moving image."""
    import SimpleITK as sitk

    shape = sitk.GetArrayViewFromImage(fixed).shape
    idx = np.flatnonzero(mask) if mask is not None else np.arange(int(np.prod(shape)))
    if idx.size == 0:
        return 0.0
    rng = np.random.default_rng(0)
    idx = idx[rng.choice(idx.size, size=min(2000, idx.size), replace=False)]
    pts = _index_to_physical(fixed, np.stack(np.unravel_index(idx, shape), axis=1).astype(float))
    moved = Transform(tfm).transform_points(pts)
    nd = moving.GetDimension()
    mdir = np.asarray(moving.GetDirection(), float).reshape(nd, nd)
    q = np.linalg.solve(mdir @ np.diag(moving.GetSpacing()), (moved - np.asarray(moving.GetOrigin(), float)).T).T
    size = np.asarray(moving.GetSize(), float)
    inside = np.all((q >= -0.5) & (q <= size - 0.5), axis=1)
    return float(np.count_nonzero(inside)) / idx.size


def _set_metric(R: SimpleITK.ImageRegistrationMethod, metric: str, bins: int = 32) -> None:
    if metric == "mi":
        R.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    elif metric == "ncc":
        R.SetMetricAsCorrelation()
    elif metric == "ms":
        R.SetMetricAsMeanSquares()
    else:  # pragma: no cover - validated before
        raise ParameterError(f"register: unknown metric {metric!r}")


def _run_levels(fixed_s: SimpleITK.Image, moving_s: SimpleITK.Image, tfm: SimpleITK.Transform, *,
                metric: str, levels: list[float], samples: int, iterations: list[int], seed: int,
                fmask: SimpleITK.Image | None, mmask: SimpleITK.Image | None, optimizer: str,
                trace: list[float], level_log: list[dict[str, Any]],
                moving_initial: SimpleITK.Transform | None = None) -> float:
    """Optimise ``tfm`` in place over the pyramid; returns the final metric value."""
    import SimpleITK as sitk

    final = float("nan")
    for li, spacing in enumerate(levels):
        f = _pyramid_level(fixed_s, spacing) if spacing > 0 else fixed_s
        m = _pyramid_level(moving_s, spacing) if spacing > 0 else moving_s
        R = sitk.ImageRegistrationMethod()
        _set_metric(R, metric)
        n_vox = int(np.prod(f.GetSize()))
        if fmask is not None:
            fm = _pyramid_level(fmask, spacing, label=True) if spacing > 0 else fmask
            R.SetMetricFixedMask(fm)
            n_vox = int(np.count_nonzero(sitk.GetArrayViewFromImage(fm)))
        if mmask is not None:
            R.SetMetricMovingMask(_pyramid_level(mmask, spacing, label=True) if spacing > 0 else mmask)
        pct = min(1.0, samples / max(n_vox, 1))
        if pct < 1.0:
            R.SetMetricSamplingStrategy(R.RANDOM)
            # SimpleITK's seed 0 means "the wall clock" (not reproducible): shift to 1..2**31-1
            R.SetMetricSamplingPercentage(pct, 1 + (seed + li) % (2**31 - 2))
        else:
            R.SetMetricSamplingStrategy(R.NONE)
        R.SetInterpolator(sitk.sitkLinear)
        n_it = iterations[min(li, len(iterations) - 1)]
        if optimizer == "lbfgsb":
            R.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=n_it,
                                   maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=4 * n_it,
                                   costFunctionConvergenceFactor=1e7)
        else:
            # Steps in mm (scales from physical shift): start at the level's spacing, stop at
            # 0.1 um. A faster shrink (relaxation 0.6, a coarse min step of 5 um) stopped the
            # coarse levels after ~15 iterations on oscillating gradients, 1-2 mm from the optimum.
            R.SetOptimizerAsRegularStepGradientDescent(
                learningRate=max(spacing, 0.5), minStep=1e-4, numberOfIterations=n_it,
                relaxationFactor=0.7, gradientMagnitudeTolerance=1e-8)
            R.SetOptimizerScalesFromPhysicalShift()
        if moving_initial is not None:
            R.SetMovingInitialTransform(moving_initial)
        R.SetInitialTransform(tfm, inPlace=True)
        start = len(trace)
        R.AddCommand(sitk.sitkIterationEvent, lambda R=R: trace.append(float(R.GetMetricValue())))
        try:
            R.Execute(f, m)
        except RuntimeError as err:
            text = str(err)
            if "outside" in text.lower() or "too many samples" in text.lower() or "no valid points" in text.lower():
                raise RegistrationError(
                    "register: the images do not overlap enough after initialisation (the metric "
                    "samples map outside the moving image); check that both images show the same "
                    "anatomy and their origins/directions") from None
            raise
        final = float(R.GetMetricValue())
        level_log.append({"spacing_mm": [float(v) for v in f.GetSpacing()], "size": list(f.GetSize()),
                          "iterations": len(trace) - start, "samples": int(min(samples, n_vox)),
                          "stop": R.GetOptimizerStopConditionDescription()})
    return final


def jacobian_stats(transform: Transform, reference: Image, mask: Image | None = None) -> dict[str, float]:
    """Determinant of the Jacobian of ``transform`` sampled at ``reference``'s voxels.

    Returns min, max, mean, std (within ``mask`` when given) and ``folding_voxels``, the number
    of voxels with det <= 0 (where the map folds: not invertible there).
    """
    import SimpleITK as sitk

    ref = sitk.Image([int(v) for v in reference.size], sitk.sitkUInt8)
    nd = reference.spatial_ndim
    ref.SetSpacing(reference.spacing[:nd])
    ref.SetOrigin(reference.origin[:nd])
    ref.SetDirection(tuple(reference.direction[:nd, :nd].ravel()))
    conv = sitk.TransformToDisplacementFieldFilter()
    conv.SetReferenceImage(ref)
    conv.SetOutputPixelType(sitk.sitkVectorFloat64)
    fieldimg = conv.Execute(transform.to_sitk())
    det = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(fieldimg))
    sel = det[mask.array.astype(bool)] if mask is not None else det.ravel()
    return {"min": float(sel.min()), "max": float(sel.max()), "mean": float(sel.mean()),
            "std": float(sel.std()), "folding_voxels": int(np.count_nonzero(sel <= 0)),
            "n_voxels": int(sel.size)}


def _as_affine(tfm: SimpleITK.Transform) -> SimpleITK.AffineTransform:
    """The same linear map as a SimpleITK ``AffineTransform`` (same centre)."""
    import SimpleITK as sitk

    out = sitk.AffineTransform(tfm.GetDimension())
    out.SetCenter(tfm.GetCenter())
    out.SetMatrix(tfm.GetMatrix())
    out.SetTranslation(tfm.GetTranslation())
    return out


def _polish_linear(fixed_s: SimpleITK.Image, moving_s: SimpleITK.Image, tfm: SimpleITK.Transform, kind: str, *,
                   metric: str, level: float, samples: int, seed: int, fmask: SimpleITK.Image | None,
                   mmask: SimpleITK.Image | None, trace: list[float], level_log: list[dict[str, Any]]) -> None:
    """Refine the linear ``tfm`` in place on the finest level with our L-BFGS-B (:func:`_ffd.polish_linear`)."""
    from medimg.registration import _ffd

    f = _pyramid_level(fixed_s, level) if level > 0 else fixed_s
    m = _pyramid_level(moving_s, level) if level > 0 else moving_s
    fm = (_pyramid_level(fmask, level, label=True) if level > 0 else fmask) if fmask is not None else None
    mm = (_pyramid_level(mmask, level, label=True) if level > 0 else mmask) if mmask is not None else None
    lin = Transform(tfm)
    matrix, offset, log = _ffd.polish_linear(f, m, kind, lin.matrix, lin.offset, metric=metric, samples=samples,
                                             iterations=100, seed=seed + 50, fmask=fm, mmask=mm, trace=trace)
    centre = np.asarray(tfm.GetCenter(), float)
    tfm.SetMatrix(tuple(float(v) for v in matrix.ravel()))
    tfm.SetTranslation(tuple(float(v) for v in offset - centre + matrix @ centre))
    level_log.append(log)


def _linear_stage(fixed_s: SimpleITK.Image, moving_s: SimpleITK.Image, tfm: SimpleITK.Transform, kind: str, *,
                  metric: str, levels: list[float], samples: int, iterations: int, seed: int,
                  fmask: SimpleITK.Image | None, mmask: SimpleITK.Image | None, trace: list[float],
                  level_log: list[dict[str, Any]]) -> float:
    """Optimise the linear ``tfm`` in place over the pyramid with our engine
    (:mod:`medimg.registration._linear`); returns the final metric value.

    Coarse levels: at most :data:`_COARSE_SAMPLES` samples, stop below :data:`_COARSE_TOL_MM`;
    the finest level: ``samples`` samples, stop below :data:`_FINE_TOL_MM`. On the finest
    level of NCC / mean squares, an axis much coarser than the finest (a thick-slice axis) is
    smoothed by half a voxel in both images (brain1, 6.5 mm slices: affine 0.022-0.032 mm mean
    TRE over four seeds, 0.033-0.041 mm without); MI is left unsmoothed (a Gaussian of a
    non-monotonically remapped image is no remapping of the Gaussian of the other: 0.1-0.15 mm
    with it, 0.04-0.07 mm without)."""
    from medimg.registration import _linear

    lin = Transform(tfm)
    matrix, offset = lin.matrix, lin.offset
    size = np.asarray(fixed_s.GetSize(), float)
    spacing = np.asarray(fixed_s.GetSpacing(), float)
    radius = float(np.linalg.norm(size * spacing)) / 2
    finest = float(spacing.min())
    for li, level in enumerate(levels):
        last = li == len(levels) - 1
        f = _linear.pyramid_level(fixed_s, level)
        m = _linear.pyramid_level(moving_s, level)
        if last and metric != "mi":
            sigma = [0.5 if s > 2 * finest else 0.0 for s in f.GetSpacing()]
            if any(sigma):
                f, m = _linear.smoothed(f, sigma), _linear.smoothed(m, sigma)
        fm = _linear.pyramid_level(fmask, level, label=True) if fmask is not None else None
        mm = _linear.pyramid_level(mmask, level, label=True) if mmask is not None else None
        step = max(level, finest)
        matrix, offset, log = _linear.optimise_level(
            f, m, kind, matrix, offset, metric=metric, samples=samples if last else min(samples, _COARSE_SAMPLES),
            seed=seed + li, max_iter=iterations, tol_mm=_FINE_TOL_MM if last else _COARSE_TOL_MM,
            first_step_mm=step, max_step_mm=4 * step, fmask=fm, mmask=mm, radius=radius, trace=trace,
            exact_gradient=metric == "mi")
        level_log.append(log)
    centre = np.asarray(tfm.GetCenter(), float)
    tfm.SetMatrix(tuple(float(v) for v in matrix.ravel()))
    tfm.SetTranslation(tuple(float(v) for v in offset - centre + matrix @ centre))
    return trace[-1] if trace else float("nan")


#: Metric samples on the coarse levels (they only bring the map into the finest level's reach).
_COARSE_SAMPLES = 4000
#: Mattes MI histogram bins of the B-spline FFD (linear registration: 32).
_FFD_MI_BINS = 48


def _ffd_samples(samples: int, metric: str) -> int:
    """Samples per level of the B-spline FFD: at least 20,000; with MI at least 40,000 and twice
    ``samples`` (brain1 deformed and remapped, 32 bins and 20,000 samples: 0.87 mm mean TRE;
    48 bins and 40,000: 0.50-0.63 mm over two seeds; see docs/registration.md)."""
    return max(2 * samples, _FFD_MI_SAMPLES) if metric == "mi" else max(samples, 20000)


_FFD_MI_SAMPLES = 40000
#: Stop a coarse level when no parameter moves by more than this (mm).
_COARSE_TOL_MM = 0.05
#: Stop the finest level when no parameter moves by more than this (mm).
_FINE_TOL_MM = 0.002


def _bspline_stage(fixed_s: SimpleITK.Image, moving_s: SimpleITK.Image, linear: SimpleITK.Transform, *,
                   metric: str, grid_spacing_mm: float, levels: list[float], samples: int,
                   iterations: list[int], seed: int, fmask: SimpleITK.Image | None, mmask: SimpleITK.Image | None,
                   bending: float, trace: list[float],
                   level_log: list[dict[str, Any]]) -> tuple[SimpleITK.Transform, float]:
    """A cubic B-spline FFD composed with ``linear`` (which stays fixed): ``x -> linear(x + u(x))``.

    Coarse to fine: the control grid is refined (exact subdivision, spacing halved) at each
    pyramid level, ending at about ``grid_spacing_mm`` on the finest; each level is optimised by
    our sparse L-BFGS-B (:mod:`medimg.registration._ffd`)."""
    import SimpleITK as sitk

    from medimg.registration import _ffd

    lin = Transform(linear)
    matrix, offset = lin.matrix, lin.offset
    extent = np.array([sz * sp for sz, sp in zip(fixed_s.GetSize(), fixed_s.GetSpacing(), strict=True)])
    n_levels = len(levels)
    coarse = [max(1, int(round(e / grid_spacing_mm / 2 ** (n_levels - 1)))) for e in extent]
    grid = _ffd.Grid.over(fixed_s, coarse)
    coeffs = np.zeros((grid.n_points, fixed_s.GetDimension()))
    final = float("nan")
    for li, spacing in enumerate(levels):
        if li > 0:
            coeffs = grid.refine_coefficients(coeffs)
            grid = grid.refined()
        f = _pyramid_level(fixed_s, spacing) if spacing > 0 else fixed_s
        m = _pyramid_level(moving_s, spacing) if spacing > 0 else moving_s
        fm = (_pyramid_level(fmask, spacing, label=True) if spacing > 0 else fmask) if fmask is not None else None
        mm = (_pyramid_level(mmask, spacing, label=True) if spacing > 0 else mmask) if mmask is not None else None
        coeffs, log = _ffd.optimise_level(
            f, m, grid, coeffs, matrix=matrix, offset=offset, metric=metric, samples=samples,
            iterations=iterations[min(li, len(iterations) - 1)], seed=seed + 100 + li, fmask=fm, mmask=mm,
            bending=bending, trace=trace, bins=_FFD_MI_BINS if metric == "mi" else 32)
        level_log.append(log)
        final = trace[-1] if trace else final
    comp = sitk.CompositeTransform(fixed_s.GetDimension())
    comp.AddTransform(linear)
    comp.AddTransform(grid.to_sitk(coeffs))  # applied first: x -> x + u(x), then the linear map
    return comp, float(final)


def _demons_stage(fixed_s: SimpleITK.Image, moving_start: SimpleITK.Image, *, levels: list[float],
                  iterations: list[int], smoothing_mm: float, histogram_match: bool,
                  level_log: list[dict[str, Any]], trace: list[float]) -> SimpleITK.Image:
    """Multi-resolution diffeomorphic demons between ``fixed_s`` and ``moving_start`` (the moving
    image already warped by the starting transform); returns the displacement field on the fixed grid."""
    import SimpleITK as sitk

    field = None
    for li, spacing in enumerate(levels):
        f = _pyramid_level(fixed_s, spacing) if spacing > 0 else fixed_s
        m = _pyramid_level(moving_start, spacing) if spacing > 0 else moving_start
        if histogram_match:
            m = sitk.HistogramMatching(m, f, numberOfHistogramLevels=256, numberOfMatchPoints=15,
                                       thresholdAtMeanIntensity=True)
        demons = sitk.DiffeomorphicDemonsRegistrationFilter()
        demons.SetNumberOfIterations(iterations[min(li, len(iterations) - 1)])
        # ITK smooths the field with sigmas in voxels: convert the mm value per axis
        demons.SetStandardDeviations([max(0.5, smoothing_mm / s) for s in f.GetSpacing()])
        demons.SetSmoothDisplacementField(True)
        demons.SetUseGradientType(demons.Symmetric)
        demons.SetMaximumUpdateStepLength(0.5)
        demons.AddCommand(sitk.sitkIterationEvent, lambda d=demons: trace.append(float(d.GetMetric())))
        start = len(trace)
        if field is None:
            out = demons.Execute(f, m)
        else:  # carry the coarser field over (extrapolated at the borders, no zero rim)
            init = sitk.Resample(field, f, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64, True)
            out = demons.Execute(f, m, init)
        field = out
        level_log.append({"spacing_mm": [float(v) for v in f.GetSpacing()], "size": list(f.GetSize()),
                          "iterations": len(trace) - start, "stop": "iterations"})
    assert field is not None
    if list(field.GetSize()) != list(fixed_s.GetSize()):
        field = sitk.Resample(field, fixed_s, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64, True)
    return field


def _image_metric(fixed_s: SimpleITK.Image, moving_s: SimpleITK.Image, tfm: SimpleITK.Transform, metric: str,
                  fmask: SimpleITK.Image | None, samples: int, seed: int) -> float:
    """``metric`` (minimised) of ``moving(T(x))`` against ``fixed(x)`` at seeded random fixed voxels."""
    import SimpleITK as sitk

    from medimg.registration import _ffd

    farr = sitk.GetArrayViewFromImage(fixed_s)
    sel = np.ones(farr.shape, bool) if fmask is None else sitk.GetArrayViewFromImage(fmask) > 0
    idx = np.flatnonzero(sel)
    rng = np.random.default_rng(seed)
    if idx.size > samples:
        idx = rng.choice(idx, samples, replace=False)
    zyx = np.stack(np.unravel_index(idx, farr.shape), axis=1)
    pts = np.array([fixed_s.TransformIndexToPhysicalPoint([int(v) for v in p[::-1]]) for p in zyx])
    moved = np.array([tfm.TransformPoint(tuple(p)) for p in pts])
    mov = _ffd._Moving(moving_s, None)
    mvals, _g, valid = mov.sample(moved)
    fvals = farr.ravel()[idx].astype(float)
    fb = _ffd._fixed_bins(fvals[valid], mvals[valid]) if metric == "mi" else None
    return _ffd._metric(metric, fvals[valid], mvals[valid], fb)[0]


# ---------------------------------------------------------------------------- entry point
def register(
    fixed: Image,
    moving: Image,
    *,
    transform: TransformKind | None = None,
    metric: Metric | None = None,
    task: Task = "mono-modal",
    fixed_mask: Image | None = None,
    moving_mask: Image | None = None,
    init: Init = "moments",
    initial_transform: Transform | None = None,
    levels_mm: list[float] | None = None,
    samples: int = 20000,
    iterations: int | None = None,
    grid_spacing_mm: float = 30.0,
    bending: float = 0.0,
    polish: bool = True,
    demons_smoothing_mm: float = 6.0,
    seed: int = 0,
    threads: int | None = None,
) -> RegistrationResult:
    """Register ``moving`` to ``fixed``: find T with ``moving(T(x)) ~ fixed(x)``.

    Parameters
    ----------
    fixed, moving
        Scalar images of the same dimension (2-D or 3-D), any grids.
    transform
        ``"rigid"``, ``"similarity"``, ``"affine"``, ``"bspline"`` (affine then a cubic B-spline
        free-form deformation) or ``"syn"`` (the B-spline result, then multi-resolution
        diffeomorphic demons, kept only when it lowers the metric without folding; see
        ``quality["dense_refinement"]``). ``None``: the task's default (:data:`TASKS`).
    metric
        ``"mi"`` (Mattes mutual information, 32 bins; multi-modal), ``"ncc"`` (normalised
        correlation) or ``"ms"`` (mean squares; same intensities). ``None``: the task's default.
        ``"syn"`` uses the demons force (intensity differences after histogram matching) for its
        deformable part, ``metric`` for the affine part.
    task
        ``"mono-modal"``, ``"multi-modal"`` or ``"longitudinal"``: the defaults for ``transform``
        and ``metric``.
    fixed_mask, moving_mask
        Optional masks on the fixed / moving grid: the metric counts only voxels inside.
    init
        Initial alignment: ``"moments"`` (centres of mass), ``"geometry"`` (image centres) or
        ``"none"``; ignored when ``initial_transform`` is given.
    initial_transform
        A linear transform to start from (fixed to moving).
    levels_mm
        Pyramid spacings in mm, coarse to fine; 0 means the native grid. Each level shrinks each
        axis by ``round(level / spacing)`` (>= 1): the linear engine by block averaging, the
        B-spline path by Gaussian smoothing (sigma = half the shrink, mm) and subsampling.
        Default: 4, 2 (those coarser than 1.5x the finest spacing) and native.
    samples
        Metric samples per level (a seeded random subset of the fixed voxels in the mask). The
        linear engine uses this many on the finest level and at most 4,000 on coarser ones.
    iterations
        Maximum optimiser iterations per level (default 200 linear, 100 B-spline, demons 20/10);
        the linear engine stops a level earlier when no parameter moves by more than 0.05 mm
        (coarse levels) or 0.002 mm (finest level).
    grid_spacing_mm
        B-spline control-point spacing on the finest level (mm); each coarser level has twice the
        spacing of the next (exact refinement between levels).
    bending
        Weight of a bending-energy penalty on the B-spline coefficients (0: none).
    polish
        B-spline / ``"syn"`` only: refine their affine start on the finest level with our
        L-BFGS-B after SimpleITK's gradient descent (which stops early on noisy gradients).
        Rigid / similarity / affine always run our linear engine, which needs no polish.
    demons_smoothing_mm
        Gaussian regularisation of the demons field (mm).
    seed
        Seed of the metric sampling.
    threads
        SimpleITK worker threads for this call (default: SimpleITK's global default).

    Returns
    -------
    RegistrationResult
        ``transform`` (fixed to moving), ``resampled`` (moving on the fixed grid), ``quality``.
    """
    import SimpleITK as sitk

    t0 = time.perf_counter()
    if task not in TASKS:
        from medimg.errors import UnknownNameError

        raise UnknownNameError("task", str(task), TASKS)
    kind = transform or TASKS[task]["transform"]
    metric = metric or TASKS[task]["metric"]
    if kind not in ("rigid", "similarity", "affine", "bspline", "syn"):
        from medimg.errors import UnknownNameError

        raise UnknownNameError("transform", str(kind), ("rigid", "similarity", "affine", "bspline", "syn"))
    if metric not in ("mi", "ncc", "ms"):
        from medimg.errors import UnknownNameError

        raise UnknownNameError("metric", str(metric), ("mi", "ncc", "ms"))
    if init not in ("moments", "geometry", "none"):
        from medimg.errors import UnknownNameError

        raise UnknownNameError("init", str(init), ("moments", "geometry", "none"))
    _check_inputs(fixed, moving, fixed_mask, moving_mask)
    if samples < 100:
        raise ParameterError(f"register: samples must be at least 100, got {samples}")
    if grid_spacing_mm <= 0 or demons_smoothing_mm <= 0:
        raise ParameterError("register: grid_spacing_mm and demons_smoothing_mm must be positive (mm)")
    levels = list(levels_mm) if levels_mm is not None else _default_levels(fixed, kind)
    if not levels or any((not np.isfinite(v)) or v < 0 for v in levels):
        raise ParameterError(f"register: levels_mm must be non-negative spacings in mm, got {levels_mm!r}")
    previous_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    if threads is not None:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        fixed_s, moving_s = _float_sitk(fixed), _float_sitk(moving)
        fmask = sitk.Cast(fixed_mask.to_sitk(), sitk.sitkUInt8) if fixed_mask is not None else None
        mmask = sitk.Cast(moving_mask.to_sitk(), sitk.sitkUInt8) if moving_mask is not None else None
        linear_kind = kind if kind in ("rigid", "similarity", "affine") else "affine"
        # the affine start of a deformable registration with MI: rigid by gradient descent, then
        # affine by the L-BFGS-B polish. MI's gradient descent on all 12 affine parameters drifted
        # to 1.5-1.9x scaling (98 mm TRE) on brain1 deformed and remapped non-monotonically; this
        # way it ended at 2.1 mm (the affine part of that deformation), the B-spline below it.
        mi_deformable = kind in ("bspline", "syn") and metric == "mi" and initial_transform is None
        descent_kind = "rigid" if mi_deformable else linear_kind
        tfm = _initial_linear(descent_kind, fixed_s, moving_s, init, initial_transform)
        overlap = _overlap_fraction(fixed_s, moving_s, tfm,
                                    fixed_mask.array.astype(bool) if fixed_mask is not None else None)
        if overlap < 0.05:
            raise RegistrationError(
                f"register: only {100 * overlap:.1f}% of the fixed image maps inside the moving image "
                f"after '{init}' initialisation: the images do not overlap (check origins/directions)")
        trace: list[float] = []
        level_log: list[dict[str, Any]] = []
        lin_its = [iterations or 200]
        # gradient descent on the pyramid, then (``polish``) our L-BFGS-B on the finest level: the
        # descent stops early on "step too small" (brain1, rigid 8 deg + 10 mm: 0.30 mm mean TRE
        # without, 0.05 mm with the polish; replacing the finest descent level by it: 0.08 mm)
        linear_engine = kind in ("rigid", "similarity", "affine")
        if linear_engine:
            final = _linear_stage(fixed_s, moving_s, tfm, kind, metric=metric, levels=levels, samples=samples,
                                  iterations=iterations or 200, seed=seed, fmask=fmask, mmask=mmask,
                                  trace=trace, level_log=level_log)
        else:
            final = _run_levels(fixed_s, moving_s, tfm, metric=metric, levels=levels, samples=samples,
                                iterations=lin_its, seed=seed, fmask=fmask, mmask=mmask, optimizer="rsgd",
                                trace=trace, level_log=level_log)
        if mi_deformable:
            tfm = _as_affine(tfm)
        if (polish or mi_deformable) and kind not in ("rigid", "similarity", "affine"):
            _polish_linear(fixed_s, moving_s, tfm, linear_kind, metric=metric, level=levels[-1], samples=samples,
                           seed=seed, fmask=fmask, mmask=mmask, trace=trace, level_log=level_log)
            final = trace[-1]
        result_tfm: SimpleITK.Transform = tfm
        if kind == "bspline":
            result_tfm, final = _bspline_stage(
                fixed_s, moving_s, tfm, metric=metric, grid_spacing_mm=grid_spacing_mm, levels=levels,
                samples=_ffd_samples(samples, metric), iterations=[iterations or 100], seed=seed, fmask=fmask,
                mmask=mmask, bending=bending, trace=trace, level_log=level_log)
        elif kind == "syn":
            # start from the B-spline result (affine + FFD); the dense diffeomorphic demons field
            # refines it and is kept only when it improves the metric on independent samples
            # without folding (measured on brain1: demons alone from the affine start ended at
            # 1.1-1.3 mm mean TRE, the FFD at 0.27 mm)
            start_tfm, final = _bspline_stage(
                fixed_s, moving_s, tfm, metric=metric, grid_spacing_mm=grid_spacing_mm, levels=levels,
                samples=_ffd_samples(samples, metric), iterations=[iterations or 100], seed=seed, fmask=fmask,
                mmask=mmask, bending=bending, trace=trace, level_log=level_log)
            moving_start = sitk.Resample(moving_s, fixed_s, start_tfm, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
            demons_levels = [v for v in levels if v > 0] or levels
            demons_its = [iterations] if iterations else [20, 10]
            dfield = _demons_stage(fixed_s, moving_start, levels=demons_levels, iterations=demons_its,
                                   smoothing_mm=demons_smoothing_mm, histogram_match=(metric == "mi"),
                                   level_log=level_log, trace=trace)
            comp = sitk.CompositeTransform(fixed.spatial_ndim)
            comp.AddTransform(start_tfm)
            comp.AddTransform(sitk.DisplacementFieldTransform(sitk.Cast(dfield, sitk.sitkVectorFloat64)))
            before = _image_metric(fixed_s, moving_s, start_tfm, metric, fmask, 20000, seed + 999)
            after = _image_metric(fixed_s, moving_s, comp, metric, fmask, 20000, seed + 999)
            folds = jacobian_stats(Transform(comp), fixed, fixed_mask)["folding_voxels"]
            accepted = after < before and folds == 0
            dense_log = {"metric_before": before, "metric_after": after, "folding_voxels": folds,
                         "accepted": bool(accepted)}
            result_tfm = comp if accepted else start_tfm
            final = after if accepted else before
        out_tfm = Transform(result_tfm)
        resampled = resample_like(moving.with_array(moving.array.astype(np.float32)) if moving.is_label else moving,
                                  fixed, transform=out_tfm, interpolator="linear",
                                  default_value=float(np.min(moving.array)))
    finally:
        if threads is not None:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous_threads)
    quality: dict[str, Any] = {
        "engine": ("medimg linear (numpy; see medimg.registration._linear)" if linear_engine
                   else f"SimpleITK {sitk.Version.VersionString()} + medimg FFD"),
        "transform": kind, "metric": metric, "task": task, "init": init if initial_transform is None else "given",
        "final_metric": final, "metric_trace": trace, "levels": level_log,
        "overlap_after_init": overlap,
    }
    if kind == "syn":
        quality["dense_refinement"] = dense_log
    if kind in ("bspline", "syn"):
        quality["jacobian"] = jacobian_stats(out_tfm, fixed, fixed_mask)
    quality["time_s"] = time.perf_counter() - t0
    return RegistrationResult(transform=out_tfm, resampled=resampled, quality=quality)


for _name in ("rigid", "similarity", "affine", "bspline", "syn"):
    _registration.register(_name, fixed={"transform": _name})(register)
del _name
