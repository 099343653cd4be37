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
