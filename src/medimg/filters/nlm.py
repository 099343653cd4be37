r"""Non-local means in 2-D and 3-D, vectorised over search offsets (medimg's own implementation).

Each voxel :math:`x` becomes a weighted mean of the voxels :math:`y` of a search window around
it, weighted by how similar the patches around :math:`x` and :math:`y` are (Buades, Coll, Morel
2005):

.. math::
    \hat u(x) = \frac{\sum_y w(x, y)\, u(y)}{\sum_y w(x, y)}, \qquad
    w(x, y) = \exp\!\left(-\frac{\max(d^2(x, y) - 2\sigma^2,\ 0)}{h^2}\right)

with :math:`d^2` the mean squared difference of the two patches. The search loops over
*offsets* :math:`o = y - x`, not voxels: for one offset the patch distances of every voxel at
once are a box filter of the squared difference image :math:`(u - u(\cdot + o))^2` (Darbon et
al. 2008, the integral-image method). Since :math:`w(x, x + o) = w(x + o, x)`, each weight
image serves offset :math:`o` and :math:`-o`, halving the work; offsets are shared out between
threads. The work for one offset runs in a compiled kernel (:mod:`medimg.filters._nlm_kernel`,
numba, float64, plane by plane: the squared differences, their box sums, the weights and both
accumulations in one sweep, nothing of the volume's size written but the two sums) when numba
is installed, else in NumPy (the same sums). ``scheme="skimage"`` reproduces scikit-image's
fast mode to rounding, for comparisons at equal windows. Windows are given in mm, so on an anisotropic volume
(thick slices) the search reaches as far in every direction instead of as many voxels.

For magnitude MR (``rician=True``) the squared magnitudes are averaged and the Rician bias
:math:`2\sigma^2` removed, :math:`\hat u = \sqrt{\max(\mathrm{NLM}(u^2) - 2\sigma^2, 0)}`
(Manjón et al. 2008).

References
----------
Buades A., Coll B., Morel J.-M. A non-local algorithm for image denoising. CVPR 2005.
Darbon J. et al. Fast nonlocal filtering applied to electron cryomicroscopy. ISBI 2008.
Manjón J.V. et al. MRI denoising using non-local means. Med Image Anal 2008;12:514-523.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from medimg.core.image import Image
from medimg.core.progress import Steps
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.filters._common import (
    check_scalar,
    filter_output,
    float_array,
    positive,
    radius_voxels,
    search_space,
)

__all__ = ["nlm", "nlm_array"]

_filters = registry("filters")


SCHEMES = ("medimg", "skimage")


def _half_offsets(search: np.ndarray) -> list[tuple[int, ...]]:
    """The offsets of the search box that are lexicographically positive (one of each +-o pair)."""
    zero = (0,) * search.size
    ranges = [range(-int(r), int(r) + 1) for r in search]
    return [o for o in itertools.product(*ranges) if o > zero]


_EXP_A = 1512775.3951951856938  # 2**20 / ln 2 (Schraudolph 1999), as scikit-image's fast_exp.h
_EXP_BC = 1072632447


def _fast_exp(dist: np.ndarray) -> np.ndarray:
    """Schraudolph's approximation of ``exp(-dist)`` (scikit-image's ``_fast_exp``), bit for bit:
    the high word of a double set to ``int(-2**20/ln2 * dist) + 1072632447``, the low word 0."""
    hw = (np.multiply(-_EXP_A, dist).astype(np.int32).astype(np.int64) + _EXP_BC) << 32
    return hw.view(np.float64)


def _weights(s: np.ndarray, a: float, b: float, cdiv: float, fast: bool) -> np.ndarray:
    """Weights from box sums ``s`` of squared differences (see :func:`nlm_array`)."""
    dist = s * a
    dist -= b
    np.maximum(dist, 0.0, out=dist)
    dist /= cdiv
    if not fast:
        return np.exp(np.negative(dist, out=dist), out=dist)
    w = _fast_exp(dist)
    w[dist > 5.0] = 0.0  # scikit-image's DISTANCE_CUTOFF
    return w


def _box_sums(d: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Sums of ``d`` over boxes of ``lengths`` voxels per axis ("valid" part only)."""
    for ax, length in enumerate(int(v) for v in lengths):
        c = np.cumsum(d, axis=ax)
        head = [slice(None)] * d.ndim
        head[ax] = slice(length - 1, length)
        first = c[tuple(head)]
        head[ax] = slice(length, None)
        tail = [slice(None)] * d.ndim
        tail[ax] = slice(None, -length)
        d = np.concatenate([first, c[tuple(head)] - c[tuple(tail)]], axis=ax)
    return d


def _offset_numpy(P: np.ndarray, V: np.ndarray, num: np.ndarray, den: np.ndarray, t: np.ndarray,
                  r0: np.ndarray, n: np.ndarray, lo: np.ndarray, hi: np.ndarray, a: float, b: float,
                  cdiv: float, fast: bool) -> None:
    """NumPy version of :func:`medimg.filters._nlm_kernel._offset_kernel` (the same sums)."""
    b0 = r0 - np.maximum(t, 0)
    b1 = r0 + n - np.minimum(t, 0)

    def box(start: np.ndarray, stop: np.ndarray) -> tuple[slice, ...]:
        return tuple(slice(int(i), int(j)) for i, j in zip(start, stop, strict=True))

    d = P[box(b0 + lo, b1 + hi)] - P[box(b0 + lo + t, b1 + hi + t)]
    np.multiply(d, d, out=d)
    w = _weights(_box_sums(d, hi - lo + 1), a, b, cdiv, fast)
    fwd = w[box(r0 - b0, r0 - b0 + n)]  # x in R: weight of (x, x + t)
    num += fwd * V[box(r0 + t, r0 + t + n)]
    den += fwd
    back = w[box(r0 - t - b0, r0 - t - b0 + n)]  # x + t in R: the same weight at x + t
    num += back * V[box(r0 - t, r0 - t + n)]
    den += back


def nlm_array(
    values: np.ndarray,
    *,
    patch_radius: np.ndarray,
    search_radius: np.ndarray,
    h: float,
    sigma: float,
    rician: bool = False,
    workers: int = 1,
    scheme: str = "medimg",
    compiled: bool | None = None,
) -> np.ndarray:
    """Non-local means of a 2-D or 3-D array with radii in voxels per axis (see the module notes).

    ``scheme="medimg"``: patches of ``2 r + 1`` voxels centred on the voxel, mean squared
    difference, ``exp``. ``scheme="skimage"``: scikit-image's fast mode
    (``denoise_nl_means(fast_mode=True)``, Darbon's integral images) reproduced to rounding:
    mirror ("reflect") padding, the patch sum over the ``2 r`` voxels ``x - r + 1 .. x + r`` divided
    by ``h^2 (2 r + 1)^ndim``, weight 0 beyond a distance of 5 and Schraudolph's fast ``exp``; the
    patch radius must be >= 1 on every axis. ``compiled``: use the numba kernel (``None``: when
    numba is installed; ``False``: the NumPy path, the same sums). Returns float32 of
    ``values``' shape (``scheme="skimage"``: float64 unless ``values`` is float32, as scikit-image). Progress: one step per search offset (``what="nlm"``).
    """
    if scheme not in SCHEMES:
        raise ParameterError(f"nlm: scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    u = np.asarray(values, dtype=np.float64)
    if u.ndim not in (2, 3):
        raise ParameterError(f"nlm: a 2-D or 3-D array is needed, got {u.ndim}-D")
    p = np.asarray(patch_radius, dtype=np.int64).reshape(-1)
    s = np.asarray(search_radius, dtype=np.int64).reshape(-1)
    flat = u.ndim == 2
    if flat:  # a 2-D image is one plane of a volume: no search, no patch across planes
        u, p, s = u[None], np.concatenate([[0], p]), np.concatenate([[0], s])
    spatial = slice(1, 3) if flat else slice(0, 3)
    var2 = 2.0 * float(sigma) ** 2
    if scheme == "skimage":
        if np.any(p[spatial] < 1):
            raise ParameterError("nlm: scheme 'skimage' needs a patch radius >= 1 voxel on every axis")
        lo, hi = 1 - p, p.copy()
        lo[0], hi[0] = (0, 0) if flat else (lo[0], hi[0])
        pad = p + s + 1
        pad[0] = 0 if flat else pad[0]
        padded = np.pad(u, [(int(v), int(v)) for v in pad], mode="reflect")
        a, b = 1.0, var2 * float(np.prod(hi - lo + 1))
        cdiv = float(h) ** 2 * float(np.prod(2 * p[spatial] + 1))
        fast = True
    else:
        lo, hi = -p, p.copy()
        pad = 2 * s + p
        padded = np.pad(u, [(int(v), int(v)) for v in pad], mode="symmetric")
        a, b, cdiv, fast = 1.0 / float(np.prod(2 * p + 1)), var2, float(h) ** 2, False
    padded = np.ascontiguousarray(padded)
    source = np.square(padded) if rician else padded  # what gets averaged
    n = np.asarray(u.shape, dtype=np.int64)
    offsets = np.asarray(_half_offsets(s), dtype=np.int64).reshape(-1, 3)
    self_w = float(_weights(np.zeros(1), a, b, cdiv, fast)[0])  # the voxel itself (offset 0)
    kernel = None
    if compiled is None or compiled:
        from medimg.filters import _nlm_kernel

        kernel = _nlm_kernel.load()
        if kernel is None and compiled:
            raise ParameterError("nlm: compiled=True needs numba (pip install numba)")
    steps = Steps(len(offsets), "nlm")  # one step per search offset (reported from the threads)

    def work(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        num = np.zeros(u.shape, np.float64)
        den = np.zeros(u.shape, np.float64)
        if kernel is not None and len(chunk):
            from medimg.filters._nlm_kernel import POW2

            ext = n + np.abs(chunk).max(axis=0)
            box = hi - lo + 1
            sx = np.empty((int(ext[1] + box[1]), int(ext[2])), np.float64)
            ring = np.empty((max(int(box[0]), 1), int(ext[1]), int(ext[2])), np.float64)
            wbuf = np.empty((int(ext[1]), int(ext[2])), np.float64)
            drow = np.empty(int(ext[2] + box[2]), np.float64)
            escale = np.empty((1, int(ext[2])), np.float64)
            for t in chunk:
                kernel(padded, source, num, den, t, pad, n, lo, hi, a, b, cdiv, fast, POW2,
                       sx, ring, wbuf, drow, escale)
                steps.advance()
        else:
            for t in chunk:
                _offset_numpy(padded, source, num, den, t, pad, n, lo, hi, a, b, cdiv, fast)
                steps.advance()
        return num, den

    workers = max(1, min(int(workers), len(offsets) or 1))
    chunks = [offsets[i::workers] for i in range(workers)]
    if workers == 1:
        results = [work(chunks[0])]
    else:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(work, chunks))
    centre = tuple(slice(int(v), int(v + m)) for v, m in zip(pad, n, strict=True))
    num = self_w * source[centre]
    den = np.full(u.shape, self_w)
    for part_num, part_den in results:
        num += part_num
        den += part_den
    out = num / den
    if rician:
        out = np.sqrt(np.maximum(out - var2, 0))
    dtype = np.float32
    if scheme == "skimage" and np.asarray(values).dtype != np.float32:
        dtype = np.float64  # as scikit-image: float32 in, float32 out; other input, float64
    return (out[0] if flat else out).astype(dtype)


@_filters.register("nlm", tags=("denoiser",))
@search_space(lambda image, sigma: [{"h": f * sigma} for f in (0.6, 0.8, 1.0, 1.2)])
def nlm(
    image: Image,
    *,
    patch_radius_mm: float = 1.0,
    search_radius_mm: float = 4.0,
    h: float | None = None,
    sigma: float | None = None,
    rician: bool = False,
    workers: int | None = None,
    scheme: str = "medimg",
) -> Image:
    """Non-local means denoising, 2-D or 3-D, with windows in mm (see the module notes).

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    patch_radius_mm
        Half-width of the compared patches in mm; ``round(radius / spacing)`` voxels per axis
        (0 along an axis coarser than twice the radius: patches are then flat there).
    search_radius_mm
        Half-width of the search window in mm, rounded per axis the same way; the cost grows
        with the number of voxels in the window. At least one axis must get one voxel or more.
    h
        Filtering parameter in image units (> 0): larger averages more. ``None``: 0.8 x sigma.
    sigma
        Noise standard deviation in image units (>= 0); ``None``: estimated with
        :func:`medimg.quality.estimate_noise_sigma` (Rician-corrected when ``rician``).
    rician
        Treat the image as magnitude MR with Rician noise (bias-corrected average of squares).
    workers
        Threads sharing the search offsets; ``None``: the number of CPUs.
    scheme
        ``"medimg"``: centred patches, exact ``exp`` (the default). ``"skimage"``: scikit-image's
        fast-mode weights (``denoise_nl_means(fast_mode=True)``, same result to rounding, see
        :func:`nlm_array`): for comparisons at equal windows; needs a patch radius >= 1 voxel
        on every axis.

    Returns
    -------
    Image
        float32 image on the input's grid; ``meta["history"]`` records sigma, h and the radii
        in voxels.
    """
    check_scalar(image)
    positive(patch_radius_mm, "patch_radius_mm", "mm", allow_zero=True)
    positive(search_radius_mm, "search_radius_mm", "mm")
    patch = radius_voxels(image, patch_radius_mm, "patch_radius_mm", require_nonzero=False)
    search = radius_voxels(image, search_radius_mm, "search_radius_mm")
    if sigma is None:
        from medimg.quality.noise import estimate_noise_sigma

        sigma = estimate_noise_sigma(image, distribution="rician" if rician else "gaussian")
    sigma = positive(sigma, "sigma", "image units", allow_zero=True)
    if h is None:
        h = 0.8 * sigma
        if h <= 0:
            msg = "nlm: the estimated noise is 0 (a noise-free image); give h (image units)"
            raise ParameterError(msg)
    h = positive(h, "h", "image units")
    if workers is None:
        workers = os.cpu_count() or 1
    if int(workers) != workers or workers < 1:
        raise ParameterError(f"nlm: workers must be an integer >= 1, got {workers!r}")
    out = nlm_array(float_array(image), patch_radius=patch, search_radius=search, h=h, sigma=sigma,
                    rician=bool(rician), workers=int(workers), scheme=scheme)
    step = {
        "op": "filters.nlm", "patch_radius_mm": float(patch_radius_mm),
        "search_radius_mm": float(search_radius_mm), "patch_radius_voxels_zyx": patch.tolist(),
        "search_radius_voxels_zyx": search.tolist(), "h": h, "sigma": sigma, "rician": bool(rician),
    }
    if scheme != "medimg":
        step["scheme"] = scheme
    return filter_output(image, out, step)
