"""Shared machinery of the texture families: compact grey levels, neighbour offsets, run and zone
matrices, and the features common to every "grey level x size" matrix.

Grey levels are indexed compactly (only the levels present in the region, index 0..G-1) and the
formulas use the level *values* (``gv``), so empty levels cost nothing. ``N_g`` (the number of
grey levels of the discretisation) appears only in the normalised GLCM features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medimg.features.roi import Roi

__all__ = ["Texture", "texture", "DIRECTIONS_3D", "IN_PLANE", "size_matrix_features", "weighted_mean"]

#: The 13 unique 3-D directions (dz, dy, dx) of the 26-neighbourhood; the first 4 lie in-plane.
DIRECTIONS_3D = np.array([
    (0, 0, 1), (0, 1, -1), (0, 1, 0), (0, 1, 1),
    (1, -1, -1), (1, -1, 0), (1, -1, 1), (1, 0, -1), (1, 0, 0), (1, 0, 1),
    (1, 1, -1), (1, 1, 0), (1, 1, 1),
], dtype=np.int64)
IN_PLANE = 4


@dataclass
class Texture:
    """The region's grey levels on its intensity-mask bounding box, padded with -1."""

    padded: np.ndarray  # int32 compact level index, -1 outside the intensity mask
    pad: int
    flat: np.ndarray  # flat indices (into padded) of the region's voxels, C order
    gi: np.ndarray  # compact level index of each region voxel
    coords: np.ndarray  # (N, 3) box coordinates (z, y, x) of each region voxel (unpadded)
    gv: np.ndarray  # float64 grey-level value of each compact index
    n_g: int  # number of grey levels of the discretisation
    n_slices: int

    @property
    def n_levels_present(self) -> int:
        return int(self.gv.size)

    def offset(self, d: np.ndarray) -> int:
        strides = np.array([self.padded.shape[1] * self.padded.shape[2], self.padded.shape[2], 1])
        return int(np.dot(d, strides))


def texture(roi: Roi, pad: int = 1) -> Texture:
    """The (cached) :class:`Texture` of ``roi`` with ``pad`` voxels of padding."""

    def build() -> Texture:
        mask = roi.int_mask
        idx = roi.int_index
        lo, hi = idx.min(axis=0), idx.max(axis=0)
        box = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
        levels = roi.levels[box]
        inside = mask[box]
        counts = np.bincount(roi.level_values, minlength=roi.n_levels + 1)
        present = np.flatnonzero(counts)
        lut = np.full(roi.n_levels + 1, -1, dtype=np.int32)
        lut[present] = np.arange(present.size, dtype=np.int32)
        compact = np.where(inside, lut[levels], -1).astype(np.int32)
        padded = np.pad(compact, pad, constant_values=-1)
        coords = idx - lo
        strides = np.array([padded.shape[1] * padded.shape[2], padded.shape[2], 1])
        flat = (coords + pad) @ strides
        return Texture(padded=padded, pad=pad, flat=flat, gi=padded.ravel()[flat], coords=coords,
                       gv=present.astype(np.float64), n_g=int(roi.n_levels), n_slices=int(hi[0] - lo[0] + 1))

    return roi.cached(f"texture_pad{pad}", build)


def weighted_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean over the first axis of ``values`` (k, F) restricted to rows where ``valid``."""
    if not valid.any():
        return np.full(values.shape[1:], np.nan)
    return values[valid].mean(axis=0)


def size_matrix_features(m: np.ndarray, gv: np.ndarray, jv: np.ndarray, n_voxels: np.ndarray) -> dict[str, np.ndarray]:
    """Features shared by run-length, size-zone, distance-zone and dependence matrices.

    Parameters
    ----------
    m
        (B, G, J) counts: B matrices of grey level (compact) x size (run length, zone size,
        zone distance or dependence count).
    gv
        (G,) grey-level values; ``jv`` (J,) the size values.
    n_voxels
        (B,) the number of voxels each matrix describes (for the percentage feature).

    Returns
    -------
    dict
        Arrays (B,) keyed ``low_j``, ``high_j``, ``low_i``, ``high_i``, ``low_j_low_i``,
        ``low_j_high_i``, ``high_j_low_i``, ``high_j_high_i``, ``glnu``, ``glnu_norm``,
        ``jnu``, ``jnu_norm``, ``percentage``, ``gl_variance``, ``j_variance``, ``entropy``,
        ``energy``. Empty matrices give NaN.
    """
    m = m.astype(np.float64)
    ns = m.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / ns
        i2 = gv * gv
        j2 = jv * jv
        row = m.sum(axis=2)  # (B, G)
        col = m.sum(axis=1)  # (B, J)
        out = {
            "low_j": col @ (1.0 / j2) * inv,
            "high_j": col @ j2 * inv,
            "low_i": row @ (1.0 / i2) * inv,
            "high_i": row @ i2 * inv,
            "low_j_low_i": np.einsum("bgj,g,j->b", m, 1.0 / i2, 1.0 / j2) * inv,
            "low_j_high_i": np.einsum("bgj,g,j->b", m, i2, 1.0 / j2) * inv,
            "high_j_low_i": np.einsum("bgj,g,j->b", m, 1.0 / i2, j2) * inv,
            "high_j_high_i": np.einsum("bgj,g,j->b", m, i2, j2) * inv,
            "glnu": (row * row).sum(axis=1) * inv,
            "glnu_norm": (row * row).sum(axis=1) * inv * inv,
            "jnu": (col * col).sum(axis=1) * inv,
            "jnu_norm": (col * col).sum(axis=1) * inv * inv,
            "percentage": ns / n_voxels,
        }
        pi = row * inv[:, None]
        pj = col * inv[:, None]
        mu_i = pi @ gv
        mu_j = pj @ jv
        out["gl_variance"] = (pi * (gv[None, :] - mu_i[:, None]) ** 2).sum(axis=1)
        out["j_variance"] = (pj * (jv[None, :] - mu_j[:, None]) ** 2).sum(axis=1)
        p = m * inv[:, None, None]
        plog = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
        out["entropy"] = -plog.sum(axis=(1, 2))
        out["energy"] = (p * p).sum(axis=(1, 2))
    return out


def neighbour_levels(tex: Texture, offsets: np.ndarray) -> np.ndarray:
    """Compact level index (-1 outside the region) of the neighbour at each offset (K, 3) of
    every region voxel: (K, N)."""
    strides = np.array([tex.padded.shape[1] * tex.padded.shape[2], tex.padded.shape[2], 1])
    flat_offsets = np.asarray(offsets) @ strides
    return tex.padded.ravel()[tex.flat[None, :] + flat_offsets[:, None]]


def _runs_by_direction(tex: Texture, directions: np.ndarray, with_z: bool = True):
    """For each direction k of ``directions`` (K, 3): ``(k, level, length, first_z)`` of its runs
    (see :func:`line_runs`; ``first_z`` is None unless ``with_z``)."""
    coords = tex.coords
    n = coords.shape[0]
    directions = np.asarray(directions, dtype=np.int64)
    primary = np.argmax(directions != 0, axis=1)
    # the line is identified by its point at t = 0, coords - t * d, as a flat index on a grid
    # enlarged by `big` on every side (so that it is never negative)
    dims = coords.max(axis=0) + 1
    big = int(dims.max())
    span = dims + 2 * big
    strides = np.array([span[1] * span[2], span[2], 1], dtype=np.int64)
    tmax = big + 1
    flat = (coords + big) @ strides  # (N,)
    step = directions @ strides
    cont = np.zeros(n, dtype=bool)
    for k in range(len(directions)):
        t = coords[:, primary[k]]  # position along the line
        key = (flat - t * step[k]) * tmax + t
        order = np.argsort(key, kind="stable")  # C order: runs already sorted (timsort merges)
        k_sorted = key[order]
        g_sorted = tex.gi[order]
        cont[1:] = (k_sorted[1:] == k_sorted[:-1] + 1) & (g_sorted[1:] == g_sorted[:-1])
        starts = np.flatnonzero(~cont)
        first_z = coords[order[starts], 0] if with_z else None
        yield k, g_sorted[starts], np.diff(starts, append=n), first_z


def line_runs(tex: Texture, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal grey level along each direction (K, 3) (dz, dy, dx), components in
    {-1, 0, 1}, first non-zero component +1.

    Returns, for every run: direction index, level index, length, and the slice of its first
    voxel. Each voxel gets the key (line, position along the line); sorted, a run continues
    where keys are consecutive and levels equal.
    """
    parts = [(np.full(lev.size, k, dtype=np.int64), lev, length, z)
             for k, lev, length, z in _runs_by_direction(tex, directions)]
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def run_matrices(tex: Texture, directions: np.ndarray, *, per_slice: bool,
                 per_direction: bool) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """Run-length count matrices of :func:`line_runs`, accumulated direction by direction (no
    list of every run): per (in-plane direction, slice of the run's first voxel) (IN_PLANE, nz,
    G, L) when ``per_slice``, per direction (K, G, L) when ``per_direction``, and the run lengths
    1..L (L the longest run)."""
    g = tex.n_levels_present
    nz = tex.n_slices
    bound = int(tex.coords.max()) + 1  # no run is longer than the box
    k_all = len(directions)
    slices = np.zeros(IN_PLANE * nz * g * bound, dtype=np.int64) if per_slice else None
    dirs = np.zeros(k_all * g * bound, dtype=np.int64) if per_direction else None
    longest = 1
    for k, lev, length, zs in _runs_by_direction(tex, directions, with_z=per_slice):
        longest = max(longest, int(length.max()))
        cell = lev * bound + (length - 1)
        if dirs is not None:
            dirs[k * g * bound:(k + 1) * g * bound] += np.bincount(cell, minlength=g * bound)
        if slices is not None and k < IN_PLANE:
            block = nz * g * bound
            slices[k * block:(k + 1) * block] += np.bincount(zs * (g * bound) + cell, minlength=block)
    per_s = per_d = None
    if slices is not None:
        per_s = slices.reshape(IN_PLANE, nz, g, bound)[..., :longest].astype(np.float64)
    if dirs is not None:
        per_d = dirs.reshape(k_all, g, bound)[..., :longest].astype(np.float64)
    return per_s, per_d, np.arange(1, longest + 1, dtype=np.float64)
