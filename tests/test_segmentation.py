"""Segmentation: thresholds and label-map clean-up against exact synthetic ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from medimg import Image
from medimg.core.registry import registry
from medimg.errors import GeometryMismatchError, ParameterError, UnknownNameError
from medimg.segmentation import (
    connected_components,
    fill_holes,
    largest_component,
    otsu,
    remove_small,
    segment,
    threshold,
)
from medimg.segmentation.threshold import otsu_threshold

# An oblique, anisotropic grid: outputs must keep it exactly.
_DIRECTION = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def _image(array: np.ndarray, spacing=(0.5, 0.75, 2.0)) -> Image:
    return Image.from_geometry(
        array, spacing=spacing, origin=(-10.0, 5.0, 30.0), direction=_DIRECTION
    )


def _assert_label_on_grid(out: Image, ref: Image) -> None:
    assert out.dtype == np.uint8
    assert out.shape == ref.shape
    np.testing.assert_array_equal(out.affine, ref.affine)


# ---------------------------------------------------------------------- threshold
def test_threshold_is_inclusive_and_keeps_geometry():
    values = np.array([-1000, -201, -200, 0, 400, 401], dtype=np.int16).reshape(1, 2, 3)
    img = _image(values)
    out = threshold(img, lower=-200, upper=400)
    _assert_label_on_grid(out, img)
    assert out.array.ravel().tolist() == [0, 0, 1, 1, 1, 0]
    assert threshold(img, lower=0).array.ravel().tolist() == [0, 0, 0, 1, 1, 1]
    assert threshold(img, upper=-201).array.ravel().tolist() == [1, 1, 0, 0, 0, 0]
    assert out.meta["history"][-1]["op"] == "segmentation.threshold"


def test_threshold_nan_voxels_are_background_and_input_is_untouched():
    values = np.array([[[np.nan, 1.0, 2.0]]])
    img = _image(values)
    before = values.copy()
    assert threshold(img, lower=0.5).array.ravel().tolist() == [0, 1, 1]
    np.testing.assert_array_equal(img.array, before)


def test_threshold_mask_restricts_result():
    img = _image(np.full((2, 3, 4), 5.0))
    roi = np.zeros((2, 3, 4), dtype=np.uint8)
    roi[1, :, 1:3] = 7
    out = threshold(img, lower=0, mask=img.with_array(roi))
    np.testing.assert_array_equal(out.array, (roi != 0).astype(np.uint8))


@pytest.mark.parametrize(
    ("lower", "upper", "match"),
    [(None, None, "lower"), (5, 1, "must not exceed"), (float("nan"), None, "NaN")],
)
def test_threshold_rejects_bad_bounds(lower, upper, match):
    with pytest.raises(ParameterError, match=match):
        threshold(_image(np.zeros((1, 2, 2))), lower=lower, upper=upper)


def test_threshold_mask_on_other_grid_is_a_geometry_error():
    img = _image(np.zeros((2, 3, 4)))
    other = Image.from_geometry(np.ones((2, 3, 4), dtype=np.uint8), spacing=(1, 1, 1))
    with pytest.raises(GeometryMismatchError, match="mask grid differs"):
        threshold(img, lower=0, mask=other)


# ---------------------------------------------------------------------- otsu
def _three_level_phantom() -> tuple[Image, np.ndarray, np.ndarray]:
    """0 background, a 100 block and a 200 block inside it, with mild noise."""
    rng = np.random.default_rng(7)
    arr = np.zeros((8, 16, 16))
    body = np.zeros(arr.shape, dtype=bool)
    body[1:7, 2:14, 2:14] = True
    core = np.zeros(arr.shape, dtype=bool)
    core[2:6, 5:11, 5:11] = True
    arr[body] = 100.0
    arr[core] = 200.0
    arr += rng.normal(0, 3.0, arr.shape)
    return _image(arr), body, core


def test_otsu_recovers_bright_class_and_matches_scikit_image():
    from skimage.filters import threshold_otsu

    img, body, _ = _three_level_phantom()
    out = otsu(img)
    _assert_label_on_grid(out, img)
    t = out.meta["history"][-1]["threshold"]
    assert t == pytest.approx(threshold_otsu(img.array.ravel()))
    # Whole image: background (0) vs body (100 and 200).
    np.testing.assert_array_equal(out.array.astype(bool), body)


def test_otsu_histogram_restricted_to_mask():
    img, body, core = _three_level_phantom()
    out = otsu(img, mask=img.with_array(body.astype(np.uint8)))
    # Inside the body the two classes are 100 and 200: Otsu separates the core.
    np.testing.assert_array_equal(out.array.astype(bool), core)
    assert 100 < otsu_threshold(img, mask=img.with_array(body.astype(np.uint8))) < 200


def test_otsu_degenerate_regions_raise():
    img = _image(np.full((2, 2, 2), 3.0))
    with pytest.raises(ParameterError, match="no two classes"):
        otsu(img)
    empty = img.with_array(np.zeros((2, 2, 2), dtype=np.uint8))
    with pytest.raises(ParameterError, match="no finite voxel inside mask"):
        otsu(_image(np.arange(8.0).reshape(2, 2, 2)), mask=empty)


# ---------------------------------------------------------------------- components
def _two_cubes() -> np.ndarray:
    arr = np.zeros((10, 10, 10), dtype=np.int16)
    arr[1:3, 1:3, 1:3] = 4  # 8 voxels, first in scan order
    arr[5:8, 5:8, 5:8] = 9  # 27 voxels
    return arr


def test_connected_components_sorted_by_volume_in_mm3():
    img = _image(_two_cubes(), spacing=(0.5, 0.5, 2.0))  # 0.5 mm^3 voxels
    comps, volumes = connected_components(img)
    np.testing.assert_allclose(volumes, [13.5, 4.0])
    assert comps.dtype == np.uint8
    np.testing.assert_array_equal(comps.array[5:8, 5:8, 5:8], 1)
    np.testing.assert_array_equal(comps.array[1:3, 1:3, 1:3], 2)
    assert comps.array.astype(bool).sum() == 35
    np.testing.assert_array_equal(comps.affine, img.affine)


@pytest.mark.parametrize(
    ("offset", "expected"),  # second voxel relative to the first, components for 6 / 18 / 26
    [((0, 0, 1), (1, 1, 1)), ((0, 1, 1), (2, 1, 1)), ((1, 1, 1), (2, 2, 1))],
)
def test_connectivity_matches_scikit_image(offset, expected):
    from skimage.measure import label as sk_label

    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[1, 1, 1] = 1
    arr[1 + offset[0], 1 + offset[1], 1 + offset[2]] = 1
    img = _image(arr)
    for conn, rank, n_expected in zip((6, 18, 26), (1, 2, 3), expected, strict=True):
        _, volumes = connected_components(img, connectivity=conn)
        assert volumes.size == n_expected == sk_label(arr, connectivity=rank).max()


def test_connected_components_many_components_widen_dtype():
    arr = np.zeros((1, 40, 40), dtype=np.uint8)
    arr[0, ::2, ::2] = 1  # 400 isolated voxels
    comps, volumes = connected_components(_image(arr), connectivity=6)
    assert volumes.size == 400
    assert comps.dtype == np.uint16
    assert comps.array.max() == 400


def test_connectivity_checked_for_dimension():
    with pytest.raises(ParameterError, match="connectivity must be 6, 18 or 26"):
        connected_components(_image(_two_cubes()), connectivity=8)
    flat = Image(np.eye(4, dtype=np.uint8))
    assert connected_components(flat, connectivity=4)[1].size == 4
    assert connected_components(flat, connectivity=8)[1].size == 1
    assert connected_components(flat, connectivity=26)[1].size == 1  # 26 = full = 8 in 2-D


def test_largest_component_and_ties():
    img = _image(_two_cubes())
    out = largest_component(img)
    _assert_label_on_grid(out, img)
    np.testing.assert_array_equal(out.array.astype(bool), _two_cubes() == 9)
    tie = np.zeros((3, 3, 9), dtype=np.uint8)
    tie[1, 1, 1] = tie[1, 1, 7] = 1
    first = int(np.ravel_multi_index((1, 1, 1), tie.shape))  # earlier in scan order
    assert np.flatnonzero(largest_component(_image(tie)).array).tolist() == [first]
    assert largest_component(_image(np.zeros((2, 2, 2), dtype=np.uint8))).array.sum() == 0


def test_largest_component_inside_mask():
    img = _image(_two_cubes())
    roi = np.zeros(img.shape, dtype=np.uint8)
    roi[:4] = 1  # only the small cube lies in it
    out = largest_component(img, mask=img.with_array(roi))
    np.testing.assert_array_equal(out.array.astype(bool), _two_cubes() == 4)


def test_remove_small_uses_physical_volume():
    img = _image(_two_cubes(), spacing=(0.5, 0.5, 2.0))  # cubes of 4 and 13.5 mm^3
    keep_both = remove_small(img, min_volume_mm3=4.0)  # exactly the small cube's volume: kept
    assert keep_both.array.sum() == 35
    only_big = remove_small(img, min_volume_mm3=4.01)
    np.testing.assert_array_equal(only_big.array.astype(bool), _two_cubes() == 9)
    # The same voxels at 1 mm^3 each: 8 mm^3 and 27 mm^3.
    coarse = _image(_two_cubes(), spacing=(1.0, 1.0, 1.0))
    assert remove_small(coarse, min_volume_mm3=4.01).array.sum() == 35
    assert remove_small(img, min_volume_mm3=0).array.sum() == 35
    with pytest.raises(ParameterError, match="min_volume_mm3"):
        remove_small(img, min_volume_mm3=-1)


def test_fill_holes_3d_and_slice_wise():
    shell = np.zeros((7, 7, 7), dtype=np.uint8)
    shell[1:6, 1:6, 1:6] = 1
    shell[2:5, 2:5, 2:5] = 0  # a closed cavity
    img = _image(shell)
    solid = np.zeros_like(shell)
    solid[1:6, 1:6, 1:6] = 1
    np.testing.assert_array_equal(fill_holes(img).array, solid)

    tube = np.zeros((5, 7, 7), dtype=np.uint8)
    tube[:, 1:6, 1:6] = 1
    tube[:, 2:5, 2:5] = 0  # open at both ends: not a 3-D hole
    timg = _image(tube)
    np.testing.assert_array_equal(fill_holes(timg).array, tube)
    filled = np.zeros_like(tube)
    filled[:, 1:6, 1:6] = 1
    np.testing.assert_array_equal(fill_holes(timg, slice_wise=True).array, filled)


def test_label_inputs_are_checked():
    ok_float = _image(np.array([[[0.0, 1.0, 2.0]]]))
    assert largest_component(ok_float).array.sum() == 2  # 1 and 2 touch: one component
    with pytest.raises(ParameterError, match="integer values"):
        largest_component(_image(np.array([[[0.0, 0.5]]])))
    rgb = Image(np.zeros((4, 4, 3), dtype=np.uint8), channel_axis=-1)
    with pytest.raises(ParameterError, match="scalar image"):
        fill_holes(rgb)


# ---------------------------------------------------------------------- registry
def test_segment_dispatches_through_registry():
    names = registry("segmentation").names()
    for name in ("threshold", "otsu", "largest_component", "remove_small", "fill_holes"):
        assert name in names
    img, body, _ = _three_level_phantom()
    np.testing.assert_array_equal(
        segment(img, "threshold", lower=50.0).array, threshold(img, lower=50.0).array
    )
    np.testing.assert_array_equal(segment(img, "otsu").array, otsu(img).array)


def test_segment_unknown_method_and_parameter():
    img = _image(np.zeros((1, 2, 2)))
    with pytest.raises(UnknownNameError, match="did you mean 'otsu'"):
        segment(img, "otsus")
    with pytest.raises(ParameterError, match="did you mean 'lower'"):
        segment(img, "threshold", lowr=1.0)
    with pytest.raises(ParameterError, match="connectivity"):
        segment(
            img.with_array(np.zeros((1, 2, 2), dtype=np.uint8)), "largest_component", connectivity=7
        )
