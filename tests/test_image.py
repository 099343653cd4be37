"""The Image type: geometry conventions and round trips through SimpleITK and nibabel."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import DIRECTIONS, rotation
from medimg import Image
from medimg.core.image import LPS_TO_RAS, orientation_code
from medimg.core.orient import reorient
from medimg.errors import GeometryMismatchError, ParameterError


def _image(direction: np.ndarray, dtype=np.int16, shape=(7, 9, 11)) -> Image:
    array = np.arange(np.prod(shape)).reshape(shape).astype(dtype)
    return Image.from_geometry(array, spacing=(0.7, 1.3, 2.9), origin=(-12.5, 40.25, 101.0),
                               direction=direction)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_affine_maps_index_xyz_to_lps(name: str) -> None:
    img = _image(DIRECTIONS[name])
    idx = np.array([3, 5, 2])  # (x, y, z)
    expected = np.array(img.origin) + DIRECTIONS[name] @ (idx * np.array([0.7, 1.3, 2.9]))
    np.testing.assert_allclose(img.index_to_physical(idx), expected, atol=1e-12)
    np.testing.assert_allclose(img.physical_to_index(expected), idx, atol=1e-9)
    assert img.spacing == pytest.approx((0.7, 1.3, 2.9))
    np.testing.assert_allclose(img.direction, DIRECTIONS[name], atol=1e-12)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_sitk_round_trip_keeps_geometry_and_voxels(name: str) -> None:
    img = _image(DIRECTIONS[name])
    s = img.to_sitk()
    # SimpleITK agrees on where a voxel is: TransformIndexToPhysicalPoint takes (x, y, z).
    np.testing.assert_allclose(s.TransformIndexToPhysicalPoint((3, 5, 2)), img.index_to_physical([3, 5, 2]),
                               atol=1e-9)
    assert s.GetSize() == img.size
    back = Image.from_sitk(s)
    np.testing.assert_array_equal(back.array, img.array)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-12)
    assert back.dtype == img.dtype


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_nibabel_round_trip_converts_lps_to_ras(name: str, tmp_path) -> None:
    img = _image(DIRECTIONS[name], dtype=np.float32)
    nii = img.to_nibabel()
    # The NIfTI affine is RAS and indexes the (i, j, k) = (x, y, z) array.
    np.testing.assert_allclose(nii.affine, LPS_TO_RAS @ img.affine, atol=1e-6)
    assert nii.shape == img.size
    assert nii.dataobj[3, 5, 2] == img.array[2, 5, 3]
    nib.save(nii, tmp_path / "a.nii.gz")
    back = Image.from_nibabel(nib.load(tmp_path / "a.nii.gz"))
    np.testing.assert_array_equal(back.array, img.array)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-5)
    # ITK reads the NIfTI we wrote to the same LPS geometry (an independent check of the RAS flip).
    s = sitk.ReadImage(str(tmp_path / "a.nii.gz"))
    np.testing.assert_allclose(s.GetOrigin(), img.origin, atol=1e-4)
    np.testing.assert_allclose(np.array(s.GetDirection()).reshape(3, 3), img.direction, atol=1e-5)
    np.testing.assert_allclose(s.GetSpacing(), img.spacing, atol=1e-5)


def test_orientation_codes() -> None:
    assert orientation_code(np.eye(3)) == "LPS"
    assert orientation_code(np.diag([-1.0, -1.0, 1.0])) == "RAS"
    assert orientation_code(DIRECTIONS["sagittal"]) == "PIR"
    assert orientation_code(DIRECTIONS["coronal"]) == "LIP"
    assert orientation_code(DIRECTIONS["axial_feet_first"]) == "LAI"


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
@pytest.mark.parametrize("code", ["LPS", "RAS", "PIR"])
def test_reorient_keeps_every_voxel_in_place(name: str, code: str) -> None:
    img = _image(DIRECTIONS[name])
    out = reorient(img, code)
    if name != "oblique":
        assert out.orientation == code
    # Every voxel keeps its physical position: compare value at matching physical points.
    rng = np.random.default_rng(0)
    zyx = rng.integers(0, img.shape, size=(50, 3))
    pts = img.index_to_physical(zyx[:, ::-1])
    idx = np.rint(out.physical_to_index(pts)).astype(int)
    np.testing.assert_array_equal(out.array[idx[:, 2], idx[:, 1], idx[:, 0]], img.array[zyx[:, 0], zyx[:, 1], zyx[:, 2]])


def test_grid_check_names_both_grids() -> None:
    a = _image(np.eye(3))
    b = Image.from_geometry(a.array, spacing=(0.7, 1.3, 3.0), origin=a.origin)
    with pytest.raises(GeometryMismatchError, match=r"mask grid differs from image grid.*spacing"):
        a.check_same_grid(b)
    a.check_same_grid(a.with_array(a.array * 2))


def test_bad_construction_is_a_clear_error() -> None:
    with pytest.raises(ParameterError, match="2 or 3 spatial axes"):
        Image(np.zeros(5))
    with pytest.raises(ParameterError, match="singular"):
        Image(np.zeros((2, 2, 2)), np.zeros((4, 4)))
    with pytest.raises(ParameterError, match="spacing must be positive"):
        Image.from_geometry(np.zeros((2, 2, 2)), spacing=(1, 0, 1))


def test_vector_image_round_trip() -> None:
    rgb = np.random.default_rng(0).integers(0, 255, size=(4, 5, 6, 3), dtype=np.uint8)
    img = Image.from_geometry(rgb, spacing=(1, 2, 3), channel_axis=-1, direction=rotation(0, 0, 90))
    assert img.spatial_shape == (4, 5, 6) and img.n_channels == 3
    back = Image.from_sitk(img.to_sitk())
    np.testing.assert_array_equal(back.array, rgb)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-12)
    nii = Image.from_nibabel(img.to_nibabel())
    np.testing.assert_array_equal(nii.array, rgb)


def test_2d_image_to_sitk() -> None:
    img = Image.from_geometry(np.arange(12, dtype=np.uint8).reshape(3, 4), spacing=(0.5, 0.25))
    s = img.to_sitk()
    assert s.GetDimension() == 2 and s.GetSize() == (4, 3) and s.GetSpacing() == (0.5, 0.25)
    assert Image.from_sitk(s).spacing[:2] == (0.5, 0.25)


def test_to_torch_is_channel_first() -> None:
    torch = pytest.importorskip("torch")
    img = _image(np.eye(3), dtype=np.float32)
    t = img.to_torch()
    assert isinstance(t, torch.Tensor) and tuple(t.shape) == (1, 7, 9, 11)
