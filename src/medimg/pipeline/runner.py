"""Running a study: per-case tasks through the executor, a content-addressed cache, tables,
the manifest and the run log.

Output folder (a local folder or an fsspec URL)::

    manifest.json        what ran: the study resolved (every parameter), inputs and their hashes,
                         seed, software versions, git commit, platform, timings per step, outputs
    run-log.jsonl        append-only, hash-chained: the run, each case, the end
    tables/<step>.csv    one row per case for each step that gives values
    cases/<case>/<step>.nii.gz   the image outputs of steps marked ``keep``
    cache/<k>/<key>.json  every values step's output, keyed by the hash of its inputs, resolved
                         parameters and the medimg version (written atomically: its hash is
                         that of its bytes)
    cache/<k>/<key>.npz  the image outputs worth storing (recomputing them costs >= 20x storing
                         them, or the step says ``cache: true``), with ``.sha256`` beside it:
                         the array's hash, written last, so an entry without it is redone

**Cache and resume**: every step's key is computed first; then only what is needed runs (a
values step not in the cache, a kept image missing or stale, and the images those read that
are not stored), so a re-run skips finished work and an interrupted run (Ctrl-C, ``kill -9`` of
the process or of a worker) resumes to the outputs an uninterrupted run gives. Every output is
written atomically, so no half-written output survives an interruption.
"""

from __future__ import annotations

import functools
import hashlib
import io as _io
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import FileFormatError, UserInputError
from medimg.pipeline.executor import Outcome, run_cases, summarize
from medimg.pipeline.steps import Plan, PlannedStep, resolve_plan
from medimg.pipeline.store import Store, fetch, is_url
from medimg.pipeline.study import Study, StudyError

__all__ = ["CaseInput", "CaseResult", "StudyResult", "gather_cases", "run_case", "run_study", "case_folder_name"]


@dataclass(frozen=True)
class CaseInput:
    """One case of a study: its id, its files by role, and its other columns (labels, groups).

    A file is a path or URL (an image file or a DICOM folder), or a tuple of the files of one
    DICOM series (from a folder or catalog input)."""

    case: str
    files: dict[str, str | tuple[str, ...]]
    columns: dict[str, str] = field(default_factory=dict)


@dataclass
class StepRecord:
    """What happened to one step of one case."""

    step: str
    key: str
    status: str  # "computed", "cached", "not needed" (neither stored nor needed) or "skipped"
    seconds: float
    output_sha256: str = ""


@dataclass
class CaseResult:
    """A case's values (per values-step), its step records and its inputs' hashes."""

    case: str
    values: dict[str, dict[str, float]]
    steps: list[StepRecord]
    input_sha256: dict[str, str]
    kept: dict[str, str] = field(default_factory=dict)  # step -> stored key of the kept image


@dataclass
class StudyResult:
    """What :func:`run_study` did: where, how many cases, which failed, the tables."""

    out: str
    n_cases: int
    n_ok: int
    failures: list[Outcome[Any]]
    tables: dict[str, str]
    manifest: str
    seconds: float
    step_stats: dict[str, dict[str, float]]
    report: str | None = None


# ----------------------------------------------------------------------------- cases
def case_folder_name(case: str) -> str:
    """A safe folder name for a case id (no separators, no ``..``)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", case).strip(".") or "_"
    return name[:128]


def gather_cases(study: Study, base: Path, out: Path | None = None) -> list[CaseInput]:
    """The study's cases, from its CSV, folder, catalog or PACS (retrieved into ``out/pacs``);
    errors name the ``inputs`` path."""
    spec = study.inputs
    if spec.cases is not None:
        return _cases_from_csv(spec.cases, study, base)
    if spec.folder is not None:
        return _cases_from_folder(spec.folder, base)
    if spec.pacs is not None:
        if out is None:
            raise StudyError("inputs.pacs", "a PACS input needs the run's output folder to retrieve into")
        return _cases_from_pacs(spec.pacs, out)
    return _cases_from_catalog(spec.catalog)


def _resolve(path: str, base: Path) -> str:
    if is_url(path) or Path(path).is_absolute():
        return path
    return str(base / path)


def _cases_from_csv(path: str, study: Study, base: Path) -> list[CaseInput]:
    import csv

    spec = study.inputs
    location = _resolve(path, base)
    if is_url(location):
        local = fetch(location, base / ".medimg-inputs")
    else:
        local = Path(location)
        if not local.is_file():
            raise StudyError("inputs.cases", f"no such file {location}")
    csv_base = local.parent if not is_url(location) else None
    with open(local, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        for k, role in enumerate(spec.files):
            if role not in header:
                raise StudyError(f"inputs.files[{k}]", f"the case list {location} has no column {role!r} "
                                 f"(columns: {', '.join(header)})")
        for name in ("label_column", "group_column"):
            column = getattr(spec, name)
            if column is not None and column not in header:
                raise StudyError(f"inputs.{name}", f"the case list has no column {column!r}")
        for k, column in enumerate(spec.subgroup_columns):
            if column not in header:
                raise StudyError(f"inputs.subgroup_columns[{k}]", f"the case list has no column {column!r}")
        cases: list[CaseInput] = []
        seen: set[str] = set()
        for line, row in enumerate(reader, start=2):
            files = {}
            for role in spec.files:
                value = (row.get(role) or "").strip()
                if not value:
                    if role in spec.optional_files:
                        continue  # steps that need this role skip this case
                    raise StudyError("inputs.cases", f"{location} line {line}: column {role!r} is empty")
                if is_url(value) or Path(value).is_absolute():
                    files[role] = value
                elif csv_base is not None:
                    files[role] = str(csv_base / value)
                else:  # a relative path in a remote case list: relative to the list's URL
                    files[role] = location.rsplit("/", 1)[0] + "/" + value
            case_id = (row.get(spec.id_column) or "").strip() or Path(files[spec.files[0]]).name
            if case_id in seen:
                raise StudyError("inputs.cases", f"{location} line {line}: case {case_id!r} appears twice")
            seen.add(case_id)
            columns = {k: v for k, v in row.items() if k is not None and k not in spec.files and k != spec.id_column}
            cases.append(CaseInput(case_id, files, columns))
    if not cases:
        raise StudyError("inputs.cases", f"{location} has no cases")
    return cases


def _cases_from_folder(folder: Any, base: Path) -> list[CaseInput]:
    from medimg.pipeline.study import FolderInput

    spec = folder if isinstance(folder, FolderInput) else FolderInput(path=str(folder))
    root = Path(_resolve(spec.path, base))
    if not root.is_dir():
        raise StudyError("inputs.folder", f"no such folder {root}")
    cases: list[CaseInput] = []
    if spec.pattern:
        for path in sorted(root.rglob(spec.pattern)):
            if path.is_file():
                cases.append(CaseInput(path.relative_to(root).as_posix(), {"image": str(path)}))
    else:
        from medimg.io.dicom.scan import scan

        for series in scan(root).series:
            modality = str(series.get("Modality", "") or "")
            if spec.modality and modality.upper() != spec.modality.upper():
                continue
            cases.append(CaseInput(series.key, {"image": tuple(str(f) for f in series.files)},
                                   {"series_uid": series.series_uid, "modality": modality}))
    if not cases:
        raise StudyError("inputs.folder", f"no cases found under {root}")
    return cases


def _cases_from_catalog(spec: Any) -> list[CaseInput]:
    from medimg.catalog import Catalog
    from medimg.catalog.query import query

    try:
        catalog = Catalog(spec.url)
    except UserInputError as err:
        raise StudyError("inputs.catalog.url", str(err)) from err
    with catalog:
        try:
            rows = query(catalog, level="instance", patient=spec.patient, modality=spec.modality,
                         description=spec.description, body_part=spec.body_part, date_from=spec.date_from,
                         date_to=spec.date_to)
        except UserInputError as err:
            raise StudyError("inputs.catalog", str(err)) from err
    by_series: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_series.setdefault(str(row["series_uid"]), []).append(row)
    cases = [CaseInput(uid, {"image": tuple(str(r["path"]) for r in members)},
                       {"series_uid": uid, "study_uid": str(members[0]["study_uid"]),
                        "patient_id": str(members[0]["patient_id"]), "modality": str(members[0]["modality"] or "")})
             for uid, members in by_series.items()]
    if not cases:
        raise StudyError("inputs.catalog", "the query selects no series")
    return cases


def _cases_from_pacs(spec: Any, out: Path) -> list[CaseInput]:
    from medimg import pacs
    from medimg.io.dicom import scan

    filters = {k: getattr(spec, k) for k in ("patient_id", "study_uid", "modality", "study_date", "description")}
    try:
        found = pacs.find(spec.server, level="series", **{k: v for k, v in filters.items() if v})
    except UserInputError as err:
        raise StudyError("inputs.pacs", str(err)) from err
    dest = out / "pacs"
    cases: list[CaseInput] = []
    for row in found:
        study_uid, series_uid = row.get("StudyInstanceUID"), row.get("SeriesInstanceUID")
        if not study_uid or not series_uid:
            continue
        report = pacs.retrieve(spec.server, study_uid=str(study_uid), series_uid=str(series_uid), dest=dest,
                               method=spec.method)
        if not report.files:
            continue
        for series in scan([Path(f) for f in report.files]).series:
            cases.append(CaseInput(series.key, {"image": tuple(str(f) for f in series.files)},
                                   {"series_uid": series.series_uid, "study_uid": str(study_uid),
                                    "modality": str(series.get("Modality", "") or "")}))
    if not cases:
        raise StudyError("inputs.pacs", f"the query found no series to retrieve on {spec.server}")
    return cases


def _read_input(path: str | Path | tuple[str, ...], series_uid: str | None) -> Any:
    """Read a case file: an image file, a DICOM folder, or the files of one DICOM series."""
    from medimg import io

    if not isinstance(path, tuple):
        return io.read(path, series_uid=series_uid)
    from medimg.errors import MultipleSeriesError
    from medimg.io.dicom import read_series, scan

    found = scan(list(path)).series
    chosen = [s for s in found if series_uid is None or s.series_uid == series_uid or s.key == series_uid]
    if len(chosen) != 1:
        raise MultipleSeriesError(f"{len(path)} files hold {len(found)} series; cannot pick one "
                                  f"({', '.join(s.key for s in found) or 'none readable'})")
    return read_series(chosen[0])


# ----------------------------------------------------------------------------- hashing and the cache
def _sha256_path(path: Path | tuple[str, ...]) -> str:
    """SHA-256 of a file's bytes, or of a folder's (or a series') files: names and their hashes."""
    from medimg.core.files import sha256_file

    if isinstance(path, tuple):
        digest = hashlib.sha256()
        for name in sorted(path):
            digest.update(Path(name).name.encode() + b"\0" + sha256_file(name).encode() + b"\n")
        return digest.hexdigest()
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(child.relative_to(path).as_posix().encode() + b"\0")
            digest.update(sha256_file(child).encode() + b"\n")
        return digest.hexdigest()
    raise FileFormatError(path, "no such file or folder")


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return repr(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def _finite_or_text(value: float) -> float | str:
    """JSON has no NaN or infinity: those are stored as text ("nan", "inf", "-inf")."""
    return value if np.isfinite(value) else repr(float(value))


def step_key(step: PlannedStep, input_keys: Mapping[str, str], version: str) -> str:
    """The cache key of a step: the hash of its op, resolved parameters, inputs' keys and the
    medimg version."""
    record = {"op": step.op_name, "params": _canonical(step.params), "inputs": dict(sorted(input_keys.items())),
              "medimg": version}
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _cache_key(key: str, output: str) -> str:
    return f"cache/{key[:2]}/{key}.{'json' if output == 'values' else 'npz'}"


#: An image step is stored when recomputing it costs at least this many times storing it
#: (so that storing costs at most 5 % of the work it saves), unless its ``cache`` key says.
STORE_FACTOR = 20.0

#: The report draws the first few cases' overlays and checkerboards from the cache; the images
#: it reads are stored for this many cases (input order) when the study writes a report.
REPORT_CASES = 6


class StoreCost:
    """This process's estimate of what storing an image costs: seconds per write (a fixed cost,
    measured on every cache write) plus seconds per byte (measured on image writes). It starts
    from conservative defaults (5 ms a write, 50 MB/s: a slow network store), so that nothing
    is stored on a guess that storing is cheap, and follows the measured stores (each
    measurement moves the estimate 30 % of the way)."""

    def __init__(self, fixed_s: float = 5e-3, bytes_per_s: float = 50e6) -> None:
        self.fixed_s = fixed_s
        self.per_byte_s = 1.0 / bytes_per_s
        self.n_fixed = 0
        self.n_bytes = 0

    def record_write(self, seconds: float) -> None:
        """A small write (a values entry) took ``seconds``."""
        self.fixed_s = seconds if self.n_fixed == 0 else 0.7 * self.fixed_s + 0.3 * seconds
        self.n_fixed += 1

    def record_image(self, nbytes: int, seconds: float, writes: int = 2) -> None:
        """Storing an image of ``nbytes`` took ``seconds`` in ``writes`` files."""
        per_byte = max(seconds - writes * self.fixed_s, 0.0) / max(nbytes, 1)
        self.per_byte_s = per_byte if self.n_bytes == 0 else 0.7 * self.per_byte_s + 0.3 * per_byte
        self.n_bytes += 1

    def estimate(self, nbytes: int, writes: int = 2) -> float:
        """Estimated seconds to store ``nbytes`` in ``writes`` files."""
        return writes * self.fixed_s + nbytes * self.per_byte_s


#: The estimate of this process (each worker process has its own).
STORE_COST = StoreCost()


def _save_image(store: Store, name: str, image: Any, sha: str | None = None) -> str:
    """Store an Image exactly (array, affine, JSON-able meta) and then its ``.sha256`` marker
    (last: an entry without it is incomplete); return the array's SHA-256."""
    from medimg.core.provenance import array_sha256

    sha = sha or array_sha256(image.array)
    t0 = time.perf_counter()
    meta = json.dumps(_canonical({k: v for k, v in image.meta.items()}))
    with store.writing(name) as tmp, open(tmp, "wb") as fh:  # straight to the file: no copy in memory
        np.savez(fh, array=image.array, affine=image.affine, meta=np.array(meta),
                 channel_axis=np.array(-1 if image.channel_axis is None else image.channel_axis),
                 patient_geometry=np.array(bool(image.has_patient_geometry)))
    store.write_bytes(name + ".sha256", sha.encode())
    STORE_COST.record_image(int(image.array.nbytes), time.perf_counter() - t0)
    return sha


def _load_image(store: Store, name: str) -> Any:
    from medimg.core.image import Image

    with np.load(_io.BytesIO(store.read_bytes(name)), allow_pickle=False) as data:
        axis = int(data["channel_axis"])
        return Image(data["array"], data["affine"], meta=json.loads(str(data["meta"])),
                     channel_axis=None if axis < 0 else axis,
                     has_patient_geometry=bool(data["patient_geometry"]))


def _load_cached_image(store: Store, name: str, sha: str) -> Any | None:
    """The cached image ``name`` if it reads and its array's SHA-256 is ``sha``; else None
    (a damaged or stale entry: the step is computed again)."""
    import zipfile

    from medimg.core.provenance import array_sha256

    try:
        image = _load_image(store, name)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return image if array_sha256(image.array) == sha else None


def _read_values(store: Store, name: str) -> tuple[dict[str, float], str] | None:
    """A values entry (one JSON object written atomically) and the SHA-256 of its bytes; None
    when missing or unreadable (computed again)."""
    try:
        data = store.read_bytes(name)
    except (FileNotFoundError, OSError):
        return None
    try:
        values = json.loads(data)
        if not isinstance(values, dict):
            return None
        return {k: float(v) for k, v in values.items()}, hashlib.sha256(data).hexdigest()
    except (ValueError, TypeError):
        return None


def _read_marker(store: Store, name: str) -> str | None:
    try:
        return store.read_bytes(name).decode().strip() or None
    except (FileNotFoundError, OSError, UnicodeDecodeError):
        return None


# ----------------------------------------------------------------------------- one case
def run_case(case: CaseInput, *, plan: Plan, store: Store, version: str, fetch_dir: str,
             keep_dir: str = "cases", cache_policy: Mapping[str, bool | None] | None = None,
             report_steps: frozenset[str] = frozenset(), report_cases: frozenset[str] = frozenset()) -> CaseResult:
    """Run the plan's steps on one case, computing only what is needed; return its values and
    records.

    Every step's cache key is computed first (keys depend on the inputs' keys and parameters
    only). Then only what is needed runs: a values step not in the cache, a kept image whose
    file is missing or stale, an image step with ``cache: true`` not in the cache, an image the
    report draws (``report_steps`` for ``report_cases``) not in the cache, and every image a
    needed step reads that is not in the cache (recursively). Other steps are ``cached`` (their
    output is stored) or ``not needed``. A computed image is stored when ``cache_policy`` says
    so (step id -> True/False) or, unset, when its cost (with the unstored images it needed) is
    at least :data:`STORE_FACTOR` times this process's estimate of storing it.

    Raises whatever a step raises (the executor records it as the case's failure), with the
    step named."""
    from medimg import io

    policy = dict(cache_policy or {})
    local = {role: path if isinstance(path, tuple) else fetch(path, fetch_dir) for role, path in case.files.items()}
    input_sha = {role: _sha256_path(path) for role, path in local.items()}
    keys: dict[str, str] = {role: f"input:{sha}" for role, sha in input_sha.items()}
    loaded: dict[str, Any] = {}
    values: dict[str, dict[str, float]] = {}
    kept: dict[str, str] = {}
    folder = case_folder_name(case.case)
    by_id = {s.id: s for s in plan.steps}

    # 1. keys, and what is already there
    refs_of: dict[str, dict[str, str]] = {}
    status: dict[str, str] = {}
    sha_of: dict[str, str] = {}
    seconds: dict[str, float] = {}
    stored_image: dict[str, str] = {}  # image step -> the SHA-256 its cache entry's marker holds
    kept_current: set[str] = set()
    for step in plan.steps:
        refs = {**step.inputs, **{f"param:{p}": r for p, r in step.image_params.items()}}
        refs_of[step.id] = refs
        if any(ref not in keys for ref in refs.values()):  # an optional file this case lacks
            status[step.id] = "skipped"
            continue
        keys[step.id] = key = step_key(step, {role: keys[ref] for role, ref in refs.items()}, version)
        name = _cache_key(key, step.output)
        t0 = time.perf_counter()
        if step.output == "values":
            found = _read_values(store, name)
            if found is not None:
                values[step.id], sha_of[step.id] = found
                status[step.id] = "cached"
        else:
            marker = _read_marker(store, name + ".sha256") if store.exists(name) else None
            if marker:
                stored_image[step.id] = marker
            if step.keep:
                kept_marker = _read_marker(store, f"{keep_dir}/{folder}/.{step.id}.key")
                kept_key, _, kept_sha = (kept_marker or "").partition(" ")
                kept_sha = kept_sha or marker or ""
                if kept_key == key and kept_sha and store.exists(f"{keep_dir}/{folder}/{step.id}.nii.gz"):
                    kept_current.add(step.id)
                    sha_of[step.id] = kept_sha
            if step.id in stored_image:
                status[step.id], sha_of[step.id] = "cached", stored_image[step.id]
            elif step.id in kept_current:
                status[step.id] = "cached"  # its kept file is current (its marker holds key and hash)
        seconds[step.id] = time.perf_counter() - t0

    # 2. what must run
    needed: set[str] = set()

    def need(step_id: str) -> None:
        if step_id in needed or step_id not in by_id or status.get(step_id) == "skipped":
            return
        needed.add(step_id)
        if step_id in stored_image:  # read back from the cache: its inputs are not needed
            return
        for ref in refs_of[step_id].values():
            if ref in by_id and ref not in stored_image:
                need(ref)

    report_case = case.case in report_cases
    for step in plan.steps:
        if status.get(step.id) == "skipped":
            continue
        if step.output == "values":
            wanted = step.id not in values
        else:
            wanted = (step.keep and step.id not in kept_current) \
                or (policy.get(step.id) is True and step.id not in stored_image) \
                or (report_case and step.id in report_steps and policy.get(step.id) is not False
                    and step.id not in stored_image)
        if wanted:
            need(step.id)

    # 3. run it, in plan order (an input found damaged in the cache is computed again)
    own_cost: dict[str, float] = {}
    unstored_upstream: dict[str, set[str]] = {}

    def get(ref: str) -> Any:
        if ref not in loaded:
            if ref in local:
                loaded[ref] = _read_input(local[ref], case.columns.get("series_uid") if ref == "image" else None)
            elif ref in stored_image:
                image = _load_cached_image(store, _cache_key(keys[ref], by_id[ref].output), stored_image[ref])
                if image is None:
                    del stored_image[ref]
                    compute(by_id[ref])
                else:
                    loaded[ref] = image
            else:
                compute(by_id[ref])
        return loaded[ref]

    def compute(step: PlannedStep) -> None:
        key = keys[step.id]
        name = _cache_key(key, step.output)
        t0 = time.perf_counter()
        if step.output != "values" and step.id in stored_image and step.id not in loaded:
            # stored, and needed only for its kept file: read it back rather than compute it
            image = _load_cached_image(store, name, stored_image[step.id])
            if image is not None:
                loaded[step.id] = image
                _write_kept(store, io, keep_dir, folder, step.id, key, image, stored_image[step.id], kept)
                seconds[step.id] = seconds.get(step.id, 0.0) + time.perf_counter() - t0
                return
            del stored_image[step.id]
        try:
            inputs = {role: get(ref) for role, ref in step.inputs.items()}
            params = {**step.params, **{p: get(r) for p, r in step.image_params.items()}}
            t_run = time.perf_counter()
            result = step.op.run(inputs, params)
            own_cost[step.id] = time.perf_counter() - t_run
        except UserInputError as err:
            raise StepFailed(step.id, err) from err
        except Exception as err:
            err.add_note(f"in step {step.id} ({step.op_name}) of case {case.case}")
            raise
        status[step.id] = "computed"
        if step.output == "values":
            result = {step.id: float(result)} if np.isscalar(result) else {k: float(v) for k, v in result.items()}
            # keys in the operation's order (not sorted): a resumed run's tables equal a fresh run's
            data = json.dumps({k: _finite_or_text(v) for k, v in result.items()}).encode()
            t_write = time.perf_counter()
            store.write_bytes(name, data)  # atomic: its hash is that of its bytes, no marker needed
            STORE_COST.record_write(time.perf_counter() - t_write)
            values[step.id] = result
            sha_of[step.id] = hashlib.sha256(data).hexdigest()
        else:
            from medimg.core.provenance import array_sha256

            loaded[step.id] = result
            sha_of[step.id] = sha = array_sha256(result.array)
            upstream: set[str] = set()
            for ref in refs_of[step.id].values():
                if ref in by_id and ref not in stored_image:
                    upstream |= {ref} | unstored_upstream.get(ref, set())
            unstored_upstream[step.id] = upstream
            cost = own_cost[step.id] + sum(own_cost.get(u, 0.0) for u in upstream)
            choice = policy.get(step.id)
            if choice is None and report_case and step.id in report_steps:
                choice = True
            if choice is None:
                choice = cost >= STORE_FACTOR * STORE_COST.estimate(int(result.array.nbytes))
            if choice:
                _save_image(store, name, result, sha)
                stored_image[step.id] = sha
            if step.keep and step.id not in kept_current:
                _write_kept(store, io, keep_dir, folder, step.id, key, result, sha, kept)
        seconds[step.id] = seconds.get(step.id, 0.0) + time.perf_counter() - t0

    for step in plan.steps:
        if step.id in needed and status.get(step.id) != "computed" and \
                not (step.output != "values" and step.id in loaded):
            compute(step)

    records: list[StepRecord] = []
    for step in plan.steps:
        st = status.get(step.id) or "not needed"
        if step.keep and st in ("computed", "cached"):
            kept[step.id] = f"{keep_dir}/{folder}/{step.id}.nii.gz"
        records.append(StepRecord(step.id, keys.get(step.id, ""), st, 0.0 if st == "skipped" else seconds.get(step.id, 0.0),
                                  sha_of.get(step.id, "") if st in ("computed", "cached") else ""))
    return CaseResult(case.case, values, records, input_sha, kept)


def _write_kept(store: Store, io: Any, keep_dir: str, folder: str, step_id: str, key: str, image: Any, sha: str,
                kept: dict[str, str]) -> None:
    """Write a kept image to ``cases/<case>/<step>.nii.gz``, then its marker (key and hash)."""
    kept_name = f"{keep_dir}/{folder}/{step_id}.nii.gz"
    with store.writing(kept_name) as tmp:
        io.write(image, tmp)
    store.write_bytes(f"{keep_dir}/{folder}/.{step_id}.key", f"{key} {sha}".encode())
    kept[step_id] = kept_name


class StepFailed(UserInputError):
    """A step of a case failed on bad input; the message names the step."""

    def __init__(self, step: str, err: Exception) -> None:
        self.step = step
        super().__init__(f"step {step}: {err}")


# ----------------------------------------------------------------------------- the study
def _kept_image_tables(cohort_plan: Any, results: dict[int, CaseResult], cases: list[Any]) -> dict[str, Any]:
    """For each kept image step a cohort step reads: a table of case, stored key, the image's
    SHA-256 and the case's columns (input order; cases without it are left out)."""
    import pandas as pd

    wanted = {ref for step in cohort_plan for ref in step.inputs.values()}
    tables: dict[str, Any] = {}
    for index in sorted(results):
        res = results[index]
        sha = {r.step: r.output_sha256 for r in res.steps}
        for step_id, key in res.kept.items():
            if step_id in wanted:
                tables.setdefault(step_id, []).append({"case": res.case, "key": key, "sha256": sha.get(step_id, ""),
                                                       **cases[index].columns})
    return {step_id: pd.DataFrame(rows).astype({"case": str}) for step_id, rows in tables.items()}


def _write_table(store: Store, key: str, rows: list[dict[str, Any]]) -> str:
    from medimg.io.tables import write_table

    with store.writing(key) as tmp:
        write_table(rows, tmp.with_suffix(".csv") if tmp.suffix != ".csv" else tmp)
    return key


def run_study(
    study: Study,
    out: str | Path,
    *,
    base: str | Path = ".",
    scheduler: str = "processes",
    workers: int | None = None,
    progress: Callable[[Outcome[Any], int, int], None] | None = None,
    cancel: threading.Event | None = None,
    command: str = "medimg run",
    source: str | None = None,
) -> StudyResult:
    """Run ``study`` into ``out`` (a folder or an fsspec URL); see the module notes.

    Parameters
    ----------
    study
        A validated study (:func:`~medimg.pipeline.study.load_study`).
    out
        Output folder or URL; a re-run into the same place resumes.
    base
        The folder relative input paths are relative to (the YAML's folder).
    scheduler, workers
        How cases run (:func:`~medimg.pipeline.run_cases`): ``"processes"`` by default, or
        ``"serial"``, ``"threads"``, ``"dask"``, ``"tcp://HOST:PORT"``.
    progress
        ``progress(outcome, done, total)`` after each case.
    cancel
        Set to stop: running cases stop, nothing new starts; the manifest records what ran.
    command
        The command line recorded in the manifest.
    source
        The study's YAML text, stored with the manifest.
    """
    from medimg import __version__
    from medimg.core.provenance import Manifest

    t0 = time.perf_counter()
    base = Path(base).resolve()
    plan = resolve_plan(study, base)
    store = Store(out)
    if store.remote and (study.prepare or study.inputs.pacs is not None):
        raise StudyError("prepare" if study.prepare else "inputs.pacs",
                         "de-identification, indexing and PACS retrieval write local files: use a local output folder")
    cases = gather_cases(study, base, None if store.remote else Path(store.location("")))
    local_work = _local_work_dir(store)
    fetch_dir = str(local_work / "inputs")
    from medimg.pipeline.runlog import RunLog

    log = RunLog(local_work / "run-log.jsonl")
    log.append("run", study=study.name, medimg=__version__, n_cases=len(cases), scheduler=scheduler,
               workers=workers, seed=study.seed)
    all_cases = cases
    prepared: list[dict[str, Any]] = []
    left_out: list[tuple[str, str]] = []
    if study.prepare:
        from medimg.pipeline.prepare import run_prepare

        try:
            cases, left_out, prepared = run_prepare(study, cases, Path(store.location("")), base, log=log)
        except BaseException:
            log.close()
            raise
    fn = functools.partial(run_case, plan=plan, store=store, version=__version__, fetch_dir=fetch_dir,
                           cache_policy={s.id: s.cache for s in study.steps if s.cache is not None},
                           **_report_images(study, plan, cases))
    results: dict[int, CaseResult] = {}
    outcomes: list[Outcome[Any]] = [Outcome(-1, name, False, None, "PrepareFailed", reason) for name, reason in left_out]
    try:
        for outcome in run_cases(fn, cases, key=lambda c: c.case, scheduler=scheduler, workers=workers,
                                 cancel=cancel, chunk_size=1):
            outcomes.append(outcome)
            if outcome.ok:
                res: CaseResult = outcome.value
                results[outcome.index] = res
                log.append("case", case=res.case, status="ok", seconds=round(outcome.seconds, 4),
                           inputs=res.input_sha256,
                           steps=[{"step": r.step, "key": r.key, "status": r.status, "seconds": round(r.seconds, 4),
                                   "output_sha256": r.output_sha256} for r in res.steps])
            else:
                log.append("case", case=outcome.key, status="failed", error_type=outcome.error_type,
                           error=outcome.error)
            if progress is not None:
                progress(outcome, len(outcomes), len(all_cases))
    finally:
        summary = summarize(outcomes, total=len(all_cases), seconds=time.perf_counter() - t0)
        log.append("end", **{k: v for k, v in summary.to_dict().items() if k != "failures"})
        log.close()
    # tables: one row per case (input order), case columns first
    tables: dict[str, str] = {}
    value_steps = [s.id for s in plan.steps if s.output == "values"]
    cohort_plan = []
    if study.cohort:
        from medimg.pipeline.cohort import resolve_cohort

        cohort_plan = resolve_cohort(study, value_steps,
                                     {s.id: s.keep for s in plan.steps if s.output in ("image", "labels")})
    wanted = value_steps if study.outputs.tables is None else list(study.outputs.tables)
    wanted += [ref for c in cohort_plan for ref in c.inputs.values() if ref in value_steps and ref not in wanted]
    for step_id in wanted:
        rows = []
        for index in sorted(results):
            res = results[index]
            if step_id in res.values:
                rows.append({"case": res.case, **cases[index].columns, **res.values[step_id]})
        if rows:
            tables[step_id] = _write_table(store, f"tables/{step_id}.csv", rows)
    step_stats = _step_stats(plan, results.values())
    cohort_records: list[dict[str, Any]] = []
    if cohort_plan:
        from medimg.pipeline.cohort import run_cohort
        from medimg.pipeline.runlog import RunLog

        case_columns = sorted({c for case in cases for c in case.columns})
        image_tables = _kept_image_tables(cohort_plan, results, cases)
        cohort_log = RunLog(local_work / "run-log.jsonl")
        try:
            cohort_records = run_cohort(cohort_plan, study=study, store=store, tables=tables, version=__version__,
                                        case_columns=case_columns, log=cohort_log, images=image_tables)
        finally:
            cohort_log.close()
        for rec in cohort_records:
            if rec["status"] in ("failed", "skipped"):
                failure = Outcome(-1, f"cohort:{rec['id']}", False, None,
                                  "CohortStepFailed" if rec["status"] == "failed" else "CohortStepSkipped",
                                  rec.get("error", ""))
                summary.failures.append(failure)
    manifest = Manifest(command=command, seed=study.seed, parameters={
        "study": json.loads(study.model_dump_json()),
        "plan": [s.describe() for s in plan.steps],
        "scheduler": scheduler, "workers": workers, "out": store.url,
        "base": str(base),
        "summary": summary.to_dict(),
        "step_stats": step_stats,
        "prepare": prepared,
        "cohort_plan": [c.describe() for c in cohort_plan],
        "cohort": cohort_records,
    })
    if source is not None:
        manifest.parameters["study_yaml"] = source
    for index, case in enumerate(cases):
        res = results.get(index)
        for role, path in case.files.items():
            row = {"path": list(path) if isinstance(path, tuple) else path, "case": case.case, "role": role}
            if res is not None:
                row["sha256"] = res.input_sha256.get(role, "")
            manifest.inputs.append(row)
    for step_id, key in tables.items():
        manifest.outputs.append({"path": key, "kind": "table", "step": step_id,
                                 "sha256": hashlib.sha256(store.read_bytes(key)).hexdigest()})
    for rec in cohort_records:
        for key in rec.get("outputs", []):
            manifest.outputs.append({"path": key, "kind": "cohort", "step": rec["id"],
                                     "sha256": hashlib.sha256(store.read_bytes(key)).hexdigest()})
    for index in sorted(results):
        res = results[index]
        manifest.outputs.append({"case": res.case, "kind": "case",
                                 "steps": {r.step: {"key": r.key, "status": r.status,
                                                    "output_sha256": r.output_sha256 or None}
                                           for r in res.steps},
                                 "values": res.values, "kept": res.kept})
    for failure in summary.failures:
        manifest.add_failure(failure.key, failure.error)
    manifest.parameters["case_outputs"] = {results[i].case: {r.step: r.key for r in results[i].steps}
                                           for i in sorted(results)}
    local_manifest = manifest.write(local_work / "manifest.json")
    if store.remote:
        from medimg.core.chain import head_path

        store.put(local_manifest, "manifest.json")
        store.put(log.path, "run-log.jsonl")
        store.put(head_path(log.path), "run-log.head.json")
    if store.remote:
        import shutil

        shutil.rmtree(local_work, ignore_errors=True)
    report = None
    if study.outputs.report:
        from medimg.report.study import study_report

        report = study_report(store.url)
    return StudyResult(out=store.url, n_cases=len(all_cases), n_ok=summary.n_ok, failures=summary.failures,
                       tables=tables, manifest=store.location("manifest.json"), seconds=summary.seconds,
                       step_stats=step_stats, report=report)


def _report_images(study: Study, plan: Plan, cases: Sequence[CaseInput]) -> dict[str, frozenset[str]]:
    """The images the report reads from the cache (the image under a kept label map, a
    registered image) and the cases it draws them for (the first :data:`REPORT_CASES`)."""
    if not study.outputs.report:
        return {}
    ids = {s.id for s in plan.steps}
    steps = {s.inputs.get("image", "") for s in plan.steps if s.output == "labels" and s.keep}
    steps |= {s.id for s in plan.steps if s.op_name == "register"}
    return {"report_steps": frozenset(steps & ids), "report_cases": frozenset(c.case for c in cases[:REPORT_CASES])}


def _local_work_dir(store: Store) -> Path:
    """The local folder for the run log, manifest and fetched inputs: the output folder itself,
    or (for a URL) a new temporary folder holding a copy of the store's run log and its head,
    which go back to the store at the end of the run."""
    if not store.remote:
        return Path(store.location(""))
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="medimg-run-"))
    for name in ("run-log.jsonl", "run-log.head.json"):
        if store.exists(name):
            (folder / name).write_bytes(store.read_bytes(name))
    return folder


def _step_stats(plan: Plan, results: Sequence[CaseResult] | Any) -> dict[str, dict[str, float]]:
    stats: dict[str, dict[str, float]] = {}
    results = list(results)
    for step in plan.steps:
        secs = [r.seconds for res in results for r in res.steps if r.step == step.id and r.status == "computed"]
        cached = sum(1 for res in results for r in res.steps if r.step == step.id and r.status == "cached")
        skipped = sum(1 for res in results for r in res.steps if r.step == step.id and r.status == "skipped")
        not_needed = sum(1 for res in results for r in res.steps if r.step == step.id and r.status == "not needed")
        stats[step.id] = {"computed": len(secs), "cached": cached, "skipped": skipped, "not_needed": not_needed,
                          "seconds_total": round(float(sum(secs)), 4),
                          "seconds_mean": round(float(np.mean(secs)), 4) if secs else 0.0}
    return stats
