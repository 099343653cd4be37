"""Model pipelines on feature tables: imputation, scaling, feature selection, class-imbalance
handling and a classifier, as one imbalanced-learn ``Pipeline``.

Everything that learns from data — the imputer, the scaler, the selectors, SMOTE/ADASYN and
the classifier — is a step of the one pipeline, so cross-validation fits all of it on the
training rows of each fold only, and a resampler never sees (let alone creates points from)
a validation row. imbalanced-learn's ``Pipeline`` applies a sampler during ``fit`` only; at
prediction time the rows pass through untouched.

Classifiers are registered in ``registry("classifiers")`` (the existing ``logistic`` and
``random_forest`` plus ``svm``, ``gradient_boosting``, ``balanced_random_forest``,
``easy_ensemble`` and ``rusboost``); :func:`build_pipeline` takes the last step of the
registered factory's pipeline and puts it after the shared pre-processing steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from medimg.core.optional import require
from medimg.core.registry import registry
from medimg.errors import ParameterError

__all__ = ["build_pipeline", "SELECTIONS", "IMBALANCE", "IMPUTERS", "MODEL_ALIASES", "SEARCH_SPACES",
           "resolve_model", "svm", "gradient_boosting", "balanced_random_forest", "easy_ensemble", "rusboost"]

_classifiers = registry("classifiers")

#: Feature-selection steps, in the order they are applied when several are asked for.
SELECTIONS = ("variance", "correlation", "mrmr", "lasso")
#: Class-imbalance handling.
IMBALANCE = ("none", "smote", "adasyn", "undersample", "weights")
#: Imputation of missing feature values (fitted on the training rows of each fold).
IMPUTERS = ("none", "mean", "median", "knn")
#: Short names the CLI accepts for registered classifiers.
MODEL_ALIASES = {"rf": "random_forest", "gb": "gradient_boosting", "lr": "logistic",
                 "brf": "balanced_random_forest", "easy": "easy_ensemble"}

#: Tuning search space of each classifier: ``param: ("log", low, high)`` (a float searched on a
#: log scale), ``("int", low, high)`` (inclusive) or ``("choice", [values])``. Keys are
#: pipeline parameter names (the classifier step is ``model``).
SEARCH_SPACES: dict[str, dict[str, tuple[Any, ...]]] = {
    "logistic": {"model__C": ("log", 1e-3, 1e2)},
    "svm": {"model__estimator__C": ("log", 1e-2, 1e2), "model__estimator__gamma": ("log", 1e-4, 1.0)},
    "random_forest": {"model__max_depth": ("int", 2, 12), "model__min_samples_leaf": ("int", 1, 10)},
    "balanced_random_forest": {"model__max_depth": ("int", 2, 12), "model__min_samples_leaf": ("int", 1, 10)},
    "gradient_boosting": {"model__learning_rate": ("log", 0.01, 0.3), "model__max_depth": ("int", 2, 6)},
    "easy_ensemble": {"model__n_estimators": ("int", 5, 30)},
    "rusboost": {"model__learning_rate": ("log", 0.01, 1.0), "model__n_estimators": ("int", 20, 100)},
}

_WEIGHTABLE = {"logistic", "svm", "random_forest", "gradient_boosting"}


def resolve_model(name: str) -> str:
    """The registered classifier name for ``name`` (a registered name or a short alias such as
    ``rf``); :class:`~medimg.errors.UnknownNameError` otherwise."""
    return _classifiers.get(MODEL_ALIASES.get(name, name)).name


# ---------------------------------------------------------------------- more classifiers
@_classifiers.register("svm")
def svm(
    seed: int,
    /,
    *,
    C: float = 1.0,
    gamma: float | Literal["scale", "auto"] = "scale",
    kernel: Literal["rbf", "linear"] = "rbf",
    class_weight: Literal["balanced"] | None = None,
) -> Any:
    """Standardised features + support-vector machine with Platt-scaled probabilities.

    Parameters
    ----------
    seed
        Random seed of the Platt scaling's internal cross-validation.
    C
        Inverse regularisation strength, > 0.
    gamma
        RBF kernel width (1/feature-variance units), or ``"scale"`` / ``"auto"``.
    kernel
        ``"rbf"`` or ``"linear"``.
    class_weight
        ``"balanced"``: each class weighted by its inverse frequency.
    """
    require("sklearn", extra="ml")
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if not C > 0:
        raise ParameterError(f"classifier 'svm': C must be > 0, got {C!r}")
    svc = SVC(C=C, gamma=gamma, kernel=kernel, class_weight=class_weight, random_state=seed)
    # Platt scaling (sigmoid) fitted on a deterministic 5-fold split of the training rows.
    return Pipeline([("scale", StandardScaler()),
                     ("model", CalibratedClassifierCV(svc, method="sigmoid", cv=5, ensemble=False))])


@_classifiers.register("gradient_boosting")
def gradient_boosting(
    seed: int,
    /,
    *,
    learning_rate: float = 0.1,
    max_iter: int = 100,
    max_depth: int | None = 3,
    l2_regularization: float = 0.0,
    class_weight: Literal["balanced"] | None = None,
) -> Any:
    """Histogram gradient-boosted trees (scikit-learn ``HistGradientBoostingClassifier``).

    Parameters
    ----------
    seed
        Random seed.
    learning_rate
        Shrinkage of each tree's contribution, > 0.
    max_iter
        Number of boosting rounds (trees), >= 1.
    max_depth
        Maximum depth of each tree (``None``: unlimited).
    l2_regularization
        L2 penalty on leaf values, >= 0.
    class_weight
        ``"balanced"``: cost-sensitive loss with each class weighted by its inverse frequency.
    """
    require("sklearn", extra="ml")
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    if not learning_rate > 0 or max_iter < 1 or l2_regularization < 0:
        raise ParameterError("classifier 'gradient_boosting': learning_rate must be > 0, max_iter >= 1, "
                             f"l2_regularization >= 0; got {learning_rate!r}, {max_iter!r}, {l2_regularization!r}")
    return Pipeline([("model", HistGradientBoostingClassifier(
        learning_rate=learning_rate, max_iter=max_iter, max_depth=max_depth,
        l2_regularization=l2_regularization, class_weight=class_weight, early_stopping=False,
        random_state=seed))])


@_classifiers.register("balanced_random_forest")
def balanced_random_forest(
    seed: int,
    /,
    *,
    n_estimators: int = 300,
    max_depth: int | None = None,
    min_samples_leaf: int = 1,
) -> Any:
    """Balanced random forest (imbalanced-learn): each tree grows on a bootstrap sample in which
    the majority class is randomly under-sampled to the minority's size (Chen et al. 2004).

    Parameters
    ----------
    seed
        Random seed.
    n_estimators
        Number of trees, >= 1.
    max_depth
        Maximum tree depth (``None``: grow until pure).
    min_samples_leaf
        Minimum samples in a leaf, >= 1.
    """
    require("imblearn", extra="ml")
    from imblearn.ensemble import BalancedRandomForestClassifier
    from sklearn.pipeline import Pipeline

    if n_estimators < 1 or min_samples_leaf < 1:
        raise ParameterError("classifier 'balanced_random_forest': n_estimators and min_samples_leaf must be >= 1")
    return Pipeline([("model", BalancedRandomForestClassifier(
        n_estimators=n_estimators, max_depth=max_depth, min_samples_leaf=min_samples_leaf,
        sampling_strategy="all", replacement=True, bootstrap=False, random_state=seed, n_jobs=1))])


@_classifiers.register("easy_ensemble")
def easy_ensemble(seed: int, /, *, n_estimators: int = 10) -> Any:
    """EasyEnsemble (imbalanced-learn): a bag of AdaBoost learners, each trained on a balanced
    random under-sample of the data (Liu et al. 2009).

    Parameters
    ----------
    seed
        Random seed.
    n_estimators
        Number of balanced subsets (AdaBoost learners), >= 1.
    """
    require("imblearn", extra="ml")
    from imblearn.ensemble import EasyEnsembleClassifier
    from sklearn.pipeline import Pipeline

    if n_estimators < 1:
        raise ParameterError(f"classifier 'easy_ensemble': n_estimators must be >= 1, got {n_estimators!r}")
    return Pipeline([("model", EasyEnsembleClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=1))])


@_classifiers.register("rusboost")
def rusboost(seed: int, /, *, n_estimators: int = 50, learning_rate: float = 1.0) -> Any:
    """RUSBoost (imbalanced-learn): AdaBoost with random under-sampling of the majority class
    before each boosting round (Seiffert et al. 2010).

    Parameters
    ----------
    seed
        Random seed.
    n_estimators
        Boosting rounds, >= 1.
    learning_rate
        Shrinkage of each round, > 0.
    """
    require("imblearn", extra="ml")
    from imblearn.ensemble import RUSBoostClassifier
    from sklearn.pipeline import Pipeline

    if n_estimators < 1 or not learning_rate > 0:
        raise ParameterError("classifier 'rusboost': n_estimators must be >= 1 and learning_rate > 0")
    return Pipeline([("model", RUSBoostClassifier(n_estimators=n_estimators, learning_rate=learning_rate,
                                                  random_state=seed))])


# ---------------------------------------------------------------------- the pipeline
def _selection_steps(selection: Sequence[str], *, n_features: int, seed: int, variance_threshold: float,
                     correlation_threshold: float, k_features: int | None, lasso_C: float) -> list[tuple[str, Any]]:
    from sklearn.feature_selection import SelectFromModel
    from sklearn.linear_model import LogisticRegression

    from medimg.ml._selectors import CorrelationFilter, MRMRSelector

    steps: list[tuple[str, Any]] = []
    for name in selection:
        if name == "correlation":
            steps.append(("correlation", CorrelationFilter(threshold=correlation_threshold)))
        elif name == "mrmr":
            k = k_features if k_features is not None else max(1, min(10, n_features))
            steps.append(("mrmr", MRMRSelector(k=k)))
        elif name == "lasso":
            l1 = LogisticRegression(l1_ratio=1.0, C=lasso_C, solver="liblinear", random_state=seed)
            steps.append(("lasso", SelectFromModel(l1, threshold=1e-10, max_features=k_features)))
    return steps


def build_pipeline(
    model: str = "logistic",
    *,
    seed: int = 0,
    model_params: Mapping[str, Any] | None = None,
    impute: str = "none",
    selection: Sequence[str] = (),
    imbalance: str = "none",
    n_features: int = 10,
    variance_threshold: float = 0.0,
    correlation_threshold: float = 0.9,
    k_features: int | None = None,
    lasso_C: float = 0.1,
    smote_k_neighbors: int = 5,
) -> Any:
    """An unfitted imbalanced-learn ``Pipeline``: [impute] → [variance] → scale → [correlation]
    → [mRMR] → [LASSO] → [resampler] → classifier.

    Parameters
    ----------
    model
        A registered classifier (``registry("classifiers")``) or an alias (``rf``, ``gb``).
    seed
        Random seed of every random step (resampler, classifier, selection).
    model_params
        The classifier's keyword parameters (validated by the registry).
    impute
        ``"none"`` (missing values are an error), ``"mean"``, ``"median"`` or ``"knn"``.
    selection
        Any of ``"variance"`` (drop features of variance <= ``variance_threshold``, in the
        features' own units²), ``"correlation"`` (drop one of each pair with |r| >
        ``correlation_threshold``), ``"mrmr"`` (keep ``k_features``, default min(10, n)) and
        ``"lasso"`` (L1 logistic regression with inverse penalty ``lasso_C`` on standardised
        features; non-zero coefficients kept, at most ``k_features``).
    imbalance
        ``"none"``, ``"smote"``, ``"adasyn"`` (synthetic minority rows made from training rows
        only), ``"undersample"`` (random under-sampling of the majority) or ``"weights"``
        (cost-sensitive: ``class_weight="balanced"``).
    n_features
        Number of input features (caps ``k_features``).
    smote_k_neighbors
        Neighbours SMOTE/ADASYN interpolate between (reduced automatically for tiny minorities
        by the caller).
    """
    require("sklearn", extra="ml")
    require("imblearn", extra="ml")
    from imblearn.pipeline import Pipeline
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.preprocessing import StandardScaler

    name = resolve_model(model)
    entry = _classifiers.get(name)
    params = dict(model_params or {})
    unknown_sel = [s for s in selection if s not in SELECTIONS]
    if unknown_sel:
        raise ParameterError(f"selection: unknown {unknown_sel}; choose from {', '.join(SELECTIONS)}")
    if imbalance not in IMBALANCE:
        raise ParameterError(f"imbalance: unknown {imbalance!r}; choose from {', '.join(IMBALANCE)}")
    if impute not in IMPUTERS:
        raise ParameterError(f"impute: unknown {impute!r}; choose from {', '.join(IMPUTERS)}")
    if imbalance == "weights":
        if name not in _WEIGHTABLE:
            raise ParameterError(f"imbalance 'weights': classifier {name!r} has no class weights; "
                                 f"use one of {', '.join(sorted(_WEIGHTABLE))} or another imbalance method")
        params.setdefault("class_weight", "balanced")
    if k_features is not None and k_features < 1:
        raise ParameterError(f"k_features must be >= 1, got {k_features!r}")
    k = None if k_features is None else min(int(k_features), int(n_features))
    final = entry(seed, **params).steps[-1][1]

    steps: list[tuple[str, Any]] = []
    if impute != "none":
        from sklearn.impute import KNNImputer, SimpleImputer

        steps.append(("impute", KNNImputer() if impute == "knn" else SimpleImputer(strategy=impute)))
    if "variance" in selection:
        steps.append(("variance", VarianceThreshold(threshold=variance_threshold)))
    steps.append(("scale", StandardScaler()))
    steps += _selection_steps([s for s in SELECTIONS if s in selection and s != "variance"],
                              n_features=n_features, seed=seed, variance_threshold=variance_threshold,
                              correlation_threshold=correlation_threshold, k_features=k, lasso_C=lasso_C)
    if imbalance in ("smote", "adasyn"):
        from imblearn.over_sampling import ADASYN, SMOTE

        cls = SMOTE if imbalance == "smote" else ADASYN
        key = "k_neighbors" if imbalance == "smote" else "n_neighbors"
        steps.append(("sampler", cls(random_state=seed, **{key: smote_k_neighbors})))
    elif imbalance == "undersample":
        from imblearn.under_sampling import RandomUnderSampler

        steps.append(("sampler", RandomUnderSampler(random_state=seed)))
    steps.append(("model", final))
    return Pipeline(steps)


def grid_values(spec: tuple[Any, ...], points: int) -> list[Any]:
    """The grid-search values of one search-space entry (``points`` per numeric range)."""
    kind = spec[0]
    if kind == "log":
        return [float(v) for v in np.geomspace(spec[1], spec[2], points)]
    if kind == "int":
        return sorted({int(round(v)) for v in np.linspace(spec[1], spec[2], points)})
    return list(spec[1])
