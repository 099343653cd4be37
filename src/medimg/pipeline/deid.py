"""De-identifying a folder with worker processes.

:func:`medimg.deid.deidentify` does the work (listing, resuming, placing outputs, the signed
audit trail); this module only decides who de-identifies the files: from
:data:`PARALLEL_MIN_FILES` files, worker processes of :func:`~medimg.pipeline.run_cases`, each
with its own :class:`~medimg.deid.engine.Deidentifier` built once (one core stays with the main
process, which writes the audit trail and moves every output to its name).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from medimg.deid.keys import Key
from medimg.deid.profile import Options
from medimg.deid.run import DeidReport, FileTask, serial_files
from medimg.deid.run import deidentify as _deidentify
from medimg.pipeline.executor import default_workers, run_cases

__all__ = ["deidentify", "worker_files", "PARALLEL_MIN_FILES"]

#: From this many files to do, worker processes de-identify them.
PARALLEL_MIN_FILES = 64


def worker_files(workers: int | None = None, *, scheduler: str = "processes",
                 min_files: int | None = None) -> Callable[..., Iterator[dict[str, Any]]]:
    """A :data:`~medimg.deid.run.FileRunner` on the executor (``workers`` default: one less than
    the CPUs; in this process below ``min_files`` files or with one worker)."""
    n = workers if workers is not None else max(1, default_workers() - 1)

    def run(process_file: Callable[[FileTask, Any], dict[str, Any]], tasks: list[FileTask],
            make_deidentifier: Callable[[], Any]) -> Iterator[dict[str, Any]]:
        threshold = PARALLEL_MIN_FILES if min_files is None else min_files
        if n <= 1 or len(tasks) < max(2, threshold):
            yield from serial_files(process_file, tasks, make_deidentifier)
            return
        for outcome in run_cases(process_file, tasks, context=make_deidentifier, scheduler=scheduler,
                                 workers=n, chunk_size=1):
            if outcome.ok:
                yield outcome.value
            else:  # the worker died on this file (a decoder crash): the file fails, the run goes on
                path, rel = tasks[outcome.index][:2]
                yield {"rel": rel, "status": "failed", "error_type": outcome.error_type, "problem": outcome.error,
                       "console": f"{path}: {outcome.error}"}

    return run


def deidentify(in_dir: str | Path, out_dir: str | Path, *, key: Key, options: Options | None = None,
               quarantine_dir: str | Path | None = None, mapping_path: str | Path | None = None,
               workers: int | None = None, scheduler: str = "processes",
               progress: Callable[[int, int], None] | None = None) -> DeidReport:
    """:func:`medimg.deid.deidentify` with the files de-identified by ``workers`` processes (see
    :func:`worker_files`); the same outputs, audit trail and counts as a serial run."""
    return _deidentify(in_dir, out_dir, key=key, options=options, quarantine_dir=quarantine_dir,
                       mapping_path=mapping_path, run_files=worker_files(workers, scheduler=scheduler),
                       progress=progress)
