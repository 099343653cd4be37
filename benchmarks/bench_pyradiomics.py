"""medimg's PyRadiomics mode vs PyRadiomics itself, in process, one thread, files read each time.

Cases: brain1 (full 256 x 256 x 25 MRI, 4,137-voxel label), the IBSI CT phantom (125,256-voxel ROI),
a compact 143-voxel ROI and a 168-voxel ROI of 55 fragments (both drawn on the brain1 image;
written to a temporary folder) and a batch of brain1 crops with shifted labels. Both tools run
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
BATCH = int(os.environ.get("BENCH_BATCH", "20"))


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


def main() -> None:
    import radiomics
    from radiomics import featureextractor

    sys.path.insert(0, str(ROOT / "src"))
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
    defaults: list[tuple] = []
    for case, (img, msk) in cases.items():
        for label, params in (("Original", None), ("Original + LoG + Wavelet", filtered)):
            if case == "ibsi-ct" and params is not None:
                continue  # PyRadiomics takes minutes per run there on this machine
            ex = featureextractor.RadiomicsFeatureExtractor(params) if params else featureextractor.RadiomicsFeatureExtractor()
            ex.settings["additionalInfo"] = False
            res: dict = {}
            funcs = {"pyradiomics": lambda ex=ex, img=img, msk=msk, res=res: res.__setitem__("p", ex.execute(img, msk)),
                     "medimg": lambda img=img, msk=msk, params=params, res=res: res.__setitem__(
                         "m", extract_pyradiomics(img, msk, params))}
            if params is None:  # each its defaults: medimg's own (IBSI) default extraction, files read
                funcs["medimg-default"] = lambda img=img, msk=msk, res=res: res.__setitem__(
                    "d", extract(read(img), read(msk)))
            reps = REPEATS if case != "ibsi-ct" else 3
            t = _interleaved(funcs, reps)
            ref = {k: float(v) for k, v in res["p"].items() if not k.startswith("diagnostics")}
            got = res["m"]
            assert set(ref) == set(got), set(ref) ^ set(got)
            worst = max(abs(got[k] - v) / max(abs(v), 1e-12) for k, v in ref.items()
                        if not (np.isnan(v) and np.isnan(got[k])))
            rows.append((case, label, len(ref), *t["pyradiomics"], *t["medimg"], worst))
            if params is None:
                defaults.append((case, len(ref), *t["pyradiomics"], len(res["d"]), *t["medimg-default"]))
            print(rows[-1], flush=True)
    # Batch: brain1 crops with the label shifted, Original only.
    import SimpleITK as sitk

    lab = sitk.ReadImage(cases["brain1"][1])
    batch = []
    for k in range(BATCH):
        dy, dx = (k % 5) - 2, (k // 5) % 5 - 2
        arr = np.roll(sitk.GetArrayFromImage(lab), (dy, dx), axis=(1, 2))
        m = sitk.GetImageFromArray(arr)
        m.CopyInformation(lab)
        p = tmp / f"batch{k}.nrrd"
        sitk.WriteImage(m, str(p))
        batch.append(str(p))
    ex = featureextractor.RadiomicsFeatureExtractor()
    ex.settings["additionalInfo"] = False
    t0, c0 = time.perf_counter(), time.process_time()
    refs = [ex.execute(cases["brain1"][0], p) for p in batch]
    t_p, c_p = (time.perf_counter() - t0) / BATCH, (time.process_time() - c0) / BATCH
    t0, c0 = time.perf_counter(), time.process_time()
    gots = [extract_pyradiomics(cases["brain1"][0], p) for p in batch]
    t_m, c_m = (time.perf_counter() - t0) / BATCH, (time.process_time() - c0) / BATCH
    worst = max(abs(g[k] - float(v)) / max(abs(float(v)), 1e-12) for r, g in zip(refs, gots, strict=True)
                for k, v in r.items() if not k.startswith("diagnostics"))
    rows.append((f"batch of {BATCH} brain1 labels", "Original", 107, t_p, c_p, t_m, c_m, worst))
    load_after = load_average()
    lines = [
        "## PyRadiomics mode: medimg vs PyRadiomics (same computation)",
        "",
        f"Machine: {machine()}; {threads}. Same computation: in process, both tools given the image and mask "
        f"files (read in every run; medimg reads a gzip NRRD image only up to the ROI's last slice when "
        f"Original alone is computed), PyRadiomics's default settings (additionalInfo off in PyRadiomics), "
        f"the same image types; median of {REPEATS} interleaved runs (3 for the CT phantom) after a warm-up; "
        f"the batch is one sequential pass. Wall time is what a user waits; CPU time (this process, one "
        f"thread) is less sensitive to the other jobs on the machine. {load_before} before, {load_after} after (the machine is shared "
        f"by other jobs and run with `nice`, so the times are noisy). `benchmarks/bench_pyradiomics.py`.",
        "",
        "| case | image types | features | PyRadiomics wall (s) | medimg wall (s) | faster by (wall) "
        "| PyRadiomics CPU (s) | medimg CPU (s) | faster by (CPU) | largest relative difference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case, label, n, tp, cp, tm, cm, w in rows:
        lines.append(f"| {case} | {label} | {n} | {tp:.4f} | {tm:.4f} | {tp / tm:.1f}x | {cp:.4f} | {cm:.4f} "
                     f"| {cp / cm:.1f}x | {w:.1e} |")
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
