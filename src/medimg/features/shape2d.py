r"""2-D shape descriptors of a region's outline: Hu moment invariants and Fourier descriptors.

* :func:`hu_moments`: the seven invariants of Hu (1962) from the normalised central moments
  :math:`\eta_{pq} = \mu_{pq} / \mu_{00}^{1 + (p+q)/2}` of the binary region, with pixel
  coordinates in mm (so the invariants do not depend on the pixel size). They are invariant to
  translation, scale and rotation (the seventh changes sign under reflection).
* :func:`fourier_descriptors`: the outline (the longest iso-contour at 0.5 of the mask, in mm) as
  complex numbers :math:`z_k = x_k + i y_k`, resampled to ``n_points`` points equally spaced in
  arc length; with :math:`Z` its discrete Fourier transform, descriptor :math:`d_m = |Z_{m+1}| /
  |Z_1|` for :math:`m = 1..n`, invariant to translation (no :math:`Z_0`), scale (divided by
  :math:`|Z_1|`), rotation and starting point (moduli). A circle has all :math:`d_m = 0`.

The ``shape2d`` family computes both on the axial slice of the morphological mask with the
largest area.
"""

from __future__ import annotations

import numpy as np

from medimg.errors import ParameterError
from medimg.features._base import FeatureSpec, feature_family
from medimg.features.roi import Roi

__all__ = ["hu_moments", "fourier_descriptors", "SHAPE2D_SPECS", "shape2d_features", "N_FOURIER"]

#: Number of Fourier descriptors the ``shape2d`` family reports.
N_FOURIER = 10

SHAPE2D_SPECS = tuple(
    [FeatureSpec(f"hu_{k}", "", "shape2d", f"Hu moment invariant {k}") for k in range(1, 8)]
    + [FeatureSpec(f"fourier_{m}", "", "shape2d", f"Fourier descriptor {m}") for m in range(1, N_FOURIER + 1)]
)


def _check_2d(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ParameterError(f"2-D shape descriptors need a 2-D mask (y, x), got shape {mask.shape}")
    if not mask.any():
        raise ParameterError("the 2-D mask is empty")
    return mask


def hu_moments(mask: np.ndarray, spacing_yx: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """The seven Hu moment invariants of a 2-D binary ``mask`` (y, x) with pixel size ``spacing_yx`` (mm)."""
    mask = _check_2d(mask)
    ys, xs = np.nonzero(mask)
    y = ys * float(spacing_yx[0])
    x = xs * float(spacing_yx[1])
    pixel_area = float(spacing_yx[0]) * float(spacing_yx[1])
    area = y.size * pixel_area
    dx, dy = x - x.mean(), y - y.mean()

    def eta(p: int, q: int) -> float:
        mu = float(np.sum(dx**p * dy**q)) * pixel_area
        return mu / area ** (1.0 + (p + q) / 2.0)

    n20, n02, n11 = eta(2, 0), eta(0, 2), eta(1, 1)
    n30, n03, n21, n12 = eta(3, 0), eta(0, 3), eta(2, 1), eta(1, 2)
    h = np.empty(7)
    h[0] = n20 + n02
    h[1] = (n20 - n02) ** 2 + 4 * n11**2
    h[2] = (n30 - 3 * n12) ** 2 + (3 * n21 - n03) ** 2
    h[3] = (n30 + n12) ** 2 + (n21 + n03) ** 2
    h[4] = ((n30 - 3 * n12) * (n30 + n12) * ((n30 + n12) ** 2 - 3 * (n21 + n03) ** 2)
            + (3 * n21 - n03) * (n21 + n03) * (3 * (n30 + n12) ** 2 - (n21 + n03) ** 2))
    h[5] = ((n20 - n02) * ((n30 + n12) ** 2 - (n21 + n03) ** 2) + 4 * n11 * (n30 + n12) * (n21 + n03))
    h[6] = ((3 * n21 - n03) * (n30 + n12) * ((n30 + n12) ** 2 - 3 * (n21 + n03) ** 2)
            - (n30 - 3 * n12) * (n21 + n03) * (3 * (n30 + n12) ** 2 - (n21 + n03) ** 2))
    return h


def _outline(mask: np.ndarray, spacing_yx: tuple[float, float]) -> np.ndarray:
    from skimage.measure import find_contours

    contours = find_contours(np.pad(mask, 1).astype(np.float64), 0.5)
    longest = max(contours, key=len)
    return (longest - 1.0) * np.asarray(spacing_yx, dtype=float)


def fourier_descriptors(mask: np.ndarray, spacing_yx: tuple[float, float] = (1.0, 1.0), *,
                        n_descriptors: int = N_FOURIER, n_points: int = 256) -> np.ndarray:
    """Fourier descriptors :math:`|Z_{m+1}|/|Z_1|`, m = 1..``n_descriptors``, of the outline of a
    2-D binary ``mask`` (y, x; pixel size ``spacing_yx`` in mm)."""
    mask = _check_2d(mask)
    if n_descriptors < 1 or n_points < 2 * n_descriptors + 4:
        raise ParameterError("need n_descriptors >= 1 and n_points >= 2 * n_descriptors + 4")
    pts = _outline(mask, spacing_yx)
    if not np.allclose(pts[0], pts[-1]):
        pts = np.vstack([pts, pts[:1]])
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    if arc[-1] <= 0:
        return np.zeros(n_descriptors)
    s = np.linspace(0.0, arc[-1], n_points, endpoint=False)
    z = np.interp(s, arc, pts[:, 1]) + 1j * np.interp(s, arc, pts[:, 0])
    spectrum = np.fft.fft(z) / n_points
    mags = np.abs(spectrum)
    # the dominant first harmonic is +1 or -1 depending on the outline's orientation
    first = 1 if mags[1] >= mags[-1] else -1
    base = mags[first]
    if base == 0:
        return np.zeros(n_descriptors)
    idx = first * np.arange(2, n_descriptors + 2)
    return mags[idx] / base


@feature_family("shape2d", SHAPE2D_SPECS)
def shape2d_features(roi: Roi) -> dict[str, float]:
    """Hu moment invariants (7) and Fourier descriptors (10) of the largest axial slice of the region."""
    morph = roi.morph_mask
    areas = morph.sum(axis=(1, 2))
    sl = morph[int(np.argmax(areas))]
    sp = (roi.spacing_zyx[1], roi.spacing_zyx[2])
    hu = hu_moments(sl, sp)
    fd = fourier_descriptors(sl, sp)
    out = {f"hu_{k + 1}": float(v) for k, v in enumerate(hu)}
    out.update({f"fourier_{m + 1}": float(v) for m, v in enumerate(fd)})
    return out
