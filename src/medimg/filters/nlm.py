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
threads (NumPy and SciPy release the GIL). Windows are given in mm, so on an anisotropic volume
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


def _half_offsets(search: np.ndarray) -> list[tuple[int, ...]]:
    """The offsets of the search box that are lexicographically positive (one of each +-o pair)."""
    zero = (0,) * search.size
    ranges = [range(-int(r), int(r) + 1) for r in search]
    return [o for o in itertools.product(*ranges) if o > zero]


def nlm_array(
    values: np.ndarray,
    *,
    patch_radius: np.ndarray,
    search_radius: np.ndarray,
    h: float,
    sigma: float,
    rician: bool = False,
    workers: int = 1,
) -> np.ndarray:
    """Non-local means of a float array with radii in voxels per axis (see the module notes).

    Returns a float32 array of ``values``' shape. :func:`nlm` is the public entry point. Progress
    is reported per search offset (:mod:`medimg.core.progress`, ``what="nlm"``).
    """
    u = np.asarray(values, dtype=np.float32)
    p = np.asarray(patch_radius, dtype=int)
    s = np.asarray(search_radius, dtype=int)
    pad = 2 * s + p
    padded = np.pad(u, [(int(a), int(a)) for a in pad], mode="symmetric")
    source = np.square(padded) if rician else padded  # what gets averaged
    n = np.asarray(u.shape)
    ext = n + 2 * s  # weights are needed on the domain grown by the search radius
    span = ext + 2 * p  # ... and the squared differences on that grown by the patch radius
    thr = np.float32(2.0 * sigma**2)
    scale = np.float32(-1.0 / h**2)
    offsets = _half_offsets(s)
    axes = [ax for ax in range(u.ndim) if p[ax] > 0]

    def window(start: np.ndarray, length: np.ndarray) -> tuple[slice, ...]:
        return tuple(slice(int(a), int(a + b)) for a, b in zip(start, length, strict=True))

    base = padded[window(s, span)]
    inner = window(p, ext)
    centre = window(s, n)
    steps = Steps(len(offsets), "nlm")  # one step per search offset (reported from the threads)

    def work(chunk: list[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
        num = np.zeros(u.shape, np.float32)
        den = np.zeros(u.shape, np.float32)
        diff = np.empty(tuple(span), np.float32)
        tmp = np.empty(tuple(span), np.float32)
        prod = np.empty(u.shape, np.float32)
        for off in chunk:
            o = np.asarray(off)
            np.subtract(base, padded[window(s + o, span)], out=diff)
            np.multiply(diff, diff, out=diff)
            box = diff
            for ax in axes:  # separable box mean = mean squared patch difference
                _uniform(box, int(2 * p[ax] + 1), ax, tmp)
                box, tmp = tmp, box
            w = box[inner]
            np.subtract(w, thr, out=w)
            np.maximum(w, 0, out=w)
            np.multiply(w, scale, out=w)
            np.exp(w, out=w)
            w_fwd = w[centre]  # weight of (x, x + o) at x
            np.multiply(w_fwd, source[window(pad + o, n)], out=prod)
            num += prod
            den += w_fwd
            w_back = w[window(s - o, n)]  # weight of (y, y - o) at y
            np.multiply(w_back, source[window(pad - o, n)], out=prod)
            num += prod
            den += w_back
            if box is not diff:  # keep the two scratch buffers distinct for the next offset
                diff, tmp = box, diff
            steps.advance()
        return num, den

    workers = max(1, min(int(workers), len(offsets) or 1))
    chunks = [offsets[i::workers] for i in range(workers)]
    if workers == 1:
        results = [work(chunks[0])]
    else:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(work, chunks))
    own = source[window(pad, n)]
    num = own.copy()  # the voxel itself, weight 1
    den = np.ones(u.shape, np.float32)
    for part_num, part_den in results:
        num += part_num
        den += part_den
    out = num / den
    if rician:
        out = np.sqrt(np.maximum(out - thr, 0))
    return out.astype(np.float32, copy=False)


def _uniform(src: np.ndarray, size: int, axis: int, out: np.ndarray) -> None:
    from scipy.ndimage import uniform_filter1d

    uniform_filter1d(src, size, axis=axis, output=out, mode="nearest")


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
                    rician=bool(rician), workers=int(workers))
    step = {
        "op": "filters.nlm", "patch_radius_mm": float(patch_radius_mm),
        "search_radius_mm": float(search_radius_mm), "patch_radius_voxels_zyx": patch.tolist(),
        "search_radius_voxels_zyx": search.tolist(), "h": h, "sigma": sigma, "rician": bool(rician),
    }
    return filter_output(image, out, step)
