"""Feature-selection transformers (scikit-learn API) that scikit-learn does not ship.

This module imports scikit-learn at the top: import it only inside functions that need it
(:mod:`medimg.ml.pipelines` does), so that ``import medimg.ml`` stays cheap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin, f_classif
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["CorrelationFilter", "MRMRSelector"]


def _abs_corr(x: np.ndarray) -> np.ndarray:
    """|Pearson r| between columns; a constant column has r = 0 with every other."""
    xc = x - x.mean(axis=0)
    norm = np.sqrt((xc**2).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (xc.T @ xc) / np.outer(norm, norm)
    r = np.nan_to_num(r, nan=0.0)
    np.fill_diagonal(r, 1.0)
    return np.abs(r)


class CorrelationFilter(SelectorMixin, BaseEstimator):
    """Drop one feature of every pair whose |Pearson r| exceeds ``threshold`` (fitted on the
    training rows only).

    Features are visited in order of decreasing variance-free relevance (the ANOVA F statistic
    against ``y`` when ``y`` is given, else column order); a feature is kept unless it
    correlates above ``threshold`` with one already kept.
    """

    def __init__(self, threshold: float = 0.9) -> None:
        self.threshold = threshold

    def fit(self, X: Any, y: Any = None) -> CorrelationFilter:
        x = validate_data(self, X, dtype=np.float64)
        r = _abs_corr(x)
        order = np.arange(x.shape[1])
        if y is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                f, _ = f_classif(x, y)
            order = np.argsort(-np.nan_to_num(f, nan=-1.0), kind="stable")
        kept: list[int] = []
        for j in order:
            if all(r[j, k] <= self.threshold for k in kept):
                kept.append(int(j))
        self.support_ = np.zeros(x.shape[1], dtype=bool)
        self.support_[kept] = True
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_


class MRMRSelector(SelectorMixin, BaseEstimator):
    """Minimum-redundancy maximum-relevance selection of ``k`` features (the "FCQ" variant:
    relevance = ANOVA F statistic against the label, redundancy = mean |Pearson r| with the
    features already chosen, score = relevance / redundancy; Ding & Peng 2005, Zhao et al. 2019).

    Greedy: the first feature is the most relevant; each next one maximises the score.
    ``get_support``, ``transform`` and ``get_feature_names_out`` come from scikit-learn's
    ``SelectorMixin``.
    """

    def __init__(self, k: int = 10) -> None:
        self.k = k

    def fit(self, X: Any, y: Any) -> MRMRSelector:
        x = validate_data(self, X, dtype=np.float64)
        k = min(int(self.k), x.shape[1])
        with np.errstate(divide="ignore", invalid="ignore"):
            f, _ = f_classif(x, y)
        relevance = np.nan_to_num(f, nan=0.0)
        r = _abs_corr(x)
        chosen = [int(np.argmax(relevance))]
        redundancy_sum = r[:, chosen[0]].copy()
        while len(chosen) < k:
            redundancy = np.maximum(redundancy_sum / len(chosen), 1e-12)
            score = relevance / redundancy
            score[chosen] = -np.inf
            nxt = int(np.argmax(score))
            chosen.append(nxt)
            redundancy_sum += r[:, nxt]
        self.ranking_ = np.asarray(chosen)
        self.support_ = np.zeros(x.shape[1], dtype=bool)
        self.support_[chosen] = True
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_
