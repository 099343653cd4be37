"""Surface distances: known answers, empty masks, and the same numbers as surface-distance, MedPy and MONAI."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from medimg import Image
from medimg.errors import GeometryMismatchError, ParameterError, UnknownNameError
from medimg.evaluation import (
    CONVENTIONS,
    SurfaceConvention,
    assd,
    hausdorff,
    hd95,
    normalized_surface_dice,
    segmentation_metrics,
    surface_distances,
    surface_metrics,
)


def _pair(a: np.ndarray, b: np.ndarray, spacing_array_order) -> tuple[Image, Image]:
    spacing_xyz = tuple(float(s) for s in spacing_array_order[::-1])
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    kw = {"spacing": spacing_xyz, "origin": (3.0, -7.0, 11.0)}
    if a.ndim == 3:
        kw["direction"] = direction
    return Image.from_geometry(b.astype(np.uint8), **kw), Image.from_geometry(a.astype(np.uint8), **kw)


def _random_masks(seed: int, ndim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    shape = (14, 22, 19) if ndim == 3 else (34, 29)
    a = ndi.gaussian_filter(rng.standard_normal(shape), 2.0) > 0.05
    b = ndi.gaussian_filter(rng.standard_normal(shape), 2.0) > 0.05
    if seed % 2:
        b |= ndi.binary_dilation(a)
    spacing = rng.uniform(0.4, 3.0, ndim)
    return a, b, spacing


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # surface-distance uses old scipy names

CASES = [(seed, ndim) for seed in range(4) for ndim in (2, 3)]


# ---------------------------------------------------------------- known answers
@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_nested_boxes_have_the_diagonal_as_hausdorff(convention):
    ref = np.zeros((12, 14, 16), bool)
    ref[3:9, 4:10, 5:11] = True
    pred = np.zeros_like(ref)
    pred[2:10, 3:11, 4:12] = True
    spacing = (2.5, 0.8, 0.6)
    p, r = _pair(ref, pred, spacing)
    expected = math.sqrt(sum(s * s for s in spacing))
    assert hausdorff(p, r, convention=convention) == pytest.approx(expected, abs=1e-12)


def test_identical_masks_are_at_distance_zero():
    ref = np.zeros((6, 7, 8), bool)
    ref[1:5, 2:6, 2:7] = True
    p, r = _pair(ref, ref, (2.0, 1.0, 0.5))
    for name in CONVENTIONS:
        m = surface_metrics(p, r, convention=name)
        assert (m["hd"], m["hd95"], m["assd"], m["nsd"]) == (0.0, 0.0, 0.0, 1.0)


def test_shift_along_thick_axis_uses_the_spacing():
    ref = np.zeros((10, 6, 6), bool)
    ref[2:5] = True  # a slab spanning y and x
    pred = np.zeros_like(ref)
    pred[3:6] = True
    p, r = _pair(ref, pred, (2.5, 0.7, 0.7))
    # faces move by one slice (2.5 mm); the side walls of the slab coincide
    assert hausdorff(p, r, convention="medpy") == pytest.approx(2.5)
    assert hausdorff(p, r, convention="surface-distance") == pytest.approx(2.5)


def test_percentile_conventions_differ_as_documented():
    a, b, spacing = _random_masks(1, 3)
    p, r = _pair(a, b, spacing)
    sd = surface_distances(p, r, surface="voxel")
    pooled = float(np.percentile(np.concatenate([sd.pred_to_ref, sd.ref_to_pred]), 95))
    directed = max(np.percentile(sd.pred_to_ref, 95), np.percentile(sd.ref_to_pred, 95))
    assert hd95(p, r, convention="medpy") == pytest.approx(pooled)
    assert hd95(p, r, convention="monai") == pytest.approx(directed)


# ---------------------------------------------------------------- empty masks
@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_empty_masks_have_defined_values(convention):
    empty = np.zeros((5, 6, 7), bool)
    full = empty.copy()
    full[1:4, 2:5, 2:5] = True
    p, r = _pair(empty, empty, (1.0, 1.0, 1.0))
    m = segmentation_metrics(p, r, convention=convention)
    assert (m["dice"], m["iou"], m["sensitivity"], m["precision"]) == (1.0, 1.0, 1.0, 1.0)
    assert (m["hd"], m["hd95"], m["assd"], m["nsd"]) == (0.0, 0.0, 0.0, 1.0)
    p, r = _pair(full, empty, (1.0, 1.0, 1.0))  # empty prediction
    m = segmentation_metrics(p, r, convention=convention)
    assert (m["dice"], m["iou"], m["sensitivity"], m["precision"]) == (0.0, 0.0, 0.0, 0.0)
    assert m["hd"] == m["hd95"] == m["assd"] == math.inf and m["nsd"] == 0.0
    m = segmentation_metrics(p, r, convention=convention, empty_distance_mm=123.0)
    assert m["hd"] == m["hd95"] == m["assd"] == 123.0
    assert not any(isinstance(v, float) and math.isnan(v) for v in m.values())


# ---------------------------------------------------------------- errors
def test_errors_name_the_problem():
    a, b, spacing = _random_masks(0, 3)
    p, r = _pair(a, b, spacing)
    with pytest.raises(UnknownNameError, match="did you mean 'medpy'"):
        hausdorff(p, r, convention="medpi")
    with pytest.raises(ParameterError, match="percentile"):
        hausdorff(p, r, percentile=101)
    with pytest.raises(ParameterError, match="tolerance_mm"):
        normalized_surface_dice(p, r, tolerance_mm=-1)
    other = Image.from_geometry(a.astype(np.uint8), spacing=(1, 1, 1))
    with pytest.raises(GeometryMismatchError):
        assd(p, other)
    with pytest.raises(ParameterError, match="surface"):
        SurfaceConvention("x", "mesh", "pooled", "pooled")


def test_custom_convention_is_accepted():
    a, b, spacing = _random_masks(2, 3)
    p, r = _pair(a, b, spacing)
    conv = SurfaceConvention("surfel-pooled", "surfel", "pooled", "pooled")
    m = surface_metrics(p, r, convention=conv)
    assert m["convention"] == "surfel-pooled"
    assert 0 < m["hd95"] <= m["hd"]


# ---------------------------------------------------------------- against the libraries
@pytest.mark.parametrize(("seed", "ndim"), CASES)
def test_matches_surface_distance(seed, ndim):
    sdm = pytest.importorskip("surface_distance")
    a, b, spacing = _random_masks(seed, ndim)
    p, r = _pair(a, b, spacing)
    d = sdm.compute_surface_distances(a, b, tuple(spacing))
    ours = surface_metrics(p, r, convention="surface-distance", tolerance_mm=1.5)
    assert ours["hd"] == pytest.approx(sdm.compute_robust_hausdorff(d, 100), abs=1e-6)
    assert ours["hd95"] == pytest.approx(sdm.compute_robust_hausdorff(d, 95), abs=1e-6)
    assert ours["assd"] == pytest.approx(np.mean(sdm.compute_average_surface_distance(d)), abs=1e-6)
    assert ours["nsd"] == pytest.approx(sdm.compute_surface_dice_at_tolerance(d, 1.5), abs=1e-9)


@pytest.mark.parametrize(("seed", "ndim"), CASES)
def test_matches_medpy(seed, ndim):
    mb = pytest.importorskip("medpy.metric.binary")
    a, b, spacing = _random_masks(seed, ndim)
    p, r = _pair(a, b, spacing)
    ours = surface_metrics(p, r, convention="medpy")
    assert ours["hd"] == pytest.approx(mb.hd(b, a, voxelspacing=spacing), abs=1e-6)
    assert ours["hd95"] == pytest.approx(mb.hd95(b, a, voxelspacing=spacing), abs=1e-6)
    assert ours["assd"] == pytest.approx(mb.assd(b, a, voxelspacing=spacing), abs=1e-6)


@pytest.mark.parametrize(("seed", "ndim"), CASES[:4])
def test_matches_monai(seed, ndim):
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")
    torch.set_num_threads(1)
    a, b, spacing = _random_masks(seed, ndim)
    p, r = _pair(a, b, spacing)
    A = torch.from_numpy(a)[None, None].double()
    B = torch.from_numpy(b)[None, None].double()
    kw = {"include_background": True, "spacing": list(spacing)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = {
            "hd": metrics.compute_hausdorff_distance(B, A, **kw),
            "hd95": metrics.compute_hausdorff_distance(B, A, percentile=95, **kw),
            "assd": metrics.compute_average_surface_distance(B, A, symmetric=True, **kw),
            "nsd": metrics.compute_surface_dice(B, A, [1.5], **kw),
        }
        nsd_subvoxel = float(metrics.compute_surface_dice(B, A, [1.5], use_subvoxels=True, **kw))
    ours = surface_metrics(p, r, convention="monai", tolerance_mm=1.5)
    for key, value in ref.items():
        # MONAI computes distances and quantiles in float32: agreement is to float32 resolution
        assert ours[key] == pytest.approx(float(value), rel=2e-6, abs=1e-6), key
    surfel = surface_metrics(p, r, convention="surface-distance", tolerance_mm=1.5)
    assert surfel["nsd"] == pytest.approx(nsd_subvoxel, abs=1e-6)


def test_sparse_surfaces_in_a_large_box_agree_with_medpy_and_surface_distance():
    """Few surface points in a large bounding box take the k-d tree path; same numbers."""
    mb = pytest.importorskip("medpy.metric.binary")
    sdm = pytest.importorskip("surface_distance")
    a = np.zeros((40, 64, 64), bool)
    b = np.zeros_like(a)
    a[2:6, 3:9, 4:10] = True
    a[33:37, 50:58, 52:60] = True
    b[3:7, 3:10, 5:10] = True
    b[30:36, 52:60, 50:57] = True
    spacing = np.array([2.5, 0.8, 0.7])
    p, r = _pair(a, b, spacing)
    ours = surface_metrics(p, r, convention="medpy")
    assert ours["hd"] == pytest.approx(mb.hd(b, a, voxelspacing=spacing), abs=1e-9)
    assert ours["hd95"] == pytest.approx(mb.hd95(b, a, voxelspacing=spacing), abs=1e-9)
    assert ours["assd"] == pytest.approx(mb.assd(b, a, voxelspacing=spacing), abs=1e-9)
    d = sdm.compute_surface_distances(a, b, tuple(spacing))
    surfel = surface_metrics(p, r, convention="surface-distance")
    assert surfel["hd95"] == pytest.approx(sdm.compute_robust_hausdorff(d, 95), abs=1e-9)
    assert surfel["assd"] == pytest.approx(np.mean(sdm.compute_average_surface_distance(d)), abs=1e-9)
