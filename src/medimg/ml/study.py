"""One feature-table study end to end: cross-validate a pipeline, write the out-of-fold
predictions, the metrics with confidence intervals, the ROC plot, and the model refitted on all
rows. ``medimg model`` is a thin layer over :func:`model_study`.

Output folder::

    predictions.csv   one row per input row: the case id, group and carried columns, then
                      y_true (0/1), y_score (out-of-fold probability), y_pred (0/1), fold
    metrics.json      metrics with bootstrap CIs (clustered by group when groups repeat), the
                      cross-validation settings, per-fold AUCs and chosen hyper-parameters
    roc.png           pooled and per-fold ROC curves
    model/            model.joblib + model.json (the pipeline refitted on all rows)
    manifest.json     inputs and their hashes, parameters, seed, software
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import ParameterError

__all__ = ["FeatureTable", "split_table", "model_study", "read_feature_table", "DROP_COLUMNS"]

#: Columns of medimg feature tables that are never features (see :mod:`medimg.features.table`).
DROP_COLUMNS = ("status", "error")


@dataclass(frozen=True)
class FeatureTable:
    """A wide table split into features (DataFrame), labels, groups (or ``None``) and the
    columns carried to the predictions file (DataFrame: id, group, kept subgroup columns)."""

    features: Any
    labels: Any
    groups: Any
    carried: Any
    empty_columns: tuple[str, ...] = ()  # feature columns with no value in any row: left out


def read_feature_table(path: str | Path) -> Any:
    """Read a ``.csv`` or ``.parquet`` table as a pandas DataFrame (one clear error otherwise)."""
    import pandas as pd

    from medimg.core.files import full_suffix
    from medimg.errors import FileFormatError

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "no such file")
    suffix = full_suffix(path)
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except Exception as err:  # pandas raises many types for malformed tables
        raise FileFormatError(path, f"not a readable table ({type(err).__name__}: {err})") from err
    raise FileFormatError(path, f"table format must be .csv, .tsv or .parquet, got {suffix or '(none)'!r}")


def split_table(frame: Any, *, label: str, group: str | None = None, case_id: str | None = None,
                keep: Sequence[str] = (), exclude: Sequence[str] = ()) -> FeatureTable:
    """Split a wide feature table: ``label`` is the class column, ``group`` the patient column,
    ``case_id`` (default ``case`` when present) and ``keep`` are carried to the predictions,
    ``exclude`` and medimg's bookkeeping columns (``status``, ``error``, ``prov.*``) are dropped;
    every other column must be numeric and is a feature."""
    columns = [str(c) for c in frame.columns]
    if case_id is None and "case" in columns and "case" != label:
        case_id = "case"
    named = {"--label": [label], "--group": [group] if group else [], "--id": [case_id] if case_id else [],
             "--keep": list(keep), "--exclude": list(exclude)}
    for option, cols in named.items():
        missing = [c for c in cols if c not in columns]
        if missing:
            raise ParameterError(f"{option}: no column {missing[0]!r} in the table{_near(missing[0], columns)}; "
                                 f"columns: {', '.join(columns[:12])}{' ...' if len(columns) > 12 else ''}")
    if "status" in columns:
        bad = frame["status"].astype(str).str.lower().isin(["error", "failed"])
        if bad.any():
            raise ParameterError(f"{int(bad.sum())} row(s) have status 'error' (feature extraction failed); "
                                 "drop them or fix the cases first")
    carried_cols = list(dict.fromkeys([c for c in (case_id, group, *keep) if c]))
    skip = {label, *carried_cols, *exclude, *DROP_COLUMNS}
    feature_cols = [c for c in columns if c not in skip and not c.startswith("prov.")]
    non_numeric = [c for c in feature_cols if frame[c].dtype.kind not in "biuf"]
    if non_numeric:
        raise ParameterError(f"non-numeric column(s) {non_numeric[:5]} are not features; "
                             "name them with --id, --group, --keep or --exclude")
    if not feature_cols:
        raise ParameterError("no numeric feature columns left in the table")
    labels = frame[label]
    if labels.isna().any():
        raise ParameterError(f"--label {label!r}: {int(labels.isna().sum())} row(s) have no label; drop them first")
    groups = frame[group] if group else None
    if groups is not None and groups.isna().any():
        raise ParameterError(f"--group {group!r}: {int(groups.isna().sum())} row(s) have no group")
    # a column without a single value (e.g. a feature undefined for every ROI) carries no
    # information; dropping it looks at no label, so it cannot leak
    empty = tuple(c for c in feature_cols if frame[c].isna().all())
    kept = [c for c in feature_cols if c not in empty]
    if not kept:
        raise ParameterError("every feature column is empty (no values in any row)")
    return FeatureTable(frame[kept], labels, groups, frame[carried_cols].copy(), empty)


def _near(name: str, columns: Sequence[str]) -> str:
    from medimg.errors import did_you_mean

    return did_you_mean(name, columns)


def model_study(
    table: FeatureTable,
    out_dir: str | Path,
    *,
    model: str = "logistic",
    imbalance: str = "none",
    tune_method: str = "none",
    selection: Sequence[str] = (),
    impute: str = "none",
    folds: int = 5,
    inner_folds: int = 3,
    n_trials: int = 20,
    seed: int = 0,
    n_bootstrap: int = 2000,
    positive_label: Any = None,
    manifest: Any = None,
) -> dict[str, Any]:
    """Cross-validate, write the predictions, metrics, ROC plot and refitted model into
    ``out_dir`` (created atomically; it must not exist or be empty). Returns the metrics record."""
    from medimg.core.files import atomic_dir
    from medimg.core.provenance import jsonable
    from medimg.evaluation.classification import binary_metrics
    from medimg.io.tables import write_table
    from medimg.ml.models import fit_pipeline, save_pipeline
    from medimg.ml.plots import plot_roc
    from medimg.ml.validation import cross_validate

    common = {"model": model, "impute": impute, "selection": tuple(selection), "imbalance": imbalance,
              "tune_method": tune_method, "inner_folds": inner_folds, "n_trials": n_trials, "seed": seed,
              "positive_label": positive_label}
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ParameterError(f"{out_dir}: exists and is not an empty folder; choose another -o")
    cv = cross_validate(table.features, table.labels, groups=table.groups, folds=folds, **common)
    fitted = fit_pipeline(table.features, table.labels, groups=table.groups, **common)
    cluster = None if table.groups is None else np.asarray(table.groups.astype(str))
    metrics = binary_metrics(cv.y_true, cv.y_score, cv.y_pred, cluster=cluster, n_bootstrap=n_bootstrap, seed=seed)
    record = {
        "metrics": {k: v.to_dict() for k, v in metrics.items()},
        "cross_validation": cv.to_dict(),
        "bootstrap": {"n_bootstrap": n_bootstrap, "seed": seed, "clustered_by": None if cluster is None else "group",
                      "note": "CIs from the out-of-fold predictions; resampling whole groups when groups repeat"},
        "model": {"path": "model/model.joblib", "best_params": fitted.config["best_params"],
                  "data_sha256": fitted.config["data_sha256"]},
    }
    rows = table.carried.reset_index(drop=True).to_dict(orient="records")
    for i, row in enumerate(rows):
        row.update(y_true=int(cv.y_true[i]), y_score=float(cv.y_score[i]), y_pred=int(cv.y_pred[i]),
                   fold=int(cv.fold[i]))
    with atomic_dir(out_dir) as tmp:
        write_table(rows, tmp / "predictions.csv")
        (tmp / "metrics.json").write_text(json.dumps(jsonable(record), indent=2, allow_nan=False) + "\n")
        auc = metrics.get("auc")
        plot_roc(cv.y_true, cv.y_score, tmp / "roc.png", fold=cv.fold, title=f"{cv.settings['model']}, "
                 f"{folds}-fold{' nested' if tune_method != 'none' else ''} CV",
                 auc_text=f"AUC {auc}" if auc is not None else "")
        save_pipeline(fitted, tmp / "model")
        if manifest is not None:
            manifest.parameters.update(jsonable({**common, "folds": folds, "n_bootstrap": n_bootstrap}))
            manifest.seed = seed
            for name in ("predictions.csv", "metrics.json", "roc.png", "model/model.joblib", "model/model.json"):
                manifest.add_output(tmp / name, name=name)
            for row in manifest.outputs:
                row["path"] = str(out_dir / row.pop("name"))
            manifest.write(tmp / "manifest.json")
    return record
