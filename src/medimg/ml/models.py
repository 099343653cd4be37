"""A feature-table pipeline fitted on all the data, saved with its configuration and loaded
for prediction.

The saved model is two files in one folder: ``model.joblib`` (the fitted scikit-learn /
imbalanced-learn pipeline) and ``model.json`` (the settings, the chosen hyper-parameters, the
feature names, the SHA-256 of the training data, the seed and the package versions). Loading
checks that the JSON describes the joblib file (its SHA-256). A joblib file runs code when
loaded: load only models you made or trust.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.optional import require
from medimg.errors import FileFormatError, ParameterError

__all__ = ["TrainedPipeline", "fit_pipeline", "save_pipeline", "load_pipeline", "data_sha256"]

_FORMAT = "medimg-feature-model"
_VERSIONS = ("medimg", "numpy", "scipy", "scikit-learn", "imbalanced-learn", "optuna", "pandas", "joblib")


def data_sha256(x: np.ndarray, y: np.ndarray, names: Sequence[str], groups: np.ndarray | None = None) -> str:
    """SHA-256 of a training table: feature names, feature values, labels (and groups)."""
    import hashlib

    from medimg.core.provenance import array_sha256

    digest = hashlib.sha256()
    digest.update("\0".join(names).encode())
    digest.update(array_sha256(np.ascontiguousarray(x, dtype=np.float64)).encode())
    digest.update(array_sha256(np.asarray(y, dtype=np.int64)).encode())
    if groups is not None:
        digest.update("\0".join(map(str, groups)).encode())
    return digest.hexdigest()


@dataclass
class TrainedPipeline:
    """A fitted pipeline and its record (``config``: settings, best parameters, feature names,
    positive label, threshold, data hash, seed, package versions)."""

    pipeline: Any
    config: dict[str, Any]

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The feature columns the model expects, in order."""
        return tuple(self.config["feature_names"])

    def predict_proba(self, features: Any) -> np.ndarray:
        """Probability of the positive class for each row of ``features`` (a DataFrame with the
        training columns — extra columns are ignored — or an array with the same columns in
        order)."""
        from medimg.ml.validation import as_matrix

        if hasattr(features, "columns"):
            missing = [c for c in self.feature_names if c not in set(map(str, features.columns))]
            if missing:
                raise ParameterError(f"features lack the model's columns {missing[:10]}")
            features = features[list(self.feature_names)]
        x, _ = as_matrix(features, allow_missing=self.config["settings"].get("impute", "none") != "none")
        if x.shape[1] != len(self.feature_names):
            raise ParameterError(f"features have {x.shape[1]} columns; the model expects {len(self.feature_names)}")
        col = list(self.pipeline.classes_).index(1)
        return self.pipeline.predict_proba(x)[:, col]

    def predict(self, features: Any) -> np.ndarray:
        """0/1 prediction: probability >= the model's threshold."""
        return (self.predict_proba(features) >= float(self.config["threshold"])).astype(np.int64)


def fit_pipeline(
    features: Any,
    labels: Any,
    *,
    groups: Any = None,
    model: str = "logistic",
    model_params: Mapping[str, Any] | None = None,
    impute: str = "none",
    selection: Sequence[str] = (),
    imbalance: str = "none",
    tune_method: str = "none",
    inner_folds: int = 3,
    n_trials: int = 20,
    grid_points: int = 4,
    seed: int = 0,
    threshold: float = 0.5,
    positive_label: Any = None,
    **pipeline_options: Any,
) -> TrainedPipeline:
    """Fit the pipeline on all rows (tuning, if asked, by grouped cross-validation on all rows)
    — the model to use after :func:`~medimg.ml.validation.cross_validate` has estimated how
    well this procedure does. Parameters as for ``cross_validate``."""
    require("sklearn", extra="ml")
    from sklearn.base import clone

    from medimg.core.provenance import package_versions
    from medimg.ml.pipelines import SEARCH_SPACES, build_pipeline, resolve_model
    from medimg.ml.validation import _check_folds, as_binary, as_matrix, tune

    name = resolve_model(model)
    x, names = as_matrix(features, allow_missing=impute != "none")
    y, classes, pos = as_binary(labels, x.shape[0], positive_label)
    g = None if groups is None else np.asarray(groups.to_numpy() if hasattr(groups, "to_numpy") else groups)
    options = dict(pipeline_options)
    if imbalance in ("smote", "adasyn") and "smote_k_neighbors" not in options:
        minority = int(min(y.sum(), y.size - y.sum()))
        if tune_method != "none":
            minority = minority * (inner_folds - 1) // inner_folds
        options["smote_k_neighbors"] = max(1, min(5, minority - 1))
    template = build_pipeline(name, seed=seed, model_params=model_params, impute=impute, selection=selection,
                              imbalance=imbalance, n_features=x.shape[1], **options)
    if tune_method == "none":
        fitted, best, inner = clone(template).fit(x, y), {}, float("nan")
    else:
        _check_folds(y, g, inner_folds, "inner_folds")
        fitted, best, inner = tune(clone(template), x, y, g, space=SEARCH_SPACES[name], method=tune_method,
                                   inner_folds=inner_folds, seed=seed, n_trials=n_trials, grid_points=grid_points)
    config = {
        "format": _FORMAT, "format_version": 1,
        "settings": {"model": name, "model_params": dict(model_params or {}), "impute": impute,
                     "selection": list(selection), "imbalance": imbalance, "tune": tune_method,
                     "inner_folds": inner_folds, "n_trials": n_trials, "grid_points": grid_points,
                     "pipeline_options": options},
        "best_params": best, "inner_auc": inner, "seed": int(seed), "threshold": float(threshold),
        "feature_names": list(names), "classes": list(classes), "positive_label": pos,
        "n_samples": int(y.size), "n_positive": int(y.sum()),
        "data_sha256": data_sha256(x, y, names, g), "pipeline": [s for s, _ in fitted.steps],
        "software": package_versions(_VERSIONS),
    }
    return TrainedPipeline(fitted, config)


def save_pipeline(model: TrainedPipeline, folder: str | Path) -> tuple[Path, Path]:
    """Write ``model.joblib`` and ``model.json`` into ``folder`` (atomically); returns both."""
    import joblib

    from medimg.core.files import atomic_path, sha256_file
    from medimg.core.provenance import jsonable

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_path, config_path = folder / "model.joblib", folder / "model.json"
    with atomic_path(model_path) as tmp:
        joblib.dump(model.pipeline, tmp)
    config = dict(model.config, model_sha256=sha256_file(model_path))
    with atomic_path(config_path) as tmp:
        tmp.write_text(json.dumps(jsonable(config), indent=2, allow_nan=False) + "\n")
    return model_path, config_path


def load_pipeline(folder: str | Path) -> TrainedPipeline:
    """Load a model saved by :func:`save_pipeline` (a folder, or its ``model.json``)."""
    import joblib

    from medimg.core.files import sha256_file

    folder = Path(folder)
    if folder.name == "model.json":
        folder = folder.parent
    config_path, model_path = folder / "model.json", folder / "model.joblib"
    if not config_path.is_file() or not model_path.is_file():
        raise FileFormatError(folder, "no model.json and model.joblib here (write them with `medimg model`)")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise FileFormatError(config_path, f"not readable JSON ({err})") from err
    if not isinstance(config, dict) or config.get("format") != _FORMAT:
        raise FileFormatError(config_path, f"not a medimg feature-model record (format {_FORMAT!r})")
    if sha256_file(model_path) != config.get("model_sha256"):
        raise FileFormatError(model_path, "SHA-256 differs from the one model.json records; the files do not belong together")
    return TrainedPipeline(joblib.load(model_path), config)
