"""`medimg suv`, `medimg filter -m suv` and `medimg pet-metrics`: results and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medimg import Image, io
from medimg.cli.main import main
from medimg.pet import write_pet_series

FACTOR = 70000 / (370e6 * 2 ** (-3600 / 6586.2))  # the writer's default header, by hand


def _pet(tmp_path: Path, name: str = "pet", **kw) -> tuple[Path, Image]:
    z, y, x = np.indices((20, 24, 24), dtype=float)  # 4 mm voxels; hot sphere at (26, 46, 38) mm
    r = np.sqrt(((x - 6.5) * 4) ** 2 + ((y - 11.5) * 4) ** 2 + ((z - 9.5) * 4) ** 2)
    img = Image.from_geometry(np.where(r <= 14, 30000.0, 3000.0), spacing=(4.0, 4.0, 4.0))
    write_pet_series(img, tmp_path / name, seed=name, **kw)
    mask = img.with_array((r <= 14).astype(np.uint8), meta={})
    return tmp_path / name, mask


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and "Traceback" not in captured.err + captured.out
    return lines[0]


def test_suv_command_writes_suv_and_reports_the_branches(tmp_path: Path, capsys) -> None:
    folder, _ = _pet(tmp_path)
    out = tmp_path / "suv.nii.gz"
    assert main(["suv", str(folder), str(out)]) == 0
    text = capsys.readouterr().out
    assert "SUVbw" in text and "decay reference = Series Date/Time" in text
    suv = io.read(out)
    assert float(suv.array.max()) == pytest.approx(30000 * FACTOR, rel=1e-4)
    assert main(["suv", str(folder), str(tmp_path / "sul.nii.gz"), "--suv-type", "lbm-james", "--json",
                 "--weight-kg", "80", "--injection-time", "10:30:00"]) == 0
    record = json.loads(capsys.readouterr().out)
    lbm = 1.10 * 80 - 128 * (80 / 175) ** 2
    assert record["factor"] == pytest.approx(80000 / (370e6 * 2 ** (-1800 / 6586.2)) * lbm / 80, rel=1e-9)
    assert record["suv_type"] == "lbm-james" and record["injection_time"] == "2024-01-02T10:30:00"
    assert any("--weight-kg" in b for b in record["branches"])


@pytest.mark.parametrize(("kw", "needle"), [
    ({"patient": {"PatientWeight": None}}, "--weight-kg"),
    ({"radiopharmaceutical": {"RadionuclideTotalDose": None}}, "--dose-bq"),
    ({"radiopharmaceutical": {"RadiopharmaceuticalStartDateTime": None, "RadiopharmaceuticalStartTime": None}},
     "--injection-time"),
    ({"units": "CPS"}, "Units (0054,1001)"),
])
def test_suv_command_bad_header_one_line(tmp_path: Path, capsys, kw: dict, needle: str) -> None:
    folder, _ = _pet(tmp_path, **kw)
    assert main(["suv", str(folder), str(tmp_path / "suv.nii.gz")]) == 2
    line = _one_error_line(capsys)
    assert needle in line
    assert not (tmp_path / "suv.nii.gz").exists()


def test_filter_suv_on_a_post_processed_series(tmp_path: Path, capsys) -> None:
    # series time 11:45 after the acquisitions (11:00): the reference is 11:00, not 11:45
    folder, _ = _pet(tmp_path, series={"SeriesTime": "114500"})
    out = tmp_path / "suv.nii.gz"
    assert main(["filter", str(folder), str(out), "-m", "suv"]) == 0
    assert float(io.read(out).array.max()) == pytest.approx(30000 * FACTOR, rel=1e-4)
    folder2, _ = _pet(tmp_path, "pet2", patient={"PatientWeight": None})
    assert main(["filter", str(folder2), str(tmp_path / "o2.nii.gz"), "-m", "suv", "-p", "weight_kg=35"]) == 0
    assert float(io.read(tmp_path / "o2.nii.gz").array.max()) == pytest.approx(30000 * FACTOR / 2, rel=1e-4)
    assert main(["filter", str(folder2), str(tmp_path / "o3.nii.gz"), "-m", "suv"]) == 2
    assert "weight" in _one_error_line(capsys)


def test_pet_metrics_command(tmp_path: Path, capsys) -> None:
    folder, mask = _pet(tmp_path)
    io.write(mask, tmp_path / "mask.nii.gz")
    assert main(["pet-metrics", str(folder), str(tmp_path / "mask.nii.gz"), "--json",
                 "--liver-centre", "70,46,38"]) == 0
    result = json.loads(capsys.readouterr().out)
    hot = 30000 * FACTOR
    assert result["suv_max"] == pytest.approx(hot, rel=1e-4) and result["suv_mean"] == pytest.approx(hot, rel=1e-4)
    assert result["mtv_50_ml"] == pytest.approx(int(mask.array.sum()) * 0.064)
    lbm = 9270 * 70 / (6680 + 216 * 70 / 1.75**2)  # SUL (Janmahasatian) of the 3000 Bq/ml background
    assert result["liver"]["liver_mean"] == pytest.approx(3000 * FACTOR * lbm / 70, rel=1e-4)
    assert result["liver"]["suv_type"] == "lbm-janma"
    # an SUV image file needs --assume-suv
    suv_file = tmp_path / "suv.nii.gz"
    assert main(["suv", str(folder), str(suv_file)]) == 0
    capsys.readouterr()
    assert main(["pet-metrics", str(suv_file), str(tmp_path / "mask.nii.gz")]) == 2
    assert "--assume-suv" in _one_error_line(capsys)
    assert main(["pet-metrics", str(suv_file), str(tmp_path / "mask.nii.gz"), "--assume-suv", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["suv_peak"] == pytest.approx(hot, rel=1e-4)
    assert main(["pet-metrics", str(folder), str(tmp_path / "mask.nii.gz"), "--grid", "ct"]) == 2
    assert "--grid" in _one_error_line(capsys)
