"""DICOM SEG: label maps written with highdicom referencing their source series read back exactly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("highdicom")

from conftest import DIRECTIONS  # noqa: E402
from medimg import Image, io  # noqa: E402
from medimg.errors import GeometryMismatchError, ParameterError  # noqa: E402
from medimg.io.dicom.seg import read_seg, write_seg  # noqa: E402
from medimg.io.dicom.writer import write_series  # noqa: E402


def _series(tmp_path: Path, direction: str = "oblique") -> tuple[Path, Image]:
    z, y, x = np.indices((7, 18, 16))
    ct = Image.from_geometry((x * 7 + y * 3 - z * 50).astype(np.int16), spacing=(0.9, 0.8, 2.5),
                             origin=(12.0, -30.0, 55.0), direction=DIRECTIONS[direction])
    folder = tmp_path / "ct"
    write_series(ct, folder, seed=3, patient={"PatientID": "P1", "PatientName": "DOE^JANE"})
    return folder, io.read(folder)


def _labels(image: Image, values=(1, 2, 3)) -> Image:
    arr = np.zeros(image.shape, np.uint8)
    arr[1:4, 3:9, 2:7] = values[0]
    arr[2:6, 10:15, 8:13] = values[1]
    arr[5, 2:4, 2:4] = values[2]
    return image.with_array(arr)


@pytest.mark.parametrize("direction", ["axial", "oblique", "sagittal"])
def test_seg_round_trip_is_exact(tmp_path: Path, direction: str):
    folder, ct = _series(tmp_path, direction)
    labels = _labels(ct)
    out = write_seg(labels, folder, tmp_path / "seg.dcm", segment_names={1: "liver", 2: "lesion"}, seed=1)
    back = read_seg(out, reference=ct)
    np.testing.assert_array_equal(back.array, labels.array)
    np.testing.assert_array_equal(back.affine, ct.affine)
    assert [s["label"] for s in back.meta["segments"]] == ["liver", "lesion", "label 3"]
    # without a reference: the SEG's own geometry, same voxels in patient space
    own = read_seg(out)
    points = own.index_to_physical(np.argwhere(own.array == 2)[:, ::-1])
    idx = np.rint(ct.physical_to_index(points)).astype(int)
    assert np.all(labels.array[idx[:, 2], idx[:, 1], idx[:, 0]] == 2)
    assert (own.array == 2).sum() == (labels.array == 2).sum()


def test_seg_references_the_source_and_is_deterministic_with_a_seed(tmp_path: Path):
    import pydicom

    folder, ct = _series(tmp_path, "axial")
    labels = _labels(ct)
    a = write_seg(labels, folder, tmp_path / "a.dcm", seed=5)
    b = write_seg(labels, folder, tmp_path / "b.dcm", seed=5)
    da, db = pydicom.dcmread(a), pydicom.dcmread(b)
    assert da.SOPInstanceUID == db.SOPInstanceUID and da.SeriesInstanceUID == db.SeriesInstanceUID
    assert da.StudyInstanceUID == ct.meta["StudyInstanceUID"]
    assert da.FrameOfReferenceUID == ct.meta["FrameOfReferenceUID"]
    referenced = {item.ReferencedSOPInstanceUID
                  for series in da.ReferencedSeriesSequence for item in series.ReferencedInstanceSequence}
    assert referenced == set(ct.meta["sop_instance_uids"])
    assert da.PatientID == "P1"


def test_non_consecutive_labels_become_segments_in_order(tmp_path: Path):
    folder, ct = _series(tmp_path, "axial")
    labels = _labels(ct, values=(4, 9, 20))
    back = read_seg(write_seg(labels, folder, tmp_path / "s.dcm"), reference=ct)
    expected = np.select([labels.array == 4, labels.array == 9, labels.array == 20], [1, 2, 3], 0)
    np.testing.assert_array_equal(back.array, expected)
    assert [s["tracking_id"] for s in back.meta["segments"]] == ["label 4", "label 9", "label 20"]


def test_seg_errors(tmp_path: Path):
    folder, ct = _series(tmp_path, "axial")
    with pytest.raises(ParameterError, match="empty"):
        write_seg(ct.with_array(np.zeros(ct.shape, np.uint8)), folder, tmp_path / "e.dcm")
    with pytest.raises(ParameterError, match="integer"):
        write_seg(ct.with_array(np.ones(ct.shape, np.float32)), folder, tmp_path / "f.dcm")
    moved_affine = np.array(ct.affine)
    moved_affine[:3, 3] += 5.0  # 5 mm off the source grid
    moved = Image(_labels(ct).array, moved_affine)
    with pytest.raises(GeometryMismatchError):
        write_seg(moved, folder, tmp_path / "g.dcm")
    assert not (tmp_path / "g.dcm").exists()


@pytest.mark.tools
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
def test_dciodvfy_reports_no_error_on_our_seg(tmp_path: Path):
    folder, ct = _series(tmp_path, "oblique")
    out = write_seg(_labels(ct), folder, tmp_path / "seg.dcm", segment_names={1: "a"})
    run = subprocess.run(["dciodvfy", str(out)], capture_output=True, text=True, timeout=60)
    report = run.stdout + run.stderr
    assert "Error" not in report, report
