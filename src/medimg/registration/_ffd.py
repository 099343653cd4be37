"""Our own cubic B-spline free-form deformation optimiser (numpy/scipy), used by :func:`register`.

Why not SimpleITK's ``ImageRegistrationMethod`` with a ``BSplineTransform``: its v4 metrics fill
a dense ``ndim x n_parameters`` Jacobian for every sample, so one metric evaluation costs
``samples x parameters`` (measured on brain1, 2,400 parameters: 0.36 s per evaluation for
20,000 samples, one thread; the whole stage 65-340 s). Here the B-spline weights of the (fixed)
metric samples are computed once per level as a sparse ``samples x control points`` matrix
``W``: the displacement of all samples is ``W @ C`` and the metric gradient with respect to the
coefficients is ``W.T @ g`` -- ``samples x 4**ndim`` work, whatever the grid size.

The grid and its coefficients follow ITK's ``BSplineTransform`` exactly (grid origin one
control spacing before the transform domain, ``mesh + 3`` control points per axis, parameters
ordered x-coefficients first, each grid flattened x-fastest), so the result is written as a
``SimpleITK.BSplineTransform`` (checked point by point in the tests). Coarse-to-fine: a grid is
refined to half its spacing between pyramid levels by exact cubic B-spline subdivision
(coefficients ``(1, 6, 1) / 8`` at the old control points, ``(1, 1) / 2`` between them), so
the deformation found on the coarse grid is carried over unchanged.

Metrics (all minimised): ``ms`` mean squared difference, ``ncc`` minus the normalised
correlation, ``mi`` minus Mattes mutual information (fixed intensities binned, moving
intensities in cubic B-spline Parzen windows; 32 bins, ``bins`` in :func:`optimise_level`: the
B-spline stage of :func:`register` uses 48), each with its analytic gradient.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import SimpleITK
    from scipy import sparse

_BINS = 32


def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """BLAS on one thread: the products here are small (n x 3), and a BLAS pool that spins on a
    loaded machine made them 10x slower (measured: 36 ms vs 3 ms per NCC evaluation)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _cubic(t: np.ndarray) -> np.ndarray:
    """Centred cubic B-spline kernel."""
    a = np.abs(t)
    out = np.where(a < 1, (4 - 6 * a**2 + 3 * a**3) / 6, 0.0)
    return np.where((a >= 1) & (a < 2), (2 - a) ** 3 / 6, out)


def _cubic_deriv(t: np.ndarray) -> np.ndarray:
    a = np.abs(t)
    s = np.sign(t)
    out = np.where(a < 1, (-12 * a + 9 * a**2) / 6, 0.0)
    out = np.where((a >= 1) & (a < 2), -0.5 * (2 - a) ** 2, out)
    return s * out


@dataclass
class Grid:
    """An ITK-style cubic B-spline control grid: ``size`` control points per axis (x, y[, z])."""

    origin: np.ndarray      # (nd,) mm: physical position of control point 0
    spacing: np.ndarray     # (nd,) mm
    direction: np.ndarray   # (nd, nd), columns are the axes
    size: np.ndarray        # (nd,) control points = mesh + 3
    domain_origin: np.ndarray
    domain_dims: np.ndarray

    @classmethod
    def over(cls, image: SimpleITK.Image, mesh: list[int]) -> Grid:
        """The grid ``BSplineTransformInitializer(image, mesh)`` builds."""
        import SimpleITK as sitk

        bs = sitk.BSplineTransformInitializer(image, [int(m) for m in mesh], 3)
        return cls.from_sitk(bs)

    @classmethod
    def from_sitk(cls, bs: SimpleITK.BSplineTransform) -> Grid:
        nd = bs.GetDimension()
        direction = np.asarray(bs.GetTransformDomainDirection(), float).reshape(nd, nd)
        dims = np.asarray(bs.GetTransformDomainPhysicalDimensions(), float)
        mesh = np.asarray(bs.GetTransformDomainMeshSize(), int)
        dorig = np.asarray(bs.GetTransformDomainOrigin(), float)
        spacing = dims / mesh
        origin = dorig - direction @ spacing
        return cls(origin, spacing, direction, mesh + 3, dorig, dims)

    @property
    def mesh(self) -> np.ndarray:
        return self.size - 3

    @property
    def n_points(self) -> int:
        return int(np.prod(self.size))

    def refined(self) -> Grid:
        """The grid with half the spacing over the same domain (mesh doubled)."""
        spacing = self.spacing / 2
        return Grid(self.domain_origin - self.direction @ spacing, spacing, self.direction,
                    2 * self.mesh + 3, self.domain_origin, self.domain_dims)

    def refine_coefficients(self, coeffs: np.ndarray) -> np.ndarray:
        """Coefficients ``(n_points, nd)`` on this grid -> the same deformation on :meth:`refined`."""
        nd = len(self.size)
        arr = coeffs.reshape(*self.size[::-1], nd)  # (z, y, x, comp)
        for ax_xyz in range(nd):
            axis = nd - 1 - ax_xyz
            arr = _subdivide(arr, axis)
        return arr.reshape(-1, nd)

    def weights(self, points: np.ndarray) -> sparse.csr_matrix:
        """Sparse ``(n_points_in, n_control)`` matrix of B-spline weights of ``points`` (mm).

        Points outside the domain get an empty row (ITK's transform leaves them in place)."""
        from scipy import sparse

        nd = len(self.size)
        cidx = (np.linalg.solve(self.direction, (points - self.origin).T).T) / self.spacing
        start = np.floor(cidx - 1).astype(np.int64)
        inside = np.all((start >= 0) & (start + 3 <= self.size - 1), axis=1)
        n = points.shape[0]
        w_axis = []
        for d in range(nd):
            offs = np.arange(4)
            t = cidx[:, d, None] - (start[:, d, None] + offs)
            w_axis.append(_cubic(t))
        # tensor product over axes: (n, 4**nd)
        w = w_axis[0]
        idx = np.clip(start[:, 0, None] + np.arange(4), 0, self.size[0] - 1)
        stride = 1
        for d in range(1, nd):
            stride *= int(self.size[d - 1])
            w = (w[:, None, :] * w_axis[d][:, :, None]).reshape(n, -1)
            idx_d = np.clip(start[:, d, None] + np.arange(4), 0, self.size[d] - 1) * stride
            idx = (idx[:, None, :] + idx_d[:, :, None]).reshape(n, -1)
        w = np.where(inside[:, None], w, 0.0)
        k = 4**nd
        return sparse.csr_matrix((w.ravel(), idx.ravel(), np.arange(0, n * k + 1, k)),
                                 shape=(n, self.n_points))

    def to_sitk(self, coeffs: np.ndarray) -> SimpleITK.BSplineTransform:
        """A ``SimpleITK.BSplineTransform`` with these coefficients (``(n_points, nd)`` mm)."""
        import SimpleITK as sitk

        nd = len(self.size)
        bs = sitk.BSplineTransform(nd, 3)
        bs.SetTransformDomainOrigin(tuple(float(v) for v in self.domain_origin))
        bs.SetTransformDomainPhysicalDimensions(tuple(float(v) for v in self.domain_dims))
        bs.SetTransformDomainMeshSize([int(v) for v in self.mesh])
        bs.SetTransformDomainDirection(tuple(float(v) for v in self.direction.ravel()))
        bs.SetParameters(tuple(float(v) for v in coeffs.T.ravel()))
        return bs


def _subdivide(arr: np.ndarray, axis: int) -> np.ndarray:
    """Cubic B-spline subdivision along ``axis``: n = mesh + 3 points -> 2 mesh + 3."""
    a = np.moveaxis(arr, axis, 0)
    n = a.shape[0]
    mesh = n - 3
    out = np.empty((2 * mesh + 3,) + a.shape[1:], a.dtype)
    # new point j sits at old index (j + 1) / 2
    odd = np.arange(1, 2 * mesh + 3, 2)          # old integer index i = (j + 1) / 2, 1..mesh + 1
    i = (odd + 1) // 2
    out[odd] = (a[i - 1] + 6 * a[i] + a[i + 1]) / 8
    even = np.arange(0, 2 * mesh + 3, 2)          # between old i and i + 1, i = j / 2
    i = even // 2
    out[even] = (a[i] + a[i + 1]) / 2
    return np.moveaxis(out, 0, axis)


class _Moving:
    """The moving image of one level as arrays: value and physical gradient by linear interpolation."""

    def __init__(self, img: SimpleITK.Image, mask: SimpleITK.Image | None) -> None:
        import SimpleITK as sitk

        self.nd = img.GetDimension()
        self.arr = sitk.GetArrayFromImage(img).astype(np.float32)
        self.spacing = np.asarray(img.GetSpacing(), float)
        self.origin = np.asarray(img.GetOrigin(), float)
        self.direction = np.asarray(img.GetDirection(), float).reshape(self.nd, self.nd)
        self.inv = np.linalg.inv(self.direction @ np.diag(self.spacing))
        # gradient in index units per array axis (z, y, x) -> physical: D^-T diag(1/s) g_xyz
        self.valid_max = np.asarray(self.arr.shape) - 1
        thin = [(0, 1) if n == 1 else (0, 0) for n in self.arr.shape]  # a one-voxel axis: pad to two
        self.arr = np.pad(self.arr, thin, mode="edge")
        if mask is not None:
            mask = sitk.GetImageFromArray(np.pad(sitk.GetArrayFromImage(mask), thin, mode="edge"))
        g = np.gradient(self.arr)
        g_xyz = np.stack([g[self.nd - 1 - d] for d in range(self.nd)], axis=-1)
        grad = g_xyz @ self.inv  # row vector form: g_phys = g_idx @ inv
        self.mask = sitk.GetArrayFromImage(mask).astype(np.float32) if mask is not None else None
        # value, gradient (and mask) interleaved per voxel: one gather per corner
        chans = [self.arr[..., None], grad] + ([self.mask[..., None]] if self.mask is not None else [])
        self.packed = np.concatenate(chans, axis=-1).astype(np.float32).reshape(-1, 1 + self.nd + (mask is not None))
        self.shape = np.asarray(self.arr.shape)
        self.strides = np.array([int(np.prod(self.shape[d + 1:])) for d in range(self.nd)], np.int64)

    def sample(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Values (n,), gradients (n, nd) and validity (n,) at ``points`` (mm)."""
        cidx = (points - self.origin) @ self.inv.T          # (n, nd) in x, y, z
        zyx = cidx[:, ::-1]
        valid = np.all((zyx >= 0) & (zyx <= self.valid_max), axis=1)
        base = np.clip(np.floor(zyx).astype(np.int64), 0, self.shape - 2)
        frac = np.clip(zyx - base, 0.0, 1.0)
        acc = np.zeros((points.shape[0], self.packed.shape[1]), np.float64)
        flat0 = base @ self.strides
        for corner in range(2**self.nd):
            w = np.ones(points.shape[0])
            offset = 0
            for d in range(self.nd):
                b = (corner >> d) & 1
                w *= frac[:, d] if b else 1 - frac[:, d]
                offset += b * int(self.strides[d])
            acc += w[:, None] * self.packed[flat0 + offset]
        val, grad = acc[:, 0], acc[:, 1:1 + self.nd]
        msk = acc[:, -1] if self.mask is not None else None
        if msk is not None:
            valid &= msk > 0.5
        return val, grad, valid


def _metric(name: str, fvals: np.ndarray, mvals: np.ndarray, fbins: Any) -> tuple[float, np.ndarray]:
    """Metric value (minimised) and its derivative with respect to each moving value."""
    n = fvals.size
    if name == "ms":
        d = mvals - fvals
        return float(np.mean(d**2)), 2 * d / n
    if name == "ncc":
        f = fvals - fvals.mean()
        m = mvals - mvals.mean()
        sff, smm, sfm = float(f @ f), float(m @ m), float(f @ m)
        if sff <= 0 or smm <= 0:
            return 0.0, np.zeros(n)
        denom = np.sqrt(sff * smm)
        corr = sfm / denom
        return -corr, -(f / denom - corr * m / smm)
    # Mattes mutual information
    fb, mmin, mwidth, bins = fbins
    raw = (mvals - mmin) / mwidth + 2.0                     # continuous moving bin, in [2, BINS - 2]
    pos = np.clip(raw, 2.0, bins - 2.0 - 1e-9)
    inside = raw == pos                                     # clipped values do not move with M
    j0 = np.floor(pos).astype(np.int64) - 1                 # kernel support: j0 .. j0 + 3
    offs = np.arange(4)
    t = pos[:, None] - (j0[:, None] + offs)
    w = _cubic(t)
    flat = (fb[:, None] * bins + j0[:, None] + offs).ravel()
    joint = np.bincount(flat, weights=w.ravel(), minlength=bins * bins).reshape(bins, bins) / n
    pf = joint.sum(axis=1)
    pm = joint.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(joint > 0, np.log(joint / (pf[:, None] * pm[None, :])), 0.0)
    mi = float(np.sum(joint * ratio))
    dw = _cubic_deriv(t)                                    # d w / d pos
    table = ratio[fb[:, None], j0[:, None] + offs]          # (n, 4)
    dmi_dpos = np.sum(dw * table, axis=1) / n
    return -mi, -np.where(inside, dmi_dpos, 0.0) / mwidth


def _fixed_bins(fvals: np.ndarray, mvals_all: np.ndarray, bins: int = _BINS) -> tuple[np.ndarray, float, float, int]:
    """Mattes MI binning: the fixed samples' bins (0.5-99.5 percentile range in ``bins`` bins),
    the moving range start and bin width (Parzen windows keep 2 bins free at each end), ``bins``."""
    lo, hi = np.percentile(fvals, [0.5, 99.5])
    fb = np.clip(((fvals - lo) / max(hi - lo, 1e-12) * bins).astype(np.int64), 0, bins - 1)
    mlo, mhi = np.percentile(mvals_all, [0.5, 99.5])
    width = max(mhi - mlo, 1e-12) / (bins - 4)
    return fb, float(mlo), float(width), int(bins)


def optimise_level(fixed: SimpleITK.Image, moving: SimpleITK.Image, grid: Grid, coeffs: np.ndarray, *,
                   matrix: np.ndarray, offset: np.ndarray, metric: str, samples: int, iterations: int,
                   seed: int, fmask: SimpleITK.Image | None, mmask: SimpleITK.Image | None,
                   bending: float, trace: list[float], bins: int = _BINS) -> tuple[np.ndarray, dict[str, Any]]:
    """Optimise the coefficients (``(n_points, nd)`` mm) of ``x -> A (x + u(x)) + offset`` on one level
    with L-BFGS-B; returns the new coefficients and a log entry."""
    from scipy.optimize import minimize

    nd = fixed.GetDimension()
    pts, fvals = _sample_fixed(fixed, fmask, samples, seed)
    mov = _Moving(moving, mmask)
    W = grid.weights(pts)
    Wt = W.T.tocsr()
    fbins_all = (_fixed_bins(fvals, mov.arr.ravel()[:: max(1, mov.arr.size // 200000)], bins)
                 if metric == "mi" else None)
    shape = coeffs.shape
    lap = _bending_operator(grid) if bending > 0 else None
    state: dict[str, Any] = {"valid": 0}

    def fun(c_flat: np.ndarray) -> tuple[float, np.ndarray]:
        c = c_flat.reshape(shape)
        u = W @ c
        y = (pts + u) @ matrix.T + offset
        mv, mg, valid = mov.sample(y)
        nvalid = int(valid.sum())
        state["valid"] = nvalid
        if nvalid < 50:
            return 0.0, np.zeros_like(c_flat)
        fb = None
        if fbins_all is not None:
            fb = (fbins_all[0][valid], *fbins_all[1:])
        value, dv = _metric(metric, fvals[valid], mv[valid], fb)
        g_y = np.zeros((pts.shape[0], nd))
        g_y[valid] = dv[:, None] * mg[valid]
        g_u = g_y @ matrix
        grad = Wt @ g_u
        if lap is not None:
            lc = lap @ c
            value += bending * float(np.sum(lc**2)) / lap.shape[0]
            grad = grad + bending * 2 * (lap.T @ lc) / lap.shape[0]
        trace.append(float(value))
        return float(value), grad.ravel()

    with _one_blas_thread():
        res = minimize(fun, coeffs.ravel(), jac=True, method="L-BFGS-B",
                       options={"maxiter": iterations, "maxfun": 2 * iterations, "maxcor": 7,
                                "ftol": 1e-6, "gtol": 1e-7})
    log = {"spacing_mm": [float(v) for v in fixed.GetSpacing()], "size": list(fixed.GetSize()),
           "grid_spacing_mm": [float(v) for v in grid.spacing], "grid_size": [int(v) for v in grid.size],
           "iterations": int(res.nit), "evaluations": int(res.nfev), "samples": int(pts.shape[0]),
           "stop": f"L-BFGS-B: {res.message if isinstance(res.message, str) else res.message.decode()}"}
    return res.x.reshape(shape), log


def _bending_operator(grid: Grid) -> sparse.csr_matrix:
    """Sparse second-difference operator on the control grid (per axis, in 1/mm^2 units)."""
    from scipy import sparse

    nd = len(grid.size)
    size = [int(v) for v in grid.size]  # x, y, z
    ops = []
    for d in range(nd):
        n = size[d]
        if n < 3:
            continue
        d2 = sparse.diags([np.ones(n - 2), -2 * np.ones(n - 2), np.ones(n - 2)], [0, 1, 2], shape=(n - 2, n))
        d2 = d2 / grid.spacing[d] ** 2
        mats = [sparse.identity(size[k]) if k != d else d2 for k in range(nd)]
        op = mats[0]
        for k in range(1, nd):
            op = sparse.kron(mats[k], op)  # x fastest
        ops.append(op)
    return sparse.vstack(ops).tocsr()


def _sample_fixed(fixed: SimpleITK.Image, fmask: SimpleITK.Image | None, samples: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random fixed points (mm; jittered off the voxel centres, inside the mask) and the
    fixed image's values there (linear interpolation)."""
    import SimpleITK as sitk

    nd = fixed.GetDimension()
    farr = sitk.GetArrayViewFromImage(fixed)
    sel = np.ones(farr.shape, bool) if fmask is None else sitk.GetArrayViewFromImage(fmask) > 0
    idx = np.flatnonzero(sel)
    rng = np.random.default_rng(seed)
    if idx.size > samples:
        idx = np.sort(rng.choice(idx, samples, replace=False))
    zyx = np.stack(np.unravel_index(idx, farr.shape), axis=1).astype(float)
    zyx += rng.uniform(-0.5, 0.5, zyx.shape) * (np.asarray(farr.shape) > 1)
    spacing = np.asarray(fixed.GetSpacing(), float)
    direction = np.asarray(fixed.GetDirection(), float).reshape(nd, nd)
    pts = (zyx[:, ::-1] * spacing) @ direction.T + np.asarray(fixed.GetOrigin(), float)
    fvals, _g, valid = _Moving(fixed, None).sample(pts)
    return pts[valid], fvals[valid]


def _rotation(omega: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (3-D) or angle (2-D), radians."""
    if omega.size == 1:
        c, s = np.cos(omega[0]), np.sin(omega[0])
        return np.array([[c, -s], [s, c]])
    theta = float(np.linalg.norm(omega))
    if theta < 1e-12:
        return np.eye(3)
    k = omega / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def polish_linear(fixed: SimpleITK.Image, moving: SimpleITK.Image, kind: str, matrix: np.ndarray,
                  offset: np.ndarray, *, metric: str, samples: int, iterations: int, seed: int,
                  fmask: SimpleITK.Image | None, mmask: SimpleITK.Image | None,
                  trace: list[float]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Refine a linear map ``y = A x + offset`` of kind ``rigid``/``similarity``/``affine`` with
    L-BFGS-B on a fixed, seeded sample set (analytic metric gradient); returns A, offset, log.

    The update is ``y = B (A x + offset - c) + c + t`` with c the image of the fixed centre and
    B a rotation (rigid), a scaled rotation (similarity) or any matrix (affine); rotations and
    matrix entries are scaled by the fixed image's radius, so every parameter is in mm."""
    from scipy.optimize import minimize

    nd = fixed.GetDimension()
    pts, fvals = _sample_fixed(fixed, fmask, samples, seed)
    mov = _Moving(moving, mmask)
    size = np.asarray(fixed.GetSize(), float)
    spacing = np.asarray(fixed.GetSpacing(), float)
    radius = float(np.linalg.norm(size * spacing)) / 2
    centre = pts.mean(axis=0)
    c_mov = matrix @ centre + offset
    z = pts @ matrix.T + offset - c_mov                      # start map, about the centre
    fbins = _fixed_bins(fvals, mov.arr.ravel()[:: max(1, mov.arr.size // 200000)]) if metric == "mi" else None
    n_rot = 1 if nd == 2 else 3

    def build(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if kind == "affine":
            b = np.eye(nd) + p[: nd * nd].reshape(nd, nd) / radius
            return b, p[nd * nd:]
        b = _rotation(p[:n_rot] / radius)
        if kind == "similarity":
            b = b * np.exp(p[n_rot] / radius)
        return b, p[-nd:]

    n_par = nd * nd + nd if kind == "affine" else n_rot + (1 if kind == "similarity" else 0) + nd

    def fun(p: np.ndarray) -> tuple[float, np.ndarray]:
        b, t = build(p)
        y = z @ b.T + c_mov + t
        mv, mg, valid = mov.sample(y)
        if valid.sum() < 50:
            return 0.0, np.zeros_like(p)
        fb = (fbins[0][valid], *fbins[1:]) if fbins is not None else None
        value, dv = _metric(metric, fvals[valid], mv[valid], fb)
        g_y = dv[:, None] * mg[valid]                          # dL/dy
        d_b = g_y.T @ z[valid]                                 # dL/dB (nd x nd)
        d_t = g_y.sum(axis=0)
        if kind == "affine":
            grad = np.concatenate([d_b.ravel() / radius, d_t])
        else:  # chain rule through B(p) by central differences of the (cheap) matrix function
            grad = np.empty(n_par)
            grad[-nd:] = d_t
            for k in range(n_par - nd):
                e = np.zeros(n_par)
                e[k] = 1e-3
                db_dk = (build(p + e)[0] - build(p - e)[0]) / 2e-3
                grad[k] = float(np.sum(d_b * db_dk))
        trace.append(float(value))
        return float(value), grad

    with _one_blas_thread():
        res = minimize(fun, np.zeros(n_par), jac=True, method="L-BFGS-B",
                       options={"maxiter": iterations, "maxfun": 2 * iterations, "ftol": 1e-9, "gtol": 1e-9})
    b, t = build(res.x)
    new_matrix = b @ matrix
    new_offset = b @ (offset - c_mov) + c_mov + t
    log = {"spacing_mm": [float(v) for v in fixed.GetSpacing()], "size": list(fixed.GetSize()),
           "iterations": int(res.nit), "evaluations": int(res.nfev), "samples": int(pts.shape[0]),
           "stop": f"L-BFGS-B polish: {res.message if isinstance(res.message, str) else res.message.decode()}"}
    return new_matrix, new_offset, log
