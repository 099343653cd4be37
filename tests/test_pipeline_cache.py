"""The study cache: which images are stored (worth it, or the step says), lazy re-runs (steps
neither stored nor needed are "not needed"), values entries without a marker, damaged entries
computed again, and `reproduce` through unstored intermediates."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import sphere_phantom
from medimg import Image, io
from medimg.cli.main import main
from medimg.pipeline import runner, steps
from medimg.pipeline.runner import run_study
from medimg.pipeline.study import StudyError, study_from_mapping


def _phantom(k: int) -> tuple[Image, Image]:
    return sphere_phantom(k, (12, 20, 20), 30.0)


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    rows = ["case,image,mask"]
    for k in range(3):
        image, mask = _phantom(k)
        io.write(image, tmp_path / f"img{k}.nii.gz", sidecar=False)
        io.write(mask, tmp_path / f"mask{k}.nii.gz", sidecar=False)
        rows.append(f"p{k},img{k}.nii.gz,mask{k}.nii.gz")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def _study(smooth: dict | None = None, families: tuple[str, ...] = ("stat",)) -> dict:
    return {"name": "cache", "inputs": {"cases": "cases.csv"},
            "steps": [{"id": "smooth", "op": "filters.gaussian", "params": {"sigma_mm": 1.5}, **(smooth or {})},
                      {"id": "radiomics", "op": "features", "inputs": {"image": "smooth", "mask": "mask"},
                       "params": {"families": list(families)}},
                      {"id": "psnr", "op": "quality.psnr", "inputs": {"reference": "image", "image": "smooth"},
                       "params": {"data_range": "reference"}}],
            "outputs": {"report": False}}


def _run(cohort: Path, data: dict, out: str = "out") -> runner.StudyResult:
    return run_study(study_from_mapping(data), cohort / out, base=cohort, scheduler="serial")


def _statuses(result: runner.StudyResult) -> dict[str, dict[str, int]]:
    return {step: {k: int(v) for k, v in s.items() if k in ("computed", "cached", "not_needed")}
            for step, s in result.step_stats.items()}


def _npz(cohort: Path, out: str = "out") -> list[Path]:
    return sorted((cohort / out / "cache").rglob("*.npz"))


class _FrozenCost(runner.StoreCost):
    """The default estimate (5 ms a write, 50 MB/s: storing 20 kB is ~10 ms, so an image is
    stored when it cost >= ~0.2 s), not moved by measurements: a step's few-ms timing jitter
    on a loaded machine cannot flip a decision the tests check."""

    def record_write(self, seconds: float) -> None:
        pass

    def record_image(self, nbytes: int, seconds: float, writes: int = 2) -> None:
        pass


@pytest.fixture(autouse=True)
def _frozen_cost(monkeypatch) -> None:
    monkeypatch.setattr(runner, "STORE_COST", _FrozenCost())


def test_the_store_cost_follows_measurements() -> None:
    cost = runner.StoreCost()
    assert cost.estimate(50_000_000) == pytest.approx(2 * 5e-3 + 1.0)  # conservative defaults
    cost.record_write(1e-3)
    cost.record_image(100_000_000, 2 * 1e-3 + 0.1)  # 1 GB/s
    assert cost.estimate(100_000_000) == pytest.approx(2e-3 + 0.1)
    cost.record_write(3e-3)
    assert cost.fixed_s == pytest.approx(0.7e-3 + 0.9e-3)


@pytest.fixture
def slow_gaussian(monkeypatch) -> dict[str, int]:
    """filters.gaussian made 0.4 s slower (an expensive step), counting its calls."""
    calls = {"n": 0}
    real = steps._cached_op

    def patched(name: str):
        op = real(name)
        if name != "filters.gaussian":
            return op

        def run(inputs, params):
            calls["n"] += 1
            time.sleep(0.4)
            return op.run(inputs, params)
        return dataclasses.replace(op, run=run)

    monkeypatch.setattr(steps, "_cached_op", patched)
    return calls


def test_a_cheap_intermediate_is_not_stored_and_is_not_needed_on_a_rerun(cohort: Path) -> None:
    first = _run(cohort, _study())
    assert _statuses(first)["smooth"] == {"computed": 3, "cached": 0, "not_needed": 0}
    assert _npz(cohort) == []  # a Gaussian of 20x20x12 voxels is far cheaper than 20x storing it
    table = (cohort / "out/tables/radiomics.csv").read_bytes()
    again = _run(cohort, _study())
    assert _statuses(again) == {"smooth": {"computed": 0, "cached": 0, "not_needed": 3},
                                "radiomics": {"computed": 0, "cached": 3, "not_needed": 0},
                                "psnr": {"computed": 0, "cached": 3, "not_needed": 0}}
    assert (cohort / "out/tables/radiomics.csv").read_bytes() == table
    manifest = json.loads((cohort / "out/manifest.json").read_text())
    rec = manifest["outputs"][-1]["steps"]["smooth"]
    assert rec["status"] == "not needed" and rec["output_sha256"] is None
    log = [json.loads(line) for line in (cohort / "out/run-log.jsonl").read_text().splitlines()]
    assert {s["status"] for r in log[-2:-1] for s in r["steps"] if s["step"] == "smooth"} == {"not needed"}
    # a changed downstream parameter computes the unstored smooth step again, and only its reader
    third = _run(cohort, _study(families=("stat", "ih")))
    assert _statuses(third)["smooth"]["computed"] == 3 and _statuses(third)["radiomics"]["computed"] == 3
    assert _statuses(third)["psnr"] == {"computed": 0, "cached": 3, "not_needed": 0}


def test_an_expensive_intermediate_is_stored_and_reused(cohort: Path, slow_gaussian: dict[str, int]) -> None:
    first = _run(cohort, _study())
    assert slow_gaussian["n"] == 3 and len(_npz(cohort)) == 3  # 0.4 s >= 20x storing ~20 kB
    third = _run(cohort, _study(families=("stat", "ih")))
    assert slow_gaussian["n"] == 3  # read back, not computed
    assert _statuses(third)["smooth"] == {"computed": 0, "cached": 3, "not_needed": 0}
    assert _statuses(third)["radiomics"]["computed"] == 3
    # the stored image gives what computing it gives
    fresh = run_study(study_from_mapping(_study(families=("stat", "ih"))), cohort / "fresh", base=cohort,
                      scheduler="serial")
    assert fresh.n_ok == 3
    assert (cohort / "out/tables/radiomics.csv").read_bytes() == (cohort / "fresh/tables/radiomics.csv").read_bytes()
    first_sha = {o["case"]: o["steps"]["smooth"]["output_sha256"]
                 for o in json.loads((cohort / "out/manifest.json").read_text())["outputs"] if o.get("kind") == "case"}
    assert all(first_sha.values()) and first.n_ok == 3


def test_cache_true_and_false_are_honoured(cohort: Path, slow_gaussian: dict[str, int]) -> None:
    _run(cohort, _study({"cache": False}), "never")
    assert _npz(cohort, "never") == []  # expensive, but the study says never
    _run(cohort, _study({"cache": True}), "always")
    assert len(_npz(cohort, "always")) == 3
    assert all(p.with_name(p.name + ".sha256").is_file() for p in _npz(cohort, "always"))


def test_cache_true_on_a_cheap_step_stores_it(cohort: Path) -> None:
    _run(cohort, _study({"cache": True}))
    assert len(_npz(cohort)) == 3
    again = _run(cohort, _study(families=("ih",)))
    assert _statuses(again)["smooth"] == {"computed": 0, "cached": 3, "not_needed": 0}


@pytest.mark.parametrize(("change", "where", "message"), [
    (lambda d: d["steps"][0].update(cache="always"), "steps[0].cache", "valid boolean"),
    (lambda d: d["steps"][1].update(cache=False), "steps[1].cache", "always cached"),
])
def test_a_bad_cache_key_names_its_yaml_path(change, where: str, message: str) -> None:
    data = _study()
    change(data)
    with pytest.raises(StudyError) as info:
        study_from_mapping(data)
    assert info.value.where == where and message in str(info.value)


def test_a_bad_cache_key_exits_2(cohort: Path, capsys) -> None:
    import yaml

    data = _study({"cache": "sometimes"})
    (cohort / "s.yaml").write_text(yaml.safe_dump(data))
    assert main(["run", str(cohort / "s.yaml"), "-o", str(cohort / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: steps[0].cache:")


def test_a_values_entry_has_no_marker_and_is_read_back_with_its_hash(cohort: Path) -> None:
    _run(cohort, _study())
    entries = [p for p in (cohort / "out/cache").rglob("*.json")]
    assert len(entries) == 6 and not list((cohort / "out/cache").rglob("*.json.sha256"))
    first = json.loads((cohort / "out/manifest.json").read_text())
    again = _run(cohort, _study())
    second = json.loads((cohort / "out/manifest.json").read_text())
    for before, after in zip(first["outputs"][-3:], second["outputs"][-3:], strict=True):
        rec = after["steps"]["radiomics"]
        assert rec["status"] == "cached"
        entry = cohort / "out" / runner._cache_key(rec["key"], "values")
        assert rec["output_sha256"] == hashlib.sha256(entry.read_bytes()).hexdigest()
        assert rec["output_sha256"] == before["steps"]["radiomics"]["output_sha256"]
    assert again.n_ok == 3


def test_a_damaged_entry_is_computed_again(cohort: Path) -> None:
    data = _study({"cache": True, "keep": True})
    _run(cohort, data)
    table = (cohort / "out/tables/radiomics.csv").read_bytes()
    manifest = json.loads((cohort / "out/manifest.json").read_text())
    p0 = next(o for o in manifest["outputs"] if o.get("case") == "p0")
    values = cohort / "out" / runner._cache_key(p0["steps"]["radiomics"]["key"], "values")
    values.write_bytes(values.read_bytes()[:20])  # cut short (not by the runner: its writes are atomic)
    image = cohort / "out" / runner._cache_key(p0["steps"]["smooth"]["key"], "image")
    image.write_bytes(image.read_bytes()[:100])  # damaged npz, marker still there
    marker = cohort / "out/cases/p1/.smooth.key"
    marker.write_text("0" * 64 + " " + "0" * 64)  # a stale kept image
    again = _run(cohort, _study(families=("stat",)) | {"steps": data["steps"]})
    assert not again.failures, again.failures[0].error
    rec = {o["case"]: o["steps"] for o in json.loads((cohort / "out/manifest.json").read_text())["outputs"]
           if o.get("kind") == "case"}
    assert rec["p0"]["radiomics"]["status"] == "computed" and rec["p0"]["smooth"]["status"] == "computed"
    # p1's kept file was stale: written again from its (intact) cache entry, not computed
    assert rec["p1"]["smooth"]["status"] == "cached" and rec["p1"]["radiomics"]["status"] == "cached"
    assert rec["p2"]["smooth"]["status"] == "cached"
    assert (cohort / "out/tables/radiomics.csv").read_bytes() == table
    assert marker.read_text().split() == [rec["p1"]["smooth"]["key"], rec["p1"]["smooth"]["output_sha256"]]
    kept = io.read(cohort / "out/cases/p0/smooth.nii.gz")
    from medimg import filters

    np.testing.assert_allclose(kept.array, filters.gaussian(io.read(cohort / "img0.nii.gz"), sigma_mm=1.5).array,
                               rtol=1e-6)
    assert again.n_ok == 3


def test_reproduce_compares_an_unstored_intermediate_through_its_readers(cohort: Path, capsys) -> None:
    import yaml

    (cohort / "s.yaml").write_text(yaml.safe_dump(_study()))
    assert main(["run", str(cohort / "s.yaml"), "-o", str(cohort / "out"), "--scheduler", "serial"]) == 0
    path = cohort / "out/manifest.json"
    manifest = json.loads(path.read_text())
    assert not _npz(cohort)
    for o in manifest["outputs"]:
        if o.get("kind") == "case":  # as if the smoothing were not bit-reproducible
            o["steps"]["smooth"]["output_sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["reproduce", str(path), "-o", str(cohort / "again"), "--scheduler", "serial", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["compared"] == 9 and report["identical"] == 6 and report["not_stored"] == 3
    assert {d["status"] for d in report["differences"]} == {"not stored"}
    assert "compared through the steps that read it" in report["differences"][0]["detail"]
    # a changed input: the unstored smooth step is "not stored", its readers are different
    image, _ = _phantom(9)
    io.write(image, cohort / "img1.nii.gz", sidecar=False)
    assert main(["reproduce", str(path), "-o", str(cohort / "third"), "--scheduler", "serial"]) == 1
    out = capsys.readouterr().out
    assert "not stored: case p1, smooth" in out
    assert "different: case p1, psnr" in out and "different: case p1, radiomics" in out


def test_a_stale_kept_file_is_written_again_from_a_stored_entry_without_its_inputs(cohort: Path) -> None:
    data = _study()
    data["steps"].insert(1, {"id": "found", "op": "segmentation.otsu", "inputs": {"image": "smooth"},
                             "keep": True, "cache": True})
    data["steps"][2]["inputs"] = {"image": "image", "mask": "found"}
    data["steps"].pop()  # no psnr: nothing else reads smooth
    _run(cohort, data)
    (cohort / "out/cases/p2/found.nii.gz").unlink()
    again = _run(cohort, data)
    rec = {o["case"]: o["steps"] for o in json.loads((cohort / "out/manifest.json").read_text())["outputs"]
           if o.get("kind") == "case"}
    assert rec["p2"]["found"]["status"] == "cached" and rec["p2"]["smooth"]["status"] == "not needed"
    assert _statuses(again)["smooth"] == {"computed": 0, "cached": 0, "not_needed": 3}
    from medimg import filters, segmentation

    expected = segmentation.otsu(filters.gaussian(io.read(cohort / "img2.nii.gz"), sigma_mm=1.5))
    np.testing.assert_array_equal(io.read(cohort / "out/cases/p2/found.nii.gz").array, expected.array)
