"""Dimensionality reduction of feature tables: PCA, LDA, t-SNE (and UMAP when installed), with a
plot coloured by label or subgroup.

Features are standardised first (zero mean, unit variance per column) so that no feature
dominates by its units. PCA and t-SNE are unsupervised; LDA uses the labels (with two classes it
has one component, plotted against the first principal component of what LDA leaves).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.optional import require
from medimg.errors import ParameterError

__all__ = ["Embedding", "embed", "REDUCERS"]

REDUCERS = ("pca", "lda", "tsne", "umap")


@dataclass(frozen=True)
class Embedding:
    """2-D coordinates of each case (``points``, rows in input order), the method, the axis names
    and, for PCA, the fraction of the variance each component explains."""

    points: np.ndarray
    method: str
    axis_labels: tuple[str, str]
    explained_variance_ratio: tuple[float, ...] = ()

    def plot(self, colour: Sequence[Any], path: str | Path, *, legend_title: str = "") -> Path:
        """Scatter plot coloured by ``colour`` (one label / subgroup value per case), PNG."""
        from medimg.ml.plots import plot_embedding

        return plot_embedding(self.points, colour, path, title=self.method.upper(), legend_title=legend_title,
                              axis_labels=self.axis_labels)


def embed(features: Any, method: str = "pca", *, labels: Any = None, seed: int = 0,
          perplexity: float = 30.0) -> Embedding:
    """Project the cases of ``features`` (rows) onto 2 dimensions.

    Parameters
    ----------
    features
        DataFrame or 2-D array, finite numeric values.
    method
        ``"pca"``, ``"lda"`` (needs ``labels``), ``"tsne"`` or ``"umap"`` (needs ``umap-learn``).
    labels
        Class of each row (LDA only).
    seed
        Seed of t-SNE / UMAP (PCA and LDA are deterministic).
    perplexity
        t-SNE perplexity (effective number of neighbours), below the number of rows.
    """
    require("sklearn", extra="ml")
    from sklearn.preprocessing import StandardScaler

    from medimg.ml.validation import as_matrix

    if method not in REDUCERS:
        raise ParameterError(f"method: unknown {method!r}; choose from {', '.join(REDUCERS)}")
    x, _ = as_matrix(features)
    if x.shape[0] < 3:
        raise ParameterError(f"embedding needs at least 3 rows, got {x.shape[0]}")
    z = StandardScaler().fit_transform(x)
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, svd_solver="full").fit(z)
        ratio = tuple(float(r) for r in pca.explained_variance_ratio_)
        return Embedding(pca.transform(z), "pca", (f"PC1 ({ratio[0]:.0%})", f"PC2 ({ratio[1]:.0%})"), ratio)
    if method == "lda":
        from sklearn.decomposition import PCA
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        if labels is None:
            raise ParameterError("method 'lda' needs labels")
        y = np.asarray(labels.to_numpy() if hasattr(labels, "to_numpy") else labels)
        if y.shape != (x.shape[0],):
            raise ParameterError(f"labels must hold one value per row ({x.shape[0]})")
        lda = LinearDiscriminantAnalysis().fit(z, y)
        d = lda.transform(z)
        if d.shape[1] >= 2:
            return Embedding(d[:, :2], "lda", ("LD1", "LD2"))
        # Two classes: one discriminant; the second axis is the main direction of what is left.
        w = lda.scalings_[:, 0] / np.linalg.norm(lda.scalings_[:, 0])
        rest = z - np.outer(z @ w, w)
        second = PCA(n_components=1, svd_solver="full").fit_transform(rest)[:, 0]
        return Embedding(np.column_stack([d[:, 0], second]), "lda", ("LD1", "PC1 of the remainder"))
    if method == "tsne":
        from sklearn.manifold import TSNE

        if not 0 < perplexity < x.shape[0]:
            raise ParameterError(f"perplexity must be in (0, {x.shape[0]}), got {perplexity!r}")
        pts = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(z)
        return Embedding(pts, "tsne", ("t-SNE 1", "t-SNE 2"))
    umap = require("umap", extra="ml")
    pts = umap.UMAP(n_components=2, random_state=seed).fit_transform(z)
    return Embedding(np.asarray(pts), "umap", ("UMAP 1", "UMAP 2"))
