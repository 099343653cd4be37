"""RTSTRUCT: contours rasterised on the image grid (centre-in-polygon, holes, several ROIs), parsing of a
real file, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, DIRECTIONS
from medimg import Image
from medimg.errors import FileFormatError, GeometryMismatchError, UnknownNameError
from medimg.io.dicom.rtstruct import list_rois, polygon_mask, read_rtstruct

FOR_UID = "1.2.826.0.1.3680043.8.498.77"


def _reference(direction: str = "axial") -> Image:
    return Image.from_geometry(np.zeros((6, 30, 32), np.int16), spacing=(0.7, 0.9, 3.0), origin=(-10.0, 20.0, -40.0),
                               direction=DIRECTIONS[direction], meta={"FrameOfReferenceUID": FOR_UID})


def _write_rtstruct(path: Path, ref: Image, rois: dict[str, list[tuple[str, np.ndarray]]],
                    for_uid: str = FOR_UID) -> Path:
    """rois: name -> [(geometric type, (n, 3) points in continuous (x, y, z) voxel indices)]."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.StructureSetLabel = "test"
    frame = Dataset()
    frame.FrameOfReferenceUID = for_uid
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    rois_seq, contours_seq = [], []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = for_uid
        rois_seq.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        items = []
        for kind, index_points in contours:
            c = Dataset()
            c.ContourGeometricType = kind
            mm = ref.index_to_physical(np.asarray(index_points, float))
            c.NumberOfContourPoints = len(mm)
            c.ContourData = [f"{v:.6f}" for v in mm.ravel()]
            items.append(c)
        item.ContourSequence = Sequence(items)
        contours_seq.append(item)
    ds.StructureSetROISequence = Sequence(rois_seq)
    ds.ROIContourSequence = Sequence(contours_seq)
    ds.save_as(path, enforce_file_format=True)
    return path


def _square(x0, x1, y0, y1, z) -> np.ndarray:
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], float)


@pytest.mark.parametrize("direction", ["axial", "oblique"])
def test_rectangles_with_a_hole_and_two_rois(tmp_path: Path, direction: str):
    ref = _reference(direction)
    rois = {
        "body": [("CLOSED_PLANAR", _square(2.5, 20.5, 3.5, 25.5, k)) for k in (1, 2, 3)]
        + [("CLOSED_PLANAR", _square(8.5, 12.5, 8.5, 12.5, 2))],  # a hole on slice 2
        "target": [("CLOSED_PLANAR", _square(14.5, 17.5, 5.5, 9.5, 2)), ("POINT", np.array([[15.0, 6.0, 2.0]]))],
    }
    out = read_rtstruct(_write_rtstruct(tmp_path / "rs.dcm", ref, rois), ref)
    expected = np.zeros(ref.shape, np.uint8)
    expected[1:4, 4:26, 3:21] = 1
    expected[2, 9:13, 9:13] = 0
    expected[2, 6:10, 15:18] = 2
    np.testing.assert_array_equal(out.array, expected)
    np.testing.assert_array_equal(out.affine, ref.affine)
    assert [r["name"] for r in out.meta["rois"]] == ["body", "target"]
    assert any("POINT" in w for w in out.meta["warnings"]) and any("overlaps" in w for w in out.meta["warnings"])
    only = read_rtstruct(tmp_path / "rs.dcm", ref, rois=["target"])
    assert set(np.unique(only.array)) == {0, 1} and only.array.sum() == 12


def test_polygon_rasterisation_matches_scikit_image():
    from skimage.draw import polygon2mask

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(3, 12))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(3, 14, n)
        xy = np.stack([20 + radii * np.cos(angles), 18 + radii * np.sin(angles)], 1) + 0.25
        np.testing.assert_array_equal(polygon_mask(xy, (40, 45)), polygon2mask((40, 45), xy[:, ::-1]))


def test_shared_edges_are_claimed_once():
    left = polygon_mask(np.array([[1.0, 1.0], [5.0, 1.0], [5.0, 6.0], [1.0, 6.0]]), (8, 10))
    right = polygon_mask(np.array([[5.0, 1.0], [9.0, 1.0], [9.0, 6.0], [5.0, 6.0]]), (8, 10))
    assert not (left & right).any()
    assert (left | right)[1:6, 1:9].all()


def test_off_plane_contours_and_frame_of_reference(tmp_path: Path):
    ref = _reference()
    rois = {"r": [("CLOSED_PLANAR", _square(2.5, 6.5, 2.5, 6.5, 2.5))]}  # between two slices
    out = read_rtstruct(_write_rtstruct(tmp_path / "a.dcm", ref, rois), ref)
    assert out.array.max() == 0 and any("off-plane" in w for w in out.meta["warnings"])
    path = _write_rtstruct(tmp_path / "b.dcm", ref, {"r": [("CLOSED_PLANAR", _square(2.5, 6.5, 2.5, 6.5, 2))]},
                           for_uid="1.2.3.4")
    with pytest.raises(GeometryMismatchError, match="Frame of Reference"):
        read_rtstruct(path, ref)
    assert read_rtstruct(path, ref, check_frame_of_reference=False).array.sum() == 16
    with pytest.raises(UnknownNameError, match="did you mean 'r'"):
        read_rtstruct(path, ref, rois=["rr"], check_frame_of_reference=False)


def test_real_rtstruct_file_parses():
    path = DATA / "dicom-corpus" / "rtstruct.dcm"
    rois = list_rois(path)
    assert [r["name"] for r in rois] == ["patient", "Isocenter 1", "Isocenter 2"]
    assert rois[0]["types"] == ["CLOSED_PLANAR"] and rois[1]["types"] == ["POINT"]
    import pydicom

    ds = pydicom.dcmread(path, force=True)
    zs = sorted({float(c.ContourData[2]) for c in ds.ROIContourSequence[0].ContourSequence})
    step = zs[1] - zs[0]
    grid = Image.from_geometry(np.zeros((len(zs), 80, 100), np.int16), spacing=(5.0, 5.0, step),
                               origin=(-247.5, -197.5, zs[0]))
    out = read_rtstruct(path, grid, check_frame_of_reference=False)
    assert out.meta["rois"][0]["name"] == "patient" and len(out.meta["rois"]) == 1
    # the "patient" contours are the rectangle x in [-200, 200], y in [-150, 150] mm on each plane
    assert out.array.sum() == len(zs) * 80 * 60


def test_not_an_rtstruct(tmp_path: Path):
    with pytest.raises(FileFormatError, match="not an RT Structure Set"):
        list_rois(DATA / "dicom-corpus" / "CT_small.dcm")
    with pytest.raises(FileFormatError, match="no such file"):
        read_rtstruct(tmp_path / "none.dcm", _reference())
