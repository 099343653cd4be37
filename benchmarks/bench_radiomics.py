"""Radiomics: medimg vs MIRP and flash-radiomics on one core, reading the files included.

Cases (from the reference data, `$MEDIMG_REFERENCE_DATA` or ../shared/data):

* brain1: a real 3-D brain MRI (256 x 256 x 25, NRRD) with a 4,137-voxel tumour label;
  settings: no resampling, fixed bin number 32, 3-D, distance 1.
* IBSI CT phantom: 204 x 201 x 60 CT (NIfTI) with a 125,256-voxel ROI; settings: no
  resampling, re-segmentation [-1000, 400] HU, fixed bin size 25 HU from -1000, 3-D.

Each (tool, case) runs in its own process pinned to one CPU with every thread pool set to one
thread (OMP, BLAS, ITK); the time is the median wall time of "read image and mask + compute all
features" after one warm-up run. medimg computes every IBSI chapter 1 family (morphology with
Moran's I / Geary's C, local intensity, statistics, histogram, IVH, GLCM, GLRLM, GLSZM, GLDZM,
NGTDM, NGLDM; 3-D averaged and merged); flash-radiomics computes its PyRadiomics-style set
(shape, first order, histogram, IVH, GLCM, GLRLM, GLSZM, GLDZM, GLDM, NGTDM); MIRP its default
IBSI set. medimg reads NRRD natively when an optional fast inflater (`deflate` or `isal`) is
installed (SimpleITK otherwise); the section says which. The batch rows time `medimg.pipeline.extract_features` over
copies of the CT case with 1 and 2 (or all) worker processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _common import ROOT, load_average, machine, pin_threads, write_section

REPEATS = {"medimg": 7, "flash-radiomics": 3, "mirp": 1}

CHILD = textwrap.dedent(r'''
import json, os, statistics, sys, time, warnings, logging
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)
tool, case, image, mask, repeats = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
brain = case == "brain1"

if tool == "medimg":
    from medimg.io import read
    from medimg.features import extract, config_from_mapping
    if brain:
        cfg = config_from_mapping({"discretisation": {"method": "fixed_bin_number", "n_bins": 32},
                                   "aggregations": ["3d_avg", "3d_comb", "3d"]})
    else:
        cfg = config_from_mapping({"resegmentation": {"range": [-1000, 400]},
                                   "discretisation": {"method": "fixed_bin_size", "bin_width": 25.0, "lower_bound": -1000},
                                   "aggregations": ["3d_avg", "3d_comb", "3d"]})
    def run():
        return extract(read(image), read(mask), config=cfg)
elif tool == "flash-radiomics":
    from flash_radiomics import RadiomicsFeatureExtractor
    settings = {"binCount": 32} if brain else {"binWidth": 25, "resegmentRange": [-1000, 400]}
    ex = RadiomicsFeatureExtractor(**settings)
    ex.disableAllFeatures()
    for fam in ("shape", "firstorder", "ih", "ivh", "glcm", "glrlm", "glszm", "gldzm", "gldm", "ngtdm"):
        ex.enableFeatureClassByName(fam)
    def run():
        out = ex.execute(image, mask)
        return {k: v for k, v in out.items() if not k.startswith("diagnostics")}
elif tool == "mirp":
    from mirp import extract_features
    if brain:
        kw = dict(base_discretisation_method="fixed_bin_number", base_discretisation_n_bins=32)
    else:
        kw = dict(resegmentation_intensity_range=[-1000.0, 400.0], base_discretisation_method="fixed_bin_size",
                  base_discretisation_bin_width=25.0)
    def run():
        tables = extract_features(image=image, mask=mask, export_features=True, write_features=False, **kw)
        return {c: 0 for c in tables[0].columns}
values = run()
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    values = run()
    times.append(time.perf_counter() - t0)
print("RESULT " + json.dumps({"seconds": statistics.median(times), "n_features": len(values)}))
''')

ENV_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1", "NUMEXPR_NUM_THREADS": "1",
                  "RAY_DISABLE_IMPORT_WARNING": "1"}


def reference_data() -> Path | None:
    env = os.environ.get("MEDIMG_REFERENCE_DATA")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


def measure(tool: str, case: str, image: Path, mask: Path) -> dict | str:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "child.py"
        script.write_text(CHILD)
        env = {**os.environ, **ENV_ONE_THREAD}
        try:
            proc = subprocess.run([sys.executable, str(script), tool, case, str(image), str(mask),
                                   str(REPEATS[tool])], capture_output=True, text=True, env=env, timeout=1800,
                                  cwd=tmp)
        except subprocess.TimeoutExpired:
            return "timed out (30 min)"
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr or proc.stdout).strip().splitlines()
    return f"failed: {tail[-1] if tail else 'no output'}"[:200]


N_BATCH = 12


def batch_scaling(image: Path, mask: Path, n_cases: int = N_BATCH) -> dict[int, float]:
    from medimg.features import config_from_mapping
    from medimg.pipeline import Case, extract_features

    cfg = config_from_mapping({"resegmentation": {"range": [-1000, 400]},
                               "discretisation": {"method": "fixed_bin_size", "bin_width": 25.0, "lower_bound": -1000},
                               "aggregations": ["3d_avg", "3d_comb", "3d"]})
    cases = [Case(f"ct-{k}", image, mask) for k in range(n_cases)]
    out = {}
    cores = len(os.sched_getaffinity(0))
    for workers in sorted({1, min(2, cores), cores}):
        extract_features(cases[:workers * 2], cfg, scheduler="processes", workers=workers)  # start-up
        t0 = time.perf_counter()
        rows = extract_features(cases, cfg, scheduler="processes", workers=workers)
        out[workers] = time.perf_counter() - t0
        assert all(r["status"] == "ok" for r in rows)
    return out


def main() -> None:
    threads = pin_threads()
    load_before = load_average()
    data = reference_data()
    if data is None:
        write_section("radiomics", "## Radiomics\n\nReference data absent: not run.")
        print("reference data absent: skipped")
        return
    cases = {
        "brain1": (data / "mri-brain1" / "brain1_image.nrrd", data / "mri-brain1" / "brain1_label.nrrd",
                   "brain MRI, 4,137-voxel ROI"),
        "ibsi-ct": (data / "ibsi1-ct-phantom" / "nifti" / "image" / "phantom.nii.gz",
                    data / "ibsi1-ct-phantom" / "nifti" / "mask" / "mask.nii.gz", "IBSI CT phantom, 125,256-voxel ROI"),
    }
    results: dict[tuple[str, str], dict | str] = {}
    load_before = os.getloadavg()[0]
    for case, (image, mask, _desc) in cases.items():
        for tool in ("medimg", "flash-radiomics", "mirp"):
            res = measure(tool, case, image, mask)
            results[(tool, case)] = res
            print(f"{case:8s} {tool:16s} {res}", flush=True)
    load_after = os.getloadavg()[0]
    reader = "no fast inflater installed: gzip NRRD read by SimpleITK"
    for package in ("isal", "deflate"):  # the reader prefers deflate
        try:
            version = __import__(package).__version__
        except ImportError:
            continue
        reader = f"NRRD read natively, inflated by {package} {version}"
    lines = [
        "## Radiomics (IBSI features): medimg vs flash-radiomics and MIRP",
        "",
        f"Machine: {machine()}; {threads}; {load_before} at the start, {load_average()} at the end. One CPU per process, one thread per pool; wall time of reading the image "
        "and mask files and computing every feature (median after a warm-up run); load average "
        f"{load_before:.1f} before and {load_after:.1f} after these runs (the machine is shared). "
        "Settings as in `benchmarks/bench_radiomics.py`: brain1 fixed bin number 32; CT phantom "
        f"re-segmentation [-1000, 400] HU and fixed bin size 25 HU; both 3-D, no resampling. medimg: {reader}.",
        "",
        "| case | tool | features | time (s) | medimg faster by |",
        "|---|---|---:|---:|---:|",
    ]
    for case, (_image, _mask, desc) in cases.items():
        ours = results[("medimg", case)]
        for tool in ("medimg", "flash-radiomics", "mirp"):
            res = results[(tool, case)]
            if isinstance(res, str):
                lines.append(f"| {case} ({desc}) | {tool} | - | {res} | - |")
                continue
            ratio = "-" if tool == "medimg" or isinstance(ours, str) else f"{res['seconds'] / ours['seconds']:.1f}x"
            lines.append(f"| {case} ({desc}) | {tool} | {res['n_features']} | {res['seconds']:.4f} | {ratio} |")
    image, mask, _ = cases["ibsi-ct"]
    scaling = batch_scaling(image, mask)
    base = scaling[min(scaling)]
    load = os.getloadavg()[0]
    lines += ["", f"Batch (`medimg.pipeline.extract_features`, worker processes, worker start-up included) over {N_BATCH} copies "
              f"of the CT phantom case (load average {load:.1f} when measured; other work on the machine limits "
              "the speed-up):", "",
              "| workers | time (s) | cases/s | speed-up |", "|---:|---:|---:|---:|"]
    for workers, seconds in scaling.items():
        lines.append(f"| {workers} | {seconds:.2f} | {N_BATCH / seconds:.2f} | {base / seconds:.2f}x |")
    write_section("radiomics", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
