"""NIfTI / NRRD / MHA / PNG / JPEG reading and writing, and atomic output."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image as PILImage

from conftest import DIRECTIONS
from medimg import Image, io
from medimg.core.files import atomic_path
from medimg.errors import FileFormatError, UnsupportedFormatError


def _volume(dtype=np.int16) -> Image:
    arr = np.arange(4 * 5 * 6).reshape(4, 5, 6).astype(dtype)
    return Image.from_geometry(arr, spacing=(0.5, 0.75, 2.0), origin=(-3.0, 4.5, 10.0),
                               direction=DIRECTIONS["oblique"])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_volume_round_trip(tmp_path: Path, suffix: str, dtype) -> None:
    img = _volume(dtype)
    path = io.write(img, tmp_path / f"v{suffix}")
    back = io.read(path)
    np.testing.assert_array_equal(back.array, img.array)
    assert back.dtype == img.dtype
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-5)
    # an independent reader (ITK) sees the same LPS geometry in every format
    s = sitk.ReadImage(str(path))
    np.testing.assert_allclose(s.GetOrigin(), img.origin, atol=1e-4)
    np.testing.assert_allclose(s.GetSpacing(), img.spacing, atol=1e-5)
    np.testing.assert_allclose(np.reshape(s.GetDirection(), (3, 3)), img.direction, atol=1e-5)


def test_nifti_written_by_nibabel_in_ras_reads_as_lps(tmp_path: Path) -> None:
    data = np.zeros((4, 3, 2), np.float32)  # (i, j, k)
    data[3, 0, 1] = 7.0
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = (10.0, 20.0, 30.0)  # RAS
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "ras.nii.gz")
    img = io.read(tmp_path / "ras.nii.gz")
    assert img.orientation == "RAS"
    assert img.array[1, 0, 3] == 7.0
    # voxel (i=3, j=0, k=1) is at RAS (16, 20, 34) = LPS (-16, -20, 34)
    np.testing.assert_allclose(img.index_to_physical([3, 0, 1]), [-16.0, -20.0, 34.0])


def test_png_and_jpeg_are_2d_without_patient_geometry(tmp_path: Path) -> None:
    grey = (np.arange(12 * 10).reshape(12, 10) % 256).astype(np.uint8)
    PILImage.fromarray(grey).save(tmp_path / "g.png")
    rgb = np.random.default_rng(0).integers(0, 255, (8, 9, 3), dtype=np.uint8)
    PILImage.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    g = io.read(tmp_path / "g.png")
    assert g.spatial_ndim == 2 and not g.has_patient_geometry
    np.testing.assert_array_equal(g.array, grey)
    c = io.read(tmp_path / "c.jpg")
    assert c.channel_axis == -1 and c.spatial_shape == (8, 9) and not c.has_patient_geometry
    io.write(g, tmp_path / "out.png")
    np.testing.assert_array_equal(np.asarray(PILImage.open(tmp_path / "out.png")), grey)


def test_unsupported_and_broken_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match=r"cannot write extension '\.xyz'"):
        io.write(_volume(), tmp_path / "a.xyz")
    (tmp_path / "bad.nii.gz").write_bytes(b"not gzip")
    with pytest.raises(FileFormatError, match="bad.nii.gz: not a readable NIfTI"):
        io.read(tmp_path / "bad.nii.gz")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(FileFormatError, match="bad.png"):
        io.read(tmp_path / "bad.png")
    with pytest.raises(UnsupportedFormatError, match="PNG holds a 2-D image"):
        io.write(_volume(np.uint8), tmp_path / "v.png")


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "result.nii.gz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.nii.gz"]


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    umask = os.umask(0)
    os.umask(umask)
    path = io.write(_volume(), tmp_path / "v.nii.gz")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


@pytest.mark.parametrize("dtype,scaled", [(np.int16, False), (np.int16, True), (np.float32, False), (np.uint8, True)])
def test_nii_gz_read_whole_equals_nibabel(tmp_path: Path, dtype, scaled: bool) -> None:
    """A .nii.gz read whole (inflated by libdeflate straight into the voxel buffer when installed)
    gives nibabel's own voxels (scaling included), type and affine; a str path works too."""
    r = np.random.default_rng(3)
    data = r.integers(0, 200, (13, 11, 7)).astype(dtype)
    affine = np.array([[0.0, -0.9, 0.0, 12.0], [0.8, 0.0, 0.0, -7.0], [0.0, 0.0, 2.5, 3.0], [0, 0, 0, 1.0]])
    img = nib.Nifti1Image(data, affine)
    if scaled:
        img.header.set_slope_inter(0.25, -3.0)
    path = tmp_path / "x.nii.gz"
    nib.save(img, str(path))
    ref = Image.from_nibabel(nib.load(str(path)))
    got = io.read(str(path))
    from medimg.io.formats import _libdeflate, _nifti_libdeflate

    if _libdeflate() is not None:  # the fast reader itself, not only the fallbacks, gives it
        fast = _nifti_libdeflate(path, None)
        assert fast is not None and np.array_equal(fast.array, ref.array) and np.array_equal(fast.affine, ref.affine)
    assert got.dtype == ref.dtype and np.array_equal(got.array, ref.array)
    assert np.array_equal(got.affine, ref.affine)
    assert "warnings" not in got.meta and "source_slices" not in got.meta


def test_nii_gz_damaged_or_lying_is_a_clear_error(tmp_path: Path) -> None:
    """A truncated .nii.gz, and one whose header claims far more voxels than the stream can hold,
    are FileFormatErrors (no allocation of what the header claims); qform and sform codes 0 warn."""
    import gzip

    data = np.arange(10 * 9 * 8, dtype=np.int16).reshape(10, 9, 8)
    img = nib.Nifti1Image(data, np.eye(4))
    path = tmp_path / "x.nii.gz"
    nib.save(img, str(path))
    raw = path.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FileFormatError):
        io.read(cut)
    plain = bytearray(gzip.decompress(raw))
    plain[42:48] = np.array([30000, 30000, 30000], dtype="<i2").tobytes()  # dim[1..3]
    liar = tmp_path / "liar.nii.gz"
    liar.write_bytes(gzip.compress(bytes(plain)))
    with pytest.raises(FileFormatError):
        io.read(liar)
    bare = nib.Nifti1Image(data, np.eye(4))
    bare.set_qform(None, code=0)
    bare.set_sform(None, code=0)
    guess = tmp_path / "guess.nii.gz"
    nib.save(bare, str(guess))
    assert io.read(guess).meta["warnings"] == ["NIfTI has qform_code = sform_code = 0: geometry is a guess"]
