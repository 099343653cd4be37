"""``medimg train CONFIG.yaml`` and ``medimg predict``: a CNN training run described by a YAML
file, validated before any work starts, and predictions of a saved model for a case table.

The YAML file::

    data:
      table: cases.csv            # one row per image: path, label, patient (relative to the YAML)
      image_column: image         # or a list of columns: the channels of one image (e.g. [pet, ct])
      label_column: label
      patient_column: patient     # the validation split holds out whole patients
      time_column: null           # with a sequence model: rows of a case ordered by this column
      id_column: null             # case ids (default: the patient with a time column, else row numbers)
      validation_table: null      # a separate validation table (else model.val_fraction of the patients)
    model:                        # the fields of medimg.ml.deep.CNNConfig
      architecture: resnet_tiny
      image_size: [64, 64]
      epochs: 30
      pretrained: null            # local weights file (relative to the YAML): transfer learning
    seed: 0
    output: runs/cnn              # default for -o
    explain:
      cases: 4                    # validation cases with Grad-CAM and occlusion overlays (PNG)

The output folder gets ``model.pt`` (the checkpoint), ``metrics.json``, ``history.csv``,
``validation_predictions.csv`` (``y_true``, ``y_score``: ready for ``medimg evaluate``),
``manifest.json`` (inputs and their hashes, the resolved configuration, versions) and the
overlays under ``explain/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic

from medimg.errors import FileFormatError, ParameterError, did_you_mean
from medimg.ml.deep.config import CNNConfig

__all__ = ["TrainSpec", "load_train_spec", "run_training", "predict_table"]


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    """Where the cases are (see the module notes)."""

    table: str
    image_column: str | list[str] = "image"  # several columns: the channels of one image
    label_column: str = "label"
    patient_column: str | None = None
    time_column: str | None = None
    id_column: str | None = None
    validation_table: str | None = None


class ExplainSpec(_Strict):
    """Overlays written for the first validation cases of each class."""

    cases: int = pydantic.Field(default=0, ge=0, le=100)
    method: Literal["grad_cam", "occlusion", "both"] = "both"


class TrainSpec(_Strict):
    """A ``medimg train`` file."""

    data: DataSpec
    model: dict[str, Any] = pydantic.Field(default_factory=dict)
    seed: int = 0
    output: str | None = None
    explain: ExplainSpec = ExplainSpec()


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")


def _config(values: Mapping[str, Any], base: Path) -> CNNConfig:
    known = {f.name for f in fields(CNNConfig)}
    for key in values:
        if key not in known:
            raise ParameterError(f"model.{key}: unknown key{did_you_mean(str(key), known)}")
    values = dict(values)
    if values.get("pretrained"):
        p = Path(str(values["pretrained"]))
        if "://" not in str(p) and not p.is_absolute():
            values["pretrained"] = str((base / p).resolve())
    try:
        return pydantic.TypeAdapter(CNNConfig).validate_python(values)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        raise ParameterError(f"model.{_where(tuple(first['loc']))}: {first['msg']}") from err


def spec_from_mapping(data: Any, base: Path) -> tuple[TrainSpec, CNNConfig]:
    """Validate a parsed ``medimg train`` file; relative paths are relative to ``base``."""
    if not isinstance(data, Mapping):
        raise ParameterError(f"a train file is a mapping with data, model, seed, output, explain; got {type(data).__name__}")
    known = set(TrainSpec.model_fields)
    for key in data:
        if key not in known:
            raise ParameterError(f"{key}: unknown key{did_you_mean(str(key), known)}; keys: {', '.join(sorted(known))}")
    try:
        spec = TrainSpec.model_validate(dict(data))
    except pydantic.ValidationError as err:
        errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")  # a typo explains "missing"
        first = errors[0]
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            section = {"data": DataSpec, "explain": ExplainSpec}.get(str(first["loc"][0]))
            known = set(section.model_fields) if section is not None else set()
            msg = f"unknown key{did_you_mean(str(first['loc'][-1]), known)}"
        raise ParameterError(f"{_where(tuple(first['loc']))}: {msg}") from err
    return spec, _config(spec.model, base)


def load_train_spec(path: str | Path) -> tuple[TrainSpec, CNNConfig, Path]:
    """Read and validate a ``medimg train`` YAML file; returns the spec, the network
    configuration and the folder relative paths are relative to."""
    from medimg.core.yamlio import load_file

    path = Path(path)
    data = load_file(path)
    base = path.parent.resolve()
    try:
        spec, config = spec_from_mapping(data or {}, base)
    except ParameterError as err:
        raise ParameterError(f"{err} (in {path})") from err
    if config.pretrained and not Path(config.pretrained).is_file():
        raise FileFormatError(config.pretrained, "model.pretrained: no such weights file")
    for key in ("table", "validation_table"):
        value = getattr(spec.data, key)
        if value is not None:
            _check_columns(_table_path(value, base), spec.data, f"data.{key}")
    return spec, config, base


def _check_columns(table: Path, spec: DataSpec, where: str) -> None:
    """The table exists and its header has the columns the spec names (before any work)."""
    import csv

    if not table.is_file():
        raise FileFormatError(table, f"{where}: no such file")
    try:
        with table.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise FileFormatError(table, f"{where}: cannot read the header ({err})") from err
    for key in ("image_column", "label_column", "patient_column", "time_column", "id_column"):
        value = getattr(spec, key)
        for column in [value] if isinstance(value, str) or value is None else value:
            if column is not None and column not in header:
                raise ParameterError(f"data.{key}: no column {column!r} in {table}{did_you_mean(column, header)}; "
                                     f"columns are {header[:20]}")


def _table_path(value: str, base: Path) -> Path:
    p = Path(value)
    return p if p.is_absolute() else base / p


def _read(spec: DataSpec, table: Path, labelled: bool = True) -> tuple[Any, ...]:
    from medimg.ml.deep.data import read_case_table

    return read_case_table(table, image_column=spec.image_column, label_column=spec.label_column if labelled else None,
                           patient_column=spec.patient_column, time_column=spec.time_column, id_column=spec.id_column)


def _prediction_rows(model: Any, data: Any) -> list[dict[str, Any]]:
    probs = model.predict_proba(data)
    rows = []
    for i in range(len(data)):
        row: dict[str, Any] = {"case": data.ids[i]}
        if data.groups is not None:
            row["patient"] = data.groups[i]
        if data.labels is not None:
            row["y_true"] = int(data.labels[i])
        if probs.shape[1] == 2:
            row["y_score"] = float(probs[i, 1])
        else:
            row.update({f"p_{k}": float(probs[i, k]) for k in range(probs.shape[1])})
        row["y_pred"] = int(np.argmax(probs[i]))
        rows.append(row)
    return rows


def run_training(config_path: str | Path, out: str | Path | None = None, *,
                 log: Callable[[str], None] | None = None, manifest: Any = None) -> dict[str, Any]:
    """Run the training a ``medimg train`` file describes and write its outputs (module notes)
    into ``out`` (default: the file's ``output``). Returns the metrics record."""
    from medimg.core.files import atomic_path
    from medimg.core.provenance import Manifest, jsonable
    from medimg.io.tables import write_table
    from medimg.ml.deep.data import prepare_cases
    from medimg.ml.deep.train import train_classifier

    spec, config, base = load_train_spec(config_path)
    target = out if out is not None else (_table_path(spec.output, base) if spec.output else None)
    if target is None:
        raise ParameterError("no output folder: give -o/--out or `output:` in the train file")
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ParameterError(f"output folder {target} exists and is not empty; choose another")
    table = _table_path(spec.data.table, base)
    images, labels, groups, ids, frame = _read(spec.data, table)
    if log:
        log(f"read {len(images)} cases from {table}")
    data = prepare_cases(images, config, labels=labels, groups=groups, ids=ids)
    paths = _paths(frame, spec.data, ids, table)
    del images  # the prepared inputs are kept; the explained images are read again
    validation = None
    if spec.data.validation_table:
        vt = _table_path(spec.data.validation_table, base)
        v_images, v_labels, v_groups, v_ids, v_frame = _read(spec.data, vt)
        validation = prepare_cases(v_images, config, labels=v_labels, groups=v_groups, ids=v_ids)
        paths.update(_paths(v_frame, spec.data, v_ids, vt))
        del v_images
    target.mkdir(parents=True, exist_ok=True)
    result = train_classifier(data, validation=validation, config=config, seed=spec.seed,
                              checkpoint_path=target / "model.pt", log=log)
    manifest = manifest if manifest is not None else Manifest(command="medimg train")
    manifest.parameters = {"config": config.to_dict(), "data": spec.data.model_dump(), "explain": spec.explain.model_dump()}
    manifest.seed = spec.seed
    manifest.add_input(config_path, role="train config")
    manifest.add_input(table, role="case table")
    if spec.data.validation_table:
        manifest.add_input(_table_path(spec.data.validation_table, base), role="validation table")
    if config.pretrained:
        manifest.add_input(config.pretrained, role="pretrained weights")
    outputs = [target / "model.pt"]
    if result.history:
        write_table(result.history, target / "history.csv")
        outputs.append(target / "history.csv")
    if result.validation is not None:
        write_table(_prediction_rows(result.model, result.validation), target / "validation_predictions.csv")
        outputs.append(target / "validation_predictions.csv")
        outputs += _explain(result, spec.explain, target / "explain", paths)
    record = {"metrics": result.metrics, "epochs_run": result.epochs, "stopped_early": result.stopped_early,
              "train_seconds": result.seconds, "images_per_second": result.images_per_second,
              "n_train": result.model.info["n_train"], "n_validation": result.model.info["n_validation"],
              "data_sha256": result.model.info["data_sha256"], "transfer": result.model.info["transfer"],
              "config": config.to_dict(), "seed": spec.seed}
    with atomic_path(target / "metrics.json") as tmp:
        tmp.write_text(json.dumps(jsonable(record), indent=2, allow_nan=False) + "\n")
    outputs.append(target / "metrics.json")
    for p in outputs:
        manifest.add_output(p)
    manifest.write(target / "manifest.json")
    record["out"] = str(target)
    return record


def _paths(frame: Any, spec: DataSpec, ids: list[str], table: Path) -> dict[str, list[Path]]:
    """Image files (one per channel) of each case id (one-image cases only)."""
    if spec.time_column is not None:
        return {}
    columns = [spec.image_column] if isinstance(spec.image_column, str) else spec.image_column
    out: dict[str, list[Path]] = {}
    for case, (_, row) in zip(ids, frame.iterrows(), strict=True):
        files = [Path(str(row[c])) for c in columns]
        out[case] = [f if f.is_absolute() else table.parent / f for f in files]
    return out


def _explain(result: Any, spec: ExplainSpec, folder: Path, paths: dict[str, list[Path]]) -> list[Path]:
    """Overlays for up to ``spec.cases`` validation cases (alternating classes)."""
    if spec.cases == 0 or result.model.config.sequence != "none":
        return []
    from medimg import Image, io
    from medimg.ml.explain import grad_cam, occlusion_sensitivity, save_overlay

    val = result.validation
    order = list(range(len(val)))
    if val.labels is not None:  # alternate the classes: positive, negative, positive, ...
        pos = [i for i in order if val.labels[i] == 1]
        neg = [i for i in order if val.labels[i] != 1]
        order = [i for pair in zip(pos, neg, strict=False) for i in pair] + pos[len(neg):] + neg[len(pos):]
    written = []
    folder.mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(order[: spec.cases]):
        case = val.ids[i]
        if case in paths:
            parts = [io.read(p) for p in paths[case]]
            image = parts[0] if len(parts) == 1 else Image(
                np.stack([np.asarray(p.array, dtype=np.float32) for p in parts], axis=-1), parts[0].affine, channel_axis=-1)
        else:
            image = val.inputs[i] if val.inputs[i].shape[0] > 1 else val.inputs[i][0]
        label = "" if val.labels is None else f" (label {int(val.labels[i])})"
        safe = f"{k:02d}_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in case)[:60]
        if spec.method in ("grad_cam", "both"):
            written.append(save_overlay(image, grad_cam(result.model, image), folder / f"{safe}_gradcam.png",
                                        title=f"Grad-CAM, case {case}{label}"))
        if spec.method in ("occlusion", "both"):
            written.append(save_overlay(image, occlusion_sensitivity(result.model, image), folder / f"{safe}_occlusion.png",
                                        title=f"occlusion, case {case}{label}"))
    return written


def predict_table(model_path: str | Path, table: str | Path, out: str | Path, *,
                  image_column: str | list[str] = "image",
                  label_column: str | None = None, patient_column: str | None = None,
                  time_column: str | None = None, id_column: str | None = None) -> tuple[Path, int]:
    """Predict every case of a case table with a saved model and write a predictions CSV
    (``case``, ``y_true`` when labelled, ``y_score`` (two classes) or ``p_<k>``, ``y_pred``)."""
    from medimg.io.tables import write_table
    from medimg.ml.deep.data import prepare_cases, read_case_table
    from medimg.ml.deep.model import load_model

    model = load_model(model_path)
    if (time_column is None) != (model.config.sequence == "none"):
        need = "a time column (--time-column)" if model.config.sequence != "none" else "no time column"
        raise ParameterError(f"this model ({model.config.sequence if model.config.sequence != 'none' else 'one image per case'}) needs {need}")
    images, labels, groups, ids, _ = read_case_table(table, image_column=image_column, label_column=label_column,
                                                     patient_column=patient_column, time_column=time_column,
                                                     id_column=id_column)
    data = prepare_cases(images, model.config, labels=labels, groups=groups, ids=ids)
    rows = _prediction_rows(model, data)
    return write_table(rows, out), len(rows)
