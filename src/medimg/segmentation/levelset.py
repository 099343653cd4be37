r"""Level sets: Chan–Vese (active contours without edges) and the geodesic active contour.

Both are the *morphological* level-set schemes of Márquez-Neila, Baumela and Álvarez (IEEE
TPAMI 2014): the level set is a binary image evolved by the data term of the PDE and smoothed
by the morphological curvature operators (:math:`SI \circ IS` alternating with
:math:`IS \circ SI`). They are the algorithms of scikit-image's ``morphological_chan_vese``
and ``morphological_geodesic_active_contour`` — on the same input and initial level set
medimg's implementation gives the same result — with three additions: a region of interest
(the statistics use only its voxels and the contour cannot leave it; the work is done on its
bounding box), initialisation from seeds in mm, and edge maps computed in physical units.

The curvature smoothing acts on the voxel grid (3 x 3 x 3 neighbourhoods); on very anisotropic
grids it smooths more per mm along the fine axes.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from medimg.core import progress
from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.segmentation.morphology import _bbox, _check_scalar, _foreground, _label_output, _region
from medimg.segmentation.region import Point, seed_indices

__all__ = ["chan_vese", "geodesic_active_contour", "edge_map"]

_segmentation = registry("segmentation")


# ----------------------------------------------------------------------------- curvature
def _line_structures(ndim: int) -> list[np.ndarray]:
    """The straight 3-voxel lines (2-D) or 3 x 3 planes (3-D) of the SI / IS operators."""
    if ndim == 2:
        return [np.eye(3), np.array([[0, 1, 0]] * 3), np.flipud(np.eye(3)), np.rot90([[0, 1, 0]] * 3)]
    planes = [np.zeros((3, 3, 3)) for _ in range(9)]
    idx, rev = [0, 1, 2], [2, 1, 0]
    planes[0][:, :, 1] = 1
    planes[1][:, 1, :] = 1
    planes[2][1, :, :] = 1
    planes[3][:, idx, idx] = 1
    planes[4][:, idx, rev] = 1
    planes[5][idx, :, idx] = 1
    planes[6][idx, :, rev] = 1
    planes[7][idx, idx, :] = 1
    planes[8][idx, rev, :] = 1
    return planes


class _Curvature:
    """Morphological curvature smoothing: SIoIS and ISoSI applied alternately (one per call)."""

    def __init__(self, ndim: int) -> None:
        self._structures = _line_structures(ndim)
        self._calls = 0

    def _sup_inf(self, u: np.ndarray) -> np.ndarray:
        from scipy import ndimage as ndi

        return np.stack([ndi.binary_erosion(u, s).astype(np.int8) for s in self._structures]).max(0)

    def _inf_sup(self, u: np.ndarray) -> np.ndarray:
        from scipy import ndimage as ndi

        return np.stack([ndi.binary_dilation(u, s).astype(np.int8) for s in self._structures]).min(0)

    def __call__(self, u: np.ndarray) -> np.ndarray:
        first = self._calls % 2 == 0
        self._calls += 1
        return self._sup_inf(self._inf_sup(u)) if first else self._inf_sup(self._sup_inf(u))


# ----------------------------------------------------------------------------- schemes
def _acwe(image: np.ndarray, init: np.ndarray, *, iterations: int, smoothing: int,
          lambda1: float, lambda2: float, roi: np.ndarray | None) -> np.ndarray:
    """Morphological Chan–Vese on arrays; ``roi`` (bool) restricts statistics and contour."""
    u = np.int8(init > 0)
    weight = np.ones(image.shape) if roi is None else roi.astype(np.float64)
    if roi is not None:
        u[~roi] = 0
    curvature = _Curvature(image.ndim)
    steps = progress.Steps(iterations, "chan_vese")
    for _ in range(iterations):
        outside = (1 - u) * weight
        inside = u * weight
        c0 = (image * outside).sum() / float(outside.sum() + 1e-8)
        c1 = (image * inside).sum() / float(inside.sum() + 1e-8)
        abs_du = np.abs(np.gradient(u)).sum(0)
        aux = abs_du * (lambda1 * (image - c1) ** 2 - lambda2 * (image - c0) ** 2)
        u[aux < 0] = 1
        u[aux > 0] = 0
        for _ in range(smoothing):
            u = curvature(u)
        if roi is not None:
            u[~roi] = 0
        steps.advance()
    return u


def _gac(gimage: np.ndarray, init: np.ndarray, *, iterations: int, smoothing: int, threshold: float,
         balloon: float, roi: np.ndarray | None) -> np.ndarray:
    """Morphological geodesic active contour on an edge map ``gimage`` (small at edges)."""
    from scipy import ndimage as ndi

    structure = np.ones((3,) * gimage.ndim, dtype=np.int8)
    dimage = np.gradient(gimage)
    balloon_mask = gimage > threshold / abs(balloon) if balloon != 0 else None
    u = np.int8(init > 0)
    if roi is not None:
        u[~roi] = 0
    curvature = _Curvature(gimage.ndim)
    steps = progress.Steps(iterations, "geodesic_active_contour")
    for _ in range(iterations):
        if balloon_mask is not None:
            aux = ndi.binary_dilation(u, structure) if balloon > 0 else ndi.binary_erosion(u, structure)
            u[balloon_mask] = aux[balloon_mask]
        flow = np.zeros_like(gimage)
        for el1, el2 in zip(dimage, np.gradient(u), strict=True):
            flow += el1 * el2
        u[flow > 0] = 1
        u[flow < 0] = 0
        for _ in range(smoothing):
            u = curvature(u)
        if roi is not None:
            u[~roi] = 0
        steps.advance()
    return u


# ----------------------------------------------------------------------------- helpers
def _work_box(image: Image, roi: np.ndarray | None) -> tuple[slice, ...]:
    if roi is None:
        return tuple(slice(0, n) for n in image.spatial_shape)
    if not roi.any():
        raise ParameterError("the mask (region of interest) is empty")
    return tuple(slice(lo, hi) for lo, hi in _bbox(roi))


def _initial(image: Image, *, init: Image | None, seeds_mm: list[Point] | None,
             seeds_voxel: list[tuple[int, ...]] | None, radius_mm: float,
             default: Literal["checkerboard", "box"], square_mm: float) -> tuple[np.ndarray, str]:
    """The initial level set (bool, full grid) and how it was made."""
    shape = image.spatial_shape
    spacing = np.asarray(image.spacing[: image.spatial_ndim])[::-1]
    given = sum(x is not None for x in (init, seeds_mm, seeds_voxel))
    if given > 1:
        raise ParameterError("give init, seeds_mm or seeds_voxel, not several")
    if init is not None:
        image.check_same_grid(init, names=("image", "init"))
        return _foreground(init, "init"), "init"
    if seeds_mm is not None or seeds_voxel is not None:
        if not np.isfinite(radius_mm) or radius_mm <= 0:
            raise ParameterError(f"init_radius_mm must be > 0 (mm), got {radius_mm!r}")
        grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij", sparse=True)
        out = np.zeros(shape, dtype=bool)
        for seed in seed_indices(image, seeds_mm=seeds_mm, seeds_voxel=seeds_voxel):
            centre = np.asarray(seed) * spacing
            out |= sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) <= radius_mm**2
        return out, "seeds"
    if default == "checkerboard":
        if not np.isfinite(square_mm) or square_mm <= 0:
            raise ParameterError(f"checkerboard_mm must be > 0 (mm), got {square_mm!r}")
        size = np.maximum(1, np.round(square_mm / spacing)).astype(int)
        grid = np.indices(shape) // size.reshape((-1,) + (1,) * len(shape))
        return np.bitwise_xor.reduce(grid & 1, axis=0).astype(bool), "checkerboard"
    out = np.zeros(shape, dtype=bool)
    out[tuple(slice(1, n - 1) if n > 2 else slice(0, n) for n in shape)] = True
    return out, "box"


def _check_counts(iterations: int, smoothing: int) -> None:
    if int(iterations) != iterations or iterations < 1:
        raise ParameterError(f"iterations must be an integer >= 1, got {iterations!r}")
    if int(smoothing) != smoothing or smoothing < 0:
        raise ParameterError(f"smoothing must be an integer >= 0, got {smoothing!r}")


def edge_map(image: Image, *, sigma_mm: float = 1.0, alpha: float = 100.0,
             intensity_range: tuple[float, float] | None = None, mask: Image | None = None) -> np.ndarray:
    r"""Edge-stopping function :math:`g = 1 / \sqrt{1 + \alpha |\nabla (G_\sigma * \hat I)|}`.

    :math:`\hat I` is the image rescaled to [0, 1] — by ``intensity_range`` (image units,
    clipped) or by the minimum and maximum inside ``mask`` — and the gradient is per mm, so
    ``alpha`` is in mm. Near 1 in flat regions, small on edges (scikit-image's
    ``inverse_gaussian_gradient`` in physical units). Returns a float64 array (array order).
    """
    from medimg.segmentation.watershed import gradient_magnitude

    if not np.isfinite(alpha) or alpha <= 0:
        raise ParameterError(f"alpha must be > 0, got {alpha!r}")
    values = np.asarray(image.array, dtype=np.float64)
    roi = _region(image, mask)
    if intensity_range is not None:
        lo, hi = (float(v) for v in intensity_range)
        if not hi > lo:
            raise ParameterError(f"intensity_range must be (low, high) with high > low, got {intensity_range!r}")
    else:
        sample = values if roi is None else values[roi]
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            raise ParameterError("edge_map: no finite voxel (inside mask)")
        lo, hi = float(sample.min()), float(sample.max())
        if hi == lo:
            hi = lo + 1.0
    scaled = np.clip((np.nan_to_num(values, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    grad = gradient_magnitude(image.with_array(scaled), sigma_mm=sigma_mm)
    return 1.0 / np.sqrt(1.0 + alpha * grad)


# ----------------------------------------------------------------------------- public
@_segmentation.register("chan_vese")
def chan_vese(
    image: Image,
    *,
    iterations: int = 150,
    smoothing: int = 1,
    lambda1: float = 1.0,
    lambda2: float = 1.0,
    init: Image | None = None,
    seeds_mm: list[Point] | None = None,
    seeds_voxel: list[tuple[int, ...]] | None = None,
    init_radius_mm: float = 5.0,
    checkerboard_mm: float = 5.0,
    foreground: Literal["auto", "bright", "dark"] = "auto",
    mask: Image | None = None,
) -> Image:
    r"""Chan–Vese segmentation: two regions of (nearly) constant intensity with a short boundary.

    Minimises :math:`\lambda_1 \int_{in} (I - c_1)^2 + \lambda_2 \int_{out} (I - c_0)^2 +`
    boundary length, with :math:`c_1, c_0` the mean intensities inside and outside (over the
    region of interest), by the morphological scheme (see the module notes).

    Parameters
    ----------
    image
        Scalar intensity image (any units; no edges needed).
    iterations
        Number of iterations (each: data step + ``smoothing`` curvature steps).
    smoothing
        Curvature smoothing steps per iteration (0 = none; 1-4 typical).
    lambda1, lambda2
        Weights of the inside and outside fit terms; ``lambda1 > lambda2`` favours a more
        varied inside.
    init
        Initial region (label map on the same grid).
    seeds_mm, seeds_voxel
        Or balls of ``init_radius_mm`` (mm) around seeds (LPS mm or (x, y, z) voxel indices).
    init_radius_mm
        Radius of the seed balls, mm.
    checkerboard_mm
        Without ``init`` or seeds: a checkerboard of squares of this size (mm) starts the
        evolution (the standard initialisation, robust to where the objects are).
    foreground
        Which phase is labelled 1: ``"bright"`` / ``"dark"`` (the phase with the higher / lower
        mean intensity) or ``"auto"`` (the evolved ``init`` / seed region when given, else
        ``"bright"``).
    mask
        Optional region of interest: means use only its voxels, the result is 0 outside it and
        the computation runs on its bounding box.

    Returns
    -------
    Image
        ``uint8`` label map; ``meta["history"][-1]`` holds the final means ``c_in`` / ``c_out``.
    """
    _check_scalar(image, "image")
    _check_counts(iterations, smoothing)
    if foreground not in ("auto", "bright", "dark"):
        raise ParameterError(f"foreground must be 'auto', 'bright' or 'dark', got {foreground!r}")
    roi = _region(image, mask)
    start, how = _initial(image, init=init, seeds_mm=seeds_mm, seeds_voxel=seeds_voxel,
                          radius_mm=init_radius_mm, default="checkerboard", square_mm=checkerboard_mm)
    box = _work_box(image, roi)
    values = np.asarray(image.array, dtype=np.float64)[box]
    finite = np.isfinite(values)
    sub_roi = None if roi is None else roi[box]
    if not finite.all():
        sub_roi = finite if sub_roi is None else sub_roi & finite
        values = np.where(finite, values, 0.0)
    u = _acwe(values, start[box], iterations=int(iterations), smoothing=int(smoothing),
              lambda1=float(lambda1), lambda2=float(lambda2), roi=sub_roi)
    region = u.astype(bool)
    valid = np.ones(region.shape, dtype=bool) if sub_roi is None else sub_roi
    c_in = float(values[region & valid].mean()) if (region & valid).any() else float("nan")
    c_out = float(values[~region & valid].mean()) if (~region & valid).any() else float("nan")
    want = foreground if foreground != "auto" else ("bright" if how == "checkerboard" else "phase")
    if want in ("bright", "dark") and np.isfinite(c_in) and np.isfinite(c_out):
        if (want == "bright" and c_in < c_out) or (want == "dark" and c_in > c_out):
            region = ~region & valid
            c_in, c_out = c_out, c_in
    out = np.zeros(image.spatial_shape, dtype=np.uint8)
    out[box] = region
    step = {"op": "segmentation.chan_vese", "iterations": int(iterations), "smoothing": int(smoothing),
            "init": how, "c_in": c_in, "c_out": c_out}
    return _label_output(image, out, step)


@_segmentation.register("geodesic_active_contour")
def geodesic_active_contour(
    image: Image,
    *,
    iterations: int = 200,
    smoothing: int = 1,
    balloon: float | None = None,
    threshold: float | None = None,
    sigma_mm: float = 1.0,
    alpha: float = 100.0,
    intensity_range: tuple[float, float] | None = None,
    init: Image | None = None,
    seeds_mm: list[Point] | None = None,
    seeds_voxel: list[tuple[int, ...]] | None = None,
    init_radius_mm: float = 3.0,
    mask: Image | None = None,
) -> Image:
    r"""Geodesic active contour: a contour pushed by a balloon force that stops on edges.

    The contour moves along the edge map :math:`g` of :func:`edge_map` (attracted to its
    valleys, i.e. to edges), is smoothed by the curvature operators, and is inflated
    (``balloon > 0``) or deflated (``balloon < 0``) where :math:`g > threshold / |balloon|`
    (away from edges).

    Parameters
    ----------
    image
        Scalar intensity image.
    iterations
        Number of iterations.
    smoothing
        Curvature smoothing steps per iteration.
    balloon
        Balloon force; ``None`` (default) inflates (+1) from an ``init`` or seeds and deflates
        (-1) from the default start (the whole region of interest minus a one-voxel border).
    threshold
        Edge-map level below which the balloon stops; ``None``: the 40th percentile of the edge
        map inside the region of interest (scikit-image's "auto").
    sigma_mm, alpha, intensity_range
        Edge map parameters (see :func:`edge_map`): Gaussian sigma in mm, sensitivity in mm, and
        the intensity window scaled to [0, 1] (``None``: the region's min and max).
    init, seeds_mm, seeds_voxel, init_radius_mm
        The initial region: a label map, or balls of ``init_radius_mm`` (mm) around seeds.
    mask
        Optional region of interest: the contour stays inside it and the computation runs on
        its bounding box.

    Returns
    -------
    Image
        ``uint8`` label map of the final region.
    """
    _check_scalar(image, "image")
    _check_counts(iterations, smoothing)
    roi = _region(image, mask)
    start, how = _initial(image, init=init, seeds_mm=seeds_mm, seeds_voxel=seeds_voxel,
                          radius_mm=init_radius_mm, default="box", square_mm=1.0)
    if how == "box" and roi is not None:
        from scipy import ndimage as ndi

        start = ndi.binary_erosion(roi)
    if balloon is None:
        balloon = -1.0 if how == "box" else 1.0
    if not np.isfinite(balloon):
        raise ParameterError(f"balloon must be a finite number, got {balloon!r}")
    box = _work_box(image, roi)
    g = edge_map(image, sigma_mm=sigma_mm, alpha=alpha, intensity_range=intensity_range, mask=mask)[box]
    sub_roi = None if roi is None else roi[box]
    if threshold is None:
        threshold = float(np.percentile(g if sub_roi is None else g[sub_roi], 40))
    u = _gac(g, start[box], iterations=int(iterations), smoothing=int(smoothing),
             threshold=float(threshold), balloon=float(balloon), roi=sub_roi)
    out = np.zeros(image.spatial_shape, dtype=np.uint8)
    out[box] = u.astype(bool)
    step = {"op": "segmentation.geodesic_active_contour", "iterations": int(iterations),
            "balloon": float(balloon), "threshold": float(threshold), "init": how}
    return _label_output(image, out, step)
