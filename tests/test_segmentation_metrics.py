"""Overlap and volume metrics: known answers, per-label results and empty masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medimg import Image
from medimg.errors import GeometryMismatchError, ParameterError
from medimg.evaluation import (
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


def _maps() -> tuple[Image, Image]:
    ref = np.zeros((4, 10, 10), np.uint8)
    pred = np.zeros_like(ref)
    ref[1:3, 2:7, 2:7] = 1  # 50 voxels
    pred[1:3, 3:8, 2:7] = 1  # 50 voxels, 40 shared
    ref[0, 0:2, 0:2] = 2  # 4 voxels of label 2, missed
    kw = {"spacing": (0.5, 0.5, 2.0)}  # 0.5 mm^3 voxels
    return Image.from_geometry(pred, **kw), Image.from_geometry(ref, **kw)


def test_overlap_known_answers():
    pred, ref = _maps()
    m = overlap_metrics(pred, ref, label=1)
    assert m["dice"] == pytest.approx(0.8)
    assert m["iou"] == pytest.approx(40 / 60)
    assert m["sensitivity"] == pytest.approx(0.8) and m["precision"] == pytest.approx(0.8)
    assert m["volume_pred_mm3"] == pytest.approx(25.0) and m["volume_ref_mm3"] == pytest.approx(25.0)
    assert m["volume_difference_mm3"] == 0.0
    fg = overlap_metrics(pred, ref)  # non-zero voxels: ref has 54
    assert fg["sensitivity"] == pytest.approx(40 / 54) and fg["precision"] == pytest.approx(0.8)
    assert fg["volume_difference_mm3"] == pytest.approx(-2.0)
    assert fg["relative_volume_difference"] == pytest.approx(-4 / 54)
    assert dice(pred, ref, label=1) == m["dice"] and iou(pred, ref, label=1) == m["iou"]
    assert sensitivity(pred, ref) == fg["sensitivity"] and precision(pred, ref) == fg["precision"]
    assert volume_difference(pred, ref) == pytest.approx(-2.0)


def test_per_label_and_empty_label():
    pred, ref = _maps()
    assert labels_present(pred, ref) == [1, 2]
    per = segmentation_metrics_per_label(pred, ref)
    assert set(per) == {1, 2}
    missed = per[2]
    assert (missed["dice"], missed["sensitivity"], missed["precision"]) == (0.0, 0.0, 0.0)
    assert missed["hd"] == math.inf and missed["nsd"] == 0.0
    assert missed["relative_volume_difference"] == -1.0
    absent = segmentation_metrics(pred, ref, label=7)
    assert (absent["dice"], absent["hd"], absent["nsd"], absent["relative_volume_difference"]) == (1.0, 0.0, 1.0, 0.0)


def test_metrics_carry_the_convention_and_check_inputs():
    pred, ref = _maps()
    m = segmentation_metrics(pred, ref, label=1, convention="medpy", tolerance_mm=2.0)
    assert m["convention"] == "medpy" and m["tolerance_mm"] == 2.0
    other = Image.from_geometry(pred.array, spacing=(1, 1, 1))
    with pytest.raises(GeometryMismatchError, match="prediction grid differs"):
        dice(other, ref)
    with pytest.raises(ParameterError, match="medimg.Image"):
        dice(pred.array, ref)
