"""Classical segmentation: automatic thresholds, HU ranges, region growing, watershed, level sets and
morphology in mm, against scikit-image / SimpleITK and synthetic phantoms with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from medimg import Image
from medimg.core.registry import registry
from medimg.datasets import ellipsoid_mask
from medimg.errors import ParameterError, UnknownNameError
from medimg.evaluation import dice
from medimg.segmentation import (
    auto_threshold,
    chan_vese,
    closing,
    confidence_connected,
    connected_threshold,
    dilate,
    erode,
    geodesic_active_contour,
    hu_range,
    multi_otsu,
    opening,
    segment,
    threshold_value,
    watershed,
)
from medimg.segmentation.levelset import _acwe, _gac

SPACING = (0.8, 0.8, 2.0)  # (x, y, z) mm


def _phantom(noise: float = 6.0, seed: int = 0, spacing=SPACING) -> tuple[Image, np.ndarray]:
    """A bright ellipsoid (100) in a darker background (20) with Gaussian noise; returns (image, truth)."""
    rng = np.random.default_rng(seed)
    shape = (16, 48, 48)
    centre = (np.asarray(shape[::-1]) - 1) / 2.0 * np.asarray(spacing)
    truth = ellipsoid_mask(shape, centre, (8.0, 6.4, 5.0), spacing)
    values = np.where(truth, 100.0, 20.0) + rng.normal(0.0, noise, shape)
    img = Image.from_geometry(values.astype(np.float32), spacing=spacing, origin=(-5.0, 3.0, 40.0))
    return img, truth


def _truth_image(img: Image, truth: np.ndarray) -> Image:
    return img.with_array(truth.astype(np.uint8))


# ---------------------------------------------------------------- thresholds
@pytest.mark.parametrize("method", ["otsu", "li", "triangle"])
def test_automatic_thresholds_equal_scikit_image(method):
    from skimage import filters

    img, truth = _phantom()
    values = img.array.ravel()
    expected = {"otsu": filters.threshold_otsu(values), "li": filters.threshold_li(values.astype(np.float64)),
                "triangle": filters.threshold_triangle(values)}[method]
    assert threshold_value(img, method=method) == pytest.approx(expected)
    out = auto_threshold(img, method=method)
    assert out.dtype == np.uint8 and out.meta["history"][-1]["threshold"] == pytest.approx(expected)
    np.testing.assert_array_equal(out.array, (img.array > expected).astype(np.uint8))


def test_li_and_triangle_are_registered_variants():
    img, truth = _phantom()
    out = segment(img, "li")
    assert dice(out, _truth_image(img, truth)) > 0.95
    assert segment(img, "triangle").meta["history"][-1]["op"] == "segmentation.triangle"


def test_multi_otsu_classes_match_scikit_image_and_respect_mask():
    from skimage.filters import threshold_multiotsu

    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(m, 3, 400) for m in (0.0, 50.0, 120.0)]).reshape(12, 10, 10)
    img = Image.from_geometry(values, spacing=(1, 1, 2))
    out = multi_otsu(img, classes=3)
    t = threshold_multiotsu(values.ravel(), classes=3)
    np.testing.assert_array_equal(out.array, np.digitize(values, t, right=True) + 1)
    assert set(np.unique(out.array)) == {1, 2, 3}
    roi = np.zeros(values.shape, np.uint8)
    roi[:6] = 1
    masked = multi_otsu(img, classes=2, mask=img.with_array(roi))
    assert masked.array[6:].max() == 0 and masked.array[:6].min() >= 1
    with pytest.raises(ParameterError, match="classes"):
        multi_otsu(img, classes=1)


def test_hu_range_windows_and_modality_check():
    hu = np.array([-1000, -951, -950, -700, -190, -100, -30, -29, 40, 150, 151, 299, 300, 1200], dtype=np.int16)
    img = Image.from_geometry(hu.reshape(1, 1, -1), meta={"modality": "CT"})
    got = {t: hu[hu_range(img, tissue=t).array.ravel() == 1].tolist()
           for t in ("air", "lung", "fat", "soft_tissue", "bone")}
    assert got == {"air": [-1000, -951], "lung": [-950, -700], "fat": [-190, -100, -30],
                   "soft_tissue": [-29, 40, 150], "bone": [300, 1200]}
    with pytest.raises(UnknownNameError, match="did you mean 'lung'"):
        hu_range(img, tissue="lungs")
    mr = Image.from_geometry(hu.reshape(1, 1, -1), meta={"Modality": "MR"})
    with pytest.raises(ParameterError, match="modality"):
        hu_range(mr, tissue="fat")


# ---------------------------------------------------------------- region growing
def _sitk_seed(img: Image, index_xyz):
    return [tuple(int(v) for v in index_xyz)]


def test_connected_threshold_equals_simpleitk_and_seeds_in_mm():
    import SimpleITK as sitk

    img, truth = _phantom()
    seed_xyz = (24, 24, 8)
    ref = sitk.GetArrayFromImage(sitk.ConnectedThreshold(img.to_sitk(), seedList=_sitk_seed(img, seed_xyz),
                                                         lower=60, upper=200, replaceValue=1))
    ours = connected_threshold(img, lower=60, upper=200, seeds_voxel=[seed_xyz])
    np.testing.assert_array_equal(ours.array, ref)
    mm = img.index_to_physical(seed_xyz)
    same = connected_threshold(img, lower=60, upper=200, seeds_mm=[tuple(mm + 0.2)])
    np.testing.assert_array_equal(same.array, ours.array)
    assert dice(ours, _truth_image(img, truth)) > 0.97


def test_region_growing_stays_in_mask_and_reports_bad_seeds():
    img, truth = _phantom()
    roi = np.zeros(truth.shape, np.uint8)
    roi[:, :, :24] = 1
    out = connected_threshold(img, lower=60, seeds_voxel=[(20, 24, 8)], mask=img.with_array(roi))
    assert out.array[:, :, 24:].max() == 0 and out.array.sum() > 0
    with pytest.raises(ParameterError, match=r"seeds_voxel\[0\].*outside the image"):
        connected_threshold(img, lower=60, seeds_voxel=[(100, 0, 0)])
    with pytest.raises(ParameterError, match=r"seeds_mm\[0\]"):
        connected_threshold(img, lower=60, seeds_mm=[(1e4, 0.0, 0.0)])
    with pytest.raises(ParameterError, match="either"):
        connected_threshold(img, lower=60)


@pytest.mark.parametrize("iterations", [0, 1, 4])
def test_confidence_connected_equals_simpleitk(iterations):
    import SimpleITK as sitk

    img, _ = _phantom(noise=10.0, spacing=(1.0, 1.0, 1.0))
    ref = sitk.GetArrayFromImage(sitk.ConfidenceConnected(
        img.to_sitk(), seedList=[(19, 19, 8)], numberOfIterations=iterations, multiplier=2.5,
        initialNeighborhoodRadius=2, replaceValue=1))
    ours = confidence_connected(img, seeds_voxel=[(19, 19, 8)], iterations=iterations, multiplier=2.5,
                                initial_radius_mm=2.0)
    np.testing.assert_array_equal(ours.array, ref)


# ---------------------------------------------------------------- watershed
def test_marker_watershed_splits_touching_blobs():
    spacing = (1.0, 1.0, 1.0)
    shape = (20, 30, 40)
    a = ellipsoid_mask(shape, (12, 15, 10), (7, 7, 7), spacing)
    b = ellipsoid_mask(shape, (25, 15, 10), (7, 7, 7), spacing)
    values = np.where(a | b, 100.0, 0.0)
    img = Image.from_geometry(values, spacing=spacing)
    from scipy import ndimage as ndi

    # flood the inverted distance map: the classical way to split touching objects
    dist = Image.from_geometry(ndi.distance_transform_edt(a | b), spacing=spacing)
    out = watershed(dist, seeds_voxel=[(12, 15, 10), (25, 15, 10)], landscape="inverted",
                    mask=img.with_array((a | b).astype(np.uint8)))
    assert set(np.unique(out.array)) == {0, 1, 2}
    assert np.mean(out.array[a & ~b] == 1) > 0.95 and np.mean(out.array[b & ~a] == 2) > 0.95
    # gradient landscape with object + background markers recovers the union
    markers = np.zeros(shape, np.uint8)
    markers[10, 15, 12] = markers[10, 15, 25] = 1
    markers[0, 0, 0] = 2
    seg = watershed(img, markers=img.with_array(markers), sigma_mm=1.0)
    assert dice(img.with_array((seg.array == 1).astype(np.uint8)), img.with_array((a | b).astype(np.uint8))) > 0.9
    with pytest.raises(ParameterError, match="h > 0"):
        watershed(img)
    auto = watershed(img, h=5.0, landscape="gradient")
    assert auto.array.max() >= 1


# ---------------------------------------------------------------- level sets
def _fresh_skimage_curvature(ms):
    ms._curvop = ms._fcycle([lambda u: ms.sup_inf(ms.inf_sup(u)), lambda u: ms.inf_sup(ms.sup_inf(u))])


@pytest.mark.parametrize("ndim", [2, 3])
def test_level_set_schemes_equal_scikit_image(ndim):
    ms = pytest.importorskip("skimage.segmentation.morphsnakes")
    img, _ = _phantom(noise=12.0)
    values = img.array.astype(np.float64) if ndim == 3 else img.array[8].astype(np.float64)
    init = ms.checkerboard_level_set(values.shape, 5)
    _fresh_skimage_curvature(ms)
    expected = ms.morphological_chan_vese(values, 12, init_level_set=init, smoothing=2)
    got = _acwe(values, init, iterations=12, smoothing=2, lambda1=1.0, lambda2=1.0, roi=None)
    np.testing.assert_array_equal(got, expected)
    g = ms.inverse_gaussian_gradient(values / 120.0, alpha=100.0, sigma=1.5)
    start = np.zeros(values.shape, np.int8)
    start[tuple(slice(n // 2 - 2, n // 2 + 2) for n in values.shape)] = 1
    _fresh_skimage_curvature(ms)
    expected = ms.morphological_geodesic_active_contour(g, 15, init_level_set=start, smoothing=1,
                                                        balloon=1, threshold=0.3)
    got = _gac(g, start, iterations=15, smoothing=1, threshold=0.3, balloon=1.0, roi=None)
    np.testing.assert_array_equal(got, expected)


def test_chan_vese_and_gac_find_the_phantom_in_a_region_of_interest():
    img, truth = _phantom(noise=8.0, spacing=(1.0, 1.0, 1.0))
    reference = _truth_image(img, truth)
    roi = img.with_array(ellipsoid_mask(truth.shape, (23.5, 23.5, 7.5), (14.0, 12.0, 7.0), (1, 1, 1)).astype(np.uint8))
    cv = chan_vese(img, mask=roi, iterations=60)
    assert dice(cv, reference) > 0.93
    assert cv.array[roi.array == 0].max() == 0
    assert cv.meta["history"][-1]["c_in"] > cv.meta["history"][-1]["c_out"]
    gac = geodesic_active_contour(img, seeds_mm=[tuple(img.index_to_physical((23, 23, 7)))], iterations=60,
                                  sigma_mm=1.0)
    assert dice(gac, reference) > 0.85
    dark = chan_vese(img, mask=roi, iterations=30, foreground="dark")
    assert dark.meta["history"][-1]["c_in"] < dark.meta["history"][-1]["c_out"]


# ---------------------------------------------------------------- morphology in mm
@pytest.mark.parametrize("name", ["opening", "closing", "dilate", "erode"])
def test_morphology_in_mm_equals_scikit_image_with_ball(name):
    from scipy import ndimage as ndi
    from skimage import morphology as skm

    rng = np.random.default_rng(5)
    fg = ndi.gaussian_filter(rng.standard_normal((18, 26, 26)), 2.0) > 0.1
    img = Image.from_geometry(fg.astype(np.uint8), spacing=(0.5, 0.5, 0.5))
    func = {"opening": opening, "closing": closing, "dilate": dilate, "erode": erode}[name]
    sk = {"opening": skm.opening, "closing": skm.closing, "dilate": skm.dilation, "erode": skm.erosion}[name]
    expected = sk(fg, skm.ball(2)) if name != "dilate" else ndi.binary_dilation(fg, skm.ball(2))
    np.testing.assert_array_equal(func(img, radius_mm=1.0).array.astype(bool), expected)


def test_opening_radius_is_physical_on_anisotropic_grid():
    arr = np.zeros((9, 21, 21), np.uint8)
    arr[2:7, 5:16, 5:16] = 1
    arr[4, 10, 16:19] = 1  # a 1-voxel spur (0.5 mm thick in-plane)
    img = Image.from_geometry(arr, spacing=(0.5, 0.5, 2.0))
    out = opening(img, radius_mm=1.0)  # in-plane 2 voxels, through-plane 0 voxels
    assert out.array[4, 10, 17:19].max() == 0  # the spur beyond the reach of a disc inside the box
    np.testing.assert_array_equal(out.array[2:7, 7:14, 7:14], 1)
    assert out.meta["history"][-1]["structure_voxels"] == [1, 5, 5]


def test_every_method_is_registered_with_mm_parameters():
    names = set(registry("segmentation").names())
    assert {"threshold", "otsu", "multi_otsu", "li", "triangle", "hu_range", "connected_threshold",
            "confidence_connected", "watershed", "chan_vese", "geodesic_active_contour", "opening",
            "closing", "fill_holes", "largest_component", "remove_small", "unet"} <= names
    params = dict((n, t) for n, t, _ in registry("segmentation").get("opening").describe())
    assert "radius_mm" in params
