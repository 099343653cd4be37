"""Tests of medimg.io.dicom.writer.write_series: geometry, values, syntaxes, validity."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from medimg import Image
from medimg.errors import ParameterError, UnknownNameError
from medimg.io.dicom.writer import TRANSFER_SYNTAXES, write_series


def _rotation(axis: int, degrees: float) -> np.ndarray:
    th = np.deg2rad(degrees)
    c, s = np.cos(th), np.sin(th)
    i, j = [a for a in range(3) if a != axis]
    out = np.eye(3)
    out[i, i], out[i, j], out[j, i], out[j, j] = c, -s, s, c
    return out


# Columns are the LPS directions of the voxel axes x (rows), y (columns), z (slices).
DIRECTIONS = {
    "axial": np.eye(3),
    "sagittal": np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
    "coronal": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
    "oblique": _rotation(2, 35.0) @ _rotation(0, 20.0) @ _rotation(1, -10.0),
}
SPACING = (0.7, 0.9, 2.5)  # (x, y, z) mm, all different so that an axis swap shows
ORIGIN = (-12.5, 30.25, -101.0)


def _image(kind: str, direction: np.ndarray, *, shape=(5, 34, 40)) -> Image:
    rng = np.random.default_rng(7)
    if kind == "int16":
        array = rng.integers(-2000, 3000, shape).astype(np.int16)
    elif kind == "float_hu":  # integer HU in a float array, as filters return them
        array = rng.integers(-1024, 3072, shape).astype(np.float32)
    elif kind == "quarter_hu":
        array = rng.integers(-4096, 12288, shape).astype(np.float64) / 4.0
    else:
        raise AssertionError(kind)
    return Image.from_geometry(array, spacing=SPACING, origin=ORIGIN, direction=direction)


def _values(ds: pydicom.Dataset) -> np.ndarray:
    slope = float(ds.get("RescaleSlope", 1.0))
    intercept = float(ds.get("RescaleIntercept", 0.0))
    return ds.pixel_array.astype(np.float64) * slope + intercept


def _floats(value) -> np.ndarray:
    return np.array([float(v) for v in value])


def _check_series(image: Image, files) -> None:
    """Every file of ``files`` (slice order) has the image's geometry and values."""
    direction = image.direction
    normal = np.cross(direction[:, 0], direction[:, 1])
    sx, sy, sz = image.spacing
    uids = set()
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        uids.add(ds.SOPInstanceUID)
        assert int(ds.InstanceNumber) == k + 1
        position = image.index_to_physical([0.0, 0.0, float(k)])
        np.testing.assert_allclose(_floats(ds.ImagePositionPatient), position, atol=1e-9)
        iop = _floats(ds.ImageOrientationPatient)
        np.testing.assert_allclose(iop[:3], direction[:, 0], atol=1e-12)
        np.testing.assert_allclose(iop[3:], direction[:, 1], atol=1e-12)
        # Pixel Spacing is (row spacing = y, column spacing = x)
        np.testing.assert_allclose(_floats(ds.PixelSpacing), [sy, sx], rtol=1e-12)
        assert float(ds.SliceThickness) == pytest.approx(sz, rel=1e-12)
        assert float(ds.SpacingBetweenSlices) == pytest.approx(sz, rel=1e-12)
        assert float(ds.SliceLocation) == pytest.approx(position @ normal, abs=1e-9)
        assert (ds.Rows, ds.Columns) == image.shape[1:]
        np.testing.assert_array_equal(_values(ds), image.array[k].astype(np.float64))
    assert len(uids) == len(files)


@pytest.mark.parametrize("kind", ["int16", "float_hu"])
@pytest.mark.parametrize("orientation", list(DIRECTIONS))
def test_geometry_and_values_round_trip(tmp_path, orientation, kind):
    image = _image(kind, DIRECTIONS[orientation])
    files = write_series(image, tmp_path / "series", seed=1, shuffle_seed=5)
    _check_series(image, files)


@pytest.mark.parametrize("transfer_syntax", list(TRANSFER_SYNTAXES))
@pytest.mark.parametrize("kind", ["int16", "float_hu"])
def test_transfer_syntaxes_are_lossless(tmp_path, transfer_syntax, kind):
    image = _image(kind, DIRECTIONS["oblique"])
    files = write_series(image, tmp_path / "series", transfer_syntax=transfer_syntax, seed=2)
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[transfer_syntax]
    _check_series(image, files)


def test_left_handed_stack(tmp_path):
    """A z axis opposite to row x column: positions go down the normal, spacing stays positive."""
    image = _image("int16", np.diag([1.0, 1.0, -1.0]))
    files = write_series(image, tmp_path / "series", seed=3)
    _check_series(image, files)
    locations = [float(pydicom.dcmread(f).SliceLocation) for f in files]
    assert np.all(np.diff(locations) == pytest.approx(-SPACING[2]))


def test_hu_floats_are_stored_like_a_scanner(tmp_path):
    files = write_series(_image("float_hu", np.eye(3)), tmp_path / "ct", seed=4)
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    assert (ds.RescaleSlope, ds.RescaleIntercept, ds.PixelRepresentation) == (1, -1024, 0)
    assert ds.RescaleType == "HU"


def test_quarter_values_are_exact_with_slope(tmp_path):
    image = _image("quarter_hu", DIRECTIONS["coronal"])
    files = write_series(image, tmp_path / "ct", seed=5)
    assert float(pydicom.dcmread(files[0]).RescaleSlope) == 0.25
    _check_series(image, files)


def test_arbitrary_floats_are_quantised_within_half_a_step(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.normal(0.0, 300.0, (3, 16, 16))
    image = Image.from_geometry(array, spacing=SPACING)
    files = write_series(image, tmp_path / "mr", modality="MR", seed=6)
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        assert np.max(np.abs(_values(ds) - array[k])) <= float(ds.RescaleSlope) / 2 * 1.0001


def test_forced_rescale(tmp_path):
    image = _image("int16", np.eye(3))
    files = write_series(image, tmp_path / "ct", rescale_slope=1, rescale_intercept=-2048, seed=7)
    ds = pydicom.dcmread(files[0])
    assert (ds.RescaleIntercept, ds.PixelRepresentation) == (-2048, 0)
    _check_series(image, files)
    with pytest.raises(ParameterError, match="16 bits"):
        write_series(image, tmp_path / "bad", rescale_slope=0.01, seed=7)


def test_uids_are_deterministic_from_seed(tmp_path):
    image = _image("int16", np.eye(3))

    def uids(folder, seed):
        files = write_series(image, folder, seed=seed)
        ds = [pydicom.dcmread(f) for f in files]
        return (ds[0].StudyInstanceUID, ds[0].SeriesInstanceUID, ds[0].FrameOfReferenceUID,
                tuple(d.SOPInstanceUID for d in ds))

    first, again = uids(tmp_path / "a", "s1"), uids(tmp_path / "b", "s1")
    other, random = uids(tmp_path / "c", "s2"), uids(tmp_path / "d", None)
    assert first == again
    assert not set(first[:3]) & set(other[:3])
    assert not set(first[:3]) & set(random[:3])
    assert all(len(u) <= 64 for u in first[:3] + first[3])
    assert (tmp_path / "a" / "0001.dcm").read_bytes() == (tmp_path / "b" / "0001.dcm").read_bytes()


def test_file_names_and_shuffle(tmp_path):
    image = _image("int16", np.eye(3))
    files = write_series(image, tmp_path / "uid", file_names="uid", seed=8)
    for path in files:
        assert path.name == f"{pydicom.dcmread(path).SOPInstanceUID}.dcm"
    files = write_series(image, tmp_path / "shuffled", shuffle_seed=0, seed=8)
    by_name = sorted(files, key=lambda p: p.name)
    numbers = [int(pydicom.dcmread(p).InstanceNumber) for p in by_name]
    assert sorted(numbers) == list(range(1, 6)) and numbers != sorted(numbers)
    assert [int(pydicom.dcmread(p).InstanceNumber) for p in files] == list(range(1, 6))
    _check_series(image, files)


def test_bytes_equal_pydicom_dcmwrite(tmp_path):
    """The shared-element encoder writes exactly what pydicom.dcmwrite writes."""
    image = _image("float_hu", DIRECTIONS["oblique"])
    for syntax in ("explicit", "implicit", "rle"):
        files = write_series(image, tmp_path / syntax, transfer_syntax=syntax, seed=9,
                             patient={"PatientName": "MÜLLER^JÖRG"})
        raw = files[2].read_bytes()
        ds = pydicom.dcmread(io.BytesIO(raw))
        for _ in ds:  # decode every element so that it is re-encoded below
            pass
        for _ in ds.file_meta:
            pass
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        assert buffer.getvalue() == raw
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert str(ds.PatientName) == "MÜLLER^JÖRG"


def test_attributes_meta_and_mappings(tmp_path):
    image = _image("int16", np.eye(3))
    image.meta.update({"modality": "MR", "patient_name": "META^NAME", "series_description": "T1"})
    files = write_series(
        image, tmp_path / "mr", seed=10,
        patient={"PatientID": "P1"}, study={"StudyDescription": "BRAIN"},
        series={"SeriesNumber": 7, "SeriesInstanceUID": "1.2.3.4"}, extra={"EchoTime": 12.5},
    )
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
    assert (str(ds.PatientName), ds.PatientID, ds.SeriesDescription) == ("META^NAME", "P1", "T1")
    assert (ds.StudyDescription, ds.SeriesNumber, ds.SeriesInstanceUID) == ("BRAIN", 7, "1.2.3.4")
    assert float(ds.EchoTime) == 12.5
    assert "RescaleSlope" not in ds  # identity Modality LUT is not written for MR


def test_series_is_read_by_simpleitk(tmp_path):
    """An independent reader (ITK/GDCM) sees the same grid and voxels."""
    sitk = pytest.importorskip("SimpleITK")
    image = _image("int16", DIRECTIONS["oblique"])
    folder = tmp_path / "series"
    write_series(image, folder, seed=11, shuffle_seed=2)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    back = Image.from_sitk(reader.Execute())
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-9)
    np.testing.assert_array_equal(back.array, image.array)


def test_two_dimensional_image_is_one_slice(tmp_path):
    image = Image.from_geometry(np.arange(64, dtype=np.int16).reshape(8, 8), spacing=(0.5, 0.6))
    files = write_series(image, tmp_path / "one", seed=12)
    assert len(files) == 1
    ds = pydicom.dcmread(files[0])
    np.testing.assert_array_equal(ds.pixel_array, image.array)
    np.testing.assert_allclose(_floats(ds.PixelSpacing), [0.6, 0.5])


def test_existing_empty_folder_is_used_and_nothing_left_behind(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    write_series(_image("int16", np.eye(3)), folder, seed=13)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]
    with pytest.raises(ParameterError, match="must not exist or be empty"):
        write_series(_image("int16", np.eye(3)), folder, seed=13)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"modality": "PT"}, UnknownNameError, "modality"),
        ({"transfer_syntax": "jpeg"}, UnknownNameError, "transfer_syntax"),
        ({"file_names": "name"}, UnknownNameError, "file_names"),
        ({"extra": {"PatientsName": "X"}}, ParameterError, "did you mean 'PatientName'"),
        ({"series": {"PixelSpacing": [1, 1]}}, ParameterError, "PixelSpacing is set by"),
        ({"uid_root": "1.02.3"}, ParameterError, "uid_root"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        write_series(_image("int16", np.eye(3)), tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()


def test_bad_images(tmp_path):
    sheared = np.eye(4)
    sheared[:3, :3] = [[1.0, 0.0, 0.3], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    with pytest.raises(ParameterError, match="orthonormal"):
        write_series(Image(np.zeros((2, 4, 4), np.int16), sheared), tmp_path / "a")
    nan = np.zeros((2, 4, 4))
    nan[0, 0, 0] = np.nan
    with pytest.raises(ParameterError, match="NaN"):
        write_series(Image(nan), tmp_path / "b")
    with pytest.raises(ParameterError, match="32 x 32"):
        write_series(Image(np.zeros((2, 16, 16), np.int16)), tmp_path / "c",
                     transfer_syntax="jpeg2000-lossless")
    with pytest.raises(ParameterError, match="scalar"):
        write_series(Image(np.zeros((2, 4, 4, 3)), channel_axis=-1), tmp_path / "d")


# ------------------------------------------------------------------ external reference tools
def _dciodvfy(path) -> list[str]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


_FULL = {
    "patient": {"PatientName": "DOE^JANE", "PatientID": "123", "PatientBirthDate": "19600101",
                "PatientSex": "F"},
    "study": {"StudyDate": "20240102", "StudyTime": "101500", "AccessionNumber": "A1"},
    "series": {"BodyPartExamined": "CHEST", "Manufacturer": "ACME"},
}


@pytest.mark.tools
@pytest.mark.parametrize("modality", ["CT", "MR"])
@pytest.mark.parametrize("transfer_syntax", ["explicit", "implicit", "rle", "jpegls-lossless"])
def test_dciodvfy_reports_no_errors(tmp_path, modality, transfer_syntax):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not on PATH")
    for name, image in (("int", _image("int16", DIRECTIONS["oblique"])),
                        ("minimal", _image("float_hu", np.eye(3)))):
        kwargs = _FULL if name == "int" else {}
        files = write_series(image, tmp_path / name, modality=modality,
                             transfer_syntax=transfer_syntax, seed=14, **kwargs)
        lines = _dciodvfy(files[0])
        assert not [line for line in lines if line.startswith("Error")], lines
        if name == "int" and modality == "CT":  # with the identifying attributes filled in
            assert not [line for line in lines if line.startswith("Warning")], lines


@pytest.mark.tools
@pytest.mark.parametrize("orientation", ["axial", "oblique"])
def test_dcm2niix_sees_the_same_voxels(tmp_path, orientation):
    """dcm2niix's NIfTI, mapped through both affines, holds the same voxels at the same places."""
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not on PATH")
    nib = pytest.importorskip("nibabel")
    image = _image("int16", DIRECTIONS[orientation])
    write_series(image, tmp_path / "dcm", seed=15, series={"Manufacturer": "ACME"})
    result = subprocess.run(
        ["dcm2niix", "-z", "n", "-b", "n", "-f", "out", "-o", str(tmp_path), str(tmp_path / "dcm")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    converted = Image.from_nibabel(nib.load(tmp_path / "out.nii"))
    # voxel index of `converted` -> voxel index of `image`
    mapping = np.linalg.inv(image.affine) @ converted.affine
    np.testing.assert_allclose(mapping, np.round(mapping), atol=1e-3)
    mapping = np.round(mapping).astype(int)
    nz, ny, nx = converted.shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    idx = np.stack([i, j, k, np.ones_like(i)], axis=-1) @ mapping.T
    np.testing.assert_array_equal(image.array[idx[..., 2], idx[..., 1], idx[..., 0]], converted.array)
