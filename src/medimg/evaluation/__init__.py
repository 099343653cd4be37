"""Evaluation: segmentation overlap, volume and surface-distance metrics (mm, selectable conventions)."""

from medimg.evaluation.segmentation import (
    dice,
    iou,
    labels_present,
    overlap_metrics,
    precision,
    segmentation_metrics,
    segmentation_metrics_per_label,
    sensitivity,
    volume_difference,
)
from medimg.evaluation.surface import (
    CONVENTIONS,
    SurfaceConvention,
    SurfaceDistances,
    assd,
    hausdorff,
    hd95,
    normalized_surface_dice,
    surface_distances,
    surface_metrics,
)

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
    "CONVENTIONS",
    "SurfaceConvention",
    "SurfaceDistances",
    "surface_distances",
    "hausdorff",
    "hd95",
    "assd",
    "normalized_surface_dice",
    "surface_metrics",
]
