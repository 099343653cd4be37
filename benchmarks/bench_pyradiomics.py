"""medimg's PyRadiomics mode vs PyRadiomics itself, in process, one thread, files read each time.

Cases: brain1 (full 256 x 256 x 25 MRI, 4,137-voxel label), the IBSI CT phantom (125,256-voxel ROI),
a compact 143-voxel ROI and a 168-voxel ROI of 55 fragments (both drawn on the brain1 image;
written to a temporary folder) and a batch of 200 brain1 cases with shifted labels (``BENCH_BATCH``). Both tools run
the same computation: PyRadiomics's default settings (binWidth 25, 3-D, no resampling) with
image type Original only, and with Original + LoG (sigma 1, 3 mm) + Wavelet (coif1, level 1).
Both are given the image and mask files (PyRadiomics's ``execute(image_path, mask_path)``, medimg's
``extract_pyradiomics(image_path, mask_path, params)``), so each run reads the files; both run pinned
to one thread the same way (``_common.pin_threads``: environment, BLAS pools, SimpleITK). Wall time
per case is the median of interleaved runs, after one warm-up each. Every feature is compared, and
the largest relative difference is reported. Usage: ``python benchmarks/bench_pyradiomics.py``.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import ROOT, load_average, machine, pin_threads, write_section

DATA = Path(os.environ.get("MEDIMG_REFERENCE_DATA", ROOT.parent / "shared" / "data"))
if not DATA.exists():
    DATA = Path("/work/shared/data")
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
BATCH = int(os.environ.get("BENCH_BATCH", "200"))


def _small_rois(tmp: Path) -> dict[str, tuple[str, str]]:
    import SimpleITK as sitk

    img = sitk.ReadImage(str(DATA / "mri-brain1" / "brain1_image.nrrd"))
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "mri-brain1" / "brain1_label.nrrd")))
    z, y, x = (int(v) for v in np.argwhere(lab == 1).mean(0).round())
    compact = np.zeros(lab.shape, np.uint8)
    zz, yy, xx = np.ogrid[:lab.shape[0], :lab.shape[1], :lab.shape[2]]
    dist = ((zz - z) * 8.3) ** 2 + (yy - y) ** 2 + (xx - x) ** 2
    compact.ravel()[np.argsort(dist, axis=None, kind="stable")[:143]] = 1
    rng = np.random.default_rng(7)
    frag = np.zeros(lab.shape, np.uint8)
    sizes = [3] * 52 + [4] * 3  # 55 fragments, 168 voxels
    for n in sizes:
        while True:
            c = (int(rng.integers(z - 2, z + 3)), int(rng.integers(y - 30, y + 30)), int(rng.integers(x - 30, x + 30)))
            if not frag[c[0] - 1:c[0] + 2, c[1] - 1:c[1] + 2, c[2] - 1:c[2] + n + 1].any():
                frag[c[0], c[1], c[2]:c[2] + n] = 1
                break
    out = {}
    for name, arr in (("compact-143", compact), ("fragments-55", frag)):
        m = sitk.GetImageFromArray(arr)
        m.CopyInformation(img)
        p = tmp / f"{name}_label.nrrd"
        sitk.WriteImage(m, str(p))
        out[name] = (str(DATA / "mri-brain1" / "brain1_image.nrrd"), str(p))
    return out


def _interleaved(funcs: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU (process) time (s) of each function, runs alternating between the
    functions after one warm-up each. The CPU time is less sensitive to the shared machine's load
    (both tools run in this process on one thread)."""
    for func in funcs.values():
        func()
    times: dict = {name: ([], []) for name in funcs}
    for _ in range(repeats):
        for name, func in funcs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            func()
            times[name][0].append(time.perf_counter() - w0)
            times[name][1].append(time.process_time() - c0)
    return {name: (float(np.median(w)), float(np.median(c))) for name, (w, c) in times.items()}


def _first_call(case: tuple[str, str]) -> dict[str, float]:
    """Median wall time (s) of a fresh process computing brain1's Original features once, per tool."""
    import subprocess

    code = {"PyRadiomics": "import logging, radiomics; from radiomics import featureextractor; "
                           "radiomics.setVerbosity(logging.ERROR); "
                           "featureextractor.RadiomicsFeatureExtractor().execute(*sys.argv[1:3])",
            "medimg (compiled kernels)": "from medimg.features.pyradiomics_compat import extract_pyradiomics; "
                                         "extract_pyradiomics(*sys.argv[1:3], compiled=True)",
            "medimg (NumPy path)": "from medimg.features.pyradiomics_compat import extract_pyradiomics; "
                                   "extract_pyradiomics(*sys.argv[1:3], compiled=False)",
            "medimg (default, automatic)": "from medimg.features.pyradiomics_compat import extract_pyradiomics; "
                                           "extract_pyradiomics(*sys.argv[1:3])"}
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cached as in an installed package
    times: dict[str, list[float]] = {k: [] for k in code}
    for rep in range(REPEATS + 1):
        for name, src in code.items():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import sys; " + src, *case], check=True, env=env)
            if rep:  # the first round warms the caches (bytecode, numba's machine code)
                times[name].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    import radiomics
    from radiomics import featureextractor

    sys.path.insert(0, str(ROOT / "src"))
    import SimpleITK as sitk

    from medimg.features import extract
    from medimg.features.pyradiomics_compat import extract_pyradiomics
    from medimg.io import read

    threads = pin_threads(1)
    radiomics.setVerbosity(logging.ERROR)
    load_before = load_average()
    tmp = Path(tempfile.mkdtemp())
    cases = {"brain1": (str(DATA / "mri-brain1" / "brain1_image.nrrd"), str(DATA / "mri-brain1" / "brain1_label.nrrd")),
             "ibsi-ct": (str(DATA / "ibsi1-ct-phantom" / "nifti" / "image" / "phantom.nii.gz"),
                         str(DATA / "ibsi1-ct-phantom" / "nifti" / "mask" / "mask.nii.gz"))}
    cases.update(_small_rois(tmp))
    filtered = {"setting": {"binWidth": 25}, "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 3.0]}, "Wavelet": {}}}
    rows = []
    batch_totals: list[tuple] = []
    memory: list[tuple] = []
    defaults: list[tuple] = []
    for case, (img, msk) in cases.items():
        for label, params in (("Original", None), ("Original + LoG + Wavelet", filtered)):
            ex = featureextractor.RadiomicsFeatureExtractor(params) if params else featureextractor.RadiomicsFeatureExtractor()
            ex.settings["additionalInfo"] = False
            res: dict = {}
            funcs = {"pyradiomics": lambda ex=ex, img=img, msk=msk, res=res: res.__setitem__("p", ex.execute(img, msk)),
                     "medimg": lambda img=img, msk=msk, params=params, res=res: res.__setitem__(
                         "m", extract_pyradiomics(img, msk, params, compiled=True))}
            # The same computation on data already in memory (each tool's image objects, read once before timing).
            s_img, s_msk, m_img, m_msk = sitk.ReadImage(img), sitk.ReadImage(msk), read(img), read(msk)
            funcs["pyradiomics-mem"] = lambda ex=ex, a=s_img, b=s_msk: ex.execute(a, b)
            funcs["medimg-mem"] = lambda a=m_img, b=m_msk, params=params: extract_pyradiomics(a, b, params, compiled=True)
            if params is None:  # each its defaults: medimg's own (IBSI) default extraction, files read
                funcs["medimg-default"] = lambda img=img, msk=msk, res=res: res.__setitem__(
                    "d", extract(read(img), read(msk)))
            reps = REPEATS
            t = _interleaved(funcs, reps)
            ref = {k: float(v) for k, v in res["p"].items() if not k.startswith("diagnostics")}
            got = res["m"]
            assert set(ref) == set(got), set(ref) ^ set(got)
            worst = max(abs(got[k] - v) / max(abs(v), 1e-12) for k, v in ref.items()
                        if not (np.isnan(v) and np.isnan(got[k])))
            rows.append((case, label, len(ref), *t["pyradiomics"], *t["medimg"], worst))
            memory.append((case, label, *t["pyradiomics-mem"], *t["medimg-mem"]))
            if params is None:
                defaults.append((case, len(ref), *t["pyradiomics"], len(res["d"]), *t["medimg-default"]))
            print(rows[-1], flush=True)
    # Batch: brain1 with the label shifted (a different ROI per case), Original and with filters;
    # the tools alternate case by case (PyRadiomics case k, medimg case k, ...).
    lab = sitk.ReadImage(cases["brain1"][1])
    batch = []
    for k in range(BATCH):
        dy, dx = (k % 15) - 7, (k // 15) % 15 - 7
        arr = np.roll(sitk.GetArrayFromImage(lab), (dy, dx), axis=(1, 2))
        m = sitk.GetImageFromArray(arr)
        m.CopyInformation(lab)
        p = tmp / f"batch{k}.nrrd"
        sitk.WriteImage(m, str(p))
        batch.append(str(p))
    for label, params in (("Original", None), ("Original + LoG + Wavelet", filtered)):
        ex = featureextractor.RadiomicsFeatureExtractor(params) if params else featureextractor.RadiomicsFeatureExtractor()
        ex.settings["additionalInfo"] = False
        img = cases["brain1"][0]
        ex.execute(img, batch[0]), extract_pyradiomics(img, batch[0], params, compiled=True)  # warm-up
        per: dict[str, list[tuple[float, float]]] = {"p": [], "m": []}
        worst = 0.0
        for path in batch:
            w0, c0 = time.perf_counter(), time.process_time()
            ref = ex.execute(img, path)
            per["p"].append((time.perf_counter() - w0, time.process_time() - c0))
            w0, c0 = time.perf_counter(), time.process_time()
            got = extract_pyradiomics(img, path, params, compiled=True)
            per["m"].append((time.perf_counter() - w0, time.process_time() - c0))
            worst = max([worst] + [abs(got[k] - float(v)) / max(abs(float(v)), 1e-12) for k, v in ref.items()
                                   if not k.startswith("diagnostics") and not (np.isnan(float(v)) and np.isnan(got[k]))])
        med = {k: np.median(np.asarray(v), axis=0) for k, v in per.items()}
        tot = {k: np.asarray(v).sum(axis=0) for k, v in per.items()}
        rows.append((f"batch of {BATCH} brain1 ROIs (per case)", label, len(got), *med["p"], *med["m"], worst))
        batch_totals.append((label, BATCH, *tot["p"], *tot["m"]))
        print(rows[-1], batch_totals[-1], flush=True)
    first = _first_call(cases["brain1"])
    load_after = load_average()
    lines = [
        "## PyRadiomics mode: medimg vs PyRadiomics (same computation)",
        "",
        f"Machine: {machine()}; {threads}. Same computation: in process, both tools given the image and mask "
        f"files (read in every run; medimg reads a gzip NRRD image only up to the ROI's last slice when "
        f"Original alone is computed), PyRadiomics's default settings (additionalInfo off in PyRadiomics), "
        f"the same image types; median of {REPEATS} interleaved runs after a warm-up; "
        f"the batch alternates the tools case by case (each case a different ROI) and gives the median per case. "
        f"medimg runs its compiled kernels (numba, `medimg.core.jit`; loaded by the warm-up run, their one-time "
        f"cost in a fresh process is measured below; `compiled=True`: the default switches to them once a process "
        f"has spent as long on the NumPy path as loading them costs, `medimg.core.jit.SWITCH_COST_S`). Wall time is what a user waits; CPU time (this process, one "
        f"thread) is less sensitive to the other jobs on the machine. {load_before} before, {load_after} after (the machine is shared "
        f"with other jobs: the load average says how much). `benchmarks/bench_pyradiomics.py`.",
        "",
        "| case | image types | features | PyRadiomics wall (s) | medimg wall (s) | faster by (wall) "
        "| PyRadiomics CPU (s) | medimg CPU (s) | faster by (CPU) | largest relative difference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case, label, n, tp, cp, tm, cm, w in rows:
        lines.append(f"| {case} | {label} | {n} | {tp:.4f} | {tm:.4f} | {tp / tm:.1f}x | {cp:.4f} | {cm:.4f} "
                     f"| {cp / cm:.1f}x | {w:.1e} |")
    lines += ["", "The same computation on data in memory (in process; each tool given its own image objects, "
              "read from the files once before timing: SimpleITK images for PyRadiomics, medimg Images for medimg), "
              "in the same interleaved runs:", "",
              "| case | image types | PyRadiomics wall (s) | medimg wall (s) | faster by (wall) | PyRadiomics CPU (s) "
              "| medimg CPU (s) | faster by (CPU) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for case, label, tp, cp, tm, cm in memory:
        lines.append(f"| {case} | {label} | {tp:.4f} | {tm:.4f} | {tp / tm:.1f}x | {cp:.4f} | {cm:.4f} | {cp / cm:.1f}x |")
    lines += ["", "Batch totals (s, the whole sequential pass):", "",
              "| image types | cases | PyRadiomics wall | PyRadiomics CPU | medimg wall | medimg CPU | faster by (wall) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for label, n, tp, cp, tm, cm in batch_totals:
        lines.append(f"| {label} | {n} | {tp:.1f} | {cp:.1f} | {tm:.1f} | {cm:.1f} | {tp / tm:.1f}x |")
    lines += ["", "First case in a fresh process (end to end: interpreter, imports, files read, brain1 Original "
              f"computed; medimg's compiled kernels loaded from numba's cache, as after installation), median of "
              f"{REPEATS} interleaved runs: " + ", ".join(f"{k} {v:.2f} s" for k, v in first.items()) + ". "
              "The default (automatic) takes the NumPy path (the same values) until the NumPy work done in the "
              "process is worth the switch, so a one-off call or a shell loop over cases never pays numba's "
              "import; the cold-start section times `medimg features` itself."]
    lines += [
        "",
        "Each its defaults (not the same computation): PyRadiomics's default extraction (Original, 107 features) "
        "against medimg's own default (`medimg features` without options: the IBSI preset, its feature set and "
        "discretisation), each reading the same files, in the same interleaved runs as the table above.",
        "",
        "| case | PyRadiomics features | PyRadiomics wall (s) | PyRadiomics CPU (s) | medimg features "
        "| medimg wall (s) | medimg CPU (s) | faster by (wall) | faster by (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, n_p, tp, cp, n_m, tm, cm in defaults:
        lines.append(f"| {case} | {n_p} | {tp:.4f} | {cp:.4f} | {n_m} | {tm:.4f} | {cm:.4f} | {tp / tm:.1f}x "
                     f"| {cp / cm:.1f}x |")
    write_section("pyradiomics", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
