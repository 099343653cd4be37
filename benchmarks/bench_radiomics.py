"""Radiomics: medimg vs MIRP and flash-radiomics on one core, reading the files included.

Cases (from the reference data, `$MEDIMG_REFERENCE_DATA` or ../shared/data):

* brain1: a real 3-D brain MRI (256 x 256 x 25, NRRD) with a 4,137-voxel tumour label;
  settings: no resampling, fixed bin number 32, 3-D, distance 1.
* IBSI CT phantom: 204 x 201 x 60 CT (NIfTI) with a 125,256-voxel ROI; settings: no
  resampling, re-segmentation [-1000, 400] HU, fixed bin size 25 HU from -1000, 3-D.

Each (tool, case) runs in its own long-lived process pinned to one CPU with every thread pool
set to one thread (OMP, BLAS, ITK); the parent asks the three processes of a case in turn
(medimg, flash-radiomics, MIRP, medimg, ...: interleaved, so load from other work on a shared
machine hits all alike) for one run of "read image and mask + compute all features" (in
process: the files are read inside the timed call, start-up excluded); the time is the median of
``REPEATS`` such rounds after one warm-up run each. Same input files and the same settings for
every tool, but not the same feature set (see the section's Comparison line). medimg computes every IBSI chapter 1 family (morphology with
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
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _common import ROOT, comparison, load_average, medians, pin_threads, protocol, write_section

REPEATS = 5
TOOLS = ("medimg", "flash-radiomics", "mirp")

CHILD = textwrap.dedent(r'''
import json, os, statistics, sys, time, warnings, logging
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)
tool, case, image, mask = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
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
values = run()  # warm-up
print("READY " + json.dumps({"n_features": len(values)}), flush=True)
for line in sys.stdin:  # one timed run per request from the parent
    t0 = time.perf_counter()
    run()
    print("TIME " + json.dumps(time.perf_counter() - t0), flush=True)
''')

ENV_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1", "NUMEXPR_NUM_THREADS": "1",
                  "RAY_DISABLE_IMPORT_WARNING": "1"}


def reference_data() -> Path | None:
    env = os.environ.get("MEDIMG_REFERENCE_DATA")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


class Worker:
    """One tool's long-lived child process for one case: a warm-up run at start, then one timed
    run per ``run()`` call."""

    def __init__(self, tool: str, case: str, image: Path, mask: Path, tmp: Path) -> None:
        script = tmp / "child.py"
        script.write_text(CHILD)
        env = {**os.environ, **ENV_ONE_THREAD}
        self.proc = subprocess.Popen([sys.executable, str(script), tool, case, str(image), str(mask)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env, cwd=tmp)
        self.n_features = json.loads(self._expect("READY "))["n_features"]

    def _expect(self, tag: str) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(tag):
                return line[len(tag):]
        raise RuntimeError(f"child exited with {self.proc.wait()} before {tag.strip()}")

    def run(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return float(json.loads(self._expect("TIME ")))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def measure_case(case: str, image: Path, mask: Path) -> dict[str, dict | str]:
    """Medians of REPEATS rounds interleaved between the tools (one child process each)."""
    with tempfile.TemporaryDirectory() as tmp:
        workers: dict[str, Worker] = {}
        out: dict[str, dict | str] = {}
        for tool in TOOLS:
            try:
                workers[tool] = Worker(tool, case, image, mask, Path(tmp))
            except (RuntimeError, OSError) as exc:
                out[tool] = f"failed: {exc}"[:200]
        times: dict[str, list[float]] = {tool: [] for tool in workers}
        for _ in range(REPEATS):
            for tool, worker in workers.items():
                times[tool].append(worker.run())
        for tool, worker in workers.items():
            worker.close()
            out[tool] = {"seconds": statistics.median(times[tool]), "n_features": worker.n_features,
                         "runs": len(times[tool])}
    return out


N_BATCH = 12


def batch_scaling(image: Path, mask: Path, n_cases: int = N_BATCH) -> dict[int, float]:
    from medimg.features import config_from_mapping
    from medimg.pipeline import Case, extract_features

    cfg = config_from_mapping({"resegmentation": {"range": [-1000, 400]},
                               "discretisation": {"method": "fixed_bin_size", "bin_width": 25.0, "lower_bound": -1000},
                               "aggregations": ["3d_avg", "3d_comb", "3d"]})
    cases = [Case(f"ct-{k}", image, mask) for k in range(n_cases)]
    cores = len(os.sched_getaffinity(0))

    def run(workers: int) -> None:
        rows = extract_features(cases, cfg, scheduler="processes", workers=workers)
        assert all(r["status"] == "ok" for r in rows)

    times = medians({w: (lambda w=w: run(w)) for w in sorted({1, min(2, cores), cores})}, repeats=REPEATS)
    return dict(times)


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
    for case, (image, mask, _desc) in cases.items():
        for tool, res in measure_case(case, image, mask).items():
            results[(tool, case)] = res
            print(f"{case:8s} {tool:16s} {res}", flush=True)
    load_after = load_average()
    reader = "no fast inflater installed: gzip NRRD read by SimpleITK"
    for package in ("isal", "deflate"):  # the reader prefers deflate
        try:
            version = __import__(package).__version__
        except ImportError:
            continue
        reader = f"NRRD read natively, inflated by {package} {version}"
    counts = {tool: results[(tool, "brain1")]["n_features"] for tool in TOOLS
              if isinstance(results[(tool, "brain1")], dict)}
    lines = [
        "## Radiomics (IBSI features): medimg vs flash-radiomics and MIRP",
        "",
        protocol(threads, load_before, load_after,
                 f"medians of {REPEATS} runs interleaved between the tools after a warm-up run each"),
        "",
        "In process: each tool runs in its own long-lived process pinned to one CPU; a timed run reads the "
        "image and mask files and computes every feature (process start-up and imports excluded; "
        "end-to-end process times of `medimg features` against PyRadiomics's CLI are in the cold-start section). "
        "Settings as in `benchmarks/bench_radiomics.py`: brain1 fixed bin number 32; CT phantom "
        f"re-segmentation [-1000, 400] HU and fixed bin size 25 HU; both 3-D, no resampling. medimg: {reader}.",
        "",
        comparison("different",
                   "the same input files and the same settings (discretisation, re-segmentation, no resampling, "
                   "3-D) for every tool, but each computes its own feature set: "
                   + ", ".join(f"{tool} {n}" for tool, n in counts.items()) + " values. "
                   "medimg: every IBSI chapter 1 family (morphology with Moran's I / Geary's C, local intensity, "
                   "statistics, histogram, IVH, GLCM, GLRLM, GLSZM, GLDZM, NGTDM, NGLDM), textures both 3-D "
                   "averaged and merged; flash-radiomics: its PyRadiomics-style families (no local intensity, "
                   "no Moran's I / Geary's C); MIRP: its default IBSI set. A common-features-only timing is not "
                   "measured (the tools' families cannot be cut to one identical list), so the ratios compare "
                   "each tool's full set at equal settings; the same-computation comparison against PyRadiomics "
                   "is the PyRadiomics-mode section"),
        "",
        "| case | tool | features | time (s) | medimg faster by |",
        "|---|---|---:|---:|---:|",
    ]
    for case, (_image, _mask, desc) in cases.items():
        ours = results[("medimg", case)]
        for tool in TOOLS:
            res = results[(tool, case)]
            if isinstance(res, str):
                lines.append(f"| {case} ({desc}) | {tool} | - | {res} | - |")
                continue
            ratio = "-" if tool == "medimg" or isinstance(ours, str) else f"{res['seconds'] / ours['seconds']:.1f}x"
            lines.append(f"| {case} ({desc}) | {tool} | {res['n_features']} | {res['seconds']:.4f} | {ratio} |")
    image, mask, _ = cases["ibsi-ct"]
    scaling = batch_scaling(image, mask)
    base = scaling[min(scaling)]
    lines += ["", f"Batch (`medimg.pipeline.extract_features`, worker processes, worker start-up included) over {N_BATCH} copies "
              f"of the CT phantom case, medimg alone, medians of {REPEATS} runs interleaved between the worker "
              f"counts after a warm-up ({load_average()} after; other work on the shared machine limits the "
              "speed-up):", "",
              "| workers | time (s) | cases/s | speed-up |", "|---:|---:|---:|---:|"]
    for workers, seconds in scaling.items():
        lines.append(f"| {workers} | {seconds:.2f} | {N_BATCH / seconds:.2f} | {base / seconds:.2f}x |")
    write_section("radiomics", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
