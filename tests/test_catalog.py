"""The catalog: indexing (incremental, robust, parallel), queries, derived objects; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pydicom
import pytest

from medimg.catalog import (
    Catalog,
    default_catalog_url,
    format_rows,
    index_files,
    index_folder,
    normalize_url,
    query,
)
from medimg.catalog import index as index_mod
from medimg.cli.main import main
from medimg.datasets import make_cohort
from servers.fixtures import postgres_url  # noqa: F401 - pytest fixture


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("catalog") / "cohort"
    return make_cohort(root, n_patients=3, seed=5, shape_zyx=(6, 48, 48), spacing_mm=(2.0, 2.0, 6.0),
                       followup_fraction=0.67)


def _copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _n_dcm(root: Path) -> int:
    return len(list(root.rglob("*.dcm")))


def _check_catalog(catalog: Catalog, root: Path, cohort) -> None:
    """Index, query every filter, then change the folder and index again: the shared scenario."""
    n = _n_dcm(root)
    report = index_folder(catalog, root)
    assert (report.n_new, report.n_ok, report.n_corrupt, report.n_not_dicom) == (n, n, 0, 0)
    counts = catalog.counts()
    assert counts["patients"] == 3 and counts["studies"] == len(cohort.rows) == counts["series"]
    assert counts["instances"] == n

    series = query(catalog)
    assert len(series) == len(cohort.rows)
    assert {r["series_uid"] for r in series} == {r.series_uid for r in cohort.rows}
    assert all(r["n_instances"] == 6 and r["modality"] == "CT" for r in series)
    row = cohort.rows[0]
    mine = query(catalog, patient=row.patient_id)
    assert {r["patient_id"] for r in mine} == {row.patient_id}
    family = query(catalog, level="study")[0]["patient_name"].split("^")[0].lower()
    assert query(catalog, patient=family)  # part of the name, any case
    assert query(catalog, modality="mr") == [] and len(query(catalog, modality="MR,ct")) == len(series)
    assert len(query(catalog, body_part="chest")) == len(series)
    assert len(query(catalog, description=r"axial\s+\d+mm")) == len(series)
    assert len(query(catalog, description="^CT CHEST")) == len(series)  # study description
    assert query(catalog, description="^nothing like this") == []
    dates = sorted(r.study_date for r in cohort.rows)
    picked = query(catalog, date_from=dates[1], date_to=dates[-2], level="study")
    assert sorted(r["study_date"].replace("-", "") for r in picked) == dates[1:-1]
    studies = query(catalog, level="study")
    assert all(s["modalities"] == "CT" and s["n_series"] == 1 for s in studies)
    instances = query(catalog, level="instance", patient=row.patient_id)
    assert len(instances) == 6 * sum(r.patient_id == row.patient_id for r in cohort.rows)

    again = index_folder(catalog, root)
    assert (again.n_unchanged, again.n_new, again.n_changed) == (n, 0, 0)

    files = sorted(root.rglob("*.dcm"))
    files[0].unlink()  # vanished
    ds = pydicom.dcmread(files[1])
    ds.SeriesDescription = "AXIAL EDITED"
    ds.save_as(files[1], enforce_file_format=True)  # changed
    os.utime(files[1], ns=(1, 1))
    data = files[2].read_bytes()
    (root / "cut.dcm").write_bytes(data[:200])  # corrupt: ends inside the header
    (root / "notes.bin").write_bytes(b"not a dicom file at all" * 10)
    nodicomuid = pydicom.dcmread(files[3])
    del nodicomuid.SOPInstanceUID
    nodicomuid.save_as(root / "nouid.dcm")
    third = index_folder(catalog, root)
    assert third.n_missing == 1 and third.n_changed == 1 and third.n_new == 3
    assert third.n_corrupt == 2 and third.n_not_dicom == 1 and third.n_ok == 1
    assert catalog.file_status(files[0]) == "missing"
    assert catalog.file_status(root / "cut.dcm") == "corrupt"
    assert catalog.file_status(root / "notes.bin") == "not_dicom"
    assert sum(r["n_instances"] for r in query(catalog)) == n - 1  # the vanished one is gone from queries
    assert len(query(catalog, description="EDITED")) == 1


def test_sqlite_index_query_incremental(cohort, tmp_path: Path) -> None:
    root = _copy_tree(cohort.root, tmp_path / "data")
    with Catalog(tmp_path / "cat.sqlite") as catalog:
        _check_catalog(catalog, root, cohort)


@pytest.mark.tools
def test_postgresql(cohort, tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    root = _copy_tree(cohort.root, tmp_path / "data")
    catalog = Catalog(postgres_url)
    try:
        assert catalog.engine.dialect.name == "postgresql"
        _check_catalog(catalog, root, cohort)
        rows = query(catalog, level="series")
        derived = catalog.add_derived("feature_table", tmp_path / "f.csv", series_uids=[rows[0]["series_uid"]],
                                      params={"bin_width": 25})
        assert catalog.derived_from(series_uid=rows[0]["series_uid"])[0]["id"] == derived
    finally:
        catalog.close()


def test_parallel_index_matches_serial(cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_mod, "PARALLEL_MIN_FILES", 1)
    with Catalog(tmp_path / "par.sqlite") as par, Catalog(tmp_path / "ser.sqlite") as ser:
        a = index_folder(par, cohort.root, workers=2, batch_size=7)
        b = index_folder(ser, cohort.root, workers=1)
        assert a.n_ok == b.n_ok == _n_dcm(cohort.root)
        assert query(par, level="instance") == query(ser, level="instance")


def test_derived_objects(cohort, tmp_path: Path) -> None:
    with Catalog(tmp_path / "d.sqlite") as catalog:
        index_folder(catalog, cohort.root)
        row = cohort.rows[0]
        vol = catalog.add_derived("volume", tmp_path / "ct.nii.gz", series_uids=[row.series_uid], name="ct")
        seg = catalog.add_derived("segmentation", cohort.mask_path(row), derived_ids=[vol],
                                  params={"method": "threshold", "level_hu": 70})
        feats = catalog.add_derived("feature_table", tmp_path / "features.csv", derived_ids=[vol, seg])
        run = catalog.add_derived("run", tmp_path / "manifest.json", study_uids=[row.study_uid],
                                  derived_ids=[feats])
        assert [d["id"] for d in catalog.derived_from(series_uid=row.series_uid)] == [vol]
        assert [d["id"] for d in catalog.derived_from(derived_id=vol)] == [seg, feats]
        assert catalog.derived_from(derived_id=seg)[0]["kind"] == "feature_table"
        assert catalog.sources_of(run) == [("study", row.study_uid), ("derived", str(feats))]
        assert catalog.derived_from(derived_id=vol)[0]["params"] == {"level_hu": 70, "method": "threshold"}
        with pytest.raises(Exception, match="not in the catalog"):
            catalog.add_derived("volume", "x", series_uids=["1.2.3"])
        with pytest.raises(Exception, match="unknown derived kind"):
            catalog.add_derived("picture", "x")
        assert catalog.counts()["derived"] == 4
        first = sorted((cohort.root / row.ct_dir).glob("*.dcm"))[:2]
        assert index_files(catalog, first).n_unchanged == 2


def test_default_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MEDIMG_CATALOG_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_catalog_url() == f"sqlite:///{tmp_path / 'xdg' / 'medimg' / 'catalog.sqlite'}"
    monkeypatch.setenv("MEDIMG_CATALOG_URL", "postgresql://u@127.0.0.1:5/db")
    assert default_catalog_url() == "postgresql+psycopg://u@127.0.0.1:5/db"
    assert normalize_url(tmp_path / "c.sqlite") == f"sqlite:///{tmp_path / 'c.sqlite'}"


def test_cli_index_and_query(cohort, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIMG_CATALOG_URL", f"sqlite:///{tmp_path / 'env.sqlite'}")
    assert main(["index", str(cohort.root)]) == 0
    assert "indexed" in capsys.readouterr().out
    assert (tmp_path / "env.sqlite").exists()  # the environment variable chose the catalog
    assert main(["query", "--format", "json", "--modality", "CT"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(cohort.rows)
    assert main(["query", "--format", "csv", "--level", "study", "--from", "2000-01-01"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("patient_id,") and len(lines) == len(cohort.rows) + 1
    assert main(["query", "--patient", cohort.rows[0].patient_id]) == 0
    assert cohort.rows[0].patient_id in capsys.readouterr().out
    assert format_rows([], "csv") == ""
    for bad in (["query", "--description", "("], ["query", "--from", "2020-13-45"],
                ["query", "--level", "frame"], ["query", "--format", "xml"], ["index", str(tmp_path / "nowhere")]):
        assert main(bad) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
