"""Indexing DICOM files into the catalog: fast headers, batched inserts, incremental, parallel.

* Headers are read with :func:`medimg.io.dicom.header.read_header` (a few microseconds of
  parsing per file, stopping at the pixel data), in chunks; who reads the chunks is the
  caller's choice (``read_chunks``): in this process by default, or by worker processes through
  :func:`medimg.pipeline.index.index_folder` for large folders.
* Rows are written in batches with multi-row INSERTs (``RETURNING`` the new keys); each batch
  is its own transaction, so an interrupted run keeps what it indexed and the next run resumes.
* A file whose path, size and modification time are unchanged since the last run is skipped;
  a file that vanished is marked ``missing``; a file that cannot be read is recorded as
  ``corrupt`` or ``not_dicom`` with the reason, and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimg.catalog.db import Catalog
from medimg.errors import FileFormatError
from medimg.io.dicom.values import parse_da

__all__ = ["index_folder", "index_files", "IndexReport", "read_chunk", "ChunkReader", "PARALLEL_MIN_FILES"]

#: What reads chunks of files: ``reader(read_chunk, chunks)`` returns the results of
#: ``read_chunk(chunk)`` for every chunk, in any order (:func:`serial_reader` by default).
ChunkReader = Callable[[Callable[[Sequence[tuple[str, int, int, int | None]]], list[tuple[Any, ...]]],
                        list[Sequence[tuple[str, int, int, int | None]]]], Iterable[list[tuple[Any, ...]]]]

_SKIP_NAMES = {"DICOMDIR", "Thumbs.db"}
_SKIP_SUFFIXES = {".txt", ".csv", ".json", ".jsonl", ".xml", ".nii", ".gz", ".nrrd", ".mha", ".mhd",
                  ".png", ".jpg", ".jpeg", ".md", ".html", ".py", ".zip", ".raw", ".zraw", ".sqlite"}
_FIELDS = (
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
    "StudyTime", "StudyDescription", "AccessionNumber", "StudyID", "SeriesInstanceUID", "Modality",
    "BodyPartExamined", "SeriesDescription", "SeriesNumber", "SeriesDate", "Manufacturer",
    "ManufacturerModelName", "FrameOfReferenceUID", "SOPInstanceUID", "SOPClassUID",
    "InstanceNumber", "Rows", "Columns", "NumberOfFrames",
)
#: Folders with at least this many files to read are read by a process pool (on 2 shared cores
#: the pool only breaks even, see BENCHMARKS.md; it pays with more cores and colder caches).
PARALLEL_MIN_FILES = 10_000


@dataclass
class IndexReport:
    """What an indexing run found and did."""

    root: Path
    n_files: int = 0
    n_new: int = 0
    n_changed: int = 0
    n_unchanged: int = 0
    n_missing: int = 0
    n_ok: int = 0
    n_corrupt: int = 0
    n_not_dicom: int = 0
    seconds: float = 0.0

    @property
    def files_per_second(self) -> float:
        """Files looked at (read or skipped) per second."""
        return self.n_files / self.seconds if self.seconds > 0 else float("inf")


# ------------------------------------------------------------------------------ reading
def _walk(root: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of candidate files under ``root`` (hidden entries skipped)."""
    if root.is_file():
        st = root.stat()
        return [(str(root), st.st_size, st.st_mtime_ns)]
    out: list[tuple[str, int, int]] = []
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                if not entry.is_file():
                    continue
                if name in _SKIP_NAMES or os.path.splitext(name)[1].lower() in _SKIP_SUFFIXES:
                    continue
                st = entry.stat()
            except OSError:
                continue
            out.append((entry.path, st.st_size, st.st_mtime_ns))
    out.sort()
    return out


def _read_one(path: str) -> tuple[str, str | None, dict[str, Any] | None]:
    from medimg.errors import NotDicomError, UserInputError
    from medimg.io.dicom.header import read_header

    try:
        header = read_header(path)
    except NotDicomError as err:
        return "not_dicom", err.problem, None
    except UserInputError as err:
        return "corrupt", getattr(err, "problem", str(err)), None
    except OSError as err:
        return "corrupt", f"cannot be read ({err.strerror or err})", None
    except Exception as err:  # noqa: BLE001 - a broken file is recorded, the run goes on
        return "corrupt", f"{type(err).__name__}: {err}", None
    values = header.values
    missing = [k for k in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID") if not values.get(k)]
    if missing:
        return "corrupt", f"no {', '.join(missing)}: not a composite DICOM object", None
    fields = {k: values.get(k) for k in _FIELDS}
    fields["TransferSyntaxUID"] = header.transfer_syntax
    return "ok", None, fields


def read_chunk(chunk: Sequence[tuple[str, int, int, int | None]]) -> list[tuple[Any, ...]]:
    """Read the headers of a chunk of ``(path, size, mtime_ns, file id)``; one row per file with
    its status (``ok``, ``corrupt``, ``not_dicom``), the problem, and the catalog fields."""
    return [(p, s, m, fid, *_read_one(p)) for p, s, m, fid in chunk]


def serial_reader(read: Callable[[Sequence[Any]], list[tuple[Any, ...]]],
                  chunks: list[Sequence[Any]]) -> Iterator[list[tuple[Any, ...]]]:
    """The default :data:`ChunkReader`: every chunk read in this process, in order."""
    for chunk in chunks:
        yield read(chunk)


def _read_all(items: list[tuple[str, int, int, int | None]], reader: ChunkReader | None,
              batch: int) -> Iterator[list[tuple[Any, ...]]]:
    if reader is None:
        reader = serial_reader
        size = batch
    else:
        size = max(64, min(500, batch))
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    pending: list[tuple[Any, ...]] = []
    for result in reader(read_chunk, chunks):
        pending.extend(result)
        if len(pending) >= batch:
            yield pending
            pending = []
    if pending:
        yield pending


# ------------------------------------------------------------------------------ writing
def _s(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:limit] if text else None


def _i(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _insert(conn: Any, table: Any) -> Any:
    """An INSERT for ``table`` that can take ON CONFLICT clauses (SQLite, PostgreSQL), or a plain one."""
    name = conn.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        return None
    return insert(table)


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _Writer:
    """Batched upserts, keeping UID -> primary key caches across batches.

    Safe with other writers on the same catalog: each batch is one transaction
    (:meth:`Catalog.run_write`); patients, studies, series, instances and files are inserted
    with ``INSERT ... ON CONFLICT`` on their unique key (in key order, so two writers lock rows
    in the same order), then their keys read back; a batch that still conflicts is run again.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.patients: dict[str, int] = {}
        self.studies: dict[str, int] = {}
        self.series: dict[str, int] = {}

    @staticmethod
    def _ids(conn: Any, table: Any, column: Any, keys: Sequence[str]) -> dict[str, int]:
        from sqlalchemy import select

        found: dict[str, int] = {}
        for part in _chunks(keys):
            for key, pk in conn.execute(select(column, table.c.id).where(column.in_(part))):
                found[key] = pk
        return found

    def _keys(self, conn: Any, table: Any, column: Any, rows: dict[str, dict[str, Any]], cache: dict[str, int],
              new_cache: dict[str, int]) -> None:
        """Primary keys of ``rows`` (by unique key) into ``new_cache``; missing rows inserted."""
        from sqlalchemy import insert

        todo = sorted(k for k in rows if k not in cache)
        if not todo:
            return
        upsert = _insert(conn, table)
        if upsert is not None:
            conn.execute(upsert.on_conflict_do_nothing(index_elements=[column.name]), [rows[k] for k in todo])
            new_cache.update(self._ids(conn, table, column, todo))
        else:  # another database: insert what is not there; a conflict reruns the transaction
            known = self._ids(conn, table, column, todo)
            new = [rows[k] for k in todo if k not in known]
            if new:
                conn.execute(insert(table), new)
                known = self._ids(conn, table, column, todo)
            new_cache.update(known)
        missing = [k for k in todo if k not in new_cache]
        if missing:  # pragma: no cover - would be a database bug
            raise RuntimeError(f"{table.name}: rows {missing[:3]} vanished after insertion")

    def write(self, batch: list[tuple[Any, ...]]) -> None:
        """Write one batch (one transaction, run again on a conflict with another writer)."""
        caches: dict[str, dict[str, int]] = {}

        def work(conn: Any) -> None:
            caches.clear()
            caches.update(patients={}, studies={}, series={})
            self._write(conn, batch, caches)

        self.catalog.run_write(work)
        self.patients.update(caches["patients"])  # only what a committed transaction wrote
        self.studies.update(caches["studies"])
        self.series.update(caches["series"])

    def _write(self, conn: Any, batch: list[tuple[Any, ...]], caches: dict[str, dict[str, int]]) -> None:
        from sqlalchemy import bindparam, insert, update

        from medimg.catalog.schema import File, Instance, Patient, Series, Study

        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        ok = [(p, s, m, fid, f) for p, s, m, fid, status, _err, f in batch if status == "ok"]
        patients: dict[str, dict[str, Any]] = {}
        studies: dict[str, dict[str, Any]] = {}
        series: dict[str, dict[str, Any]] = {}
        for *_unused, f in ok:
            pid = _s(f["PatientID"], 64) or ""
            patients.setdefault(pid, {"patient_id": pid, "name": _s(f["PatientName"], 320),
                                      "birth_date": parse_da(f["PatientBirthDate"]), "sex": _s(f["PatientSex"], 16)})
        self._keys(conn, Patient.__table__, Patient.__table__.c.patient_id, patients, self.patients,
                   caches["patients"])
        patient_pk = {**self.patients, **caches["patients"]}
        for *_unused, f in ok:
            uid = f["StudyInstanceUID"]
            if uid not in studies:
                studies[uid] = {
                    "study_uid": uid, "patient_pk": patient_pk[_s(f["PatientID"], 64) or ""],
                    "study_date": parse_da(f["StudyDate"]), "study_time": _s(f["StudyTime"], 32),
                    "description": _s(f["StudyDescription"], 256),
                    "accession_number": _s(f["AccessionNumber"], 64), "study_id": _s(f["StudyID"], 64),
                }
        self._keys(conn, Study.__table__, Study.__table__.c.study_uid, studies, self.studies, caches["studies"])
        study_pk = {**self.studies, **caches["studies"]}
        for *_unused, f in ok:
            uid = f["SeriesInstanceUID"]
            if uid not in series:
                series[uid] = {
                    "series_uid": uid, "study_pk": study_pk[f["StudyInstanceUID"]],
                    "modality": _s(f["Modality"], 16), "body_part": _s(f["BodyPartExamined"], 64),
                    "description": _s(f["SeriesDescription"], 256), "series_number": _i(f["SeriesNumber"]),
                    "series_date": parse_da(f["SeriesDate"]), "manufacturer": _s(f["Manufacturer"], 128),
                    "model": _s(f["ManufacturerModelName"], 128),
                    "frame_of_reference_uid": _s(f["FrameOfReferenceUID"], 64),
                }
        self._keys(conn, Series.__table__, Series.__table__.c.series_uid, series, self.series, caches["series"])
        series_pk = {**self.series, **caches["series"]}

        # a changed file may carry new patient/study/series attributes: update those rows (by key order)
        changed = [f for *head, f in ok if head[3] is not None]
        if changed:
            for table, key, rows, pks in (
                (Patient.__table__, "patient_id", patients, patient_pk),
                (Study.__table__, "study_uid", studies, study_pk),
                (Series.__table__, "series_uid", series, series_pk),
            ):
                keys = sorted({(_s(f["PatientID"], 64) or "") if key == "patient_id" else
                               f["StudyInstanceUID"] if key == "study_uid" else f["SeriesInstanceUID"]
                               for f in changed})
                values = [dict(rows[k], b_id=pks[k]) for k in keys]
                conn.execute(update(table).where(table.c.id == bindparam("b_id"))
                             .values({c: bindparam(c) for c in values[0] if c != "b_id"}), values)

        instances: dict[str, dict[str, Any]] = {}
        for *_unused, f in ok:
            instances[f["SOPInstanceUID"]] = {
                "sop_uid": f["SOPInstanceUID"], "series_pk": series_pk[f["SeriesInstanceUID"]],
                "sop_class_uid": _s(f["SOPClassUID"], 64), "instance_number": _i(f["InstanceNumber"]),
                "rows": _i(f["Rows"]), "columns": _i(f["Columns"]),
                "n_frames": _i(f["NumberOfFrames"]) or 1, "transfer_syntax": _s(f["TransferSyntaxUID"], 64),
            }
        table = Instance.__table__
        uids = sorted(instances)
        upsert = _insert(conn, table)
        if uids and upsert is not None:
            stmt = upsert.on_conflict_do_update(
                index_elements=["sop_uid"],
                set_={c: upsert.excluded[c] for c in next(iter(instances.values())) if c != "sop_uid"})
            conn.execute(stmt, [instances[u] for u in uids])
            inst_pk = self._ids(conn, table, table.c.sop_uid, uids)
        else:
            inst_pk = self._ids(conn, table, table.c.sop_uid, uids)
            existing = [dict(instances[u], b_id=inst_pk[u]) for u in uids if u in inst_pk]
            if existing:
                conn.execute(update(table).where(table.c.id == bindparam("b_id"))
                             .values({c: bindparam(c) for c in existing[0] if c != "b_id"}), existing)
            new = [instances[u] for u in uids if u not in inst_pk]
            if new:
                for pk, uid in conn.execute(insert(table).returning(table.c.id, table.c.sop_uid), new):
                    inst_pk[uid] = pk

        files = {}
        for path, size, mtime, _fid, status, error, f in batch:
            files[path] = {"path": path, "size": size, "mtime_ns": mtime, "status": status, "error": error,
                           "instance_pk": inst_pk[f["SOPInstanceUID"]] if f else None, "indexed_at": now}
        ftable = File.__table__
        rows = [files[p] for p in sorted(files)]
        upsert = _insert(conn, ftable)
        if upsert is not None:  # a file another writer indexed meanwhile is updated, not duplicated
            conn.execute(upsert.on_conflict_do_update(
                index_elements=["path"], set_={c: upsert.excluded[c] for c in rows[0] if c != "path"}), rows)
            return
        known = self._ids(conn, ftable, ftable.c.path, [r["path"] for r in rows])
        changed_files = [dict(r, b_id=known[r["path"]]) for r in rows if r["path"] in known]
        new_files = [r for r in rows if r["path"] not in known]
        if new_files:
            conn.execute(insert(ftable), new_files)
        if changed_files:
            conn.execute(update(ftable).where(ftable.c.id == bindparam("b_id"))
                         .values({c: bindparam(c) for c in changed_files[0] if c != "b_id"}), changed_files)


def _known(catalog: Catalog, root: Path) -> dict[str, tuple[int, int, int, str]]:
    from sqlalchemy import select

    from medimg.catalog.schema import File

    t = File.__table__
    query = select(t.c.path, t.c.id, t.c.size, t.c.mtime_ns, t.c.status)
    if root.is_dir():
        prefix = str(root).rstrip(os.sep) + os.sep
        query = query.where(t.c.path >= prefix, t.c.path < prefix[:-1] + chr(ord(os.sep) + 1))
    else:
        query = query.where(t.c.path == str(root))
    with catalog.engine.connect() as conn:
        return {p: (i, s, m, st) for p, i, s, m, st in conn.execute(query)}


def _run(catalog: Catalog, found: list[tuple[str, int, int]], known: dict[str, tuple[int, int, int, str]],
         report: IndexReport, *, mark_vanished: bool, read_chunks: ChunkReader | None, batch_size: int,
         progress: Callable[[int, int], None] | None) -> IndexReport:
    from sqlalchemy import update

    from medimg.catalog.schema import File

    t0 = time.perf_counter()
    report.n_files = len(found)
    todo: list[tuple[str, int, int, int | None]] = []
    for path, size, mtime in found:
        k = known.pop(path, None)
        if k is not None and k[1] == size and k[2] == mtime and k[3] != "missing":
            report.n_unchanged += 1
            continue
        if k is None:
            report.n_new += 1
        else:
            report.n_changed += 1
        todo.append((path, size, mtime, k[0] if k else None))
    if mark_vanished:
        gone = [k[0] for k in known.values() if k[3] != "missing"]
        report.n_missing = len(gone)
        ftable = File.__table__

        def mark(conn: Any) -> None:
            for part in _chunks(sorted(gone)):
                conn.execute(update(ftable).where(ftable.c.id.in_(part)).values(status="missing"))

        if gone:
            catalog.run_write(mark)
    writer = _Writer(catalog)
    done = 0
    total = len(todo)
    if progress is not None:
        progress(0, total)
    for batch in _read_all(todo, read_chunks, batch_size):
        writer.write(batch)
        for row in batch:
            status = row[4]
            if status == "ok":
                report.n_ok += 1
            elif status == "not_dicom":
                report.n_not_dicom += 1
            else:
                report.n_corrupt += 1
        done += len(batch)
        if progress is not None:
            progress(done, total)
    report.seconds += time.perf_counter() - t0
    return report


def index_folder(
    catalog: Catalog,
    folder: str | Path,
    *,
    read_chunks: ChunkReader | None = None,
    batch_size: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> IndexReport:
    """Index every DICOM file under ``folder`` (recursively) into ``catalog``; incremental.

    Parameters
    ----------
    catalog
        An open :class:`~medimg.catalog.db.Catalog`.
    folder
        A folder (or a single file). Paths are stored absolute.
    read_chunks
        Who reads the headers (:data:`ChunkReader`); default: this process. Worker processes
        are :func:`medimg.pipeline.index.index_folder`'s business.
    batch_size
        Files per transaction.
    progress
        ``progress(done, total)`` over the files to read.

    Returns
    -------
    IndexReport
        Counts of new, changed, unchanged, missing, ok, corrupt and non-DICOM files.
    """
    t0 = time.perf_counter()
    root = Path(folder).resolve()
    if not root.exists():
        raise FileFormatError(root, "no such file or folder")
    found = _walk(root)
    known = _known(catalog, root)
    report = IndexReport(root=root, seconds=time.perf_counter() - t0)
    return _run(catalog, found, known, report, mark_vanished=True, read_chunks=read_chunks,
                batch_size=batch_size, progress=progress)


def index_files(catalog: Catalog, files: Sequence[str | Path], *, read_chunks: ChunkReader | None = None,
                batch_size: int = 2000) -> IndexReport:
    """Index the given files (for example instances just retrieved from a PACS); no vanish marking."""
    t0 = time.perf_counter()
    found = []
    for f in files:
        p = Path(f).resolve()
        st = p.stat()
        found.append((str(p), st.st_size, st.st_mtime_ns))
    known: dict[str, tuple[int, int, int, str]] = {}
    if found:
        from sqlalchemy import select

        from medimg.catalog.schema import File

        t = File.__table__
        paths = [p for p, _, _ in found]
        with catalog.engine.connect() as conn:
            for start in range(0, len(paths), 500):
                for p, i, s, m, st in conn.execute(select(t.c.path, t.c.id, t.c.size, t.c.mtime_ns, t.c.status)
                                                   .where(t.c.path.in_(paths[start:start + 500]))):
                    known[p] = (i, s, m, st)
    report = IndexReport(root=Path(os.path.commonpath([p for p, _, _ in found])) if found else Path("."),
                         seconds=time.perf_counter() - t0)
    return _run(catalog, found, known, report, mark_vanished=False, read_chunks=read_chunks,
                batch_size=batch_size, progress=None)
