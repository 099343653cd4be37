"""Binary classification with cross-validated ROC AUC and a bootstrap confidence interval.

Models are registered by name in ``registry("classifiers")``: a factory takes the random seed
(positional) and keyword-only hyper-parameters, and returns an unfitted scikit-learn estimator
(a ``Pipeline``). :func:`cross_validated_auc` fits one per fold.

scikit-learn is imported inside the functions that need it, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from medimg.core.optional import require
from medimg.core.registry import registry
from medimg.errors import ParameterError

__all__ = ["CVResult", "cross_validated_auc", "roc_auc", "logistic", "random_forest"]

_classifiers = registry("classifiers")


# ---------------------------------------------------------------------- models
@_classifiers.register("logistic")
def logistic(
    seed: int,
    /,
    *,
    C: float = 1.0,
    class_weight: Literal["balanced"] | None = None,
    max_iter: int = 1000,
) -> Any:
    """Standardised features + L2-regularised logistic regression (scikit-learn ``Pipeline``).

    Parameters
    ----------
    seed
        Random seed (``random_state``); the lbfgs solver is deterministic anyway.
    C
        Inverse regularisation strength, > 0 (smaller = stronger L2 penalty on the
        standardised coefficients).
    class_weight
        ``"balanced"`` weights each class by the inverse of its frequency (for imbalanced
        data); ``None`` weights every sample equally.
    max_iter
        Maximum solver iterations.

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``StandardScaler`` then ``LogisticRegression``, unfitted.
    """
    require("sklearn", extra="ml")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if not C > 0:
        raise ParameterError(f"classifier 'logistic': C must be > 0, got {C!r}")
    if max_iter < 1:
        raise ParameterError(f"classifier 'logistic': max_iter must be >= 1, got {max_iter!r}")
    return Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "model",
                LogisticRegression(
                    C=C, class_weight=class_weight, max_iter=max_iter, random_state=seed
                ),
            ),
        ]
    )


@_classifiers.register("random_forest")
def random_forest(
    seed: int,
    /,
    *,
    n_estimators: int = 300,
    max_depth: int | None = None,
    min_samples_leaf: int = 1,
    class_weight: Literal["balanced", "balanced_subsample"] | None = None,
) -> Any:
    """A random forest of decision trees (scikit-learn ``Pipeline`` with one step).

    Parameters
    ----------
    seed
        Random seed (``random_state``): bootstrap samples and feature subsets.
    n_estimators
        Number of trees, >= 1.
    max_depth
        Maximum tree depth; ``None`` grows trees until leaves are pure.
    min_samples_leaf
        Minimum samples in a leaf, >= 1.
    class_weight
        ``"balanced"`` / ``"balanced_subsample"`` reweight classes by inverse frequency (over the
        data / each tree's bootstrap sample); ``None`` weights every sample equally.

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``RandomForestClassifier``, unfitted, single-threaded (so results do not depend on the
        machine).
    """
    require("sklearn", extra="ml")
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    for name, value, least in (
        ("n_estimators", n_estimators, 1),
        ("min_samples_leaf", min_samples_leaf, 1),
        ("max_depth", max_depth if max_depth is not None else 1, 1),
    ):
        if value < least:
            raise ParameterError(
                f"classifier 'random_forest': {name} must be >= {least}, got {value!r}"
            )
    return Pipeline(
        [
            (
                "model",
                RandomForestClassifier(
                    n_estimators=n_estimators,
                    max_depth=max_depth,
                    min_samples_leaf=min_samples_leaf,
                    class_weight=class_weight,
                    random_state=seed,
                    n_jobs=1,
                ),
            )
        ]
    )


# ---------------------------------------------------------------------- result
@dataclass(frozen=True)
class CVResult:
    """Out-of-fold predictions and ROC AUC of a cross-validated binary classifier.

    Attributes
    ----------
    auc
        ROC AUC of the pooled out-of-fold probabilities (all samples, each predicted by the model
        that did not see it).
    ci
        (low, high) percentile-bootstrap confidence interval of ``auc`` at level ``confidence``;
        (nan, nan) when ``n_bootstrap`` is 0.
    confidence
        Level of ``ci`` (0.95).
    fold_aucs
        ROC AUC of each test fold.
    fpr, tpr, thresholds
        ROC curve of the pooled out-of-fold probabilities (``sklearn.metrics.roc_curve``).
    probability
        Out-of-fold probability of the positive class, one per sample, in input order.
    fold
        Test-fold index (0-based) of each sample.
    y
        1 for the positive class, 0 otherwise, in input order.
    classes
        The two label values, sorted; ``positive_label`` is one of them.
    positive_label
        The label value counted as positive.
    model, model_params, n_splits, seed, n_bootstrap
        The settings that produced this result.
    n_bootstrap_used
        Bootstrap resamples that held both classes (the others cannot have an AUC and are
        skipped).
    feature_names
        Column names (a DataFrame's columns, else ``x0, x1, ...``).
    """

    auc: float
    ci: tuple[float, float]
    confidence: float
    fold_aucs: tuple[float, ...]
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    probability: np.ndarray
    fold: np.ndarray
    y: np.ndarray
    classes: tuple[Any, Any]
    positive_label: Any
    model: str
    model_params: Mapping[str, Any]
    n_splits: int
    seed: int
    n_bootstrap: int
    n_bootstrap_used: int
    feature_names: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fold_auc_mean(self) -> float:
        """Mean of the per-fold AUCs."""
        return float(np.mean(self.fold_aucs))

    @property
    def fold_auc_std(self) -> float:
        """Standard deviation (ddof=0) of the per-fold AUCs."""
        return float(np.std(self.fold_aucs))

    def summary(self) -> str:
        """One line, e.g. ``"AUC 0.870 (95% CI 0.801-0.932), 5-fold CV, logistic, n=120"``."""
        lo, hi = self.ci
        return (
            f"AUC {self.auc:.3f} ({self.confidence:.0%} CI {lo:.3f}-{hi:.3f}), "
            f"{self.n_splits}-fold CV, {self.model}, n={self.y.size}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The scalar results and settings (no per-sample arrays), JSON-ready."""
        return {
            "auc": self.auc,
            "ci_low": self.ci[0],
            "ci_high": self.ci[1],
            "confidence": self.confidence,
            "fold_aucs": list(self.fold_aucs),
            "fold_auc_mean": self.fold_auc_mean,
            "fold_auc_std": self.fold_auc_std,
            "n_samples": int(self.y.size),
            "n_positive": int(self.y.sum()),
            "positive_label": _plain(self.positive_label),
            "model": self.model,
            "model_params": dict(self.model_params),
            "n_splits": self.n_splits,
            "seed": self.seed,
            "n_bootstrap": self.n_bootstrap,
            "n_bootstrap_used": self.n_bootstrap_used,
            "feature_names": list(self.feature_names),
        }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------- AUC
# The statistics live in medimg.evaluation; these names stay importable from here.
def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count one half).

    See :func:`medimg.evaluation.classification.roc_auc`.
    """
    from medimg.evaluation.classification import roc_auc as _roc_auc

    return _roc_auc(np.asarray(y).astype(bool), score)


def _bootstrap_ci(
    y: np.ndarray, score: np.ndarray, *, n_bootstrap: int, confidence: float, seed: int
) -> tuple[tuple[float, float], int]:
    """Percentile interval of the AUC over plain bootstrap resamples (vectorised)."""
    from medimg.evaluation.classification import BinaryData, plain_bootstrap_auc

    if n_bootstrap == 0:
        return (float("nan"), float("nan")), 0
    data = BinaryData.from_arrays(np.asarray(y).astype(bool), score, threshold=0.0)
    values = plain_bootstrap_auc(data, n_bootstrap, np.random.default_rng(seed))
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"), float("nan")), 0
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return (float(lo), float(hi)), int(values.size)


# ---------------------------------------------------------------------- inputs
def _as_matrix(features: Any) -> tuple[np.ndarray, tuple[str, ...]]:
    if hasattr(features, "columns") and hasattr(features, "to_numpy"):  # pandas DataFrame
        names = tuple(str(c) for c in features.columns)
        non_numeric = [
            str(c)
            for c, dt in zip(features.columns, features.dtypes, strict=True)
            if getattr(dt, "kind", "O") not in "biuf"
        ]
        if non_numeric:
            msg = f"features: columns {non_numeric} are not numeric; encode or drop them first"
            raise ParameterError(msg)
        x = features.to_numpy(dtype=np.float64)
    else:
        x = np.asarray(features)
        if x.ndim != 2:
            msg = (
                f"features must be 2-D (samples x features), got shape {x.shape}; "
                "use x.reshape(-1, 1) for a single feature"
            )
            raise ParameterError(msg)
        if x.dtype.kind not in "biuf":
            raise ParameterError(f"features must be numeric, got dtype {x.dtype}")
        x = x.astype(np.float64)
        names = tuple(f"x{i}" for i in range(x.shape[1]))
    if x.shape[1] == 0:
        raise ParameterError("features has no columns")
    bad = ~np.isfinite(x)
    if bad.any():
        cols = [names[j] for j in np.flatnonzero(bad.any(axis=0))]
        msg = (
            f"features has {int(bad.sum())} NaN or infinite value(s) in columns {cols[:10]}; "
            "impute or drop them first"
        )
        raise ParameterError(msg)
    return x, names


def _as_binary(labels: Any, n: int, positive_label: Any) -> tuple[np.ndarray, tuple[Any, Any], Any]:
    values = np.asarray(labels.to_numpy() if hasattr(labels, "to_numpy") else labels)
    if values.ndim != 1:
        raise ParameterError(f"labels must be 1-D, got shape {values.shape}")
    if values.size != n:
        msg = f"labels has {values.size} values but features has {n} rows; they must match"
        raise ParameterError(msg)
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ParameterError("labels contain NaN; drop the unlabelled samples first")
    classes = np.unique(values)
    if classes.size != 2:
        msg = (
            f"labels must hold exactly two classes for a binary AUC, got {classes.size}: "
            f"{[_plain(c) for c in classes[:5]]}"
        )
        raise ParameterError(msg)
    pos = classes[1] if positive_label is None else positive_label
    if pos not in classes:
        msg = (
            f"positive_label {positive_label!r} is not a label value; labels are {classes.tolist()}"
        )
        raise ParameterError(msg)
    return values == pos, (_plain(classes[0]), _plain(classes[1])), _plain(pos)


# ---------------------------------------------------------------------- main entry
def cross_validated_auc(
    features: Any,
    labels: Sequence[Any] | np.ndarray,
    *,
    seed: int,
    model: str = "logistic",
    model_params: Mapping[str, Any] | None = None,
    n_splits: int = 5,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    positive_label: Any = None,
) -> CVResult:
    """Stratified K-fold cross-validated ROC AUC of a binary classifier, with a bootstrap CI.

    Each sample is predicted once, by the model fitted on the other folds (scaling is fitted
    inside the folds too, so no test information leaks). The AUC of these pooled out-of-fold
    probabilities is reported with a percentile bootstrap interval (resampling samples with
    replacement, ``n_bootstrap`` times); the per-fold AUCs are reported as well.

    Parameters
    ----------
    features
        2-D numeric array (samples x features) or pandas DataFrame, finite values only.
    labels
        One label per sample (array, list or pandas Series); exactly two distinct values.
        When both ``features`` and ``labels`` are pandas objects their indexes must be equal.
    seed
        Seed of the fold split, the model and the bootstrap: the result is a function of the
        inputs and the seed.
    model
        A name in ``registry("classifiers")``: ``"logistic"`` or ``"random_forest"``.
    model_params
        The model's keyword parameters, e.g. ``{"class_weight": "balanced"}``; validated.
    n_splits
        Number of folds, from 2 to the size of the smaller class.
    n_bootstrap
        Bootstrap resamples for the interval (0 skips it).
    confidence
        Confidence level of the interval, in (0, 1).
    positive_label
        The label value counted as positive; by default the larger of the two (sorted order, as
        scikit-learn does).

    Returns
    -------
    CVResult
        Pooled AUC and its interval, per-fold AUCs, ROC curve and the out-of-fold
        probabilities.

    Raises
    ------
    ParameterError
        Lengths differ, a single class, non-finite features, too few samples for ``n_splits``,
        or an invalid model parameter.
    UnknownNameError
        ``model`` is not registered.
    """
    require("sklearn", extra="ml")
    from sklearn.metrics import roc_auc_score, roc_curve
    from sklearn.model_selection import StratifiedKFold

    entry = _classifiers.get(model)
    params = entry.validate(dict(model_params or {}))
    x, names = _as_matrix(features)
    if (
        hasattr(features, "index")
        and hasattr(labels, "index")
        and not features.index.equals(labels.index)
    ):
        raise ParameterError(
            "features and labels are pandas objects with different indexes; align them first"
        )
    y, classes, pos = _as_binary(labels, x.shape[0], positive_label)
    if int(seed) != seed:
        raise ParameterError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    minority = int(min(y.sum(), (~y).sum()))
    if int(n_splits) != n_splits or n_splits < 2 or n_splits > minority:
        msg = (
            f"n_splits must be an integer from 2 to the size of the smaller class ({minority}), "
            f"got {n_splits!r}"
        )
        raise ParameterError(msg)
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise ParameterError(f"n_bootstrap must be an integer >= 0, got {n_bootstrap!r}")
    if not 0 < confidence < 1:
        raise ParameterError(f"confidence must be in (0, 1), got {confidence!r}")

    splitter = StratifiedKFold(n_splits=int(n_splits), shuffle=True, random_state=seed)
    probability = np.empty(y.size, dtype=np.float64)
    fold = np.empty(y.size, dtype=np.int64)
    fold_aucs: list[float] = []
    y_int = y.astype(np.int64)
    for k, (train, test) in enumerate(splitter.split(x, y_int)):
        estimator = entry.func(seed, **params)
        estimator.fit(x[train], y_int[train])
        col = list(estimator.classes_).index(1)
        probability[test] = estimator.predict_proba(x[test])[:, col]
        fold[test] = k
        fold_aucs.append(float(roc_auc_score(y_int[test], probability[test])))

    auc = float(roc_auc_score(y_int, probability))
    fpr, tpr, thresholds = roc_curve(y_int, probability)
    ci, used = _bootstrap_ci(
        y, probability, n_bootstrap=int(n_bootstrap), confidence=confidence, seed=seed
    )
    return CVResult(
        auc=auc,
        ci=ci,
        confidence=float(confidence),
        fold_aucs=tuple(fold_aucs),
        fpr=fpr,
        tpr=tpr,
        thresholds=thresholds,
        probability=probability,
        fold=fold,
        y=y_int,
        classes=classes,
        positive_label=pos,
        model=model,
        model_params=entry.params(**params).model_dump(),
        n_splits=int(n_splits),
        seed=seed,
        n_bootstrap=int(n_bootstrap),
        n_bootstrap_used=used,
        feature_names=names,
    )
