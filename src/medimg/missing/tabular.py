"""Tabular imputation as scikit-learn transformers, to be fitted inside cross-validation folds.

:func:`make_imputer` returns an *unfitted* transformer; put it first in a scikit-learn
``Pipeline`` so that ``cross_validate`` / ``cross_val_predict`` / ``GridSearchCV`` fit it on the
training folds only (the statistics of a validation fold never reach the imputer). Fitting an
imputer on the whole table before splitting leaks the validation folds' values into training.
"""

from __future__ import annotations

from typing import Any, Literal

from medimg.core.optional import require
from medimg.errors import ParameterError

__all__ = ["IMPUTERS", "make_imputer", "imputation_pipeline"]

#: Imputation methods of :func:`make_imputer`.
IMPUTERS: tuple[str, ...] = ("mean", "median", "knn", "iterative")

ImputerName = Literal["mean", "median", "knn", "iterative"]


def make_imputer(
    method: ImputerName,
    *,
    seed: int = 0,
    n_neighbors: int = 5,
    max_iter: int = 10,
    add_indicator: bool = False,
) -> Any:
    """An unfitted scikit-learn imputer for ``NaN`` entries of a numeric feature table.

    Parameters
    ----------
    method
        ``"mean"`` / ``"median"`` (column statistic of the training rows, ``SimpleImputer``),
        ``"knn"`` (mean of the ``n_neighbors`` nearest training rows on the observed columns,
        ``KNNImputer``) or ``"iterative"`` (each column regressed on the others with Bayesian
        ridge, round-robin for ``max_iter`` rounds, ``IterativeImputer``, MICE-like with a single
        imputation).
    seed
        ``random_state`` of the iterative imputer.
    n_neighbors, max_iter
        Settings of the KNN and iterative imputers.
    add_indicator
        Append one 0/1 column per column that had missing values in training (missingness may
        itself be informative).
    """
    require("sklearn", extra="ml")
    if method in ("mean", "median"):
        from sklearn.impute import SimpleImputer

        return SimpleImputer(strategy=method, add_indicator=add_indicator, keep_empty_features=True)
    if method == "knn":
        from sklearn.impute import KNNImputer

        if int(n_neighbors) != n_neighbors or n_neighbors < 1:
            raise ParameterError(f"n_neighbors must be an integer >= 1, got {n_neighbors!r}")
        return KNNImputer(n_neighbors=int(n_neighbors), add_indicator=add_indicator, keep_empty_features=True)
    if method == "iterative":
        from sklearn.experimental import enable_iterative_imputer  # noqa: F401
        from sklearn.impute import IterativeImputer

        if int(max_iter) != max_iter or max_iter < 1:
            raise ParameterError(f"max_iter must be an integer >= 1, got {max_iter!r}")
        return IterativeImputer(max_iter=int(max_iter), random_state=seed, add_indicator=add_indicator,
                                keep_empty_features=True)
    from medimg.errors import UnknownNameError

    raise UnknownNameError("imputation method", str(method), IMPUTERS)


def imputation_pipeline(method: ImputerName, estimator: Any, **imputer_params: Any) -> Any:
    """``Pipeline([("impute", make_imputer(method)), ("model", estimator)])``, unfitted."""
    from sklearn.pipeline import Pipeline

    return Pipeline([("impute", make_imputer(method, **imputer_params)), ("model", estimator)])
