"""Binary classification metrics with bootstrap confidence intervals (vectorised).

Every metric here is computed from *weights*: the point estimate uses weight 1 for each
prediction, a bootstrap resample uses the number of times each prediction was drawn, a jackknife
replicate (for BCa) uses 0 for the left-out case. So one vectorised code path serves the estimate,
all resamples at once (a ``(n_resamples, n)`` weight matrix) and the jackknife, with no Python
loop over resamples:

* confusion-matrix metrics (accuracy, sensitivity, specificity, precision, NPV, F1, balanced
  accuracy) are matrix-vector products of the weights with indicator vectors;
* ROC AUC is the weighted Mann-Whitney statistic, computed after sorting the scores once
  (cumulative sums of negative weights over the sorted order, ties count one half);
* AUC-PR is the average precision (the step-wise area scikit-learn's
  ``average_precision_score`` computes) from cumulative positive/negative weights in descending
  score order.

Resampling (:func:`bootstrap_weights`) is by default *stratified* (positives and negatives are
resampled separately, so every resample keeps the observed class counts) and *clustered* when a
case id is given (whole cases are drawn, so a patient with several lesions or time points counts
as one sampling unit). Intervals are percentile or BCa (bias-corrected and accelerated, with a
leave-one-case-out jackknife for the acceleration).

All functions take ``y_true`` (1/True = positive) and ``y_score`` (higher = more likely
positive); ``y_pred`` (0/1) defaults to ``y_score >= threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from medimg.errors import ParameterError

__all__ = [
    "METRICS",
    "MetricCI",
    "BinaryData",
    "binary_metrics",
    "bootstrap_ci",
    "bootstrap_weights",
    "confusion_counts",
    "mean_ci",
    "summarize_cases",
    "resample_metrics",
    "jackknife_metrics",
    "plain_bootstrap_auc",
    "roc_auc",
    "average_precision",
    "roc_curve",
    "pr_curve",
]

#: Metric names computed by :func:`binary_metrics`, in report order.
METRICS: tuple[str, ...] = (
    "auc",
    "auc_pr",
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "npv",
    "f1",
    "brier",
)
_SCORE_METRICS = frozenset({"auc", "auc_pr", "brier"})
_ALIASES = {"recall": "sensitivity", "tpr": "sensitivity", "ppv": "precision", "roc_auc": "auc",
            "average_precision": "auc_pr", "tnr": "specificity"}

Method = Literal["percentile", "bca"]


# ---------------------------------------------------------------------- result type
@dataclass(frozen=True)
class MetricCI:
    """A metric's value with its confidence interval.

    Attributes
    ----------
    value
        The estimate on the data as given (NaN when undefined, e.g. sensitivity without
        positives).
    ci
        (low, high) at level ``confidence``; (nan, nan) when no interval was computed
        (``n_bootstrap=0``) or none could be (too few valid resamples).
    confidence
        Level of ``ci``, e.g. 0.95.
    method
        ``"percentile"``, ``"bca"``, ``"delong"`` or ``"none"``.
    n_bootstrap
        Resamples drawn.
    n_used
        Resamples in which the metric was defined (the interval uses these).
    """

    value: float
    ci: tuple[float, float] = (math.nan, math.nan)
    confidence: float = 0.95
    method: str = "none"
    n_bootstrap: int = 0
    n_used: int = 0

    @property
    def low(self) -> float:
        """Lower end of the interval."""
        return self.ci[0]

    @property
    def high(self) -> float:
        """Upper end of the interval."""
        return self.ci[1]

    def to_dict(self) -> dict[str, Any]:
        """``{"value": v, "ci": [low, high]}`` plus the settings; NaN becomes ``None`` (JSON)."""
        return {
            "value": _finite_or_none(self.value),
            "ci": [_finite_or_none(self.ci[0]), _finite_or_none(self.ci[1])],
            "confidence": self.confidence,
            "method": self.method,
            "n_bootstrap": self.n_bootstrap,
            "n_used": self.n_used,
        }

    def __str__(self) -> str:
        lo, hi = self.ci
        if math.isnan(lo):
            return f"{self.value:.3f}"
        return f"{self.value:.3f} ({self.confidence:.0%} CI {lo:.3f}-{hi:.3f})"


def _finite_or_none(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


# ---------------------------------------------------------------------- inputs
def _as_labels(y_true: Any, name: str = "y_true") -> np.ndarray:
    y = np.asarray(y_true.to_numpy() if hasattr(y_true, "to_numpy") else y_true)
    if y.ndim != 1:
        raise ParameterError(f"{name} must be 1-D, got shape {y.shape}")
    if y.dtype == bool:
        return y
    if y.dtype.kind not in "biuf":
        raise ParameterError(f"{name} must be 0/1 (or boolean), got dtype {y.dtype}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ParameterError(f"{name} contains NaN or infinite values")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise ParameterError(
            f"{name} must hold only 0 and 1, found {np.unique(y[bad])[:5].tolist()}"
        )
    return y.astype(bool)


def _as_scores(y_score: Any, n: int, name: str = "y_score") -> np.ndarray:
    s = np.asarray(y_score.to_numpy() if hasattr(y_score, "to_numpy") else y_score)
    if s.ndim != 1:
        raise ParameterError(f"{name} must be 1-D, got shape {s.shape}")
    if s.size != n:
        raise ParameterError(f"{name} has {s.size} values but y_true has {n}; they must match")
    if s.dtype.kind not in "biuf":
        raise ParameterError(f"{name} must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise ParameterError(f"{name} contains {int((~np.isfinite(s)).sum())} NaN or infinite value(s)")
    return s


def _as_cluster(cluster: Any, n: int) -> np.ndarray | None:
    """Integer codes 0..K-1 of the case ids, or None when every case id is unique."""
    if cluster is None:
        return None
    c = np.asarray(cluster.to_numpy() if hasattr(cluster, "to_numpy") else cluster)
    if c.ndim != 1 or c.size != n:
        raise ParameterError(f"cluster must be 1-D with one case id per prediction ({n}), got shape {c.shape}")
    try:
        _, codes = np.unique(c, return_inverse=True)
    except TypeError:  # mixed types: compare as strings
        _, codes = np.unique(c.astype(str), return_inverse=True)
    return codes.reshape(-1).astype(np.int64)


@dataclass(frozen=True)
class BinaryData:
    """Predictions prepared once for weighted metrics: sorted by score, ties grouped.

    Build with :meth:`from_arrays`. ``order`` maps the sorted position to the input index;
    every array below is in sorted (ascending score) order.
    """

    y: np.ndarray  # bool, sorted order
    score: np.ndarray | None  # float, ascending
    pred: np.ndarray | None  # bool
    cluster: np.ndarray | None  # codes 0..K-1, or None (each prediction its own case)
    order: np.ndarray  # input index of each sorted position
    tie_starts: np.ndarray | None  # start of each group of equal scores (None: no ties)

    @classmethod
    def from_arrays(
        cls,
        y_true: Any,
        y_score: Any = None,
        y_pred: Any = None,
        *,
        threshold: float = 0.5,
        cluster: Any = None,
    ) -> BinaryData:
        """Validate and prepare the arrays (see :func:`binary_metrics` for the parameters)."""
        y = _as_labels(y_true)
        n = y.size
        if n == 0:
            raise ParameterError("no predictions (empty input)")
        score = None if y_score is None else _as_scores(y_score, n)
        if y_pred is not None:
            pred = _as_labels(y_pred, "y_pred")
            if pred.size != n:
                raise ParameterError(f"y_pred has {pred.size} values but y_true has {n}; they must match")
        elif score is not None:
            if not math.isfinite(threshold):
                raise ParameterError(f"threshold must be finite, got {threshold!r}")
            pred = score >= threshold
        else:
            pred = None
        if score is None and pred is None:
            raise ParameterError("give y_score or y_pred")
        codes = _as_cluster(cluster, n)
        if codes is not None and codes.max() + 1 == n:
            codes = None  # every case id unique: plain resampling
        if score is not None:
            order = np.argsort(score, kind="stable")
            s = score[order]
            new = np.empty(n, dtype=bool)
            new[0] = True
            np.not_equal(s[1:], s[:-1], out=new[1:])
            starts = np.flatnonzero(new)
            tie_starts = None if starts.size == n else starts
        else:
            order = np.arange(n)
            s = None
            tie_starts = None
        return cls(
            y=y[order],
            score=s,
            pred=None if pred is None else pred[order],
            cluster=None if codes is None else codes[order],
            order=order,
            tie_starts=tie_starts,
        )

    @property
    def n(self) -> int:
        """Number of predictions."""
        return int(self.y.size)

    def subset(self, mask_sorted: np.ndarray) -> tuple[BinaryData, np.ndarray]:
        """The predictions where ``mask_sorted`` (sorted order) holds, and their sorted positions."""
        cols = np.flatnonzero(mask_sorted)
        s = None if self.score is None else self.score[cols]
        tie_starts = None
        if s is not None and s.size:
            new = np.empty(s.size, dtype=bool)
            new[0] = True
            np.not_equal(s[1:], s[:-1], out=new[1:])
            starts = np.flatnonzero(new)
            tie_starts = None if starts.size == s.size else starts
        sub = BinaryData(
            y=self.y[cols],
            score=s,
            pred=None if self.pred is None else self.pred[cols],
            cluster=None if self.cluster is None else self.cluster[cols],
            order=self.order[cols],
            tie_starts=tie_starts,
        )
        return sub, cols

    def available(self) -> tuple[str, ...]:
        """Metric names computable from what was given."""
        names = []
        for m in METRICS:
            if m in _SCORE_METRICS and self.score is None:
                continue
            if m not in _SCORE_METRICS and self.pred is None:
                continue
            if m == "brier" and (self.score is None or self.score.min() < 0 or self.score.max() > 1):
                continue
            names.append(m)
        return tuple(names)


# ---------------------------------------------------------------------- weighted metrics
def _group_sums(w: np.ndarray, starts: np.ndarray | None) -> np.ndarray:
    return w if starts is None else np.add.reduceat(w, starts, axis=1)


def _from_counts(tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, tn: np.ndarray,
                 names: Sequence[str]) -> dict[str, np.ndarray]:
    """Confusion-matrix metrics from (weighted) counts; NaN where a denominator is 0."""
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = tp / (tp + fn)
        spec = tn / (tn + fp)
        metric = {
            "accuracy": lambda: (tp + tn) / (tp + fn + fp + tn),
            "sensitivity": lambda: sens,
            "specificity": lambda: spec,
            "precision": lambda: tp / (tp + fp),
            "npv": lambda: tn / (tn + fn),
            "f1": lambda: 2 * tp / (2 * tp + fp + fn),
            "balanced_accuracy": lambda: (sens + spec) / 2,
        }
        for name in names:
            if name in metric:
                out[name] = metric[name]()
    return out


def _weighted_metrics(data: BinaryData, w: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Each metric for each row of weights ``w`` (rows, n) in sorted order; NaN where undefined."""
    out: dict[str, np.ndarray] = {}
    yf = data.y.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if any(m in names for m in ("auc", "auc_pr")):
            pos_w = w * yf
            p_g = _group_sums(pos_w, data.tie_starts)
            n_g = _group_sums(w, data.tie_starts) - p_g
            p_tot = p_g.sum(axis=1)
            n_tot = n_g.sum(axis=1)
            if "auc" in names:
                neg_below = np.cumsum(n_g, axis=1) - n_g
                s = (p_g * (neg_below + 0.5 * n_g)).sum(axis=1)
                out["auc"] = np.where((p_tot > 0) & (n_tot > 0), s / (p_tot * n_tot), np.nan)
            if "auc_pr" in names:
                tp = np.cumsum(p_g[:, ::-1], axis=1)
                fp = np.cumsum(n_g[:, ::-1], axis=1)
                called = tp + fp
                prec = np.divide(tp, called, out=np.zeros_like(tp), where=called > 0)
                ap = (p_g[:, ::-1] * prec).sum(axis=1)
                out["auc_pr"] = np.where(p_tot > 0, ap / p_tot, np.nan)
        if data.pred is not None:
            y, p = data.y, data.pred
            tp = w @ (y & p).astype(np.float64)
            fn = w @ (y & ~p).astype(np.float64)
            fp = w @ (~y & p).astype(np.float64)
            tn = w @ (~y & ~p).astype(np.float64)
            out.update(_from_counts(tp, fn, fp, tn, names))
        if "brier" in names and data.score is not None:
            sq = (data.score - yf) ** 2
            out["brier"] = (w @ sq) / w.sum(axis=1)
    return out


def confusion_counts(y_true: Any, y_pred: Any) -> dict[str, int]:
    """True/false positives/negatives: ``{"tp", "fp", "tn", "fn"}`` (counts)."""
    y = _as_labels(y_true)
    p = _as_labels(y_pred, "y_pred")
    if p.size != y.size:
        raise ParameterError(f"y_pred has {p.size} values but y_true has {y.size}; they must match")
    return {
        "tp": int((y & p).sum()),
        "fp": int((~y & p).sum()),
        "tn": int((~y & ~p).sum()),
        "fn": int((y & ~p).sum()),
    }


# ---------------------------------------------------------------------- resampling
def _chunk_rows(n_rows: int, n: int, budget: int = 4_000_000) -> int:
    return max(1, min(n_rows, budget // max(n, 1)))


def bootstrap_weights(
    n: int,
    rows: int,
    rng: np.random.Generator,
    *,
    strata: np.ndarray | None = None,
    cluster: np.ndarray | None = None,
) -> np.ndarray:
    """Resample counts, shape (rows, n): how often each of ``n`` items is drawn in each resample.

    Parameters
    ----------
    n
        Number of items (predictions, cases).
    rows
        Number of resamples.
    rng
        Random generator (consumed).
    strata
        Integer stratum of each item (e.g. the class): each stratum is resampled separately with
        its own size, so resample stratum sizes equal the observed ones. For clustered data the
        stratum of a cluster is the largest stratum code among its items.
    cluster
        Integer case code (0..K-1) of each item: whole cases are drawn with replacement and
        every item of a drawn case gets the case's count.

    Notes
    -----
    Without strata and clusters the draws are ``rng.integers(0, n, size=(rows, n))``, the plain
    nonparametric bootstrap.
    """
    if cluster is not None:
        k = int(cluster.max()) + 1
        cstrata = None
        if strata is not None:
            cstrata = np.zeros(k, dtype=np.int64)
            np.maximum.at(cstrata, cluster, strata.astype(np.int64))
        counts = bootstrap_weights(k, rows, rng, strata=cstrata)
        return counts[:, cluster]
    offsets = (np.arange(rows, dtype=np.int64) * n)[:, None]
    if strata is None:
        idx = rng.integers(0, n, size=(rows, n))
    else:
        parts = []
        for s in np.unique(strata):
            members = np.flatnonzero(strata == s)
            parts.append(members[rng.integers(0, members.size, size=(rows, members.size))])
        idx = np.concatenate(parts, axis=1)
    flat = np.bincount((idx + offsets).ravel(), minlength=rows * n)
    return flat.reshape(rows, n).astype(np.float64)


def _jackknife_weights(n: int, cluster: np.ndarray | None, start: int, stop: int) -> np.ndarray:
    """Rows start..stop of the leave-one-case-out weights (each row leaves one case out)."""
    if cluster is None:
        w = np.ones((stop - start, n))
        w[np.arange(stop - start), np.arange(start, stop)] = 0.0
        return w
    return (cluster[None, :] != np.arange(start, stop)[:, None]).astype(np.float64)


def _interval(
    boot: np.ndarray, theta: float, jack: np.ndarray | None, confidence: float, method: Method
) -> tuple[float, float]:
    values = boot[np.isfinite(boot)]
    if values.size == 0 or not math.isfinite(theta):
        return (math.nan, math.nan)
    alpha = (1.0 - confidence) / 2.0
    probs = np.array([alpha, 1.0 - alpha])
    if method == "bca":
        from scipy.special import ndtr, ndtri

        frac = ((values < theta).sum() + (values <= theta).sum()) / (2.0 * values.size)
        z0 = ndtri(frac)
        a = 0.0
        if jack is not None:
            jk = jack[np.isfinite(jack)]
            if jk.size > 2:
                d = jk.mean() - jk
                den = 6.0 * (d**2).sum() ** 1.5
                a = float((d**3).sum() / den) if den > 0 else 0.0
        z = ndtri(probs)
        with np.errstate(divide="ignore", invalid="ignore"):
            probs = ndtr(z0 + (z0 + z) / (1.0 - a * (z0 + z)))
        if not np.isfinite(probs).all():
            return (math.nan, math.nan)
    lo, hi = np.quantile(values, probs)
    return (float(lo), float(hi))


def _check_common(n_bootstrap: int, ci: float, method: str) -> None:
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise ParameterError(f"n_bootstrap must be an integer >= 0, got {n_bootstrap!r}")
    if not 0 < ci < 1:
        raise ParameterError(f"ci (confidence level) must be in (0, 1), got {ci!r}")
    if method not in ("percentile", "bca"):
        raise ParameterError(f"method must be 'percentile' or 'bca', got {method!r}")


def _resolve_metrics(metrics: Sequence[str] | None, available: Sequence[str]) -> tuple[str, ...]:
    if metrics is None:
        return tuple(available)
    names = []
    for m in metrics:
        m2 = _ALIASES.get(m, m)
        if m2 not in METRICS:
            from medimg.errors import UnknownNameError

            raise UnknownNameError("metric", m, METRICS + tuple(_ALIASES))
        if m2 not in available:
            raise ParameterError(
                f"metric {m!r} needs {'y_score' if m2 in _SCORE_METRICS else 'y_pred or y_score'}"
                + (" with values in [0, 1]" if m2 == "brier" else "")
            )
        names.append(m2)
    return tuple(dict.fromkeys(names))


def resample_metrics(
    data: BinaryData,
    names: Sequence[str],
    *,
    n_bootstrap: int,
    seed: int | np.random.Generator,
    stratified: bool = True,
) -> dict[str, np.ndarray]:
    """The metrics ``names`` on ``n_bootstrap`` resamples of ``data``: name -> array (n_bootstrap,)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = data.n
    groups = n if data.cluster is None else int(data.cluster.max()) + 1
    step = _chunk_rows(n_bootstrap, max(n, groups))
    strata = data.y.astype(np.int64) if stratified else None
    pieces: dict[str, list[np.ndarray]] = {m: [] for m in names}
    done = 0
    while done < n_bootstrap:
        rows = min(step, n_bootstrap - done)
        w = bootstrap_weights(n, rows, rng, strata=strata, cluster=data.cluster)
        for m, v in _weighted_metrics(data, w, names).items():
            pieces[m].append(v)
        done += rows
    return {m: np.concatenate(v) if v else np.empty(0) for m, v in pieces.items()}


def jackknife_metrics(data: BinaryData, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Leave-one-case-out values of each metric (one per case; for the BCa acceleration).

    Without clusters, AUC (from DeLong's structural components), the confusion-matrix metrics and
    the Brier score have closed forms (O(n)); the others (and clustered data) are recomputed with
    leave-one-case-out weights, in chunks.
    """
    n = data.n
    out: dict[str, np.ndarray] = {}
    generic = list(names)
    if data.cluster is None:
        yb = data.y
        if "auc" in names and data.score is not None and 0 < yb.sum() < n:
            from medimg.evaluation.delong import delong_components

            m_pos, m_neg = int(yb.sum()), int(n - yb.sum())
            aucs, v10, v01 = delong_components(yb, data.score)
            a = float(aucs[0])
            jack = np.empty(n)
            with np.errstate(divide="ignore", invalid="ignore"):
                jack[yb] = (m_pos * a - v10[0]) / (m_pos - 1) if m_pos > 1 else np.nan
                jack[~yb] = (m_neg * a - v01[0]) / (m_neg - 1) if m_neg > 1 else np.nan
            out["auc"] = jack
            generic.remove("auc")
        conf = [m for m in generic if m in ("accuracy", "sensitivity", "specificity", "precision", "npv",
                                            "f1", "balanced_accuracy")]
        if conf and data.pred is not None:
            p = data.pred
            cells = [(yb & p), (yb & ~p), (~yb & p), (~yb & ~p)]
            totals = [float(c.sum()) for c in cells]
            tp, fn, fp, tn = (t - c.astype(np.float64) for t, c in zip(totals, cells, strict=True))
            out.update(_from_counts(tp, fn, fp, tn, conf))
            generic = [m for m in generic if m not in conf]
        if "brier" in generic and data.score is not None:
            sq = (data.score - yb.astype(np.float64)) ** 2
            out["brier"] = (sq.sum() - sq) / (n - 1) if n > 1 else np.full(n, np.nan)
            generic.remove("brier")
    if generic:
        k = n if data.cluster is None else int(data.cluster.max()) + 1
        step = _chunk_rows(k, n)
        pieces: dict[str, list[np.ndarray]] = {m: [] for m in generic}
        for start in range(0, k, step):
            w = _jackknife_weights(n, data.cluster, start, min(k, start + step))
            for m, v in _weighted_metrics(data, w, generic).items():
                pieces[m].append(v)
        out.update({m: np.concatenate(v) for m, v in pieces.items()})
    return out


def plain_bootstrap_auc(
    data: BinaryData, n_bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    """AUCs of plain (unstratified, unclustered) resamples, indices drawn in input order.

    The draws are ``rng.integers(0, n, size=(rows, n))`` row by row, so a resample is
    ``y[idx], score[idx]`` of the same stream; NaN for a resample with one class only.
    """
    n = data.n
    inv = np.empty(n, dtype=np.int64)
    inv[data.order] = np.arange(n)
    step = _chunk_rows(n_bootstrap, n, 2_000_000)
    out = []
    done = 0
    while done < n_bootstrap:
        rows = min(step, n_bootstrap - done)
        idx = inv[rng.integers(0, n, size=(rows, n))]
        offsets = (np.arange(rows, dtype=np.int64) * n)[:, None]
        w = np.bincount((idx + offsets).ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
        out.append(_weighted_metrics(data, w, ("auc",))["auc"])
        done += rows
    return np.concatenate(out) if out else np.empty(0)


# ---------------------------------------------------------------------- public API
def binary_metrics(
    y_true: Any,
    y_score: Any = None,
    y_pred: Any = None,
    *,
    threshold: float = 0.5,
    metrics: Sequence[str] | None = None,
    cluster: Any = None,
    n_bootstrap: int = 2000,
    ci: float = 0.95,
    method: Method = "percentile",
    stratified: bool = True,
    seed: int = 0,
) -> dict[str, MetricCI]:
    """Classification metrics, each with a bootstrap confidence interval.

    Parameters
    ----------
    y_true
        1 (or True) for positive cases, 0 for negative.
    y_score
        Scores, higher = more likely positive (probabilities for the Brier score); needed for
        ``auc``, ``auc_pr`` and ``brier``.
    y_pred
        Predicted class (0/1); default ``y_score >= threshold``.
    threshold
        Decision threshold on ``y_score`` when ``y_pred`` is not given.
    metrics
        Names from :data:`METRICS` (aliases ``recall``, ``ppv``, ``roc_auc``,
        ``average_precision``); default all that the inputs allow (``brier`` only for scores in
        [0, 1]).
    cluster
        Case (patient) id of each prediction: resampling draws whole cases. Ignored when every id
        is unique.
    n_bootstrap
        Resamples; 0 returns the values without intervals (``ci`` = (nan, nan)).
    ci
        Confidence level in (0, 1).
    method
        ``"percentile"`` or ``"bca"`` (bias-corrected and accelerated; the acceleration comes from
        a leave-one-case-out jackknife, which costs about as much as ``n`` resamples).
    stratified
        Resample positives and negatives separately (for clusters: cases with any positive and
        cases without), keeping the class balance of the data.
    seed
        Seed of the resampling: the result is a function of the inputs and the seed.

    Returns
    -------
    dict[str, MetricCI]
        Metric name -> value and interval, in :data:`METRICS` order.
    """
    _check_common(n_bootstrap, ci, method)
    data = BinaryData.from_arrays(y_true, y_score, y_pred, threshold=threshold, cluster=cluster)
    names = _resolve_metrics(metrics, data.available())
    return _metrics_with_ci(
        data, names, n_bootstrap=int(n_bootstrap), ci=ci, method=method, stratified=stratified, seed=seed
    )


def _metrics_with_ci(
    data: BinaryData,
    names: Sequence[str],
    *,
    n_bootstrap: int,
    ci: float,
    method: Method,
    stratified: bool,
    seed: int | np.random.Generator,
) -> dict[str, MetricCI]:
    point = _weighted_metrics(data, np.ones((1, data.n)), names)
    if n_bootstrap == 0:
        return {m: MetricCI(float(point[m][0]), confidence=ci) for m in names}
    boot = resample_metrics(data, names, n_bootstrap=n_bootstrap, seed=seed, stratified=stratified)
    jack = jackknife_metrics(data, names) if method == "bca" else {}
    out = {}
    for m in names:
        theta = float(point[m][0])
        b = boot[m]
        out[m] = MetricCI(
            value=theta,
            ci=_interval(b, theta, jack.get(m), ci, method),
            confidence=ci,
            method=method,
            n_bootstrap=n_bootstrap,
            n_used=int(np.isfinite(b).sum()),
        )
    return out


def bootstrap_ci(
    y_true: Any,
    y_score: Any,
    *,
    metric: str = "auc",
    cluster: Any = None,
    n_bootstrap: int = 2000,
    ci: float = 0.95,
    method: Method = "percentile",
    stratified: bool = True,
    threshold: float = 0.5,
    seed: int = 0,
) -> MetricCI:
    """One metric (default ROC AUC) with its bootstrap interval; see :func:`binary_metrics`."""
    return binary_metrics(
        y_true, y_score, threshold=threshold, metrics=[metric], cluster=cluster,
        n_bootstrap=n_bootstrap, ci=ci, method=method, stratified=stratified, seed=seed,
    )[_ALIASES.get(metric, metric)]


def roc_auc(y_true: Any, y_score: Any) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count one half); NaN with a single class.

    Returns
    -------
    float
        The probability that a random positive scores above a random negative.
    """
    data = BinaryData.from_arrays(y_true, y_score, threshold=0.0)
    return float(_weighted_metrics(data, np.ones((1, data.n)), ("auc",))["auc"][0])


def average_precision(y_true: Any, y_score: Any) -> float:
    """Area under the precision-recall curve as average precision (scikit-learn's definition)."""
    data = BinaryData.from_arrays(y_true, y_score, threshold=0.0)
    return float(_weighted_metrics(data, np.ones((1, data.n)), ("auc_pr",))["auc_pr"][0])


def roc_curve(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve at every distinct score: (fpr, tpr, thresholds), thresholds descending.

    The first point is (0, 0) with threshold +inf; a case is called positive when its score is
    >= the threshold (as ``sklearn.metrics.roc_curve`` with ``drop_intermediate=False``).
    """
    y = _as_labels(y_true)
    s = _as_scores(y_score, y.size)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (last + 1) - tps
    p, n = max(tps[-1], 1), max(fps[-1], 1)
    return (np.r_[0.0, fps / n], np.r_[0.0, tps / p], np.r_[np.inf, s[last]])


def pr_curve(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall points at every distinct score: (precision, recall, thresholds), thresholds descending."""
    y = _as_labels(y_true)
    s = _as_scores(y_score, y.size)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y)[last].astype(np.float64)
    called = last + 1.0
    return (tps / called, tps / max(tps[-1], 1), s[last])


def mean_ci(
    values: Any,
    *,
    cluster: Any = None,
    statistic: Literal["mean", "median"] = "mean",
    n_bootstrap: int = 2000,
    ci: float = 0.95,
    method: Method = "percentile",
    seed: int = 0,
) -> MetricCI:
    """Mean (or median) of per-case values with a bootstrap interval across cases.

    For segmentation metrics (Dice, HD95, ... one value per case): NaN values (undefined cases)
    are dropped. ``cluster`` groups values of one patient (drawn together).
    """
    _check_common(n_bootstrap, ci, method)
    v = np.asarray(values, dtype=np.float64).ravel()
    codes = _as_cluster(cluster, v.size)
    keep = np.isfinite(v)
    v = v[keep]
    if codes is not None:
        _, codes = np.unique(codes[keep], return_inverse=True)
        if codes.max(initial=-1) + 1 == v.size:
            codes = None
    if v.size == 0:
        raise ParameterError("mean_ci: no finite values")
    if statistic not in ("mean", "median"):
        raise ParameterError(f"statistic must be 'mean' or 'median', got {statistic!r}")

    def stat(w: np.ndarray) -> np.ndarray:
        if statistic == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                return (w @ v) / w.sum(axis=1)
        order = np.argsort(v)
        ws = w[:, order]
        cum = np.cumsum(ws, axis=1)
        half = cum[:, -1:] / 2.0
        pos = (cum < half).sum(axis=1)  # weighted lower median
        return v[order][np.minimum(pos, v.size - 1)]

    theta = float(stat(np.ones((1, v.size)))[0])
    if n_bootstrap == 0:
        return MetricCI(theta, confidence=ci)
    rng = np.random.default_rng(seed)
    step = _chunk_rows(n_bootstrap, v.size)
    boot = []
    done = 0
    while done < n_bootstrap:
        rows = min(step, n_bootstrap - done)
        boot.append(stat(bootstrap_weights(v.size, rows, rng, cluster=codes)))
        done += rows
    b = np.concatenate(boot)
    jack = None
    if method == "bca":
        k = v.size if codes is None else int(codes.max()) + 1
        jack = np.concatenate(
            [stat(_jackknife_weights(v.size, codes, s0, min(k, s0 + 2000))) for s0 in range(0, k, 2000)]
        )
    return MetricCI(theta, _interval(b, theta, jack, ci, method), ci, method, int(n_bootstrap),
                    int(np.isfinite(b).sum()))


def summarize_cases(
    table: Mapping[str, Any] | Any,
    *,
    columns: Sequence[str] | None = None,
    cluster: Any = None,
    n_bootstrap: int = 2000,
    ci: float = 0.95,
    method: Method = "percentile",
    seed: int = 0,
) -> dict[str, MetricCI]:
    """Mean with bootstrap CI of each numeric column of a per-case table (e.g. Dice, HD95 per case).

    ``table`` is a pandas DataFrame or a mapping column -> values; ``cluster`` may name a column
    (the patient id) or give the ids. The same resamples (same seed) are used for every column.
    """
    cols = list(columns) if columns is not None else [
        str(c) for c in (table.columns if hasattr(table, "columns") else table.keys())
    ]
    if isinstance(cluster, str):
        cols = [c for c in cols if c != cluster]
        cluster = np.asarray(table[cluster])
    out = {}
    for c in cols:
        arr = np.asarray(table[c])
        if arr.dtype.kind not in "biuf":
            continue
        out[c] = mean_ci(arr, cluster=cluster, n_bootstrap=n_bootstrap, ci=ci, method=method, seed=seed)
    return out

