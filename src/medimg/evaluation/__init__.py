"""Evaluation: segmentation overlap (and, as the project grows, distances, classification metrics)."""

from medimg.evaluation.segmentation import dice, iou

__all__ = ["dice", "iou"]
