"""The executor of medimg.pipeline: same results on every scheduler, per-case failures, bounded
streaming, per-worker context, crashing workers, cancellation, and workers that die with their
parent."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from medimg.errors import ParameterError, UserInputError
from medimg.pipeline import run_cases, summarize
from medimg.pipeline.executor import _stop_processes


def _square(x: int) -> int:
    if x == 3:
        raise UserInputError("case 3 is bad")
    if x == 5:
        raise ZeroDivisionError("bug in case 5")
    return x * x


def _with_context(x: int, context: dict[str, int]) -> tuple[int, int]:
    return x + context["offset"], context["pid"]


def _make_context(offset: int) -> dict[str, int]:
    return {"offset": offset, "pid": os.getpid()}


def _crash_on_4(x: int) -> int:
    if x == 4:
        os.abort()  # a native abort, as a decoder library may do
    return x


@pytest.mark.parametrize("scheduler", ["serial", "threads", "processes"])
def test_every_scheduler_gives_the_same_outcomes_and_records_failures(scheduler: str) -> None:
    outcomes = list(run_cases(_square, range(12), scheduler=scheduler, workers=2, ordered=True,
                              key=lambda x: f"case{x}"))
    assert [o.index for o in outcomes] == list(range(12))
    assert [o.value for o in outcomes if o.ok] == [x * x for x in range(12) if x not in (3, 5)]
    bad = {o.key: o for o in outcomes if not o.ok}
    assert set(bad) == {"case3", "case5"}
    assert bad["case3"].error == "case 3 is bad" and bad["case3"].traceback == ""  # user error: no traceback
    assert bad["case5"].error_type == "ZeroDivisionError" and "bug in case 5" in bad["case5"].traceback
    summary = summarize(outcomes)
    assert (summary.n_ok, summary.n_failed, summary.n_not_run) == (10, 2, 0)


def test_dask_local_cluster_gives_the_same_outcomes() -> None:
    pytest.importorskip("dask.distributed")
    outcomes = list(run_cases(_square, range(6), scheduler="dask", workers=2, ordered=True))
    assert [o.value for o in outcomes] == [0, 1, 4, None, 16, None]


def test_items_are_consumed_lazily_with_bounded_memory() -> None:
    pulled = []
    finished = []

    def items():
        for i in range(40):
            pulled.append(i)
            yield i

    for outcome in run_cases(_square, items(), scheduler="processes", workers=2, chunk_size=1, max_in_flight=3):
        finished.append(outcome.index)
        # never more than max_in_flight cases taken ahead of those finished
        assert len(pulled) - len(finished) <= 3
    assert sorted(finished) == list(range(40))


def test_context_is_built_once_per_worker_process() -> None:
    factory = functools.partial(_make_context, 100)
    outcomes = list(run_cases(_with_context, range(20), scheduler="processes", workers=2, context=factory,
                              chunk_size=1))
    assert sorted(o.value[0] for o in outcomes) == list(range(100, 120))
    assert len({o.value[1] for o in outcomes}) <= 2
    assert all(o.value[1] != os.getpid() for o in outcomes)
    serial = list(run_cases(_with_context, range(3), context=factory))
    assert [o.value for o in serial] == [(100, os.getpid()), (101, os.getpid()), (102, os.getpid())]


def test_a_case_that_kills_its_worker_is_recorded_and_the_run_goes_on() -> None:
    outcomes = list(run_cases(_crash_on_4, range(10), scheduler="processes", workers=2, ordered=True,
                              chunk_size=3))
    assert [o.ok for o in outcomes] == [i != 4 for i in range(10)]
    assert outcomes[4].error_type == "WorkerDied"
    assert [o.value for o in outcomes if o.ok] == [0, 1, 2, 3, 5, 6, 7, 8, 9]


def test_bad_arguments() -> None:
    with pytest.raises(ParameterError, match="unknown scheduler"):
        list(run_cases(_square, [1], scheduler="proceses"))
    with pytest.raises(ParameterError, match="workers"):
        list(run_cases(_square, [1], scheduler="processes", workers=0))
    pytest.importorskip("dask.distributed")
    with pytest.raises(UserInputError, match="cannot reach the Dask scheduler"):
        list(run_cases(_square, [1], scheduler="tcp://127.0.0.1:9"))


def test_progress_is_reported_per_case() -> None:
    seen = []
    list(run_cases(_square, range(5), progress=lambda done, total: seen.append((done, total))))
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def _slow_atomic_write(x: int, folder: str) -> int:
    from medimg.core.files import atomic_path

    with atomic_path(Path(folder) / f"out{x}.txt") as tmp:
        tmp.write_text("partial")
        time.sleep(30)
    return x


def test_cancel_stops_workers_and_leaves_no_partial_files(tmp_path: Path) -> None:
    cancel = threading.Event()
    fn = functools.partial(_slow_atomic_write, folder=str(tmp_path))
    timer = threading.Timer(1.5, cancel.set)
    timer.start()
    t0 = time.perf_counter()
    outcomes = list(run_cases(fn, range(4), scheduler="processes", workers=2, chunk_size=1, cancel=cancel))
    assert time.perf_counter() - t0 < 15
    assert outcomes == []
    assert list(tmp_path.iterdir()) == []  # the stopped cases removed their partial files


def test_stop_processes_on_an_idle_pool() -> None:
    from medimg.pipeline.executor import _new_pool

    for _ in range(5):
        pool = _new_pool(2, True)
        assert pool.submit(abs, -3).result() == 3
        pids = [p.pid for p in pool._processes.values()]
        _stop_processes(pool, grace_s=2.0)
        assert not any(_alive(pid) for pid in pids)


_PARENT = textwrap.dedent("""
    import functools, os, sys, time
    from pathlib import Path
    from medimg.pipeline import run_cases

    def work(x, folder):
        Path(folder, f"worker-{os.getpid()}").write_text("")
        from medimg.core.files import atomic_path
        with atomic_path(Path(folder) / f"out{x}.txt") as tmp:
            tmp.write_text("partial")
            time.sleep(60)
        return x

    if __name__ == "__main__":
        list(run_cases(functools.partial(work, folder=sys.argv[1]), range(4), scheduler="processes",
                       workers=2, chunk_size=1))
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead: its parent has not reaped it yet
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_their_parent(tmp_path: Path, sig: int) -> None:
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    parent = subprocess.Popen([sys.executable, str(script), str(out)], env=env)
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("worker-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = [int(p.name.split("-")[1]) for p in out.glob("worker-*")]
        assert len(workers) == 2
        time.sleep(0.3)
        parent.send_signal(sig)
        parent.wait(30)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)
        # the workers were stopped inside their case: their partial outputs are gone
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith("worker-")) == []
    finally:
        if parent.poll() is None:
            parent.kill()
