r"""Zone and neighbourhood texture families, each with the IBSI aggregations ``2d`` (features per
slice, averaged over slices), ``2_5d`` (slice matrices merged) and ``3d`` (volume matrix):

* GLSZM (``9SAK``): zones are connected voxels of one grey level (26-connected in 3-D,
  8-connected in 2-D); matrix of grey level x zone size.
* GLDZM (``VMDZ``): the same zones; matrix of grey level x zone distance, the smallest distance
  of a zone's voxels to the region's edge, counted in 6-connected (3-D) or 4-connected (2-D)
  steps from 1 at the edge, on the morphological mask.
* NGTDM (``IPET``): for each voxel with at least one neighbour in the region (Chebyshev
  ``distance``), :math:`s_i` sums :math:`|i - \bar{A}|`, :math:`\bar{A}` the mean grey level of
  its neighbours inside the region; :math:`n_i` counts those voxels.
* NGLDM (``REK0``): the dependence of a voxel is 1 + the number of neighbours (Chebyshev
  ``distance``) in the region whose grey level differs by at most ``alpha``; matrix of grey level
  x dependence.

The GLSZM, GLDZM and NGLDM features share the "grey level x size" formulas of
:func:`medimg.features._texture.size_matrix_features`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from medimg.errors import ParameterError
from medimg.features._base import ZONAL, FeatureSpec, feature_family
from medimg.features._texture import Texture, neighbour_levels, size_matrix_features, texture
from medimg.features.roi import Roi

__all__ = ["GLSZM_SPECS", "GLDZM_SPECS", "NGTDM_SPECS", "NGLDM_SPECS",
           "glszm_features", "gldzm_features", "ngtdm_features", "ngldm_features"]

_GLSZM_ROWS = (
    ("small_zone_emphasis", "5QRC", "Small zone emphasis", "low_j"),
    ("large_zone_emphasis", "48P8", "Large zone emphasis", "high_j"),
    ("low_grey_level_zone_emphasis", "XMSY", "Low grey level emphasis", "low_i"),
    ("high_grey_level_zone_emphasis", "5GN9", "High grey level emphasis", "high_i"),
    ("small_zone_low_grey_level_emphasis", "5RAI", "Small zone low grey level emphasis", "low_j_low_i"),
    ("small_zone_high_grey_level_emphasis", "HW1V", "Small zone high grey level emphasis", "low_j_high_i"),
    ("large_zone_low_grey_level_emphasis", "YH51", "Large zone low grey level emphasis", "high_j_low_i"),
    ("large_zone_high_grey_level_emphasis", "J17V", "Large zone high grey level emphasis", "high_j_high_i"),
    ("grey_level_non_uniformity", "JNSA", "Grey level non-uniformity", "glnu"),
    ("normalised_grey_level_non_uniformity", "Y1RO", "Normalised grey level non-uniformity", "glnu_norm"),
    ("zone_size_non_uniformity", "4JP3", "Zone size non-uniformity", "jnu"),
    ("normalised_zone_size_non_uniformity", "VB3A", "Normalised zone size non-uniformity", "jnu_norm"),
    ("zone_percentage", "P30P", "Zone percentage", "percentage"),
    ("grey_level_variance", "BYLV", "Grey level variance", "gl_variance"),
    ("zone_size_variance", "3NSA", "Zone size variance", "j_variance"),
    ("zone_size_entropy", "GU8N", "Zone size entropy", "entropy"),
)
_GLDZM_ROWS = (
    ("small_distance_emphasis", "0GBI", "Small distance emphasis", "low_j"),
    ("large_distance_emphasis", "MB4I", "Large distance emphasis", "high_j"),
    ("low_grey_level_zone_emphasis", "S1RA", "Low grey level emphasis", "low_i"),
    ("high_grey_level_zone_emphasis", "K26C", "High grey level emphasis", "high_i"),
    ("small_distance_low_grey_level_emphasis", "RUVG", "Small distance low grey level emphasis", "low_j_low_i"),
    ("small_distance_high_grey_level_emphasis", "DKNJ", "Small distance high grey level emphasis", "low_j_high_i"),
    ("large_distance_low_grey_level_emphasis", "A7WM", "Large distance low grey level emphasis", "high_j_low_i"),
    ("large_distance_high_grey_level_emphasis", "KLTH", "Large distance high grey level emphasis", "high_j_high_i"),
    ("grey_level_non_uniformity", "VFT7", "Grey level non-uniformity", "glnu"),
    ("normalised_grey_level_non_uniformity", "7HP3", "Normalised grey level non-uniformity", "glnu_norm"),
    ("zone_distance_non_uniformity", "V294", "Zone distance non-uniformity", "jnu"),
    ("normalised_zone_distance_non_uniformity", "IATH", "Normalised zone distance non-uniformity", "jnu_norm"),
    ("zone_percentage", "VIWW", "Zone percentage", "percentage"),
    ("grey_level_variance", "QK93", "Grey level variance", "gl_variance"),
    ("zone_distance_variance", "7WT1", "Zone distance variance", "j_variance"),
    ("zone_distance_entropy", "GBDU", "Zone distance entropy", "entropy"),
)
_NGLDM_ROWS = (
    ("low_dependence_emphasis", "SODN", "Low dependence emphasis", "low_j"),
    ("high_dependence_emphasis", "IMOQ", "High dependence emphasis", "high_j"),
    ("low_grey_level_count_emphasis", "TL9H", "Low grey level count emphasis", "low_i"),
    ("high_grey_level_count_emphasis", "OAE7", "High grey level count emphasis", "high_i"),
    ("low_dependence_low_grey_level_emphasis", "EQ3F", "Low dependence low grey level emphasis", "low_j_low_i"),
    ("low_dependence_high_grey_level_emphasis", "JA6D", "Low dependence high grey level emphasis", "low_j_high_i"),
    ("high_dependence_low_grey_level_emphasis", "NBZI", "High dependence low grey level emphasis", "high_j_low_i"),
    ("high_dependence_high_grey_level_emphasis", "9QMG", "High dependence high grey level emphasis", "high_j_high_i"),
    ("grey_level_non_uniformity", "FP8K", "Grey level non-uniformity", "glnu"),
    ("normalised_grey_level_non_uniformity", "5SPA", "Normalised grey level non-uniformity", "glnu_norm"),
    ("dependence_count_non_uniformity", "Z87G", "Dependence count non-uniformity", "jnu"),
    ("normalised_dependence_count_non_uniformity", "OKJI", "Normalised dependence count non-uniformity", "jnu_norm"),
    ("dependence_count_percentage", "6XV8", "Dependence count percentage", "percentage"),
    ("grey_level_variance", "1PFV", "Grey level variance", "gl_variance"),
    ("dependence_count_variance", "DNX2", "Dependence count variance", "j_variance"),
    ("dependence_count_entropy", "FCBV", "Dependence count entropy", "entropy"),
    ("dependence_count_energy", "CAS9", "Dependence count energy", "energy"),
)
GLSZM_SPECS = tuple(FeatureSpec(n, c, "glszm", i, "9SAK") for n, c, i, _k in _GLSZM_ROWS)
GLDZM_SPECS = tuple(FeatureSpec(n, c, "gldzm", i, "VMDZ") for n, c, i, _k in _GLDZM_ROWS)
NGLDM_SPECS = tuple(FeatureSpec(n, c, "ngldm", i, "REK0") for n, c, i, _k in _NGLDM_ROWS)
NGTDM_SPECS = tuple(FeatureSpec(n, c, "ngtdm", i, "IPET") for n, c, i in (
    ("coarseness", "QCDE", "Coarseness"),
    ("contrast", "65HE", "Contrast"),
    ("busyness", "NQ30", "Busyness"),
    ("complexity", "HDEZ", "Complexity"),
    ("strength", "1X9X", "Strength"),
))


def _zonal(aggregations: Sequence[str]) -> tuple[str, ...]:
    return tuple(a for a in aggregations if a in ZONAL)


#: Above this many voxels in the region's box, zones are labelled by scikit-image (C, several
#: times faster); below, by :func:`medimg.core.components.label_equal` (NumPy), which takes
#: less time than importing scikit-image's labelling (it imports ``scipy.ndimage``: ~0.1 s of
#: a command's start-up). Both give the same labels (tests/test_components.py).
LABEL_WITH_SKIMAGE_ABOVE = 32_768


def _zones(tex: Texture, two_d: bool) -> tuple[np.ndarray, np.ndarray]:
    """Zone label of every region voxel (1..n, C order) and the number of zones."""
    core = tex.padded[tuple(slice(tex.pad, -tex.pad) for _ in range(3))] + 1  # 0 outside
    if core.size <= LABEL_WITH_SKIMAGE_ABOVE:
        from medimg.core.components import label_equal

        lab, n = label_equal(core, background=0, in_plane=two_d)
    elif two_d:
        from skimage.measure import label

        nz = core.shape[0]
        spaced = np.zeros((2 * nz - 1, *core.shape[1:]), dtype=core.dtype)
        spaced[::2] = core
        lab, n = label(spaced, background=0, connectivity=3, return_num=True)
        lab = lab[::2]
    else:
        from skimage.measure import label

        lab, n = label(core, background=0, connectivity=3, return_num=True)
    coords = tex.coords
    return lab[coords[:, 0], coords[:, 1], coords[:, 2]], int(n)


def _zone_table(tex: Texture, two_d: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per zone: grey level index, size, slice; and the zone label of every voxel."""
    vox_label, n = _zones(tex, two_d)
    size = np.bincount(vox_label, minlength=n + 1)[1:]
    level = np.zeros(n + 1, dtype=np.int64)
    level[vox_label] = tex.gi
    zslice = np.zeros(n + 1, dtype=np.int64)
    zslice[vox_label] = tex.coords[:, 0]
    return level[1:], size, zslice[1:], vox_label


def _size_matrices(level: np.ndarray, size: np.ndarray, zslice: np.ndarray, g: int, nz: int,
                   two_d: bool) -> tuple[np.ndarray, np.ndarray]:
    smax = int(size.max())
    cell = level * smax + (size - 1)
    if two_d:
        m = np.bincount(zslice * (g * smax) + cell, minlength=nz * g * smax).reshape(nz, g, smax)
    else:
        m = np.bincount(cell, minlength=g * smax).reshape(1, g, smax)
    return m.astype(np.float64), np.arange(1, smax + 1, dtype=np.float64)


def _slice_voxels(tex: Texture) -> np.ndarray:
    return np.bincount(tex.coords[:, 0], minlength=tex.n_slices).astype(np.float64)


def _aggregate_size(tex: Texture, aggs: tuple[str, ...], rows: tuple, build) -> dict[str, float]:
    """``build(two_d) -> (matrices (B, G, J), jv, n_voxels (B,))``; features per aggregation."""
    keys = [r[3] for r in rows]
    out: dict[str, float] = {}
    results: dict[str, np.ndarray] = {}
    if "2d" in aggs or "2_5d" in aggs:
        m, jv, nvox = build(True)
        if "2d" in aggs:
            valid = nvox > 0
            f = size_matrix_features(m[valid], tex.gv, jv, nvox[valid])
            results["2d"] = np.array([np.mean(f[k]) for k in keys])
        if "2_5d" in aggs:
            f = size_matrix_features(m.sum(axis=0)[None], tex.gv, jv, np.array([nvox.sum()]))
            results["2_5d"] = np.array([f[k][0] for k in keys])
    if "3d" in aggs:
        m, jv, nvox = build(False)
        f = size_matrix_features(m, tex.gv, jv, nvox)
        results["3d"] = np.array([f[k][0] for k in keys])
    for agg in aggs:
        for k, row in enumerate(rows):
            out[f"{agg}.{row[0]}"] = float(results[agg][k])
    return out


@feature_family("glszm", GLSZM_SPECS, aggregations=ZONAL)
def glszm_features(roi: Roi, *, aggregations: Sequence[str] = ("3d",)) -> dict[str, float]:
    """IBSI grey level size zone matrix features (16 per aggregation: ``2d``, ``2_5d``, ``3d``)."""
    aggs = _zonal(aggregations)
    if not aggs:
        return {}
    tex = texture(roi, pad=1)

    def build(two_d: bool):
        level, size, zslice, _ = roi.cached(f"zones_{two_d}", lambda: _zone_table(tex, two_d))
        m, jv = _size_matrices(level, size, zslice, tex.n_levels_present, tex.n_slices, two_d)
        nvox = _slice_voxels(tex) if two_d else np.array([float(tex.gi.size)])
        return m, jv, nvox

    return _aggregate_size(tex, aggs, _GLSZM_ROWS, build)


def _border_distance(roi: Roi, tex: Texture, two_d: bool) -> np.ndarray:
    """Distance to the edge of the morphological mask (1 at the edge) of every region voxel.

    Computed on the mask's bounding box padded by one empty voxel: every voxel outside the box
    is outside the mask, and a path to one of them crosses the padding first."""
    from medimg.core.components import taxicab_distance

    morph = roi.morph_mask
    zs = np.flatnonzero(morph.any(axis=(1, 2)))
    sub = morph[zs[0]:zs[-1] + 1]
    ys = np.flatnonzero(sub.any(axis=(0, 2)))
    xs = np.flatnonzero(sub.any(axis=(0, 1)))
    m_lo = np.array([zs[0], ys[0], xs[0]])
    padded = np.pad(sub[:, ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1], 1)
    # = scipy.ndimage.distance_transform_cdt with the face-neighbour structure (in-plane in 2-D)
    dist = taxicab_distance(padded, in_plane=two_d)
    c = tex.coords + (roi.int_index.min(axis=0) - m_lo + 1)
    return dist[c[:, 0], c[:, 1], c[:, 2]]


@feature_family("gldzm", GLDZM_SPECS, aggregations=ZONAL)
def gldzm_features(roi: Roi, *, aggregations: Sequence[str] = ("3d",)) -> dict[str, float]:
    """IBSI grey level distance zone matrix features (16 per aggregation: ``2d``, ``2_5d``, ``3d``)."""
    aggs = _zonal(aggregations)
    if not aggs:
        return {}
    tex = texture(roi, pad=1)

    def build(two_d: bool):
        level, _size, zslice, vox_label = roi.cached(f"zones_{two_d}", lambda: _zone_table(tex, two_d))
        dist = _border_distance(roi, tex, two_d)
        zone_d = np.full(level.size + 1, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(zone_d, vox_label, dist)
        m, jv = _size_matrices(level, zone_d[1:], zslice, tex.n_levels_present, tex.n_slices, two_d)
        nvox = _slice_voxels(tex) if two_d else np.array([float(tex.gi.size)])
        return m, jv, nvox

    return _aggregate_size(tex, aggs, _GLDZM_ROWS, build)


@functools.lru_cache(maxsize=16)
def _neighbour_offsets(distance: int, two_d: bool) -> np.ndarray:
    """The (dz, dy, dx) offsets of the Chebyshev neighbourhood (read-only; shared)."""
    r = np.arange(-distance, distance + 1)
    grid = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    keep = np.any(grid != 0, axis=1)
    if two_d:
        keep &= grid[:, 0] == 0
    out = grid[keep]
    out.flags.writeable = False
    return out


def _neighbour_pass(roi: Roi, distance: int):
    """Neighbour level indices of every region voxel: in-plane (K2, N) and out-of-plane (K3, N)."""
    tex = texture(roi, pad=distance)
    in_plane = _neighbour_offsets(distance, True)
    all_offsets = _neighbour_offsets(distance, False)
    out_plane = all_offsets[all_offsets[:, 0] != 0]
    return tex, {True: neighbour_levels(tex, in_plane), False: neighbour_levels(tex, out_plane)}


@feature_family("ngtdm", NGTDM_SPECS, aggregations=ZONAL)
def ngtdm_features(roi: Roi, *, aggregations: Sequence[str] = ("3d",),
                   distance: int = 1) -> dict[str, float]:
    """IBSI neighbourhood grey tone difference matrix features (5 per aggregation).

    Parameters
    ----------
    roi
        The processed region.
    aggregations
        ``2d``, ``2_5d``, ``3d``.
    distance
        Chebyshev radius of the neighbourhood, voxels.
    """
    if distance < 1:
        raise ParameterError(f"ngtdm distance must be >= 1 voxel, got {distance}")
    aggs = _zonal(aggregations)
    if not aggs:
        return {}
    tex, nbs = roi.cached(f"neighbours_{distance}", lambda: _neighbour_pass(roi, distance))
    gv = tex.gv
    g = gv.size
    own = gv[tex.gi]

    gv_out = np.append(gv, 0.0)  # index -1 (outside the region) reads 0

    def sums(nb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return gv_out[nb].sum(axis=0), (nb >= 0).sum(axis=0).astype(np.float64)

    s2, c2 = sums(nbs[True])
    results: dict[str, np.ndarray] = {}

    def matrices(total: np.ndarray, count: np.ndarray, group: np.ndarray, n_groups: int):
        has = count > 0
        diff = np.abs(own - total / np.where(has, count, 1.0))
        cell = group[has] * g + tex.gi[has]
        n = np.bincount(cell, minlength=n_groups * g).reshape(n_groups, g).astype(np.float64)
        s = np.bincount(cell, weights=diff[has], minlength=n_groups * g).reshape(n_groups, g)
        return n, s

    if "2d" in aggs or "2_5d" in aggs:
        n, s = matrices(s2, c2, tex.coords[:, 0], tex.n_slices)
        if "2d" in aggs:
            valid = n.sum(axis=1) > 0
            results["2d"] = np.nanmean(_ngtdm(n[valid], s[valid], gv), axis=0) if valid.any() else np.full(5, np.nan)
        if "2_5d" in aggs:
            results["2_5d"] = _ngtdm(n.sum(axis=0)[None], s.sum(axis=0)[None], gv)[0]
    if "3d" in aggs:
        s3, c3 = sums(nbs[False])
        n, s = matrices(s2 + s3, c2 + c3, np.zeros(tex.gi.size, dtype=np.int64), 1)
        results["3d"] = _ngtdm(n, s, gv)[0]
    return {f"{agg}.{spec.name}": float(results[agg][k]) for agg in aggs for k, spec in enumerate(NGTDM_SPECS)}


def _ngtdm(n: np.ndarray, s: np.ndarray, gv: np.ndarray) -> np.ndarray:
    """(B, 5) coarseness, contrast, busyness, complexity, strength from (B, G) n_i and s_i."""
    out = np.zeros((n.shape[0], 5))
    for b in range(n.shape[0]):
        nvc = n[b].sum()
        if nvc == 0:
            out[b] = np.nan
            continue
        keep = n[b] > 0
        p = n[b][keep] / nvc
        si = s[b][keep]
        gi = gv[keep]
        ngp = p.size
        ps = float(np.dot(p, si))
        dij = gi[:, None] - gi[None, :]
        out[b, 0] = 1.0 / ps if ps > 0 else 1e6
        out[b, 1] = (float(np.sum(p[:, None] * p[None, :] * dij**2)) / (ngp * (ngp - 1)) * si.sum() / nvc
                     if ngp > 1 else 0.0)
        ip = gi * p
        busy_den = float(np.sum(np.abs(ip[:, None] - ip[None, :])))
        out[b, 2] = ps / busy_den if busy_den > 0 else 0.0
        psi = p * si
        out[b, 3] = float(np.sum(np.abs(dij) * (psi[:, None] + psi[None, :]) / (p[:, None] + p[None, :]))) / nvc
        out[b, 4] = (float(np.sum((p[:, None] + p[None, :]) * dij**2)) / si.sum() if si.sum() > 0 else 0.0)
    return out


@feature_family("ngldm", NGLDM_SPECS, aggregations=ZONAL)
def ngldm_features(roi: Roi, *, aggregations: Sequence[str] = ("3d",),
                   distance: int = 1,
                   alpha: float = 0.0) -> dict[str, float]:
    """IBSI neighbouring grey level dependence matrix features (17 per aggregation).

    Parameters
    ----------
    roi
        The processed region.
    aggregations
        ``2d``, ``2_5d``, ``3d``.
    distance
        Chebyshev radius of the neighbourhood, voxels.
    alpha
        Coarseness: neighbours whose grey level differs by at most ``alpha`` are dependent.
    """
    if distance < 1:
        raise ParameterError(f"ngldm distance must be >= 1 voxel, got {distance}")
    if alpha < 0:
        raise ParameterError(f"ngldm alpha must be >= 0 (grey levels), got {alpha}")
    aggs = _zonal(aggregations)
    if not aggs:
        return {}
    tex, nbs = roi.cached(f"neighbours_{distance}", lambda: _neighbour_pass(roi, distance))
    gv = tex.gv
    g = gv.size

    def dependent(nb: np.ndarray) -> np.ndarray:
        ok = nb >= 0
        if alpha == 0:
            same = nb == tex.gi[None, :]
        else:
            same = np.abs(gv[np.where(ok, nb, 0)] - gv[tex.gi][None, :]) <= alpha + 1e-12
        return (ok & same).sum(axis=0)

    d2 = dependent(nbs[True])

    def build_from(dep: np.ndarray, two_d: bool):
        k = dep + 1
        kmax = int(k.max())
        cell = tex.gi * kmax + (k - 1)
        if two_d:
            nz = tex.n_slices
            m = np.bincount(tex.coords[:, 0] * (g * kmax) + cell, minlength=nz * g * kmax).reshape(nz, g, kmax)
            nvox = _slice_voxels(tex)
        else:
            m = np.bincount(cell, minlength=g * kmax).reshape(1, g, kmax)
            nvox = np.array([float(tex.gi.size)])
        return m.astype(np.float64), np.arange(1, kmax + 1, dtype=np.float64), nvox

    def build(two_d: bool):
        if two_d:
            return build_from(d2, True)
        return build_from(d2 + dependent(nbs[False]), False)

    return _aggregate_size(tex, aggs, _NGLDM_ROWS, build)
