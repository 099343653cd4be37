r"""Segmentation metrics: overlap, volume and surface distances of a prediction against a reference.

Conventions:

* A voxel is foreground where the label map equals ``label`` (or is non-zero when ``label`` is
  ``None``). Both images must share a grid (checked); volumes use the image spacing.
* With :math:`P` the predicted and :math:`R` the reference foreground,
  :math:`TP = |P \cap R|`:

  - Dice :math:`2 TP / (|P| + |R|)`; IoU (Jaccard) :math:`TP / |P \cup R|`;
  - sensitivity (recall, true-positive rate) :math:`TP / |R|`; precision (positive predictive
    value) :math:`TP / |P|`;
  - volumes :math:`V_P, V_R` in mm^3 (mm^2 for 2-D images), volume difference
    :math:`V_P - V_R` (signed, mm^3), relative volume difference :math:`(V_P - V_R) / V_R`.

* Empty masks never give NaN. A ratio whose denominator is 0 is 1.0 when *both* masks are empty
  (perfect agreement about absence) and 0.0 otherwise; the relative volume difference with an
  empty reference is 0.0 when the prediction is empty too and ``inf`` otherwise.
* Surface distances (HD, HD95, ASSD, NSD) and their conventions are defined in
  :mod:`medimg.evaluation.surface`; :func:`segmentation_metrics` computes everything at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from medimg.core.image import Image
from medimg.errors import ParameterError
from medimg.evaluation.surface import ConventionLike, _convention, surface_metrics

__all__ = [
    "dice",
    "iou",
    "sensitivity",
    "precision",
    "volume_difference",
    "overlap_metrics",
    "segmentation_metrics",
    "segmentation_metrics_per_label",
    "labels_present",
]


def _pair(pred: Image, ref: Image, label: int | None) -> tuple[np.ndarray, np.ndarray]:
    for name, image in (("prediction", pred), ("reference", ref)):
        if not isinstance(image, Image):
            raise ParameterError(f"{name} must be a medimg.Image, got {type(image).__name__}")
        if image.channel_axis is not None:
            raise ParameterError(f"{name} must be a scalar label map, got {image.n_channels} channels")
    ref.check_same_grid(pred, names=("reference", "prediction"))
    if label is None:
        return pred.array != 0, ref.array != 0
    return pred.array == label, ref.array == label


def _ratio(num: int, den: int, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else 0.0
    return num / den


def _counts(p: np.ndarray, r: np.ndarray) -> tuple[int, int, int]:
    n_p, n_r = int(np.count_nonzero(p)), int(np.count_nonzero(r))
    tp = int(np.count_nonzero(p & r)) if n_p and n_r else 0
    return tp, n_p, n_r


def dice(pred: Image, ref: Image, *, label: int | None = None) -> float:
    r"""Dice similarity coefficient :math:`2|P \cap R| / (|P| + |R|)` (unitless, 0..1).

    Both masks empty: 1.0; one empty: 0.0.
    """
    tp, n_p, n_r = _counts(*_pair(pred, ref, label))
    return _ratio(2 * tp, n_p + n_r, n_p + n_r == 0)


def iou(pred: Image, ref: Image, *, label: int | None = None) -> float:
    r"""Intersection over union (Jaccard) :math:`|P \cap R| / |P \cup R|` (unitless, 0..1).

    Both masks empty: 1.0; one empty: 0.0.
    """
    tp, n_p, n_r = _counts(*_pair(pred, ref, label))
    return _ratio(tp, n_p + n_r - tp, n_p + n_r == 0)


def sensitivity(pred: Image, ref: Image, *, label: int | None = None) -> float:
    r"""Sensitivity (recall) :math:`|P \cap R| / |R|` (0..1). Both empty: 1.0; empty reference
    with a non-empty prediction: 0.0."""
    tp, n_p, n_r = _counts(*_pair(pred, ref, label))
    return _ratio(tp, n_r, n_p + n_r == 0)


def precision(pred: Image, ref: Image, *, label: int | None = None) -> float:
    r"""Precision (positive predictive value) :math:`|P \cap R| / |P|` (0..1). Both empty: 1.0;
    empty prediction with a non-empty reference: 0.0."""
    tp, n_p, n_r = _counts(*_pair(pred, ref, label))
    return _ratio(tp, n_p, n_p + n_r == 0)


def volume_difference(pred: Image, ref: Image, *, label: int | None = None) -> float:
    """Signed volume difference :math:`V_P - V_R` in mm^3 (mm^2 for 2-D images)."""
    p, r = _pair(pred, ref, label)
    return (int(np.count_nonzero(p)) - int(np.count_nonzero(r))) * ref.voxel_volume_mm3


def overlap_metrics(pred: Image, ref: Image, *, label: int | None = None) -> dict[str, float]:
    """Dice, IoU, sensitivity, precision and volumes in one pass (definitions in the module notes).

    Returns
    -------
    dict
        ``dice``, ``iou``, ``sensitivity``, ``precision`` (0..1), ``volume_pred_mm3``,
        ``volume_ref_mm3``, ``volume_difference_mm3`` (pred - ref) and
        ``relative_volume_difference`` ((pred - ref) / ref).
    """
    tp, n_p, n_r = _counts(*_pair(pred, ref, label))
    both_empty = n_p + n_r == 0
    voxel = ref.voxel_volume_mm3
    if n_r:
        rvd = (n_p - n_r) / n_r
    else:
        rvd = 0.0 if n_p == 0 else math.inf
    return {
        "dice": _ratio(2 * tp, n_p + n_r, both_empty),
        "iou": _ratio(tp, n_p + n_r - tp, both_empty),
        "sensitivity": _ratio(tp, n_r, both_empty),
        "precision": _ratio(tp, n_p, both_empty),
        "volume_pred_mm3": n_p * voxel,
        "volume_ref_mm3": n_r * voxel,
        "volume_difference_mm3": (n_p - n_r) * voxel,
        "relative_volume_difference": rvd,
    }


def segmentation_metrics(
    pred: Image,
    ref: Image,
    *,
    label: int | None = None,
    convention: ConventionLike = "surface-distance",
    percentile: float = 95.0,
    tolerance_mm: float = 1.0,
    empty_distance_mm: float = math.inf,
) -> dict[str, float | str]:
    """Every metric of one label: overlap, volume and surface distances (mm).

    Parameters
    ----------
    pred, ref
        Predicted and reference label maps on the same grid.
    label
        The label compared; ``None`` compares the non-zero voxels.
    convention
        Surface-distance convention: ``"surface-distance"`` (default), ``"monai"``, ``"medpy"``
        or a :class:`~medimg.evaluation.surface.SurfaceConvention`.
    percentile
        Percentile of the robust Hausdorff distance (key ``f"hd{percentile:g}"``, ``hd95``).
    tolerance_mm
        Tolerance of the normalised surface Dice, mm.
    empty_distance_mm
        Distances reported when exactly one mask is empty (default ``inf``).

    Returns
    -------
    dict
        The keys of :func:`overlap_metrics` plus ``hd``, ``hd95``, ``assd`` (mm), ``nsd`` (0..1),
        ``tolerance_mm`` and ``convention`` (its name).
    """
    conv = _convention(convention)
    out: dict[str, float | str] = dict(overlap_metrics(pred, ref, label=label))
    out.update(surface_metrics(pred, ref, label=label, convention=conv, percentile=percentile,
                               tolerance_mm=tolerance_mm, empty_distance_mm=empty_distance_mm))
    out["tolerance_mm"] = float(tolerance_mm)
    return out


def labels_present(*images: Image) -> list[int]:
    """The sorted non-zero labels found in any of ``images``."""
    found: set[int] = set()
    for image in images:
        values = np.unique(image.array)
        found.update(int(v) for v in values if v != 0)
    return sorted(found)


def segmentation_metrics_per_label(
    pred: Image,
    ref: Image,
    *,
    labels: Sequence[int] | None = None,
    convention: ConventionLike = "surface-distance",
    percentile: float = 95.0,
    tolerance_mm: float = 1.0,
    empty_distance_mm: float = math.inf,
) -> dict[int, dict[str, float | str]]:
    """:func:`segmentation_metrics` for each label (default: every non-zero label in either map)."""
    chosen = labels_present(pred, ref) if labels is None else [int(v) for v in labels]
    return {
        lab: segmentation_metrics(pred, ref, label=lab, convention=convention, percentile=percentile,
                                  tolerance_mm=tolerance_mm, empty_distance_mm=empty_distance_mm)
        for lab in chosen
    }
