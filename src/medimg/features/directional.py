r"""Directional texture families: grey level co-occurrence (GLCM, IBSI ``LFYI``) and run length
(GLRLM, ``TP0I``) matrices, with the six IBSI aggregation methods.

Directions are the 13 unique offsets of the 26-neighbourhood (3-D) or the 4 in-plane ones (2-D),
scaled by the Chebyshev ``distance`` for the GLCM. Co-occurrence matrices are symmetric (each
pair counted in both orders). Aggregations: ``2d_avg`` features per slice and direction,
averaged; ``2d_comb`` directions merged per slice, features averaged over slices; ``2_5d_avg``
slices merged per direction, averaged over directions; ``2_5d_comb`` everything in-plane merged;
``3d_avg`` features per 3-D direction, averaged; ``3d_comb`` all 3-D directions merged. Empty
matrices (a slice without pairs) are left out of averages.

GLCM features use :math:`p_{ij}` (normalised matrix), grey-level values :math:`i, j`,
:math:`\mu = \sum_{ij} i\,p_{ij}`, the diagonal and cross-diagonal distributions
:math:`p_{x-y}(k)` (:math:`k = |i-j|`) and :math:`p_{x+y}(k)` (:math:`k = i+j`), and the
marginal :math:`p_x`. Entropies are in bits. Normalised inverse difference and moment divide
:math:`|i-j|` and :math:`(i-j)^2` by :math:`N_g` and :math:`N_g^2`. GLRLM features follow the
IBSI formulas with :math:`N_s` runs and :math:`N_v` voxels (times the number of merged
directions, as every voxel lies on one run per direction).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medimg.errors import ParameterError
from medimg.features._base import DIRECTIONAL, FeatureSpec, feature_family
from medimg.features._texture import (
    DIRECTIONS_3D,
    IN_PLANE,
    run_matrices,
    size_matrix_features,
    texture,
)
from medimg.features.roi import Roi

__all__ = ["GLCM_SPECS", "GLRLM_SPECS", "glcm_features", "glrlm_features", "glcm_matrix_features"]

GLCM_SPECS = tuple(FeatureSpec(n, c, "glcm", i, "LFYI") for n, c, i in (
    ("joint_maximum", "GYBY", "Joint maximum"),
    ("joint_average", "60VM", "Joint average"),
    ("joint_variance", "UR99", "Joint variance"),
    ("joint_entropy", "TU9B", "Joint entropy"),
    ("difference_average", "TF7R", "Difference average"),
    ("difference_variance", "D3YU", "Difference variance"),
    ("difference_entropy", "NTRS", "Difference entropy"),
    ("sum_average", "ZGXS", "Sum average"),
    ("sum_variance", "OEEB", "Sum variance"),
    ("sum_entropy", "P6QZ", "Sum entropy"),
    ("angular_second_moment", "8ZQL", "Angular second moment"),
    ("contrast", "ACUI", "Contrast"),
    ("dissimilarity", "8S9J", "Dissimilarity"),
    ("inverse_difference", "IB1Z", "Inverse difference"),
    ("normalised_inverse_difference", "NDRX", "Normalised inverse difference"),
    ("inverse_difference_moment", "WF0Z", "Inverse difference moment"),
    ("normalised_inverse_difference_moment", "1QCO", "Normalised inverse difference moment"),
    ("inverse_variance", "E8JP", "Inverse variance"),
    ("correlation", "NI2N", "Correlation"),
    ("autocorrelation", "QWB0", "Autocorrelation"),
    ("cluster_tendency", "DG8W", "Cluster tendency"),
    ("cluster_shade", "7NFM", "Cluster shade"),
    ("cluster_prominence", "AE86", "Cluster prominence"),
    ("information_correlation_1", "R8DG", "Information correlation 1"),
    ("information_correlation_2", "JN9H", "Information correlation 2"),
))

#: GLRLM feature (name, IBSI code, IBSI name) and the shared size-matrix feature it is.
_GLRLM_ROWS = (
    ("short_runs_emphasis", "22OV", "Short runs emphasis", "low_j"),
    ("long_runs_emphasis", "W4KF", "Long runs emphasis", "high_j"),
    ("low_grey_level_run_emphasis", "V3SW", "Low grey level run emphasis", "low_i"),
    ("high_grey_level_run_emphasis", "G3QZ", "High grey level run emphasis", "high_i"),
    ("short_run_low_grey_level_emphasis", "HTZT", "Short run low grey level emphasis", "low_j_low_i"),
    ("short_run_high_grey_level_emphasis", "GD3A", "Short run high grey level emphasis", "low_j_high_i"),
    ("long_run_low_grey_level_emphasis", "IVPO", "Long run low grey level emphasis", "high_j_low_i"),
    ("long_run_high_grey_level_emphasis", "3KUM", "Long run high grey level emphasis", "high_j_high_i"),
    ("grey_level_non_uniformity", "R5YN", "Grey level non-uniformity", "glnu"),
    ("normalised_grey_level_non_uniformity", "OVBL", "Normalised grey level non-uniformity", "glnu_norm"),
    ("run_length_non_uniformity", "W92Y", "Run length non-uniformity", "jnu"),
    ("normalised_run_length_non_uniformity", "IC23", "Normalised run length non-uniformity", "jnu_norm"),
    ("run_percentage", "9ZK5", "Run percentage", "percentage"),
    ("grey_level_variance", "8CE5", "Grey level variance", "gl_variance"),
    ("run_length_variance", "SXLW", "Run length variance", "j_variance"),
    ("run_entropy", "HJ9O", "Run entropy", "entropy"),
)
GLRLM_SPECS = tuple(FeatureSpec(n, c, "glrlm", i, "TP0I") for n, c, i, _k in _GLRLM_ROWS)


def _entropy_bits(p: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    safe = np.where(p > 0, p, 1.0)
    return -np.sum(p * np.log2(safe), axis=axis)


def _glcm_design(gv: np.ndarray, n_g: int) -> tuple[np.ndarray, ...]:
    """What the GLCM features need of the grey levels alone (shared by every matrix): the row
    level of each cell, the cell weights of the weighted-sum features, and the one-hot maps of
    the cells onto the distinct |i - j| and i + j values."""
    g = gv.size
    i = np.repeat(gv, g)
    j = np.tile(gv, g)
    diff = np.abs(i - j)
    ssum = i + j
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.stack([
            diff * diff, diff, 1.0 / (1.0 + diff), 1.0 / (1.0 + diff / n_g),
            1.0 / (1.0 + diff * diff), 1.0 / (1.0 + diff * diff / n_g**2),
            np.where(diff > 0, 1.0 / np.where(diff > 0, diff * diff, 1.0), 0.0), i * j,
        ], axis=1)
    du, d_inv = np.unique(diff, return_inverse=True)
    su, s_inv = np.unique(ssum, return_inverse=True)
    d_onehot = (d_inv[:, None] == np.arange(du.size)[None, :]).astype(np.float64)
    s_onehot = (s_inv[:, None] == np.arange(su.size)[None, :]).astype(np.float64)
    return i, weights, du, d_onehot, su, s_onehot


def glcm_matrix_features(counts: np.ndarray, gv: np.ndarray, n_g: int,
                         design: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """The 25 GLCM features (columns, in :data:`GLCM_SPECS` order) of B symmetric count matrices
    (B, G, G); rows of empty matrices are NaN. ``design``: :func:`_glcm_design` of ``gv``."""
    b, g, _ = counts.shape
    i, weights, du, d_onehot, su, s_onehot = design if design is not None else _glcm_design(gv, n_g)
    total = counts.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = counts / total[:, None, None]
        pf = p.reshape(b, g * g)
        px = p.sum(axis=2)
        mu = px @ gv
        ex2 = px @ (gv * gv)
        var = ex2 - mu * mu
        w = pf @ weights
        contrast, dissimilarity, inv_diff, inv_diff_norm, idm, idm_norm, inv_var, autocorr = w.T
        pd = pf @ d_onehot
        ps = pf @ s_onehot
        d_avg = pd @ du
        d_var = pd @ (du * du) - d_avg * d_avg
        s_avg = ps @ su
        s_dev = su[None, :] - s_avg[:, None]
        s_var = (ps * s_dev**2).sum(axis=1)
        shade = (ps * s_dev**3).sum(axis=1)
        prominence = (ps * s_dev**4).sum(axis=1)
        hxy = _entropy_bits(pf, 1)
        hx = _entropy_bits(px, 1)
        # symmetric matrix: HXY1 = HXY2 = 2 HX
        ic1 = (hxy - 2.0 * hx) / hx
        ic2 = np.sqrt(np.clip(1.0 - np.exp(-2.0 * (2.0 * hx - hxy)), 0.0, None))
        corr = (autocorr - mu * mu) / var
        cols = [
            pf.max(axis=1), mu, (pf * (i[None, :] - mu[:, None]) ** 2).sum(axis=1), hxy,
            d_avg, d_var, _entropy_bits(pd, 1), s_avg, s_var, _entropy_bits(ps, 1),
            (pf * pf).sum(axis=1), contrast, dissimilarity, inv_diff, inv_diff_norm, idm, idm_norm,
            inv_var, corr, autocorr, s_var, shade, prominence, ic1, ic2,
        ]
    out = np.stack(cols, axis=1)
    out[total == 0] = np.nan
    return out


def _check_aggregations(aggregations: Sequence[str], family: str) -> tuple[str, ...]:
    aggs = tuple(a for a in aggregations if a in DIRECTIONAL)
    return aggs


def _aggregate(feature_fn, per_slice: np.ndarray | None, per_dir3d: np.ndarray | None,
               aggs: tuple[str, ...], extra_slice=None, extra_dir=None) -> dict[str, np.ndarray]:
    """Feature vectors for each aggregation from per-(direction, slice) and per-3-D-direction
    matrices. ``feature_fn(matrices, n_voxels) -> (B, F)``."""
    out: dict[str, np.ndarray] = {}
    if per_slice is not None:
        nd, nz = per_slice.shape[:2]
        if "2d_avg" in aggs:
            f = feature_fn(per_slice.reshape(nd * nz, *per_slice.shape[2:]))
            valid = per_slice.reshape(nd * nz, -1).sum(axis=1) > 0
            out["2d_avg"] = f[valid].mean(axis=0) if valid.any() else np.full(f.shape[1], np.nan)
        if "2d_comb" in aggs:
            merged = per_slice.sum(axis=0)
            f = feature_fn(merged)
            valid = merged.reshape(nz, -1).sum(axis=1) > 0
            out["2d_comb"] = f[valid].mean(axis=0) if valid.any() else np.full(f.shape[1], np.nan)
        if "2_5d_avg" in aggs:
            merged = per_slice.sum(axis=1)
            f = feature_fn(merged)
            valid = merged.reshape(nd, -1).sum(axis=1) > 0
            out["2_5d_avg"] = f[valid].mean(axis=0) if valid.any() else np.full(f.shape[1], np.nan)
        if "2_5d_comb" in aggs:
            out["2_5d_comb"] = feature_fn(per_slice.sum(axis=(0, 1))[None])[0]
    if per_dir3d is not None:
        if "3d_avg" in aggs:
            f = feature_fn(per_dir3d)
            valid = per_dir3d.reshape(per_dir3d.shape[0], -1).sum(axis=1) > 0
            out["3d_avg"] = f[valid].mean(axis=0) if valid.any() else np.full(f.shape[1], np.nan)
        if "3d_comb" in aggs:
            out["3d_comb"] = feature_fn(per_dir3d.sum(axis=0)[None])[0]
    return out


def _flatten(values: dict[str, np.ndarray], specs: tuple[FeatureSpec, ...], aggs: tuple[str, ...]) -> dict[str, float]:
    return {f"{agg}.{spec.name}": float(values[agg][k]) for agg in aggs for k, spec in enumerate(specs)}


def _needs(aggs: tuple[str, ...]) -> tuple[bool, bool]:
    return any(a.startswith("2") for a in aggs), any(a.startswith("3") for a in aggs)


@feature_family("glcm", GLCM_SPECS, aggregations=DIRECTIONAL)
def glcm_features(roi: Roi, *, aggregations: Sequence[str] = ("3d_avg", "3d_comb"),
                  distance: int = 1) -> dict[str, float]:
    """IBSI grey level co-occurrence matrix features (25 per aggregation).

    Parameters
    ----------
    roi
        The processed region.
    aggregations
        IBSI aggregation methods to report (``2d_avg``, ``2d_comb``, ``2_5d_avg``,
        ``2_5d_comb``, ``3d_avg``, ``3d_comb``).
    distance
        Chebyshev distance between the voxels of a pair, in voxels (>= 1).
    """
    if distance < 1:
        raise ParameterError(f"glcm distance must be >= 1 voxel, got {distance}")
    aggs = _check_aggregations(aggregations, "glcm")
    if not aggs:
        return {}
    need2d, need3d = _needs(aggs)
    tex = texture(roi, pad=distance)
    g = tex.n_levels_present
    nz = tex.n_slices
    z = tex.coords[:, 0]
    dirs = DIRECTIONS_3D if need3d else DIRECTIONS_3D[:IN_PLANE]
    k_all = len(dirs)
    per_slice = np.zeros((IN_PLANE, nz, g * g), dtype=np.int64) if need2d else None
    per_dir = np.zeros((k_all, g * g), dtype=np.int64) if need3d else None
    levels = tex.padded.ravel()
    own = tex.gi * g
    for k, off in enumerate(tex.offset(d) for d in dirs * distance):  # one direction at a time
        nb = levels[tex.flat + off]
        inside = nb >= 0
        pair = (own + nb)[inside]
        if per_dir is not None:
            per_dir[k] = np.bincount(pair, minlength=g * g)
        if per_slice is not None and k < IN_PLANE:
            per_slice[k] = np.bincount(z[inside] * (g * g) + pair, minlength=nz * g * g).reshape(nz, g * g)
    if per_slice is not None:
        c = per_slice.reshape(IN_PLANE, nz, g, g)
        per_slice = (c + c.transpose(0, 1, 3, 2)).astype(np.float64)
    if per_dir is not None:
        c = per_dir.reshape(k_all, g, g)
        per_dir = (c + c.transpose(0, 2, 1)).astype(np.float64)

    design = _glcm_design(tex.gv, tex.n_g)

    def fn(m: np.ndarray) -> np.ndarray:
        return glcm_matrix_features(m, tex.gv, tex.n_g, design)

    return _flatten(_aggregate(fn, per_slice, per_dir, aggs), GLCM_SPECS, aggs)


@feature_family("glrlm", GLRLM_SPECS, aggregations=DIRECTIONAL)
def glrlm_features(roi: Roi, *, aggregations: Sequence[str] = ("3d_avg", "3d_comb")) -> dict[str, float]:
    """IBSI grey level run length matrix features (16 per aggregation).

    Parameters
    ----------
    roi
        The processed region.
    aggregations
        IBSI aggregation methods to report (``2d_avg`` ... ``3d_comb``).
    """
    aggs = _check_aggregations(aggregations, "glrlm")
    if not aggs:
        return {}
    need2d, need3d = _needs(aggs)
    tex = texture(roi, pad=1)
    dirs = DIRECTIONS_3D if need3d else DIRECTIONS_3D[:IN_PLANE]
    per_slice, per_dir, jv = run_matrices(tex, dirs, per_slice=need2d, per_direction=need3d)

    keys = [row[3] for row in _GLRLM_ROWS]

    def fn(m: np.ndarray) -> np.ndarray:
        n_vox = (m * jv[None, None, :]).sum(axis=(1, 2))
        f = size_matrix_features(m, tex.gv, jv, n_vox)
        return np.stack([f[key] for key in keys], axis=1)

    return _flatten(_aggregate(fn, per_slice, per_dir, aggs), GLRLM_SPECS, aggs)
