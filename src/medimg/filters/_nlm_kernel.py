"""The compiled NLM kernel (numba): one search offset, fused, plane by plane.

Imported only when non-local means runs and numba is installed (:func:`load` returns ``None``
otherwise and :mod:`medimg.filters.nlm` uses its NumPy path, which computes the same sums).
For one offset ``t`` the kernel makes, per plane, the squared differences
``(P(x) - P(x + t))^2``, their box sums along x, y (a ring of planes) and z, the weight of every
voxel ``x`` of ``R u (R - t)`` (``R`` the voxels whose result is wanted) and adds
``w P(x + t)`` to ``x`` and ``w P(x)`` to ``x + t``: nothing of the size of the volume is
written but the two accumulators. Compiled once, cached beside this file (``cache=True``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_KERNEL: Any = None


def load() -> Any:
    """The jit-compiled offset kernel, or ``None`` when numba is not installed."""
    global _KERNEL
    if _KERNEL is None:
        try:
            import numba
        except ImportError:
            _KERNEL = False
        else:
            _KERNEL = numba.njit(cache=True, nogil=True, boundscheck=False)(_offset_kernel)
    return _KERNEL or None


# 2 ** (e - 1023) for the exponent field e of a double: the fast exp below builds its result
# from the exponent and the top 20 mantissa bits, as Schraudolph's bit trick does.
POW2 = np.ldexp(1.0, np.arange(-1023, 1023))  # exponent fields 0..2045 (weights use 1015..1022)


def _offset_kernel(P, V, num, den, t, r0, n, lo, hi, a, b, cdiv, fast, pow2,
                   sx, ring, wbuf, drow, escale):  # pragma: no cover - compiled by numba; the NumPy path is tested against it
    """Add offset ``t``'s contributions (both directions) to ``num`` / ``den`` (see the module notes).

    P: padded image the distances come from; V: the values averaged (P, or P**2 for Rician);
    num, den: accumulators over the region (shape n), region start r0 in P; box of voxel x:
    x + lo .. x + hi per axis; weight: dist = max(S * a - b, 0) / cdiv with S the box sum,
    w = exp(-dist), or when ``fast``: 0 if dist > 5 else Schraudolph's fast exp (scikit-image's).
    sx, ring, wbuf (C-contiguous), drow: scratch, at least (ny + |ty| + box_y, nx + |tx|), (box_z, ny + |ty|,
    nx + |tx|), (ny + |ty|, nx + |tx|), (nx + |tx| + box_x,) and (1, nx + |tx|).
    """
    tz, ty, tx = t[0], t[1], t[2]
    nz, ny, nx = n[0], n[1], n[2]
    # box-domain B = R u (R - t), in padded coordinates
    bz0 = r0[0] - max(tz, 0)
    bz1 = r0[0] + nz - min(tz, 0)
    by0 = r0[1] - max(ty, 0)
    by1 = r0[1] + ny - min(ty, 0)
    bx0 = r0[2] - max(tx, 0)
    bx1 = r0[2] + nx - min(tx, 0)
    nby = by1 - by0
    nbx = bx1 - bx0
    lz = hi[0] - lo[0] + 1
    ly = hi[1] - lo[1] + 1
    lx = hi[2] - lo[2] + 1
    rows = nby + ly - 1
    cols = nbx + lx - 1
    exp_a = 1512775.3951951856938
    exp_bc = 1072632447
    wint = wbuf.view(np.int64)  # the fast exp writes the high word of each weight
    eint = escale.view(np.int64)  # 2**n of the exact exp, built from its exponent field
    for zz in range(bz0 + lo[0], bz1 + hi[0]):
        # squared differences of plane zz, summed over the box along x, then along y into the
        # ring slot of this plane (row views and short direct sums: loops LLVM vectorises)
        for r in range(rows):
            yy = by0 + lo[1] + r
            pa = P[zz, yy, bx0 + lo[2]:bx0 + lo[2] + cols]
            pb = P[zz + tz, yy + ty, bx0 + lo[2] + tx:bx0 + lo[2] + tx + cols]
            for c in range(cols):
                d = pa[c] - pb[c]
                drow[c] = d * d
            out = sx[r]
            for c in range(nbx):
                out[c] = drow[c]
            for k in range(1, lx):
                for c in range(nbx):
                    out[c] += drow[c + k]
        slot = ring[(zz - bz0 - lo[0]) % lz]
        for r in range(nby):
            out = slot[r]
            src = sx[r]
            for c in range(nbx):
                out[c] = src[c]
            for k in range(1, ly):
                src = sx[r + k]
                for c in range(nbx):
                    out[c] += src[c]
        zc = zz - hi[0]  # the plane whose z box is now complete
        if zc < bz0:
            continue
        for r in range(nby):
            wr = wbuf[r]
            for c in range(nbx):
                wr[c] = ring[0, r, c]
            for k in range(1, lz):
                src = ring[k, r]
                for c in range(nbx):
                    wr[c] += src[c]
            if fast:
                wi = wint[r]
                for c in range(nbx):
                    dist = max(wr[c] * a - b, 0.0) / cdiv
                    hw = np.int64(np.int32(exp_a * (-dist))) + exp_bc
                    wi[c] = (hw << 32) if dist <= 5.0 else 0
            else:  # exp(-dist) = 2**n * 2**f, 2**f by its Taylor series to 1e-13 (vectorises)
                ei = eint[0]
                for c in range(nbx):
                    y = max(-(max(wr[c] * a - b, 0.0) / cdiv) * 1.4426950408889634, -1022.0)
                    n_ = np.floor(y)
                    f = (y - n_) * 0.6931471805599453
                    q = 1.0 + f * (1.0 + f * (0.5 + f * (1.0 / 6 + f * (1.0 / 24 + f * (
                        1.0 / 120 + f * (1.0 / 720 + f * (1.0 / 5040 + f * (1.0 / 40320 + f * (
                            1.0 / 362880 + f * (1.0 / 3628800 + f * (1.0 / 39916800 + f * (
                                1.0 / 479001600 + f * (1.0 / 6227020800)))))))))))))
                    wr[c] = q
                    ei[c] = (np.int64(n_) + 1023) << 52
                ef = escale[0]
                for c in range(nbx):
                    wr[c] *= ef[c]
        # x in R: weight of (x, x + t) at x
        z = zc - r0[0]
        if 0 <= z < nz:
            for y in range(ny):
                w = wbuf[y + r0[1] - by0, r0[2] - bx0:r0[2] - bx0 + nx]
                v = V[zc + tz, r0[1] + y + ty, r0[2] + tx:r0[2] + tx + nx]
                nm = num[z, y]
                dn = den[z, y]
                for x in range(nx):
                    nm[x] += w[x] * v[x]
                    dn[x] += w[x]
        # x + t in R: the same weight, at x + t
        z = zc + tz - r0[0]
        if 0 <= z < nz:
            for y in range(ny):
                w = wbuf[y + r0[1] - ty - by0, r0[2] - tx - bx0:r0[2] - tx - bx0 + nx]
                v = V[zc, r0[1] + y - ty, r0[2] - tx:r0[2] - tx + nx]
                nm = num[z, y]
                dn = den[z, y]
                for x in range(nx):
                    nm[x] += w[x] * v[x]
                    dn[x] += w[x]
