"""The executor: the one place where medimg runs a function over many cases.

:func:`run_cases` streams the cases through a scheduler and yields one :class:`Outcome` per case
as it finishes. Whatever the scheduler:

* **failures are per case**: an exception raised by one case is recorded in its outcome (type,
  message, traceback) and the other cases go on;
* **memory stays bounded**: cases are taken from the iterable only as workers free up (at most
  ``max_in_flight`` chunks are submitted at once), so a cohort is never held whole;
* **progress** is reported through ``progress(done, total)``;
* **cancellation**: setting the ``cancel`` event, Ctrl-C or SIGTERM stops submitting, cancels
  what has not started and stops the workers; a worker that is stopped unwinds its case (so
  atomic writes remove their partial files) and exits;
* **workers die with their parent**: a process worker whose parent dies (even by ``kill -9``)
  is stopped by the kernel (Linux ``PR_SET_PDEATHSIG``) and by a watchdog thread elsewhere;
* **a crashing case does not end the run**: when a worker process dies (a native abort, the
  out-of-memory killer), the pool is rebuilt, the cases that were in flight are retried one by
  one, and the case that kills its worker again is recorded as failed.

Schedulers: ``"serial"`` (in this process, in order), ``"threads"`` (a thread pool: for
operations that release the GIL), ``"processes"`` (a pool of single-threaded worker processes;
the default for CPU-bound work), ``"dask"`` (a local Dask cluster started and stopped by the
run) and ``"tcp://HOST:PORT"`` (an existing Dask distributed scheduler).

A case function is called as ``fn(item)``, or ``fn(item, context)`` when ``context`` is given:
a picklable zero-argument factory (e.g. ``functools.partial(Deidentifier, key, options)``)
whose result is built once per worker process and reused for every case it runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from medimg.errors import ParameterError, UserInputError

__all__ = ["Outcome", "RunSummary", "run_cases", "summarize", "SCHEDULERS", "default_workers",
           "single_thread_limits"]

T = TypeVar("T")

#: Scheduler names (a ``tcp://`` or ``tls://`` address selects a Dask distributed scheduler).
SCHEDULERS = ("serial", "threads", "processes", "dask")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """The result of one case.

    ``index`` is the case's position in the input, ``key`` its name. ``ok`` is False when the
    case raised: ``error_type`` and ``error`` say what (``error`` is the message of a
    :class:`~medimg.errors.UserInputError`, else ``"TypeName: message"``), ``traceback`` holds
    the formatted traceback of an unexpected exception (empty for user-input errors).
    ``seconds`` is the case's wall time in its worker.
    """

    index: int
    key: str
    ok: bool
    value: T | None = None
    error_type: str = ""
    error: str = ""
    traceback: str = ""
    seconds: float = 0.0


@dataclass
class RunSummary:
    """Counts and failures of a run (see :func:`summarize`)."""

    total: int
    n_ok: int
    n_failed: int
    n_not_run: int
    seconds: float
    failures: list[Outcome[Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (for manifests): counts and each failure's key, type and message."""
        return {"total": self.total, "ok": self.n_ok, "failed": self.n_failed, "not_run": self.n_not_run,
                "seconds": round(self.seconds, 3),
                "failures": [{"case": o.key, "error_type": o.error_type, "error": o.error} for o in self.failures]}


def summarize(outcomes: Sequence[Outcome[Any]], *, total: int | None = None, seconds: float = 0.0) -> RunSummary:
    """Counts of ``outcomes`` (``total``: the number of cases asked for, to count those not run)."""
    failures = [o for o in outcomes if not o.ok]
    n = len(outcomes) if total is None else int(total)
    return RunSummary(total=n, n_ok=len(outcomes) - len(failures), n_failed=len(failures),
                      n_not_run=max(0, n - len(outcomes)), seconds=seconds, failures=failures)


def default_workers() -> int:
    """The number of CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# ----------------------------------------------------------------------------- running one case
_CONTEXTS: dict[str, Any] = {}
_IN_CASE = threading.local()


class _Terminated(BaseException):
    """Raised in a worker by SIGTERM while it runs a case, so that the case unwinds (its
    ``finally`` blocks and atomic writes clean up) before the worker exits."""


def _context_of(factory: Callable[[], Any] | None) -> Any:
    if factory is None:
        return None
    token = hashlib.sha1(pickle.dumps(factory)).hexdigest()
    if token not in _CONTEXTS:
        _CONTEXTS[token] = factory()
    return _CONTEXTS[token]


def _call(fn: Callable[..., Any], item: Any, index: int, key: str, context: Any, has_context: bool) -> Outcome[Any]:
    t0 = time.perf_counter()
    try:
        value = fn(item, context) if has_context else fn(item)
    except Exception as err:  # noqa: BLE001 - a failing case is recorded, the run goes on
        seconds = time.perf_counter() - t0
        if isinstance(err, UserInputError):
            return Outcome(index, key, False, None, type(err).__name__, str(err), "", seconds)
        return Outcome(index, key, False, None, type(err).__name__, f"{type(err).__name__}: {err}",
                       traceback.format_exc(), seconds)
    return Outcome(index, key, True, value, seconds=time.perf_counter() - t0)


def _run_chunk(fn: Callable[..., Any], chunk: list[tuple[int, str, Any]],
               factory: Callable[[], Any] | None) -> list[Outcome[Any]]:
    """Run a chunk of cases in a worker; each case's failure is caught and recorded."""
    _IN_CASE.active = True
    try:
        context = _context_of(factory)
        return [_call(fn, item, index, key, context, factory is not None) for index, key, item in chunk]
    except _Terminated:
        os._exit(143)  # the case has unwound (partial files removed): leave now
    finally:
        _IN_CASE.active = False


# ----------------------------------------------------------------------------- worker processes
#: Environment variables that size the thread pools of numerical libraries.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "NUMBA_NUM_THREADS")


def single_thread_limits() -> None:
    """Limit this process's numerical libraries (BLAS, OpenMP, ITK, torch if loaded) to one
    thread, so that N worker processes use N cores instead of competing."""
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    else:
        threadpool_limits(1)
    if "SimpleITK" in sys.modules:  # imported before the fork: the variable comes too late
        sys.modules["SimpleITK"].ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _on_sigterm(signum: int, frame: Any) -> None:
    if getattr(_IN_CASE, "active", False):
        raise _Terminated()
    os._exit(143)


def _process_identity(pid: int) -> str | None:
    """``pid`` and its start time (so that a reused pid is not taken for the same process), or
    None when no such process runs; without /proc, the pid alone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (not Linux)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return str(pid)
    return None if fields[0] in ("Z", "X") else f"{pid}:{fields[19]}"


def _watch_owner(owner: str) -> None:
    pid = int(owner.split(":")[0])
    while True:
        time.sleep(0.5)
        if _process_identity(pid) != owner:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10.0)  # the case did not unwind in time
            os._exit(143)


def _worker_start(owner: str, single_threaded: bool) -> None:
    """Process-pool initializer: die with the process that owns the pool, leave Ctrl-C to it,
    stop cleanly on SIGTERM, one thread per numerical library, keep freed memory for the next case.

    ``owner`` is the owning process's identity (:func:`_process_identity`). A forked worker asks
    the kernel for SIGTERM when its parent dies (Linux); every worker (forked, or started by a
    fork server whose children outlive their owner) also runs a watchdog thread."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the owner handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, _on_sigterm)
    owner_pid = int(owner.split(":")[0])
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            if os.getppid() == owner_pid:
                libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM when the parent dies
            # glibc: keep freed memory for the next case instead of returning it and faulting it in
            # again (each case allocates and frees arrays of the same sizes)
            libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: glibc's largest, 32 MiB
            libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    if _process_identity(owner_pid) != owner:  # the owner died before we could follow it
        os._exit(143)
    threading.Thread(target=_watch_owner, args=(owner,), daemon=True, name="medimg-owner-watch").start()
    if single_threaded:
        single_thread_limits()


def _stop_processes(pool: Any, grace_s: float = 5.0) -> None:
    """SIGTERM every worker of ``pool`` (they unwind their case and exit), SIGKILL the ones still
    alive after ``grace_s``, then shut the pool down without waiting for queued work.

    Works on process ids (the pool's own management thread may reap a worker first, which makes
    ``Process.is_alive`` unreliable here)."""
    pids = [p.pid for p in list(getattr(pool, "_processes", {}).values() or []) if p.pid]
    ids = {pid: _process_identity(pid) for pid in pids}
    running = [pid for pid in pids if ids[pid] is not None]

    def alive(pid: int) -> bool:
        return _process_identity(pid) == ids[pid]

    for pid in running:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(alive(pid) for pid in running) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in running:
        if alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        pool.shutdown(wait=False, cancel_futures=True)


# ----------------------------------------------------------------------------- the public function
def _chunks(items: Iterable[Any], key: Callable[[Any], str] | None, size: int) -> Iterator[list[tuple[int, str, Any]]]:
    chunk: list[tuple[int, str, Any]] = []
    for index, item in enumerate(items):
        chunk.append((index, str(key(item)) if key is not None else str(index), item))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_cases(
    fn: Callable[..., T],
    items: Iterable[Any],
    *,
    key: Callable[[Any], str] | None = None,
    scheduler: str = "serial",
    workers: int | None = None,
    context: Callable[[], Any] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    total: int | None = None,
    chunk_size: int | None = None,
    max_in_flight: int | None = None,
    ordered: bool = False,
    cancel: threading.Event | None = None,
    single_threaded: bool = True,
) -> Iterator[Outcome[T]]:
    """Run ``fn`` on every item; yield an :class:`Outcome` per item as it finishes.

    Parameters
    ----------
    fn
        The case function, ``fn(item)`` or ``fn(item, context)``. For the process and Dask
        schedulers it must be picklable (a module-level function or a ``functools.partial``).
    items
        The cases; consumed lazily (at most ``max_in_flight`` chunks are held at once).
    key
        ``key(item)`` names a case in outcomes and summaries (default: its position).
    scheduler
        ``"serial"``, ``"threads"``, ``"processes"``, ``"dask"`` or a Dask scheduler address
        (``"tcp://host:8786"``).
    workers
        Number of local workers (default: the CPUs this process may use).
    context
        A picklable zero-argument factory; its result (built once per worker) is passed to ``fn``.
    progress
        ``progress(done, total)`` after each finished case (``total`` None when unknown).
    total
        The number of items, when ``items`` has no ``len`` (for progress and chunking).
    chunk_size
        Cases per task sent to a worker (default: up to 8, so that each worker gets at least 4
        tasks); larger chunks amortise the per-task overhead of small cases.
    max_in_flight
        Tasks submitted at once (default: 4 per worker).
    ordered
        Yield outcomes in input order (buffers the ones that finish early).
    cancel
        Set this event to stop: nothing new starts, running cases are stopped (process and Dask
        schedulers) and the iterator ends; cases not run have no outcome.
    single_threaded
        Limit each worker process's numerical libraries to one thread (default). Set False for
        work that parallelises inside one case better than across cases.

    Raises
    ------
    ParameterError
        Unknown scheduler or a worker count below 1.
    UserInputError
        A Dask scheduler address that cannot be reached.
    """
    if workers is not None and int(workers) < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}")
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    n_workers = int(workers) if workers else default_workers()
    if scheduler not in SCHEDULERS and not scheduler.startswith(("tcp://", "tls://", "inproc://")):
        raise ParameterError(f"unknown scheduler {scheduler!r}; use one of {', '.join(SCHEDULERS)} "
                             "or a Dask scheduler address tcp://HOST:PORT")
    if chunk_size is None:
        chunk_size = max(1, min(8, (total or 0) // (4 * n_workers))) if scheduler != "serial" else 1
    in_flight = max(1, int(max_in_flight or 4 * n_workers))
    chunks = _chunks(items, key, int(chunk_size))
    if scheduler == "serial":
        stream = _serial(fn, chunks, context, cancel)
    elif scheduler == "threads":
        stream = _threads(fn, chunks, context, n_workers, in_flight, cancel)
    elif scheduler == "processes":
        stream = _processes(fn, chunks, context, n_workers, in_flight, cancel, single_threaded)
    else:
        stream = _dask(fn, chunks, context, scheduler, n_workers, in_flight, cancel)
    yield from _report(stream, progress, total, ordered)


def _report(stream: Iterator[Outcome[Any]], progress: Callable[[int, int | None], None] | None,
            total: int | None, ordered: bool) -> Iterator[Outcome[Any]]:
    done = 0
    waiting: dict[int, Outcome[Any]] = {}
    next_index = 0
    for outcome in stream:
        done += 1
        if progress is not None:
            progress(done, total)
        if not ordered:
            yield outcome
            continue
        waiting[outcome.index] = outcome
        while next_index in waiting:
            yield waiting.pop(next_index)
            next_index += 1
    for index in sorted(waiting):  # cancelled runs leave gaps
        yield waiting[index]


def _serial(fn: Callable[..., Any], chunks: Iterator[list[tuple[int, str, Any]]],
            factory: Callable[[], Any] | None, cancel: threading.Event | None) -> Iterator[Outcome[Any]]:
    context = factory() if factory is not None else None
    for chunk in chunks:
        for index, key, item in chunk:
            if cancel is not None and cancel.is_set():
                return
            yield _call(fn, item, index, key, context, factory is not None)


def _threads(fn: Callable[..., Any], chunks: Iterator[list[tuple[int, str, Any]]],
             factory: Callable[[], Any] | None, workers: int, in_flight: int,
             cancel: threading.Event | None) -> Iterator[Outcome[Any]]:
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    context = factory() if factory is not None else None

    def run(chunk: list[tuple[int, str, Any]]) -> list[Outcome[Any]]:
        return [_call(fn, item, i, k, context, factory is not None) for i, k, item in chunk]

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medimg-case")
    pending: set[Any] = set()
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < in_flight and not (cancel and cancel.is_set()):
                chunk = next(chunks, None)
                if chunk is None:
                    exhausted = True
                    break
                pending.add(pool.submit(run, chunk))
            if not pending or (cancel and cancel.is_set()):
                return
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield from fut.result()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _start_method() -> str:
    """``fork`` when this process runs no other Python thread (workers then start at once, with
    every module the parent imported), else ``forkserver``: forking a process while another of
    its threads holds a lock (a progress bar's, a previous pool's, logging's) can leave the
    child waiting on that lock for ever; the fork server is a clean single-threaded process.
    ``spawn`` where neither exists."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _new_pool(workers: int, single_threaded: bool) -> Any:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = _start_method()
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["medimg.pipeline.executor", "numpy"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_start,
                               initargs=(_process_identity(os.getpid()), single_threaded))


def _processes(fn: Callable[..., Any], chunks: Iterator[list[tuple[int, str, Any]]],
               factory: Callable[[], Any] | None, workers: int, in_flight: int,
               cancel: threading.Event | None, single_threaded: bool) -> Iterator[Outcome[Any]]:
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    pool = _new_pool(workers, single_threaded)
    pending: dict[Any, tuple[list[tuple[int, str, Any]], bool]] = {}  # future -> (chunk, is a retry)
    retry: list[tuple[list[tuple[int, str, Any]], bool]] = []
    exhausted = False
    try:
        while True:
            broken_at_submit = False
            while len(pending) < in_flight and not (cancel and cancel.is_set()):
                if retry:  # suspects run alone, one at a time, so that a crash names its case
                    if pending:
                        break
                    chunk, again = retry.pop(0)
                else:
                    if exhausted:
                        break
                    chunk = next(chunks, None)
                    if chunk is None:
                        exhausted = True
                        break
                    again = False
                try:
                    pending[pool.submit(_run_chunk, fn, chunk, factory)] = (chunk, again)
                except BrokenProcessPool:  # a worker died since the last wait: the pool takes no more
                    retry.append((chunk, again))  # never started: it keeps its flag
                    broken_at_submit = True
                    break
            if broken_at_submit:
                finished, broken = set(), True
            else:
                if not pending or (cancel and cancel.is_set()):
                    return
                finished, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                broken = False
            for fut in finished:
                chunk, again = pending.pop(fut)
                try:
                    outcomes = fut.result()
                except BrokenProcessPool:
                    broken = True
                    if again:  # it killed its worker twice: this case is the cause
                        yield from (Outcome(i, k, False, None, "WorkerDied",
                                            "the worker process died while running this case "
                                            "(a native crash or the out-of-memory killer)") for i, k, _ in chunk)
                    else:  # retry each case alone, to find the one that kills its worker
                        retry.extend(([case], True) for case in chunk)
                    continue
                yield from outcomes
            if broken:
                # every future of a broken pool fails: requeue the rest and start a new pool
                for fut, (chunk, again) in pending.items():
                    fut.cancel()
                    if again:
                        retry.append((chunk, True))
                    else:
                        retry.extend(([case], True) for case in chunk)
                pending.clear()
                _stop_processes(pool, grace_s=0.5)
                pool = _new_pool(workers, single_threaded)
    finally:
        if pending or (cancel is not None and cancel.is_set()):
            _stop_processes(pool)
        else:
            pool.shutdown(wait=True)


def _probe(address: str, timeout_s: float = 3.0) -> None:
    """Fail at once, in one clear line, when nothing listens at a ``tcp://`` scheduler address
    (Dask's client would retry until its own time-out)."""
    import socket
    from urllib.parse import urlsplit

    if not address.startswith("tcp://"):
        return
    parts = urlsplit(address)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 8786), timeout=timeout_s):
            pass
    except (OSError, ValueError) as err:
        raise UserInputError(f"cannot reach the Dask scheduler at {address}: {getattr(err, 'strerror', None) or err}") from err


def _dask(fn: Callable[..., Any], chunks: Iterator[list[tuple[int, str, Any]]],
          factory: Callable[[], Any] | None, scheduler: str, workers: int, in_flight: int,
          cancel: threading.Event | None) -> Iterator[Outcome[Any]]:
    try:
        from dask.distributed import Client, LocalCluster, wait
    except ImportError as err:  # pragma: no cover - dask[distributed] is in the `parallel` extra
        from medimg.errors import MissingDependencyError

        raise MissingDependencyError("Dask schedulers need dask.distributed: pip install medimg[parallel]") from err
    with contextlib.ExitStack() as stack:
        if scheduler == "dask":
            cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                       dashboard_address="127.0.0.1:0", host="127.0.0.1"))
            client = stack.enter_context(Client(cluster))
        else:
            _probe(scheduler)
            try:
                client = stack.enter_context(Client(scheduler, timeout="10s"))
            except (OSError, TimeoutError) as err:
                raise UserInputError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from err
        capacity = max(in_flight, 2 * max(1, sum(client.nthreads().values())))
        pending: dict[Any, list[tuple[int, str, Any]]] = {}
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < capacity and not (cancel and cancel.is_set()):
                    chunk = next(chunks, None)
                    if chunk is None:
                        exhausted = True
                        break
                    pending[client.submit(_run_chunk, fn, chunk, factory, pure=False)] = chunk
                if not pending or (cancel and cancel.is_set()):
                    return
                finished = wait(list(pending), timeout=None, return_when="FIRST_COMPLETED").done
                for fut in finished:
                    chunk = pending.pop(fut)
                    if fut.status != "finished":  # e.g. KilledWorker: the worker died running it
                        err = fut.exception()
                        yield from (Outcome(i, k, False, None, type(err).__name__,
                                            f"the Dask task running this case failed: {type(err).__name__}: {err}")
                                    for i, k, _ in chunk)
                        continue
                    yield from fut.result()
        finally:
            if pending:
                client.cancel(list(pending))
