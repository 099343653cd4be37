"""Compiled (numba) kernels for PyRadiomics's GLSZM, GLDM and NGTDM, straight from the discretised ROI box.

:class:`ZoneBox` copies the discretised box ``q`` (grey levels >= 1 inside the ROI, <= 0 outside,
array order z, y, x; integers) once into a zero border as wide as the largest neighbour
distance (its ROI voxels listed where a kernel needs them); the three kernels share it and take
the neighbour offsets (z, y, x) *in both directions*, shape (Na, 3). No (N, Na) neighbour table
is built:

* :func:`glszm_values`: zones of equal grey level connected over the offsets (26-connectivity in
  3-D; PyRadiomics's angles, so ``force2D`` and one-voxel-thick boxes connect in-plane only),
  labelled by a union-find over the ROI voxels in C order, each joining its earlier neighbours of
  its level (a breadth-first fill for small or sparse ROIs and for more than 13 offsets each
  way), then the 16 GLSZM features from the zones' (grey level, size) cells.
* :func:`gldm_values`: each voxel's dependence count (the neighbours in the ROI within ``alpha``
  grey levels; column j of the matrix is dependence j - 1 plus the voxel itself), then the same
  16 sums (the GLDM's 14 features are 14 of them under other names).
* :func:`ngtdm_values`: per grey level, the voxel count n_i and the sum s_i of |i - mean of the
  neighbours in the ROI| (a voxel without one counts with s = 0), then the 5 NGTDM features.

The functions here are plain Python; :func:`medimg.core.jit.compile_kernel` compiles them on first
use (the callers only do so when :func:`medimg.core.jit.wanted`). The NumPy twins are ``glszm`` /
``gldm`` / ``ngtdm`` of :mod:`medimg.features._pyradiomics_calc`; ``tests/test_prad_zone_kernels.py``
compares the two. Indices need no check in the loops: :meth:`ZoneBox.steps` refuses an offset
wider than the border, so every ROI voxel plus a step lies inside the bordered array.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from medimg.core import jit

__all__ = ["ZONE_KEYS", "NGTDM_KEYS", "ZoneBox", "glszm_zones", "glszm_values", "gldm_values", "ngtdm_values"]

_EPS = float(np.spacing(1))

#: Order of the values :func:`glszm_values` and :func:`gldm_values` return (GLSZM names; the GLDM
#: features are the same sums under other names, mapped by the caller).
ZONE_KEYS = ("SmallAreaEmphasis", "LargeAreaEmphasis", "GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized",
             "SizeZoneNonUniformity", "SizeZoneNonUniformityNormalized", "ZonePercentage", "GrayLevelVariance",
             "ZoneVariance", "ZoneEntropy", "LowGrayLevelZoneEmphasis", "HighGrayLevelZoneEmphasis",
             "SmallAreaLowGrayLevelEmphasis", "SmallAreaHighGrayLevelEmphasis", "LargeAreaLowGrayLevelEmphasis",
             "LargeAreaHighGrayLevelEmphasis")
#: Order of the values :func:`ngtdm_values` returns.
NGTDM_KEYS = ("Coarseness", "Contrast", "Busyness", "Complexity", "Strength")


# ------------------------------------------------------------------------------------ plain kernels

def _cell_features(cg: np.ndarray, cs: np.ndarray, cc: np.ndarray, ng: int, ns: int, eps: float) -> np.ndarray:
    """The 16 zone-matrix features (:data:`ZONE_KEYS`) of the matrix P (ng, ns) given by its non-zero
    cells: grey level ``cg`` (1..ng), size ``cs`` (1..ns), count ``cc`` (each cell once)."""
    pg = np.zeros(ng + 1)
    ps = np.zeros(ns + 1)
    nz = 0.0
    npx = 0.0
    sae = 0.0
    lae = 0.0
    sal = 0.0
    sah = 0.0
    lal = 0.0
    lah = 0.0
    for k in range(cg.size):
        c = float(cc[k])
        i = float(cg[k])
        j = float(cs[k])
        i2 = i * i
        j2 = j * j
        pg[cg[k]] += c
        ps[cs[k]] += c
        nz += c
        npx += c * j
        sae += c / j2
        lae += c * j2
        sal += c / (i2 * j2)
        sah += c * i2 / j2
        lal += c * j2 / i2
        lah += c * i2 * j2
    if nz == 0.0:
        nz = 1.0
    if npx == 0.0:
        npx = 1.0
    ent = 0.0
    for k in range(cg.size):
        p = cc[k] / nz
        ent -= p * np.log2(p + eps)
    gln = 0.0
    lgl = 0.0
    hgl = 0.0
    mu_g = 0.0
    for i in range(1, ng + 1):
        v = pg[i]
        gln += v * v
        lgl += v / (i * i)
        hgl += v * i * i
        mu_g += v / nz * i
    var_g = 0.0
    for i in range(1, ng + 1):
        d = i - mu_g
        var_g += pg[i] / nz * d * d
    szn = 0.0
    mu_s = 0.0
    for j in range(1, ns + 1):
        v = ps[j]
        szn += v * v
        mu_s += v / nz * j
    var_s = 0.0
    for j in range(1, ns + 1):
        d = j - mu_s
        var_s += ps[j] / nz * d * d
    out = np.empty(16)
    out[0] = sae / nz
    out[1] = lae / nz
    out[2] = gln / nz
    out[3] = gln / (nz * nz)
    out[4] = szn / nz
    out[5] = szn / (nz * nz)
    out[6] = nz / npx
    out[7] = var_g
    out[8] = var_s
    out[9] = ent
    out[10] = lgl / nz
    out[11] = hgl / nz
    out[12] = sal / nz
    out[13] = sah / nz
    out[14] = lal / nz
    out[15] = lah / nz
    return out


def _prepare(q: np.ndarray, pad: int, min_voxels: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``q`` copied into a zero border ``pad`` voxels wide (flat, int32), the flat indices of the ROI
    voxels (q > 0; C order, int32) where every 4th row suggests fewer than ``min_voxels`` or than a
    quarter of the box (else an empty list: the voxel-wise passes will not read them), their number
    ``nv`` and the largest grey level (0 for an empty ROI; the caller refuses one beyond int32, whose
    copy would be truncated)."""
    nz_, ny, nx = q.shape
    py = ny + 2 * pad
    px = nx + 2 * pad
    flat = np.zeros((nz_ + 2 * pad) * py * px, np.int32)
    ns = 0
    nrows = 0
    for z in range(nz_ if q.size >= min_voxels else 0):  # the estimate (vectorised)
        for y in range(0, ny, 4):
            nrows += 1
            row = q[z, y]
            for x in range(nx):
                ns += row[x] > 0
    est = ns * (nz_ * ny) / max(nrows, 1)
    nv = 0
    ng = 0
    if 4 * est >= q.size and est >= min_voxels:  # large and dense: the copy branch-free, no list
        for z in range(nz_):
            for y in range(ny):
                base = ((z + pad) * py + (y + pad)) * px + pad
                row = q[z, y]
                out = flat[base:base + nx]
                for x in range(nx):
                    g = row[x]
                    inside = g > 0
                    out[x] = g if inside else 0
                    nv += inside
                    ng = max(ng, g)  # (ng >= 0: only levels > 0 count)
        return flat, np.empty(0, np.int32), nv, ng
    return _prepare_listed_c(q, pad, flat)


def _prepare_listed(q: np.ndarray, pad: int, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """:func:`_prepare` with the ROI voxels listed (``flat``: the zeroed bordered array)."""
    nz_, ny, nx = q.shape
    py = ny + 2 * pad
    px = nx + 2 * pad
    vox = np.empty(nz_ * ny * nx, np.int32)
    nv = 0
    ng = 0
    for z in range(nz_):
        for y in range(ny):
            base = ((z + pad) * py + (y + pad)) * px + pad
            for x in range(nx):
                g = q[z, y, x]
                if g > 0:
                    flat[base + x] = g
                    vox[nv] = base + x
                    nv += 1
                    if g > ng:
                        ng = g
    return flat, vox[:nv].copy(), nv, ng


def _roi_voxels(flat: np.ndarray, dims: np.ndarray, pad: int, nv: int) -> np.ndarray:
    """The flat indices (int32, C order) of the ``nv`` ROI voxels (> 0) of the bordered array."""
    vox = np.empty(nv + 1, np.int32)  # each voxel written, the count moved on past ROI voxels only
    k = 0
    for z in range(pad, dims[0] - pad):
        for y in range(pad, dims[1] - pad):
            base = (z * dims[1] + y) * dims[2]
            for x in range(pad, dims[2] - pad):
                vox[k] = base + x
                k = min(k + (flat[base + x] > 0), nv)
    return vox[:nv]


def _merge_table(adj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each set ``m`` of a voxel's earlier neighbours of its own grey level (bit a: neighbour a),
    the connected components those neighbours form among themselves (``adj[a]``: the bits of the
    neighbours one offset away from neighbour a): ``first[m]`` = the first component's lowest bit
    + 16 * the number of components (0 components: bit ``nb``, the voxel itself), ``more[m]`` the
    other components' lowest bits. Neighbours of one component are in one zone already (they are
    earlier voxels, connected among themselves), so the voxel joins one of each."""
    nb = adj.size
    nm = 1 << nb
    first = np.empty(nm, np.uint8)
    more = np.zeros((nm, max(nb - 1, 1)), np.uint8)
    kmax = 0
    for m in range(nm):
        rest = m
        k = 0
        lead = nb
        while rest != 0:
            low = rest & -rest
            comp = low
            while True:  # grow the component through neighbouring set bits
                grow = comp
                c = comp
                while c != 0:
                    b = c & -c
                    a = 0
                    while (b >> a) != 1:
                        a += 1
                    grow |= adj[a] & m
                    c ^= b
                if grow == comp:
                    break
                comp = grow
            a = 0
            while (low >> a) != 1:
                a += 1
            if k == 0:
                lead = a
            else:
                more[m, k - 1] = a
            k += 1
            rest &= ~comp
        first[m] = lead + 16 * k
        kmax = max(kmax, k)
    return first, more[:, :max(kmax - 1, 1)].copy()


def _find(parent: np.ndarray, x: int) -> int:
    """The root of ``x`` (``parent[r] == r``), halving the path on the way (indices made unsigned:
    no negative-index wraparound code, 17 % off the union-find; all are >= 0)."""
    u = np.uint64(x)
    r = parent[u]
    while True:
        r2 = parent[np.uint64(r)]
        if r2 == r:
            return r
        parent[u] = r2
        u = np.uint64(r2)
        r = parent[u]


def _glszm_zones(flat: np.ndarray, dims: np.ndarray, pad: int, bsteps: np.ndarray, first: np.ndarray,
                 more: np.ndarray, nv: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey level and size (int32) of every zone: a union-find over the ROI voxels in C order, each
    joining the zones of its earlier neighbours of the same grey level (``bsteps``: the offsets
    that point back in C order, as flat steps, then a 0 step; ``first`` / ``more``: their
    :func:`_merge_table`; ``nv``: the number of ROI voxels). Roots are each zone's first voxel,
    ``parent`` and ``size`` indexed as ``flat``. A plane is taken 1024 voxels
    (with the borders between its rows) at a time: each voxel's neighbours of equal level first
    (one bit per offset, vectorised), then the voxels joined in order."""
    nzp = dims[0]
    nyp = dims[1]
    nxp = dims[2]
    nb = bsteps.size - 1
    span = (nyp - 2 * pad - 1) * nxp + nxp - 2 * pad  # a plane's voxels, first to last (borders between)
    parent = np.empty(flat.size, np.int32)  # written at each ROI voxel before it is read
    size = np.empty(flat.size, np.int32)
    roots = np.empty(max(nv, 0), np.int32)  # the voxels that started a zone
    chunk = 1024
    mask = np.empty(chunk, np.int32)
    bits = np.empty(nb, np.int32)
    for a in range(nb):
        bits[a] = 1 << a
    zero = np.int32(0)
    nroots = 0
    for z in range(pad, nzp - pad):
        lo0 = (z * nyp + pad) * nxp + pad
        for c0 in range(0, span, chunk):
            lo = lo0 + c0
            n = min(chunk, span - c0)
            cur = flat[lo:lo + n]
            nin = 0
            for i in range(n):
                nin += cur[i] > 0
            if nin == 0:  # no ROI voxel here (brain1's tumour: 14 % off)
                continue
            # the bits, two offsets a pass (int32 selects: vectorised; the neighbour slices lie
            # inside the bordered array, the caller checked the offsets)
            a0 = nb % 2
            if a0 == 1:
                b1 = bits[0]
                n1 = flat[lo + bsteps[0]:lo + bsteps[0] + n]
                for i in range(n):
                    mask[i] = b1 if n1[i] == cur[i] else zero
            else:
                mask[:n] = 0
            for a in range(a0, nb, 2):
                b1 = bits[a]
                b2 = bits[a + 1]
                n1 = flat[lo + bsteps[a]:lo + bsteps[a] + n]
                n2 = flat[lo + bsteps[a + 1]:lo + bsteps[a + 1] + n]
                for i in range(n):
                    c = cur[i]
                    mask[i] |= (b1 if n1[i] == c else zero) | (b2 if n2[i] == c else zero)
            for i in range(n):
                if cur[i] <= 0:
                    continue
                p = lo + i
                up = np.uint64(p)
                f = first[np.uint64(mask[i])]
                parent[up] = p
                size[up] = 0
                root = _find_c(parent, p + bsteps[f & 15])  # no component: the voxel itself
                k = np.int64(f >> 4)
                for j in range(k - 1):
                    r = _find_c(parent, p + bsteps[more[mask[i], j]])
                    if r != root:  # two zones meet: the later root hooks onto the earlier
                        if r < root:
                            size[np.uint64(r)] += size[np.uint64(root)]
                            parent[np.uint64(root)] = r
                            root = r
                        else:
                            size[np.uint64(root)] += size[np.uint64(r)]
                            parent[np.uint64(r)] = root
                parent[up] = root
                size[np.uint64(root)] += 1
                if nroots < roots.size:  # (nv ROI voxels: always)
                    roots[nroots] = p
                    nroots += root == p
    nzones = 0
    for k in range(nroots):
        r = roots[k]
        if parent[r] == r:
            roots[nzones] = r
            nzones += 1
    zone_g = np.empty(nzones, np.int32)
    zone_s = np.empty(nzones, np.int32)
    for k in range(nzones):
        r = roots[k]
        zone_g[k] = flat[r]
        zone_s[k] = size[r]
    return zone_g, zone_s


def _glszm_fill(flat_in: np.ndarray, vox: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey level and size (int32) of every zone by a breadth-first fill over ``steps`` (any
    offsets; :func:`_glszm_zones` is faster where they are within one voxel)."""
    flat = flat_in.copy()
    na = steps.size
    n = vox.size
    queue = np.empty(n, np.int32)
    zone_g = np.empty(n, np.int32)
    zone_s = np.empty(n, np.int32)
    nzones = 0
    for p in vox:
        g = flat[p]
        if g > 0:
            # breadth-first fill of the zone holding voxel p; a voxel is zeroed (visited) when
            # queued, so each is queued once, and only ROI voxels (never the zero border) are, so
            # c + step stays inside the padded array
            flat[p] = 0
            queue[0] = p
            head = 0
            tail = 1
            while head < tail:
                c = queue[head]
                head += 1
                for a in range(na):
                    t = np.uint64(c + steps[a])  # >= 0 (the border); unsigned: no wraparound code
                    if flat[t] == g:
                        flat[t] = 0
                        queue[tail] = t
                        tail += 1
            zone_g[nzones] = g
            zone_s[nzones] = tail
            nzones += 1
    return zone_g[:nzones].copy(), zone_s[:nzones].copy()


def _zone_cells(zone_g: np.ndarray, zone_s: np.ndarray, ng: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The non-zero cells of P (grey level, size, count; int64, by level then first appearance)
    and the largest size, from the zones' grey levels (1..ng) and sizes: zones bucketed by grey
    level, then per level the zones of each size counted in a scratch row (cleared as read out)."""
    nzones = zone_g.size
    smax = 0
    start = np.zeros(ng + 2, np.int64)
    for k in range(nzones):
        start[zone_g[k] + 1] += 1
        smax = max(smax, zone_s[k])
    for i in range(1, ng + 2):
        start[i] += start[i - 1]
    fill = start.copy()
    order = np.empty(nzones, np.int32)
    for k in range(nzones):
        order[fill[zone_g[k]]] = zone_s[k]
        fill[zone_g[k]] += 1
    scratch = np.zeros(smax + 1, np.int64)
    ncell = 0
    for i in range(1, ng + 1):  # the number of cells first (exact arrays below)
        for k in range(start[i], start[i + 1]):
            sz = order[k]
            ncell += scratch[sz] == 0
            scratch[sz] = 1
        for k in range(start[i], start[i + 1]):
            scratch[order[k]] = 0
    cg = np.empty(ncell, np.int64)
    cs = np.empty(ncell, np.int64)
    cc = np.empty(ncell, np.int64)
    ncell = 0
    for i in range(1, ng + 1):
        for k in range(start[i], start[i + 1]):
            scratch[order[k]] += 1
        for k in range(start[i], start[i + 1]):
            sz = order[k]
            if scratch[sz] > 0:
                cg[ncell] = i
                cs[ncell] = sz
                cc[ncell] = scratch[sz]
                scratch[sz] = 0
                ncell += 1
    return cg, cs, cc, smax


def _glszm_values(flat: np.ndarray, dims: np.ndarray, pad: int, bsteps: np.ndarray, first: np.ndarray,
                  more: np.ndarray, nv: int, ng: int, eps: float) -> np.ndarray:
    """The 16 GLSZM features (:data:`ZONE_KEYS`) of the zones of :func:`_glszm_zones`."""
    zone_g, zone_s = _glszm_zones_c(flat, dims, pad, bsteps, first, more, nv)
    cg, cs, cc, smax = _zone_cells_c(zone_g, zone_s, ng)
    return _cell_features_c(cg, cs, cc, ng, smax, eps)


def _glszm_fill_values(flat: np.ndarray, vox: np.ndarray, steps: np.ndarray, ng: int, eps: float) -> np.ndarray:
    """The 16 GLSZM features (:data:`ZONE_KEYS`) of the zones of :func:`_glszm_fill`."""
    zone_g, zone_s = _glszm_fill_c(flat, vox, steps)
    cg, cs, cc, smax = _zone_cells_c(zone_g, zone_s, ng)
    return _cell_features_c(cg, cs, cc, ng, smax, eps)


def _neighbourhood_table(P: np.ndarray, cnt: np.ndarray, s: np.ndarray, ng: int, eps: float) -> np.ndarray:
    """The GLDM's 16 values then the NGTDM's 5 from the dependence counts ``P`` (ng + 1, width),
    each grey level's voxel count ``cnt`` and sum ``s`` of |i - mean of the neighbours|."""
    width = P.shape[1]
    ncell = 0
    for i in range(1, ng + 1):
        for j in range(width):
            if P[i, j] != 0:
                ncell += 1
    cg = np.empty(ncell, np.int64)
    cs = np.empty(ncell, np.int64)
    cc = np.empty(ncell, np.int64)
    k = 0
    for i in range(1, ng + 1):
        for j in range(width):
            if P[i, j] != 0:
                cg[k] = i
                cs[k] = j + 1
                cc[k] = P[i, j]
                k += 1
    out = np.empty(21)
    out[:16] = _cell_features_c(cg, cs, cc, ng, width, eps)
    out[16:] = _ngtdm_features_c(cnt, s, ng)
    return out


def _neighbourhood_rows(flat: np.ndarray, dims: np.ndarray, pad: int, steps: np.ndarray, ng: int, alpha: float,
                        eps: float) -> np.ndarray:
    """:func:`_neighbourhood_values` a row of the box at a time: per neighbour offset, the shifted row
    is contiguous, so each voxel's neighbour sum, count in the ROI and dependence are summed for the
    whole row at once (int32, vectorised; the caller keeps ``ng`` times the offsets below 2^31), then
    the row's ROI voxels counted in order (the same order as ``vox``: the same sums, bit for bit).
    Only the span from a row's first to its last ROI voxel is summed; a span less than 1/3 in the
    ROI is done voxel by voxel (fragments).
    ``dims``: the bordered array's shape (z, y, x); ``pad``: its border."""
    nzp = dims[0]
    nyp = dims[1]
    nxp = dims[2]
    nx = nxp - 2 * pad
    na = steps.size
    width = na + 1
    P = np.zeros((ng + 1, width), np.int64)
    cnt = np.zeros(ng + 1)
    s = np.zeros(ng + 1)
    tot = np.empty(max(nx, 0), np.int32)
    kk = np.empty(max(nx, 0), np.int32)
    dep = np.empty(max(nx, 0), np.int32)
    exact = alpha == 0.0
    for z in range(pad, nzp - pad):
        for y in range(pad, nyp - pad):
            base = (z * nyp + y) * nxp + pad
            row = flat[base:base + nx]
            nin = 0
            x0 = nx
            x1 = 0
            for x in range(nx):
                if row[x] > 0:
                    nin += 1
                    x0 = min(x0, x)
                    x1 = x + 1
            if nin == 0:
                continue
            if 3 * nin < x1 - x0:  # a sparse row (fragments): its ROI voxels one by one
                for x in range(x0, x1):
                    g = row[x]
                    if g <= 0:
                        continue
                    p = base + x
                    d = 0
                    k = 0
                    total = 0
                    for a in range(na):
                        h = flat[p + steps[a]]
                        total += h
                        k += h > 0
                        if exact:
                            d += h == g
                        else:
                            d += (h > 0) & (abs(g - h) <= alpha)
                    P[g, d] += 1
                    cnt[g] += 1.0
                    if k > 0:
                        s[g] += abs(g - total / k)
                continue
            # the span from the row's first to its last ROI voxel, at once
            span = x1 - x0
            row = flat[base + x0:base + x1]
            tot[:span] = 0
            kk[:span] = 0
            dep[:span] = 0
            for a in range(na):
                start = base + x0 + steps[a]  # inside the bordered array: ZoneBox.steps checked the offsets
                nb = flat[start:start + span]
                if exact:
                    for x in range(span):
                        h = nb[x]
                        tot[x] += h
                        kk[x] += h > 0
                        dep[x] += h == row[x]
                else:
                    for x in range(span):
                        h = nb[x]
                        tot[x] += h
                        kk[x] += h > 0
                        dep[x] += (h > 0) & (abs(row[x] - h) <= alpha)
            for x in range(span):
                g = row[x]
                if g > 0:
                    P[g, dep[x]] += 1
                    cnt[g] += 1.0
                    if kk[x] > 0:
                        s[g] += abs(g - tot[x] / kk[x])
    return _neighbourhood_table_c(P, cnt, s, ng, eps)


def _neighbourhood_values(flat: np.ndarray, vox: np.ndarray, steps: np.ndarray, ng: int, alpha: float,
                          eps: float) -> np.ndarray:
    """The GLDM's 16 zone-matrix values (:data:`ZONE_KEYS`) then the 5 NGTDM features
    (:data:`NGTDM_KEYS`), from one pass over every ROI voxel's neighbours."""
    na = steps.size
    width = na + 1
    P = np.zeros((ng + 1, width), np.int64)
    cnt = np.zeros(ng + 1)
    s = np.zeros(ng + 1)
    exact = alpha == 0.0
    for p in vox:
        g = flat[p]
        dep = 0
        k = 0
        total = 0
        if exact:
            for a in range(na):
                h = flat[np.uint64(p + steps[a])]  # 0 outside the ROI; unsigned: no wraparound code
                total += h
                k += np.int64(h > 0)
                dep += np.int64(h == g)
        else:
            for a in range(na):
                h = flat[np.uint64(p + steps[a])]
                total += h
                k += np.int64(h > 0)
                dep += np.int64((h > 0) & (abs(g - h) <= alpha))
        P[g, dep] += 1
        cnt[g] += 1.0
        if k > 0:
            s[g] += abs(g - total / k)
    return _neighbourhood_table_c(P, cnt, s, ng, eps)


def _ngtdm_features(cnt: np.ndarray, s: np.ndarray, ng: int) -> np.ndarray:
    """The 5 NGTDM features (:data:`NGTDM_KEYS`) from the voxel count and s_i of each grey level 1..ng."""
    # the grey levels present
    ngp = 0
    for i in range(1, ng + 1):
        if cnt[i] > 0:
            ngp += 1
    iv = np.empty(ngp)
    pv = np.empty(ngp)
    sv = np.empty(ngp)
    nvp = 0.0
    k = 0
    for i in range(1, ng + 1):
        if cnt[i] > 0:
            iv[k] = i
            pv[k] = cnt[i]
            sv[k] = s[i]
            nvp += cnt[i]
            k += 1
    for k in range(ngp):
        pv[k] /= nvp
    ps_sum = 0.0
    s_sum = 0.0
    for k in range(ngp):
        ps_sum += pv[k] * sv[k]
        s_sum += sv[k]
    contrast = 0.0
    absdiff = 0.0
    complexity = 0.0
    strength = 0.0
    for a in range(ngp):
        for b in range(ngp):
            d = iv[a] - iv[b]
            contrast += pv[a] * pv[b] * d * d
            absdiff += abs(iv[a] * pv[a] - iv[b] * pv[b])
            den = pv[a] + pv[b]
            if den == 0.0:
                den = 1.0
            complexity += abs(d) * (pv[a] * sv[a] + pv[b] * sv[b]) / den
            strength += (pv[a] + pv[b]) * d * d
    out = np.empty(5)
    out[0] = 1.0 / ps_sum if ps_sum != 0.0 else 1e6
    div = ngp * (ngp - 1)
    out[1] = contrast * s_sum / nvp / div if div != 0 else 0.0
    out[2] = ps_sum / absdiff if absdiff != 0.0 else 0.0
    out[3] = complexity / nvp
    out[4] = strength / s_sum if s_sum != 0.0 else 0.0
    return out


# ------------------------------------------------------------------------------- compiled wrappers

# the helpers the kernels call, rebound to their compiled twins by _compiled()
_cell_features_c: Callable[..., Any] = _cell_features
_ngtdm_features_c: Callable[..., Any] = _ngtdm_features
_neighbourhood_table_c: Callable[..., Any] = _neighbourhood_table
_find_c: Callable[..., Any] = _find
_prepare_listed_c: Callable[..., Any] = _prepare_listed
_zone_cells_c: Callable[..., Any] = _zone_cells
_glszm_zones_c: Callable[..., Any] = _glszm_zones
_glszm_fill_c: Callable[..., Any] = _glszm_fill


_READY: dict[Callable[..., Any], Callable[..., Any]] = {}


def _compiled(func: Callable[..., Any]) -> Callable[..., Any]:
    kernel = _READY.get(func)
    if kernel is None:
        global _cell_features_c, _ngtdm_features_c, _neighbourhood_table_c, _find_c, _zone_cells_c
        global _glszm_zones_c, _glszm_fill_c, _prepare_listed_c
        _prepare_listed_c = jit.compile_kernel(_prepare_listed)
        _cell_features_c = jit.compile_kernel(_cell_features)
        _find_c = jit.compile_kernel(_find)
        _zone_cells_c = jit.compile_kernel(_zone_cells)
        _glszm_zones_c = jit.compile_kernel(_glszm_zones)
        _glszm_fill_c = jit.compile_kernel(_glszm_fill)
        _ngtdm_features_c = jit.compile_kernel(_ngtdm_features)
        _neighbourhood_table_c = jit.compile_kernel(_neighbourhood_table)
        kernel = _READY[func] = jit.compile_kernel(func)
    return kernel


#: The union-find labels the GLSZM's zones where the ROI has at least this many voxels and fills at
#: least 1/:data:`UNION_FIND_MIN_SHARE` of its box (its pass covers the whole box; the fill's, only the
#: ROI voxels and their neighbours: faster on small or sparse ROIs, measured on crops of the IBSI CT
#: phantom, brain1 and the benchmark's small ROIs).
UNION_FIND_MIN_VOXELS = 1024
UNION_FIND_MIN_SHARE = 8


@functools.lru_cache(maxsize=32)
def _merge_plan(key: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For the offsets ``key`` (int64 (z, y, x) rows, both directions): the ones pointing back in C
    order (nearest first, so the voxel before along x is bit 0 where it is an offset) and their
    :func:`_merge_table`; None where more than 13 point back (the table would be too large)."""
    offs = np.unique(np.frombuffer(key, dtype=np.int64).reshape(-1, 3), axis=0)
    both = {tuple(int(v) for v in o) for o in offs}
    back = sorted((o for o in both if o < (0, 0, 0)), reverse=True)
    if len(back) > 13:
        return None
    adj = np.zeros(len(back), np.int64)
    for a, oa in enumerate(back):
        for b, ob in enumerate(back):
            if a != b and tuple(u - v for u, v in zip(oa, ob, strict=True)) in both:
                adj[a] |= 1 << b
    first, more = _compiled(_merge_table)(adj)
    for arr in (first, more):
        arr.flags.writeable = False
    return np.asarray(back, dtype=np.int64).reshape(-1, 3), first, more


class ZoneBox:
    """A discretised box prepared once for the three kernels: ``q`` (3-D, grey levels >= 1 in the
    ROI) in a zero border ``pad`` voxels wide, the number of ROI voxels ``nv`` (their flat indices
    :attr:`vox` listed with the copy where the ROI looks small or sparse, else on first use) and
    the largest level."""

    def __init__(self, q: np.ndarray, pad: int) -> None:
        q = np.asarray(q)
        if q.ndim != 3:
            raise ValueError(f"the discretised box must be 3-D, got shape {q.shape}")
        if q.dtype not in (np.int32, np.int64):
            if q.dtype.kind not in "iub" or (q.size and q.dtype.kind == "u" and int(q.max()) >= 2**31):
                raise ValueError(f"the discretised box must hold integer grey levels, got {q.dtype}")
            q = q.astype(np.int64)
        self.pad = max(int(pad), 0)
        self.shape = q.shape
        ny, nx = q.shape[1] + 2 * self.pad, q.shape[2] + 2 * self.pad
        if (q.shape[0] + 2 * self.pad) * ny * nx >= 2**31:
            raise ValueError(f"the box {q.shape} is too large for the compiled kernels (int32 indices)")
        self.flat, vox, nv, ng = _compiled(_prepare)(q, self.pad, UNION_FIND_MIN_VOXELS)
        if ng >= 2**31:
            raise ValueError(f"grey level {ng} is beyond the compiled kernels' int32 range")
        self.ng = int(ng)
        self.nv = int(nv)
        self.strides = np.asarray([ny * nx, nx, 1], dtype=np.int64)
        self.dims = np.asarray([q.shape[0] + 2 * self.pad, ny, nx], dtype=np.int64)
        self._vox: np.ndarray | None = None
        if vox.size == self.nv:  # listed where the voxel-wise passes will likely read them
            self._vox = vox
        self.size = int(q.size)  # voxels in the box (without the border)
        self._steps: dict[bytes, np.ndarray] = {}
        self._plans: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}
        self._neighbourhood: dict[tuple[bytes, float], np.ndarray] = {}

    def merge_plan(self, offs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The union-find's offsets pointing back in C order as flat steps, then a 0 step, and their
        :func:`_merge_table` (cached); None for more than 13 of them (see :func:`_merge_plan`)."""
        offs = np.asarray(offs, dtype=np.int64).reshape(-1, 3)
        key = offs.tobytes()
        if key not in self._plans:
            plan = _merge_plan(key)
            if plan is not None:
                back, first, more = plan
                plan = (np.concatenate((back @ self.strides, [0])), first, more)
            self._plans[key] = plan
        return self._plans[key]

    @property
    def vox(self) -> np.ndarray:
        """The ROI voxels' flat indices in the bordered array (int32, C order; only the GLSZM's fill
        and the voxel-wise GLDM/NGTDM pass, for small or sparse ROIs, read them)."""
        if self._vox is None:
            self._vox = _compiled(_roi_voxels)(self.flat, self.dims, self.pad, self.nv)
        return self._vox

    def steps(self, offs: np.ndarray) -> np.ndarray:
        """The offsets (z, y, x), shape (Na, 3), as flat steps (cached); ValueError where one leaves
        the border (so that every ROI voxel plus a step lies inside the bordered array)."""
        offs = np.asarray(offs, dtype=np.int64).reshape(-1, 3)
        key = offs.tobytes()
        steps = self._steps.get(key)
        if steps is None:
            if offs.size and int(np.abs(offs).max()) > self.pad:
                raise ValueError(f"an offset of {int(np.abs(offs).max())} voxels needs a border of that width, "
                                 f"the box has {self.pad}")
            steps = self._steps[key] = offs @ self.strides
        return steps


def _union_find_plan(box: ZoneBox, offs: np.ndarray, fill: bool | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """:meth:`ZoneBox.merge_plan` where the union-find labels the zones: at most 13 offsets each way
    and ``fill`` False, or None and the ROI large enough (:data:`UNION_FIND_MIN_VOXELS`,
    :data:`UNION_FIND_MIN_SHARE`); None for the fill."""
    if fill is None:
        fill = box.nv < UNION_FIND_MIN_VOXELS or UNION_FIND_MIN_SHARE * box.nv < box.size
    return None if fill else box.merge_plan(offs)


def glszm_zones(box: ZoneBox, offs: np.ndarray, fill: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Grey level and size (int32) of every zone of the box, in no set order; zones connect
    through ``offs`` (z, y, x, both directions of each angle). ``fill``: force the breadth-first
    fill (True) or the union-find (False; the fill all the same for more than 13 offsets each way);
    None: the faster one."""
    steps = box.steps(offs)  # checks the offsets against the border
    plan = _union_find_plan(box, offs, fill)
    if plan is None:
        return _compiled(_glszm_fill)(box.flat, box.vox, steps)
    return _compiled(_glszm_zones)(box.flat, box.dims, box.pad, *plan, box.nv)


def glszm_values(box: ZoneBox, offs: np.ndarray, fill: bool | None = None) -> np.ndarray:
    """The 16 GLSZM features (:data:`ZONE_KEYS` order) of the box; zones connect through ``offs``
    (z, y, x, both directions of each angle); ``fill`` as for :func:`glszm_zones`."""
    steps = box.steps(offs)
    plan = _union_find_plan(box, offs, fill)
    if plan is None:
        return _compiled(_glszm_fill_values)(box.flat, box.vox, steps, box.ng, _EPS)
    return _compiled(_glszm_values)(box.flat, box.dims, box.pad, *plan, box.nv, box.ng, _EPS)


def _neighbourhood(box: ZoneBox, offs: np.ndarray, alpha: float) -> np.ndarray:
    """The GLDM then NGTDM values of one pass (kept on the box: the second class reuses them)."""
    steps = box.steps(offs)
    key = (steps.tobytes(), float(alpha))
    vals = box._neighbourhood.get(key)
    if vals is None:
        # by rows where the ROI fills a quarter of the box (the IBSI CT phantom; not brain1's tumour
        # or fragments, where the voxel list is cheaper) and the row sums fit int32
        if box.ng * max(steps.size, 1) < 2**31 and 4 * box.nv >= int(np.prod(box.shape)) > 0:
            vals = _compiled(_neighbourhood_rows)(box.flat, box.dims, box.pad, steps, box.ng, float(alpha), _EPS)
        else:
            vals = _compiled(_neighbourhood_values)(box.flat, box.vox, steps, box.ng, float(alpha), _EPS)
        box._neighbourhood[key] = vals
    return vals


def gldm_values(box: ZoneBox, offs: np.ndarray, alpha: float) -> np.ndarray:
    """The GLDM's zone-matrix features (:data:`ZONE_KEYS` order; column j = dependence j - 1 plus
    the voxel itself) of the box: a neighbour at ``offs`` depends when in the ROI and within
    ``alpha`` grey levels."""
    return _neighbourhood(box, offs, alpha)[:16]


def ngtdm_values(box: ZoneBox, offs: np.ndarray, alpha: float = 0.0) -> np.ndarray:
    """The 5 NGTDM features (:data:`NGTDM_KEYS` order) of the box over the neighbours at ``offs``
    (``alpha``, the GLDM's, only shares the pass with :func:`gldm_values`)."""
    return _neighbourhood(box, offs, alpha)[16:]
