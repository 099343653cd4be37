"""Steps that run once on the whole set of cases before the per-case steps.

* ``deidentify`` — the cases' DICOM files (the file roles given in ``roles``, default every
  role that is a DICOM folder or series) are de-identified into ``<out>/deid`` with the key in
  ``key_file`` (PS3.15 Basic Profile and the options given; signed audit trail; resumable),
  and the cases go on with the de-identified copies. The mapping of inputs to outputs (it
  holds the original patient keys: PHI) is written to ``mapping`` (default
  ``<out>/deid-mapping.jsonl``; set it outside a folder you share). A case whose files are
  quarantined (possible burned-in identity) or fail is recorded as failed and left out.
* ``index`` — the cases' DICOM files are indexed into a catalog (``db``: a SQLAlchemy URL or a
  file, default ``<out>/catalog.sqlite``), so the run's inputs can be queried afterwards.

Both record their counts in the manifest (``parameters.prepare``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from medimg.errors import ParameterError, UserInputError, did_you_mean

__all__ = ["PREPARE_OPS", "check_prepare", "run_prepare"]

#: Each op's parameters: name -> (required, description).
PREPARE_OPS: dict[str, dict[str, tuple[bool, str]]] = {
    "deidentify": {
        "key_file": (True, "the de-identification key file (medimg deid --new-key)"),
        "roles": (False, "file roles to de-identify (default: every DICOM role)"),
        "mapping": (False, "where the input -> output mapping (PHI) is written"),
        "retain_long_modified_dates": (False, "Annex E option"),
        "retain_patient_characteristics": (False, "Annex E option"),
        "retain_device_identity": (False, "Annex E option"),
        "clean_descriptors": (False, "Annex E option"),
        "workers": (False, "worker processes"),
    },
    "index": {
        "db": (False, "catalog URL or file (default <out>/catalog.sqlite)"),
        "roles": (False, "file roles to index (default: every DICOM role)"),
    },
}


def check_prepare(study: Any) -> None:
    """Validate the ``prepare`` list (names and parameters), naming the YAML path."""
    from medimg.pipeline.study import StudyError

    for k, spec in enumerate(study.prepare):
        where = f"prepare[{k}]"
        if spec.op not in PREPARE_OPS:
            raise StudyError(f"{where}.op", f"unknown prepare op {spec.op!r}{did_you_mean(spec.op, PREPARE_OPS)}; "
                                            f"ops: {', '.join(PREPARE_OPS)}")
        known = PREPARE_OPS[spec.op]
        for name in spec.params:
            if name not in known:
                raise StudyError(f"{where}.params.{name}", f"{spec.op} has no such parameter"
                                 f"{did_you_mean(name, known)}; parameters: {', '.join(known)}")
        for name, (required, _) in known.items():
            if required and name not in spec.params:
                raise StudyError(f"{where}.params.{name}", f"{spec.op} needs it ({known[name][1]})")
        roles = spec.params.get("roles")
        if roles is not None:
            for j, role in enumerate(roles if isinstance(roles, list) else [roles]):
                if role not in study.inputs.files:
                    raise StudyError(f"{where}.params.roles[{j}]", f"{role!r} is not a file role "
                                     f"({', '.join(study.inputs.files)})")


def _is_dicom(value: Any) -> bool:
    if isinstance(value, tuple):
        return True
    path = Path(value)
    return path.is_dir() or (path.is_file() and path.suffix.lower() in ("", ".dcm", ".dicom"))


def _roles(spec: Any, cases: list[Any]) -> list[str]:
    roles = spec.params.get("roles")
    if roles is not None:
        return list(roles) if isinstance(roles, list) else [roles]
    found = []
    for case in cases:
        for role, value in case.files.items():
            if role not in found and _is_dicom(value):
                found.append(role)
    return found


def _files_of(value: Any) -> list[Path]:
    from medimg.io.dicom.scan import list_files

    return [Path(v) for v in value] if isinstance(value, tuple) else list_files(value)


def run_prepare(study: Any, cases: list[Any], out: Path, base: Path,
                log: Any = None) -> tuple[list[Any], list[tuple[str, str]], list[dict[str, Any]]]:
    """Run the study's prepare steps on ``cases``; return the cases to go on with, the
    (case, reason) of those left out, and one record per step for the manifest."""
    failed: list[tuple[str, str]] = []
    records: list[dict[str, Any]] = []
    for spec in study.prepare:
        if spec.op == "deidentify":
            cases, lost, record = _deidentify(spec, cases, out, base)
        else:
            cases, lost, record = _index(spec, cases, out, base)
        failed.extend(lost)
        records.append(record)
        if log is not None:
            log.append("prepare", **record)
    return cases, failed, records


def _deidentify(spec: Any, cases: list[Any], out: Path, base: Path) -> tuple[list[Any], list[tuple[str, str]], dict]:
    import os

    from medimg.deid import Options, load_key
    from medimg.pipeline.deid import deidentify

    params = spec.params
    key = load_key(_under(params["key_file"], base))
    options = Options(**{k: bool(params[k]) for k in ("retain_long_modified_dates", "retain_patient_characteristics",
                                                         "retain_device_identity", "clean_descriptors") if k in params})
    roles = _roles(spec, cases)
    sources: dict[str, list[Path]] = {}
    for case in cases:
        for role in roles:
            value = case.files.get(role)
            if value is not None and value != "":
                sources[f"{case.case}\0{role}"] = [p.resolve() for p in _files_of(value)]
    all_files = sorted({p for files in sources.values() for p in files})
    if not all_files:
        raise ParameterError("prepare deidentify: the cases hold no DICOM files to de-identify")
    root = Path(os.path.commonpath([str(p.parent) for p in all_files]))
    target = out / "deid"
    mapping = _under(params["mapping"], base) if "mapping" in params else out / "deid-mapping.jsonl"
    report = deidentify(root, target, key=key, options=options, mapping_path=mapping,
                        quarantine_dir=out / "deid-quarantine", workers=params.get("workers"))
    outputs: dict[str, tuple[str, str | None]] = {}  # input relative path -> (status, output)
    with open(mapping, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if "input" in row:
                outputs[row["input"]] = (row["status"], row.get("output"))
            elif row.get("status") == "renamed":  # an output renamed after a shared SOP UID appeared
                for rel, (status, name) in list(outputs.items()):
                    if name == row["from"]:
                        outputs[rel] = (status, row["to"])
    kept, lost = [], []
    for case in cases:
        files = dict(case.files)
        problem = ""
        for role in roles:
            key_ = f"{case.case}\0{role}"
            if key_ not in sources:
                continue
            new = []
            for path in sources[key_]:
                status, name = outputs.get(path.relative_to(root).as_posix(), ("missing", None))
                if status not in ("ok", "duplicate") or not name:
                    problem = f"prepare deidentify: {role} file {path.name} was {status}"
                    break
                new.append(str(target / name))
            if problem:
                break
            files[role] = tuple(dict.fromkeys(new))
        if problem:
            lost.append((case.case, problem))
        else:
            kept.append(replace(case, files=files))
    record = {"op": "deidentify", "out": str(target), "inputs": report.n_inputs, "done": report.n_done,
              "skipped": report.n_skipped, "duplicate": report.n_duplicate, "quarantined": report.n_quarantined,
              "failed": report.n_failed, "cases_left_out": len(lost), "key_id": key.key_id,
              "options": options.to_dict()}
    return kept, lost, record


def _index(spec: Any, cases: list[Any], out: Path, base: Path) -> tuple[list[Any], list[tuple[str, str]], dict]:
    from medimg.catalog import Catalog
    from medimg.pipeline.index import index_files

    db = spec.params.get("db")
    url = str(_under(db, base)) if db and "://" not in str(db) else (db or str(out / "catalog.sqlite"))
    files = sorted({str(p) for case in cases for role in _roles(spec, cases)
                    if case.files.get(role) not in (None, "") for p in _files_of(case.files[role])})
    try:
        with Catalog(url) as catalog:
            report = index_files(catalog, files)
            counts = catalog.counts()
    except UserInputError:
        raise
    return cases, [], {"op": "index", "db": url, "files": report.n_files, "ok": report.n_ok,
                       "corrupt": report.n_corrupt, "not_dicom": report.n_not_dicom, "catalog": counts}


def _under(path: str, base: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base / p


def describe(records: list[Mapping[str, Any]]) -> list[str]:
    """One line per prepare record (for the report and the console)."""
    out = []
    for r in records:
        if r["op"] == "deidentify":
            out.append(f"de-identified {r['done']} files ({r['skipped']} already done, {r['duplicate']} duplicates, "
                       f"{r['quarantined']} quarantined, {r['failed']} failed) into {r['out']}; "
                       f"{r['cases_left_out']} case(s) left out")
        else:
            out.append(f"indexed {r['files']} files into {r['db']}: {r['ok']} ok, {r['corrupt']} corrupt, "
                       f"{r['not_dicom']} not DICOM")
    return out
