"""Grouped, nested cross-validation of feature-table pipelines, with tuning.

The outer loop splits the rows into ``folds`` test folds with ``StratifiedGroupKFold``: all rows
of one patient (``groups``) fall in the same fold, so no patient is ever in both the training and
the test rows, and the class balance of the folds is kept as far as the groups allow. When
tuning, the hyper-parameters are chosen inside each outer training set only, by an inner grouped
cross-validation (grid, random or Bayesian search), and the chosen pipeline is refitted on the
outer training rows before it predicts the outer test rows. Every step that learns (imputer,
scaler, selectors, SMOTE/ADASYN, classifier) is part of the pipeline and so sees training rows
only. Each row is predicted exactly once, by a model that never saw it or its patient.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medimg.core.optional import require
from medimg.errors import ParameterError

__all__ = ["CrossValidation", "cross_validate", "tune", "make_splitter", "TUNERS", "as_matrix", "as_binary"]

#: Hyper-parameter search methods.
TUNERS = ("none", "grid", "random", "bayes")


@dataclass(frozen=True)
class CrossValidation:
    """Out-of-fold predictions of a (nested, grouped) cross-validation.

    Attributes
    ----------
    y_true
        1 for the positive class, 0 otherwise, in input order.
    y_score
        Out-of-fold probability of the positive class (higher = positive).
    y_pred
        ``y_score >= threshold`` as 0/1.
    fold
        Outer test fold (0-based) of each row.
    groups
        The group (patient) of each row, or ``None`` (each row its own group).
    splits
        (train indices, test indices) of each outer fold.
    best_params
        The hyper-parameters chosen in each outer fold (empty dicts without tuning).
    inner_scores
        The best inner cross-validated AUC of each outer fold (NaN without tuning).
    fold_aucs
        ROC AUC of each outer test fold (NaN where a fold holds one class).
    auc
        ROC AUC of the pooled out-of-fold scores.
    settings
        Every setting that produced the result (model, selection, imbalance, tuning, seed, ...).
    feature_names, classes, positive_label, threshold, seconds
    """

    y_true: np.ndarray
    y_score: np.ndarray
    y_pred: np.ndarray
    fold: np.ndarray
    groups: np.ndarray | None
    splits: tuple[tuple[np.ndarray, np.ndarray], ...]
    best_params: tuple[dict[str, Any], ...]
    inner_scores: tuple[float, ...]
    fold_aucs: tuple[float, ...]
    auc: float
    settings: dict[str, Any]
    feature_names: tuple[str, ...]
    classes: tuple[Any, Any]
    positive_label: Any
    threshold: float
    seconds: float = field(default=float("nan"))

    def to_dict(self) -> dict[str, Any]:
        """The scalar results and settings, JSON-ready (no per-row arrays)."""
        return {"auc": self.auc, "fold_aucs": list(self.fold_aucs), "best_params": list(self.best_params),
                "inner_scores": list(self.inner_scores), "n_samples": int(self.y_true.size),
                "n_positive": int(self.y_true.sum()), "positive_label": _plain(self.positive_label),
                "n_groups": int(np.unique(self.groups).size) if self.groups is not None else int(self.y_true.size),
                "threshold": self.threshold, "settings": self.settings, "feature_names": list(self.feature_names),
                "seconds": self.seconds}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------- inputs
def as_matrix(features: Any, *, allow_missing: bool = False) -> tuple[np.ndarray, tuple[str, ...]]:
    """``features`` (DataFrame or 2-D array) as a float64 matrix and its column names; NaN is an
    error unless ``allow_missing`` (infinite values always are)."""
    if hasattr(features, "columns") and hasattr(features, "to_numpy"):
        names = tuple(str(c) for c in features.columns)
        bad = [str(c) for c, dt in zip(features.columns, features.dtypes, strict=True)
               if getattr(dt, "kind", "O") not in "biuf"]
        if bad:
            raise ParameterError(f"features: columns {bad[:10]} are not numeric; encode or drop them first")
        x = features.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        x = np.asarray(features)
        if x.ndim != 2:
            raise ParameterError(f"features must be 2-D (rows x features), got shape {x.shape}")
        if x.dtype.kind not in "biuf":
            raise ParameterError(f"features must be numeric, got dtype {x.dtype}")
        x = x.astype(np.float64)
        names = tuple(f"x{i}" for i in range(x.shape[1]))
    if x.shape[1] == 0:
        raise ParameterError("features has no columns")
    if np.isinf(x).any():
        cols = [names[j] for j in np.flatnonzero(np.isinf(x).any(axis=0))]
        raise ParameterError(f"features has infinite values in columns {cols[:10]}")
    if not allow_missing and np.isnan(x).any():
        cols = [names[j] for j in np.flatnonzero(np.isnan(x).any(axis=0))]
        raise ParameterError(f"features has {int(np.isnan(x).sum())} missing value(s) in columns {cols[:10]}; "
                             "choose an imputation (impute='median', CLI --impute median) or drop them")
    return x, names


def as_binary(labels: Any, n: int, positive_label: Any = None) -> tuple[np.ndarray, tuple[Any, Any], Any]:
    """Labels as a 0/1 int array (1 = ``positive_label``, default the larger value), the two
    classes and the positive label."""
    values = np.asarray(labels.to_numpy() if hasattr(labels, "to_numpy") else labels)
    if values.ndim != 1 or values.size != n:
        raise ParameterError(f"labels must be 1-D with one value per row ({n}), got shape {values.shape}")
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ParameterError("labels contain missing values; drop the unlabelled rows first")
    classes = np.unique(values)
    if classes.size != 2:
        shown = [_plain(c) for c in classes[:5]]
        raise ParameterError(f"labels must hold exactly two classes, got {classes.size}: {shown}")
    if positive_label is not None and positive_label not in classes:
        try:  # a CLI string '1' for an integer column
            positive_label = type(_plain(classes[0]))(positive_label)
        except (TypeError, ValueError):
            pass
    pos = classes[1] if positive_label is None else positive_label
    if pos not in classes:
        raise ParameterError(f"positive label {positive_label!r} is not a label value; labels are {classes.tolist()}")
    return (values == pos).astype(np.int64), (_plain(classes[0]), _plain(classes[1])), _plain(pos)


# ---------------------------------------------------------------------- splitting
def make_splitter(n_splits: int, *, grouped: bool, seed: int) -> Any:
    """``StratifiedGroupKFold`` (grouped) or ``StratifiedKFold``, shuffled with ``seed``."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if grouped:
        return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)


def _check_folds(y: np.ndarray, groups: np.ndarray | None, folds: int, what: str) -> None:
    if int(folds) != folds or folds < 2:
        raise ParameterError(f"{what} must be an integer >= 2, got {folds!r}")
    if groups is None:
        minority = int(min(y.sum(), y.size - y.sum()))
        if folds > minority:
            raise ParameterError(f"{what}={folds} is more than the rows of the smaller class ({minority})")
        return
    for cls in (0, 1):
        n = np.unique(groups[y == cls]).size
        if folds > n:
            raise ParameterError(f"{what}={folds} is more than the groups (patients) holding class {cls} ({n}); "
                                 "lower the folds")


# ---------------------------------------------------------------------- tuning
def tune(
    pipeline: Any,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None,
    *,
    space: Mapping[str, tuple[Any, ...]],
    method: str,
    inner_folds: int = 3,
    seed: int = 0,
    n_trials: int = 20,
    grid_points: int = 4,
) -> tuple[Any, dict[str, Any], float]:
    """Choose hyper-parameters by an inner (grouped) cross-validated ROC AUC and refit.

    Parameters
    ----------
    pipeline
        The unfitted pipeline.
    x, y, groups
        The rows tuning may see (an outer training set) and their groups (or ``None``).
    space
        Search space (:data:`medimg.ml.pipelines.SEARCH_SPACES` format).
    method
        ``"grid"`` (``grid_points`` values per numeric range), ``"random"`` (``n_trials``
        draws; log-uniform / uniform integers) or ``"bayes"`` (Optuna TPE, ``n_trials`` trials,
        sampler seeded with ``seed``).

    Returns
    -------
    (fitted pipeline, best parameters, best mean inner AUC)
    """
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score

    from medimg.ml.pipelines import grid_values

    inner = make_splitter(inner_folds, grouped=groups is not None, seed=seed)
    fit_kw = {"groups": groups} if groups is not None else {}
    if method in ("grid", "random"):
        if method == "grid":
            grid = {k: grid_values(v, grid_points) for k, v in space.items()}
            search = GridSearchCV(pipeline, grid, scoring="roc_auc", cv=inner, n_jobs=1, error_score=np.nan)
        else:
            from scipy.stats import loguniform, randint

            dists = {k: (loguniform(v[1], v[2]) if v[0] == "log" else randint(v[1], v[2] + 1)
                         if v[0] == "int" else list(v[1])) for k, v in space.items()}
            search = RandomizedSearchCV(pipeline, dists, n_iter=n_trials, scoring="roc_auc", cv=inner, n_jobs=1,
                                        random_state=seed, error_score=np.nan)
        search.fit(x, y, **fit_kw)
        best = {k: _plain(v) for k, v in search.best_params_.items()}
        return search.best_estimator_, best, float(search.best_score_)
    if method != "bayes":
        raise ParameterError(f"tune: unknown method {method!r}; choose from {', '.join(TUNERS)}")
    optuna = require("optuna", extra="ml")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: Any) -> float:
        params: dict[str, Any] = {}
        for k, v in space.items():
            if v[0] == "log":
                params[k] = trial.suggest_float(k, v[1], v[2], log=True)
            elif v[0] == "int":
                params[k] = trial.suggest_int(k, v[1], v[2])
            else:
                params[k] = trial.suggest_categorical(k, list(v[1]))
        candidate = clone(pipeline).set_params(**params)
        scores = cross_val_score(candidate, x, y, groups=groups, cv=inner, scoring="roc_auc", n_jobs=1,
                                 error_score=np.nan)
        score = float(np.nanmean(scores)) if np.isfinite(scores).any() else 0.0
        return score

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    best = dict(study.best_params)
    fitted = clone(pipeline).set_params(**best).fit(x, y)
    return fitted, best, float(study.best_value)


# ---------------------------------------------------------------------- main entry
def cross_validate(
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
    folds: int = 5,
    inner_folds: int = 3,
    n_trials: int = 20,
    grid_points: int = 4,
    seed: int = 0,
    threshold: float = 0.5,
    positive_label: Any = None,
    progress: Callable[[int, int], None] | None = None,
    **pipeline_options: Any,
) -> CrossValidation:
    """Grouped (and, when tuning, nested) cross-validation of a feature-table pipeline.

    Parameters
    ----------
    features
        DataFrame or 2-D array, one row per case (lesion, time point, ...).
    labels
        One binary label per row.
    groups
        One group (patient) id per row, or ``None``: rows are independent. All rows of a group
        go to the same fold, in the outer and the inner splits.
    model, model_params, impute, selection, imbalance, pipeline_options
        The pipeline (:func:`medimg.ml.pipelines.build_pipeline`).
    tune_method
        ``"none"``, ``"grid"``, ``"random"`` or ``"bayes"``: hyper-parameters of the classifier
        (:data:`~medimg.ml.pipelines.SEARCH_SPACES`) chosen by an inner ``inner_folds``-fold
        grouped cross-validation inside each outer training set.
    folds
        Outer folds, from 2 to the number of groups of the smaller class.
    n_trials, grid_points
        Random / Bayesian trials; grid values per numeric range.
    seed
        Seeds the fold splits, the resamplers, the models and the search.
    threshold
        Probability at or above which ``y_pred`` is 1.
    positive_label
        The label value that is positive (default: the larger one).
    progress
        Called as ``progress(done, total)`` after each outer fold.

    Returns
    -------
    CrossValidation
    """
    require("sklearn", extra="ml")
    from medimg.evaluation.classification import roc_auc
    from medimg.ml.pipelines import SEARCH_SPACES, build_pipeline, resolve_model

    t0 = time.perf_counter()
    if tune_method not in TUNERS:
        raise ParameterError(f"tune: unknown method {tune_method!r}; choose from {', '.join(TUNERS)}")
    if int(seed) != seed:
        raise ParameterError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    if not 0 < threshold < 1:
        raise ParameterError(f"threshold must be in (0, 1), got {threshold!r}")
    name = resolve_model(model)
    x, names = as_matrix(features, allow_missing=impute != "none")
    y, classes, pos = as_binary(labels, x.shape[0], positive_label)
    g = None
    if groups is not None:
        g = np.asarray(groups.to_numpy() if hasattr(groups, "to_numpy") else groups)
        if g.shape != (x.shape[0],):
            raise ParameterError(f"groups must hold one value per row ({x.shape[0]}), got shape {g.shape}")
        if g.dtype.kind == "O" and any(v is None or v != v for v in g):
            raise ParameterError("groups contain missing values; every row needs its patient id")
    _check_folds(y, g, folds, "folds")
    if tune_method != "none":
        if int(inner_folds) != inner_folds or inner_folds < 2:
            raise ParameterError(f"inner_folds must be an integer >= 2, got {inner_folds!r}")
        if n_trials < 1 or grid_points < 2:
            raise ParameterError("n_trials must be >= 1 and grid_points >= 2")

    # SMOTE/ADASYN interpolate between k neighbours of the minority class: keep k below the
    # smallest minority count any (inner) training set can have.
    options = dict(pipeline_options)
    if imbalance in ("smote", "adasyn") and "smote_k_neighbors" not in options:
        minority = int(min(y.sum(), y.size - y.sum()))
        train_min = minority * (folds - 1) // folds
        if tune_method != "none":
            train_min = train_min * (inner_folds - 1) // inner_folds
        options["smote_k_neighbors"] = max(1, min(5, train_min - 1))
    template = build_pipeline(name, seed=seed, model_params=model_params, impute=impute, selection=selection,
                              imbalance=imbalance, n_features=x.shape[1], **options)
    space = SEARCH_SPACES.get(name, {})
    if tune_method != "none" and not space:
        raise ParameterError(f"tune: classifier {name!r} has no search space")

    from sklearn.base import clone

    splitter = make_splitter(int(folds), grouped=g is not None, seed=seed)
    score = np.full(y.size, np.nan)
    fold = np.full(y.size, -1, dtype=np.int64)
    splits: list[tuple[np.ndarray, np.ndarray]] = []
    best_params: list[dict[str, Any]] = []
    inner_scores: list[float] = []
    fold_aucs: list[float] = []
    from medimg.core.progress import Steps

    steps = Steps(int(folds), "cross-validation")
    split_iter = splitter.split(x, y, g) if g is not None else splitter.split(x, y)
    for k, (train, test) in enumerate(split_iter):
        if tune_method == "none":
            fitted = clone(template).fit(x[train], y[train])
            best, inner = {}, float("nan")
        else:
            fitted, best, inner = tune(clone(template), x[train], y[train], None if g is None else g[train],
                                       space=space, method=tune_method, inner_folds=int(inner_folds), seed=seed,
                                       n_trials=int(n_trials), grid_points=int(grid_points))
        col = list(fitted.classes_).index(1)
        score[test] = fitted.predict_proba(x[test])[:, col]
        fold[test] = k
        splits.append((train, test))
        best_params.append(best)
        inner_scores.append(inner)
        yt = y[test]
        fold_aucs.append(roc_auc(yt, score[test]) if 0 < yt.sum() < yt.size else float("nan"))
        steps.advance()
        if progress is not None:
            progress(k + 1, int(folds))
    settings = {"model": name, "model_params": dict(model_params or {}), "impute": impute,
                "selection": list(selection), "imbalance": imbalance, "tune": tune_method, "folds": int(folds),
                "inner_folds": int(inner_folds) if tune_method != "none" else None,
                "n_trials": int(n_trials) if tune_method in ("random", "bayes") else None,
                "grid_points": int(grid_points) if tune_method == "grid" else None,
                "seed": seed, "grouped": g is not None, "pipeline_options": options,
                "pipeline": [step for step, _ in template.steps]}
    return CrossValidation(
        y_true=y, y_score=score, y_pred=(score >= threshold).astype(np.int64), fold=fold, groups=g,
        splits=tuple(splits), best_params=tuple(best_params), inner_scores=tuple(inner_scores),
        fold_aucs=tuple(fold_aucs), auc=roc_auc(y, score), settings=settings, feature_names=names,
        classes=classes, positive_label=pos, threshold=float(threshold), seconds=time.perf_counter() - t0)
