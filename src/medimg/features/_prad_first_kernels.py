"""Compiled (numba) kernels of PyRadiomics's discretisation and first-order class
(:func:`medimg.features._pyradiomics_calc.discretise` and ``firstorder``).

The loops are plain Python functions compiled on first use (:func:`medimg.core.jit.compile_kernel`);
the caller uses them only where :func:`medimg.core.jit.wanted` says so. They compute what the NumPy
path computes, bit for bit:

* :func:`gather` (NumPy): the ROI's values (C order, as ``image[roi]``) as float64, their minimum
  and maximum and whether all are finite.
* :func:`levels`: the discretised box (``numpy.digitize``'s bins inside the ROI, 0 outside) and the
  voxel count of each grey level: each value's bin guessed without a branch from the evenly spaced
  edges, checked against its two edges (walked to the right bin where the guess was off), then
  placed in the box.
* :func:`moments`: the sums the first-order features divide (the values, their shifted squares, the
  powers of the deviations from the mean, the robust subset between the 10th and 90th percentiles),
  each summed in NumPy's own pairwise order (``numpy.add.reduce`` on a contiguous float64 array:
  blocks of up to 128 values with 8 accumulators, halves split at multiples of 8), so every sum is
  the very float ``numpy.sum`` gives; and the order statistics ``numpy.percentile`` / ``median``
  interpolate, selected without a full sort: a histogram of the values on evenly spaced bins (the bin
  of a value is a monotone function of it, so the bins are ordered intervals) gives each wanted rank's
  bin, and only those bins' values are sorted (or, where one holds many, selected again the same way).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medimg.core import jit

__all__ = ["gather", "levels", "moments", "QUANTILES", "N_MOMENTS"]

#: The quantiles of PyRadiomics's percentiles (10, 25, 75, 90), as ``numpy.percentile`` divides them.
QUANTILES = np.true_divide(np.asarray([10, 25, 75, 90]), 100)

#: The most histogram bins :func:`_locate` uses (its counts stay in the L1 cache).
_MAX_BINS = 2048

#: The length of :func:`moments`'s result.
N_MOMENTS = 15


# -------------------------------------------------------------------------------------- discretisation

def _levels_loop(roi: np.ndarray, values: np.ndarray, ext: np.ndarray, q: np.ndarray) -> np.ndarray:
    # ext: -inf, the m edges, +inf; a value's bin g (0..m, numpy.digitize's) has ext[g] <= v < ext[g + 1]
    # (+inf: m, NaN: m, after every edge)
    m = ext.shape[0] - 2
    first = ext[1]
    inv = (m - 1) / (ext[m] - first) if m > 1 and ext[m] > first else 0.0
    n = values.shape[0]
    g = np.empty(n, dtype=np.intp)
    fm = float(m)
    for k in range(n):  # evenly spaced edges: the guess is the bin or one beside it (no branch)
        v = values[k]
        gs = (v - first) * inv
        gs = gs if gs >= 0.0 else 0.0
        gs = gs if gs <= fm else fm
        b = int(gs)
        b = min(b + (ext[b + 1] <= v), m)
        b -= ext[b] > v
        g[k] = b
    counts = np.zeros(m + 1, dtype=np.int64)
    for k in range(n):  # checked, and walked to the bin where the guess was off
        v = values[k]
        b = g[k]
        if ext[b] > v or (b < m and ext[b + 1] <= v) or v != v:
            while b < m and ext[b + 1] <= v:
                b += 1
            while b > 0 and ext[b] > v:
                b -= 1
            b = m if v != v else b
            g[k] = b
        counts[b] += 1
    k = 0
    for i in range(min(roi.shape[0], q.shape[0])):
        if roi[i] and k < n:
            q[i] = g[k]
            k += 1
        else:
            q[i] = 0
    return counts


def gather(image: np.ndarray, roi: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
    """``image[roi]`` as float64 (C order), its minimum and maximum (float64; NaN for an empty ROI)
    and whether every value is finite; ``image`` and ``roi`` of one shape. NumPy's boolean indexing
    and reductions (vectorised: faster than a compiled loop over the box, measured)."""
    if image.shape != roi.shape:
        raise ValueError(f"image {image.shape} and ROI {roi.shape} differ in shape")
    values = image[np.asarray(roi, dtype=np.bool_)]
    if not values.size:
        return values.astype(np.float64), float("nan"), float("nan"), True
    minimum, maximum = values.min(), values.max()  # NaN where one is NaN
    finite = bool(np.isfinite(minimum) and np.isfinite(maximum))
    return values.astype(np.float64), float(minimum), float(maximum), finite


def levels(roi: np.ndarray, values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The box of ``numpy.digitize(values, edges)`` inside ``roi`` (0 outside; ``values``: the ROI's
    values in C order, from :func:`gather`; ``edges`` increasing, not NaN) and the voxel count of
    each bin 0..len(edges)."""
    count = int(np.count_nonzero(roi))
    if values.shape != (count,):
        raise ValueError(f"{values.shape} values for a ROI of {count} voxels")
    q = np.empty(roi.shape, dtype=np.intp)
    ext = np.empty(len(edges) + 2)
    ext[0] = -np.inf
    ext[1:-1] = edges
    ext[-1] = np.inf
    counts = _kernel("_levels_loop")(np.ascontiguousarray(roi, dtype=np.bool_).ravel(),
                                     np.ascontiguousarray(values, dtype=np.float64), ext, q.reshape(-1))
    return q, counts


# ------------------------------------------------------------------------------------------ first order

def _pw_plain(x: np.ndarray, lo: int, n: int) -> float:
    """NumPy's pairwise sum (``DOUBLE_pairwise_sum``) of x[lo:lo+n], a leaf (n <= 128)."""
    if n < 8:
        r = 0.0
        for i in range(lo, lo + n):
            r += x[i]
        return r
    r0, r1, r2, r3 = x[lo], x[lo + 1], x[lo + 2], x[lo + 3]
    r4, r5, r6, r7 = x[lo + 4], x[lo + 5], x[lo + 6], x[lo + 7]
    i = 8
    stop = n - n % 8
    while i < stop:
        j = lo + i
        r0 += x[j]
        r1 += x[j + 1]
        r2 += x[j + 2]
        r3 += x[j + 3]
        r4 += x[j + 4]
        r5 += x[j + 5]
        r6 += x[j + 6]
        r7 += x[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += x[lo + i]
        i += 1
    return res


def _pw_abs(x: np.ndarray, c: float, lo: int, n: int) -> float:
    """NumPy's pairwise sum of |x - c| over x[lo:lo+n]."""
    if n < 8:
        r = 0.0
        for i in range(lo, lo + n):
            r += abs(x[i] - c)
        return r
    r0, r1 = abs(x[lo] - c), abs(x[lo + 1] - c)
    r2, r3 = abs(x[lo + 2] - c), abs(x[lo + 3] - c)
    r4, r5 = abs(x[lo + 4] - c), abs(x[lo + 5] - c)
    r6, r7 = abs(x[lo + 6] - c), abs(x[lo + 7] - c)
    i = 8
    stop = n - n % 8
    while i < stop:
        j = lo + i
        r0 += abs(x[j] - c)
        r1 += abs(x[j + 1] - c)
        r2 += abs(x[j + 2] - c)
        r3 += abs(x[j + 3] - c)
        r4 += abs(x[j + 4] - c)
        r5 += abs(x[j + 5] - c)
        r6 += abs(x[j + 6] - c)
        r7 += abs(x[j + 7] - c)
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += abs(x[lo + i] - c)
        i += 1
    return res


def _pw_energy(x: np.ndarray, shift: float, lo: int, n: int) -> float:
    """NumPy's pairwise sum of (x + shift) ** 2 over x[lo:lo+n]."""
    if n < 8:
        r = 0.0
        for i in range(lo, lo + n):
            t = x[i] + shift
            r += t * t
        return r
    t0, t1, t2, t3 = x[lo] + shift, x[lo + 1] + shift, x[lo + 2] + shift, x[lo + 3] + shift
    t4, t5, t6, t7 = x[lo + 4] + shift, x[lo + 5] + shift, x[lo + 6] + shift, x[lo + 7] + shift
    r0, r1, r2, r3, r4, r5, r6, r7 = t0 * t0, t1 * t1, t2 * t2, t3 * t3, t4 * t4, t5 * t5, t6 * t6, t7 * t7
    i = 8
    stop = n - n % 8
    while i < stop:
        j = lo + i
        t0, t1, t2, t3 = x[j] + shift, x[j + 1] + shift, x[j + 2] + shift, x[j + 3] + shift
        t4, t5, t6, t7 = x[j + 4] + shift, x[j + 5] + shift, x[j + 6] + shift, x[j + 7] + shift
        r0 += t0 * t0
        r1 += t1 * t1
        r2 += t2 * t2
        r3 += t3 * t3
        r4 += t4 * t4
        r5 += t5 * t5
        r6 += t6 * t6
        r7 += t7 * t7
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        t = x[lo + i] + shift
        res += t * t
        i += 1
    return res


def _pw_dev(x: np.ndarray, mean: float, lo: int, n: int) -> tuple[float, float, float, float]:
    """NumPy's pairwise sums of d ** 2, |d|, d ** 2 * d and d ** 2 * d ** 2 (d = x - mean, as the
    NumPy path multiplies them) over x[lo:lo+n], at once."""
    if n < 8:
        s2 = 0.0
        s1 = 0.0
        s3 = 0.0
        s4 = 0.0
        for i in range(lo, lo + n):
            d = x[i] - mean
            d2 = d * d
            s2 += d2
            s1 += abs(d)
            s3 += d2 * d
            s4 += d2 * d2
        return s2, s1, s3, s4
    d0, d1, d2_, d3 = x[lo] - mean, x[lo + 1] - mean, x[lo + 2] - mean, x[lo + 3] - mean
    d4, d5, d6, d7 = x[lo + 4] - mean, x[lo + 5] - mean, x[lo + 6] - mean, x[lo + 7] - mean
    q0, q1, q2, q3, q4, q5, q6, q7 = d0 * d0, d1 * d1, d2_ * d2_, d3 * d3, d4 * d4, d5 * d5, d6 * d6, d7 * d7
    b0, b1, b2, b3, b4, b5, b6, b7 = abs(d0), abs(d1), abs(d2_), abs(d3), abs(d4), abs(d5), abs(d6), abs(d7)
    c0, c1, c2, c3 = q0 * d0, q1 * d1, q2 * d2_, q3 * d3
    c4, c5, c6, c7 = q4 * d4, q5 * d5, q6 * d6, q7 * d7
    e0, e1, e2, e3 = q0 * q0, q1 * q1, q2 * q2, q3 * q3
    e4, e5, e6, e7 = q4 * q4, q5 * q5, q6 * q6, q7 * q7
    i = 8
    stop = n - n % 8
    while i < stop:
        j = lo + i
        d0, d1, d2_, d3 = x[j] - mean, x[j + 1] - mean, x[j + 2] - mean, x[j + 3] - mean
        d4, d5, d6, d7 = x[j + 4] - mean, x[j + 5] - mean, x[j + 6] - mean, x[j + 7] - mean
        t0, t1, t2, t3 = d0 * d0, d1 * d1, d2_ * d2_, d3 * d3
        t4, t5, t6, t7 = d4 * d4, d5 * d5, d6 * d6, d7 * d7
        q0 += t0
        q1 += t1
        q2 += t2
        q3 += t3
        q4 += t4
        q5 += t5
        q6 += t6
        q7 += t7
        b0 += abs(d0)
        b1 += abs(d1)
        b2 += abs(d2_)
        b3 += abs(d3)
        b4 += abs(d4)
        b5 += abs(d5)
        b6 += abs(d6)
        b7 += abs(d7)
        c0 += t0 * d0
        c1 += t1 * d1
        c2 += t2 * d2_
        c3 += t3 * d3
        c4 += t4 * d4
        c5 += t5 * d5
        c6 += t6 * d6
        c7 += t7 * d7
        e0 += t0 * t0
        e1 += t1 * t1
        e2 += t2 * t2
        e3 += t3 * t3
        e4 += t4 * t4
        e5 += t5 * t5
        e6 += t6 * t6
        e7 += t7 * t7
        i += 8
    s2 = ((q0 + q1) + (q2 + q3)) + ((q4 + q5) + (q6 + q7))
    s1 = ((b0 + b1) + (b2 + b3)) + ((b4 + b5) + (b6 + b7))
    s3 = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7))
    s4 = ((e0 + e1) + (e2 + e3)) + ((e4 + e5) + (e6 + e7))
    while i < n:
        d = x[lo + i] - mean
        d2 = d * d
        s2 += d2
        s1 += abs(d)
        s3 += d2 * d
        s4 += d2 * d2
        i += 1
    return s2, s1, s3, s4


def _pw_sum_energy(x: np.ndarray, shift: float, lo: int, n: int) -> tuple[float, float]:
    """:func:`_pw_plain` and :func:`_pw_energy` of x[lo:lo+n] at once."""
    if n < 8:
        r = 0.0
        e = 0.0
        for i in range(lo, lo + n):
            r += x[i]
            t = x[i] + shift
            e += t * t
        return r, e
    r0, r1, r2, r3 = x[lo], x[lo + 1], x[lo + 2], x[lo + 3]
    r4, r5, r6, r7 = x[lo + 4], x[lo + 5], x[lo + 6], x[lo + 7]
    t0, t1, t2, t3 = r0 + shift, r1 + shift, r2 + shift, r3 + shift
    t4, t5, t6, t7 = r4 + shift, r5 + shift, r6 + shift, r7 + shift
    e0, e1, e2, e3, e4, e5, e6, e7 = t0 * t0, t1 * t1, t2 * t2, t3 * t3, t4 * t4, t5 * t5, t6 * t6, t7 * t7
    i = 8
    stop = n - n % 8
    while i < stop:
        j = lo + i
        v0, v1, v2, v3 = x[j], x[j + 1], x[j + 2], x[j + 3]
        v4, v5, v6, v7 = x[j + 4], x[j + 5], x[j + 6], x[j + 7]
        r0 += v0
        r1 += v1
        r2 += v2
        r3 += v3
        r4 += v4
        r5 += v5
        r6 += v6
        r7 += v7
        t0, t1, t2, t3 = v0 + shift, v1 + shift, v2 + shift, v3 + shift
        t4, t5, t6, t7 = v4 + shift, v5 + shift, v6 + shift, v7 + shift
        e0 += t0 * t0
        e1 += t1 * t1
        e2 += t2 * t2
        e3 += t3 * t3
        e4 += t4 * t4
        e5 += t5 * t5
        e6 += t6 * t6
        e7 += t7 * t7
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    en = ((e0 + e1) + (e2 + e3)) + ((e4 + e5) + (e6 + e7))
    while i < n:
        res += x[lo + i]
        t = x[lo + i] + shift
        en += t * t
        i += 1
    return res, en


def _leaf(x: np.ndarray, kind: int, c: float, lo: int, n: int) -> tuple[float, float, float, float]:
    if kind == 0:
        return _pw_plain(x, lo, n), 0.0, 0.0, 0.0
    if kind == 1:
        return _pw_abs(x, c, lo, n), 0.0, 0.0, 0.0
    if kind == 2:
        return _pw_energy(x, c, lo, n), 0.0, 0.0, 0.0
    if kind == 4:
        a, b = _pw_sum_energy(x, c, lo, n)
        return a, b, 0.0, 0.0
    return _pw_dev(x, c, lo, n)


def _pairwise(x: np.ndarray, kind: int, c: float) -> tuple[float, float, float, float]:
    """``numpy.sum`` of x's terms (kind 0: x, 1: |x - c|, 2: (x + c) ** 2, 3: the four of
    :func:`_pw_dev`, 4: x and (x + c) ** 2), in NumPy's pairwise order: halves split at a multiple of 8 down to leaves of at
    most 128 values, each half summed before the two are added (an explicit stack: numba's cache
    does not reload recursive functions safely)."""
    n = x.shape[0]
    if n < 8:
        return _leaf(x, kind, c, 0, n)  # the reduction's 0.0 start: added below as NumPy adds it
    # frames: start, length, stage (0: new, 1: left half pending, 2: right half pending)
    f_lo = np.empty(64, dtype=np.int64)
    f_n = np.empty(64, dtype=np.int64)
    f_stage = np.empty(64, dtype=np.int64)
    left = np.empty((64, 4))
    f_lo[0] = 0
    f_n[0] = n
    f_stage[0] = 0
    top = 0
    r0 = r1 = r2 = r3 = 0.0
    returned = False
    while top >= 0:
        if returned:
            if f_stage[top] == 1:  # the left half came back: keep it, do the right half
                left[top, 0], left[top, 1], left[top, 2], left[top, 3] = r0, r1, r2, r3
                f_stage[top] = 2
                n2 = f_n[top] // 2
                n2 -= n2 % 8
                f_lo[top + 1] = f_lo[top] + n2
                f_n[top + 1] = f_n[top] - n2
                f_stage[top + 1] = 0
                top += 1
                returned = False
            else:  # both halves back
                r0 = left[top, 0] + r0
                r1 = left[top, 1] + r1
                r2 = left[top, 2] + r2
                r3 = left[top, 3] + r3
                top -= 1
            continue
        m = f_n[top]
        if m <= 128:
            r0, r1, r2, r3 = _leaf(x, kind, c, f_lo[top], m)
            top -= 1
            returned = True
            continue
        if top + 1 >= 64:  # pragma: no cover - needs more than 2**60 values
            raise ValueError("too many values")
        f_stage[top] = 1
        n2 = m // 2
        n2 -= n2 % 8
        f_lo[top + 1] = f_lo[top]
        f_n[top + 1] = n2
        f_stage[top + 1] = 0
        top += 1
    return r0, r1, r2, r3


def _extent(x: np.ndarray) -> tuple[float, float]:
    """(min, max) of x (not empty, no NaN), four running pairs (no chain of dependent compares)."""
    n = x.shape[0]
    a0 = a1 = a2 = a3 = x[0]
    b0 = b1 = b2 = b3 = x[0]
    stop = n - n % 4
    for i in range(0, stop, 4):
        a0 = min(a0, x[i])
        a1 = min(a1, x[i + 1])
        a2 = min(a2, x[i + 2])
        a3 = min(a3, x[i + 3])
        b0 = max(b0, x[i])
        b1 = max(b1, x[i + 1])
        b2 = max(b2, x[i + 2])
        b3 = max(b3, x[i + 3])
    for i in range(stop, n):
        a0 = min(a0, x[i])
        b0 = max(b0, x[i])
    return min(min(a0, a1), min(a2, a3)), max(max(b0, b1), max(b2, b3))


def _bin(v: float, mn: float, scale: float, top: float) -> int:
    """The selection histogram's bin of v: (v - mn) * scale clamped to [0, top] as a float (NaN: 0),
    then truncated: monotone in v, even where v - mn overflows, and always in range."""
    t = (v - mn) * scale
    t = t if t > 0.0 else 0.0
    t = t if t < top else top
    return int(t)


def _locate(x: np.ndarray, ranks: np.ndarray, mn: float, mx: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(buf, lo, hi, rr): the ranks[j]-th smallest of x (ranks ascending, in range) is the rr[j]-th
    smallest of buf[lo[j]:hi[j]]: the values of the histogram bin holding it (evenly spaced bins over
    [min, max]; a value's bin is monotone in it, so the bins are ordered intervals), or all of x
    where it does not split (one value, few values, a range beyond float64). mn, mx: x's extent (a
    wrong one gives wrong values, never an access out of bounds)."""
    n = x.shape[0]
    nr = ranks.shape[0]
    lo = np.zeros(nr, dtype=np.int64)
    hi = np.full(nr, n, dtype=np.int64)
    rr = ranks.copy()
    nb = min(max(n // 4, 2), _MAX_BINS)
    scale = nb / (mx - mn) if mx > mn else 0.0
    if n <= 64 or not (scale > 0.0 and scale < np.inf):
        return x, lo, hi, rr
    top = nb - 1.0  # clamped as floats: monotone even where x - mn overflows (a wrong extent)
    # four interleaved counts: neighbouring voxels fall in one bin, and one counter would wait on itself
    h4 = np.zeros((4, nb), dtype=np.int32)
    stop = n - n % 4
    for i in range(0, stop, 4):
        h4[0, _bin(x[i], mn, scale, top)] += 1
        h4[1, _bin(x[i + 1], mn, scale, top)] += 1
        h4[2, _bin(x[i + 2], mn, scale, top)] += 1
        h4[3, _bin(x[i + 3], mn, scale, top)] += 1
    for i in range(stop, n):
        h4[0, _bin(x[i], mn, scale, top)] += 1
    hist = np.zeros(nb + 1, dtype=np.int64)
    for b in range(nb):
        hist[b + 1] = hist[b] + h4[0, b] + h4[1, b] + h4[2, b] + h4[3, b]  # hist[b]: the values before bin b
    rb = np.empty(nr, dtype=np.int64)
    b = 0
    for j in range(nr):
        while hist[b + 1] <= ranks[j]:
            b += 1
        rb[j] = b
    slot = np.full(nb, -1, dtype=np.int64)
    start = np.zeros(nr + 1, dtype=np.int64)
    nslot = 0
    for j in range(nr):
        if slot[rb[j]] < 0:
            slot[rb[j]] = nslot
            start[nslot + 1] = start[nslot] + hist[rb[j] + 1] - hist[rb[j]]
            nslot += 1
    buf = np.empty(start[nslot], dtype=np.float64)
    fill = start[:nslot].copy()
    for i in range(n):
        v = x[i]
        s = slot[_bin(v, mn, scale, top)]
        if s >= 0:
            buf[fill[s]] = v
            fill[s] += 1
    for j in range(nr):
        s = slot[rb[j]]
        lo[j] = start[s]
        hi[j] = start[s + 1]
        rr[j] = ranks[j] - hist[rb[j]]
    return buf, lo, hi, rr


def _pick(seg: np.ndarray, rr: np.ndarray, out: np.ndarray) -> None:
    """out[j] = the rr[j]-th smallest of seg."""
    mn, mx = _extent(seg)
    if mn == mx:
        for j in range(rr.shape[0]):
            out[j] = mn
        return
    xs = np.sort(seg)
    for j in range(rr.shape[0]):
        out[j] = xs[rr[j]]


def _select(x: np.ndarray, ranks: np.ndarray, out: np.ndarray, mn: float, mx: float) -> None:
    """out[j] = the ranks[j]-th smallest of x (ranks ascending, in range): the histogram bins of
    the wanted ranks (:func:`_locate`; mn, mx: x's extent), twice where a bin holds many values,
    then sorted."""
    n = x.shape[0]
    nr = ranks.shape[0]
    buf, lo, hi, rr = _locate(x, ranks, mn, mx)
    j = 0
    while j < nr:
        e = j
        while e < nr and lo[e] == lo[j]:
            e += 1
        seg = buf[lo[j]:hi[j]]
        if seg.shape[0] > 256 and seg.shape[0] < n:
            smn, smx = _extent(seg)
            buf2, lo2, hi2, rr2 = _locate(seg, rr[j:e], smn, smx)
            k = j
            while k < e:
                g = k
                while g < e and lo2[g - j] == lo2[k - j]:
                    g += 1
                _pick(buf2[lo2[k - j]:hi2[k - j]], rr2[k - j:g - j], out[k:g])
                k = g
        else:
            _pick(seg, rr[j:e], out[j:e])
        j = e


def _moments_loop(x: np.ndarray, shift: float, qs: np.ndarray, mn: float, mx: float) -> np.ndarray:
    n = x.shape[0]
    res = np.full(15, np.nan)
    if n == 0:
        return res
    if not (mn <= mx):  # not given
        mn, mx = _extent(x)
    nq = qs.shape[0]
    # the order statistics numpy.percentile interpolates (its own index arithmetic) and the median's
    ranks = np.empty(2 * nq + 2, dtype=np.int64)
    virtual = np.empty(nq)
    prev = np.empty(nq, dtype=np.int64)
    for j in range(nq):
        virtual[j] = (n - 1) * qs[j]
        p = np.floor(virtual[j])
        if virtual[j] >= n - 1:
            prev[j] = -1
            ranks[2 * j] = n - 1
            ranks[2 * j + 1] = n - 1
        else:
            prev[j] = np.int64(p)
            ranks[2 * j] = np.int64(p)
            ranks[2 * j + 1] = np.int64(p + 1)
    half = n // 2
    ranks[2 * nq] = half - 1 if n % 2 == 0 else half
    ranks[2 * nq + 1] = half
    order = np.argsort(ranks)
    stats = np.empty(ranks.shape[0])
    _select(x, ranks[order], stats, mn, mx)
    at = np.empty(ranks.shape[0])
    at[order] = stats
    pct = np.empty(nq)
    for j in range(nq):
        a = at[2 * j]
        b = at[2 * j + 1]
        gamma = virtual[j] - np.float64(prev[j])
        diff = b - a
        if gamma >= 0.5:
            pct[j] = b - diff * (1 - gamma)
        else:
            pct[j] = a + diff * gamma
    total, energy, _, _ = _pairwise(x, 4, shift)
    mean = (0.0 + total) / n
    energy = 0.0 + energy
    s2, s1, s3, s4 = _pairwise(x, 3, mean)
    # the robust subset [10th, 90th percentile], in the values' order
    p10 = pct[0]
    p90 = pct[nq - 1]
    sub = np.empty(n)
    m = 0
    for i in range(n):  # without a branch: 10-20 % of the values, in no order, fall outside
        v = x[i]
        sub[m] = v
        m += (v >= p10) & (v <= p90)
    res[0] = mean
    res[1] = energy
    res[2] = 0.0 + s2
    res[3] = 0.0 + s1
    res[4] = 0.0 + s3
    res[5] = 0.0 + s4
    res[6] = mn
    res[7] = mx
    res[8] = ((0.0 + at[2 * nq]) + at[2 * nq + 1]) / 2.0 if n % 2 == 0 else (0.0 + at[2 * nq + 1]) / 1.0
    res[9] = m
    if m:
        sub = sub[:m]
        sub_mean = (0.0 + _pairwise(sub, 0, 0.0)[0]) / m
        res[10] = (0.0 + _pairwise(sub, 1, sub_mean)[0]) / m
    for j in range(nq):
        res[11 + j] = pct[j]
    return res


def moments(values: np.ndarray, shift: float, qs: np.ndarray = QUANTILES,
            extent: tuple[float, float] | None = None) -> np.ndarray:
    """From the ROI's values (float64, finite): [mean, sum of (x + shift) ** 2, sums of d ** 2, |d|,
    d ** 3, d ** 4 (d = x - mean), minimum, maximum, median, robust subset size, its mean absolute
    deviation, then ``numpy.percentile(values, 100 qs)`` (4 values)], each sum in NumPy's pairwise
    order (module notes); NaN where ``values`` is empty. ``extent``: the values' (minimum,
    maximum) where known (:func:`gather` gives them), saving a pass."""
    x = np.ascontiguousarray(values, dtype=np.float64).ravel()
    q = np.ascontiguousarray(qs, dtype=np.float64)
    if q.shape != (4,) or not np.all((q >= 0) & (q <= 1)):
        raise ValueError("moments takes 4 quantiles in [0, 1]")
    mn, mx = (np.nan, np.nan) if extent is None else (float(extent[0]), float(extent[1]))
    return _kernel("_moments_loop")(x, float(shift), q, mn, mx)


_HELPERS = ("_pw_plain", "_pw_abs", "_pw_energy", "_pw_dev", "_pw_sum_energy", "_leaf", "_pairwise", "_extent", "_bin", "_locate", "_pick", "_select")


def _kernel(name: str) -> Any:
    """The compiled version of this module's function ``name`` (its helpers compiled first)."""
    return jit.module_kernel(globals(), _HELPERS, name)
