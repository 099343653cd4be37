"""Convert every image series under a DICOM folder to one file each (``medimg convert IN OUTDIR``).

Two passes through :func:`medimg.pipeline.executor.run_cases`: the file list is scanned
(headers only: the first 16 kB of each file; in contiguous chunks by worker processes when
there are at least 3 of them, else in this process, where no header has to come back pickled)
and the frames grouped into series here; then each series is read, written and compressed by a
worker process (forked after the grouping, so that it finds its series in memory instead of
receiving it pickled). Each output gets its provenance sidecar; its input record is the SHA-256 of that
series' files (the same scheme as :func:`medimg.core.provenance.tree_sha256`, over the series'
files only). A series that fails (irregular spacing, an undecodable file) is reported and the
others go on.

Every input byte is read once for the pixels and the hash together: uncompressed files are read
whole by one ``preadv`` (pixels straight into the volume) and hashed from those buffers
(:func:`medimg.io.dicom.read_series` with ``hashes``); only files decoded another way
(compressed syntaxes) are read a second time to hash them. The output is hashed from the bytes
as they are written (:func:`medimg.io.nifti.write_nifti`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medimg.errors import ParameterError, UserInputError

__all__ = ["SeriesOutput", "convert_folder", "series_file_name"]

OUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
#: The headers are read by worker processes only with at least this many workers and files
#: (fewer: in this process; see :func:`convert_folder`).
PARALLEL_SCAN_MIN_WORKERS = 3
PARALLEL_SCAN_MIN_FILES = 256


@dataclass(frozen=True)
class SeriesOutput:
    """One converted series: where it was written, or why it failed."""

    key: str
    path: Path | None
    summary: str = ""
    error: str = ""
    warnings: tuple[str, ...] = ()


def series_file_name(series: Any) -> str:
    """``<SeriesNumber>_<SeriesInstanceUID>`` (``_n`` for volume n of a split series), as
    dcm2niix's ``-f %s_%j``; characters other than letters, digits, ``.``, ``-`` become ``_``."""
    number = series.get("SeriesNumber")
    try:
        number = int(number)
    except (TypeError, ValueError):
        number = 0
    return re.sub(r"[^A-Za-z0-9.\-]", "_", f"{number}_{series.key}")


def _files_sha256(files: list[Path], root: Path, shas: dict[str, str] | None = None) -> str:
    """SHA-256 over the files' relative POSIX paths and contents (tree_sha256's scheme); the
    files' own SHA-256 are taken from ``shas`` (path -> hex) where given."""
    from medimg.core.provenance import sha256_file

    digest = hashlib.sha256()
    prefix = os.path.join(str(root), "")

    def relative(full: str) -> str:
        if os.sep == "/" and full.startswith(prefix) and "/./" not in full and "/../" not in full:
            return full[len(prefix):]  # the usual case: a file listed under root, no path walking
        return Path(os.path.relpath(full, root)).as_posix()

    rows = sorted((relative(str(f)), str(f)) for f in files)
    for rel, full in rows:
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(((shas or {}).get(full) or sha256_file(full)).encode() + b"\n")
    return digest.hexdigest()


def _scan_chunk(files: list[Path]) -> tuple[list[Any], list[tuple[str, str]]]:
    """Headers of some files (in this process): their image frames and the files that failed
    (path, message)."""
    from medimg.io.dicom import scan

    result = scan(files)
    frames = [f for series in result.series for f in series.frames]
    return frames, [(str(p), str(e)) for p, e in result.failures]


#: File lists of running scans, by run token: workers forked after the list was made find their
#: chunk here by (token, start, stop) instead of receiving its paths pickled.
_FORKED_FILES: dict[int, list[Path]] = {}


def _scan_packed(ref: tuple[int, int, int, list[Path] | None]) -> tuple[int, list[tuple[Any, ...]],
                                                                      list[tuple[Any, ...]], list[tuple[str, str]]]:
    """:func:`_scan_chunk` of files ``start:stop`` (runs in a worker), its frames packed for the
    trip back to the parent (:func:`_unpack_frames`): each header as a tuple of its fields with
    its path as the file's index in the chunk (the parent has the path already), each position
    as a tuple of floats (an array pickles ~10x slower). About half the cost, on both sides, of
    pickling the objects themselves."""
    from medimg.io.dicom.header import Header

    header_fields = _field_names(Header)[1:]  # the path (first) goes as an index
    token, start, stop, paths = ref
    files = paths if paths is not None else _FORKED_FILES[token][start:stop]
    frames, failures = _scan_chunk(files)
    index = {path: i for i, path in enumerate(files)}
    headers: dict[int, int] = {}  # id(header) -> row in packed_headers
    packed_headers: list[tuple[Any, ...]] = []
    packed_frames: list[tuple[Any, ...]] = []
    for frame in frames:
        header = frame.header
        row = headers.get(id(header))
        if row is None:
            row = headers[id(header)] = len(packed_headers)
            packed_headers.append((index[header.path], *(getattr(header, name) for name in header_fields)))
        position = frame.position
        packed_frames.append((row, frame.index, None if position is None else tuple(position.tolist()),
                              frame.orientation, frame.pixel_spacing, frame.slope, frame.intercept,
                              frame.thickness, frame.keys))
    return start, packed_headers, packed_frames, failures


def _unpack_frames(files: list[Path], packed_headers: list[tuple[Any, ...]],
                   packed_frames: list[tuple[Any, ...]]) -> list[Any]:
    """The frames :func:`_scan_packed` packed, rebuilt in this process (``files``: its chunk)."""
    import numpy as np

    from medimg.io.dicom.header import Header
    from medimg.io.dicom.scan import Frame

    headers = [Header(files[row[0]], *row[1:]) for row in packed_headers]
    return [Frame(headers[f[0]], f[1], None if f[2] is None else np.array(f[2], dtype=float), *f[3:])
            for f in packed_frames]


def _field_names(cls: type) -> tuple[str, ...]:
    """The dataclass's fields, in the order its constructor takes them."""
    import dataclasses

    return tuple(f.name for f in dataclasses.fields(cls))


@dataclass(frozen=True)
class _Job:
    series: Any
    out: Path
    root: Path
    on_irregular: str
    argv: list[str] | None
    hash_inputs: bool = True


def _convert_one(job: _Job) -> SeriesOutput:
    """Read one series and write it with its sidecar (runs in a worker)."""
    from medimg import io
    from medimg.core.provenance import Manifest
    from medimg.io.dicom import read_series

    hashes: dict[Path, str] | None = {} if job.hash_inputs else None  # each input's SHA-256, from its pixel read
    image = read_series(job.series, on_irregular=job.on_irregular, hashes=hashes)  # type: ignore[arg-type]
    manifest = Manifest(command="medimg convert", parameters={"series": job.series.key,
                                                              "resample": job.on_irregular == "resample",
                                                              "hash_inputs": job.hash_inputs},
                        argv=job.argv)
    files = job.series.files
    if hashes is not None:
        shas = {str(p): digest for p, digest in hashes.items()}
        manifest.add_input(job.root, role="image", hash_file=False, n_files=len(files),
                           sha256_files=_files_sha256(files, job.root, shas), series_uid=job.series.series_uid)
    else:  # the files are named by count and series, not fingerprinted (hash_inputs=False)
        manifest.add_input(job.root, role="image", hash_file=False, n_files=len(files), sha256_files=None,
                           series_uid=job.series.series_uid)
    io.write(image, job.out, provenance=manifest)
    return SeriesOutput(job.series.key, job.out, f"{image.grid_summary()} {image.dtype}", "",
                        tuple(image.meta.get("warnings", [])))


def _prepare_forked_workers() -> None:
    """What every conversion worker needs, done once in this process before the workers are
    forked (they inherit it) instead of once in each: the writer's modules, and the package
    versions, git commit and platform of the provenance record (cached per process)."""
    from medimg.core.provenance import Manifest
    from medimg.io import nifti, sidecar  # noqa: F401

    Manifest(command="medimg convert").to_dict()


#: Jobs of running conversions, by run token. Workers forked after the jobs were built find
#: their job here by (token, index) instead of receiving it pickled (a series of 100 slices
#: is ~100 kB of pickled headers, pickled by the parent and unpickled by a worker).
_FORKED_JOBS: dict[int, list[_Job]] = {}


def _convert_forked(ref: tuple[int, int]) -> SeriesOutput:
    """:func:`_convert_one` of job ``index`` of run ``token`` (runs in a forked worker)."""
    token, index = ref
    jobs = _FORKED_JOBS.get(token)
    if jobs is None:  # a worker not forked from the process that built the jobs (cannot happen with fork)
        raise RuntimeError("convert: this worker did not inherit the series to convert (not a forked worker)")
    return _convert_one(jobs[index])


def convert_folder(
    src: str | Path,
    dst: str | Path,
    *,
    suffix: str = ".nii.gz",
    on_irregular: Literal["error", "resample"] = "error",
    overwrite: bool = False,
    workers: int | None = None,
    argv: list[str] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    hash_inputs: bool = True,
) -> Iterator[SeriesOutput]:
    """Convert every image series under the DICOM folder ``src`` to ``dst/<name><suffix>``.

    Parameters
    ----------
    src
        A folder of DICOM files (searched recursively).
    dst
        The output folder (created). File names: :func:`series_file_name`.
    suffix
        ``.nii.gz`` (default), ``.nii``, ``.nrrd`` or ``.mha``.
    on_irregular
        ``"error"``: a series with unequal spacing or gantry tilt fails; ``"resample"``: it is
        resampled onto a regular grid (see :func:`medimg.io.read`).
    overwrite
        Replace existing outputs (otherwise an existing output stops the run before any work).
    workers
        Worker processes (default: the CPUs this process may use; 1: in this process).
    argv
        The command line, recorded in each sidecar.
    progress
        ``progress(done, total)`` per finished series.
    hash_inputs
        Record the SHA-256 of the series' files in each sidecar (default; computed from the
        read of the pixels, about 1 s of CPU per GB). ``False`` records their count and the
        series UID only (the output file is hashed either way).

    Yields
    ------
    SeriesOutput
        One per series, in the order they finish.
    """
    from medimg.io.dicom.scan import group_frames, list_files
    from medimg.pipeline.executor import _start_method, default_workers, run_cases

    if suffix not in OUT_SUFFIXES:
        raise ParameterError(f"convert: output suffix must be one of {', '.join(OUT_SUFFIXES)}, got {suffix!r}")
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise UserInputError(f"{src}: not a folder (converting a folder of series needs a DICOM folder)")
    if dst.exists() and not dst.is_dir():
        raise UserInputError(f"{dst}: exists and is not a folder")
    files = list_files(src)
    n = default_workers() if workers is None else max(1, int(workers))
    # 1. headers: here, or in parallel over contiguous chunks of the file list with 3 workers or
    # more (this process then only unpacks the frames, ~8 us a file). A header costs ~25 us to
    # read and ~20 us to check (the files of a series mostly through the last file's template,
    # medimg.io.dicom.header): with 2 workers, their start and the round trip cost more CPU
    # (~0.1 s for 2,000 files here) than the ~0.03 s of wall time they save on an idle machine,
    # and on a busy one the CPU time is what counts
    parallel_scan = n >= PARALLEL_SCAN_MIN_WORKERS and len(files) >= PARALLEL_SCAN_MIN_FILES
    frames: list[Any] = []
    failures: list[str] = []
    if parallel_scan:
        n_chunks = min(len(files), 4 * n)
        bounds = [(len(files) * i // n_chunks, len(files) * (i + 1) // n_chunks) for i in range(n_chunks)]
        scan_token = id(files)
        forked = _start_method() == "fork"
        if forked:  # the workers inherit the file list
            _FORKED_FILES[scan_token] = files
        refs = [(scan_token, lo, hi, None if forked else files[lo:hi]) for lo, hi in bounds]
        try:
            for outcome in run_cases(_scan_packed, refs, scheduler="processes", workers=n, chunk_size=1,
                                     ordered=True, single_threaded=False):
                if not outcome.ok:
                    raise UserInputError(f"{src}: scanning failed: {outcome.error}")
                start, packed_headers, packed_frames, part_failures = outcome.value  # type: ignore[misc]
                frames.extend(_unpack_frames(files[start:], packed_headers, packed_frames))
                failures.extend(part_failures)
                if forked and start == 0:  # while the workers read the other chunks
                    _prepare_forked_workers()
        finally:
            _FORKED_FILES.pop(scan_token, None)
    else:
        frames, failures = _scan_chunk(files)  # type: ignore[assignment]
    all_series = group_frames(frames)
    if not all_series:
        raise UserInputError(f"{src}: no DICOM image series found ({len(failures)} unreadable files)")
    jobs: list[_Job] = []
    seen: set[str] = set()
    for series in all_series:
        name = series_file_name(series)
        while name in seen:
            name += "_"
        seen.add(name)
        out = dst / f"{name}{suffix}"
        if out.exists() and not overwrite:
            raise UserInputError(f"{out}: exists already (pass --overwrite to replace it)")
        jobs.append(_Job(series, out, src, on_irregular, argv, hash_inputs))
    dst.mkdir(parents=True, exist_ok=True)
    # 2. each series read and written by a worker
    n = min(n, len(jobs))
    scheduler = "serial" if n == 1 else "processes"
    token = id(jobs)
    fn: Callable[[Any], SeriesOutput] = _convert_one
    items: list[Any] = jobs
    key: Callable[[Any], str] = lambda job: job.series.key  # noqa: E731
    if scheduler == "processes" and _start_method() == "fork":  # the workers inherit the jobs
        _prepare_forked_workers()
        _FORKED_JOBS[token] = jobs
        fn, items = _convert_forked, [(token, i) for i in range(len(jobs))]
        key = lambda ref: jobs[ref[1]].series.key  # noqa: E731
    try:
        for outcome in run_cases(fn, items, key=key, scheduler=scheduler, workers=n, chunk_size=1,
                                 progress=progress, total=len(jobs), single_threaded=False):
            if outcome.ok:
                yield outcome.value  # type: ignore[misc]
            else:
                yield SeriesOutput(outcome.key, None, error=outcome.error)
    finally:
        _FORKED_JOBS.pop(token, None)
