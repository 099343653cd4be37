"""Connected components of equal values and the city-block distance transform, in NumPy.

The radiomics zone matrices (GLSZM, GLDZM) need these two on the region's box; from
``scipy.ndimage`` / ``skimage.measure`` they would cost a command about 0.1 s of SciPy start-up
(``medimg features`` imports no SciPy at all). Both give exactly what the libraries give:
:func:`label_equal` is ``skimage.measure.label(values, background=0, connectivity=3)`` (zones
of one grey level), :func:`taxicab_distance` is ``scipy.ndimage.distance_transform_cdt`` with
the face-neighbour structure.
"""

from __future__ import annotations

import numpy as np

__all__ = ["label_equal", "taxicab_distance"]


def _half_offsets(in_plane: bool) -> list[tuple[int, int, int]]:
    """One of each pair of opposite neighbour offsets: 26-neighbourhood, or 8 within a slice."""
    offs = [(dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
            if (dz, dy, dx) > (0, 0, 0)]
    return [o for o in offs if o[0] == 0] if in_plane else offs


def label_equal(values: np.ndarray, *, background: int = 0, in_plane: bool = False) -> tuple[np.ndarray, int]:
    """Label the connected zones of equal value of a 3-D integer array.

    Voxels are connected when they touch by a face, edge or corner (26-neighbourhood) and have
    the same value; with ``in_plane``, only within a slice of axis 0 (8-neighbourhood).
    ``background`` voxels get label 0, the others 1..n, numbered as
    ``skimage.measure.label(values, background=0, connectivity=3)`` numbers them (the same
    zones): in C order of each zone's first voxel (in Fortran order when the last axis has
    length 1, where scikit-image works on the array reversed).

    Returns (labels (same shape, int64), n)."""
    values = np.asarray(values)
    if values.ndim != 3:
        raise ValueError(f"label_equal: a 3-D array is needed, got {values.ndim}-D")
    # padded by one background voxel per side: a neighbour across an edge is background, so
    # pairs are flat index pairs (i, i + delta) without bounds checks
    flat = np.pad(values, 1, constant_values=background).ravel()
    shp = tuple(n + 2 for n in values.shape)
    fg = flat != background
    us = []
    deltas = []
    for dz, dy, dx in _half_offsets(in_plane):
        delta = (dz * shp[1] + dy) * shp[2] + dx  # > 0
        same = fg[:-delta] & (flat[:-delta] == flat[delta:])
        us.append(np.flatnonzero(same))
        deltas.append(delta)
    u = np.concatenate(us)
    v = u + np.repeat(np.array(deltas, dtype=u.dtype), [len(x) for x in us])
    # union-find over the edges: hook the larger root onto the smaller, then compress fully;
    # each zone's root ends as its smallest (first in C order) voxel
    parent = np.arange(flat.size, dtype=u.dtype)
    while u.size:
        pu, pv = parent[u], parent[v]
        differ = pu != pv
        u, v, pu, pv = u[differ], v[differ], pu[differ], pv[differ]
        if not u.size:
            break
        np.minimum.at(parent, np.maximum(pu, pv), np.minimum(pu, pv))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    inner = (slice(1, -1),) * 3
    roots = parent.reshape(shp)[inner]
    inside = values != background
    if values.shape[2] == 1:  # number zones by their first voxel in Fortran order
        first_f = np.full(flat.size, flat.size, dtype=np.int64)
        f_rank = np.arange(values.size, dtype=np.int64).reshape(values.shape, order="F")
        np.minimum.at(first_f, roots[inside], f_rank[inside])
        key = first_f[roots[inside]]
    else:
        key = roots[inside]
    order = np.unique(key)
    labels = np.zeros(values.shape, dtype=np.int64)
    labels[inside] = np.searchsorted(order, key) + 1
    return labels, int(order.size)


def taxicab_distance(mask: np.ndarray, *, in_plane: bool = False) -> np.ndarray:
    """City-block distance (voxels) of every voxel of boolean ``mask`` to the nearest voxel
    outside it (0 outside): ``scipy.ndimage.distance_transform_cdt(mask, metric=structure)``
    with the face-neighbour structure (3-D), or with ``in_plane`` the 4-neighbour structure in
    each slice of axis 0; int32, and -1 where no outside voxel is within reach, as SciPy's.

    Exact: the L1 distance is separable, a minimum over each axis in turn of
    ``d[j] + |i - j|``, each done by two running minima."""
    mask = np.asarray(mask, dtype=bool)
    big = int(sum(mask.shape)) + 1  # more than any distance
    d = mask.astype(np.int32)
    d *= big
    for ax in range(1 if in_plane else 0, mask.ndim):
        n = mask.shape[ax]
        pos = np.arange(n, dtype=np.int32).reshape([-1 if k == ax else 1 for k in range(mask.ndim)])
        d -= pos
        np.minimum.accumulate(d, axis=ax, out=d)  # min over j <= i of d[j] + (i - j), less i
        d += 2 * pos
        flipped = np.flip(d, axis=ax)
        np.minimum.accumulate(flipped, axis=ax, out=flipped)  # over j >= i, plus i
        d -= pos
    d[d >= big] = -1  # no outside voxel within reach: SciPy's -1
    return d
