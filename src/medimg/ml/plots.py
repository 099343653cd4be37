"""Plots of model results (PNG, matplotlib with the Agg backend): ROC curves of a
cross-validation, and 2-D embeddings coloured by label or subgroup."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.optional import require

__all__ = ["plot_roc", "plot_embedding"]


def _pyplot() -> Any:
    require("matplotlib", extra="report")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    from medimg.core.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_roc(y_true: np.ndarray, y_score: np.ndarray, path: str | Path, *, fold: np.ndarray | None = None,
             title: str = "", auc_text: str = "") -> Path:
    """ROC curve of the pooled out-of-fold scores (bold) and of each fold (thin), written as PNG."""
    from medimg.evaluation.classification import roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    if fold is not None:
        for k in np.unique(fold):
            sel = fold == k
            if 0 < y_true[sel].sum() < sel.sum():
                fpr, tpr, _ = roc_curve(y_true[sel], y_score[sel])
                ax.plot(fpr, tpr, lw=0.8, alpha=0.5, label=f"fold {int(k)}")
    fpr, tpr, _ = roc_curve(y_true, y_score)
    ax.plot(fpr, tpr, lw=2.2, color="k", label=f"pooled {auc_text}".strip())
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set(xlabel="1 - specificity (false-positive rate)", ylabel="sensitivity (true-positive rate)",
           xlim=(0, 1), ylim=(0, 1.01), title=title or "ROC (out-of-fold)")
    ax.legend(loc="lower right", fontsize=7)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_embedding(points: np.ndarray, colour: Sequence[Any], path: str | Path, *, title: str = "",
                   legend_title: str = "", axis_labels: tuple[str, str] = ("component 1", "component 2")) -> Path:
    """Scatter plot of 2-D ``points`` (rows = cases) coloured by ``colour`` (a label or subgroup
    value per case; categories get distinct colours, a numeric column with many values a colour
    bar), written as PNG."""
    plt = _pyplot()
    values = np.asarray(colour)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    numeric = values.dtype.kind in "if" and np.unique(values).size > 10
    if numeric:
        sc = ax.scatter(points[:, 0], points[:, 1], c=values, s=14, cmap="viridis")
        fig.colorbar(sc, ax=ax, label=legend_title)
    else:
        for i, v in enumerate(sorted(np.unique(values.astype(str)))):
            sel = values.astype(str) == v
            ax.scatter(points[sel, 0], points[sel, 1], s=14, color=plt.cm.tab10(i % 10), label=v)
        ax.legend(title=legend_title or None, fontsize=7)
    ax.set(xlabel=axis_labels[0], ylabel=axis_labels[1], title=title)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
