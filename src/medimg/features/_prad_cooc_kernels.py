"""Compiled loops of PyRadiomics mode's GLCM (with its MCC) and GLRLM (``_pyradiomics_calc``).

Plain Python functions, compiled on first use by :func:`medimg.core.jit.compile_kernel` (numba);
:func:`kernel` returns the compiled twin. The matrices are built straight from the discretised ROI
box (grey levels >= 1 inside, 0 outside; int64, C order): every voxel visits its neighbour at each
offset, bounds checked, with no padded copy and no neighbour table. Counts are exact integers held
in float64. Grey levels index the matrices through ``rank`` (level -> row among the levels present);
a level outside ``rank`` raises ``ValueError``.

The feature kernels compute, per angle, the sums the NumPy path computes with one reduction each
(same formulas, other summation order: equal to rounding). Their columns follow ``GLCM_COLUMNS``
and ``GLRLM_COLUMNS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from medimg.core import jit

__all__ = ["kernel", "GLCM_COLUMNS", "GLRLM_COLUMNS"]

_EPS = float(np.spacing(1))

#: Columns of :func:`glcm_features`'s output (every GLCM feature but MCC).
GLCM_COLUMNS = ("Autocorrelation", "JointAverage", "ClusterProminence", "ClusterShade", "ClusterTendency",
                "Contrast", "Correlation", "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance",
                "JointEnergy", "JointEntropy", "Imc1", "Imc2", "Idm", "Idmn", "Id", "Idn", "InverseVariance",
                "MaximumProbability", "SumAverage", "SumEntropy", "SumSquares")
#: Columns of :func:`glrlm_features`'s output.
GLRLM_COLUMNS = ("ShortRunEmphasis", "LongRunEmphasis", "GrayLevelNonUniformity",
                 "GrayLevelNonUniformityNormalized", "RunLengthNonUniformity", "RunLengthNonUniformityNormalized",
                 "RunPercentage", "GrayLevelVariance", "RunVariance", "RunEntropy", "LowGrayLevelRunEmphasis",
                 "HighGrayLevelRunEmphasis", "ShortRunLowGrayLevelEmphasis", "ShortRunHighGrayLevelEmphasis",
                 "LongRunLowGrayLevelEmphasis", "LongRunHighGrayLevelEmphasis")
GLCM_INDEX = {name: k for k, name in enumerate(GLCM_COLUMNS)}
GLRLM_INDEX = {name: k for k, name in enumerate(GLRLM_COLUMNS)}


#: Helpers the loops call: compiled first and bound in place of the Python functions (numba
#: resolves a loop's globals when it compiles it).
_HELPERS = ("_tridiagonal", "_tridiagonal_batch", "_sturm6", "_two", "_lu", "_mcc_setup", "_mcc_square",
            "_mcc_eigen", "glcm_counts", "glcm_features",
            "nan_means", "mcc_parts", "angle_normalised", "glrlm_counts", "glrlm_features")


def kernel(func: Callable[..., Any]) -> Callable[..., Any]:
    """The compiled twin of one of this module's loops (compiled once per process)."""
    compiled = _COMPILED.get(func)
    if compiled is None:
        space = globals()
        for name in _HELPERS:
            plain = _PLAIN.setdefault(name, space[name])
            space[name] = jit.compile_kernel(plain)
        compiled = _COMPILED[func] = jit.compile_kernel(getattr(func, "py_func", func))
    return compiled


_PLAIN: dict[str, Callable[..., Any]] = {}
_COMPILED: dict[Callable[..., Any], Callable[..., Any]] = {}


def nan_means(table: np.ndarray) -> np.ndarray:
    """Mean of each column over its rows that are not NaN (NaN where none are)."""
    na, nc = table.shape
    out = np.empty(nc, dtype=np.float64)
    for c in range(nc):
        total = 0.0
        count = 0
        for a in range(na):
            v = table[a, c]
            if v == v:
                total += v
                count += 1
        out[c] = total / count if count else np.nan
    return out


# ------------------------------------------------------------------------------------------- matrices

def glcm_counts(q: np.ndarray, offs: np.ndarray, rank: np.ndarray, nl: int, symmetric: bool) -> np.ndarray:
    """Co-occurrence counts (Na, Nl, Nl): voxel of level i with its neighbour at ``offs[a]`` of
    level j, both in the ROI (``symmetric``: plus the transpose). The box is first mapped to
    ``rank + 1`` (int32; 0 outside the ROI) inside a border of zeros as wide as the longest offset,
    so that the neighbour's value indexes its column directly (column 0: outside, dropped) with no
    bounds check or branch per neighbour; counted as int32 (Nl, Na, Nl + 1), so that one voxel's
    counts fall in one block."""
    n0, n1, n2 = q.shape
    na = offs.shape[0]
    nrank = rank.shape[0]
    reach = 0
    for a in range(na):
        for k in range(3):
            reach = max(reach, abs(offs[a, k]))
    m1 = n1 + 2 * reach
    m2 = n2 + 2 * reach
    qr = np.empty((n0 + 2 * reach) * m1 * m2, dtype=np.int32)  # empty + fill: see glrlm_counts
    qr[:] = 0
    for z in range(n0):
        for y in range(n1):
            row = ((z + reach) * m1 + y + reach) * m2 + reach
            for x in range(n2):
                g = q[z, y, x]
                if g > 0:
                    if g >= nrank or rank[g] < 0 or rank[g] >= nl:
                        raise ValueError("grey level outside the levels given")
                    qr[row + x] = rank[g] + 1
    steps = np.empty(na, dtype=np.int64)
    for a in range(na):
        steps[a] = (offs[a, 0] * m1 + offs[a, 1]) * m2 + offs[a, 2]
    w = nl + 1
    R = np.empty(nl * na * w, dtype=np.int32)  # 2^31 - 1 pairs per cell: a box below 2^31 voxels
    R[:] = 0
    for z in range(n0):
        for y in range(n1):
            row = ((z + reach) * m1 + y + reach) * m2 + reach
            for x in range(n2):
                v = row + x
                g = qr[v]
                if g == 0:
                    continue
                base = (g - 1) * na * w
                for a in range(na):
                    R[base + a * w + qr[v + steps[a]]] += 1
    P = np.empty((na, nl, nl), dtype=np.float64)
    for i in range(nl):
        for a in range(na):
            b = (i * na + a) * w + 1
            for j in range(nl):
                P[a, i, j] = R[b + j]
    if symmetric:
        for a in range(na):
            for i in range(nl):
                for j in range(i, nl):
                    t = P[a, i, j] + P[a, j, i]
                    P[a, i, j] = t
                    P[a, j, i] = t
    return P


def glrlm_counts(q: np.ndarray, offs: np.ndarray, rank: np.ndarray, nl: int, nr: int) -> np.ndarray:
    """Run-length counts (Na, Nl, L): runs of equal level along ``offs[a]`` (a run ends at a
    voxel of another level, outside the ROI or outside the box). An angle whose runs are all one
    voxel long and along which no line of the box holds two ROI voxels gets no counts
    (PyRadiomics's rule). The offsets must point forward in C order (PyRadiomics's angles do).
    L: the longest run (at most ``nr``); longer runs raise ``ValueError``.

    Each voxel's run so far is one more than that of the voxel before it along the angle when that
    one has its level, else 1. A run of length n has exactly one voxel whose run so far is L for
    each L <= n, so with H[g, L] the number of voxels of level g whose run so far is L, the runs of
    length exactly L are H[g, L] - H[g, L + 1]; H[g, 1] is the voxels of level g less those with
    L >= 2, so only those are counted one by one.

    Plane by plane (the levels as int32 and, per angle, each cell's key L << s | level for two
    planes): for an angle with a z step one branch-free loop over the plane reads the plane before
    (vectorised), for an in-plane angle one such loop per row reads the row before; the cells whose
    neighbour lies past the box's faces (there the loop's neighbour wraps around a row or plane) are
    then set to L = 1; along x a scalar recurrence per row. The ROI voxels' keys with L >= 2 are
    gathered branch-free and counted (int32) per raw level; the levels' rows (``rank``) are applied
    at the end."""
    n0, n1, n2 = q.shape
    na = offs.shape[0]
    nrank = rank.shape[0]
    for a in range(na):
        dz = offs[a, 0]
        dy = offs[a, 1]
        dx = offs[a, 2]
        if dz < 0 or dz > 1 or dy < -1 or dy > 1 or dx < -1 or dx > 1:
            raise ValueError("run-length offsets must be unit steps pointing forward in C order")
        if dz == 0 and (dy < 0 or (dy == 0 and dx <= 0)):
            raise ValueError("run-length offsets must be unit steps pointing forward in C order")
    plane = n1 * n2
    s = 0  # key = L << s | raw level: the run so far and the level in one int32
    while (1 << s) < nrank:
        s += 1
    w = 1 << s
    one = np.int32(w)  # key of a run so far of 1 at level 0
    two = np.int32(2 * w)  # the keys of the runs so far >= 2
    hw = (nr + 2) * w
    if (max(nr, n0, n1, n2) + 2) * w >= 2 ** 31 or n0 * plane >= 2 ** 31:  # int32 keys and counts
        raise ValueError("run-length matrix or box too large")
    # np.empty and a fill, not np.zeros: numba's zeros of a large array touch fresh pages each call
    qf = q.ravel()
    lev = np.empty(2 * plane, dtype=np.int32)  # the levels of planes z and z - 1 (0 outside)
    runs = np.empty(na * 2 * plane, dtype=np.int32)  # per angle, the keys of both planes
    roi = np.empty(plane, dtype=np.uint32)  # the plane's ROI cells
    buf = np.empty(plane, dtype=np.int32)
    count = np.zeros(4 * w, dtype=np.int64)  # voxels per level, 4 copies (no chain of increments)
    H = np.empty(na * hw, dtype=np.int32)  # 2^31 - 1 voxels per cell: a box below 2^31 voxels
    H[:] = 0
    longest = 0
    for z in range(n0):
        cur = (z & 1) * plane
        prv = plane - cur
        lc = lev[cur:cur + plane]
        lp = lev[prv:prv + plane]
        qz = qf[z * plane:(z + 1) * plane]
        top = 0
        for i in range(plane):  # vectorised
            g = qz[i]
            top = max(top, g)
            lc[i] = g if g > 0 else 0
        if top >= nrank:
            raise ValueError("grey level outside the levels given")
        nroi = 0
        for i in range(plane):
            roi[nroi] = i
            nroi += lc[i] > 0
        for j in range(nroi):
            count[np.uint64((j & 3) * w + lc[np.uint64(roi[j])])] += 1
        for a in range(na):
            dz = offs[a, 0]
            dy = offs[a, 1]
            dx = offs[a, 2]
            base = a * 2 * plane
            rc = runs[base + cur:base + cur + plane]
            if dz == 0 and dy == 0:  # along x: a recurrence along each row
                for y in range(n1):
                    r = y * n2
                    kp = np.int32(0)
                    gp = np.int32(0)
                    for x in range(n2):
                        v = lc[r + x]
                        kp = kp + one if (v == gp) & (v != 0) else one | v  # one more, same level
                        rc[r + x] = kp
                        gp = v
            elif dz == 1 and z == 0:
                for i in range(plane):
                    rc[i] = one | lc[i]
            else:
                t = dy * n2 + dx  # the step's in-plane part
                ylo = max(0, dy)
                yhi = n1 + min(0, dy)
                if dz == 1:  # the plane at once: cells [i0, i1), their neighbours in the plane before
                    i0 = ylo * n2 + max(0, dx)
                    i1 = yhi * n2 + min(0, dx)
                    if i1 > i0:
                        A = lc[i0:i1]
                        B = lp[i0 - t:i1 - t]
                        C = runs[base + prv + i0 - t:base + prv + i1 - t]
                        D = rc[i0:i1]
                        for i in range(i1 - i0):
                            v = A[i]
                            D[i] = C[i] + one if (v == B[i]) & (v != 0) else one | v
                    # the cells whose neighbour lies past a face: a run so far of 1
                    for y in range(n1):
                        if y < ylo or y >= yhi:
                            for i in range(y * n2, y * n2 + n2):
                                rc[i] = one | lc[i]
                        elif dx != 0:
                            i = y * n2 + (0 if dx > 0 else n2 - 1)
                            rc[i] = one | lc[i]
                else:  # row by row, each reading the row before (done, its face cell included)
                    for i in range(n2):  # row 0: no row before
                        rc[i] = one | lc[i]
                    for y in range(1, n1):
                        i0 = y * n2 + max(0, dx)
                        i1 = y * n2 + n2 + min(0, dx)
                        A = lc[i0:i1]
                        B = lc[i0 - t:i1 - t]
                        C = rc[i0 - t:i1 - t]
                        D = rc[i0:i1]
                        for i in range(i1 - i0):
                            v = A[i]
                            D[i] = C[i] + one if (v == B[i]) & (v != 0) else one | v
                        if dx != 0:
                            i = y * n2 + (0 if dx > 0 else n2 - 1)
                            rc[i] = one | lc[i]
            m = np.int32(0)  # the longest run so far in the plane (1 outside the ROI)
            for i in range(plane):
                m = max(m, rc[i])
            m = m >> s
            if m > nr:
                raise ValueError("run longer than the matrix")
            if nroi > 0:
                longest = max(longest, m)
            k = np.uint64(0)
            for j in range(nroi):
                kk = rc[np.uint64(roi[j])]
                buf[k] = kk
                k += np.uint64(kk >= two)
            Ha = H[a * hw:(a + 1) * hw]
            for j in range(k):
                Ha[np.uint64(buf[j])] += 1
    Hv = H.reshape((na, nr + 2, w))
    P = np.zeros((na, nl, longest), dtype=np.float64)
    for g in range(1, w):
        c = count[g] + count[w + g] + count[2 * w + g] + count[3 * w + g]
        if c == 0:
            continue
        i = rank[g]
        if i < 0 or i >= nl:
            raise ValueError("grey level outside the levels given")
        for a in range(na):
            more = 0
            for j in range(2, longest + 1):
                more += Hv[a, j, g]
            Hv[a, 1, g] = c - more
            for j in range(longest):
                P[a, i, j] += Hv[a, j + 1, g] - Hv[a, j + 2, g]
    pts = np.empty((0, 3), dtype=np.int64)  # the ROI's voxels, gathered when first needed
    for a in range(na):
        multi = False
        for i in range(nl):
            for j in range(1, longest):
                multi = multi or P[a, i, j] > 0
        if multi:
            continue
        # every run is one voxel: is there a line holding two ROI voxels? Each walk stops at the
        # next ROI voxel, so the walks of one angle cover the box at most once.
        if pts.shape[0] == 0:
            pts = np.empty((n0 * plane, 3), dtype=np.int64)
            npts = 0
            for z in range(n0):
                for y in range(n1):
                    for x in range(n2):
                        if q[z, y, x] > 0:
                            pts[npts, 0] = z
                            pts[npts, 1] = y
                            pts[npts, 2] = x
                            npts += 1
            pts = pts[:npts]
        dz = offs[a, 0]
        dy = offs[a, 1]
        dx = offs[a, 2]
        for p in range(pts.shape[0]):
            zz = pts[p, 0] + dz
            yy = pts[p, 1] + dy
            xx = pts[p, 2] + dx
            while 0 <= zz < n0 and 0 <= yy < n1 and 0 <= xx < n2:
                if q[zz, yy, xx] > 0:
                    multi = True
                    break
                zz += dz
                yy += dy
                xx += dx
            if multi:
                break
        if not multi:
            for i in range(nl):
                P[a, i, 0] = 0.0
    return P


def angle_normalised(P: np.ndarray, weights: np.ndarray, normalise: bool) -> np.ndarray:
    """The per-angle matrices ``P`` (Na, ...) summed with ``weights`` into one (none given: left
    per angle), the empty angles dropped unless only one, divided by their sums where ``normalise``
    (a zero sum: NaN)."""
    na, n1, n2 = P.shape
    size = n1 * n2
    flat = P.reshape(na, size)
    if weights.shape[0] > 0:
        one = np.zeros((1, size))
        for a in range(na):  # in order, as NumPy's sum over the first axis
            wa = weights[a]
            for k in range(size):
                one[0, k] += flat[a, k] * wa
        flat = one
        na = 1
    sums = np.zeros(na)
    kept = 0
    for a in range(na):
        t = 0.0
        for k in range(size):
            t += flat[a, k]
        sums[a] = t
        if t != 0 or na == 1:
            kept += 1
    out = np.empty((kept, size))
    row = 0
    for a in range(na):
        t = sums[a]
        if t != 0 or na == 1:
            div = t if (t != 0 or not normalise) else np.nan
            for k in range(size):
                out[row, k] = flat[a, k] / div if normalise else flat[a, k]
            row += 1
    return out.reshape(kept, n1, n2)


def glcm_all(q: np.ndarray, offs: np.ndarray, rank: np.ndarray, levels: np.ndarray, ng: int, symmetric: bool,
             weights: np.ndarray, want_mcc: bool):  # noqa: ANN201 - a tuple of arrays and numbers
    """The whole compiled GLCM of one image: counts (:func:`glcm_counts`), weighting and empty angles
    (:func:`angle_normalised`), the features' means over the angles (``GLCM_COLUMNS``; JointAverage a
    plain mean), and with ``want_mcc`` the MCC: ``state`` 0 the mean of sqrt(S's eigenvalues) (no
    angle where PyRadiomics's eps matters), 1 some angle needs Q (the caller's part: the matrices,
    marginals and :func:`mcc_parts`'s output come back), 2 fewer than two levels (1.0), 3 a NaN
    matrix (NaN). Returns (means, joint_average, mcc, state, P, px, py, lam, bound, third)."""
    nl = levels.shape[0]
    P = angle_normalised(glcm_counts(q, offs, rank, nl, symmetric), weights, True)
    table = glcm_features(P, levels, ng)
    means = nan_means(table)
    na = P.shape[0]
    joint = table[:, 1].sum() / na if na else np.nan
    px = np.zeros((na, nl))
    py = np.zeros((na, nl))
    lam = np.zeros(na)
    bound = np.zeros(na)
    third = np.zeros(na)
    mcc = np.nan
    state = -1
    if want_mcc:
        finite = True
        for v in P.ravel():
            if not np.isfinite(v):
                finite = False
                break
        if nl < 2:
            mcc, state = 1.0, 2
        elif not finite:
            mcc, state = np.nan, 3
        else:
            for a in range(na):
                for i in range(nl):
                    for j in range(nl):
                        px[a, i] += P[a, i, j]
                        py[a, j] += P[a, i, j]
            lam, bound, third = mcc_parts(P, px, py, symmetric)
            state = 0
            total = 0.0
            for a in range(na):
                if not (lam[a] > 0 and bound[a] <= 1e-8 * lam[a]):
                    state = 1
                total += math.sqrt(max(lam[a], 0.0))
            mcc = total / na if na else np.nan
    return means, joint, mcc, state, P, px, py, lam, bound, third


def glrlm_all(q: np.ndarray, offs: np.ndarray, rank: np.ndarray, levels: np.ndarray, nr: int,
              weights: np.ndarray) -> np.ndarray:
    """The whole compiled GLRLM of one image: counts (:func:`glrlm_counts`), weighting and empty
    angles (:func:`angle_normalised`), the features' means over the angles (``GLRLM_COLUMNS``)."""
    P = angle_normalised(glrlm_counts(q, offs, rank, levels.shape[0], nr), weights, False)
    return nan_means(glrlm_features(P, levels))


# ------------------------------------------------------------------------------------------- features

def glcm_features(P: np.ndarray, g: np.ndarray, ng: int) -> np.ndarray:
    """Per angle, the GLCM features of ``GLCM_COLUMNS`` of the normalised matrices ``P`` (Na, Nl, Nl)
    (NaN matrices give NaN); ``g``: the grey level of each row, ``ng``: the largest level.

    log2(p_x p_y + eps) is log2 p_x + log2 p_y + eps / (p_x p_y ln 2) where p_x p_y >= 1e-6 (the
    dropped terms are below 1e-19): one logarithm per level instead of per pair; where P is exactly
    p_x p_y, HXY1 and HXY2 are HXY exactly, as in the NumPy path (Imc2 then 0)."""
    na, nl, _ = P.shape
    out = np.empty((na, len(GLCM_COLUMNS)), dtype=np.float64)
    px = np.empty(nl)
    py = np.empty(nl)
    lx = np.empty(nl)
    ly = np.empty(nl)
    add = np.empty(2 * ng - 1)
    sub = np.empty(ng)
    ln2 = math.log(2.0)
    for a in range(na):
        pa = P[a]
        px[:] = 0.0
        py[:] = 0.0
        add[:] = 0.0
        sub[:] = 0.0
        auto = 0.0
        energy = 0.0
        hxy = 0.0
        pmax = 0.0  # the entries are >= 0
        anynan = False
        for i in range(nl):
            gi = g[i]
            for j in range(nl):
                p = pa[i, j]
                if p == 0.0:
                    continue  # adds nothing to any sum here
                if p != p:
                    anynan = True
                px[i] += p
                py[j] += p
                gj = g[j]
                auto += gi * gj * p
                energy += p * p
                hxy -= p * (math.log(p + _EPS) / ln2)
                if p > pmax:
                    pmax = p
                add[int(gi + gj) - 2] += p
                sub[int(abs(gi - gj))] += p
        if anynan:
            out[a, :] = np.nan
            continue
        ux = 0.0
        uy = 0.0
        for i in range(nl):
            ux += g[i] * px[i]
            uy += g[i] * py[i]
        varx = 0.0
        vary = 0.0
        hx = 0.0
        hy = 0.0
        for i in range(nl):
            d = g[i] - ux
            varx += px[i] * d * d
            d = g[i] - uy
            vary += py[i] * d * d
            hx -= px[i] * (math.log(px[i] + _EPS) / ln2)
            hy -= py[i] * (math.log(py[i] + _EPS) / ln2)
        corm = 0.0
        hxy1 = 0.0
        hxy2 = 0.0
        indep = True  # P = p_x p_y exactly: then HXY1 = HXY2 = HXY, term by term
        for i in range(nl):
            lx[i] = math.log(px[i]) if px[i] > 0 else 0.0
            ly[i] = math.log(py[i]) if py[i] > 0 else 0.0
        for i in range(nl):
            dxi = g[i] - ux
            for j in range(nl):
                p = pa[i, j]
                corm += dxi * (g[j] - uy) * p
                pp = px[i] * py[j]
                indep = indep and p == pp
                if pp == 0.0:
                    continue  # p = 0 too (p <= p_x, p_y)
                if pp >= 1e-6:
                    # log(pp + eps) = log p_x + log p_y + log1p(eps / pp), eps / pp < 2.3e-10
                    lp = (lx[i] + ly[j] + _EPS / pp) / ln2
                else:
                    lp = math.log(pp + _EPS) / ln2
                hxy1 -= p * lp
                hxy2 -= pp * lp
        if indep:
            hxy1 = hxy
            hxy2 = hxy
        prom = 0.0
        shade = 0.0
        tend = 0.0
        savg = 0.0
        sent = 0.0
        for k in range(2 * ng - 1):
            p = add[k]
            kc = (k + 2.0) - (ux + uy)
            k2 = kc * kc
            tend += p * k2
            shade += p * k2 * kc
            prom += p * k2 * k2
            savg += (k + 2.0) * p
            sent -= p * (math.log(p + _EPS) / ln2)
        contrast = 0.0
        davg = 0.0
        dent = 0.0
        idm = 0.0
        idmn = 0.0
        idd = 0.0
        idn = 0.0
        ivar = 0.0
        for k in range(ng):
            p = sub[k]
            kf = float(k)
            contrast += p * kf * kf
            davg += kf * p
            dent -= p * (math.log(p + _EPS) / ln2)
            idm += p / (1.0 + kf * kf)
            idmn += p / (1.0 + (kf * kf) / (ng * ng))
            idd += p / (1.0 + kf)
            idn += p / (1.0 + kf / ng)
            if k > 0:
                ivar += p / (kf * kf)
        dvar = 0.0
        for k in range(ng):
            d = k - davg
            dvar += sub[k] * d * d
        sig = math.sqrt(varx) * math.sqrt(vary)
        corr = 1.0 if sig == 0 else corm / (sig + _EPS)
        div = max(hx, hy)
        imc1 = (hxy - hxy1) / div if div != 0 else 0.0
        if hxy2 == hxy:
            imc2 = 0.0
        else:
            t = 1.0 - math.e ** (-2.0 * (hxy2 - hxy))
            imc2 = math.sqrt(t) if t >= 0 else np.nan
        out[a, 0] = auto
        out[a, 1] = ux
        out[a, 2] = prom
        out[a, 3] = shade
        out[a, 4] = tend
        out[a, 5] = contrast
        out[a, 6] = corr
        out[a, 7] = davg
        out[a, 8] = dent
        out[a, 9] = dvar
        out[a, 10] = energy
        out[a, 11] = hxy
        out[a, 12] = imc1
        out[a, 13] = imc2
        out[a, 14] = idm
        out[a, 15] = idmn
        out[a, 16] = idd
        out[a, 17] = idn
        out[a, 18] = ivar
        out[a, 19] = pmax
        out[a, 20] = savg
        out[a, 21] = sent
        out[a, 22] = varx
    return out


def glrlm_features(P: np.ndarray, iv: np.ndarray) -> np.ndarray:
    """Per angle, the GLRLM features of ``GLRLM_COLUMNS`` of the run-length counts ``P`` (Na, Nl, Nr)
    (an angle without runs gives NaN); ``iv``: the grey level of each row."""
    na, nl, nr = P.shape
    out = np.empty((na, len(GLRLM_COLUMNS)), dtype=np.float64)
    pr = np.empty(nr)
    pg = np.empty(nl)
    ln2 = math.log(2.0)
    for a in range(na):
        pa = P[a]
        pr[:] = 0.0
        pg[:] = 0.0
        tot = 0.0
        for i in range(nl):
            for j in range(nr):
                p = pa[i, j]
                pr[j] += p
                pg[i] += p
                tot += p
        if tot == 0:
            out[a, :] = np.nan
            continue
        sre = 0.0
        lre = 0.0
        rln = 0.0
        npix = 0.0
        ur = 0.0
        for j in range(nr):
            jv = j + 1.0
            p = pr[j]
            sre += p / (jv * jv)
            lre += p * jv * jv
            rln += p * p
            npix += p * jv
            ur += (p / tot) * jv
        rv = 0.0
        for j in range(nr):
            d = (j + 1.0) - ur
            rv += (pr[j] / tot) * d * d
        gln = 0.0
        lgl = 0.0
        hgl = 0.0
        ug = 0.0
        for i in range(nl):
            p = pg[i]
            gln += p * p
            lgl += p / (iv[i] * iv[i])
            hgl += p * iv[i] * iv[i]
            ug += (p / tot) * iv[i]
        gv = 0.0
        for i in range(nl):
            d = iv[i] - ug
            gv += (pg[i] / tot) * d * d
        ent = 0.0
        srl = 0.0
        srh = 0.0
        lrl = 0.0
        lrh = 0.0
        for i in range(nl):
            i2 = iv[i] * iv[i]
            for j in range(nr):
                p = pa[i, j]
                if p == 0:
                    continue
                jv = j + 1.0
                j2 = jv * jv
                pn = p / tot
                ent -= pn * (math.log(pn + _EPS) / ln2)
                srl += p / (i2 * j2)
                srh += p * i2 / j2
                lrl += p * j2 / i2
                lrh += p * j2 * i2
        out[a, 0] = sre / tot
        out[a, 1] = lre / tot
        out[a, 2] = gln / tot
        out[a, 3] = gln / (tot * tot)
        out[a, 4] = rln / tot
        out[a, 5] = rln / (tot * tot)
        out[a, 6] = tot / npix
        out[a, 7] = gv
        out[a, 8] = rv
        out[a, 9] = ent
        out[a, 10] = lgl / tot
        out[a, 11] = hgl / tot
        out[a, 12] = srl / tot
        out[a, 13] = srh / tot
        out[a, 14] = lrl / tot
        out[a, 15] = lrh / tot
    return out


# ------------------------------------------------------------------------------------------------ MCC

def _tridiagonal(a: np.ndarray, d: np.ndarray, e: np.ndarray) -> None:
    """Householder reduction of the symmetric ``a`` (n, n; overwritten) to a tridiagonal matrix of
    diagonal ``d`` (n) and off-diagonal ``e`` (n - 1), with the same eigenvalues."""
    n = a.shape[0]
    v = np.empty(n)
    w = np.empty(n)
    for k in range(n - 2):
        norm2 = 0.0
        for i in range(k + 1, n):
            norm2 += a[i, k] * a[i, k]
        if norm2 == 0.0:
            e[k] = 0.0
            continue
        norm = math.sqrt(norm2)
        x0 = a[k + 1, k]
        alpha = -norm if x0 >= 0 else norm
        # v = x - alpha e1, normalised
        vn2 = norm2 - x0 * x0 + (x0 - alpha) * (x0 - alpha)
        if vn2 == 0.0:
            e[k] = a[k + 1, k]
            continue
        vs = 1.0 / math.sqrt(vn2)
        for i in range(k + 1, n):
            v[i] = a[i, k] * vs
        v[k + 1] = (x0 - alpha) * vs
        # p = A v (the trailing block), K = v'p, w = p - K v; A -= 2 (v w' + w v')
        for i in range(k + 1, n):
            w[i] = 0.0
        for j in range(k + 1, n):  # p = A v as rows times v (A symmetric): contiguous, no reduction
            vj = v[j]
            row = a[j]
            for i in range(k + 1, n):
                w[i] += vj * row[i]
        kk = 0.0
        for i in range(k + 1, n):
            kk += v[i] * w[i]
        for i in range(k + 1, n):
            w[i] -= kk * v[i]
        for i in range(k + 1, n):
            vi2 = 2.0 * v[i]
            wi2 = 2.0 * w[i]
            row = a[i]
            for j in range(k + 1, n):
                row[j] -= vi2 * w[j] + wi2 * v[j]
        e[k] = alpha
    for i in range(n):
        d[i] = a[i, i]
    if n >= 2:
        e[n - 2] = a[n - 1, n - 2]


def _sturm6(d: np.ndarray, e: np.ndarray, xs: np.ndarray, cnt: np.ndarray, pivmin: float) -> None:
    """``cnt[m]``: how many eigenvalues of the tridiagonal (d, e) are below ``xs[m]`` (6 points; Sturm
    sequences run side by side, so the divisions overlap)."""
    n = d.shape[0]
    x0, x1, x2, x3, x4, x5 = xs[0], xs[1], xs[2], xs[3], xs[4], xs[5]
    c0 = c1 = c2 = c3 = c4 = c5 = 0
    t0 = d[0] - x0
    t1 = d[0] - x1
    t2 = d[0] - x2
    t3 = d[0] - x3
    t4 = d[0] - x4
    t5 = d[0] - x5
    for i in range(n):
        if i > 0:
            di = d[i]
            e2 = e[i - 1] * e[i - 1]
            t0 = di - x0 - e2 / t0
            t1 = di - x1 - e2 / t1
            t2 = di - x2 - e2 / t2
            t3 = di - x3 - e2 / t3
            t4 = di - x4 - e2 / t4
            t5 = di - x5 - e2 / t5
        if abs(t0) < pivmin:
            t0 = -pivmin
        if abs(t1) < pivmin:
            t1 = -pivmin
        if abs(t2) < pivmin:
            t2 = -pivmin
        if abs(t3) < pivmin:
            t3 = -pivmin
        if abs(t4) < pivmin:
            t4 = -pivmin
        if abs(t5) < pivmin:
            t5 = -pivmin
        c0 += t0 < 0
        c1 += t1 < 0
        c2 += t2 < 0
        c3 += t3 < 0
        c4 += t4 < 0
        c5 += t5 < 0
    cnt[0] = c0
    cnt[1] = c1
    cnt[2] = c2
    cnt[3] = c3
    cnt[4] = c4
    cnt[5] = c5


def _two(d: np.ndarray, e: np.ndarray, k1: int, k2: int) -> tuple[float, float]:
    """The ``k1``-th and ``k2``-th smallest (from 0) eigenvalues of the tridiagonal (d, e), by
    quadrisection of both at once, to LAPACK's default tolerance (ulp times the matrix's norm)."""
    n = d.shape[0]
    lo = np.inf
    hi = -np.inf
    emax = 0.0
    for i in range(n):
        r = 0.0
        if i > 0:
            r += abs(e[i - 1])
        if i < n - 1:
            r += abs(e[i])
        lo = min(lo, d[i] - r)
        hi = max(hi, d[i] + r)
        if i < n - 1:
            emax = max(emax, e[i] * e[i])
    pivmin = 2.2250738585072014e-308 * max(1.0, emax)
    tnorm = max(abs(lo), abs(hi))
    lo -= 2.0 * _EPS * tnorm + pivmin
    hi += 2.0 * _EPS * tnorm + pivmin
    tol = max(_EPS * tnorm, pivmin)
    lo1 = lo2 = lo
    hi1 = hi2 = hi
    xs = np.empty(6)
    cnt = np.empty(6, dtype=np.int64)
    for _ in range(200):
        done1 = hi1 - lo1 <= max(tol, 2.0 * _EPS * max(abs(lo1), abs(hi1)))
        done2 = hi2 - lo2 <= max(tol, 2.0 * _EPS * max(abs(lo2), abs(hi2)))
        if done1 and done2:
            break
        for m in range(3):
            xs[m] = lo1 + (hi1 - lo1) * (m + 1) * 0.25
            xs[3 + m] = lo2 + (hi2 - lo2) * (m + 1) * 0.25
        _sturm6(d, e, xs, cnt, pivmin)
        nlo1, nhi1, nlo2, nhi2 = lo1, hi1, lo2, hi2
        for m in range(3):
            if cnt[m] >= k1 + 1:
                nhi1 = min(nhi1, xs[m])
            else:
                nlo1 = max(nlo1, xs[m])
            if cnt[3 + m] >= k2 + 1:
                nhi2 = min(nhi2, xs[3 + m])
            else:
                nlo2 = max(nlo2, xs[3 + m])
        if nlo1 == lo1 and nhi1 == hi1 and nlo2 == lo2 and nhi2 == hi2:
            break  # no representable point left inside
        lo1, hi1, lo2, hi2 = nlo1, nhi1, nlo2, nhi2
    return 0.5 * (lo1 + hi1), 0.5 * (lo2 + hi2)


def _tridiagonal_batch(a: np.ndarray, d: np.ndarray, e: np.ndarray) -> None:
    """:func:`_tridiagonal` of ``m`` symmetric matrices at once, from their upper triangles: ``a``
    (n, n, m), overwritten; ``d`` (n, m), ``e`` (n, m) (rows 0 .. n - 2 set). The same reflections,
    the innermost loops over the matrices (contiguous: vectorised); only the upper triangle is read
    and updated (a[i, j] and a[j, i] are the same length-m vectors' worth of work)."""
    n = a.shape[0]
    m = a.shape[2]
    v = np.zeros((n, m))
    w = np.zeros((n, m))
    norm2 = np.empty(m)
    x0 = np.empty(m)
    alpha = np.empty(m)
    vs = np.empty(m)
    kk = np.empty(m)
    for k in range(n - 2):
        ak = a[k]
        norm2[:] = 0.0
        for i in range(k + 1, n):
            aki = ak[i]
            for c in range(m):
                norm2[c] += aki[c] * aki[c]
        if norm2.max() == 0.0:  # no matrix has anything off the diagonal here
            e[k, :] = 0.0
            continue
        for c in range(m):
            x = ak[k + 1, c]
            nrm = math.sqrt(norm2[c])
            al = -nrm if x >= 0 else nrm
            vn2 = norm2[c] - x * x + (x - al) * (x - al)
            if vn2 > 0.0:
                vs[c] = 1.0 / math.sqrt(vn2)
                e[k, c] = al
            else:  # nothing off the diagonal: no reflection
                vs[c] = 0.0
                e[k, c] = x
            x0[c] = x
            alpha[c] = al
        for i in range(k + 1, n):
            aki = ak[i]
            vi = v[i]
            for c in range(m):
                vi[c] = aki[c] * vs[c]
        for c in range(m):
            v[k + 1, c] = (x0[c] - alpha[c]) * vs[c]
        for i in range(k + 1, n):
            w[i, :] = 0.0
        for i in range(k + 1, n):  # w = A v from the upper triangle
            ai = a[i]
            vi = v[i]
            wi = w[i]
            aii = ai[i]
            for c in range(m):
                wi[c] += aii[c] * vi[c]
            for j in range(i + 1, n):
                aij = ai[j]
                vj = v[j]
                wj = w[j]
                for c in range(m):
                    wi[c] += aij[c] * vj[c]
                    wj[c] += aij[c] * vi[c]
        kk[:] = 0.0
        for i in range(k + 1, n):
            for c in range(m):
                kk[c] += v[i, c] * w[i, c]
        for i in range(k + 1, n):
            for c in range(m):
                w[i, c] -= kk[c] * v[i, c]
        for i in range(k + 1, n):
            vi = v[i]
            wi = w[i]
            ai = a[i]
            for j in range(i, n):
                aij = ai[j]
                vj = v[j]
                wj = w[j]
                for c in range(m):
                    aij[c] -= 2.0 * vi[c] * wj[c] + 2.0 * wi[c] * vj[c]
    for i in range(n):
        for c in range(m):
            d[i, c] = a[i, i, c]
    if n >= 2:
        for c in range(m):
            e[n - 2, c] = a[n - 2, n - 1, c]


def _mcc_setup(P: np.ndarray, px: np.ndarray, py: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """A = D_x^-1/2 P D_y^-1/2 of each angle as (n, n, m) over the levels in use, and the bounds."""
    na, nfull, _ = P.shape
    bound = np.empty(na)
    # levels with neither a row nor a column in any angle add zero eigenvalues only: left out
    used = np.zeros(nfull, dtype=np.int64)
    n = 0
    for i in range(nfull):
        seen = False
        for a in range(na):
            seen = seen or px[a, i] > 0 or py[a, i] > 0
        if seen:
            used[n] = i
            n += 1
    A = np.zeros((n, n, m))
    irx = np.empty(n)
    iry = np.empty(n)
    for a in range(na):
        g2 = 0.0
        for i in range(n):
            irx[i] = 1.0 / math.sqrt(px[a, used[i]]) if px[a, used[i]] > 0 else 0.0
            iry[i] = 1.0 / math.sqrt(py[a, used[i]]) if py[a, used[i]] > 0 else 0.0
        for i in range(n):
            ui = used[i]
            for k in range(n):
                uk = used[k]
                p = P[a, ui, uk]
                if p == 0.0:  # A is zero there already, and the cell adds nothing to the bound
                    continue
                A[i, k, a] = p * (irx[i] * iry[k])
                mm = px[a, ui] * py[a, uk]
                if mm > 0:
                    gv = p * (-_EPS / (mm * (mm + _EPS))) * math.sqrt(mm)
                    g2 += gv * gv
        bound[a] = 3.0 * math.sqrt(g2)
    return A, bound


def _mcc_square(A: np.ndarray) -> np.ndarray:
    """S = A A' of each lane, upper triangle (all the reduction reads)."""
    n, _, m = A.shape
    T = np.zeros((n, n, m))
    for i in range(n):
        for j in range(i, n):
            tij = T[i, j]
            for k in range(n):
                aik = A[i, k]
                ajk = A[j, k]
                for c in range(m):
                    tij[c] += aik[c] * ajk[c]
    return T


def _mcc_eigen(T: np.ndarray, na: int, symmetric: bool, bound: np.ndarray, lam: np.ndarray,
               third: np.ndarray) -> None:
    """S's second (and where needed third) eigenvalue per angle from ``T`` (A, or S, per lane)."""
    n, _, m = T.shape
    d = np.empty((n, m))
    e = np.zeros((n, m))
    dd = np.empty(n)
    ee = np.empty(max(n - 1, 1))
    one = np.empty((n, n))
    if na > 4:
        _tridiagonal_batch(T, d, e)
    for a in range(na):
        if na > 4:
            for i in range(n):
                dd[i] = d[i, a]
            for i in range(n - 1):
                ee[i] = e[i, a]
        else:
            for i in range(n):
                for j in range(i, n):
                    one[i, j] = T[i, j, a]
                    one[j, i] = T[i, j, a]
            _tridiagonal(one, dd, ee)
        if symmetric:
            # A's largest eigenvalue is 1 (eigenvector sqrt(p_x)) and none is beyond +-1: S = A^2's
            # second largest is the larger square of the second largest and the smallest
            l0, l1 = _two(dd, ee, 0, n - 2)
            lam[a] = max(l0 * l0, l1 * l1)
            if lam[a] > 0 and bound[a] <= 1e-8 * lam[a] or n < 3:
                continue
            # the third: the next square among the two largest and two smallest (but the top):
            # lambda_0, lambda_1, lambda_n-3, lambda_n-2, each index once
            m0, m1 = _two(dd, ee, 1, n - 3)
            first = -1.0
            second = -1.0
            for k in range(4):
                if k == 0:
                    v = l0 * l0
                elif k == 1:
                    v = l1 * l1
                elif k == 2:
                    if n < 4:  # index 1 is n - 2
                        continue
                    v = m0 * m0
                else:
                    if n < 5:  # index n - 3 is 0 or 1
                        continue
                    v = m1 * m1
                if v > first:
                    second = first
                    first = v
                elif v > second:
                    second = v
            third[a] = second
        elif n >= 3:
            l2, l3 = _two(dd, ee, n - 2, n - 3)
            lam[a] = l2
            third[a] = l3
        else:
            lam[a] = _two(dd, ee, n - 2, n - 2)[0]


def mcc_parts(P: np.ndarray, px: np.ndarray, py: np.ndarray,
              symmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per angle of the normalised ``P`` (Na, Nl, Nl) with marginals ``px``, ``py`` (Na, Nl): the
    second largest eigenvalue of S = A A' (A = D_x^-1/2 P D_y^-1/2), the bound 3 ||G||_F on the
    eps's share (see ``_pyradiomics_calc._mcc``) and, where that bound is not below 1e-8 of the
    eigenvalue, S's third largest eigenvalue (else -inf; -inf too where S has no third).
    ``symmetric`` (P = P', px = py): A's own eigenvalues, squared, instead of forming S. The angles'
    matrices are reduced side by side (16 lanes: the vectorised loops' width; the spare ones zero
    matrices), or one by one when there are few."""
    na = P.shape[0]
    m = (na + 15) // 16 * 16 if na > 4 else na
    lam = np.zeros(na)
    third = np.full(na, -np.inf)
    A, bound = _mcc_setup(P, px, py, m)
    if A.shape[0] < 2:
        return lam, bound, third  # one level in use: S = [1] and zeros
    _mcc_eigen(A if symmetric else _mcc_square(A), na, symmetric, bound, lam, third)
    return lam, bound, third


def _lu(M: np.ndarray, perm: np.ndarray) -> None:
    """LU factorisation of ``M`` in place, partial pivoting (rows swapped as ``perm`` records); an
    exactly zero pivot replaced by eps times the matrix's scale (inverse iteration only)."""
    n = M.shape[0]
    scale = 0.0
    for i in range(n):
        for j in range(n):
            scale = max(scale, abs(M[i, j]))
    for i in range(n):
        perm[i] = i
    for k in range(n):
        piv = k
        best = abs(M[k, k])
        for i in range(k + 1, n):
            if abs(M[i, k]) > best:
                best = abs(M[i, k])
                piv = i
        if piv != k:
            for j in range(n):
                t = M[k, j]
                M[k, j] = M[piv, j]
                M[piv, j] = t
            t2 = perm[k]
            perm[k] = perm[piv]
            perm[piv] = t2
        if M[k, k] == 0.0:
            M[k, k] = _EPS * max(scale, 1e-300)
        inv = 1.0 / M[k, k]
        for i in range(k + 1, n):
            f = M[i, k] * inv
            M[i, k] = f
            if f != 0.0:
                for j in range(k + 1, n):
                    M[i, j] -= f * M[k, j]


def mcc_refine(P: np.ndarray, px: np.ndarray, py: np.ndarray, mu: float) -> float:
    """The eigenvalue of PyRadiomics's Q(i, j) = sum_k P(i, k) P(j, k) / (p_x(i) p_y(k) + eps) nearest
    ``mu`` (one angle: ``P`` (Nl, Nl), ``px``, ``py`` (Nl)), by inverse iteration with shift ``mu`` on
    D_x^1/2 Q D_x^-1/2 and its Rayleigh quotient; NaN if that does not settle within 30 steps."""
    nfull = P.shape[0]
    used = np.empty(nfull, dtype=np.int64)
    n = 0
    for i in range(nfull):
        if px[i] > 0:
            used[n] = i
            n += 1
    if n == 0:
        return np.nan
    W = np.empty((n, nfull))
    for i in range(n):
        ui = used[i]
        for k in range(nfull):
            W[i, k] = P[ui, k] / (px[ui] * py[k] + _EPS)
    PT = np.empty((nfull, n))  # P's used rows, transposed: the products below run along rows
    for j in range(n):
        for k in range(nfull):
            PT[k, j] = P[used[j], k]
    Q = np.zeros((n, n))
    for i in range(n):
        qi = Q[i]
        for k in range(nfull):
            wik = W[i, k]
            if wik != 0.0:
                pk = PT[k]
                for j in range(n):
                    qi[j] += wik * pk[j]
    for i in range(n):
        ri = math.sqrt(px[used[i]])
        for j in range(n):
            Q[i, j] *= ri / math.sqrt(px[used[j]])
    M = Q.copy()
    for i in range(n):
        M[i, i] -= mu
    perm = np.empty(n, dtype=np.int64)
    _lu(M, perm)
    x = np.full(n, 1.0 / math.sqrt(n))
    y = np.empty(n)
    prev = mu
    for it in range(30):
        for i in range(n):  # L y = P x, then U y = y
            t = x[perm[i]]
            for j in range(i):
                t -= M[i, j] * y[j]
            y[i] = t
        for i in range(n - 1, -1, -1):
            t = y[i]
            for j in range(i + 1, n):
                t -= M[i, j] * y[j]
            y[i] = t / M[i, i]
        nrm = 0.0
        for i in range(n):
            nrm += y[i] * y[i]
        nrm = math.sqrt(nrm)
        if not (nrm > 0 and nrm < np.inf):
            return np.nan
        for i in range(n):
            x[i] = y[i] / nrm
        rho = 0.0
        for i in range(n):
            t = 0.0
            for j in range(n):
                t += Q[i, j] * x[j]
            rho += x[i] * t
        if it > 0 and abs(rho - prev) <= 64.0 * _EPS * abs(rho):
            return rho
        prev = rho
    return np.nan
