"""`medimg segment`, `seg-metrics` and `seg-convert`: the public API from the command line, one error line
for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medimg import Image, io
from medimg.cli.main import main
from medimg.io.dicom.writer import write_series


def _case(tmp_path: Path) -> tuple[Path, Path, Image]:
    rng = np.random.default_rng(0)
    z, y, x = np.indices((8, 24, 24))
    blob = ((x - 12) ** 2 + (y - 11) ** 2 <= 25) & (z >= 2) & (z <= 5)
    hu = np.where(blob, 120, 30) + rng.integers(-5, 6, blob.shape)
    ct = Image.from_geometry(hu.astype(np.int16), spacing=(0.8, 0.8, 2.5), origin=(-9.0, 4.0, 20.0))
    folder = tmp_path / "ct"
    write_series(ct, folder, seed=0)
    truth = tmp_path / "truth.nii.gz"
    io.write(ct.with_array(blob.astype(np.uint8)), truth)
    return folder, truth, ct


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_segment_then_metrics_json(tmp_path: Path, capsys):
    folder, truth, _ = _case(tmp_path)
    out = tmp_path / "seg.nii.gz"
    assert main(["segment", str(folder), str(out), "--method", "connected_threshold", "--param", "lower=80",
                 "--param", "seeds_voxel=[[12, 11, 3]]"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["seg-metrics", str(truth), str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    for key in ("dice", "iou", "sensitivity", "precision", "hd", "hd95", "assd", "nsd", "volume_difference_mm3"):
        assert key in record
    assert record["dice"] == 1.0 and record["hd"] == 0.0 and record["convention"] == "surface-distance"
    assert record["units"]["hd95"] == "mm"
    assert main(["seg-metrics", str(truth), str(out), "--label", "1", "--convention", "medpy"]) == 0
    assert "medpy" in capsys.readouterr().out


def test_metrics_with_an_empty_prediction_give_null_distances(tmp_path: Path, capsys):
    folder, truth, ct = _case(tmp_path)
    empty = tmp_path / "empty.nii.gz"
    io.write(ct.with_array(np.zeros(ct.shape, np.uint8)), empty)
    assert main(["seg-metrics", str(truth), str(empty), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["hd"] is None and record["dice"] == 0.0 and record["empty"] == {"reference": False, "prediction": True}
    assert main(["seg-metrics", str(truth), str(empty), "--json", "--empty-distance", "100"]) == 0
    assert json.loads(capsys.readouterr().out)["hd95"] == 100.0


def test_seg_convert_round_trip(tmp_path: Path, capsys):
    pytest.importorskip("highdicom")
    folder, truth, ct = _case(tmp_path)
    seg = tmp_path / "lesion.dcm"
    assert main(["seg-convert", str(truth), str(seg), "--source", str(folder), "--name", "1=lesion"]) == 0
    back = tmp_path / "back.nii.gz"
    assert main(["seg-convert", str(seg), str(back), "--reference", str(folder)]) == 0
    np.testing.assert_array_equal(io.read(back).array, io.read(truth).array)
    capsys.readouterr()
    assert main(["seg-metrics", str(truth), str(seg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dice"] == 1.0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["segment", "{ct}", "{out}", "--method", "threshhold"], "did you mean 'threshold'"),
        (["segment", "{ct}", "{out}", "--method", "threshold", "--param", "lowr=3"], "did you mean 'lower'"),
        (["segment", "{ct}", "{out}", "--method", "threshold", "--param", "lower"], "NAME=VALUE"),
        (["seg-metrics", "{truth}", "{missing}"], "no such file"),
        (["seg-metrics", "{truth}", "{truth}", "--convention", "medpi"], "did you mean 'medpy'"),
        (["seg-convert", "{truth}", "{dcm}"], "--source"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys, args, match):
    folder, truth, _ = _case(tmp_path)
    values = {"ct": folder, "out": tmp_path / "o.nii.gz", "truth": truth, "missing": tmp_path / "nope.nii.gz",
              "dcm": tmp_path / "x.dcm"}
    assert main([a.format(**values) for a in args]) == 2
    assert match in _error_line(capsys)


def test_read_labels_tells_seg_rtstruct_and_image_files_apart(tmp_path: Path, capsys):
    """The sniffing the CLI used to do, now `medimg.io.read_labels`: each kind of file read by its
    own reader gives the same label map as calling that reader directly."""
    pytest.importorskip("highdicom")
    from medimg.errors import FileFormatError, ParameterError
    from medimg.io.dicom.rtstruct import read_rtstruct
    from medimg.io.dicom.seg import read_seg
    from test_rtstruct import _reference, _square, _write_rtstruct

    folder, truth, ct = _case(tmp_path)
    reference = io.read(folder)
    seg = io.write_labels(io.read(truth), tmp_path / "l.dcm", source=folder)
    got = io.read_labels(seg, reference=reference)
    np.testing.assert_array_equal(got.array, read_seg(seg, reference=reference).array)
    np.testing.assert_array_equal(got.array, io.read(truth).array)
    assert io.read_sidecar(seg)["file"]["name"] == "l.dcm"

    ref = _reference()
    rs = _write_rtstruct(tmp_path / "rs.dcm", ref, {
        "a": [("CLOSED_PLANAR", _square(2.5, 10.5, 3.5, 12.5, k)) for k in (1, 2)],
        "b": [("CLOSED_PLANAR", _square(14.5, 20.5, 5.5, 9.5, 3))]})
    np.testing.assert_array_equal(io.read_labels(rs, reference=ref).array, read_rtstruct(rs, ref).array)
    only_b = io.read_labels(rs, reference=ref, rois=["b"])
    np.testing.assert_array_equal(only_b.array, read_rtstruct(rs, ref, rois=["b"]).array)
    assert only_b.array.sum() == 6 * 4
    with pytest.raises(ParameterError, match="needs the image it was drawn on"):
        io.read_labels(rs)
    with pytest.raises(ParameterError, match="RTSTRUCT only"):
        io.read_labels(truth, rois=["a"])
    with pytest.raises(FileFormatError, match="no such file"):
        io.read_labels(tmp_path / "nope.nii.gz")

    # Whole-number floats (a NIfTI habit) are a label map; fractions are not.
    as_float = tmp_path / "float.nii.gz"
    io.write(ct.with_array(io.read(truth).array.astype(np.float32)), as_float)
    labels = io.read_labels(as_float)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels.array, io.read(truth).array)
    half = tmp_path / "half.nii.gz"
    io.write(ct.with_array(np.full(ct.shape, 0.5, np.float32)), half)
    with pytest.raises(ParameterError, match="non-integer"):
        io.read_labels(half)
    assert main(["seg-metrics", str(truth), str(as_float), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dice"] == 1.0
    assert main(["seg-metrics", str(truth), str(half)]) == 2
    assert "non-integer" in _error_line(capsys)
