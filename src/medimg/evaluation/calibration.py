"""Calibration of predicted probabilities and choice of a decision threshold.

* :func:`calibration` - Brier score, calibration slope and intercept (logistic recalibration,
  Cox 1958; intercept "calibration-in-the-large" with the slope fixed at 1), the reliability
  curve (mean predicted vs observed fraction per bin); optional bootstrap intervals.
* :func:`youden_threshold`, :func:`threshold_for_sensitivity`, :func:`threshold_for_specificity`.

The logistic fits are plain maximum likelihood (Newton-Raphson, no penalty), vectorised over
bootstrap resamples through case weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from medimg.errors import ParameterError

__all__ = [
    "Calibration",
    "calibration",
    "reliability_curve",
    "ThresholdChoice",
    "youden_threshold",
    "threshold_for_sensitivity",
    "threshold_for_specificity",
]

_EPS = 1e-12


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1 - _EPS)
    return np.log(q) - np.log1p(-q)


def _fit_logistic(x: np.ndarray | None, y: np.ndarray, offset: np.ndarray, w: np.ndarray,
                  iters: int = 50) -> np.ndarray:
    """Weighted ML logistic fit of y ~ a + b*x + offset for each row of weights w (rows, n).

    Returns (rows, 2) [a, b] (b = nan when x is None). Newton-Raphson with the 2x2 (or 1x1)
    Hessian solved in closed form, vectorised over rows.
    """
    rows = w.shape[0]
    a = np.zeros(rows)
    b = np.zeros(rows)
    xx = np.zeros_like(y) if x is None else x
    for _ in range(iters):
        eta = a[:, None] + b[:, None] * xx + offset
        mu = 1.0 / (1.0 + np.exp(-np.clip(eta, -35, 35)))
        r = w * (y - mu)
        wv = w * mu * (1 - mu)
        g0 = r.sum(axis=1)
        h00 = wv.sum(axis=1) + 1e-12
        if x is None:
            da = g0 / h00
            db = np.zeros(rows)
        else:
            g1 = r @ xx
            h01 = wv @ xx
            h11 = wv @ (xx * xx) + 1e-12
            det = h00 * h11 - h01 * h01
            da = (h11 * g0 - h01 * g1) / det
            db = (h00 * g1 - h01 * g0) / det
        a, b = a + da, b + db
        if np.nanmax(np.abs(np.r_[da, db])) < 1e-10:
            break
    return np.column_stack([a, b if x is not None else np.full(rows, np.nan)])


@dataclass(frozen=True)
class Calibration:
    """Calibration of probabilities against outcomes.

    Attributes
    ----------
    brier
        Mean squared difference between probability and outcome (0 = perfect).
    slope
        Slope b of the logistic recalibration logit(P(y=1)) = a + b * logit(p): 1 is ideal,
        < 1 means over-confident (too extreme) predictions.
    intercept
        Calibration-in-the-large: a in logit(P(y=1)) = a + logit(p) (slope fixed at 1); 0 is
        ideal, > 0 means the predicted risks are too low on average.
    bin_mean_predicted, bin_observed, bin_count
        The reliability curve: per non-empty bin, the mean probability, the observed fraction
        of positives and the number of cases.
    ci
        Bootstrap intervals ``{"brier": (lo, hi), "slope": ..., "intercept": ...}`` (empty when
        ``n_bootstrap`` was 0).
    """

    brier: float
    slope: float
    intercept: float
    bin_mean_predicted: np.ndarray
    bin_observed: np.ndarray
    bin_count: np.ndarray
    confidence: float = 0.95
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: each of brier/slope/intercept as ``{"value", "ci"}`` plus the curve."""
        def item(name: str) -> dict[str, Any]:
            lo, hi = self.ci.get(name, (math.nan, math.nan))
            fin = lambda v: float(v) if math.isfinite(v) else None  # noqa: E731
            return {"value": fin(getattr(self, name)), "ci": [fin(lo), fin(hi)]}

        return {
            "brier": item("brier"),
            "calibration_slope": item("slope"),
            "calibration_intercept": item("intercept"),
            "reliability": {
                "mean_predicted": self.bin_mean_predicted.tolist(),
                "observed": self.bin_observed.tolist(),
                "count": self.bin_count.tolist(),
            },
        }


def reliability_curve(
    y_true: Any, y_prob: Any, *, n_bins: int = 10, strategy: Literal["uniform", "quantile"] = "uniform"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed fraction of positives vs mean predicted probability per bin.

    Bins are equal-width on [0, 1] (``"uniform"``) or equal-count (``"quantile"``); empty bins are
    dropped. Returns (mean_predicted, observed, count). Matches
    ``sklearn.calibration.calibration_curve`` (which returns the first two).
    """
    y, p = _inputs(y_true, y_prob)
    if int(n_bins) != n_bins or n_bins < 1:
        raise ParameterError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1))
    else:
        raise ParameterError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    idx = np.searchsorted(edges[1:-1], p, side="right")
    count = np.bincount(idx, minlength=len(edges) - 1)
    sum_p = np.bincount(idx, weights=p, minlength=len(edges) - 1)
    sum_y = np.bincount(idx, weights=y.astype(float), minlength=len(edges) - 1)
    keep = count > 0
    return sum_p[keep] / count[keep], sum_y[keep] / count[keep], count[keep]


def _inputs(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    from medimg.evaluation.classification import _as_labels, _as_scores

    y = _as_labels(y_true)
    p = _as_scores(y_prob, y.size, "y_prob")
    if p.min() < 0 or p.max() > 1:
        raise ParameterError("y_prob must be probabilities in [0, 1] for calibration")
    return y, p


def calibration(
    y_true: Any,
    y_prob: Any,
    *,
    n_bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "uniform",
    n_bootstrap: int = 0,
    confidence: float = 0.95,
    cluster: Any = None,
    seed: int = 0,
) -> Calibration:
    """Brier score, calibration slope and intercept, reliability curve of probabilities.

    Parameters
    ----------
    y_true
        1 for positive, 0 for negative.
    y_prob
        Predicted probability of the positive class, in [0, 1] (clipped to [1e-12, 1 - 1e-12]
        for the logit).
    n_bins, strategy
        Reliability-curve bins (see :func:`reliability_curve`).
    n_bootstrap
        Stratified (and, with ``cluster``, clustered) bootstrap resamples for percentile intervals
        of brier, slope and intercept; 0 = none.
    confidence
        Interval level.
    cluster
        Case id per prediction, for a clustered bootstrap.
    seed
        Resampling seed.
    """
    from medimg.evaluation.classification import _as_cluster, _chunk_rows, bootstrap_weights

    y, p = _inputs(y_true, y_prob)
    if y.all() or not y.any():
        raise ParameterError("calibration needs both positive and negative cases")
    yf = y.astype(float)
    lp = _logit(p)
    zero = np.zeros_like(lp)

    def stats(w: np.ndarray) -> np.ndarray:
        brier = (w @ (p - yf) ** 2) / w.sum(axis=1)
        slope = _fit_logistic(lp, yf, zero, w)[:, 1]
        intercept = _fit_logistic(None, yf, lp, w)[:, 0]
        return np.column_stack([brier, slope, intercept])

    point = stats(np.ones((1, y.size)))[0]
    curve = reliability_curve(y, p, n_bins=n_bins, strategy=strategy)
    ci: dict[str, tuple[float, float]] = {}
    if n_bootstrap:
        if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
            raise ParameterError(f"n_bootstrap must be an integer >= 0, got {n_bootstrap!r}")
        rng = np.random.default_rng(seed)
        codes = _as_cluster(cluster, y.size)
        step = _chunk_rows(n_bootstrap, y.size, 1_000_000)
        parts = []
        done = 0
        while done < n_bootstrap:
            rows = min(step, n_bootstrap - done)
            parts.append(stats(bootstrap_weights(y.size, rows, rng, strata=y.astype(np.int64), cluster=codes)))
            done += rows
        boot = np.concatenate(parts)
        a = (1 - confidence) / 2
        for j, name in enumerate(("brier", "slope", "intercept")):
            v = boot[:, j][np.isfinite(boot[:, j])]
            lo, hi = np.quantile(v, [a, 1 - a]) if v.size else (math.nan, math.nan)
            ci[name] = (float(lo), float(hi))
    return Calibration(float(point[0]), float(point[1]), float(point[2]), *curve, confidence, ci)


# ---------------------------------------------------------------------- thresholds
@dataclass(frozen=True)
class ThresholdChoice:
    """A decision threshold (call positive when score >= threshold) and its operating point."""

    threshold: float
    sensitivity: float
    specificity: float
    criterion: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(self.__dict__)


def _operating_points(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from medimg.evaluation.classification import roc_curve

    fpr, tpr, thr = roc_curve(y_true, y_score)
    return thr[1:], tpr[1:], 1.0 - fpr[1:]  # drop the (inf) point that calls nothing positive


def youden_threshold(y_true: Any, y_score: Any) -> ThresholdChoice:
    """The threshold maximising Youden's J = sensitivity + specificity - 1 (first, i.e. highest, on ties)."""
    thr, sens, spec = _operating_points(y_true, y_score)
    j = int(np.argmax(sens + spec))
    return ThresholdChoice(float(thr[j]), float(sens[j]), float(spec[j]), "youden")


def threshold_for_sensitivity(y_true: Any, y_score: Any, sensitivity: float) -> ThresholdChoice:
    """The highest threshold whose sensitivity is >= ``sensitivity`` (so the best specificity there)."""
    if not 0 <= sensitivity <= 1:
        raise ParameterError(f"sensitivity must be in [0, 1], got {sensitivity!r}")
    thr, sens, spec = _operating_points(y_true, y_score)
    j = int(np.flatnonzero(sens >= sensitivity - 1e-12)[0])
    return ThresholdChoice(float(thr[j]), float(sens[j]), float(spec[j]), f"sensitivity>={sensitivity:g}")


def threshold_for_specificity(y_true: Any, y_score: Any, specificity: float) -> ThresholdChoice:
    """The lowest threshold whose specificity is >= ``specificity`` (so the best sensitivity there)."""
    if not 0 <= specificity <= 1:
        raise ParameterError(f"specificity must be in [0, 1], got {specificity!r}")
    thr, sens, spec = _operating_points(y_true, y_score)
    ok = np.flatnonzero(spec >= specificity - 1e-12)
    if ok.size == 0:
        raise ParameterError(f"no threshold reaches specificity {specificity}")
    j = int(ok[-1])
    return ThresholdChoice(float(thr[j]), float(sens[j]), float(spec[j]), f"specificity>={specificity:g}")
