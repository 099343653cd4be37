"""De-identifying a folder: every file (in parallel through :mod:`medimg.pipeline.deid`), resumable,
with a signed audit trail.

Layout of the output folder ``OUT``::

    OUT/<pseudonym>/<new Study UID>/<new Series UID>/<new SOP Instance UID>.dcm
    OUT/<pseudonym>/<new Study UID>/<new Series UID>/<new SOP Instance UID>-<16 hex>.dcm   (shared SOP UID)
    OUT/deid-audit.jsonl      the audit trail (hash-chained, HMAC-signed, no PHI)
    OUT/deid-audit.head.json  its head: record count and last hash, signed

Inputs are read, never written. An input medimg cannot read whole (cut short, malformed
items, corrupt deflate stream), or whose de-identified copy is not complete (no Study or Series
UID, image without pixel data, pixel data not carried over intact), fails with its reason; it
is never counted as done. Each output is written under a temporary name in its folder and
moved to its name by the main process, which never overwrites: an output identical to one
already there is recorded as a ``duplicate``; a *different* object with the same SOP Instance
UID (the same instance in several encodings, say) gets a name qualified by a hash of its
content, and so does the one that held the plain name, so the names depend on the set of
inputs and not on the order the workers finish in. A file whose pixels may show identity is
copied to the quarantine folder (outside ``OUT``) with its reason. Running again on the same
``IN``/``OUT`` with the same key skips the files already done and picks up where an
interrupted run stopped.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimg.core.files import atomic_path, confined_path, sha256_file
from medimg.deid.audit import AuditTrail, head_path, read_records
from medimg.deid.encode import encode_part10
from medimg.deid.engine import Deidentifier
from medimg.deid.integrity import check_complete, check_encoding, snapshot
from medimg.deid.keys import Key
from medimg.deid.profile import PROFILE_SOURCE, Options
from medimg.errors import FileFormatError, ParameterError, UserInputError

__all__ = ["deidentify", "DeidReport", "AUDIT_NAME", "HEAD_NAME", "deidentify_file", "plain_output_name", "process_file",
           "serial_files", "FileTask", "FileRunner"]

AUDIT_NAME = "deid-audit.jsonl"
HEAD_NAME = head_path(AUDIT_NAME).name
_STAGE_SUFFIX = ".stage.dcm"
_QUALIFIED = re.compile(r"^(?P<plain>.*)-[0-9a-f]{16}\.dcm$")


@dataclass
class DeidReport:
    """Totals of a run; every count is of input files handled in this run.

    ``n_done``: outputs written (one new file each); ``n_duplicate``: inputs whose
    de-identified object is byte for byte an output already there (no new file);
    ``n_collisions``: of ``n_done``, outputs named ``<SOP UID>-<hash>.dcm`` because a different
    object has the same SOP Instance UID; ``n_renamed``: earlier outputs moved to such a name;
    ``n_skipped``: done by an earlier run; ``n_quarantined``, ``n_failed``. ``counts`` sums the
    actions over the files done. ``audit_records`` and ``audit_last_hash`` are the trail's head
    after the run.
    """

    out_dir: Path
    audit_path: Path
    quarantine_dir: Path
    n_inputs: int = 0
    n_done: int = 0
    n_duplicate: int = 0
    n_collisions: int = 0
    n_renamed: int = 0
    n_skipped: int = 0
    n_quarantined: int = 0
    n_failed: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (input path, error): for the console only
    audit_records: int = 0
    audit_last_hash: str = ""


# ------------------------------------------------------------------------------ one file
def deidentify_file(path: Path, deidentifier: Deidentifier, *, data: bytes | None = None) -> tuple[Any, Any]:
    """Read ``path`` (or its bytes ``data``, already read) and return (de-identified pydicom
    Dataset, :class:`DatasetResult`). The file is not modified.

    Raises
    ------
    FileFormatError
        The file is not DICOM, is not whole (:func:`~medimg.deid.integrity.check_encoding`:
        cut short, malformed items, corrupt deflate stream; :class:`TruncatedFileError` for
        a cut), lacks its SOP, Study or Series Instance UID, or its de-identified copy is not
        complete (:func:`~medimg.deid.integrity.check_complete`).
    """
    import io

    import pydicom
    from pydicom.errors import InvalidDicomError

    if data is None:
        data = Path(path).read_bytes()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError as err:
        raise FileFormatError(path, "not a DICOM file (no 'DICM' prefix)") from err
    except zlib.error as err:
        raise FileFormatError(path, f"the deflated data set is corrupt or cut short ({err})") from err
    except Exception as err:  # noqa: BLE001 - pydicom raises many kinds on broken input (struct.error...)
        raise FileFormatError(path, f"cannot be read as DICOM ({type(err).__name__})") from err
    implicit, little = ds.original_encoding
    syntax = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
    check_encoding(data, path, transfer_syntax=syntax, implicit=bool(implicit),
                   little_endian=little is not False)
    for keyword, tag in (("SOPInstanceUID", "(0008,0018)"), ("StudyInstanceUID", "(0020,000D)"),
                         ("SeriesInstanceUID", "(0020,000E)")):
        if not str(ds.get(keyword, "") or "").strip("\0 "):
            raise FileFormatError(path, f"has no {keyword} {tag}; not a complete composite object")
    _check_pixel_length(ds, path)
    before = snapshot(ds)
    result = deidentifier.deidentify_dataset(ds)
    check_complete(ds, before, path)
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


def plain_output_name(pseudonym: str, study_uid: str, series_uid: str, sop_uid: str) -> str:
    """``<pseudonym>/<study>/<series>/<sop>.dcm``: where an output goes unless its SOP UID is shared."""
    return f"{pseudonym}/{study_uid}/{series_uid}/{sop_uid}.dcm"


def _qualified(plain: str, sha256: str) -> str:
    return f"{plain[:-4]}-{sha256[:16]}.dcm"


def _plain_of(rel: str) -> str:
    m = _QUALIFIED.match(rel)
    return f"{m['plain']}.dcm" if m else rel


#: One file's task: (input path, path relative to the input folder, output folder, quarantine folder).
FileTask = tuple[str, str, str, str]
#: What runs the files: ``run_files(process_file, tasks, make_deidentifier)`` returns the
#: outcome of ``process_file(task, deidentifier)`` for every task, in any order, where
#: ``make_deidentifier()`` builds the (per-process) :class:`Deidentifier`. The default runs them
#: in this process; :func:`medimg.pipeline.deid.deidentify` runs them on worker processes.
FileRunner = Callable[[Callable[[FileTask, Deidentifier], dict[str, Any]], list[FileTask],
                       Callable[[], Deidentifier]], Iterable[dict[str, Any]]]


def serial_files(process_file: Callable[[FileTask, Deidentifier], dict[str, Any]], tasks: list[FileTask],
                 make_deidentifier: Callable[[], Deidentifier]) -> Iterator[dict[str, Any]]:
    """The default :data:`FileRunner`: every file in this process, in order."""
    deidentifier = make_deidentifier()
    for task in tasks:
        yield process_file(task, deidentifier)


def _stage(ds: Any, out_root: Path, plain: str) -> tuple[Path, str]:
    """Encode ``ds`` into a hidden temporary file in its output folder; (its path, SHA-256)."""
    target = confined_path(out_root, *plain.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=_STAGE_SUFFIX, dir=target.parent)
    staged = Path(name)
    try:
        encoded = encode_part10(ds)
        if encoded is None:
            os.close(fd)
            ds.save_as(staged, enforce_file_format=True)
            digest = sha256_file(staged)
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(encoded)
            digest = hashlib.sha256(encoded).hexdigest()
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        staged.unlink(missing_ok=True)
        raise
    return staged, digest


def _quarantine_copy(in_path: Path, quarantine_s: str, out: dict[str, Any], reason: str, *, failed: bool) -> None:
    """Copy an input to the quarantine folder (named by its SHA-256) and log why in
    ``quarantine.jsonl``: files that may show identity (``failed=False``) and inputs that could
    not be de-identified (``failed=True``; they also count as failed). Sets ``out["quarantine_copy"]``.
    A file that could not even be read (no hash) is not copied."""
    digest = out.get("input_sha256")
    if not digest:
        return
    try:
        target = confined_path(quarantine_s, f"{digest[:32]}.dcm")
        with atomic_path(target) as tmp:
            shutil.copyfile(in_path, tmp)
        with open(Path(quarantine_s) / "quarantine.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"input": str(in_path), "copy": target.name, "reason": reason,
                                 "failed": failed}) + "\n")
    except OSError as err:  # the quarantine copy is best effort for a failed file; the failure stands
        if not failed:
            raise
        out["console"] = f"{out.get('console', in_path)} (quarantine copy failed: {err})"
        return
    out["quarantine_copy"] = target.name


def process_file(task: FileTask, deidentifier: Deidentifier) -> dict[str, Any]:
    """De-identify one file; stage its output (or write its quarantine copy); report without PHI.

    Never raises for a bad file: the outcome's ``status`` is ``ok``, ``quarantined`` or
    ``failed`` (with ``error_type``, ``problem`` and a ``console`` line)."""
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
        _quarantine_copy(in_path, quarantine_s, out, f"could not be read: {problem or err}", failed=True)
        return out
    except Exception as err:  # noqa: BLE001 - a failing file is recorded, the run goes on
        out.update(status="failed", error_type=type(err).__name__, problem="",
                   console=f"{in_path}: {type(err).__name__}: {err}")
        _quarantine_copy(in_path, quarantine_s, out, f"could not be read: {type(err).__name__}: {err}", failed=True)
        return out
    out["counts"] = dict(result.counts)
    out["mapping"] = {"patient_key": result.patient_key, "pseudonym": result.pseudonym,
                      "date_shift_days": result.date_shift_days, "uids": result.uids}
    if result.quarantine_reason:
        _quarantine_copy(in_path, quarantine_s, out, result.quarantine_reason, failed=False)
        out.update(status="quarantined", reason=result.quarantine_reason)
        return out
    plain = plain_output_name(result.pseudonym, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                              str(ds.SOPInstanceUID))
    try:
        staged, digest = _stage(ds, Path(out_root_s), plain)
    except UserInputError as err:
        out.update(status="failed", error_type=type(err).__name__, problem="unsafe output name",
                   console=f"{in_path}: {err}")
        _quarantine_copy(in_path, quarantine_s, out, f"unsafe output name: {err}", failed=True)
        return out
    except Exception as err:  # noqa: BLE001 - an unwritable object is a failure of this file
        out.update(status="failed", error_type=type(err).__name__, problem="output could not be encoded",
                   console=f"{in_path}: writing failed: {type(err).__name__}: {err}")
        _quarantine_copy(in_path, quarantine_s, out, f"output could not be encoded: {type(err).__name__}: {err}",
                         failed=True)
        return out
    out.update(status="ok", output=plain, staged=str(staged), output_sha256=digest)
    return out


# ------------------------------------------------------------------------------ placing outputs
class _Placer:
    """Moves staged outputs to their names in the main process; never overwrites.

    ``names`` maps each plain name to {output SHA-256: name in use} for every output recorded
    in the trail (this run and earlier ones).
    """

    def __init__(self, out_dir: Path, names: dict[str, dict[str, str]]) -> None:
        self.out_dir = out_dir
        self.names = names

    def place(self, staged: Path, plain: str, digest: str, audit: AuditTrail, report: DeidReport,
              mapping_fh: Any) -> tuple[str, str]:
        """Put ``staged`` in place; return (status ``ok`` or ``duplicate``, its name)."""
        out = self.out_dir
        group = self.names.get(plain)
        if group is None:
            target = out / plain
            if target.exists() and sha256_file(target) != digest:
                # a file nobody recorded holds the name (left by hand?): keep it, take a qualified name
                name = _qualified(plain, digest)
            else:  # free, or our own output from a run that died before recording it
                name = plain
            os.replace(staged, out / name)
            self.names[plain] = {digest: name}
            return "ok", name
        if digest in group:
            name = group[digest]
            if (out / name).exists():
                staged.unlink()
                return "duplicate", name
            os.replace(staged, out / name)  # recorded, but gone: written again
            return "ok", name
        # a different object with the same SOP Instance UID: both get qualified names
        for old_digest, old_name in list(group.items()):
            if old_name == plain:
                new_name = _qualified(plain, old_digest)
                audit.append("renamed", **{"from": plain, "to": new_name, "output_sha256": old_digest})
                if (out / plain).exists():
                    os.replace(out / plain, out / new_name)
                group[old_digest] = new_name
                report.n_renamed += 1
                if mapping_fh is not None:
                    mapping_fh.write(json.dumps({"status": "renamed", "from": plain, "to": new_name}) + "\n")
        name = _qualified(plain, digest)
        os.replace(staged, out / name)
        group[digest] = name
        return "ok", name


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
    run_files: FileRunner | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DeidReport:
    """De-identify every DICOM file under ``in_dir`` into ``out_dir``.

    Parameters
    ----------
    in_dir
        A folder (searched recursively) or one file. Never modified.
    out_dir
        Output folder (created). Must not lie inside ``in_dir`` nor contain it, and must be
        empty or hold an earlier run's output (with its audit trail).
    key
        The secret (:func:`~medimg.deid.keys.load_key`); the same key gives the same output.
        It also signs the audit trail.
    options
        Annex E options (default: Basic Profile only). A resumed run must use the same options.
    quarantine_dir
        Where files with possibly burned-in identity are copied (default: ``<out_dir>-quarantine``
        beside ``out_dir``); it holds PHI, so it must lie outside ``out_dir``.
    mapping_path
        Optional JSON Lines file mapping inputs to outputs, original patient keys to
        pseudonyms and date shifts: it holds PHI and must lie outside ``out_dir``.
    run_files
        Who de-identifies the files (:data:`FileRunner`); default: this process.
        :func:`medimg.pipeline.deid.deidentify` runs them on worker processes. Whoever runs them,
        this process writes the audit trail and moves each output to its name.
    progress
        ``progress(done, total)`` after each file.

    Returns
    -------
    DeidReport
        The counts of this run (each one true of the files on disk: ``n_done`` new files).
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
    audit_path = out_dir / AUDIT_NAME
    if not audit_path.exists() and head_path(audit_path).exists():
        raise FileFormatError(audit_path, "the audit trail is missing although its head exists (deleted?); keep "
                              "the folder as evidence and write to a new output folder")
    if not audit_path.exists() and out_dir.is_dir() and any(out_dir.iterdir()):
        raise ParameterError(f"{out_dir}: holds files but no audit trail ({AUDIT_NAME}); de-identify into an "
                             "empty folder or one an earlier run wrote")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = DeidReport(out_dir, audit_path, quarantine)
    files = list_files(in_dir)
    report.n_inputs = len(files)

    from medimg import __version__

    with AuditTrail(audit_path, key=key) as audit:
        done, names, _clean_end = _previous_runs(audit_path, key, options, out_dir)
        # the trail is locked: no other run writes here, so every staged output is a leftover
        # (of a run that was killed, or stopped before placing what its workers had staged)
        _remove_stale_stages(out_dir)
        tasks: list[tuple[str, str, str, str]] = []
        stats: dict[str, tuple[int, int]] = {}
        for file in files:
            rel = file.relative_to(base).as_posix()
            st = file.stat()
            stats[rel] = (st.st_size, st.st_mtime_ns)
            prev = done.get(key.file_ref(rel))
            if prev and prev["input_size"] == st.st_size and prev["input_mtime_ns"] == st.st_mtime_ns and (
                prev["status"] == "quarantined" or (out_dir / prev.get("output", "")).is_file()
            ):
                report.n_skipped += 1
                continue
            tasks.append((str(file), rel, str(out_dir), str(quarantine)))
        quarantine.mkdir(parents=True, exist_ok=True)
        placer = _Placer(out_dir, names)
        audit.append("run", medimg=__version__, profile=PROFILE_SOURCE, key_id=key.key_id,
                     options=options.to_dict(), n_inputs=len(files), n_to_do=len(tasks),
                     n_skipped=report.n_skipped)
        mapping_fh = open(mapping_path, "a", encoding="utf-8") if mapping_path else None  # noqa: SIM115
        try:
            total = len(tasks)
            n = 0
            runner = run_files or serial_files
            for outcome in runner(process_file, tasks, functools.partial(Deidentifier, key, options)):
                n += 1
                _record(outcome, audit, report, stats[outcome["rel"]], key, mapping_fh, placer)
                if progress is not None:
                    progress(n, total)
        finally:
            audit.append("end", n_done=report.n_done, n_duplicate=report.n_duplicate,
                         n_collisions=report.n_collisions, n_renamed=report.n_renamed,
                         n_quarantined=report.n_quarantined, n_failed=report.n_failed,
                         n_skipped=report.n_skipped, counts=dict(report.counts))
            report.audit_records, report.audit_last_hash = audit.n_records, audit.last_hash
            if mapping_fh is not None:
                mapping_fh.close()
    return report


def _previous_runs(audit_path: Path, key: Key, options: Options,
                   out_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]], bool]:
    """From the trail: the last record of each input done, the output names in use (plain name
    -> {SHA-256: name}), and whether the last run ended cleanly. Renames a crash left half-done
    are completed."""
    done: dict[str, dict[str, Any]] = {}
    names: dict[str, dict[str, str]] = {}
    renamed: dict[str, str] = {}
    last_event = "end"
    for record in read_records(audit_path):
        event = record.get("event")
        last_event = event or last_event
        if event == "run":
            if record.get("key_id") != key.key_id:
                raise ParameterError(f"{audit_path.parent}: was written with another key "
                                     f"(key id {record.get('key_id')}); use a new output folder")
            if record.get("options") != options.to_dict():
                raise ParameterError(f"{audit_path.parent}: was written with other options "
                                     f"({record.get('options')}); use the same options or a new output folder")
        elif event == "file" and record.get("status") in ("ok", "duplicate", "quarantined"):
            done[record["input_ref"]] = record
            if record.get("output") and record.get("output_sha256"):
                names.setdefault(_plain_of(record["output"]), {})[record["output_sha256"]] = record["output"]
        elif event == "renamed":
            old, new = record["from"], record["to"]
            renamed[old] = new
            names.setdefault(_plain_of(old), {})[record["output_sha256"]] = new
            if not (out_dir / new).exists() and (out_dir / old).exists():
                os.replace(out_dir / old, out_dir / new)  # the crash fell between record and rename
    for record in done.values():
        if record.get("output") in renamed:
            record["output"] = renamed[record["output"]]
    return done, names, last_event == "end"


def _remove_stale_stages(out_dir: Path) -> None:
    """Temporary outputs of a run that was killed (the trail is locked: no run is writing)."""
    for path in out_dir.rglob(f".*{_STAGE_SUFFIX}"):
        path.unlink(missing_ok=True)


def _record(outcome: dict[str, Any], audit: AuditTrail, report: DeidReport, stat: tuple[int, int],
            key: Key, mapping_fh: Any, placer: _Placer) -> None:
    rel = outcome["rel"]
    fields: dict[str, Any] = {"input_ref": key.file_ref(rel), "input_sha256": outcome.get("input_sha256"),
                              "input_size": stat[0], "input_mtime_ns": stat[1], "status": outcome["status"]}
    if outcome["status"] == "ok":
        status, name = placer.place(Path(outcome["staged"]), outcome["output"], outcome["output_sha256"],
                                    audit, report, mapping_fh)
        outcome.update(status=status, output=name)
        fields.update(status=status, output=name, output_sha256=outcome["output_sha256"])
        if _QUALIFIED.match(name):
            fields["collision"] = True  # its SOP Instance UID is shared with a different object
        if status == "ok":
            report.n_done += 1
            report.n_collisions += bool(_QUALIFIED.match(name))
        else:
            report.n_duplicate += 1
    elif outcome["status"] == "quarantined":
        fields["reason"] = outcome["reason"]
        report.n_quarantined += 1
    else:
        fields["error_type"] = outcome["error_type"]
        if outcome.get("problem"):
            fields["problem"] = outcome["problem"]
        if outcome.get("quarantine_copy"):
            fields["quarantine_copy"] = outcome["quarantine_copy"]
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
