"""Indexing a folder into the catalog with worker processes reading the headers.

:func:`medimg.catalog.index_folder` does the work (walk, incremental comparison, batched
upserts); this module only decides who reads the headers: for :data:`PARALLEL_MIN_FILES` files
or more, chunks go to :func:`~medimg.pipeline.run_cases` worker processes (one core stays with
the main process, which writes the database), otherwise this process reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from medimg.catalog import index as _index
from medimg.catalog.db import Catalog
from medimg.catalog.index import IndexReport
from medimg.pipeline.executor import default_workers, run_cases

__all__ = ["index_folder", "index_files", "worker_reader"]


def worker_reader(workers: int | None = None, *, scheduler: str = "processes",
                  min_files: int | None = None) -> Callable[..., Iterator[list[tuple[Any, ...]]]]:
    """A :data:`~medimg.catalog.index.ChunkReader` that reads chunks through the executor.

    ``workers`` defaults to one less than the CPUs (the main process writes the database); with
    fewer than ``min_files`` files (default :data:`~medimg.catalog.index.PARALLEL_MIN_FILES`) or
    one worker, the chunks are read in this process (on 2 shared cores the pool only breaks even,
    see BENCHMARKS.md; it pays with more cores and colder caches)."""
    n = workers if workers is not None else max(1, default_workers() - 1)

    def read(read_chunk: Callable[[Sequence[Any]], list[tuple[Any, ...]]],
             chunks: list[Sequence[Any]]) -> Iterator[list[tuple[Any, ...]]]:
        threshold = _index.PARALLEL_MIN_FILES if min_files is None else min_files
        if n <= 1 or sum(len(c) for c in chunks) < threshold:
            yield from _index.serial_reader(read_chunk, chunks)
            return
        for outcome in run_cases(read_chunk, chunks, scheduler=scheduler, workers=n, chunk_size=1):
            if outcome.ok:
                yield outcome.value
            else:  # the worker died on one of these files: read them here, one by one, to name it
                yield [row for item in chunks[outcome.index] for row in _read_alone(read_chunk, item)]

    return read


def _read_alone(read_chunk: Callable[[Sequence[Any]], list[tuple[Any, ...]]], item: Any) -> list[tuple[Any, ...]]:
    try:
        return read_chunk([item])
    except Exception as err:  # noqa: BLE001 - a file that breaks the reader is recorded as corrupt
        path, size, mtime, fid = item
        return [(path, size, mtime, fid, "corrupt", f"{type(err).__name__}: {err}", None)]


def index_folder(catalog: Catalog, folder: str | Path, *, workers: int | None = None, scheduler: str = "processes",
                 batch_size: int = 2000, progress: Callable[[int, int], None] | None = None) -> IndexReport:
    """:func:`medimg.catalog.index_folder` with headers read by ``workers`` processes (see
    :func:`worker_reader`)."""
    return _index.index_folder(catalog, folder, read_chunks=worker_reader(workers, scheduler=scheduler),
                               batch_size=batch_size, progress=progress)


def index_files(catalog: Catalog, files: Sequence[str | Path], *, workers: int | None = None,
                batch_size: int = 2000) -> IndexReport:
    """:func:`medimg.catalog.index_files` with headers read by ``workers`` processes."""
    return _index.index_files(catalog, files, read_chunks=worker_reader(workers), batch_size=batch_size)


