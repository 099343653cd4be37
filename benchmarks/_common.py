"""Shared helpers for the benchmarks: timing, machine description, BENCHMARKS.md sections."""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_MD = ROOT / "BENCHMARKS.md"
CACHE = ROOT / ".bench"

_HEADER = """# Benchmarks

Measured by `make bench` (each section is rewritten by its benchmark; ratios compare tools
measured in the same run, on the same files, on the same machine). Numbers below were not
edited by hand.

Protocol: every section says, in a "Comparison:" line (or a column), whether the tools ran the
same computation (same windows, same settings, same input and output) or each its recommended
defaults, and shows both where they differ; whether a time is end to end (a whole process, files
in and out) or in process (a call on data already in memory, or reading files inside the call).
Every tool is pinned to the same number of threads (`pin_threads`), the load average is recorded
before and after (the machine may be shared), and a ratio is a ratio of medians of >= 5 runs
interleaved between the tools (A B, A B, ...) after a warm-up. Where a section measures a time
fewer than 5 times (a slow library call, cold-cache runs, a scale check), it says so beside it.
"""


def machine() -> str:
    """One line describing this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


#: Threads every tool gets in a benchmark (``pin_threads``): 1, so that ratios compare the
#: computation, not how many of the shared machine's 2 cores a library grabs.
THREADS = 1
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "NUMBA_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "VECLIB_MAXIMUM_THREADS")


def pin_threads(n: int = THREADS) -> str:
    """Pin every tool to ``n`` threads, the same way: the environment (inherited by the tools
    run as processes: dcm2niix, PyRadiomics's CLI, medimg's CLI), the BLAS/OpenMP pools
    already loaded in this process (threadpoolctl), SimpleITK's default and numba's. Returns a
    one-line description for the benchmark's notes."""
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    done = [f"env {'/'.join(v.split('_NUM')[0] for v in _THREAD_VARS[:3])}_NUM_THREADS={n}"]
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
        done.append("threadpoolctl")
    except ImportError:
        pass
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
        done.append("SimpleITK")
    except ImportError:
        pass
    import sys

    if "numba" in sys.modules:
        sys.modules["numba"].set_num_threads(n)
        done.append("numba")
    return f"threads pinned to {n} ({', '.join(done)})"


def load_average() -> str:
    """The 1/5/15-minute load averages, for the notes (the machine is shared)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unavailable"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min, {os.cpu_count()} cores)"


def medians(funcs: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median wall time (s) of each function over ``repeats`` (>= 5 for a ratio) interleaved
    rounds (A B C, A B C, ...) after ``warmup`` rounds (:func:`interleaved_times`): load from other
    processes on the shared machine hits every tool alike."""
    times = interleaved_times(funcs, repeats, warmup)
    return {name: statistics.median(ts) for name, ts in times.items()}


def run_process(argv: list[str], **kwargs: object) -> Callable[[], None]:
    """A zero-argument callable that runs ``argv`` as a process (end to end: start-up, files in
    and out), raising when it fails; output discarded."""
    import subprocess

    def call() -> None:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)

    return call


def best_of(func: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time (s) of ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        func()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(funcs: dict, repeats: int) -> dict:
    """Median wall time (s) of each function; runs alternate between functions (one warm-up
    each first), so that load from other processes on a shared machine hits all alike."""
    for func in funcs.values():
        func()
    times: dict = {name: [] for name in funcs}
    for _ in range(repeats):
        for name, func in funcs.items():
            t0 = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def drop_page_cache() -> bool:
    """Ask the kernel to drop clean page-cache pages (root only); True when it worked."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def cold(func: Callable[[], object], repeats: int = 2) -> float | None:
    """Median wall time (s) with the page cache dropped before each run; None when not permitted."""
    times = []
    for _ in range(repeats):
        if not drop_page_cache():
            return None
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of BENCHMARKS.md."""
    text = BENCH_MD.read_text() if BENCH_MD.exists() else _HEADER
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = BENCH_MD.with_suffix(".md.part")
    tmp.write_text(text)
    tmp.replace(BENCH_MD)


#: What a "Comparison:" line says about two tools' runs (``comparison``).
COMPARISONS = {
    "same": "the same computation",
    "defaults": "each tool with its recommended defaults (not the same computation)",
    "different": "not the same computation",
    "per-row": "per row",
}


def comparison(kind: str, detail: str) -> str:
    """The standard "Comparison:" sentence of a section: ``kind`` is "same" (same windows,
    settings, input and output), "defaults" (each tool its recommended defaults), "different" or
    "per-row" (a table column says it for each row);
    ``detail`` says what is and is not the same."""
    return f"Comparison: {COMPARISONS[kind]}: {detail.rstrip('.')}."


def protocol(threads: str, load_before: str, load_after: str, runs: str) -> str:
    """The standard first line of a section: machine, thread pinning, load before and after,
    and how times were taken (e.g. "medians of 5 interleaved runs after a warm-up")."""
    return f"Machine: {machine()}; {threads}; {load_before} before, {load_after} after; {runs}."


def bench_repeats(default: int = 5) -> int:
    """Timed runs per tool: ``default`` (>= 5 for a ratio), or ``$BENCH_REPEATS`` for a quick smoke
    test (a section measured with fewer than 5 runs says so through the counts it prints)."""
    value = os.environ.get("BENCH_REPEATS")
    return max(1, int(value)) if value else default


def interleaved_times(funcs: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1, *,
                      runs: dict[str, int] | None = None,
                      before: Callable[[], object] | None = None) -> dict[str, list[float]]:
    """Every wall time (s) of each function over ``repeats`` interleaved rounds (A B C, A B C, ...)
    after ``warmup`` rounds, so that load from other processes on the shared machine hits every
    tool alike. ``runs`` gives a slow call fewer runs (it takes part in the first rounds only;
    the section must say so beside its number). ``before`` is called, untimed, before each timed
    call (e.g. :func:`drop_page_cache` for cold-cache runs)."""
    counts = {name: min(repeats, (runs or {}).get(name, repeats)) for name in funcs}
    for _ in range(warmup):
        for func in funcs.values():
            func()
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for round_ in range(repeats):
        for name, func in funcs.items():
            if round_ >= counts[name]:
                continue
            if before is not None:
                before()
            t0 = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - t0)
    return times


def cold_medians(funcs: dict[str, Callable[[], object]], repeats: int = 5) -> dict[str, float] | None:
    """Median wall time (s) of each function over ``repeats`` interleaved rounds with the page
    cache dropped before every run (no warm-up: a warm-up would only fill the cache); None where
    dropping the cache is not permitted (not root)."""
    if not drop_page_cache():
        return None
    times = interleaved_times(funcs, repeats, warmup=0, before=drop_page_cache)
    return {name: statistics.median(ts) for name, ts in times.items()}


def runs_note(n: int) -> str:
    """How a time was taken, for a table cell or a note: "median of n runs" or "1 run"."""
    return "1 run" if n == 1 else f"median of {n} runs"
