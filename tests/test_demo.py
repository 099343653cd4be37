"""The end-to-end demo runs, is reproducible, and its numbers are what the data support."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medimg.cli.main import main
from medimg.demo import run_demo


@pytest.mark.slow
def test_demo_end_to_end_is_reproducible(tmp_path: Path) -> None:
    first = run_demo(tmp_path / "a", n_patients=16, seed=3, unet=False, log=lambda _m: None)
    assert first.n_cases == 16 and not first.failures
    html = first.report_path.read_text()
    for heading in ("Cohort", "Segmentation", "Features", "Model", "Run"):
        assert f">{heading}<" in html
    assert html.count("data:image/png;base64,") == 3
    assert first.dice_mean > 0.85  # threshold segmentation vs the generator's true masks
    assert 0.0 <= first.auc_ci[0] <= first.auc <= first.auc_ci[1] <= 1.0
    manifest = json.loads(first.manifest_path.read_text())
    assert manifest["seed"] == 3 and len(manifest["inputs"]) == 16
    assert manifest["parameters"]["results"]["auc"] == pytest.approx(first.auc)
    assert {"numpy", "pydicom", "SimpleITK"} <= set(manifest["software"])
    second = run_demo(tmp_path / "b", n_patients=16, seed=3, unet=False, log=lambda _m: None)
    assert second.features_path.read_bytes() == first.features_path.read_bytes()
    assert second.auc == first.auc


@pytest.mark.slow
def test_demo_command_prints_the_report_path(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), "--patients", "12", "--seed", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"report: {(tmp_path / 'd' / 'report.html').resolve()}"
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["parameters"]["results"]["unet_test_dice"] >= 0.85  # held-out patients
    assert "held-out patients" in (tmp_path / "d" / "report.html").read_text()
