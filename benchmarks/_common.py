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
