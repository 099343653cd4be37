"""The end-to-end demo runs examples/demo.yaml as a study; it is reproducible and its numbers are
what the synthetic data support."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from medimg.cli.main import main
from medimg.demo import run_demo


@pytest.mark.slow
def test_demo_study_end_to_end_is_reproducible(tmp_path: Path) -> None:
    first = run_demo(tmp_path / "a", n_patients=24, seed=3, unet=False, log=lambda _m: None)
    assert first.n_cases == 24 and not first.failures
    html = first.report_path.read_text()
    for heading in ("Cohort", "Preparation", "Segmentation accuracy", "Registration and longitudinal change",
                    "Model: classifier", "Evaluation: performance", "Subgroup audit: fairness",
                    "CNN and saliency maps: cnn", "Grad-CAM saliency of case", "Provenance"):
        assert heading in html, heading
    accuracy = pd.read_csv(first.report_path.parent / "tables/accuracy_threshold.csv")
    assert accuracy["dice"].mean() > 0.85  # threshold segmentation vs the generator's true masks
    auc = first.metrics["performance"]["auc"]
    assert 0.0 <= auc["ci"][0] <= auc["value"] <= auc["ci"][1] <= 1.0
    growth = pd.read_csv(first.report_path.parent / "tables/growth.csv")
    assert len(growth) >= 6 and growth["baseline_total_mm3"].gt(0).all()
    manifest = json.loads(first.manifest_path.read_text())
    assert manifest["seed"] == 3 and [p["op"] for p in manifest["parameters"]["prepare"]] == ["index", "deidentify"]
    # the steps saw the de-identified copies, never the original DICOM
    assert all("/deid/" in str(i["path"]) or i["role"] == "mask" for i in manifest["inputs"] if i["role"] == "image")
    second = run_demo(tmp_path / "b", n_patients=24, seed=3, unet=False, log=lambda _m: None)
    assert second.features_path.read_bytes() == first.features_path.read_bytes()
    assert second.metrics["performance"]["auc"] == first.metrics["performance"]["auc"]
    # the CNN too: the same seed gives the same out-of-fold predictions
    cnn = "cohort/cnn/predictions.csv"
    assert (second.report_path.parent / cnn).read_bytes() == (first.report_path.parent / cnn).read_bytes()


@pytest.mark.slow
def test_demo_command_with_the_unet_prints_the_report_path(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), "--patients", "16", "--seed", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"report: {(tmp_path / 'd' / 'study' / 'report.html').resolve()}"
    unet = pd.read_csv(tmp_path / "d" / "study" / "tables" / "accuracy_unet.csv")
    assert unet["dice"].mean() >= 0.8  # a U-Net trained on another cohort, scored on these unseen cases
