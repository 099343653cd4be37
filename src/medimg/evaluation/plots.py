"""PNG plots of classifier evaluation: ROC, precision-recall, confusion matrix, calibration, audit gaps.

matplotlib is imported inside each function with the non-interactive Agg backend; files are
written atomically (``core.files.atomic_path``). Each function returns the written path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_roc", "plot_pr", "plot_confusion", "plot_calibration", "plot_audit"]


def _pyplot() -> Any:
    from medimg.core.optional import require

    require("matplotlib", extra="report")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    from medimg.core.files import atomic_path

    plt = _pyplot()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return target


def plot_roc(
    y_true: Any, scores: Any, path: str | Path, *, labels: Sequence[str] | None = None,
    title: str = "ROC curve",
) -> Path:
    """ROC curve(s): ``scores`` is one score array or a mapping name -> scores (legend shows AUC)."""
    from medimg.evaluation.classification import roc_auc, roc_curve

    plt = _pyplot()
    series = dict(scores) if isinstance(scores, Mapping) else {(labels or ["model"])[0]: scores}
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, s in series.items():
        fpr, tpr, _ = roc_curve(y_true, s)
        ax.step(fpr, tpr, where="post", label=f"{name} (AUC {roc_auc(y_true, s):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
    ax.set(xlabel="1 - specificity (FPR)", ylabel="sensitivity (TPR)", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_pr(y_true: Any, y_score: Any, path: str | Path, *, title: str = "Precision-recall curve") -> Path:
    """Precision-recall curve with the average precision and the prevalence line."""
    from medimg.evaluation.classification import _as_labels, average_precision, pr_curve

    plt = _pyplot()
    precision, recall, _ = pr_curve(y_true, y_score)
    prevalence = float(_as_labels(y_true).mean())
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.step(np.r_[0, recall], np.r_[precision[0], precision], where="pre",
            label=f"AP {average_precision(y_true, y_score):.3f}")
    ax.axhline(prevalence, ls="--", color="0.6", lw=1, label=f"prevalence {prevalence:.2f}")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def plot_confusion(y_true: Any, y_pred: Any, path: str | Path, *, title: str = "Confusion matrix") -> Path:
    """2x2 confusion matrix (rows truth, columns prediction) with counts and row percentages."""
    from medimg.evaluation.classification import confusion_counts

    plt = _pyplot()
    c = confusion_counts(y_true, y_pred)
    mat = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]], dtype=float)
    rows = mat.sum(axis=1, keepdims=True)
    frac = np.divide(mat, rows, out=np.zeros_like(mat), where=rows > 0)
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{int(mat[i, j])}\n{frac[i, j]:.0%}", ha="center", va="center",
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["pred 0", "pred 1"], yticklabels=["true 0", "true 1"],
           title=title)
    return _save(fig, path)


def plot_calibration(
    y_true: Any, y_prob: Any, path: str | Path, *, n_bins: int = 10, title: str = "Calibration"
) -> Path:
    """Reliability diagram (observed vs predicted per bin, marker size ~ count) with slope/intercept."""
    from medimg.evaluation.calibration import calibration

    plt = _pyplot()
    cal = calibration(y_true, y_prob, n_bins=n_bins)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="ideal")
    size = 20 + 200 * cal.bin_count / max(cal.bin_count.max(), 1)
    ax.plot(cal.bin_mean_predicted, cal.bin_observed, "-", color="C0", lw=1)
    ax.scatter(cal.bin_mean_predicted, cal.bin_observed, s=size, color="C0",
               label=f"slope {cal.slope:.2f}, intercept {cal.intercept:.2f}, Brier {cal.brier:.3f}")
    ax.set(xlabel="mean predicted probability", ylabel="observed fraction positive", xlim=(0, 1),
           ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_audit(gaps: Any, path: str | Path, *, title: str = "Subgroup gaps") -> Path:
    """Forest plot of audit gaps (a DataFrame from :meth:`AuditResult.gap_table`): flagged in red."""
    plt = _pyplot()
    rows = gaps.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(rows) + 1.2))
    ypos = np.arange(len(rows))[::-1]
    for y, (_, r) in zip(ypos, rows.iterrows(), strict=True):
        color = "C3" if r["flagged"] else "C0"
        lo, hi = r["ci_low"], r["ci_high"]
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot([lo, hi], [y, y], color=color, lw=2)
        ax.plot([r["gap"]], [y], "o", color=color)
    ax.axvline(0, color="0.5", lw=1)
    ax.set_yticks(ypos)
    ax.set_yticklabels([f"{r['metric']}: {r['column']}={r['group']} vs {r['versus']}" for _, r in rows.iterrows()],
                       fontsize=7)
    ax.set(xlabel="gap (group - comparator), adjusted CI", title=title)
    return _save(fig, path)
