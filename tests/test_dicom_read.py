"""DICOM series -> volume: geometry against the written truth, dcm2niix and SimpleITK; irregular series."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from conftest import DIRECTIONS
from medimg import Image, io
from medimg.core.orient import reorient
from medimg.errors import (
    GantryTiltError,
    InconsistentSeriesError,
    MissingSliceError,
    MultipleSeriesError,
    NonUniformSpacingError,
)
from medimg.io.dicom import read_header, scan
from medimg.io.dicom.header import read_header_pydicom
from medimg.io.dicom.writer import write_series

SPACING = (0.75, 0.8, 2.5)
ORIGIN = (-31.7, 12.4, -88.0)


def phantom(shape=(9, 20, 24), direction=None, seed=0) -> Image:
    """Integer-HU volume with a unique pattern (no symmetry hides a flipped axis)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    hu = (x * 7 + y * 31 + z * 211) % 900 - 300 + rng.integers(-5, 5, size=shape)
    return Image.from_geometry(hu.astype(np.float32), spacing=SPACING, origin=ORIGIN,
                               direction=DIRECTIONS["axial"] if direction is None else direction)


def assert_same_image(got: Image, want: Image, atol_mm: float = 1e-4) -> None:
    assert got.spatial_shape == want.spatial_shape
    np.testing.assert_array_equal(got.array, want.array)
    np.testing.assert_allclose(got.affine, want.affine, atol=atol_mm)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
@pytest.mark.parametrize("shuffle", [None, 7])
def test_series_reads_back_to_the_written_geometry(tmp_path: Path, name: str, shuffle: int | None) -> None:
    truth = phantom(direction=DIRECTIONS[name])
    write_series(truth, tmp_path / "s", seed=1, shuffle_seed=shuffle)
    got = io.read(tmp_path / "s")
    assert got.dtype == np.int16  # integer HU, slope 1 intercept -1024 -> int16
    assert_same_image(got, truth)
    assert got.meta["Modality"] == "CT"
    assert got.meta["rescale"] == {"slope": 1.0, "intercept": -1024.0}
    # slice order is by position, so the SOP instances come out in z order
    assert len(got.meta["sop_instance_uids"]) == truth.shape[0]


@pytest.mark.parametrize("syntax", ["implicit", "rle", "jpeg2000-lossless", "jpegls-lossless"])
def test_transfer_syntaxes_give_the_same_volume(tmp_path: Path, syntax: str) -> None:
    truth = phantom(shape=(4, 40, 36), direction=DIRECTIONS["oblique"])
    write_series(truth, tmp_path / "s", seed=2, transfer_syntax=syntax)
    assert_same_image(io.read(tmp_path / "s"), truth)


def test_agrees_with_simpleitk_series_reader(tmp_path: Path) -> None:
    truth = phantom(direction=DIRECTIONS["oblique"])
    files = write_series(truth, tmp_path / "s", seed=3, shuffle_seed=3)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "s")))
    ref = Image.from_sitk(reader.Execute())
    got = io.read(tmp_path / "s")
    np.testing.assert_array_equal(got.array, ref.array.astype(got.dtype))
    np.testing.assert_allclose(got.affine, ref.affine, atol=1e-4)
    assert len(files) == truth.shape[0]


def _dcm2niix(folder: Path, out: Path) -> Image:
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not installed (Debian package dcm2niix)")
    out.mkdir()
    subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "vol", "-o", str(out), str(folder)],
                   check=True, capture_output=True, timeout=120)
    (nii,) = sorted(out.glob("*.nii"))
    return io.read(nii)


@pytest.mark.tools
@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_same_voxels_and_geometry_as_dcm2niix(tmp_path: Path, name: str) -> None:
    truth = phantom(direction=DIRECTIONS[name])
    write_series(truth, tmp_path / "s", seed=4, shuffle_seed=11)
    ref = _dcm2niix(tmp_path / "s", tmp_path / "nii")
    got = io.read(tmp_path / "s")
    # dcm2niix stores (possibly flipped) RAS-like axes; bring both to one orientation, then compare.
    ref_lps, got_lps = reorient(ref, "LPS"), reorient(got, "LPS")
    assert got_lps.spatial_shape == ref_lps.spatial_shape
    np.testing.assert_array_equal(got_lps.array, ref_lps.array)
    np.testing.assert_allclose(got_lps.affine, ref_lps.affine, atol=1e-3)


def _rewrite(path: Path, **values) -> None:
    ds = pydicom.dcmread(path)
    for k, v in values.items():
        setattr(ds, k, v)
    ds.save_as(path)


def _positions(files: list[Path]) -> list[list[float]]:
    return [[float(v) for v in pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient] for f in files]


def test_missing_slice_is_named_and_can_be_resampled(tmp_path: Path) -> None:
    truth = phantom()
    files = write_series(truth, tmp_path / "s", seed=5)
    files[4].unlink()
    with pytest.raises(MissingSliceError, match=r"1 slice\(s\) missing between \S*/0004\.dcm .* and \S*/0006\.dcm"):
        io.read(tmp_path / "s")
    filled = io.read(tmp_path / "s", on_irregular="resample")
    assert filled.spatial_shape == truth.spatial_shape
    np.testing.assert_allclose(filled.affine, truth.affine, atol=1e-4)
    keep = [k for k in range(truth.shape[0]) if k != 4]
    np.testing.assert_allclose(filled.array[keep], truth.array[keep], atol=1e-3)
    np.testing.assert_allclose(filled.array[4], (truth.array[3] + truth.array[5]) / 2, atol=1e-3)
    assert any("missing" in w for w in filled.meta["warnings"])


def test_non_uniform_spacing_is_caught_and_resampled_exactly_for_a_linear_ramp(tmp_path: Path) -> None:
    z_mm = np.array([0.0, 2.0, 4.0, 5.0, 6.0, 7.0, 9.0, 11.0])
    ramp = np.broadcast_to((10 * z_mm)[:, None, None], (8, 6, 5)).astype(np.float32)
    img = Image.from_geometry(ramp, spacing=(1, 1, 1))
    files = write_series(img, tmp_path / "s", seed=6)
    for f, z in zip(files, z_mm, strict=True):
        _rewrite(f, ImagePositionPatient=[0, 0, float(z)])
    with pytest.raises(NonUniformSpacingError, match="slice spacing varies from 1.000 to 2.000 mm"):
        io.read(tmp_path / "s")
    out = io.read(tmp_path / "s", on_irregular="resample")
    assert out.spacing[2] == pytest.approx(1.0)
    assert out.spatial_shape[0] == 12
    np.testing.assert_allclose(out.array[:, 0, 0], 10 * np.arange(12), atol=1e-4)


def test_gantry_tilt_is_caught_and_resampling_undoes_the_shear(tmp_path: Path) -> None:
    # A volume sampled on a sheared grid: slice k starts tan(15 deg) * z_k mm further along y.
    n, rows, cols = 6, 40, 30
    tilt = np.tan(np.radians(15.0))
    z_mm = np.arange(n) * 2.0
    yy, xx = np.mgrid[0:rows, 0:cols].astype(float)

    def f(x, y, z):  # a smooth function of physical position, linear so interpolation is exact
        return 3.0 * x + 2.0 * y + 5.0 * z

    values = np.stack([f(xx, yy + tilt * z, z) for z in z_mm]).astype(np.float32)
    img = Image.from_geometry(values, spacing=(1, 1, 2))
    files = write_series(img, tmp_path / "s", seed=7, rescale_slope=0.25, rescale_intercept=-100)
    for f_, z in zip(files, z_mm, strict=True):
        _rewrite(f_, ImagePositionPatient=[0.0, float(tilt * z), float(z)], GantryDetectorTilt=15.0)
    with pytest.raises(GantryTiltError, match=r"sheared by 15.00 degrees .*Gantry/Detector Tilt \(0018,1120\) = 15.0"):
        io.read(tmp_path / "s")
    out = io.read(tmp_path / "s", on_irregular="resample")
    np.testing.assert_allclose(out.direction, np.eye(3), atol=1e-9)
    z, y, x = np.indices(out.spatial_shape)
    pts = out.index_to_physical(np.stack([x, y, z], -1))
    expected = f(pts[..., 0], pts[..., 1], pts[..., 2])
    inside = y - tilt * z * 2.0 >= 0  # voxels whose source row lies inside the tilted slice
    np.testing.assert_allclose(out.array[inside], expected[inside], atol=0.2)


def test_two_series_are_listed_and_one_can_be_chosen(tmp_path: Path) -> None:
    a = write_series(phantom(seed=1), tmp_path / "mix" / "a", seed=10, series={"SeriesDescription": "first"})
    write_series(phantom(seed=2), tmp_path / "mix" / "b", seed=11, series={"SeriesDescription": "second"})
    with pytest.raises(MultipleSeriesError, match=r"holds 2 image series.*'first'.*'second'"):
        io.read(tmp_path / "mix")
    uid = pydicom.dcmread(a[0]).SeriesInstanceUID
    got = io.read(tmp_path / "mix", series_uid=uid)
    assert_same_image(got, phantom(seed=1))


def _same_series_uid(files: list[Path], uid: str, **values) -> None:
    for f in files:
        _rewrite(f, SeriesInstanceUID=uid, **values)


def test_multi_echo_series_is_split_not_stacked(tmp_path: Path) -> None:
    e1 = write_series(phantom(seed=1), tmp_path / "mr" / "e1", seed=12, modality="MR")
    e2 = write_series(phantom(seed=2), tmp_path / "mr" / "e2", seed=13, modality="MR")
    _same_series_uid(e1, "1.2.3.4", EchoNumbers=1, EchoTime=10.0)
    _same_series_uid(e2, "1.2.3.4", EchoNumbers=2, EchoTime=40.0)
    result = scan(tmp_path / "mr")
    assert len(result.series) == 2
    assert {s.label for s in result.series} >= {s.label for s in result.series if "EchoNumbers=2" in s.label}
    for s in result.series:
        img = io.dicom.read_series(s)
        assert img.spatial_shape == (9, 20, 24)
    with pytest.raises(MultipleSeriesError):
        io.read(tmp_path / "mr")


def test_multi_phase_series_is_split_by_acquisition(tmp_path: Path) -> None:
    p1 = write_series(phantom(seed=1), tmp_path / "ph" / "p1", seed=14)
    p2 = write_series(phantom(seed=2), tmp_path / "ph" / "p2", seed=15)
    _same_series_uid(p1, "1.2.3.5", AcquisitionNumber=1)
    _same_series_uid(p2, "1.2.3.5", AcquisitionNumber=2)
    result = scan(tmp_path / "ph")
    assert sorted(s.label for s in result.series) == ["AcquisitionNumber=1", "AcquisitionNumber=2"]
    first = io.read(tmp_path / "ph", series_uid="1.2.3.5#1")
    assert_same_image(first, phantom(seed=1))


def test_orientation_change_inside_a_series_is_split(tmp_path: Path) -> None:
    ax = write_series(phantom(seed=1), tmp_path / "o" / "ax", seed=16)
    sag = write_series(phantom(seed=2, direction=DIRECTIONS["sagittal"]), tmp_path / "o" / "sag", seed=17)
    _same_series_uid(ax + sag, "1.2.3.6")
    result = scan(tmp_path / "o")
    assert len(result.series) == 2
    codes = sorted(io.dicom.read_series(s).orientation for s in result.series)
    assert codes == ["LPS", "PIR"]


def test_inseparable_duplicate_positions_are_an_error(tmp_path: Path) -> None:
    a = write_series(phantom(seed=1), tmp_path / "d" / "a", seed=18)
    b = write_series(phantom(seed=2), tmp_path / "d" / "b", seed=19)
    _same_series_uid(a + b, "1.2.3.7")
    with pytest.raises(InconsistentSeriesError, match="two frames at the same position"):
        io.read(tmp_path / "d")


def test_per_slice_rescale_gives_float_values(tmp_path: Path) -> None:
    img = phantom(shape=(3, 8, 8))
    files = write_series(img, tmp_path / "s", seed=20)
    _rewrite(files[1], RescaleSlope=2.0, RescaleIntercept=-2048)
    got = io.read(tmp_path / "s")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.array[0], img.array[0])
    stored = img.array[1] + 1024
    np.testing.assert_array_equal(got.array[1], stored * 2 - 2048)


def test_a_truncated_file_in_a_series_is_reported(tmp_path: Path) -> None:
    files = write_series(phantom(), tmp_path / "s", seed=21)
    data = files[-1].read_bytes()
    files[-1].write_bytes(data[: len(data) - 100])
    image = io.read(tmp_path / "s")  # the last slice is dropped, the geometry of the rest is right
    assert image.spatial_shape[0] == 8
    assert any("could not be read" in w and "cut short" in w for w in image.meta["warnings"])


def test_fast_header_agrees_with_pydicom(tmp_path: Path) -> None:
    for syntax in ("explicit", "implicit", "rle"):
        files = write_series(phantom(shape=(2, 8, 8)), tmp_path / syntax, seed=22, transfer_syntax=syntax,
                             patient={"PatientName": "MÜLLER^JÖRG"})
        for f in files:
            fast = read_header(f)
            assert not fast.via_pydicom
            slow = read_header_pydicom(f)
            assert fast.values == slow.values
            assert fast.get("PatientName") == "MÜLLER^JÖRG"
            assert fast.pixel_keyword == slow.pixel_keyword


@pytest.mark.parametrize("name", ["oblique", "sagittal"])
def test_enhanced_multiframe_ct_reads_like_its_source_series(tmp_path: Path, name: str) -> None:
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    truth = phantom(shape=(5, 12, 10), direction=DIRECTIONS[name])
    files = write_series(truth, tmp_path / "s", seed=23, shuffle_seed=2)
    datasets = [pydicom.dcmread(f) for f in files]
    enhanced = LegacyConvertedEnhancedCTImage(
        datasets, series_instance_uid=pydicom.uid.generate_uid(), series_number=99,
        sop_instance_uid=pydicom.uid.generate_uid(), instance_number=1,
    )
    enhanced.save_as(tmp_path / "enhanced.dcm")
    got = io.read(tmp_path / "enhanced.dcm")
    assert_same_image(got, truth)
