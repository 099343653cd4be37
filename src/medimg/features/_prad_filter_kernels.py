"""Compiled twins of the image filters PyRadiomics takes from SimpleITK and PyWavelets.

* :func:`log_box`: SimpleITK's ``LaplacianRecursiveGaussianImageFilter`` (normalised across scale)
  restricted to a box, as :func:`medimg.features.pyradiomics_compat._log_box` composes it from
  ``RecursiveGaussianImageFilter`` passes. Each pass is Deriche's 4th-order recursive (IIR)
  Gaussian as ITK implements it (``RecursiveSeparableImageFilter`` / ``RecursiveGaussianImageFilter``,
  ITK 5.x): the same coefficients (computed here in the same double-precision operations), the same
  edge-extension start of the causal and anti-causal recursions, the same order of every addition and
  multiplication, double precision inside a pass and float32 between passes. The responses are
  therefore SimpleITK's to the bit; the tests check it. The difference from SimpleITK is only what is
  computed: each pass filters only the lines the later passes read, writes only the samples they
  read (no copies of whole images), and many lines at once (vectorised across lines).
* :func:`swt1_box`: one level of PyWavelets's ``swtn`` (periodic, undecimated) on a region, each
  sub-band's sums in PyWavelets's order, the later axes filtered only where the box needs them
  (compiled, or the same sums in NumPy).

The loops are plain Python functions compiled lazily by :func:`medimg.core.jit.compile_kernel`;
nothing here imports numba at module level. Call the compiled ones only when
:func:`medimg.core.jit.wanted` is true.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from medimg.core import jit

__all__ = ["recursive_gaussian_coefficients", "recursive_gaussian_pass", "scale_add", "log_box", "swt_filters", "swt_axis_plan", "swt_box",
           "swt1_box"]

#: Width of the tiles of lines filtered together (vectorised across the lines of a tile), for lines
#: along axes 0 and 1: as wide as the tile's three float64 buffers (``n`` samples each) fit in
#: ``_TILE_BYTES`` (the L2 cache), between ``_TILE`` and ``_TILE_MAX`` lines. Wider tiles read each
#: row of the image in longer runs: on the IBSI CT phantom's passes (60 x 201 x 204), 256 lines
#: instead of 64 took 16 % (axis 0) and 20 % (axis 1) less time, and 512 lines along axis 0 (the
#: rows of a plane as one run) 15-20 % less again. 16 lines along the contiguous axis (transposed
#: into the tile), measured best on brain1's and the CT phantom's passes.
_TILE = 64
_TILE_MAX = 512
_TILE_BYTES = 1 << 20


def _tile(axis: int, n: int) -> int:
    """The tile width (lines) of a pass along ``axis`` with lines of ``n`` samples."""
    if axis == 2:
        return 16
    return min(_TILE_MAX, max(_TILE, _TILE_BYTES // (24 * n) // 16 * 16))


# ------------------------------------------------------------------------------- recursive Gaussian

@functools.lru_cache(maxsize=256)
def recursive_gaussian_coefficients(sigma: float, spacing: float, order: int,
                                    normalize_across_scale: bool = True) -> np.ndarray:
    """Deriche's recursive-Gaussian coefficients as ITK's ``RecursiveGaussianImageFilter::SetUp``
    computes them for ``sigma`` (mm) on an axis of ``spacing`` (mm): the array
    ``[N0, N1, N2, N3, D1, D2, D3, D4, M1, M2, M3, M4, BN1, BN2, BN3, BN4, BM1, BM2, BM3, BM4]``.

    ``order`` 0 smooths, 2 takes the second derivative (scaled by ``sigma**2`` when normalised
    across scale). The arithmetic is ITK's, operation for operation, in double precision."""
    if order not in (0, 2):
        raise ValueError(f"order must be 0 or 2, got {order}")
    spacing = abs(float(spacing))
    if spacing < 1e-8:
        raise ValueError(f"spacing {spacing} is too small")
    sigma = float(sigma)
    sigmad = sigma / spacing
    # Deriche's fit of the Gaussian and its derivatives by two damped cosines (ITK's constants)
    w1, l1, w2, l2 = 0.6681, -1.3932, 2.0787, -1.3732
    a1 = (1.3530, -0.6724, -1.3563)
    b1 = (1.8151, -3.4327, 5.2318)
    a2 = (-0.3531, 0.6724, 0.3446)
    b2 = (0.0902, 0.6100, -2.2355)

    cos1, cos2 = math.cos(w1 / sigmad), math.cos(w2 / sigmad)
    exp1, exp2 = math.exp(l1 / sigmad), math.exp(l2 / sigmad)
    d4 = exp1 * exp1 * exp2 * exp2
    d3 = -2 * cos1 * exp1 * exp2 * exp2
    d3 += -2 * cos2 * exp2 * exp1 * exp1
    d2 = 4 * cos2 * cos1 * exp1 * exp2
    d2 += exp1 * exp1 + exp2 * exp2
    d1 = -2 * (exp2 * cos2 + exp1 * cos1)
    sd = 1.0 + d1 + d2 + d3 + d4
    dd = d1 + 2 * d2 + 3 * d3 + 4 * d4
    ed = d1 + 4 * d2 + 9 * d3 + 16 * d4

    def numerator(k: int) -> tuple[float, float, float, float, float, float, float]:
        sin1, sin2 = math.sin(w1 / sigmad), math.sin(w2 / sigmad)
        c1, c2 = math.cos(w1 / sigmad), math.cos(w2 / sigmad)
        e1, e2 = math.exp(l1 / sigmad), math.exp(l2 / sigmad)
        A1, B1, A2, B2 = a1[k], b1[k], a2[k], b2[k]
        n0 = A1 + A2
        n1 = e2 * (B2 * sin2 - (A2 + 2 * A1) * c2)
        n1 += e1 * (B1 * sin1 - (A1 + 2 * A2) * c1)
        n2 = (A1 + A2) * c2 * c1
        n2 -= B1 * c2 * sin1 + B2 * c1 * sin2
        n2 *= 2 * e1 * e2
        n2 += A2 * e1 * e1 + A1 * e2 * e2
        n3 = e2 * e1 * e1 * (B2 * sin2 - A2 * c2)
        n3 += e1 * e2 * e2 * (B1 * sin1 - A1 * c1)
        return n0, n1, n2, n3, n0 + n1 + n2 + n3, n1 + 2 * n2 + 3 * n3, n1 + 4 * n2 + 9 * n3

    if order == 0:
        n0, n1, n2, n3, sn, _dn, _en = numerator(0)
        alpha0 = 2 * sn / sd - n0
        scale = 1.0 / alpha0
        n0, n1, n2, n3 = n0 * scale, n1 * scale, n2 * scale, n3 * scale
    else:
        across = sigma * sigma if normalize_across_scale else 1.0
        n0_0, n1_0, n2_0, n3_0, sn0, dn0, en0 = numerator(0)
        n0_2, n1_2, n2_2, n3_2, sn2, dn2, en2 = numerator(2)
        beta = -(2 * sn2 - sd * n0_2) / (2 * sn0 - sd * n0_0)
        n0 = n0_2 + beta * n0_0
        n1 = n1_2 + beta * n1_0
        n2 = n2_2 + beta * n2_0
        n3 = n3_2 + beta * n3_0
        sn = sn2 + beta * sn0
        dn = dn2 + beta * dn0
        en = en2 + beta * en0
        alpha2 = en * sd * sd - ed * sn * sd - 2 * dn * dd * sd + 2 * dd * dd * sn
        alpha2 /= sd * sd * sd
        scale = across / alpha2
        n0, n1, n2, n3 = n0 * scale, n1 * scale, n2 * scale, n3 * scale
    # symmetric kernels (orders 0 and 2): the anti-causal numerator, then the edge-extension terms
    m1 = n1 - d1 * n0
    m2 = n2 - d2 * n0
    m3 = n3 - d3 * n0
    m4 = -d4 * n0
    sn = n0 + n1 + n2 + n3
    sm = m1 + m2 + m3 + m4
    sd = 1.0 + d1 + d2 + d3 + d4
    bn = [d * sn / sd for d in (d1, d2, d3, d4)]
    bm = [d * sm / sd for d in (d1, d2, d3, d4)]
    coef = np.array([n0, n1, n2, n3, d1, d2, d3, d4, m1, m2, m3, m4, *bn, *bm], dtype=np.float64)
    coef.flags.writeable = False  # cached: shared by every call
    return coef


def _pass(src, axis, lo0, lo1, lo2, hi0, hi1, hi2, k0, k1, c, out, tile):  # pragma: no cover - compiled
    """One recursive-Gaussian pass along ``axis`` (0, 1, 2) of the region ``[lo, hi)`` of ``src``;
    the samples ``k0..k1-1`` (relative to the region) along the axis go to ``out`` (float32, the
    region's shape with that axis ``k1 - k0`` long).

    The lines are filtered a tile of ``w`` lines at a time (``xb[i, j]``: sample ``i`` of line ``j``)
    by ITK's ``FilterDataArray``: the causal recursion into ``cb``, the anti-causal one into ``ab``,
    each started as if the line's end sample went on forever, every sum in ITK's order
    (``out = a1*b1 + a2*b2 + a3*b3 + a4*b4``, then ``out -= a1*b1 + a2*b2 + a3*b3 + a4*b4``); the
    response is ``float32(cb + ab)``. The causal recursion stops at the last kept sample and the
    anti-causal one at the first (later/earlier values are not read): the same kept values."""
    n0, n1, n2, n3 = c[0], c[1], c[2], c[3]
    d1, d2, d3, d4 = c[4], c[5], c[6], c[7]
    m1, m2, m3, m4 = c[8], c[9], c[10], c[11]
    bn1, bn2, bn3, bn4 = c[12], c[13], c[14], c[15]
    bm1, bm2, bm3, bm4 = c[16], c[17], c[18], c[19]
    if axis == 0:
        n, na, a0, nb, b0 = hi0 - lo0, hi1 - lo1, lo1, hi2 - lo2, lo2
    elif axis == 1:
        n, na, a0, nb, b0 = hi1 - lo1, hi0 - lo0, lo0, hi2 - lo2, lo2
    else:
        n, na, a0, nb, b0 = hi2 - lo2, hi0 - lo0, lo0, hi1 - lo1, lo1

    xb = np.empty((n, tile), np.float64)
    cb = np.empty((n, tile), np.float64)
    ab = np.empty((n, tile), np.float64)
    e = n - 1
    for a in range(na):
        for t in range(0, nb, tile):
            w = min(tile, nb - t)
            if axis == 2:  # lines along the contiguous axis: a tile of rows, transposed
                for j in range(w):
                    for i in range(n):
                        xb[i, j] = src[a0 + a, b0 + t + j, lo2 + i]
            elif axis == 1:
                for i in range(n):
                    for j in range(w):
                        xb[i, j] = src[a0 + a, lo1 + i, b0 + t + j]
            else:
                for i in range(n):
                    for j in range(w):
                        xb[i, j] = src[lo0 + i, a0 + a, b0 + t + j]
            for j in range(w):  # causal start: the first sample extends to minus infinity
                v = xb[0, j]
                x1, x2, x3 = xb[1, j], xb[2, j], xb[3, j]
                s0 = v * n0 + v * n1 + v * n2 + v * n3
                s1 = x1 * n0 + v * n1 + v * n2 + v * n3
                s2 = x2 * n0 + x1 * n1 + v * n2 + v * n3
                s3 = x3 * n0 + x2 * n1 + x1 * n2 + v * n3
                s0 = s0 - (v * bn1 + v * bn2 + v * bn3 + v * bn4)
                s1 = s1 - (s0 * d1 + v * bn2 + v * bn3 + v * bn4)
                s2 = s2 - (s1 * d1 + s0 * d2 + v * bn3 + v * bn4)
                s3 = s3 - (s2 * d1 + s1 * d2 + s0 * d3 + v * bn4)
                cb[0, j] = s0
                cb[1, j] = s1
                cb[2, j] = s2
                cb[3, j] = s3
            for i in range(4, max(k1, 4)):  # the causal values after the last kept sample are not read
                for j in range(w):
                    s = xb[i, j] * n0 + xb[i - 1, j] * n1 + xb[i - 2, j] * n2 + xb[i - 3, j] * n3
                    cb[i, j] = s - (cb[i - 1, j] * d1 + cb[i - 2, j] * d2 + cb[i - 3, j] * d3 + cb[i - 4, j] * d4)
            for j in range(w):  # anti-causal start: the last sample extends to plus infinity
                v = xb[e, j]
                x1, x2 = xb[e - 1, j], xb[e - 2, j]
                t0 = v * m1 + v * m2 + v * m3 + v * m4
                t1 = v * m1 + v * m2 + v * m3 + v * m4
                t2 = x1 * m1 + v * m2 + v * m3 + v * m4
                t3 = x2 * m1 + x1 * m2 + v * m3 + v * m4
                t0 = t0 - (v * bm1 + v * bm2 + v * bm3 + v * bm4)
                t1 = t1 - (t0 * d1 + v * bm2 + v * bm3 + v * bm4)
                t2 = t2 - (t1 * d1 + t0 * d2 + v * bm3 + v * bm4)
                t3 = t3 - (t2 * d1 + t1 * d2 + t0 * d3 + v * bm4)
                ab[e, j] = t0
                ab[e - 1, j] = t1
                ab[e - 2, j] = t2
                ab[e - 3, j] = t3
            for i in range(n - 4, k0, -1):  # nor the anti-causal ones before the first
                for j in range(w):
                    s = xb[i, j] * m1 + xb[i + 1, j] * m2 + xb[i + 2, j] * m3 + xb[i + 3, j] * m4
                    ab[i - 1, j] = s - (ab[i, j] * d1 + ab[i + 1, j] * d2 + ab[i + 2, j] * d3 + ab[i + 3, j] * d4)
            if axis == 2:
                for j in range(w):
                    for k in range(k0, k1):
                        out[a, t + j, k - k0] = np.float32(cb[k, j] + ab[k, j])
            elif axis == 1:
                for k in range(k0, k1):
                    for j in range(w):
                        out[a, k - k0, t + j] = np.float32(cb[k, j] + ab[k, j])
            else:
                for k in range(k0, k1):
                    for j in range(w):
                        out[k - k0, a, t + j] = np.float32(cb[k, j] + ab[k, j])


def _scale_add(total, term, scale, first):  # pragma: no cover - compiled
    """``total = float32(float64(term) * scale)`` (``first``) or ``float32(float64(total) +
    float64(term) * scale)``, element by element (flat, C-contiguous float32 arrays of one size):
    NumPy's values for the same expressions, without float64 temporaries."""
    if total.shape[0] != term.shape[0]:
        raise ValueError("total and term differ in size")
    if first:
        for i in range(total.shape[0]):
            total[i] = np.float32(np.float64(term[i]) * scale)
    else:
        for i in range(total.shape[0]):
            total[i] = np.float32(np.float64(total[i]) + np.float64(term[i]) * scale)


#: Image types filtered as they are (one compiled signature each); others go through float64.
_DTYPES = (np.dtype(np.int16), np.dtype(np.float32), np.dtype(np.float64))


def recursive_gaussian_pass(src: np.ndarray, axis: int, lo: tuple[int, int, int] | list[int],
                            hi: tuple[int, int, int] | list[int], keep: tuple[int, int], coef: np.ndarray) -> np.ndarray:
    """One ``RecursiveGaussianImageFilter`` pass along NumPy ``axis`` of ``src[lo:hi]`` (index bounds,
    ``hi`` exclusive), as ITK computes it on that region alone, returning (float32) only the samples
    ``keep[0]..keep[1]-1`` (relative to the region) along the axis. ``coef`` from
    :func:`recursive_gaussian_coefficients`. The region must be at least 4 samples long along the axis."""
    if src.ndim != 3 or axis not in (0, 1, 2):
        raise ValueError("a 3-D array and an axis 0, 1 or 2 are needed")
    shape = src.shape
    lo = tuple(int(v) for v in lo)
    hi = tuple(int(v) for v in hi)
    if not all(0 <= a < b <= s for a, b, s in zip(lo, hi, shape, strict=True)):
        raise ValueError(f"region {lo}..{hi} is not inside the array of shape {shape}")
    n = hi[axis] - lo[axis]
    k0, k1 = int(keep[0]), int(keep[1])
    if n < 4:
        raise ValueError("the recursive Gaussian needs at least 4 samples along its axis")
    if not 0 <= k0 < k1 <= n:
        raise ValueError(f"kept samples {k0}..{k1} outside 0..{n}")
    coef = np.array(coef, dtype=np.float64)  # a writable copy: one compiled signature
    if coef.shape != (20,):
        raise ValueError("coef must hold the 20 coefficients")
    if src.dtype not in _DTYPES:  # the region in float64: exact for every integer (ITK reads them so)
        src = src[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))].astype(np.float64)
        lo, hi = (0, 0, 0), src.shape
    src = np.ascontiguousarray(src)
    out_shape = [b - a for a, b in zip(lo, hi, strict=True)]
    out_shape[axis] = k1 - k0
    out = np.empty(out_shape, np.float32)
    kernel = jit.compile_kernel(_pass)
    s0, s1, s2 = src.shape
    if axis == 0 and lo[2] == 0 and hi[2] == s2:
        # lines along axis 0 through whole rows: the region's (axis 1, axis 2) plane is one run of
        # memory, filtered as one row of lines (wider tiles, longer runs; the same lines)
        kernel(src.reshape(s0, 1, s1 * s2), 0, lo[0], 0, lo[1] * s2, hi[0], 1, hi[1] * s2, k0, k1, coef,
               out.reshape(k1 - k0, 1, -1), _tile(axis, n))
    else:
        kernel(src, axis, lo[0], lo[1], lo[2], hi[0], hi[1], hi[2], k0, k1, coef, out, _tile(axis, n))
    return out


def scale_add(total: np.ndarray, term: np.ndarray, scale: float, first: bool) -> np.ndarray:
    """The LoG's sum of terms as :func:`log_box` adds them: ``total`` (float32, C-contiguous, changed in
    place and returned) becomes ``float32(float64(term) * scale)`` when ``first``, else
    ``float32(float64(total) + float64(term) * scale)`` (``term`` float32 of the same shape)."""
    if total.shape != term.shape or total.dtype != np.float32 or term.dtype != np.float32 \
            or not total.flags.c_contiguous:
        raise ValueError("total and term must be float32 arrays of one shape, total C-contiguous")
    jit.compile_kernel(_scale_add)(total.reshape(-1), np.ascontiguousarray(term).reshape(-1), float(scale), bool(first))
    return total


def log_box(src: np.ndarray, spacing_xyz: tuple[float, float, float], sigma: float,
            clo: np.ndarray, chi: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The float32 LoG response (SimpleITK's ``LaplacianRecursiveGaussianImageFilter``, normalised
    across scale, ``sigma`` in mm) of the region ``clo..chi`` of ``src`` (z, y, x index bounds,
    inclusive) inside the box ``lo..hi`` (inclusive, within the region).

    As :func:`medimg.features.pyradiomics_compat._log_box` composes it: for each ITK axis d (x, y,
    z), the second-derivative pass along d, then the smoothing pass along each other axis in
    increasing order, each pass keeping only the samples that the later passes read (the box's range
    along the axes already filtered), then ``sum + term * (1 / spacing_d**2)`` in float64 rounded to
    float32 (:func:`scale_add`: no float64 copies)."""
    clo = [int(v) for v in clo]
    chi = [int(v) + 1 for v in chi]
    box = [(int(a) - c, int(b) + 1 - c) for a, b, c in zip(lo, hi, clo, strict=True)]
    total = np.empty([b - a for a, b in box], np.float32)
    for d in range(3):
        axis = 2 - d  # ITK dimension d is NumPy axis 2 - d
        term = recursive_gaussian_pass(src, axis, clo, chi, box[axis],
                                       recursive_gaussian_coefficients(sigma, spacing_xyz[d], 2))
        for j in (k for k in range(3) if k != d):
            axis = 2 - j
            term = recursive_gaussian_pass(term, axis, (0, 0, 0), term.shape, box[axis],
                                           recursive_gaussian_coefficients(sigma, spacing_xyz[j], 0))
        scale_add(total, term, 1.0 / (spacing_xyz[d] * spacing_xyz[d]), d == 0)
    return total


# ------------------------------------------------------------------------ stationary wavelet (pywt)

def _periodization_order(i: int, n: int, f: int) -> list[tuple[int, int]]:
    """The (filter index, input index) terms of one output of PyWavelets's periodic convolution
    (``downsampling_convolution_periodization``, step 1), in the order it adds them: the output
    centred on input ``i`` (``F/2 <= i < N + F/2``) of a signal of ``n`` samples and a filter of ``f``."""
    terms: list[tuple[int, int]] = []
    j = 0
    if i >= n:  # the filter overhangs the right end: the wrapped terms first, filter index falling
        while i - j >= n:
            k = 0
            while k < n and i - j >= n:
                terms.append((i - n - j, k))
                k += 1
                j += 1
    if i < f:  # the filter overhangs the left end: the terms inside, then the wrapped ones
        while j <= i and j < f:
            terms.append((j, i - j))
            j += 1
        while j < f:
            k = 0
            while k < n and j < f:
                terms.append((j, n - 1 - k))
                k += 1
                j += 1
    else:
        while j < f:
            terms.append((j, i - j))
            j += 1
    return terms


def _axis_plan(out_pos: np.ndarray, period: int, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the outputs at the (padded, periodic) positions ``out_pos`` of a level-1 ``pywt.swt``
    along an axis of ``period`` samples: the input positions read (sorted), and per output the
    filter index and the slot in those positions of each term, in PyWavelets's order of addition."""
    centre = np.asarray(out_pos, dtype=np.int64) + f // 2  # the input sample each output is centred on
    if centre.size and (centre.min() < f // 2 or centre.max() >= period + f // 2):
        raise ValueError(f"outputs outside the signal of {period} samples")
    fidx = np.broadcast_to(np.arange(f), (centre.size, f)).copy()
    qidx = centre[:, None] - fidx  # inside the signal: filter index ascending, input falling
    for t in np.flatnonzero((centre < f) | (centre >= period)):  # the wrapping ones: PyWavelets's order
        terms = _periodization_order(int(centre[t]), period, f)
        if len(terms) != f:  # pragma: no cover - PyWavelets's loops always add F terms
            raise AssertionError("unexpected number of terms")
        fidx[t] = [fj for fj, _ in terms]
        qidx[t] = [q for _, q in terms]
    in_pos, iidx = np.unique(qidx, return_inverse=True)
    return in_pos.astype(np.int64), fidx.astype(np.int64), iidx.reshape(qidx.shape).astype(np.int64)


def swt_axis_plan(lo: int, hi: int, n: int, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the outputs ``lo..hi`` (inclusive) of a level-1 ``pywt.swt`` along an axis of ``n``
    samples that PyRadiomics pads to even length by wrapping (``P = n + n % 2`` samples, the last
    equal to the first): the input samples read (``take``: indices into the axis), and per output
    the filter index and the position in ``take`` of each term, in PyWavelets's order of addition."""
    if not 0 <= lo <= hi < n:
        raise ValueError(f"outputs {lo}..{hi} outside the axis of {n}")
    in_pos, fidx, iidx = _axis_plan(np.arange(lo, hi + 1), n + n % 2, f)
    return np.where(in_pos == n, 0, in_pos), fidx, iidx  # the padding sample repeats the first


def _swt_stage(src, axis, fidx, iidx, flo, fhi, dst):  # pragma: no cover - compiled
    """Low- and high-pass of every array ``src[s]`` along spatial ``axis`` (0, 1, 2): ``dst[2s]``
    and ``dst[2s + 1]``, output ``t`` the sum over ``r`` of ``filter[fidx[t, r]] * src[.., iidx[t, r], ..]``
    added in ``r`` order from zero (PyWavelets's order, in the arrays' own precision). Each output
    sees the same sequence of additions whatever the loop order, which keeps the contiguous axis
    innermost where it can."""
    ns, a, b, c = src.shape
    nt, nf = fidx.shape
    zero = flo[0] - flo[0]  # 0 in the arrays' precision (the filters are finite)
    for s in range(ns):
        if axis == 2:
            for z in range(a):
                for y in range(b):
                    for t in range(nt):
                        lo = zero
                        hi = zero
                        for r in range(nf):
                            v = src[s, z, y, iidx[t, r]]
                            lo += flo[fidx[t, r]] * v
                            hi += fhi[fidx[t, r]] * v
                        dst[2 * s, z, y, t] = lo
                        dst[2 * s + 1, z, y, t] = hi
            continue
        for z in range(a if axis == 1 else 1):
            for t in range(nt):
                for r in range(nf):
                    fl = flo[fidx[t, r]]
                    fh = fhi[fidx[t, r]]
                    q = iidx[t, r]
                    if axis == 0:
                        src_rows = src[s, q]
                        lo_rows = dst[2 * s, t]
                        hi_rows = dst[2 * s + 1, t]
                    else:
                        src_rows = src[s, z, q:q + 1]
                        lo_rows = dst[2 * s, z, t:t + 1]
                        hi_rows = dst[2 * s + 1, z, t:t + 1]
                    for y in range(src_rows.shape[0]):
                        sv = src_rows[y]
                        lv = lo_rows[y]
                        hv = hi_rows[y]
                        if r == 0:
                            for x in range(c):
                                lv[x] = zero + fl * sv[x]
                                hv[x] = zero + fh * sv[x]
                        else:
                            for x in range(c):
                                lv[x] += fl * sv[x]
                                hv[x] += fh * sv[x]


@functools.lru_cache(maxsize=32)
def swt_filters(wavelet: str, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """The decomposition filters (low, high) PyWavelets's ``swt`` applies to data of ``dtype``
    (float32 or float64), read back from its response to a unit impulse: its float32 tables are
    not always the float64 coefficients rounded (coif1: one differs by an ulp)."""
    import pywt

    w = pywt.Wavelet(wavelet)
    f = int(w.dec_len)
    x = np.zeros(2 * f + 2, dtype=dtype)
    x[f] = 1
    lo, hi = pywt.swt(x, w, level=1, start_level=0, trim_approx=False)[0]
    start = f - f // 2
    out = np.array(lo[start:start + f]), np.array(hi[start:start + f])
    for a in out:
        a.flags.writeable = False  # cached: shared by every call
    return out


def _swt_stage_numpy(src: np.ndarray, axis: int, fidx: np.ndarray, iidx: np.ndarray, flo: np.ndarray,
                     fhi: np.ndarray, dst: np.ndarray) -> None:
    """:func:`_swt_stage` in NumPy: per term ``r`` (in order) one gather along the axis, one product
    and one addition per sub-band; each output gets the same additions in the same order."""
    shape = [1, 1, 1]
    shape[axis] = fidx.shape[0]
    for s in range(src.shape[0]):
        lo_out, hi_out = dst[2 * s], dst[2 * s + 1]
        lo_out.fill(0)
        hi_out.fill(0)
        for r in range(fidx.shape[1]):
            v = np.take(src[s], iidx[:, r], axis=axis)
            lo_out += flo[fidx[:, r]].reshape(shape) * v
            hi_out += fhi[fidx[:, r]].reshape(shape) * v


def swt_box(arr: np.ndarray, dec_lo: np.ndarray | list[float], dec_hi: np.ndarray | list[float],
            axes: tuple[int, ...], lo: np.ndarray, hi: np.ndarray, start: int = 0, level: int = 1, *,
            compiled: bool = True) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """PyRadiomics's wavelet decomposition (``_swt3``: ``pywt.swtn(level=1)`` of the image padded to
    even sizes by wrapping, repeated on the approximation ``start + level`` times) inside the box
    ``lo..hi`` (z, y, x, inclusive) of ``arr``.

    Returns the sub-band keys in ``swtn``'s order (``'a'``/``'d'`` per axis of ``axes``, in that
    order; the approximation ``'a' * len(axes)`` included), per output level (``start + 1`` ..
    ``start + level``) an array of the sub-bands (one per key, the box's shape), and the last
    approximation on the box (the image itself where there is no repetition). Values in ``swtn``'s precision (float32 for float32/float16 images,
    float64 otherwise), each sum added in its order: the same numbers, given ``dec_lo``/``dec_hi`` from
    :func:`swt_filters` for that precision. Each repetition computes the approximation only where the
    next one reads it, and each axis only where the later axes read it; ``compiled`` False runs the
    same sums in NumPy."""
    dtype = np.float32 if arr.dtype in (np.float32, np.float16) else np.float64
    f = len(dec_lo)
    if (f < 1 or len(dec_hi) != f or arr.ndim != 3 or not set(axes) <= {0, 1, 2} or start < 0 or level < 0
            or not all(0 <= int(a) <= int(b) < n for a, b, n in zip(lo, hi, arr.shape, strict=True))):
        raise ValueError("swt_box needs a 3-D array, axes among 0, 1, 2, two filters of one length, "
                         "start >= 0, level >= 0 and a box inside the array")
    periods = [n + n % 2 for n in arr.shape]
    box = [np.arange(int(a), int(b) + 1) for a, b in zip(lo, hi, strict=True)]
    total = start + level
    keys = [""]
    for _axis in axes:
        keys = [k + c for k in keys for c in "ad"]
    if total == 0:  # no transform: PyRadiomics's "approximation" is the image itself, as it is
        return keys, [], arr[np.ix_(*box)].copy()
    # backwards: where each repetition's outputs are read (the box, or the next repetition's inputs)
    outputs: list[list[np.ndarray]] = [box] * total
    plans: list[dict[int, tuple[np.ndarray, np.ndarray]]] = [{} for _ in range(total)]
    inputs: list[list[np.ndarray]] = [box] * total
    for k in range(total - 1, -1, -1):
        outputs[k] = box if k == total - 1 else inputs[k + 1]
        pos = list(outputs[k])
        for axis in axes:
            pos[axis], fidx, iidx = _axis_plan(outputs[k][axis], periods[axis], f)
            plans[k][axis] = (fidx, iidx)
        inputs[k] = pos
    take = [np.where(p == n, 0, p) for p, n in zip(inputs[0], arr.shape, strict=True)]  # padding = first
    data = np.ascontiguousarray(arr[np.ix_(*take)], dtype=dtype)[None]
    flo = np.array(dec_lo, dtype=dtype)  # writable copies: one compiled signature per precision
    fhi = np.array(dec_hi, dtype=dtype)
    kernel = jit.compile_kernel(_swt_stage) if compiled else _swt_stage_numpy
    approx = keys.index("a" * len(axes))
    levels = []
    for k in range(total):
        for axis in axes:
            fidx, iidx = plans[k][axis]
            shape = list(data.shape)
            shape[0] *= 2
            shape[axis + 1] = fidx.shape[0]
            out = np.empty(shape, dtype)
            kernel(data, axis, fidx, iidx, flo, fhi, out)
            data = out
        if k >= start:
            if k == total - 1:
                levels.append(data)
            else:  # the box inside the next repetition's inputs
                sel = [np.searchsorted(p, b) for p, b in zip(outputs[k], box, strict=True)]
                levels.append(np.ascontiguousarray(data[np.ix_(np.arange(data.shape[0]), *sel)]))
        data = np.ascontiguousarray(data[approx:approx + 1])
    return keys, levels, data[0]


def swt1_box(arr: np.ndarray, dec_lo: np.ndarray | list[float], dec_hi: np.ndarray | list[float],
             axes: tuple[int, ...], lo: np.ndarray, hi: np.ndarray, *,
             compiled: bool = True) -> tuple[list[str], np.ndarray]:
    """PyRadiomics's level-1 wavelet decomposition (``pywt.swtn(level=1)`` of the image padded to
    even sizes by wrapping) inside the box ``lo..hi`` (z, y, x, inclusive) of ``arr``.

    Returns the sub-band keys in ``swtn``'s order (``'a'``/``'d'`` per axis of ``axes``, in that
    order) and their values (one array per key, the box's shape), in ``swtn``'s precision (float32
    for float32/float16 images, float64 otherwise) with each sum added in its order: the same numbers,
    given ``dec_lo``/``dec_hi`` from :func:`swt_filters` for that precision. Each axis is filtered
    only where the later axes read it; ``compiled`` False runs the same sums in NumPy."""
    keys, levels, _ = swt_box(arr, dec_lo, dec_hi, axes, lo, hi, 0, 1, compiled=compiled)
    return keys, levels[0]
