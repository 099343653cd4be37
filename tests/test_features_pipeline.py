"""Radiomics settings, presets, tables (wide/long, CSV/Parquet), the batch and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medimg import Image
from medimg.cli.main import main
from medimg.errors import FileFormatError, ParameterError, UnknownNameError
from medimg.features import (
    PRESETS,
    RadiomicsConfig,
    config_from_mapping,
    extract,
    load_config,
    preset,
)
from medimg.features.table import LONG_COLUMNS, TAIL_COLUMNS, to_long
from medimg.io.tables import write_table
from medimg.pipeline import Case, extract_features, feature_row, read_cases

PHANTOM = Path(__file__).parent / "data" / "ibsi1-digital-phantom"
IMAGE, MASK = PHANTOM / "image.nii.gz", PHANTOM / "mask.nii.gz"


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_presets_reproduce_the_ibsi_settings():
    assert set(PRESETS) >= {"default", "ibsi-dig", "ibsi-ct-a", "ibsi-ct-b", "ibsi-ct-c"}
    a, b, c = preset("ibsi-ct-a"), preset("ibsi-ct-b"), preset("ibsi-ct-c")
    assert a.interpolation is None and a.resegmentation.range == (-500.0, 400.0)
    assert a.discretisation.method == "fixed_bin_size" and a.discretisation.bin_width == 25.0
    assert b.interpolation.in_plane_only and b.interpolation.spacing_mm[:2] == (2.0, 2.0)
    assert b.discretisation.method == "fixed_bin_number" and b.discretisation.n_bins == 32
    assert c.interpolation.spacing_mm == (2.0, 2.0, 2.0) and not c.interpolation.in_plane_only
    assert c.family_params["ivh"] == {"discretisation": "fixed_bin_size", "bin_width": 2.5, "lower_bound": -1000.0}
    assert set(c.aggregations) == {"3d_avg", "3d_comb", "3d"}
    with pytest.raises(UnknownNameError, match="did you mean 'ibsi-dig'"):
        preset("ibsi-dgi")


def test_config_rejects_unknown_keys_with_did_you_mean(tmp_path):
    with pytest.raises(ParameterError, match=r"'discretisation.bin_widht'.*did you mean 'bin_width'"):
        config_from_mapping({"discretisation": {"bin_widht": 10}})
    with pytest.raises(ParameterError, match=r"unknown key 'familes'.*did you mean 'families'"):
        config_from_mapping({"familes": ["glcm"]})
    with pytest.raises(UnknownNameError, match="did you mean 'glcm'"):
        config_from_mapping({"families": ["glcn"]})
    with pytest.raises(ParameterError, match="distance"):
        config_from_mapping({"family_params": {"glcm": {"distanse": 2}}})
    with pytest.raises(ParameterError, match="bin_width"):
        config_from_mapping({"discretisation": {"bin_width": -1}})
    with pytest.raises(ParameterError, match=r"filters\[0\]"):
        config_from_mapping({"filters": [{"name": "log", "params": {"sigma": 1}}]})
    yaml_file = tmp_path / "cfg.yaml"
    yaml_file.write_text("preset: ibsi-ct-a\ndiscretisation:\n  bin_width: 10\nfamilies: [stat, glcm]\n")
    cfg = load_config(yaml_file)
    assert cfg.discretisation.bin_width == 10 and cfg.discretisation.lower_bound == -500.0
    assert cfg.families == ("stat", "glcm")
    bad = tmp_path / "bad.yaml"
    bad.write_text("discretisation: {method: fixed_bin_sise}\n")
    with pytest.raises(ParameterError, match=f"{bad.name}.*discretisation.method"):
        load_config(bad)
    with pytest.raises(FileFormatError):
        load_config(tmp_path / "missing.yaml")
    # a config round-trips through its JSON form
    assert config_from_mapping(json.loads(cfg.to_json())) == cfg


def test_extract_accepts_config_objects_names_and_mappings():
    img = Image(np.arange(27.0).reshape(3, 3, 3))
    mask = img.with_array(np.ones((3, 3, 3), dtype=np.uint8))
    by_name = extract(img, mask, families=["ih"], config="ibsi-ct-a")
    by_obj = extract(img, mask, families=["ih"], config=preset("ibsi-ct-a"))
    by_map = extract(img, mask, families=["ih"], config={"preset": "ibsi-ct-a"})
    assert by_name == by_obj == by_map
    default = extract(img, mask, families=["glcm"])
    assert all(k.split(".")[1] in RadiomicsConfig().aggregations for k in default)


def test_table_wide_and_long_csv_and_parquet(tmp_path):
    import pandas as pd

    row = feature_row(Case("dig", IMAGE, MASK), "ibsi-dig")
    assert row["prov.image_sha256"] and len(row["prov.mask_sha256"]) == 64
    assert json.loads(row["prov.config"])["discretisation"]["method"] == "none"
    write_table([row], tmp_path / "wide.csv", last=TAIL_COLUMNS)
    write_table([row], tmp_path / "wide.parquet", last=TAIL_COLUMNS)
    write_table(to_long([row]), tmp_path / "long.csv", columns=LONG_COLUMNS)
    wide = pd.read_csv(tmp_path / "wide.csv")
    assert wide.shape[0] == 1 and "glcm.3d_comb.joint_maximum" in wide.columns
    assert list(wide.columns[-6:]) == ["prov.medimg_version", "prov.config", "prov.image", "prov.mask",
                                       "prov.image_sha256", "prov.mask_sha256"]
    assert pd.read_parquet(tmp_path / "wide.parquet").shape == wide.shape
    long = pd.read_csv(tmp_path / "long.csv", keep_default_na=False)
    assert list(long.columns) == ["case", "label", "image", "feature", "ibsi_code", "aggregation_code", "value",
                                    "pyradiomics_name"]
    assert len(long) == 487
    hit = long[(long.ibsi_code == "GYBY") & (long.aggregation_code == "IAZD")]
    assert float(hit.value.iloc[0]) == pytest.approx(0.509, abs=5e-4)
    assert (long[long.feature == "morph.volume"].aggregation_code == "").all()
    assert to_long([{"case": "x", "label": 1, "stat.mean": 2.0}]) == [
        {"case": "x", "label": 1, "image": "original", "feature": "stat.mean", "ibsi_code": "Q4LE",
         "aggregation_code": "", "value": 2.0, "pyradiomics_name": ""}]
    with pytest.raises(ParameterError, match="csv or .parquet"):
        write_table([row], tmp_path / "t.xlsx")


def test_batch_records_a_failing_case_and_goes_on(tmp_path):
    cases = [Case("ok", IMAGE, MASK, 1), Case("bad-label", IMAGE, MASK, 9), Case("missing", tmp_path / "no.nii.gz", MASK)]
    rows = extract_features(cases, "ibsi-dig", families=["stat"], scheduler="threads", workers=2)
    assert [r["case"] for r in rows] == ["ok", "bad-label", "missing"]
    assert [r["status"] for r in rows] == ["ok", "error", "error"]
    assert "no voxel with label 9" in rows[1]["error"]
    assert rows[0]["stat.mean"] == pytest.approx(2.15, abs=5e-3)
    listing = tmp_path / "cases.csv"
    listing.write_text(f"case,image,mask,label\na,{IMAGE},{MASK},1\n")
    assert read_cases(listing) == [Case("a", IMAGE, MASK, 1)]
    (tmp_path / "bad.csv").write_text("img,mask\n")
    with pytest.raises(FileFormatError, match="missing column"):
        read_cases(tmp_path / "bad.csv")


@pytest.mark.slow
def test_batch_with_processes_scheduler(tmp_path):
    cases = [Case(f"c{k}", IMAGE, MASK) for k in range(3)]
    rows = extract_features(cases, "ibsi-dig", families=["stat", "glcm"], scheduler="processes", workers=2)
    assert all(r["status"] == "ok" for r in rows)
    assert rows[0]["glcm.3d_comb.joint_maximum"] == rows[2]["glcm.3d_comb.joint_maximum"]


def test_process_batch_keeps_order_records_failures_and_matches_synchronous(tmp_path):
    cases = [Case(f"c{k}", IMAGE, MASK) for k in range(5)]
    cases.insert(2, Case("bad-label", IMAGE, MASK, 9))
    seen = []
    rows = extract_features(cases, "ibsi-dig", families=["stat"], scheduler="processes", workers=2,
                         progress=lambda done, total: seen.append((done, total)))
    assert [r["case"] for r in rows] == [c.case for c in cases]
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "ok", "ok", "ok"]
    assert seen[-1] == (6, 6) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    sync = extract_features(cases, "ibsi-dig", families=["stat"], scheduler="serial")
    assert rows == sync


def test_cli_features_writes_wide_and_long_tables(tmp_path, capsys):
    import pandas as pd

    out = tmp_path / "f.csv"
    assert main(["features", str(IMAGE), str(MASK), "--preset", "ibsi-dig", "-o", str(out)]) == 0
    assert "487 features" in capsys.readouterr().out
    assert pd.read_csv(out).shape[0] == 1
    assert (tmp_path / "f.csv.manifest.json").exists()
    long = tmp_path / "l.parquet"
    assert main(["features", str(IMAGE), str(MASK), "--preset", "ibsi-dig", "--families", "glcm,ngldm",
                 "--long", "-o", str(long)]) == 0
    frame = pd.read_parquet(long)
    assert set(frame.feature.str.split(".").str[0]) == {"glcm", "ngldm"}
    cfg = tmp_path / "c.yaml"
    cfg.write_text("families: [stat]\n")
    assert main(["features", str(IMAGE), str(MASK), "--config", str(cfg), "-o", str(tmp_path / "s.csv")]) == 0


@pytest.mark.parametrize("args, message", [
    (["--preset", "nope"], "unknown radiomics preset 'nope'"),
    (["--label", "5"], "no voxel with label 5"),
    (["--preset", "ibsi-dig", "--config", "x.yaml"], "either --config"),
])
def test_cli_features_bad_input_one_line_exit_2(tmp_path, capsys, args, message):
    code = main(["features", str(IMAGE), str(MASK), "-o", str(tmp_path / "o.csv"), *args])
    assert code == 2
    assert message in _one_error_line(capsys)


def test_cli_features_batch(tmp_path, capsys):
    import pandas as pd

    listing = tmp_path / "cases.csv"
    listing.write_text(f"case,image,mask,label\na,{IMAGE},{MASK},1\nb,{IMAGE},{MASK},4\n")
    out = tmp_path / "b.csv"
    code = main(["features-batch", str(listing), "-o", str(out), "--preset", "ibsi-dig", "--families", "stat",
                 "--scheduler", "threads"])
    assert code == 1  # the batch finishes and writes every row, and signals that a case failed
    captured = capsys.readouterr()
    assert "1 of 2 cases" in captured.out and "failed: b" in captured.err
    frame = pd.read_csv(out)
    assert list(frame.status) == ["ok", "error"]
    assert main(["features-batch", str(listing), "-o", str(out)]) == 2  # exists already
    assert "exists already" in _one_error_line(capsys)
