"""Cohort steps: operations that run once, after the per-case steps, on the collected tables.

A study's ``cohort:`` list names them like per-case steps (``id``, ``op``, ``inputs``,
``params``). Their inputs are tables: a per-case values step (``radiomics``: one row per case,
the case's columns first), an earlier cohort step's output (the out-of-fold predictions of a
``model`` step), or the images of a kept per-case image step (``keep: true``; a table of case,
stored key and SHA-256, read with ``context.read_image``). Each op writes into
``cohort/<id>/`` of the run's output:

* ``result.json``: ``{"op", "key", "metrics": {name: {"value", "ci"}}, "figures": [{"path",
  "caption"}], "tables": [{"path", "caption"}], "notes": [...]}`` — the report draws its section
  from it, whatever the op;
* the op's own files (``predictions.csv``, plots, a fitted model).

A cohort step's output is cached like a case step's: its key hashes the input tables' bytes,
the resolved parameters and the medimg version, and a re-run whose key matches skips it.

The ops themselves live with their libraries (models in :mod:`medimg.ml`, statistics in
:mod:`medimg.evaluation`); this module only adapts them to tables in and files out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic

from medimg.errors import ParameterError, UnknownNameError, UserInputError

__all__ = ["CohortOp", "CohortContext", "CohortOutput", "PlannedCohortStep", "cohort_op_names", "find_cohort_op",
           "resolve_cohort", "run_cohort"]

CohortOutputKind = Literal["table", "predictions", "summary"]
#: The kind of a cohort input that is a kept per-case image step (one stored image per case).
IMAGES = "images"
_PHRASE = {"table": "a table", "predictions": "predictions", "summary": "a summary",
           IMAGES: "images (a per-case image or label step)"}


@dataclass
class CohortContext:
    """What a cohort op sees: its input tables (pandas DataFrames, by role), the study's column
    conventions, its seed and where to write (``write(name, bytes)`` -> the stored key)."""

    inputs: dict[str, Any]
    id_column: str
    label_column: str | None
    group_column: str | None
    subgroup_columns: list[str]
    case_columns: list[str]  # the columns that came from the case list, not from a step
    seed: int
    write: Callable[[str, bytes], str]
    read_image: Callable[[str], Any] | None = None  # a stored key of an ``images`` input -> Image


@dataclass
class CohortOutput:
    """What a cohort op gives back: an optional output table (``predictions`` or ``table``),
    metrics with intervals, figures and tables written (stored keys, with captions), notes."""

    table: Any = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    figures: list[dict[str, str]] = field(default_factory=list)
    tables: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CohortOp:
    """A cohort operation: input roles (each a table), output kind, parameters, the call."""

    name: str
    inputs: tuple[str, ...]
    output: CohortOutputKind
    params: type[pydantic.BaseModel]
    run: Callable[[CohortContext, dict[str, Any]], CohortOutput]
    summary: str = ""
    input_kinds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # role -> accepted output kinds

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter resolved (defaults included); an error names the parameter."""
        known = set(self.params.model_fields)
        for key in params:
            if key not in known:
                from medimg.errors import did_you_mean

                raise ParameterError(f"cohort op {self.name!r}: parameter {key}: no such parameter"
                                     f"{did_you_mean(key, known)}; parameters: {', '.join(sorted(known))}")
        try:
            model = self.params.model_validate(dict(params))
        except pydantic.ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise ParameterError(f"cohort op {self.name!r}: parameter {loc}: "
                                 f"{first['msg'].removeprefix('Value error, ')}") from err
        return model.model_dump(mode="json")


_OPS: dict[str, Callable[[], CohortOp]] = {}


def cohort_op(name: str) -> Callable[[Callable[[], CohortOp]], Callable[[], CohortOp]]:
    """Declare a cohort op by a factory (called on first use, so that heavy libraries load late)."""

    def deco(factory: Callable[[], CohortOp]) -> Callable[[], CohortOp]:
        if name in _OPS:
            raise ParameterError(f"cohort op {name!r} declared twice")
        _OPS[name] = factory
        return factory

    return deco


def _load_ops() -> None:
    import medimg.pipeline.cohort_ops  # noqa: F401  (declares the ops)


def cohort_op_names() -> list[str]:
    """The names a cohort step's ``op`` may take."""
    _load_ops()
    return sorted(_OPS)


def find_cohort_op(name: str) -> CohortOp:
    """The cohort op called ``name``."""
    _load_ops()
    if name not in _OPS:
        raise UnknownNameError("cohort operation", name, sorted(_OPS))
    return _OPS[name]()


@dataclass(frozen=True)
class PlannedCohortStep:
    """A cohort step with its op found, parameters resolved and inputs resolved to step ids."""

    id: str
    op_name: str
    output: CohortOutputKind
    inputs: dict[str, str]
    params: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        """JSON-able: what the manifest records."""
        return {"id": self.id, "op": self.op_name, "output": self.output, "inputs": dict(self.inputs),
                "params": self.params}


def resolve_cohort(study: Any, value_steps: Sequence[str],
                   image_steps: Mapping[str, bool] | None = None) -> list[PlannedCohortStep]:
    """Validate the study's cohort steps (op known, parameters valid, inputs defined and of the
    right kind); errors name the YAML path (``cohort[1].params.folds: ...``). ``image_steps``:
    the per-case steps that give an image or a label map, each with whether it is kept."""
    from medimg.pipeline.study import StudyError

    outputs: dict[str, str] = {s: "table" for s in value_steps}
    kept_images = dict(image_steps or {})
    outputs.update({s: IMAGES for s in kept_images})
    planned: list[PlannedCohortStep] = []
    for k, spec in enumerate(study.cohort):
        here = f"cohort[{k}]"
        try:
            op = find_cohort_op(spec.op)
        except UserInputError as err:
            raise StudyError(f"{here}.op", str(err)) from err
        if spec.keep:
            raise StudyError(f"{here}.keep", "cohort steps always write their outputs; keep is for case steps")
        try:
            params = op.validate(spec.params)
        except UserInputError as err:
            import re

            m = re.match(r"^cohort op '[^']+': parameter ([\w.]+): (.*)$", str(err), flags=re.S)
            where, problem = (f"{here}.params.{m.group(1)}", m.group(2)) if m else (f"{here}.params", str(err))
            raise StudyError(where, problem) from err
        if "seed" in op.params.model_fields and "seed" not in spec.params:
            params["seed"] = study.seed
        for role in spec.inputs:
            if role not in op.inputs:
                raise StudyError(f"{here}.inputs.{role}", f"{op.name} takes no input {role!r}; it takes "
                                 f"{', '.join(op.inputs)}")
        inputs: dict[str, str] = {}
        for role in op.inputs:
            accepted = op.input_kinds.get(role, ("table", "predictions"))
            ref = spec.inputs.get(role)
            if ref is None:  # the nearest earlier output of an accepted kind
                candidates = [s for s, kind in outputs.items() if kind in accepted]
                if not candidates:
                    raise StudyError(f"{here}.inputs.{role}", f"{op.name} needs an input {role!r}: a step that "
                                     f"gives {' or '.join(_PHRASE[k] for k in accepted)}")
                ref = candidates[-1]
            if ref not in outputs:
                from medimg.errors import did_you_mean

                raise StudyError(f"{here}.inputs.{role}", f"unknown input {ref!r}: not a values step nor an earlier "
                                 f"cohort step{did_you_mean(ref, list(outputs))}")
            if outputs[ref] not in accepted:
                raise StudyError(f"{here}.inputs.{role}", f"{ref!r} gives {_PHRASE[outputs[ref]]}; {op.name} needs "
                                 f"{' or '.join(_PHRASE[k] for k in accepted)}")
            if outputs[ref] == IMAGES and not kept_images.get(ref):
                raise StudyError(f"{here}.inputs.{role}", f"{ref!r} must be kept (keep: true) for a cohort step "
                                 "to read its images")
            inputs[role] = ref
        if op.name in ("model", "cnn") and not (params.get("label") or study.inputs.label_column):
            raise StudyError(f"{here}.params.label", "a model needs the outcome: set inputs.label_column or "
                                                     "params.label")
        planned.append(PlannedCohortStep(spec.id, op.name, op.output, inputs, params))
        outputs[spec.id] = op.output
    return planned


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def run_cohort(
    planned: Sequence[PlannedCohortStep],
    *,
    study: Any,
    store: Any,
    tables: Mapping[str, str],
    version: str,
    case_columns: Sequence[str] = (),
    log: Any | None = None,
    images: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run the cohort steps in order on the written ``tables`` (step id -> stored key); return
    one record per step (id, op, key, status, seconds, outputs, error). ``images``: kept image
    step id -> a table (case, key, sha256) of its stored images. A failing step is recorded and
    the steps that need its output are skipped; the others go on."""
    import io as _io
    import time

    import pandas as pd

    case_roles = set(study.inputs.files)
    available: dict[str, str] = dict(tables)  # step id -> stored key of its table
    image_tables: dict[str, Any] = dict(images or {})

    def read_image(key: str) -> Any:
        from medimg import io as mio

        with store.reading(key) as local:
            return mio.read(local)

    records: list[dict[str, Any]] = []
    for step in planned:
        t0 = time.perf_counter()
        record: dict[str, Any] = {"id": step.id, "op": step.op_name, "status": "", "seconds": 0.0}
        missing = [ref for ref in step.inputs.values() if ref not in available and ref not in image_tables]
        if missing:
            record.update(status="skipped", error=f"no output from {', '.join(missing)}")
            records.append(record)
            continue
        digest = hashlib.sha256()
        digest.update(_canonical_json({"op": step.op_name, "params": step.params, "version": version,
                                       "inputs": sorted(step.inputs)}).encode())
        frames: dict[str, Any] = {}
        for role, ref in sorted(step.inputs.items()):
            if ref in image_tables:  # the images' hashes stand for their bytes
                frame = image_tables[ref]
                data = frame[["case", "sha256"]].to_csv(index=False).encode()
                digest.update(role.encode() + b"\0" + hashlib.sha256(data).digest())
                frames[role] = frame
                continue
            data = store.read_bytes(available[ref])
            digest.update(role.encode() + b"\0" + hashlib.sha256(data).digest())
            frames[role] = pd.read_csv(_io.BytesIO(data), dtype={study.inputs.id_column: str, "case": str})
        key = digest.hexdigest()
        folder = f"cohort/{step.id}"
        result_key = f"{folder}/result.json"
        record["key"] = key
        if store.exists(result_key):
            try:
                previous = json.loads(store.read_bytes(result_key))
            except (ValueError, OSError):
                previous = {}
            if previous.get("key") == key:
                record.update(status="cached", outputs=previous.get("outputs", []),
                              seconds=round(time.perf_counter() - t0, 4))
                if previous.get("table"):
                    available[step.id] = previous["table"]
                records.append(record)
                continue
        written: list[str] = []

        def write(name: str, data: bytes, _folder: str = folder, _written: list[str] = written) -> str:
            if "/" in name or name.startswith("."):
                raise ParameterError(f"cohort output name {name!r}: a plain file name")
            out_key = f"{_folder}/{name}"
            store.write_bytes(out_key, data)
            _written.append(out_key)
            return out_key

        context = CohortContext(inputs=frames, id_column="case", label_column=study.inputs.label_column,
                                group_column=study.inputs.group_column,
                                subgroup_columns=list(study.inputs.subgroup_columns),
                                case_columns=["case", *[c for c in case_columns if c not in case_roles]],
                                seed=study.seed,
                                write=write, read_image=read_image)
        try:
            output = find_cohort_op(step.op_name).run(context, dict(step.params))
        except Exception as err:  # noqa: BLE001 - one failing cohort step must not lose the others
            record.update(status="failed", error=f"{type(err).__name__}: {err}",
                          seconds=round(time.perf_counter() - t0, 4))
            records.append(record)
            if log is not None:
                log.append("cohort", step=step.id, status="failed", error=record["error"])
            continue
        table_key = None
        if output.table is not None:
            buf = _io.StringIO()
            output.table.to_csv(buf, index=False)
            table_key = write("table.csv" if step.output == "table" else f"{step.output}.csv", buf.getvalue().encode())
            available[step.id] = table_key
        result = {"op": step.op_name, "id": step.id, "key": key, "params": step.params,
                  "metrics": output.metrics, "figures": output.figures, "tables": output.tables,
                  "notes": output.notes, "table": table_key, "extra": output.extra,
                  "outputs": sorted({*written, result_key})}
        store.write_bytes(result_key, json.dumps(result, indent=1, sort_keys=True, default=_jsonable).encode())
        record.update(status="computed", outputs=result["outputs"], seconds=round(time.perf_counter() - t0, 4))
        if log is not None:
            log.append("cohort", step=step.id, status="computed", key=key, seconds=record["seconds"])
        records.append(record)
    return records


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
