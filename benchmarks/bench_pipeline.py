"""The pipeline at scale: 200 synthetic cases through a radiomics study (Gaussian smoothing, then
first-order, histogram, GLCM and GLRLM features), with 1 and 2 local worker processes, a local
Dask cluster and a Dask cluster of `dask scheduler` + `dask worker` processes on loopback.

Measured, each in a fresh process (so that peak memory is the run's own):

* wall time of each way of running, in process (from the runner's start: imports, reading,
  computing, writing) and end to end (the whole process, interpreter start-up and exit
  included), medians of 5 runs interleaved between the ways of running (A B C ..., A B C ...)
  after a warm-up round (each way once on 4 cases), and the throughput ratio of 2 workers to 1;
* the overhead of the pipeline (input hashing, the cache, manifest and run log) over the same
  operations called in a plain loop, serially;
* both on a second data shape (12 larger cases, 8x the voxels each), as the overhead and the
  worker speed-up depend on the cost of a case;
* peak memory of the main process and of the largest worker for 50, 100 and 200 cases (flat
  when cases stream; one run each, a scale check);
* the report's fixed cost (written once per run; measured once).

Every process is pinned to one thread (``pin_threads``: the environment the processes inherit;
Dask workers ``--nthreads 1``); the load average is recorded before and after. A full run takes
about 15-20 minutes on the shared 2-core machine (load 2-5). ``BENCH_REPEATS=1`` for a quick smoke test.

It also writes the 100,000-study estimate of docs/scaling.md from the per-case cost measured here.
`python benchmarks/run.py bench_pipeline`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    CACHE,
    ROOT,
    bench_repeats,
    comparison,
    load_average,
    machine,
    pin_threads,
    protocol,
    write_section,
)

DATA = CACHE / "pipeline"
N_CASES = 200
SHAPE = (40, 64, 64)
#: The second data shape: fewer, larger cases (8x the voxels, spheres twice the radius).
DATA_LARGE = CACHE / "pipeline-large"
N_LARGE = 12
SHAPE_LARGE = (80, 128, 128)
WARMUP_CASES = 4

_RUNNER = r'''
import json, os, resource, sys, time
from pathlib import Path


def main():
    mode, n, data, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    t0 = time.perf_counter()
    if mode == "loop":
        from medimg import io, filters
        from medimg.features import extract
        rows = []
        for k in range(n):
            image = io.read(data / f"img{k:04d}.nii.gz")
            mask = io.read(data / f"mask{k:04d}.nii.gz")
            smooth = filters.gaussian(image, sigma_mm=1.0)
            rows.append(extract(smooth, mask, families=["stat", "ih", "glcm", "glrlm"]))
    else:
        from medimg.pipeline.study import load_study
        from medimg.pipeline.runner import run_study
        study, base = load_study(data / f"study{n}.yaml")
        scheduler, _, workers = mode.partition(":")
        scheduler = scheduler if scheduler != "cluster" else os.environ["SCHED"]
        result = run_study(study, out, base=base, scheduler=scheduler, workers=int(workers) if workers else None)
        assert result.n_ok == n, result.failures[:3]
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds,
                      "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


if __name__ == "__main__":  # worker processes of a local Dask cluster import this file again
    main()
'''

_STUDY = """name: bench-{n}
inputs:
  cases: cases{n}.csv
steps:
  - id: smooth
    op: filters.gaussian
    params: {{sigma_mm: 1.0}}
  - id: radiomics
    op: features
    inputs: {{image: smooth, mask: mask}}
    params: {{families: [stat, ih, glcm, glrlm]}}
outputs:
  report: {report}
"""


def make_data(folder: Path = DATA, n_cases: int = N_CASES, shape: tuple[int, int, int] = SHAPE,
              studies: tuple[int, ...] = (WARMUP_CASES, 50, 100, N_CASES)) -> Path:
    import numpy as np

    from medimg import Image, io

    done = folder / ".complete"
    if not done.exists() or done.read_text().strip() != f"ok {n_cases}":
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        z, y, x = np.indices(shape)
        scale = shape[2] / SHAPE[2]
        for k in range(n_cases):
            r = rng.uniform(8, 14) * scale
            centre = np.array(shape) / 2 + rng.normal(0, 2, 3) * scale
            sphere = ((z - centre[0]) * 1.5) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 < r * r
            array = (rng.normal(0, 20, shape) + 60 * sphere
                     + 40 * rng.random() * sphere * (x / shape[2])).astype(np.float32)
            image = Image.from_geometry(array, spacing=(0.8, 0.8, 1.5))
            io.write(image, folder / f"img{k:04d}.nii.gz", sidecar=False)
            io.write(image.with_array(sphere.astype(np.uint8), meta={}), folder / f"mask{k:04d}.nii.gz", sidecar=False)
        done.write_text(f"ok {n_cases}\n")
    for n in studies:  # the tables and study files (cheap) are always rewritten
        rows = ["case,image,mask"] + [f"c{k:04d},img{k:04d}.nii.gz,mask{k:04d}.nii.gz" for k in range(n)]
        (folder / f"cases{n}.csv").write_text("\n".join(rows) + "\n")
        (folder / f"study{n}.yaml").write_text(_STUDY.format(n=n, report="false"))
        (folder / f"report{n}.yaml").write_text(_STUDY.format(n=n, report="true").replace(f"name: bench-{n}",
                                                                                        f"name: report-{n}"))
    return folder


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        env[var] = "1"  # every way of running gets one thread per process
    env.update(extra or {})
    return env


def run(mode: str, n: int, env: dict[str, str] | None = None, data: Path = DATA) -> dict[str, float]:
    """One fresh process running ``mode`` on the first ``n`` cases of ``data``: its own timings
    (``seconds``: in process) and peak memory, plus ``wall``: the whole process, end to end."""
    out = CACHE / "pipeline-out" / re.sub(r"[^a-z0-9]", "_", f"{data.name}-{mode}-{n}")
    shutil.rmtree(out, ignore_errors=True)  # no cache: every run computes every case
    script = CACHE / "pipeline_runner.py"
    script.write_text(_RUNNER)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), mode, str(n), str(data), str(out)], env=_env(env),
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{mode}: {proc.stderr[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall": wall}


def start_cluster(n_workers: int) -> tuple[str, list[subprocess.Popen]]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dask = str(Path(sys.executable).with_name("dask"))
    env = _env()
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                               "--dashboard-address", "127.0.0.1:0"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    procs.append(subprocess.Popen([dask, "worker", f"tcp://127.0.0.1:{port}", "--nworkers", str(n_workers),
                                   "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                                   "--dashboard-address", "127.0.0.1:0"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL))
    from distributed import Client

    deadline = time.monotonic() + 60
    while True:
        try:
            with Client(f"tcp://127.0.0.1:{port}", timeout="5s") as client:
                client.wait_for_workers(n_workers, timeout=60)
            break
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    return f"tcp://127.0.0.1:{port}", procs


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        proc.terminate()
    for proc in reversed(procs):
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _interleaved(modes: dict[str, tuple[str, dict[str, str] | None]], n: int, repeats: int, data: Path,
                 warmup_n: int) -> tuple[dict[str, float], dict[str, float], dict[str, dict[str, float]]]:
    """Medians (in process, whole process) of each way of running over ``repeats`` interleaved
    rounds after a warm-up round on ``warmup_n`` cases, and each way's last run (peak memory)."""
    for mode, env in modes.values():
        run(mode, warmup_n, env, data)
    inner: dict[str, list[float]] = {name: [] for name in modes}
    whole: dict[str, list[float]] = {name: [] for name in modes}
    memory: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        for name, (mode, env) in modes.items():
            result = run(mode, n, env, data)
            inner[name].append(result["seconds"])
            whole[name].append(result["wall"])
            memory[name] = result
            print(f"{data.name} {name}: {result['seconds']:.2f} s in process, {result['wall']:.2f} s whole", flush=True)
    return ({k: statistics.median(v) for k, v in inner.items()}, {k: statistics.median(v) for k, v in whole.items()},
            memory)


def main() -> None:
    threads = pin_threads() + "; Dask workers --nthreads 1"
    repeats = bench_repeats()
    make_data()
    make_data(DATA_LARGE, N_LARGE, SHAPE_LARGE, (WARMUP_CASES, N_LARGE))
    load_before = load_average()
    t_start = time.perf_counter()
    clusters = {k: start_cluster(k) for k in (1, 2)}
    try:
        modes = {"plain loop (no pipeline)": ("loop", None), "pipeline, serial": ("serial", None),
                 "pipeline, 1 worker process": ("processes:1", None), "pipeline, 2 worker processes": ("processes:2", None),
                 "pipeline, local Dask cluster (2 workers)": ("dask:2", None),
                 "pipeline, Dask scheduler + 1 worker (loopback)": ("cluster", {"SCHED": clusters[1][0]}),
                 "pipeline, Dask scheduler + 2 workers (loopback)": ("cluster", {"SCHED": clusters[2][0]})}
        med, whole, memory = _interleaved(modes, N_CASES, repeats, DATA, warmup_n=WARMUP_CASES)
    finally:
        for _, procs in clusters.values():
            stop(procs)
    large_modes = {name: modes[name] for name in ("plain loop (no pipeline)", "pipeline, serial",
                                                  "pipeline, 1 worker process", "pipeline, 2 worker processes")}
    med_l, whole_l, _mem_l = _interleaved(large_modes, N_LARGE, repeats, DATA_LARGE, warmup_n=WARMUP_CASES)
    scaling = {n: run("processes:2", n) for n in (50, 100, N_CASES)}
    report_run = run("serial", N_CASES)  # without the report (repeat, for the difference below)
    t0 = time.perf_counter()
    out = CACHE / "pipeline-out" / "report"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "medimg.cli.main", "run", str(DATA / f"report{N_CASES}.yaml"),
                           "-o", str(out), "--scheduler", "serial"], env=_env(), capture_output=True, text=True)
    with_report = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    load_after = load_average()
    total = time.perf_counter() - t_start
    loop, serial = med["plain loop (no pipeline)"], med["pipeline, serial"]
    one, two = med["pipeline, 1 worker process"], med["pipeline, 2 worker processes"]
    c1 = med["pipeline, Dask scheduler + 1 worker (loopback)"]
    c2 = med["pipeline, Dask scheduler + 2 workers (loopback)"]
    loop_l, serial_l = med_l["plain loop (no pipeline)"], med_l["pipeline, serial"]
    one_l, two_l = med_l["pipeline, 1 worker process"], med_l["pipeline, 2 worker processes"]
    per_case = serial / N_CASES
    header = ("| how | in process (s) | whole process (s) | cases/s (in process) | vs plain loop (in process) | "
              "vs plain loop (whole process) |")
    lines = [
        "## The pipeline at scale: 200 cases of a radiomics study",
        "",
        protocol(threads, load_before, load_after,
                 f"medians of {repeats} runs interleaved between the ways of running after a warm-up round (each way "
                 f"once on {WARMUP_CASES} cases); every run a fresh process from an empty "
                 f"output folder (no cache); the whole script took {total / 60:.0f} min"),
        f"Data: {N_CASES} synthetic cases, {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} float32 NIfTI "
        "(.nii.gz) with a sphere mask; study: Gaussian (1 mm) then first-order, intensity-histogram, GLCM and "
        f"GLRLM features; no report. Second shape: {N_LARGE} cases of {SHAPE_LARGE[2]}x{SHAPE_LARGE[1]}x"
        f"{SHAPE_LARGE[0]} (8x the voxels, spheres twice the radius), as the pipeline's overhead and the "
        "workers' speed-up depend on the cost of a case. *In process*: from the start of the runner's `main` "
        "(imports, reading, computing, writing; interpreter start-up excluded); *whole process*: end to end, "
        "as a shell sees it. `python benchmarks/run.py bench_pipeline`.",
        "",
        comparison("same", "every way of running computes the same study on the same files with one thread per "
                   "process; the plain loop calls the same operations (`io.read`, `filters.gaussian`, "
                   "`features.extract`) with no pipeline: no input hashes, cache, manifest or run log, and its "
                   "feature rows stay in memory where the pipeline writes its tables"),
        "",
        f"{N_CASES} cases of {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]}:",
        "",
        header + " peak memory, main (MB) | peak memory, worker (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, value in med.items():
        mem = memory[name]
        lines.append(f"| {name} | {value:.2f} | {whole[name]:.2f} | {N_CASES / value:.1f} | {value / loop:.3f}x | "
                     f"{whole[name] / whole['plain loop (no pipeline)']:.3f}x | "
                     f"{mem['rss_main_mb']:.0f} | {mem['rss_worker_mb']:.0f} |")
    lines += ["", f"{N_LARGE} cases of {SHAPE_LARGE[2]}x{SHAPE_LARGE[1]}x{SHAPE_LARGE[0]}:", "", header,
              "|---|---:|---:|---:|---:|---:|"]
    for name, value in med_l.items():
        lines.append(f"| {name} | {value:.2f} | {whole_l[name]:.2f} | {N_LARGE / value:.2f} | {value / loop_l:.3f}x | "
                     f"{whole_l[name] / whole_l['plain loop (no pipeline)']:.3f}x |")
    lines += [
        "",
        f"* Overhead of the pipeline (serial: input hashes, cache writes, manifest, run log) over the plain loop, "
        f"in process: **{100 * (serial / loop - 1):+.1f} %** on the {N_CASES} small cases, "
        f"**{100 * (serial_l / loop_l - 1):+.1f} %** on the {N_LARGE} larger ones (target <= 5 %).",
        f"* Throughput, 2 worker processes / 1: **{one / two:.2f}x** (small cases), **{one_l / two_l:.2f}x** "
        f"(larger cases); Dask cluster on loopback, 2 workers / 1: **{c1 / c2:.2f}x** (target >= 1.8x on 2 cores; "
        "the machine is shared, see the load above).",
        f"* The report (written once per run, matplotlib plots of the tables): "
        f"{with_report - report_run['seconds']:+.1f} s on top of the {report_run['seconds']:.1f} s serial run "
        "(measured once, the command as a whole; not a ratio of medians).",
        "",
        "Peak memory with 2 worker processes as the number of cases grows (cases stream through the executor; "
        "the cohort is never held whole); one run each (a scale check, not a ratio of medians):",
        "",
        "| cases | time (s, in process, 1 run) | peak memory, main (MB) | peak memory, worker (MB) |",
        "|---:|---:|---:|---:|",
    ]
    for n, res in scaling.items():
        lines.append(f"| {n} | {res['seconds']:.2f} | {res['rss_main_mb']:.0f} | {res['rss_worker_mb']:.0f} |")
    write_section("pipeline", "\n".join(lines))
    print("\n".join(lines))
    _write_scaling_estimate(per_case, two, c2, memory["pipeline, 2 worker processes"])


def _duration(seconds: float) -> str:
    """A duration in the unit that shows it: hours from one hour, else minutes, else seconds."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def _write_scaling_estimate(per_case: float, two: float, cluster_two: float, mem: dict[str, float]) -> None:
    """The 100,000-study calculation of docs/scaling.md, from this run's measured costs."""
    doc = ROOT / "docs" / "scaling.md"
    studies = 100_000
    efficiency = (N_CASES * per_case / 2) / two  # how close 2 workers came to a perfect 2x
    rows = []
    for cores in (2, 16, 64, 256):
        seconds = studies * per_case / (cores * efficiency)
        rows.append(f"| {cores} | {_duration(seconds)} | {cores * (mem['rss_worker_mb'] + 100) / 1024:.0f} GB |")
    body = "\n".join([
        f"Measured by `make bench` on {machine()}: one case of the benchmark study (a {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} "
        f"image: Gaussian + four feature families) costs **{per_case * 1000:.0f} ms** of one core through the "
        f"pipeline; 2 worker processes reached **{efficiency:.0%}** of a perfect 2x; a worker's peak memory was "
        f"**{mem['rss_worker_mb']:.0f} MB**. Scaling the same study linearly (cases are independent; the only "
        "shared work is listing the cases and writing the tables) at that efficiency:",
        "",
        "| cores (1 worker each) | time for 100,000 studies | memory (workers, +100 MB each) |",
        "|---:|---:|---:|",
        *rows,
        "",
        "A clinical CT (512x512x300) costs more than the benchmark case: scale the per-case time by the "
        "voxels the steps touch (radiomics by the ROI's bounding box, filters by the whole volume). Measure one "
        "case of your own study with `medimg run --workers 1` on a few cases and put its time in place of the "
        "per-case cost above.",
    ])
    text = doc.read_text() if doc.exists() else ""
    start, end = "<!-- bench:scaling -->", "<!-- /bench:scaling -->"
    block = f"{start}\n{body}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


if __name__ == "__main__":
    main()
