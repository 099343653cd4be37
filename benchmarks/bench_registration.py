"""Intensity registration: medimg vs elastix (itk-elastix, default parameter maps) vs SimpleITK as
usually written, on brain1 deformed by known transforms, in one run.

Data: brain1 (PyRadiomics test MR, 256 x 256 x 25, 0.78 x 0.78 x 6.5 mm, BSD-3) from
``$MEDIMG_REFERENCE_DATA/mri-brain1`` or ``../shared/data/mri-brain1`` beside the repository
(the 64 x 64 x 25 copy in ``tests/data`` when absent, said in the output). Each case builds the
moving image as ``moving(y) = fixed(G(y))`` (cubic B-spline interpolation) for a known map G
from moving to fixed space, so the true fixed-to-moving transform is G's inverse and the target
registration error at a head point y of the moving image is ``|T(G(y)) - y|``, with no inversion.

Cases: ``rigid`` (rotation 8 deg about an oblique axis, translation 10 mm), ``affine`` (rotation
5 deg, scaling 1.08 / 0.93 / 1.05, shear 0.06, translation 6 mm), ``bspline`` (a cubic B-spline,
3 x 3 x 2 mesh, random coefficients scaled to at most 6 mm in the head) and ``multi-modal`` (the
rigid case with the moving intensities remapped non-monotonically, ``sin(v / 150) * 100 +
0.0005 v^2``) and ``multi-modal bspline`` (the B-spline case so remapped). TRE over 1,000 random points of the moving head (Otsu mask, holes filled, largest
component): mean and max over all of them, and over the "interior" ones whose fixed and moving
positions lie at least one slice (6.5 mm) inside the top and bottom faces of the volume (at the
faces the deformation moves anatomy out of the field of view, where no method can see it).

Tools, each on one thread (``pin_threads``; elastix also ``MaximumNumberOfThreads 1``):
medimg ``register(fixed, moving, transform=...)`` with the task defaults (mono-modal: NCC;
multi-modal: task ``multi-modal``, Mattes MI); elastix with ``GetDefaultParameterMap(kind)``
(``rigid``, ``affine``, ``affine`` + ``bspline`` for the B-spline case; Mattes MI, 4 levels,
adaptive stochastic gradient descent, 10 mm final grid with bending energy); SimpleITK as its
notebooks write it (geometry-centred initialiser, Mattes MI with 50 bins on 1 % random samples,
gradient descent with learning rate 1 and physical-shift scales, shrink 4/2/1 and smoothing
2/1/0 mm; B-spline: the linear result then a 50 mm mesh with ``SetInitialTransformAsBSpline``
scale factors 1/2/4 and gradient descent with line search, as in its FFD notebook). Time: the
registration call only (in process, images in memory), medians of runs interleaved between the
tools (medimg, elastix, SimpleITK, medimg, elastix, SimpleITK, ...) after a warm-up round (each
tool once on the rigid case): 5 runs on the linear cases; on the B-spline cases medimg 5 runs,
elastix 3 (B-spline) and 1 (multi-modal B-spline) and SimpleITK 1, as those calls take 1-4
minutes each (``SLOW_RUNS``; the table's "runs" column says it for every row). A full run takes
about 16 minutes on the shared 2-core machine (load 3-4); the machine's load is recorded before
and after. Folding voxels: Jacobian determinant <= 0 on the fixed grid. TRE and folding are
from a tool's first run (the section says how far later runs' mean TRE differed).
``BENCH_REPEATS=1`` caps every count at 1 for a quick smoke test.

``--cases rigid affine multi-modal --tools medimg elastix`` runs a part (printed only; the
BENCHMARKS.md section is rewritten by a full run).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from _common import (
    ROOT,
    bench_repeats,
    comparison,
    load_average,
    pin_threads,
    protocol,
    write_section,
)

N_POINTS = 1000
MAX_BSPLINE_MM = 6.0
#: Fewer than 5 runs for the slow library calls (1-4 minutes each), so that a full run stays near
#: a quarter of an hour; every other (case, tool) gets 5 (``bench_repeats``).
SLOW_RUNS = {("bspline", "elastix"): 3, ("bspline", "SimpleITK"): 1,
             ("multi-modal bspline", "elastix"): 1, ("multi-modal bspline", "SimpleITK"): 1}


def reference_image() -> tuple[Path, str]:
    env = os.environ.get("MEDIMG_REFERENCE_DATA")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data",
                                                      ROOT.parent.parent / "shared" / "data"]:
        path = candidate / "mri-brain1" / "brain1_image.nrrd"
        if path.exists():
            return path, "brain1 (256 x 256 x 25, 0.78 x 0.78 x 6.5 mm)"
    return (ROOT / "tests" / "data" / "mri-brain1" / "brain1_small_image.nrrd",
            "brain1_small_image from tests/data (64 x 64 x 25, 3.1 x 3.1 x 6.5 mm; full brain1 not found)")


def head_mask(array: np.ndarray) -> np.ndarray:
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    fg = ndimage.binary_fill_holes(array > threshold_otsu(array))
    lab, _n = ndimage.label(fg)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _rotation(axis: np.ndarray, deg: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return Rotation.from_rotvec(axis * np.deg2rad(deg)).as_matrix()


def generators(fixed) -> dict:
    """The known maps G (moving -> fixed), as SimpleITK transforms."""
    import SimpleITK as sitk

    centre = fixed.index_to_physical((np.array(fixed.size) - 1) / 2.0)
    out = {}
    # rigid truth T (fixed -> moving): 8 deg about an oblique axis, 10 mm; G = T^-1
    rigid = sitk.AffineTransform(3)
    rigid.SetCenter(tuple(centre))
    rigid.SetMatrix(tuple(_rotation([0.2, 0.3, 1.0], 8.0).ravel()))
    rigid.SetTranslation((6.0, -6.0, 5.2915))  # |t| = 10 mm
    out["rigid"] = rigid.GetInverse()
    affine = sitk.AffineTransform(3)
    affine.SetCenter(tuple(centre))
    shear = np.eye(3)
    shear[0, 1] = 0.06
    affine.SetMatrix(tuple((_rotation([0.0, 0.4, 1.0], 5.0) @ np.diag([1.08, 0.93, 1.05]) @ shear).ravel()))
    affine.SetTranslation((4.0, 3.0, -3.0))
    out["affine"] = affine.GetInverse()
    ref = fixed.to_sitk()
    g = sitk.BSplineTransformInitializer(ref, [3, 3, 2], 3)
    p = np.random.default_rng(1).normal(0, 1, g.GetNumberOfParameters())
    g.SetParameters(tuple(p))
    field = sitk.TransformToDisplacementField(g, sitk.sitkVectorFloat64, ref.GetSize(), ref.GetOrigin(),
                                              ref.GetSpacing(), ref.GetDirection())
    largest = np.linalg.norm(sitk.GetArrayFromImage(field), axis=-1)[head_mask(fixed.array)].max()
    g.SetParameters(tuple(p * MAX_BSPLINE_MM / largest))
    out["bspline"] = g
    out["multi-modal"] = out["rigid"]
    out["multi-modal bspline"] = out["bspline"]
    return out


def make_case(fixed, g, remap: bool):
    import SimpleITK as sitk

    from medimg.core.image import Image

    src = fixed.to_sitk()
    moving = Image.from_sitk(sitk.Resample(src, src, g, sitk.sitkBSpline, 0.0, sitk.sitkFloat32))
    head = head_mask(moving.array)
    if remap:
        v = moving.array
        moving = moving.with_array((np.sin(v / 150.0) * 100 + 0.0005 * v**2).astype(np.float32))
    rng = np.random.default_rng(0)
    idx = np.argwhere(head).astype(float)
    idx = idx[rng.choice(len(idx), N_POINTS, replace=False)] + rng.uniform(-0.5, 0.5, (N_POINTS, 3))
    y = moving.index_to_physical(idx[:, ::-1])
    x = np.array([g.TransformPoint(tuple(p)) for p in y])
    nz = fixed.size[2]
    zx, zy = fixed.physical_to_index(x)[:, 2], fixed.physical_to_index(y)[:, 2]
    interior = (np.minimum(zx, zy) >= 1) & (np.maximum(zx, zy) <= nz - 2)
    return moving, y, x, interior


# ----------------------------------------------------------------------------- the tools
def run_medimg(fixed, moving, case: str):
    from medimg.registration import register

    kind = {"multi-modal": "rigid", "multi-modal bspline": "bspline"}.get(case, case)
    task = "multi-modal" if case.startswith("multi-modal") else "mono-modal"
    t0 = time.perf_counter()
    result = register(fixed, moving, transform=kind, task=task, threads=1)
    elapsed = time.perf_counter() - t0
    folds = result.quality["jacobian"]["folding_voxels"] if "jacobian" in result.quality else None
    return elapsed, result.transform.transform_points, folds


def _to_itk(image):
    import itk

    arr = np.ascontiguousarray(image.array.astype(np.float32))
    out = itk.image_from_array(arr)
    out.SetSpacing([float(v) for v in image.spacing])
    out.SetOrigin([float(v) for v in image.origin])
    out.SetDirection(itk.matrix_from_array(np.ascontiguousarray(image.direction.astype(np.float64))))
    return out


def run_elastix(fixed, moving, case: str):
    import itk
    import SimpleITK as sitk
    from scipy.ndimage import map_coordinates

    f, m = _to_itk(fixed), _to_itk(moving)
    po = itk.ParameterObject.New()
    maps = {"rigid": ["rigid"], "affine": ["affine"], "bspline": ["affine", "bspline"],
            "multi-modal": ["rigid"], "multi-modal bspline": ["affine", "bspline"]}[case]
    for name in maps:
        po.AddParameterMap(po.GetDefaultParameterMap(name))
    for i in range(po.GetNumberOfParameterMaps()):
        po.SetParameter(i, "MaximumNumberOfThreads", "1")
    t0 = time.perf_counter()
    _res, params = itk.elastix_registration_method(f, m, parameter_object=po, log_to_console=False)
    elapsed = time.perf_counter() - t0
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # transformix writes deformationField.nii there
        field = itk.array_from_image(itk.transformix_deformation_field(m, params, output_directory=tmp))
    field = field.astype(np.float64)  # (z, y, x, 3) mm, fixed grid

    def apply(points: np.ndarray) -> np.ndarray:
        ci = fixed.physical_to_index(points)[:, ::-1].T
        disp = np.stack([map_coordinates(field[..., k], ci, order=1, mode="nearest") for k in range(3)], axis=1)
        return points + disp

    folds = None
    if case.endswith("bspline"):
        fimg = sitk.GetImageFromArray(field, isVector=True)
        fimg.CopyInformation(fixed.to_sitk())
        det = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(fimg))
        folds = int(np.count_nonzero(det <= 0))
    return elapsed, apply, folds


def _sitk_linear(f, m, kind: str):
    import SimpleITK as sitk

    base = sitk.Euler3DTransform() if kind == "rigid" else sitk.AffineTransform(3)
    init = sitk.CenteredTransformInitializer(f, m, base, sitk.CenteredTransformInitializerFilter.GEOMETRY)
    R = sitk.ImageRegistrationMethod()
    R.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    R.SetMetricSamplingStrategy(R.RANDOM)
    R.SetMetricSamplingPercentage(0.01, 1)
    R.SetInterpolator(sitk.sitkLinear)
    R.SetOptimizerAsGradientDescent(learningRate=1.0, numberOfIterations=100, convergenceMinimumValue=1e-6,
                                    convergenceWindowSize=10)
    R.SetOptimizerScalesFromPhysicalShift()
    R.SetShrinkFactorsPerLevel([4, 2, 1])
    R.SetSmoothingSigmasPerLevel([2, 1, 0])
    R.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    R.SetInitialTransform(init, inPlace=False)
    return R.Execute(f, m)


def run_simpleitk(fixed, moving, case: str):
    import SimpleITK as sitk

    from medimg.core.transform import Transform
    from medimg.registration import jacobian_stats

    f = sitk.Cast(fixed.to_sitk(), sitk.sitkFloat32)
    m = sitk.Cast(moving.to_sitk(), sitk.sitkFloat32)
    t0 = time.perf_counter()
    if not case.endswith("bspline"):
        tfm = _sitk_linear(f, m, "rigid" if case in ("rigid", "multi-modal") else "affine")
    else:
        linear = _sitk_linear(f, m, "affine")
        mesh = [max(1, int(round(sz * sp / 50.0))) for sz, sp in zip(f.GetSize(), f.GetSpacing(), strict=True)]
        bs = sitk.BSplineTransformInitializer(f, mesh)
        R = sitk.ImageRegistrationMethod()
        R.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
        R.SetMetricSamplingStrategy(R.RANDOM)
        R.SetMetricSamplingPercentage(0.01, 1)
        R.SetInterpolator(sitk.sitkLinear)
        R.SetOptimizerAsGradientDescentLineSearch(5.0, 100, convergenceMinimumValue=1e-4, convergenceWindowSize=5)
        R.SetShrinkFactorsPerLevel([4, 2, 1])
        R.SetSmoothingSigmasPerLevel([2, 1, 0])
        R.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        R.SetMovingInitialTransform(linear)
        R.SetInitialTransformAsBSpline(bs, inPlace=True, scaleFactors=[1, 2, 4])
        out = R.Execute(f, m)
        tfm = sitk.CompositeTransform([linear, out])
    elapsed = time.perf_counter() - t0
    wrapped = Transform(tfm)
    folds = jacobian_stats(wrapped, fixed)["folding_voxels"] if case.endswith("bspline") else None
    return elapsed, wrapped.transform_points, folds


TOOLS = {"medimg": run_medimg, "elastix": run_elastix, "SimpleITK": run_simpleitk}


CASES = ("rigid", "affine", "bspline", "multi-modal", "multi-modal bspline")


def _fmt_time(seconds: float) -> str:
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def main(argv: list[str] | None = None) -> None:
    import argparse
    import statistics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES),
                        help="run only these cases (default: all)")
    parser.add_argument("--tools", nargs="+", choices=list(TOOLS), default=list(TOOLS),
                        help="run only these tools (default: all)")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not rewrite the BENCHMARKS.md section (for a partial run)")
    args = parser.parse_args(argv)
    partial = args.no_write or set(args.cases) != set(CASES) or set(args.tools) != set(TOOLS)
    for tool in set(TOOLS) - set(args.tools):
        TOOLS.pop(tool)
    threads = pin_threads()
    from medimg import io

    path, source = reference_image()
    fixed = io.read(path)
    fixed = fixed.with_array(fixed.array.astype(np.float32))
    try:
        import itk  # noqa: F401
    except ImportError:
        TOOLS.pop("elastix", None)
    n = bench_repeats()
    load_before = load_average()
    t_start = time.perf_counter()
    gens = generators(fixed)
    cases = {case: make_case(fixed, gens[case], remap=case.startswith("multi-modal")) for case in args.cases}
    # warm-up round: every tool once on the rigid case (libraries loaded, caches filled), not timed
    warm = cases.get("rigid") or make_case(fixed, gens["rigid"], remap=False)
    for fn in TOOLS.values():
        fn(fixed, warm[0], "rigid")
    rows = []
    for case, (moving, y, x, interior) in cases.items():
        start = np.linalg.norm(x - y, axis=1)
        rows.append((case, "(start: identity)", None, 0, start, interior, None, None))
        counts = {tool: min(n, SLOW_RUNS.get((case, tool), n)) for tool in TOOLS}
        runs: dict[str, list[tuple[float, np.ndarray, int | None]]] = {tool: [] for tool in TOOLS}
        for round_ in range(max(counts.values())):  # interleaved: A B C, A B C, ...
            for tool, fn in TOOLS.items():
                if round_ >= counts[tool]:
                    continue
                elapsed, apply, folds = fn(fixed, moving, case)
                err = np.linalg.norm(apply(x) - y, axis=1)
                runs[tool].append((elapsed, err, folds))
                print(f"{case:19s} {tool:9s} run {round_ + 1}/{counts[tool]} {elapsed:7.2f} s  TRE mean "
                      f"{err.mean():.3f} max {err.max():.2f} mm  interior mean {err[interior].mean():.3f} "
                      f"max {err[interior].max():.2f}  folds {folds}", flush=True)
        for tool in TOOLS:
            times = [r[0] for r in runs[tool]]
            _t, err, folds = runs[tool][0]
            spread = max(float(abs(r[1].mean() - err.mean())) for r in runs[tool])
            rows.append((case, tool, statistics.median(times), len(times), err, interior, folds, spread))
    load_after = load_average()
    total = time.perf_counter() - t_start
    spread_all = max((r[7] for r in rows if r[7] is not None), default=0.0)
    medimg_time = {r[0]: r[2] for r in rows if r[1] == "medimg"}
    lines = [
        "## Intensity registration (medimg vs elastix vs SimpleITK)",
        "",
        protocol(threads + "; elastix MaximumNumberOfThreads 1; medimg threads=1", load_before, load_after,
                 "medians of runs interleaved between the tools (medimg, elastix, SimpleITK, ...) after a warm-up "
                 f"round (each tool once on the rigid case); the \"runs\" column gives each row's count: {n}, fewer "
                 f"only for the slow B-spline library calls (1-4 minutes each); the whole script took {total / 60:.0f} "
                 "min"),
        f"Data: {source}, deformed by known maps (see `benchmarks/bench_registration.py`): rigid 8 deg + 10 mm; "
        "affine (5 deg, scaling 1.08/0.93/1.05, shear 0.06, 6 mm); a smooth cubic B-spline up to "
        f"{MAX_BSPLINE_MM:g} mm in the head; multi-modal = the rigid case with intensities remapped "
        "non-monotonically; multi-modal bspline = the B-spline case so remapped (medimg: task multi-modal, MI). TRE over "
        f"{N_POINTS} head points (mm); 'interior' = the points at least one slice inside the top and bottom "
        "faces in both images. Time: the registration call (in process, images in memory). TRE and folding "
        f"voxels from each tool's first run (later runs' mean TRE differed by at most {spread_all:.1e} mm).",
        "",
        comparison("defaults", "elastix with its default parameter maps (B-spline case: default affine then "
                   "default bspline; Mattes MI, 4 levels, adaptive stochastic gradient descent); SimpleITK as its "
                   "notebooks write it (Mattes MI on 1 % random samples, gradient descent, 3 levels; B-spline 50 mm "
                   "mesh refined x2 x4); medimg `register` with the task defaults. The same images, the same known "
                   "transforms and the same TRE points for every tool, but each tool's own metric, optimiser and "
                   "pyramid: a same-computation timing is not possible (no tool runs another's optimiser), so the "
                   "TRE and folding columns show what each tool's time buys. In process only: the tools are called "
                   "from Python on images in memory (elastix's and medimg's command lines are not timed here)"),
        "",
        "| case | tool | runs | time (s) | time / medimg | TRE mean | TRE max | interior mean | interior max | folding voxels |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, tool, elapsed, count, err, interior, folds, _spread in rows:
        t = "" if elapsed is None else _fmt_time(elapsed)
        ratio = "" if elapsed is None or case not in medimg_time else f"{elapsed / medimg_time[case]:.1f}x"
        slow = (case, tool) in SLOW_RUNS and count < 5
        k = "" if elapsed is None else (f"{count} (slow call)" if slow else f"{count}")
        fv = "" if folds is None else str(folds)
        lines.append(f"| {case} | {tool} | {k} | {t} | {ratio} | {err.mean():.3f} | {err.max():.2f} | "
                     f"{err[interior].mean():.3f} | {err[interior].max():.2f} | {fv} |")
    lines += ["", "Issue targets: linear cases at elastix's accuracy (mean TRE <= 0.05 mm rigid/affine, <= 0.1 mm "
              "multi-modal) in at most half its time; B-spline mean TRE <= 0.5 mm and max <= 2 mm in at most half "
              "of elastix's time, with no folding voxels."]
    if partial:
        print("\n".join(lines))
        print("(partial run: BENCHMARKS.md not rewritten)")
        return
    write_section("registration", "\n".join(lines))


if __name__ == "__main__":
    import sys

    # through benchmarks/run.py (runpy keeps run.py's arguments: benchmark names) those are not ours
    main([a for a in sys.argv[1:] if not a.startswith("bench_")])
