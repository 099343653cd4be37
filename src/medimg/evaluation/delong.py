"""DeLong's variance of the ROC AUC: CI for one AUC, test for two correlated AUCs.

DeLong, DeLong & Clarke-Pearson (1988) estimate the covariance of one or more AUCs computed on
the same cases from the *structural components* (placement values) of each positive and each
negative case. The fast algorithm of Sun & Xu (2014, IEEE Signal Processing Letters 21:1389)
obtains them from mid-ranks in O(n log n) per score.

For ``k`` scores on ``m`` positives and ``n`` negatives, with ``T`` the mid-ranks among all cases,
``Tx`` among the positives and ``Ty`` among the negatives:

* AUC_r = (sum of T over positives / m - (m + 1) / 2) / n
* V10_i = (T_i - Tx_i) / n for each positive i (the fraction of negatives it beats, ties 1/2)
* V01_j = 1 - (T_j - Ty_j) / m for each negative j
* S = cov(V10) / m + cov(V01) / n (k x k).

The interval of one AUC is AUC +- z * sqrt(S), clipped to [0, 1] (as pROC's ``ci.auc`` with
``method="delong"``); two AUCs are compared by z = (A1 - A2) / sqrt(S11 + S22 - 2 S12).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from medimg.errors import ParameterError

__all__ = ["DeLongAUC", "DeLongComparison", "delong_components", "delong_auc", "delong_test"]


@dataclass(frozen=True)
class DeLongAUC:
    """One AUC with DeLong's standard error and interval."""

    auc: float
    se: float
    ci: tuple[float, float]
    confidence: float
    n_positive: int
    n_negative: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"value", "ci", "se", ...}``."""
        return {"value": self.auc, "ci": list(self.ci), "se": self.se, "confidence": self.confidence,
                "method": "delong", "n_positive": self.n_positive, "n_negative": self.n_negative}


@dataclass(frozen=True)
class DeLongComparison:
    """Two correlated AUCs (same cases) compared by DeLong's test.

    ``difference`` is ``auc_a - auc_b``; ``ci`` its interval; ``p_value`` two-sided.
    """

    auc_a: float
    auc_b: float
    difference: float
    se: float
    z: float
    p_value: float
    ci: tuple[float, float]
    confidence: float
    correlation: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _midranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1, method="average")


def _prepare(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    from medimg.evaluation.classification import _as_labels, _as_scores

    y = _as_labels(y_true)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.ndim != 2:
        raise ParameterError(f"scores must be 1-D or (k, n), got shape {s.shape}")
    for row in s:
        _as_scores(row, y.size)
    m = int(y.sum())
    if m == 0 or m == y.size:
        raise ParameterError("DeLong needs both positive and negative cases")
    return y, s


def delong_components(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and structural components of ``k`` scores (fast DeLong, Sun & Xu 2014).

    Parameters
    ----------
    y_true
        1 for positive, 0 for negative cases.
    scores
        (n,) or (k, n): each row a score, higher = more likely positive.

    Returns
    -------
    aucs : (k,)
    v10 : (k, m)
        Per positive: fraction of negatives scored lower (ties 1/2).
    v01 : (k, n_neg)
        Per negative: fraction of positives scored higher (ties 1/2).
    """
    y, s = _prepare(y_true, scores)
    pos, neg = s[:, y], s[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    tx = _midranks(pos)
    ty = _midranks(neg)
    tz = _midranks(np.concatenate([pos, neg], axis=1))
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def _covariance(v10: np.ndarray, v01: np.ndarray) -> np.ndarray:
    m, n = v10.shape[1], v01.shape[1]
    sx = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((v10.shape[0],) * 2)
    sy = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((v01.shape[0],) * 2)
    return sx / m + sy / n


def _z(confidence: float) -> float:
    from scipy.stats import norm

    if not 0 < confidence < 1:
        raise ParameterError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(norm.ppf(0.5 + confidence / 2.0))


def delong_auc(y_true: Any, y_score: Any, *, confidence: float = 0.95) -> DeLongAUC:
    """ROC AUC with DeLong's standard error and normal interval (clipped to [0, 1])."""
    z = _z(confidence)
    aucs, v10, v01 = delong_components(y_true, y_score)
    if aucs.size != 1:
        raise ParameterError("delong_auc takes one score; use delong_test for two")
    var = float(_covariance(v10, v01)[0, 0])
    se = math.sqrt(max(var, 0.0))
    auc = float(aucs[0])
    return DeLongAUC(auc, se, (max(0.0, auc - z * se), min(1.0, auc + z * se)), confidence,
                     int(v10.shape[1]), int(v01.shape[1]))


def delong_test(
    y_true: Any, y_score_a: Any, y_score_b: Any, *, confidence: float = 0.95
) -> DeLongComparison:
    """DeLong's test of two correlated AUCs (two scores of the same cases).

    Returns the difference ``auc_a - auc_b`` with its interval and the two-sided p-value of
    H0: equal AUCs. The p-value is 1 when both scores rank the cases identically (variance 0).
    """
    from scipy.stats import norm

    zc = _z(confidence)
    aucs, v10, v01 = delong_components(y_true, np.vstack([np.asarray(y_score_a, float),
                                                          np.asarray(y_score_b, float)]))
    cov = _covariance(v10, v01)
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = float(aucs[0] - aucs[1])
    se = math.sqrt(max(var, 0.0))
    if se > 0:
        z = diff / se
        p = float(2 * norm.sf(abs(z)))
    else:
        z, p = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    denom = math.sqrt(cov[0, 0] * cov[1, 1])
    corr = float(cov[0, 1] / denom) if denom > 0 else math.nan
    return DeLongComparison(float(aucs[0]), float(aucs[1]), diff, se, z, p,
                            (diff - zc * se, diff + zc * se), confidence, corr)
