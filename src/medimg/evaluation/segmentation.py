"""Overlap metrics between a predicted and a reference label map.

Conventions: a voxel is foreground where the label map equals ``label`` (or is non-zero when
``label`` is None). When both masks are empty the overlap is defined as 1.0 (perfect agreement
about absence); when exactly one is empty it is 0.0. Both images must share a grid.
"""

from __future__ import annotations

import numpy as np

from medimg.core.image import Image

__all__ = ["dice", "iou"]


def _pair(pred: Image, ref: Image, label: int | None) -> tuple[np.ndarray, np.ndarray]:
    ref.check_same_grid(pred, names=("reference", "prediction"))
    if label is None:
        return pred.array != 0, ref.array != 0
    return pred.array == label, ref.array == label


def dice(pred: Image, ref: Image, *, label: int | None = None) -> float:
    r"""Dice similarity coefficient :math:`2|P \cap R| / (|P| + |R|)` (unitless, 0..1)."""
    p, r = _pair(pred, ref, label)
    total = int(p.sum()) + int(r.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, r).sum()) / total


def iou(pred: Image, ref: Image, *, label: int | None = None) -> float:
    r"""Intersection over union (Jaccard) :math:`|P \cap R| / |P \cup R|` (unitless, 0..1)."""
    p, r = _pair(pred, ref, label)
    union = int(np.logical_or(p, r).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(p, r).sum()) / union
