"""Subgroup audit: metrics per subgroup with CIs, gaps between groups, multiple-comparison flags.

For each audited column (sex, age band, scanner, site, ...) and each of its values, the metrics of
:func:`~medimg.evaluation.classification.binary_metrics` are computed with bootstrap intervals.
Each group is compared with the rest of the data (``versus="rest"``) or with a reference group;
the *gap* (group minus comparator) gets a bootstrap interval from the same resamples.

Resampling is stratified by group and class (each group keeps its size and its numbers of
positives and negatives) and clustered by case id when one is given.

A gap is **flagged** when its interval, widened for multiple comparisons, excludes zero. The
family is every finite gap of the audit (all columns, groups and metrics), ``m`` of them, at
family-wise level ``alpha = 1 - ci``:

* ``"bonferroni"``: every gap's interval is at level ``1 - alpha / m``;
* ``"holm"`` (default): gaps are taken in order of their bootstrap p-value
  (``2 * min(P(gap* <= 0), P(gap* >= 0))``); the k-th (from 0) uses level
  ``1 - alpha / (m - k)``, and flagging stops at the first interval that contains zero (Holm's
  step-down, on the intervals);
* ``"none"``: level ``ci`` for each gap (no correction).

With exactly two groups and ``versus="rest"`` only one gap per metric is reported (the second
value minus the first), since the other is its mirror image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from medimg.errors import ParameterError

__all__ = ["AuditResult", "subgroup_audit", "DEFAULT_AUDIT_METRICS"]

DEFAULT_AUDIT_METRICS: tuple[str, ...] = ("auc", "sensitivity", "specificity")
Correction = Literal["holm", "bonferroni", "none"]


@dataclass
class AuditResult:
    """Result of :func:`subgroup_audit`.

    ``groups`` and ``gaps`` are lists of plain dict rows (see :meth:`group_table` and
    :meth:`gap_table` for DataFrames); ``settings`` records how they were made.
    """

    groups: list[dict[str, Any]]
    gaps: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def group_table(self) -> Any:
        """One row per (column, group, metric): n, n_positive, value, ci_low, ci_high."""
        import pandas as pd

        return pd.DataFrame(self.groups)

    def gap_table(self) -> Any:
        """One row per (column, group, versus, metric): gap, adjusted CI, level, p-value, flagged."""
        import pandas as pd

        cols = ["column", "group", "versus", "metric", "gap", "ci_low", "ci_high", "ci_level",
                "ci_low_unadjusted", "ci_high_unadjusted", "p_value", "flagged"]
        return pd.DataFrame(self.gaps, columns=cols)

    @property
    def flagged(self) -> list[dict[str, Any]]:
        """The flagged gaps."""
        return [g for g in self.gaps if g["flagged"]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"settings", "groups": {column: {value: {metric: {value, ci}}}}, "gaps": [...]}``."""
        fin = lambda v: float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None  # noqa: E731
        groups: dict[str, dict[str, dict[str, Any]]] = {}
        for row in self.groups:
            g = groups.setdefault(row["column"], {}).setdefault(
                str(row["group"]), {"n": row["n"], "n_positive": row["n_positive"], "metrics": {}}
            )
            g["metrics"][row["metric"]] = {"value": fin(row["value"]), "ci": [fin(row["ci_low"]), fin(row["ci_high"])]}
        gaps = [
            {
                "column": r["column"], "group": str(r["group"]), "versus": str(r["versus"]), "metric": r["metric"],
                "gap": fin(r["gap"]), "ci": [fin(r["ci_low"]), fin(r["ci_high"])], "ci_level": fin(r["ci_level"]),
                "ci_unadjusted": [fin(r["ci_low_unadjusted"]), fin(r["ci_high_unadjusted"])],
                "p_value": fin(r["p_value"]), "flagged": bool(r["flagged"]),
            }
            for r in self.gaps
        ]
        return {"settings": self.settings, "groups": groups, "gaps": gaps}

    def plot(self, path: Any) -> Any:
        """Forest plot of the gaps (flagged in red) as PNG; returns the path."""
        from medimg.evaluation.plots import plot_audit

        return plot_audit(self.gap_table(), path)


def _column(frame: Any, name: str | None, what: str) -> np.ndarray | None:
    if name is None:
        return None
    if name not in frame.columns:
        raise ParameterError(f"{what} column {name!r} not found; columns are {list(map(str, frame.columns))}")
    return frame[name].to_numpy()


def _group_labels(values: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """Codes per row and the sorted distinct values (missing values become the group 'missing')."""
    import pandas as pd

    s = pd.Series(values, dtype=object).where(pd.notna(values), "missing")
    uniq = sorted(s.unique(), key=lambda v: (isinstance(v, str), str(v) if isinstance(v, str) else v))
    index = {v: i for i, v in enumerate(uniq)}
    return s.map(index).to_numpy(dtype=np.int64), [v.item() if isinstance(v, np.generic) else v for v in uniq]


def subgroup_audit(
    frame: Any,
    by: str | Sequence[str],
    *,
    y_true: str = "y_true",
    y_score: str | None = "y_score",
    y_pred: str | None = None,
    case_id: str | None = None,
    metrics: Sequence[str] = DEFAULT_AUDIT_METRICS,
    threshold: float = 0.5,
    versus: Literal["rest"] | dict[str, Any] = "rest",
    n_bootstrap: int = 2000,
    ci: float = 0.95,
    correction: Correction = "holm",
    seed: int = 0,
) -> AuditResult:
    """Audit a classifier's metrics across subgroups (see the module docstring for the method).

    Parameters
    ----------
    frame
        pandas DataFrame of predictions, one row per prediction.
    by
        Column name(s) to audit, each separately (e.g. ``["sex", "site"]``).
    y_true, y_score, y_pred
        Column names: outcome 0/1, score (higher = positive), predicted class 0/1 (default:
        ``y_score >= threshold``; a ``y_pred`` column is used when named).
    case_id
        Column of the patient/case id: resampling draws whole cases.
    metrics
        Metric names of :data:`~medimg.evaluation.classification.METRICS`.
    threshold
        Decision threshold on the score when there is no ``y_pred``.
    versus
        ``"rest"`` (each group against all other rows) or ``{column: reference_value}`` (each
        other group of that column against the reference group).
    n_bootstrap
        Resamples (>= 100 needed for meaningful flags; 0 gives values without intervals and
        nothing flagged).
    ci
        Confidence level of the group intervals and family-wise level of the flags.
    correction
        ``"holm"``, ``"bonferroni"`` or ``"none"``.
    seed
        Resampling seed.
    """
    from medimg.evaluation.classification import (
        BinaryData,
        _check_common,
        _chunk_rows,
        _interval,
        _resolve_metrics,
        _weighted_metrics,
        bootstrap_weights,
    )

    _check_common(n_bootstrap, ci, "percentile")
    if correction not in ("holm", "bonferroni", "none"):
        raise ParameterError(f"correction must be 'holm', 'bonferroni' or 'none', got {correction!r}")
    if not hasattr(frame, "columns"):
        raise ParameterError("subgroup_audit takes a pandas DataFrame")
    columns = [by] if isinstance(by, str) else list(by)
    if not columns:
        raise ParameterError("give at least one column to audit (by=...)")
    data = BinaryData.from_arrays(
        _column(frame, y_true, "y_true"),
        _column(frame, y_score, "y_score"),
        _column(frame, y_pred, "y_pred"),
        threshold=threshold,
        cluster=_column(frame, case_id, "case id"),
    )
    names = _resolve_metrics(metrics, data.available())
    if isinstance(versus, dict):
        for col in versus:
            if col not in columns:
                raise ParameterError(f"versus names column {col!r}, which is not audited ({columns})")
    elif versus != "rest":
        raise ParameterError(f"versus must be 'rest' or {{column: reference value}}, got {versus!r}")

    alpha = 1.0 - ci
    rng = np.random.default_rng(seed)
    group_rows: list[dict[str, Any]] = []
    gap_rows: list[dict[str, Any]] = []
    gap_boot: list[np.ndarray] = []
    for col in columns:
        codes_in, values = _group_labels(_column(frame, col, "subgroup"))
        codes = codes_in[data.order]
        n_groups = len(values)
        subs = [data.subset(codes == g) for g in range(n_groups)]
        if isinstance(versus, dict) and col in versus:
            ref = versus[col]
            matches = [i for i, v in enumerate(values) if v == ref or str(v) == str(ref)]
            if not matches:
                raise ParameterError(f"reference value {ref!r} is not a value of column {col!r}: {values[:10]}")
            pairs = [(g, matches[0]) for g in range(n_groups) if g != matches[0]]
        elif n_groups == 2:
            pairs = [(1, 0)]  # the mirror image (0 vs 1) would be the same comparison
        elif n_groups > 2:
            pairs = [(g, -1) for g in range(n_groups)]  # -1: the rest of the data
        else:
            pairs = []
        rest = {g: data.subset(codes != g) for g, c in pairs if c == -1}
        # point estimates
        point = [_weighted_metrics(s, np.ones((1, s.n)), names) for s, _ in subs]

        # bootstrap: stratified by group and class
        boot_group = {g: {m: [] for m in names} for g in range(n_groups)}
        boot_comp = {(g, c): {m: [] for m in names} for g, c in pairs}
        strata = codes * 2 + data.y.astype(np.int64)
        step = _chunk_rows(n_bootstrap, data.n)
        done = 0
        while done < n_bootstrap:
            rows = min(step, n_bootstrap - done)
            w = bootstrap_weights(data.n, rows, rng, strata=strata, cluster=data.cluster)
            for g, (s, cols) in enumerate(subs):
                for m, v in _weighted_metrics(s, w[:, cols], names).items():
                    boot_group[g][m].append(v)
            for g, c in pairs:
                if c >= 0:
                    continue  # a group comparator: reuse the group's resamples
                s, cols = rest[g]
                for m, v in _weighted_metrics(s, w[:, cols], names).items():
                    boot_comp[(g, c)][m].append(v)
            done += rows
        bg = {g: {m: np.concatenate(v) if v else np.empty(0) for m, v in d.items()} for g, d in boot_group.items()}
        for g, (s, _) in enumerate(subs):
            for m in names:
                theta = float(point[g][m][0])
                lo, hi = _interval(bg[g][m], theta, None, ci, "percentile") if n_bootstrap else (math.nan, math.nan)
                group_rows.append({
                    "column": col, "group": values[g], "n": s.n, "n_positive": int(s.y.sum()),
                    "metric": m, "value": theta, "ci_low": lo, "ci_high": hi,
                })
        for g, c in pairs:
            if c >= 0:
                comp_point = point[c]
                comp_boot = bg[c]
                versus_label = values[c]
            else:
                s, _ = rest[g]
                comp_point = _weighted_metrics(s, np.ones((1, s.n)), names)
                comp_boot = {m: np.concatenate(v) if v else np.empty(0) for m, v in boot_comp[(g, c)].items()}
                versus_label = "rest"
            for m in names:
                gap = float(point[g][m][0] - comp_point[m][0])
                b = bg[g][m] - comp_boot[m] if n_bootstrap else np.empty(0)
                gap_rows.append({"column": col, "group": values[g], "versus": versus_label, "metric": m, "gap": gap})
                gap_boot.append(b)

    # multiple-comparison correction on the interval level
    finite = [i for i, r in enumerate(gap_rows) if math.isfinite(r["gap"]) and np.isfinite(gap_boot[i]).sum() > 0]
    m_tests = len(finite)
    for i, r in enumerate(gap_rows):
        b = gap_boot[i][np.isfinite(gap_boot[i])]
        if b.size:
            p = min(1.0, 2.0 * min((b <= 0).mean(), (b >= 0).mean()))
            lo, hi = _interval(b, r["gap"], None, ci, "percentile")
        else:
            p, lo, hi = math.nan, math.nan, math.nan
        r.update(p_value=p, ci_low_unadjusted=lo, ci_high_unadjusted=hi, ci_low=math.nan, ci_high=math.nan,
                 ci_level=math.nan, flagged=False)
    if correction == "holm":
        order = sorted(finite, key=lambda i: gap_rows[i]["p_value"])
        still = True
        for k, i in enumerate(order):
            level = 1.0 - alpha / (m_tests - k)
            lo, hi = _interval(gap_boot[i], gap_rows[i]["gap"], None, level, "percentile")
            excludes = lo > 0 or hi < 0
            still = still and excludes
            gap_rows[i].update(ci_low=lo, ci_high=hi, ci_level=level, flagged=still)
    else:
        level = 1.0 - alpha / m_tests if (correction == "bonferroni" and m_tests) else ci
        for i in finite:
            lo, hi = _interval(gap_boot[i], gap_rows[i]["gap"], None, level, "percentile")
            gap_rows[i].update(ci_low=lo, ci_high=hi, ci_level=level, flagged=bool(lo > 0 or hi < 0))
    settings = {
        "by": columns, "metrics": list(names), "versus": versus if versus == "rest" else dict(versus),
        "n_bootstrap": int(n_bootstrap), "ci": ci, "correction": correction, "n_comparisons": m_tests,
        "family_wise_alpha": round(alpha, 12), "threshold": threshold if y_pred is None else None,
        "clustered_by": case_id, "seed": seed,
        "resampling": "stratified by group and class" + (", clustered by case id" if case_id else ""),
    }
    return AuditResult(group_rows, gap_rows, settings)
