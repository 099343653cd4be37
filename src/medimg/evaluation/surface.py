r"""Surface-distance metrics between two label maps, in millimetres, with selectable conventions.

Libraries disagree on these numbers because they make three different choices. medimg makes
each one explicit in a :class:`SurfaceConvention` and ships the conventions of the three
libraries people compare against, with the same numbers as the library (tested to 1e-6 mm):

``"surface-distance"`` (default; DeepMind's ``surface-distance`` package)
    *Surface*: the marching-cubes surface of the mask. Its elements ("surfels") sit on the
    corners of the voxel grid (the centres of 2x2x2 neighbourhoods of voxel centres that are
    neither all inside nor all outside) and each carries its **area** in mm^2 (its length in mm
    in 2-D). *Percentile*: computed on each direction separately, weighted by area (the
    smallest distance whose cumulative area fraction reaches p / 100), and the larger of the
    two directed values is reported. *ASSD*: the mean of the two directed area-weighted means.
``"monai"`` (``monai.metrics`` with its defaults, ``use_subvoxels=False``)
    *Surface*: the **boundary voxels** of the mask (foreground voxels with at least one of the 6
    face neighbours in the background; voxels outside the array count as background), each with
    weight 1, at the voxel centres. *Percentile*: per direction, linear interpolation between
    order statistics (``numpy.percentile`` / ``torch.quantile``), then the **maximum of the two
    directed** values. *ASSD*: the mean of all distances of both directions pooled together.
``"medpy"`` (``medpy.metric.binary``)
    *Surface*: boundary voxels, as for MONAI. *Percentile*: the two directions' distances
    **pooled** into one sample, then ``numpy.percentile`` (linear). *ASSD*: pooled mean.

Definitions (for a convention with surface elements :math:`S_P, S_R` of the prediction and
the reference, weights :math:`w` (areas or 1), and :math:`d(s, S)` the Euclidean distance in mm
from element :math:`s` to the nearest element of :math:`S`):

* Hausdorff distance :math:`HD = \max(\max_{s \in S_P} d(s, S_R), \max_{s \in S_R} d(s, S_P))`
  (the same in every convention);
* :math:`HD_p`: the p-th percentile of the distances, directed-then-max or pooled, weighted or
  not, as the convention says (:math:`HD_{95}` for p = 95);
* average symmetric surface distance (ASSD): mean of the directed weighted means, or the pooled
  weighted mean, as the convention says;
* normalised surface Dice at tolerance :math:`\tau` mm (NSD, Nikolov et al. 2021):
  :math:`\frac{\sum_{S_P} w [d \le \tau] + \sum_{S_R} w [d \le \tau]}{\sum_{S_P} w + \sum_{S_R} w}`
  (surface-distance's ``compute_surface_dice_at_tolerance``, MONAI's ``compute_surface_dice``).

Empty masks: when both masks are empty the distances are 0.0 and NSD is 1.0 (perfect agreement
about absence); when exactly one is empty there is no finite distance: HD, HD_p and ASSD are
``empty_distance_mm`` (default ``inf``; give e.g. the image diagonal for a finite worst case) and
NSD is 0.0. No metric returns NaN.

Spacing: distances use the image spacing (anisotropic voxels are handled exactly); the grid's
axes must be orthogonal (any orientation). Implementation: both masks are cropped to the
bounding box of their union, their surfaces are extracted with array slicing, elements on both
surfaces are at distance 0, and the other nearest distances come from a k-d tree over the other
surface's points or, when the box is small, from a distance transform of the box (both exact
Euclidean distances).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from medimg.core.image import Image
from medimg.errors import ParameterError, UnknownNameError

__all__ = [
    "SurfaceConvention",
    "CONVENTIONS",
    "SurfaceDistances",
    "surface_distances",
    "hausdorff",
    "hd95",
    "assd",
    "normalized_surface_dice",
    "surface_metrics",
]


@dataclass(frozen=True)
class SurfaceConvention:
    """How surfaces, percentiles and averages are defined (see the module docstring).

    Attributes
    ----------
    name
        A label recorded with the results.
    surface
        ``"surfel"``: area-weighted marching-cubes surface elements on the voxel corners;
        ``"voxel"``: boundary voxels (6-neighbourhood), weight 1 each.
    percentile
        ``"max_of_directed"``: the percentile of each direction, then the larger;
        ``"pooled"``: the percentile of both directions' distances together.
        Weighted (surfel) percentiles take the smallest distance whose cumulative weight
        fraction reaches p / 100; unweighted (voxel) ones interpolate linearly (numpy default).
    assd
        ``"mean_of_directed"``: the mean of the two directed (weighted) means;
        ``"pooled"``: the (weighted) mean of both directions' distances together.
    """

    name: str
    surface: Literal["surfel", "voxel"]
    percentile: Literal["max_of_directed", "pooled"]
    assd: Literal["mean_of_directed", "pooled"]

    def __post_init__(self) -> None:
        for field_name, allowed in (
            ("surface", ("surfel", "voxel")),
            ("percentile", ("max_of_directed", "pooled")),
            ("assd", ("mean_of_directed", "pooled")),
        ):
            value = getattr(self, field_name)
            if value not in allowed:
                msg = f"SurfaceConvention.{field_name} must be one of {allowed}, got {value!r}"
                raise ParameterError(msg)


#: The conventions of the libraries medimg reproduces, by name.
CONVENTIONS: Mapping[str, SurfaceConvention] = {
    "surface-distance": SurfaceConvention("surface-distance", "surfel", "max_of_directed", "mean_of_directed"),
    "monai": SurfaceConvention("monai", "voxel", "max_of_directed", "pooled"),
    "medpy": SurfaceConvention("medpy", "voxel", "pooled", "pooled"),
}

ConventionLike = str | SurfaceConvention


def _convention(convention: ConventionLike) -> SurfaceConvention:
    if isinstance(convention, SurfaceConvention):
        return convention
    try:
        return CONVENTIONS[str(convention)]
    except KeyError:
        raise UnknownNameError("surface-distance convention", str(convention), CONVENTIONS) from None


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances (mm) from each surface element of one mask to the other mask's surface.

    Attributes
    ----------
    pred_to_ref, ref_to_pred
        float64 distances in mm, one per surface element of the prediction (resp. reference),
        in C order of the elements. ``inf`` when the other surface is empty.
    pred_weights, ref_weights
        The elements' weights: areas in mm^2 (lengths in mm in 2-D) for ``"surfel"`` surfaces,
        1.0 for ``"voxel"`` ones.
    surface
        ``"surfel"`` or ``"voxel"``.
    """

    pred_to_ref: np.ndarray
    ref_to_pred: np.ndarray
    pred_weights: np.ndarray
    ref_weights: np.ndarray
    surface: str

    @property
    def pred_empty(self) -> bool:
        """True when the prediction has no surface (an empty mask)."""
        return self.pred_to_ref.size == 0

    @property
    def ref_empty(self) -> bool:
        """True when the reference has no surface (an empty mask)."""
        return self.ref_to_pred.size == 0

    def hausdorff(self, percentile: float = 100.0, *, convention: ConventionLike = "surface-distance",
                  empty_distance_mm: float = math.inf) -> float:
        """Hausdorff distance (``percentile=100``) or its p-th percentile, mm (module docstring)."""
        conv = _convention(convention)
        _check_percentile(percentile)
        special = self._special(empty_distance_mm)
        if special is not None:
            return special
        weighted = self.surface == "surfel"
        if percentile >= 100.0:
            return float(max(self.pred_to_ref.max(), self.ref_to_pred.max()))
        if conv.percentile == "pooled":
            d = np.concatenate([self.pred_to_ref, self.ref_to_pred])
            w = np.concatenate([self.pred_weights, self.ref_weights])
            return _percentile(d, w, percentile, weighted)
        return max(
            _percentile(self.ref_to_pred, self.ref_weights, percentile, weighted),
            _percentile(self.pred_to_ref, self.pred_weights, percentile, weighted),
        )

    def assd(self, *, convention: ConventionLike = "surface-distance",
             empty_distance_mm: float = math.inf) -> float:
        """Average symmetric surface distance, mm (module docstring)."""
        conv = _convention(convention)
        special = self._special(empty_distance_mm)
        if special is not None:
            return special
        sp = float(np.sum(self.pred_to_ref * self.pred_weights))
        sr = float(np.sum(self.ref_to_pred * self.ref_weights))
        wp, wr = float(np.sum(self.pred_weights)), float(np.sum(self.ref_weights))
        if conv.assd == "pooled":
            if self.surface == "voxel":  # the libraries' plain mean of the concatenation
                return float(np.concatenate([self.pred_to_ref, self.ref_to_pred]).mean())
            return (sp + sr) / (wp + wr)
        return 0.5 * (sr / wr + sp / wp)

    def surface_dice(self, tolerance_mm: float) -> float:
        """Normalised surface Dice at ``tolerance_mm`` (0..1; module docstring)."""
        if not np.isfinite(tolerance_mm) or tolerance_mm < 0:
            raise ParameterError(f"tolerance_mm must be a finite distance >= 0 (mm), got {tolerance_mm!r}")
        if self.pred_empty and self.ref_empty:
            return 1.0
        if self.pred_empty or self.ref_empty:
            return 0.0
        near = float(np.sum(self.pred_weights[self.pred_to_ref <= tolerance_mm])) + float(
            np.sum(self.ref_weights[self.ref_to_pred <= tolerance_mm])
        )
        return near / (float(np.sum(self.pred_weights)) + float(np.sum(self.ref_weights)))

    def _special(self, empty_distance_mm: float) -> float | None:
        if self.pred_empty and self.ref_empty:
            return 0.0
        if self.pred_empty or self.ref_empty:
            return float(empty_distance_mm)
        return None


def _check_percentile(percentile: float) -> None:
    if not (0.0 <= float(percentile) <= 100.0):
        raise ParameterError(f"percentile must be in [0, 100], got {percentile!r}")


def _percentile(d: np.ndarray, w: np.ndarray, percentile: float, weighted: bool) -> float:
    if not weighted:
        return float(np.percentile(d, percentile))
    order = np.lexsort((w, d))  # by distance, then weight: surface-distance's sort order
    d_sorted, w_sorted = d[order], w[order]
    cumulative = np.cumsum(w_sorted) / np.sum(w_sorted)
    idx = int(np.searchsorted(cumulative, percentile / 100.0))
    return float(d_sorted[min(idx, d_sorted.size - 1)])


# ------------------------------------------------------------------------ surface extraction
def _masks(pred: Image, ref: Image, label: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (array order) and the spacing in array order, after checking the grids."""
    for name, image in (("prediction", pred), ("reference", ref)):
        if not isinstance(image, Image):
            raise ParameterError(f"{name} must be a medimg.Image, got {type(image).__name__}")
        if image.channel_axis is not None:
            raise ParameterError(f"{name} must be a scalar label map, got {image.n_channels} channels")
    ref.check_same_grid(pred, names=("reference", "prediction"))
    direction = ref.direction
    deviation = float(np.max(np.abs(direction.T @ direction - np.eye(3))))
    if deviation > 1e-4:
        msg = (f"surface distances need orthogonal voxel axes; this grid is sheared "
               f"(max |D^T D - I| = {deviation:.3g}). Resample the label maps first.")
        raise ParameterError(msg)
    ndim = ref.spatial_ndim
    spacing = np.asarray(ref.spacing[:ndim], dtype=float)[::-1]
    if label is None:
        return pred.array != 0, ref.array != 0, spacing
    return pred.array == label, ref.array == label, spacing


def _crop_pad(p: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Both masks cropped to their union's bounding box and padded by one background voxel."""
    union = p | r
    slices = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        nz = np.flatnonzero(np.any(union, axis=others))
        if nz.size == 0:
            return None
        slices.append(slice(int(nz[0]), int(nz[-1]) + 1))
    box = tuple(slices)
    return np.pad(p[box], 1), np.pad(r[box], 1)


def _surfels(padded: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corner-grid surface elements of a padded mask: where they are (bool) and their areas."""
    from medimg.evaluation._surfel_tables import contour_length_table, surface_area_table

    m = padded.astype(np.uint8)
    if m.ndim == 3:
        lo, hi = slice(None, -1), slice(1, None)
        code = np.zeros(tuple(s - 1 for s in m.shape), dtype=np.uint8)
        for bit, (a, b, c) in zip(
            (128, 64, 32, 16, 8, 4, 2, 1),
            ((lo, lo, lo), (lo, lo, hi), (lo, hi, lo), (lo, hi, hi),
             (hi, lo, lo), (hi, lo, hi), (hi, hi, lo), (hi, hi, hi)),
            strict=True,
        ):
            code |= m[a, b, c] * np.uint8(bit)
        full, table = 255, surface_area_table(spacing)
    else:
        lo, hi = slice(None, -1), slice(1, None)
        code = (m[lo, lo] * np.uint8(8)) | (m[lo, hi] * np.uint8(4)) | (m[hi, lo] * np.uint8(2)) | m[hi, hi]
        full, table = 15, contour_length_table(spacing)
    border = (code != 0) & (code != full)
    return border, table[code[border]]


def _boundary_voxels(padded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground voxels with a face neighbour in the background (padding counts as background):
    where they are (bool, padded shape) and their weights (1)."""
    core = tuple(slice(1, -1) for _ in range(padded.ndim))
    interior = padded[core].copy()
    for axis in range(padded.ndim):
        for shift in (0, 2):
            sl = list(core)
            sl[axis] = slice(shift, padded.shape[axis] - 2 + shift)
            interior &= padded[tuple(sl)]
    border = np.zeros_like(padded)
    border[core] = padded[core] & ~interior
    return border, np.ones(int(np.count_nonzero(border)))


def _nearest(border: np.ndarray, other: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance (mm) from each element of ``border`` (C order) to the nearest one of ``other``.

    Elements on both surfaces are at distance 0 without a search. The others are looked up in
    a Euclidean distance transform of the (cropped) box when the box is small compared with the
    number of points, else in a k-d tree of ``other``'s points; both are exact. ``inf`` when
    ``other`` is empty.
    """
    shared = other[border]
    out = np.zeros(shared.size)
    if shared.all():
        return out
    if not other.any():
        out[:] = np.inf
        return out
    query = border & ~other
    n_points = int(np.count_nonzero(query))
    if other.size <= 16 * n_points:
        from scipy.ndimage import distance_transform_edt

        out[~shared] = distance_transform_edt(~other, sampling=spacing)[query]
        return out
    from scipy.spatial import cKDTree

    targets = np.argwhere(other) * spacing
    tree = cKDTree(targets, leafsize=64, balanced_tree=False, compact_nodes=False)
    # large queries use every core (threads; the result does not depend on their number)
    out[~shared] = tree.query(np.argwhere(query) * spacing, k=1, workers=-1 if n_points > 20_000 else 1)[0]
    return out


def surface_distances(pred: Image, ref: Image, *, label: int | None = None,
                      surface: Literal["surfel", "voxel"] = "surfel") -> SurfaceDistances:
    """Distances (mm) between the surfaces of a predicted and a reference label map.

    Parameters
    ----------
    pred, ref
        Label maps on the same grid (checked; orthogonal axes, any spacing).
    label
        The label compared; ``None`` compares the non-zero voxels.
    surface
        ``"surfel"`` (area-weighted corner-grid surface elements) or ``"voxel"`` (boundary
        voxels); see :class:`SurfaceConvention`.

    Returns
    -------
    SurfaceDistances
        The directed distances and the elements' weights; its methods give HD, HD_p, ASSD and
        NSD under any convention that uses this ``surface``.
    """
    if surface not in ("surfel", "voxel"):
        raise ParameterError(f"surface must be 'surfel' or 'voxel', got {surface!r}")
    p, r, spacing = _masks(pred, ref, label)
    cropped = _crop_pad(p, r)
    if cropped is None:
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty, empty, empty, surface)
    pp, rp = cropped
    extract = _boundary_voxels if surface == "voxel" else lambda m: _surfels(m, spacing)
    pb, pw = extract(pp)
    rb, rw = extract(rp)
    return SurfaceDistances(_nearest(pb, rb, spacing), _nearest(rb, pb, spacing), pw, rw, surface)


# ------------------------------------------------------------------------ metric functions
def hausdorff(pred: Image, ref: Image, *, label: int | None = None, percentile: float = 100.0,
              convention: ConventionLike = "surface-distance",
              empty_distance_mm: float = math.inf) -> float:
    r"""Hausdorff distance in mm, or its ``percentile``-th percentile (robust Hausdorff).

    :math:`HD = \max(\max_{S_P} d(s, S_R), \max_{S_R} d(s, S_P))`; for ``percentile < 100`` the
    directed-then-max or pooled percentile of the convention (see the module docstring).
    Both masks empty: 0.0; one empty: ``empty_distance_mm`` (default ``inf``).
    """
    conv = _convention(convention)
    sd = surface_distances(pred, ref, label=label, surface=conv.surface)
    return sd.hausdorff(percentile, convention=conv, empty_distance_mm=empty_distance_mm)


def hd95(pred: Image, ref: Image, *, label: int | None = None,
         convention: ConventionLike = "surface-distance", empty_distance_mm: float = math.inf) -> float:
    """95th-percentile Hausdorff distance in mm (:func:`hausdorff` with ``percentile=95``)."""
    return hausdorff(pred, ref, label=label, percentile=95.0, convention=convention,
                     empty_distance_mm=empty_distance_mm)


def assd(pred: Image, ref: Image, *, label: int | None = None,
         convention: ConventionLike = "surface-distance", empty_distance_mm: float = math.inf) -> float:
    """Average symmetric surface distance in mm (mean of directed means, or pooled mean, by convention).

    Both masks empty: 0.0; one empty: ``empty_distance_mm`` (default ``inf``).
    """
    conv = _convention(convention)
    sd = surface_distances(pred, ref, label=label, surface=conv.surface)
    return sd.assd(convention=conv, empty_distance_mm=empty_distance_mm)


def normalized_surface_dice(pred: Image, ref: Image, *, tolerance_mm: float, label: int | None = None,
                            convention: ConventionLike = "surface-distance") -> float:
    """Normalised surface Dice: the weighted fraction of both surfaces within ``tolerance_mm`` (mm)
    of the other surface, 0..1. Both masks empty: 1.0; one empty: 0.0."""
    conv = _convention(convention)
    return surface_distances(pred, ref, label=label, surface=conv.surface).surface_dice(tolerance_mm)


def surface_metrics(pred: Image, ref: Image, *, label: int | None = None,
                    convention: ConventionLike = "surface-distance", percentile: float = 95.0,
                    tolerance_mm: float = 1.0, empty_distance_mm: float = math.inf) -> dict[str, float | str]:
    """HD, HD_p, ASSD and NSD from one surface extraction (mm; NSD unitless).

    Returns
    -------
    dict
        ``{"hd": ..., "hd95": ..., "assd": ..., "nsd": ..., "convention": name}``; the percentile
        key is ``f"hd{percentile:g}"``. See the module docstring for the definitions.
    """
    conv = _convention(convention)
    _check_percentile(percentile)
    sd = surface_distances(pred, ref, label=label, surface=conv.surface)
    return {
        "hd": sd.hausdorff(100.0, convention=conv, empty_distance_mm=empty_distance_mm),
        f"hd{percentile:g}": sd.hausdorff(percentile, convention=conv, empty_distance_mm=empty_distance_mm),
        "assd": sd.assd(convention=conv, empty_distance_mm=empty_distance_mm),
        "nsd": sd.surface_dice(tolerance_mm),
        "convention": conv.name,
    }
