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
from medimg.errors import UserInputError
from medimg.pipeline import index as pipeline_index
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
    assert all("%" not in r["patient_name"] and "_" not in r["patient_name"] for r in series)
    assert query(catalog, patient="%") == [] and query(catalog, patient="_") == []  # not wildcards
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
        a = pipeline_index.index_folder(par, cohort.root, workers=2, batch_size=7)
        b = pipeline_index.index_folder(ser, cohort.root, workers=1)
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
    assert format_rows([], "csv") == ""  # nothing known about the columns: nothing to print
    for bad in (["query", "--description", "("], ["query", "--from", "2020-13-45"],
                ["query", "--level", "frame"], ["query", "--format", "xml"], ["index", str(tmp_path / "nowhere")]):
        assert main(bad) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err


# ------------------------------------------------------------------------------ concurrent writers
_INDEXER = """
import pathlib, sys, time
url, folder, ready, go, batch = sys.argv[1:6]
from medimg.catalog import Catalog, index_folder
pathlib.Path(ready).touch()
while not pathlib.Path(go).exists():
    time.sleep(0.002)
with Catalog(url) as catalog:
    report = index_folder(catalog, folder, batch_size=int(batch))
print(report.n_ok)
"""


def _index_at_once(url: str, folders: list[Path], work: Path, batch: int) -> list[int]:
    """Run one ``index_folder`` process per folder, released at the same instant; their n_ok."""
    import subprocess
    import sys
    import time

    work.mkdir(parents=True, exist_ok=True)
    go = work / "go"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(index_mod.__file__).parents[2]),
                                                         os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([sys.executable, "-c", _INDEXER, url, str(f), str(work / f"ready{i}"), str(go),
                               str(batch)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i, f in enumerate(folders)]
    deadline = time.monotonic() + 60
    while not all((work / f"ready{i}").exists() for i in range(len(folders))):
        assert time.monotonic() < deadline, "indexer processes did not start"
        time.sleep(0.01)
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and not err.strip(), err[-3000:]
        results.append(int(out.split()[-1]))
    return results


def _check_consistent(catalog: Catalog, root: Path) -> None:
    """Every file once, status ok, linked to the instance its header names; nothing duplicated."""
    from sqlalchemy import func, select

    from medimg.catalog.schema import File, Instance, Patient, Series, Study

    files = sorted(root.rglob("*.dcm"))
    headers = {str(f.resolve()): pydicom.dcmread(f, stop_before_pixels=True) for f in files}
    with catalog.engine.connect() as conn:
        rows = conn.execute(select(File.path, File.status, Instance.sop_uid, Series.series_uid, Study.study_uid,
                                   Patient.patient_id)
                            .join(Instance, File.instance_pk == Instance.id)
                            .join(Series, Instance.series_pk == Series.id).join(Study, Series.study_pk == Study.id)
                            .join(Patient, Study.patient_pk == Patient.id)).all()
        n_files = conn.execute(select(func.count()).select_from(File)).scalar_one()
    assert n_files == len(files) == len(rows)
    for path, status, sop, series, study, patient in rows:
        ds = headers[path]
        assert (status, sop, series, study, patient) == ("ok", ds.SOPInstanceUID, ds.SeriesInstanceUID,
                                                         ds.StudyInstanceUID, ds.PatientID)
    counts = catalog.counts()
    assert counts["instances"] == len({d.SOPInstanceUID for d in headers.values()})
    assert counts["series"] == len({d.SeriesInstanceUID for d in headers.values()})
    assert counts["studies"] == len({d.StudyInstanceUID for d in headers.values()})
    assert counts["patients"] == len({d.PatientID for d in headers.values()})


def _concurrent_trials(url_for, cohort, tmp_path: Path, trials: int) -> None:  # noqa: ANN001
    root = _copy_tree(cohort.root, tmp_path / "data")
    first_patient = sorted(p for p in root.iterdir() if p.is_dir())[0]
    n = _n_dcm(root)
    for trial in range(trials):
        url = url_for(trial)
        # overlapping folders: the whole tree, and one patient's folder inside it
        n_ok = _index_at_once(url, [root, first_patient], tmp_path / f"trial{trial}", batch=2)
        assert n_ok[0] + n_ok[1] >= n  # each indexed what it found (the overlap twice or once)
        with Catalog(url) as catalog:
            _check_consistent(catalog, root)
            again = index_folder(catalog, root)
            assert (again.n_unchanged, again.n_new, again.n_changed) == (n, 0, 0)  # nothing was lost


def test_two_indexers_at_once_sqlite(cohort, tmp_path: Path) -> None:
    _concurrent_trials(lambda trial: f"sqlite:///{tmp_path / f'cat{trial}.sqlite'}", cohort, tmp_path, trials=2)


@pytest.mark.tools
def test_two_indexers_at_once_postgresql(cohort, tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    from sqlalchemy import create_engine, text

    def fresh(trial: int) -> str:
        engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS concurrent{trial}"))
            conn.execute(text(f"CREATE DATABASE concurrent{trial}"))
        engine.dispose()
        return postgres_url.rsplit("/", 1)[0] + f"/concurrent{trial}"

    _concurrent_trials(fresh, cohort, tmp_path, trials=2)


# ------------------------------------------------------------------------------ literal patient text, empty results
def test_patient_filter_is_literal(cohort, tmp_path: Path) -> None:
    """LIKE wildcards in --patient are ordinary characters; the expected rows come from the headers."""
    root = _copy_tree(cohort.root, tmp_path / "data")
    names = {"PCT%^X": 0, "UNDER_SCORE^Y": 1, "PLAIN^Z": 2}  # one patient each
    patients = sorted(p for p in root.iterdir() if p.is_dir())
    for name, i in names.items():
        for f in patients[i].rglob("*.dcm"):
            ds = pydicom.dcmread(f)
            ds.PatientName = name
            ds.save_as(f, enforce_file_format=True)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in root.rglob("*.dcm")]

    def expected(text: str) -> set[str]:  # Python's own substring test, case-insensitive
        return {str(d.SeriesInstanceUID) for d in headers
                if text.lower() in str(d.PatientName).lower() or text == str(d.PatientID)}

    with Catalog(tmp_path / "lit.sqlite") as catalog:
        index_folder(catalog, root)
        for text in ("%", "_", "pct%", "%^x", "under_", "r_s", "P%T", "_C", "\\", "plain", "*"):
            got = {r["series_uid"] for r in query(catalog, patient=text)}
            assert got == expected(text), text
        assert len(expected("%")) > 0 and expected("%") != expected("")


def test_empty_query_prints_header_or_message(cohort, tmp_path: Path, capsys) -> None:
    db = str(tmp_path / "e.sqlite")
    with Catalog(db) as catalog:
        index_folder(catalog, cohort.root)
        for level in ("study", "series", "instance"):
            full = query(catalog, level=level)
            empty = query(catalog, level=level, modality="MR")
            assert empty == [] and empty.columns == full.columns == list(full[0])
    for level in ("study", "series", "instance"):
        assert main(["query", "--db", db, "--level", level, "--format", "csv"]) == 0
        header = capsys.readouterr().out.splitlines()[0]
        assert main(["query", "--db", db, "--level", level, "--modality", "MR", "--format", "csv"]) == 0
        assert capsys.readouterr().out.splitlines() == [header]
    assert main(["query", "--db", db, "--patient", "nobody"]) == 0
    assert capsys.readouterr().out.strip() == "no series matches the filters"
    assert main(["query", "--db", db, "--patient", "nobody", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_a_catalog_locked_too_long_is_one_clear_error(tmp_path: Path) -> None:
    import sqlite3

    from sqlalchemy import text

    from medimg.catalog import CatalogBusyError

    path = tmp_path / "locked.sqlite"
    Catalog(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer that does not let go
    try:
        with Catalog(path, busy_timeout_s=0.1) as catalog:
            assert catalog.counts()["patients"] == 0  # readers are not blocked (WAL)
            with pytest.raises(CatalogBusyError, match="is busy: database is locked"):
                catalog.run_write(lambda conn: conn.execute(text("DELETE FROM patient")), attempts=2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_new_sqlite_catalog_waits_for_a_lock_held_elsewhere(tmp_path: Path) -> None:
    """Opening a catalog while another connection is writing to it (as when two indexers open a
    new catalog at once) waits for it instead of failing: SQLite answers the switch to WAL mode
    with "locked" at once (no busy handler while another connection holds a write lock), so
    medimg retries it within the busy timeout."""
    import sqlite3
    import threading
    import time

    path = tmp_path / "cat.sqlite"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other (a)")
    holder.execute("BEGIN IMMEDIATE")  # a writer mid-transaction, as the first indexer creating the tables
    holder.execute("INSERT INTO other VALUES (1)")

    def release() -> None:
        time.sleep(0.4)
        holder.execute("COMMIT")
        holder.close()

    thread = threading.Thread(target=release)
    thread.start()
    t0 = time.monotonic()
    try:
        with Catalog(f"sqlite:///{path}") as catalog:
            assert catalog.engine.dialect.name == "sqlite"
        assert time.monotonic() - t0 >= 0.3
    finally:
        thread.join()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    check.close()
    with pytest.raises(UserInputError, match="locked"):  # a lock that outlives the timeout still fails, clearly
        blocker = sqlite3.connect(tmp_path / "held.sqlite", isolation_level=None)
        blocker.execute("CREATE TABLE other (a)")
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("INSERT INTO other VALUES (1)")
        try:
            Catalog(f"sqlite:///{tmp_path / 'held.sqlite'}", busy_timeout_s=0.2)
        finally:
            blocker.close()
