"""De-identifying a folder: every file, in parallel, resumable, with an audit trail.

Layout of the output folder ``OUT``::

    OUT/<pseudonym>/<new Study UID>/<new Series UID>/<new SOP Instance UID>.dcm
    OUT/deid-audit.jsonl      the audit trail (hash-chained, no PHI)

Inputs are read, never written. Each output is written under a temporary name and renamed. A
file that fails is recorded (``failed``) and the run goes on; a file whose pixels may show
identity is copied to the quarantine folder (outside ``OUT``) with its reason. Running again
on the same ``IN``/``OUT`` with the same key skips the files already done (same path, size and
modification time, output present) and picks up where an interrupted run stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimg.core.files import atomic_path
from medimg.deid.audit import AuditTrail, read_records
from medimg.deid.encode import encode_part10
from medimg.deid.engine import Deidentifier
from medimg.deid.keys import Key
from medimg.deid.profile import PROFILE_SOURCE, Options
from medimg.errors import FileFormatError, ParameterError, UserInputError

__all__ = ["deidentify", "DeidReport", "AUDIT_NAME", "deidentify_file"]

AUDIT_NAME = "deid-audit.jsonl"
_PARALLEL_MIN_FILES = 64


@dataclass
class DeidReport:
    """Totals of a run (``counts`` sums the actions over the files done in this run)."""

    out_dir: Path
    audit_path: Path
    quarantine_dir: Path
    n_inputs: int = 0
    n_done: int = 0
    n_skipped: int = 0
    n_quarantined: int = 0
    n_failed: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (input path, error): for the console only


# ------------------------------------------------------------------------------ one file
def deidentify_file(path: Path, deidentifier: Deidentifier, *, data: bytes | None = None) -> tuple[Any, Any]:
    """Read ``path`` (or its bytes ``data``, already read) and return (de-identified pydicom
    Dataset, :class:`DatasetResult`). The file is not modified."""
    import io

    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data) if data is not None else path)
    except InvalidDicomError as err:
        raise FileFormatError(path, "not a DICOM file (no 'DICM' prefix)") from err
    except (EOFError, OSError, ValueError, TypeError, KeyError, RuntimeError) as err:
        raise FileFormatError(path, f"cannot be read as DICOM ({type(err).__name__})") from err
    if "SOPInstanceUID" not in ds:
        raise FileFormatError(path, "has no SOP Instance UID (0008,0018); not a composite object")
    _check_pixel_length(ds, path)
    result = deidentifier.deidentify_dataset(ds)
    return ds, result


def _check_pixel_length(ds: Any, path: Path) -> None:
    """Native Pixel Data shorter than Rows x Columns x ... says: the file was cut short."""
    if "PixelData" not in ds or ds.file_meta.get("TransferSyntaxUID") is None:
        return
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return
    try:
        from pydicom.pixels.utils import get_expected_length

        expected = get_expected_length(ds, unit="bytes")
    except Exception:  # noqa: BLE001 - incomplete pixel description: nothing to compare
        return
    present = len(ds.PixelData or b"")
    if present < expected:
        raise FileFormatError(path, f"pixel data is cut short: {present} of {expected} bytes present")


_WORKER: Deidentifier | None = None


def _init_worker(secret: bytes, options: dict[str, Any]) -> None:
    global _WORKER
    _WORKER = Deidentifier(Key(secret), Options.from_dict(options))


def _work(task: tuple[str, str, str, str]) -> dict[str, Any]:
    assert _WORKER is not None
    return _process(task, _WORKER)


def _process(task: tuple[str, str, str, str], deidentifier: Deidentifier) -> dict[str, Any]:
    """De-identify one file; write its output (or quarantine copy); report without PHI."""
    in_path_s, rel, out_root_s, quarantine_s = task
    in_path = Path(in_path_s)
    out: dict[str, Any] = {"rel": rel}
    try:
        data = in_path.read_bytes()  # read once: hashed, then parsed
        out["input_sha256"] = hashlib.sha256(data).hexdigest()
        ds, result = deidentify_file(in_path, deidentifier, data=data)
        del data
    except UserInputError as err:
        problem = getattr(err, "problem", None)
        out.update(status="failed", error_type=type(err).__name__, problem=problem or "",
                   console=str(err))
        return out
    except Exception as err:  # noqa: BLE001 - a failing file is recorded, the run goes on
        out.update(status="failed", error_type=type(err).__name__, problem="",
                   console=f"{in_path}: {type(err).__name__}: {err}")
        return out
    out["counts"] = dict(result.counts)
    out["mapping"] = {"patient_key": result.patient_key, "pseudonym": result.pseudonym,
                      "date_shift_days": result.date_shift_days, "uids": result.uids}
    if result.quarantine_reason:
        target = Path(quarantine_s) / f"{out['input_sha256'][:32]}.dcm"
        with atomic_path(target) as tmp:
            shutil.copyfile(in_path, tmp)
        with open(Path(quarantine_s) / "quarantine.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"input": in_path_s, "copy": target.name,
                                 "reason": result.quarantine_reason}) + "\n")
        out.update(status="quarantined", reason=result.quarantine_reason)
        return out
    study = str(ds.get("StudyInstanceUID", "") or "no-study")
    series = str(ds.get("SeriesInstanceUID", "") or "no-series")
    sop = str(ds.SOPInstanceUID)
    out_rel = f"{result.pseudonym}/{study}/{series}/{sop}.dcm"
    try:
        encoded = encode_part10(ds)
        with atomic_path(Path(out_root_s) / out_rel) as tmp:
            if encoded is None:
                ds.save_as(tmp, enforce_file_format=True)
            else:
                tmp.write_bytes(encoded)
    except Exception as err:  # noqa: BLE001 - an unwritable object is a failure of this file
        out.update(status="failed", error_type=type(err).__name__, problem="output could not be encoded",
                   console=f"{in_path}: writing failed: {type(err).__name__}: {err}")
        return out
    out.update(status="ok", output=out_rel)
    return out


# ------------------------------------------------------------------------------ a folder
def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def deidentify(
    in_dir: str | Path,
    out_dir: str | Path,
    *,
    key: Key,
    options: Options | None = None,
    quarantine_dir: str | Path | None = None,
    mapping_path: str | Path | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DeidReport:
    """De-identify every DICOM file under ``in_dir`` into ``out_dir``.

    Parameters
    ----------
    in_dir
        A folder (searched recursively) or one file. Never modified.
    out_dir
        Output folder (created). Must not lie inside ``in_dir`` nor contain it.
    key
        The secret (:func:`~medimg.deid.keys.load_key`); the same key gives the same output.
    options
        Annex E options (default: Basic Profile only). A resumed run must use the same options.
    quarantine_dir
        Where files with possibly burned-in identity are copied (default: ``<out_dir>-quarantine``
        beside ``out_dir``); it holds PHI, so it must lie outside ``out_dir``.
    mapping_path
        Optional JSON Lines file mapping inputs to outputs, original patient keys to
        pseudonyms and date shifts: it holds PHI and must lie outside ``out_dir``.
    workers
        Processes (default: one less than the CPU count for 64 files or more, else 1; the main
        process writes the audit trail).
    progress
        ``progress(done, total)`` after each file.
    """
    from medimg.io.dicom.scan import list_files

    options = options or Options()
    in_dir = Path(in_dir)
    out_dir = Path(out_dir)
    if not in_dir.exists():
        raise FileFormatError(in_dir, "no such file or folder")
    base = in_dir if in_dir.is_dir() else in_dir.parent
    if _inside(out_dir, base) or _inside(base, out_dir):
        raise ParameterError(f"{out_dir}: the output folder must lie outside the input {in_dir} and not contain it")
    quarantine = Path(quarantine_dir) if quarantine_dir else out_dir.with_name(out_dir.name + "-quarantine")
    for name, path in (("quarantine folder", quarantine), ("mapping file", mapping_path)):
        if path is not None and _inside(Path(path), out_dir):
            raise ParameterError(f"{path}: the {name} holds PHI and must lie outside the output folder {out_dir}")
    if mapping_path is not None and _inside(Path(mapping_path), base):
        raise ParameterError(f"{mapping_path}: write the mapping file outside the input folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    audit_path = out_dir / AUDIT_NAME
    report = DeidReport(out_dir, audit_path, quarantine)

    done = _previous_runs(audit_path, key, options)
    files = list_files(in_dir)
    report.n_inputs = len(files)
    tasks: list[tuple[str, str, str, str]] = []
    stats: dict[str, tuple[int, int]] = {}
    for file in files:
        rel = file.relative_to(base).as_posix()
        st = file.stat()
        ref = key.file_ref(rel)
        stats[rel] = (st.st_size, st.st_mtime_ns)
        prev = done.get(ref)
        if prev and prev["input_size"] == st.st_size and prev["input_mtime_ns"] == st.st_mtime_ns and (
            prev["status"] == "quarantined" or (out_dir / prev.get("output", "")).is_file()
        ):
            report.n_skipped += 1
            continue
        tasks.append((str(file), rel, str(out_dir), str(quarantine)))
    quarantine.mkdir(parents=True, exist_ok=True)

    from medimg import __version__

    with AuditTrail(audit_path) as audit:
        audit.append("run", medimg=__version__, profile=PROFILE_SOURCE, key_id=key.key_id,
                     options=options.to_dict(), n_inputs=len(files), n_to_do=len(tasks),
                     n_skipped=report.n_skipped)
        mapping_fh = open(mapping_path, "a", encoding="utf-8") if mapping_path else None  # noqa: SIM115
        try:
            total = len(tasks)
            n = 0
            for outcome in _run_tasks(tasks, key, options, workers):
                n += 1
                _record(outcome, audit, report, stats[outcome["rel"]], key, mapping_fh)
                if progress is not None:
                    progress(n, total)
        finally:
            audit.append("end", n_done=report.n_done, n_quarantined=report.n_quarantined,
                         n_failed=report.n_failed, n_skipped=report.n_skipped, counts=dict(report.counts))
            if mapping_fh is not None:
                mapping_fh.close()
    return report


def _previous_runs(audit_path: Path, key: Key, options: Options) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if not audit_path.exists():
        return done
    for record in read_records(audit_path):
        if record.get("event") == "run":
            if record.get("key_id") != key.key_id:
                raise ParameterError(f"{audit_path.parent}: was written with another key "
                                     f"(key id {record.get('key_id')}); use a new output folder")
            if record.get("options") != options.to_dict():
                raise ParameterError(f"{audit_path.parent}: was written with other options "
                                     f"({record.get('options')}); use the same options or a new output folder")
        elif record.get("event") == "file" and record.get("status") in ("ok", "quarantined"):
            done[record["input_ref"]] = record
    return done


def _run_tasks(tasks: list[tuple[str, str, str, str]], key: Key, options: Options,
               workers: int | None) -> Any:
    if workers is None:  # one core stays with the main process (audit trail, file listing)
        workers = max(1, (os.cpu_count() or 1) - 1) if len(tasks) >= _PARALLEL_MIN_FILES else 1
    if workers <= 1 or len(tasks) < 2:
        deidentifier = Deidentifier(key, options)
        for task in tasks:
            yield _process(task, deidentifier)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                             initargs=(key._secret, options.to_dict())) as pool:
        pending: set[Future[dict[str, Any]]] = set()
        it = iter(tasks)
        try:
            for task in it:
                pending.add(pool.submit(_work, task))
                if len(pending) >= workers * 8:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        yield fut.result()
            for fut in list(pending):
                yield fut.result()
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def _record(outcome: dict[str, Any], audit: AuditTrail, report: DeidReport, stat: tuple[int, int],
            key: Key, mapping_fh: Any) -> None:
    rel = outcome["rel"]
    fields: dict[str, Any] = {"input_ref": key.file_ref(rel), "input_sha256": outcome.get("input_sha256"),
                              "input_size": stat[0], "input_mtime_ns": stat[1], "status": outcome["status"]}
    if outcome["status"] == "ok":
        fields["output"] = outcome["output"]
        report.n_done += 1
    elif outcome["status"] == "quarantined":
        fields["reason"] = outcome["reason"]
        report.n_quarantined += 1
    else:
        fields["error_type"] = outcome["error_type"]
        if outcome.get("problem"):
            fields["problem"] = outcome["problem"]
        report.n_failed += 1
        report.failures.append((rel, outcome.get("console", "")))
    if "counts" in outcome:
        fields["actions"] = outcome["counts"]
        report.counts.update(outcome["counts"])
    audit.append("file", **fields)
    if mapping_fh is not None and "mapping" in outcome:
        row = {"input": rel, "status": outcome["status"], "output": outcome.get("output"), **outcome["mapping"]}
        mapping_fh.write(json.dumps(row, sort_keys=True) + "\n")
        mapping_fh.flush()
