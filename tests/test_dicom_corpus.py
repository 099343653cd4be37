"""Decoding real DICOM files of many transfer syntaxes: same pixels as pydicom, clear errors otherwise.

The reference table records what pydicom 3.0.2 (+ pylibjpeg, GDCM, Pillow, pyjpegls) decoded.
Every file it decoded must decode in medimg to the same pixels (checked against the table's
shape/dtype/sum and against pydicom itself, run here); every other file must give a
:class:`~medimg.errors.UserInputError` that names the file.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import DATA
from medimg import io
from medimg.cli.main import main
from medimg.errors import (
    MissingPixelDataError,
    TruncatedFileError,
    UnsupportedTransferSyntaxError,
    UserInputError,
)
from medimg.io.dicom import decode_pixels, read_header
from medimg.io.dicom.header import read_header_pydicom

CORPUS = DATA / "dicom-corpus"
ROWS = list(csv.DictReader(open(CORPUS / "decode_coverage_reference.csv")))
DECODED = [r for r in ROWS if r["pydicom_auto"] == "yes"]
NOT_DECODED = [r for r in ROWS if r["pydicom_auto"] != "yes"]


def test_corpus_covers_many_syntaxes() -> None:
    assert len({r["ts_name"] for r in DECODED}) >= 13
    assert len(DECODED) >= 70


def _pydicom_pixels(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path).pixel_array


@pytest.mark.parametrize("row", DECODED, ids=[r["file"] for r in DECODED])
def test_decodes_to_the_same_pixels_as_pydicom(row: dict[str, str]) -> None:
    path = CORPUS / row["file"]
    got = decode_pixels(path)
    frames = int(row["frames"] or 1)
    ref_shape = tuple(int(v) for v in row["pydicom_shape"].strip("()").split(",") if v.strip())
    assert got.shape == ((1,) + ref_shape if frames == 1 else ref_shape)
    assert got.dtype == np.dtype(row["pydicom_dtype"]).newbyteorder("=")
    assert float(got.astype(np.float64).sum()) == pytest.approx(float(row["pydicom_sum"]), rel=1e-12)
    ref = _pydicom_pixels(path)
    np.testing.assert_array_equal(got.reshape(ref.shape), ref)


@pytest.mark.parametrize("row", DECODED, ids=[r["file"] for r in DECODED])
def test_read_applies_the_modality_lut(row: dict[str, str]) -> None:
    path = CORPUS / row["file"]
    image = io.read(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    stored = decode_pixels(path).astype(np.float64)
    slope = float(ds.get("RescaleSlope", ds.get("DoseGridScaling", 1)) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if "SharedFunctionalGroupsSequence" in ds:
        pvt = ds.SharedFunctionalGroupsSequence[0].get("PixelValueTransformationSequence")
        if pvt:
            slope, intercept = float(pvt[0].RescaleSlope), float(pvt[0].RescaleIntercept)
    values = np.asarray(image.array, dtype=np.float64)
    assert values.size == stored.size
    # Frames may be re-ordered along the slice normal; compare sorted values and the total.
    np.testing.assert_allclose(np.sort(values.ravel()), np.sort((stored * slope + intercept).ravel()), rtol=1e-6)


@pytest.mark.parametrize("row", NOT_DECODED, ids=[r["file"] for r in NOT_DECODED])
def test_undecodable_files_give_a_clear_error(row: dict[str, str], capsys) -> None:
    path = CORPUS / row["file"]
    with pytest.raises(UserInputError) as info:
        io.read(path)
    assert row["file"] in str(info.value)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and row["file"] in err[0]


def test_error_kinds_are_specific() -> None:
    with pytest.raises(TruncatedFileError, match="cut short"):
        io.read(CORPUS / "MR_truncated.dcm")
    with pytest.raises(MissingPixelDataError, match="RT Structure Set Storage"):
        io.read(CORPUS / "rtstruct.dcm")
    with pytest.raises(UnsupportedTransferSyntaxError, match=r"Deflated Image Frame Compression \[1\.2\.840\.10008\.1\.2\.8\.1\]"):
        io.read(CORPUS / "liver_deflate.dcm")


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_fast_header_path_matches_pydicom(row: dict[str, str]) -> None:
    path = CORPUS / row["file"]
    try:
        fast = read_header(path)
    except UserInputError:
        return  # broken files are covered above
    if fast.via_pydicom:
        return
    if row["file"] == "emri_small_jpeg_2k_lossless_too_short.dcm":
        # pydicom finds no data set in this cut-short file; the fast parser still reads its header
        with pytest.raises(TruncatedFileError):
            read_header_pydicom(path)
        return
    slow = read_header_pydicom(path)
    assert fast.values == slow.values
    assert fast.pixel_keyword == slow.pixel_keyword
    assert fast.markers == slow.markers


def test_enhanced_multiframe_geometry_from_functional_groups() -> None:
    path = CORPUS / "parametric_map_float.dcm"  # geometry only in the functional groups
    image = io.read(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    frame = ds.PerFrameFunctionalGroupsSequence[0]
    np.testing.assert_allclose(image.origin, [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient])
    assert image.spacing == pytest.approx((0.661468, 0.661468, 5.0))
    assert image.orientation == "LPS"
    assert image.dtype == np.float32


def test_rtdose_frames_are_placed_by_grid_frame_offsets() -> None:
    image = io.read(CORPUS / "rtdose.dcm")
    ds = pydicom.dcmread(CORPUS / "rtdose.dcm", stop_before_pixels=True)
    offsets = np.array(ds.GridFrameOffsetVector, float)
    assert image.spatial_shape[0] == len(offsets)
    assert image.spacing[2] == pytest.approx(abs(offsets[1] - offsets[0]))
    assert image.dtype == np.float32  # Dose Grid Scaling is a float slope
