"""Studies as pipelines: validation before any work (errors name the YAML path), results that
equal the operations called directly, failures recorded, cache and resume (also after kill -9),
the manifest and `reproduce`, a real Dask cluster and an S3-compatible store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import sphere_phantom
from medimg import Image, io
from medimg.cli.main import main
from medimg.pipeline.runner import run_study
from medimg.pipeline.study import StudyError, load_study, study_from_mapping

DATA = Path(__file__).parent / "data"


def _phantom(k: int) -> tuple[Image, Image]:
    """A noisy sphere (its contrast varies with k) and its mask, 24^3 at 1 x 1 x 2 mm."""
    return sphere_phantom(k)


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    rows = ["case,image,mask,outcome,sex"]
    for k in range(4):
        image, mask = _phantom(k)
        io.write(image, tmp_path / f"img{k}.nii.gz")
        io.write(mask, tmp_path / f"mask{k}.nii.gz")
        rows.append(f"p{k},img{k}.nii.gz,mask{k}.nii.gz,{k % 2},{'FM'[k % 2]}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


STUDY = {
    "name": "phantoms",
    "seed": 7,
    "inputs": {"cases": "cases.csv", "label_column": "outcome", "subgroup_columns": ["sex"]},
    "steps": [
        {"id": "smooth", "op": "filters.gaussian", "params": {"sigma_mm": 1.5}},
        {"id": "found", "op": "segmentation.otsu", "inputs": {"image": "smooth"}, "keep": True},
        {"id": "radiomics", "op": "features", "inputs": {"image": "image", "mask": "mask"},
         "params": {"preset": "default", "families": ["stat", "ih"]}},
        {"id": "psnr", "op": "quality.psnr", "inputs": {"reference": "image", "image": "smooth"},
         "params": {"data_range": "reference"}},
    ],
}


def _write_study(folder: Path, data: dict, name: str = "study.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(("change", "where", "message"), [
    (lambda d: d["steps"][0].update(op="filters.gausian"), "steps[0].op", "did you mean 'filters.gaussian'"),
    (lambda d: d["steps"][0]["params"].update(sigma_mm="wide"), "steps[0].params.sigma_mm", "valid number"),
    (lambda d: d["steps"][0]["params"].update(sigma=1.0), "steps[0].params.sigma", "did you mean 'sigma_mm'"),
    (lambda d: d["steps"][1].update(inputs={"image": "smoth"}), "steps[1].inputs.image", "did you mean 'smooth'"),
    (lambda d: d["steps"][3].update(inputs={"image": "radiomics"}), "steps[3].inputs.image", "gives values"),
    (lambda d: d["steps"][1].update(inputs={"image": "radiomics"}), "steps[1].inputs.image", "nor an earlier step"),
    (lambda d: d["steps"][2]["params"].update(families=["glcn"]), "steps[2].params", "did you mean 'glcm'"),
    (lambda d: d["steps"][3].update(id="smooth"), "steps[3].id", "already the id"),
    (lambda d: d.update(stpes=[]), "stpes", "did you mean 'steps'"),
    (lambda d: d["inputs"].update(folder="x"), "inputs", "exactly one of"),
    (lambda d: d["steps"][0].update(colour="red"), "steps[0].colour", "unknown key"),
])
def test_a_bad_study_names_its_yaml_path(change, where: str, message: str) -> None:
    data = json.loads(json.dumps(STUDY))
    change(data)
    with pytest.raises(StudyError) as info:
        study_from_mapping(data)
    assert info.value.where == where
    assert message in str(info.value)


def test_cli_rejects_a_bad_study_before_any_work(cohort: Path, capsys) -> None:
    data = json.loads(json.dumps(STUDY))
    data["steps"][0]["params"]["sigma"] = 1.0
    path = _write_study(cohort, data)
    assert main(["run", str(path), "-o", str(cohort / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: steps[0].params.sigma:")
    assert not (cohort / "out").exists()
    data = json.loads(json.dumps(STUDY))
    data["inputs"]["cases"] = "nope.csv"
    assert main(["run", str(_write_study(cohort, data)), "-o", str(cohort / "out")]) == 2
    assert "inputs.cases: no such file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- running
def test_a_study_gives_what_the_operations_give_called_directly(cohort: Path) -> None:
    from medimg import filters, quality, segmentation
    from medimg.features import extract

    study, base = load_study(_write_study(cohort, STUDY))
    result = run_study(study, cohort / "out", base=base, scheduler="serial")
    assert (result.n_cases, result.n_ok, result.failures) == (4, 4, [])
    import pandas as pd

    table = pd.read_csv(cohort / "out" / "tables" / "radiomics.csv")
    assert list(table["case"]) == ["p0", "p1", "p2", "p3"]
    assert list(table["outcome"]) == [0, 1, 0, 1] and list(table["sex"]) == ["F", "M", "F", "M"]
    psnr_table = pd.read_csv(cohort / "out" / "tables" / "psnr.csv")
    for k in range(4):
        image, mask = _phantom(k)
        image = io.read(cohort / f"img{k}.nii.gz")
        expected = extract(image, io.read(cohort / f"mask{k}.nii.gz"), families=["stat", "ih"])
        row = table.iloc[k]
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
        smooth = filters.gaussian(image, sigma_mm=1.5)
        assert psnr_table.iloc[k]["psnr"] == pytest.approx(quality.psnr(image, smooth, data_range="reference"), rel=1e-12)
        kept = io.read(cohort / "out" / "cases" / f"p{k}" / "found.nii.gz")
        np.testing.assert_array_equal(kept.array, segmentation.otsu(smooth).array)
        assert kept.same_grid(image)


def test_manifest_records_every_resolved_parameter_inputs_and_timings(cohort: Path) -> None:
    study, base = load_study(_write_study(cohort, STUDY))
    run_study(study, cohort / "out", base=base, scheduler="serial")
    manifest = json.loads((cohort / "out" / "manifest.json").read_text())
    plan = {s["id"]: s for s in manifest["parameters"]["plan"]}
    from medimg.core.registry import load_registries

    gaussian = load_registries(["filters"])["filters"].get("gaussian")
    assert set(plan["smooth"]["params"]) == set(gaussian.params.model_fields)  # defaults included
    assert plan["smooth"]["params"]["sigma_mm"] == 1.5
    assert manifest["seed"] == 7 and manifest["software"]["numpy"]
    inputs = [i for i in manifest["inputs"] if i["case"] == "p2" and i["role"] == "image"]
    from medimg.core.files import sha256_file

    assert inputs[0]["sha256"] == sha256_file(cohort / "img2.nii.gz")
    assert set(manifest["parameters"]["step_stats"]) == {"smooth", "found", "radiomics", "psnr"}
    assert manifest["parameters"]["study"]["name"] == "phantoms"
    from medimg.pipeline.runlog import check_run_log, read_run_log

    assert check_run_log(cohort / "out" / "run-log.jsonl").ok
    events = [r["event"] for r in read_run_log(cohort / "out" / "run-log.jsonl")]
    assert events == ["run", "case", "case", "case", "case", "end"]


def test_a_failing_case_is_recorded_and_the_others_go_on(cohort: Path, capsys) -> None:
    (cohort / "img2.nii.gz").write_bytes(b"not an image")
    path = _write_study(cohort, STUDY)
    assert main(["run", str(path), "-o", str(cohort / "out"), "--scheduler", "serial"]) == 1
    captured = capsys.readouterr()
    assert "3 of 4 cases" in captured.out
    assert "failed: p2" in captured.err
    manifest = json.loads((cohort / "out" / "manifest.json").read_text())
    assert [f["item"] for f in manifest["failures"]] == ["p2"]
    import pandas as pd

    assert list(pd.read_csv(cohort / "out" / "tables" / "radiomics.csv")["case"]) == ["p0", "p1", "p3"]


def test_a_rerun_skips_finished_work_and_changed_parameters_rerun_only_what_they_touch(cohort: Path) -> None:
    study, base = load_study(_write_study(cohort, STUDY))
    first = run_study(study, cohort / "out", base=base, scheduler="serial")
    table = (cohort / "out" / "tables" / "radiomics.csv").read_bytes()
    again = run_study(study, cohort / "out", base=base, scheduler="serial")
    assert all(s["computed"] == 0 and s["cached"] == 4 for s in again.step_stats.values())
    assert (cohort / "out" / "tables" / "radiomics.csv").read_bytes() == table
    assert first.step_stats["smooth"]["computed"] == 4
    changed = json.loads(json.dumps(STUDY))
    changed["steps"][0]["params"]["sigma_mm"] = 2.0
    study2, _ = load_study(_write_study(cohort, changed, "study2.yaml"))
    third = run_study(study2, cohort / "out", base=base, scheduler="serial")
    assert third.step_stats["smooth"]["computed"] == 4 and third.step_stats["found"]["computed"] == 4
    assert third.step_stats["radiomics"]["cached"] == 4  # it reads the original image only


_SLOW_STUDY = {
    "name": "slow",
    "inputs": {"cases": "cases.csv"},
    "steps": [{"id": "nlm", "op": "filters.nlm", "params": {"patch_radius_mm": 2.0, "search_radius_mm": 6.0}},
              {"id": "radiomics", "op": "features", "inputs": {"image": "nlm", "mask": "mask"},
               "params": {"families": ["stat"]}}],
}


def _finished_entries(out: Path) -> list[Path]:
    """The finished values entries of a run's cache (one per case and values step; written
    atomically, so a partial file has a ``.part`` name)."""
    cache = out / "cache"
    return [p for p in cache.rglob("*.json") if ".part" not in p.name] if cache.exists() else []


def test_kill_9_then_resume_gives_the_outputs_of_an_uninterrupted_run(cohort: Path) -> None:
    rows = (cohort / "cases.csv").read_text().splitlines()
    more = [rows[0]] + [row.replace("p", f"r{k}-", 1) for k in range(3) for row in rows[1:]]
    (cohort / "cases.csv").write_text("\n".join(more) + "\n")
    path = _write_study(cohort, _SLOW_STUDY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = cohort / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "medimg.cli.main", "run", str(path), "-o", str(out),
                             "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = _finished_entries(out)
        if len(done) >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    time.sleep(1.0)  # the workers notice their owner is gone
    assert 0 < len(_finished_entries(out)) < 12  # 12 cases, one values step
    assert not (out / "tables").exists()
    assert main(["run", str(path), "-o", str(out), "--workers", "2"]) == 0
    assert main(["run", str(path), "-o", str(cohort / "clean"), "--scheduler", "serial"]) == 0
    assert (out / "tables" / "radiomics.csv").read_bytes() == (cohort / "clean" / "tables" / "radiomics.csv").read_bytes()
    assert not [p for p in out.rglob("*") if ".part" in p.name]
    log = [json.loads(line) for line in (out / "run-log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log].count("run") == 2


def test_reproduce_finds_identical_outputs_and_names_a_changed_input(cohort: Path, capsys) -> None:
    path = _write_study(cohort, STUDY)
    assert main(["run", str(path), "-o", str(cohort / "out"), "--scheduler", "serial"]) == 0
    capsys.readouterr()
    assert main(["reproduce", str(cohort / "out" / "manifest.json"), "-o", str(cohort / "again"),
                 "--scheduler", "serial", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["identical"] == report["compared"] == 16
    image, _ = _phantom(9)
    io.write(image, cohort / "img1.nii.gz")
    assert main(["reproduce", str(cohort / "out" / "manifest.json"), "-o", str(cohort / "third"),
                 "--scheduler", "serial"]) == 1
    out = capsys.readouterr().out
    assert "input changed: case p1, image" in out
    assert "different: case p1, smooth" in out


# ----------------------------------------------------------------------------- Dask and S3
def test_a_real_dask_cluster_gives_the_serial_results(cohort: Path) -> None:
    pytest.importorskip("distributed")
    from servers.dask_cluster import dask_cluster

    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    study, base = load_study(_write_study(cohort, STUDY))
    run_study(study, cohort / "serial", base=base, scheduler="serial")
    with dask_cluster(2, env=env) as address:
        result = run_study(study, cohort / "dask", base=base, scheduler=address)
    assert result.n_ok == 4
    for name in ("radiomics.csv", "psnr.csv"):
        assert (cohort / "dask" / "tables" / name).read_bytes() == (cohort / "serial" / "tables" / name).read_bytes()


def test_an_unreachable_scheduler_is_one_clear_line(cohort: Path, capsys) -> None:
    pytest.importorskip("distributed")
    path = _write_study(cohort, STUDY)
    assert main(["run", str(path), "-o", str(cohort / "out"), "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err[0]


def test_inputs_and_outputs_on_an_s3_compatible_store(cohort: Path, monkeypatch) -> None:
    from servers import s3

    reason = s3.why_unavailable()
    if reason:
        pytest.skip(reason)
    import fsspec

    with s3.s3_server() as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir("medimg-study")
        for path in cohort.iterdir():
            fs.put_file(str(path), f"medimg-study/in/{path.name}")
        data = json.loads(json.dumps(STUDY))
        data["inputs"]["cases"] = "s3://medimg-study/in/cases.csv"
        study = study_from_mapping(data)
        result = run_study(study, "s3://medimg-study/out", scheduler="serial")
        assert result.n_ok == 4
        local, base = load_study(_write_study(cohort, STUDY))
        run_study(local, cohort / "local", base=base, scheduler="serial")
        fs.invalidate_cache()
        remote_table = fs.cat_file("medimg-study/out/tables/radiomics.csv")
        assert remote_table == (cohort / "local" / "tables" / "radiomics.csv").read_bytes()
        manifest = json.loads(fs.cat_file("medimg-study/out/manifest.json"))
        assert manifest["parameters"]["out"] == "s3://medimg-study/out"
        kept = fs.ls("medimg-study/out/cases/p0")
        assert any(name.endswith("found.nii.gz") for name in kept)
        again = run_study(study, "s3://medimg-study/out", scheduler="serial")  # resumes from the store
        assert all(s["computed"] == 0 for s in again.step_stats.values())



def _children(pid: int) -> list[int]:
    try:
        out = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(p) for p in out]


def test_kill_9_of_a_worker_loses_no_case(cohort: Path) -> None:
    """A worker killed mid-run: its cases are run again, the run completes with every case."""
    rows = (cohort / "cases.csv").read_text().splitlines()
    more = [rows[0]] + [row.replace("p", f"w{k}-", 1) for k in range(3) for row in rows[1:]]
    (cohort / "cases.csv").write_text("\n".join(more) + "\n")
    path = _write_study(cohort, _SLOW_STUDY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = cohort / "worker-killed"
    proc = subprocess.Popen([sys.executable, "-m", "medimg.cli.main", "run", str(path), "-o", str(out),
                             "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    killed = None
    while time.monotonic() < deadline and killed is None:
        done = _finished_entries(out)
        workers = _children(proc.pid)
        if len(done) >= 2 and workers:
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    assert killed is not None
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "12 of 12 cases" in stdout
    assert main(["run", str(path), "-o", str(cohort / "clean"), "--scheduler", "serial"]) == 0
    assert (out / "tables" / "radiomics.csv").read_bytes() == (cohort / "clean" / "tables" / "radiomics.csv").read_bytes()


# ----------------------------------------------------------------------------- prepare steps
def test_prepare_indexes_then_deidentifies_and_cases_go_on_with_the_copies(tmp_path: Path) -> None:
    from medimg.catalog import Catalog
    from medimg.catalog.query import query
    from medimg.datasets import make_cohort
    from medimg.deid import generate_key_file

    cohort = make_cohort(tmp_path / "cohort", n_patients=4, seed=3, shape_zyx=(8, 40, 40), followup_fraction=0.5)
    key = generate_key_file(tmp_path / "site.key")
    rows = ["case,image,mask,followup,label,sex"]
    for row in cohort.rows:
        if row.timepoint:
            continue
        follow = [r for r in cohort.rows if r.patient_id == row.patient_id and r.timepoint == 1]
        rows.append(f"{row.patient_id},{row.ct_dir},{row.mask_path},{follow[0].ct_dir if follow else ''},"
                    f"{row.label},{row.sex}")
    (cohort.root / "cases.csv").write_text("\n".join(rows) + "\n")
    data = {"name": "prepared", "inputs": {"cases": str(cohort.root / "cases.csv"),
                                           "files": ["image", "mask", "followup"], "optional_files": ["followup"]},
            "prepare": [{"op": "index"}, {"op": "deidentify", "params": {"key_file": str(key)}}],
            "steps": [{"id": "radiomics", "op": "features", "params": {"families": ["stat"]}},
                      {"id": "followup_entropy", "op": "quality.entropy", "inputs": {"image": "followup"}}],
            "outputs": {"report": False}}
    study = study_from_mapping(data)
    result = run_study(study, tmp_path / "out", scheduler="serial")
    assert result.n_ok == 4 and not result.failures
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    index, deid = manifest["parameters"]["prepare"]
    assert index["op"] == "index" and index["ok"] == sum(len(list((cohort.root / r.ct_dir).iterdir())) for r in cohort.rows)
    assert deid["done"] == index["ok"] and deid["failed"] == deid["quarantined"] == 0
    with Catalog(index["db"]) as catalog:  # indexed before de-identification: the original patients
        assert {r["patient_id"] for r in query(catalog, level="study")} == set(cohort.patient_ids)
    import pandas as pd

    table = pd.read_csv(tmp_path / "out" / "tables" / "radiomics.csv", dtype={"case": str})
    from medimg.features import extract

    for case, row in zip(table["case"], table.to_dict("records"), strict=True):
        baseline = next(r for r in cohort.rows if r.patient_id == case and r.timepoint == 0)
        original = io.read(cohort.root / baseline.ct_dir)
        expected = extract(original, io.read(cohort.root / baseline.mask_path), families=["stat"])
        assert row["stat.mean"] == pytest.approx(expected["stat.mean"], rel=1e-12)
    inputs = [i for i in manifest["inputs"] if i["role"] == "image"]
    assert all(str(tmp_path / "out" / "deid") in i["path"][0] for i in inputs)  # the copies were read
    copy = io.read(Path(inputs[0]["path"][0]).parent)
    assert copy.meta.get("PatientID") not in cohort.patient_ids
    with_followup = {r.patient_id for r in cohort.rows if r.timepoint == 1}
    assert set(pd.read_csv(tmp_path / "out" / "tables" / "followup_entropy.csv", dtype={"case": str})["case"]) \
        == with_followup
    assert result.step_stats["followup_entropy"]["skipped"] == 4 - len(with_followup)


def test_a_bad_prepare_step_names_its_yaml_path() -> None:
    data = json.loads(json.dumps(STUDY))
    data["prepare"] = [{"op": "deidentfy"}]
    with pytest.raises(StudyError, match=r"did you mean 'deidentify'") as info:
        study_from_mapping(data)
    assert info.value.where == "prepare[0].op"
    data["prepare"] = [{"op": "deidentify", "params": {}}]
    with pytest.raises(StudyError) as info:
        study_from_mapping(data)
    assert info.value.where == "prepare[0].params.key_file"
