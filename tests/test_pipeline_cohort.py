"""Cohort steps of a study: validated with YAML paths, run once on the collected tables, cached,
recorded in the manifest and shown in the report."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medimg.pipeline.runner import run_study
from medimg.pipeline.study import StudyError, study_from_mapping
from servers.fixtures import in_orthanc_netns, orthanc  # noqa: F401 - pytest fixtures
from test_pipeline_study import STUDY, cohort  # noqa: F401  (the fixture)


def _with_cohort(steps: list[dict]) -> dict:
    data = copy.deepcopy(STUDY)
    data["cohort"] = steps
    return data


@pytest.mark.parametrize(("steps", "where", "message"), [
    ([{"id": "emb", "op": "embeding"}], "cohort[0].op", "did you mean 'embedding'"),
    ([{"id": "emb", "op": "embedding", "params": {"method": "umap2"}}], "cohort[0].params.method", "pca"),
    ([{"id": "emb", "op": "embedding", "params": {"methd": "pca"}}], "cohort[0].params.methd", "did you mean"),
    ([{"id": "emb", "op": "embedding", "inputs": {"table": "smooth"}}], "cohort[0].inputs.table", "gives images"),
    ([{"id": "emb", "op": "embedding", "inputs": {"table": "smoth"}}], "cohort[0].inputs.table", "unknown input"),
    ([{"id": "emb", "op": "embedding", "inputs": {"tabel": "radiomics"}}], "cohort[0].inputs.tabel", "takes no input"),
    ([{"id": "radiomics", "op": "embedding"}], "cohort[0].id", "already the id"),
])
def test_a_bad_cohort_step_names_its_yaml_path(steps, where: str, message: str) -> None:
    with pytest.raises(StudyError) as err:
        study_from_mapping(_with_cohort(steps))
    assert err.value.where == where
    assert message in err.value.problem


def test_an_embedding_step_runs_once_on_the_table_is_cached_and_reported(cohort: Path) -> None:  # noqa: F811
    data = _with_cohort([{"id": "pca", "op": "embedding", "inputs": {"table": "radiomics"}}])
    study = study_from_mapping(data)
    out = cohort / "out"
    result = run_study(study, out, base=cohort, scheduler="serial")
    assert not result.failures
    res = json.loads((out / "cohort/pca/result.json").read_text())
    assert res["op"] == "embedding" and res["figures"]
    table = pd.read_csv(out / "cohort/pca/table.csv", dtype={"case": str})
    assert list(table["case"]) == ["p0", "p1", "p2", "p3"]
    # the embedding equals a PCA of the standardised feature table computed here
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    radiomics = pd.read_csv(out / "tables/radiomics.csv")
    feats = radiomics.drop(columns=["case", "outcome", "sex"])
    feats = feats.loc[:, feats.std() > 0]
    expected = PCA(n_components=2, random_state=7).fit_transform(StandardScaler().fit_transform(feats))
    np.testing.assert_allclose(np.abs(table[["dim1", "dim2"]].to_numpy()), np.abs(expected), rtol=1e-6, atol=1e-9)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["cohort"][0]["status"] == "computed"
    assert any(o.get("kind") == "cohort" and o["path"].endswith("pca.png") for o in manifest["outputs"])
    assert "PCA embedding" in (out / "report.html").read_text()
    again = run_study(study, out, base=cohort, scheduler="serial")
    assert not again.failures
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["cohort"][0]["status"] == "cached"


def test_a_failing_cohort_step_is_a_failure_of_the_run(cohort: Path) -> None:  # noqa: F811
    data = _with_cohort([{"id": "lda", "op": "embedding", "params": {"method": "lda", "color_by": "nosuch"}}])
    result = run_study(study_from_mapping(data), cohort / "out", base=cohort, scheduler="serial")
    assert [f.key for f in result.failures] == ["cohort:lda"]
    assert "color_by" in result.failures[0].error


def test_segmentation_metrics_step_equals_the_function_and_file_params_resolve(cohort: Path, tmp_path: Path) -> None:  # noqa: F811
    from medimg import io
    from medimg.evaluation.segmentation import segmentation_metrics

    data = copy.deepcopy(STUDY)
    data["steps"].append({"id": "accuracy", "op": "segmentation_metrics", "inputs": {"mask": "found", "truth": "mask"}})
    result = run_study(study_from_mapping(data), cohort / "out", base=cohort, scheduler="serial")
    assert not result.failures
    table = pd.read_csv(cohort / "out/tables/accuracy.csv", dtype={"case": str})
    found = io.read(cohort / "out/cases/p2/found.nii.gz")
    expected = segmentation_metrics(found, io.read(cohort / "mask2.nii.gz"))
    row = table[table["case"] == "p2"].iloc[0]
    assert row["dice"] == pytest.approx(expected["dice"], rel=1e-12)
    assert row["hd95"] == pytest.approx(expected["hd95"], rel=1e-12)
    assert "Segmentation accuracy" in (cohort / "out/report.html").read_text()
    # a parameter that names an input file is resolved against the study's folder and must exist
    data = copy.deepcopy(STUDY)
    data["steps"].append({"id": "net", "op": "segmentation.unet", "params": {"checkpoint": "nosuch.pt"}})
    with pytest.raises(StudyError) as err:
        study_from_mapping(data, base=cohort)
    assert err.value.where == "steps[4].params.checkpoint" and "no such file" in err.value.problem


# ----------------------------------------------------------------------------- the examples
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_demo_study_ships_with_the_package_and_is_the_example() -> None:
    from medimg.demo import demo_study_path

    packaged = Path(__file__).resolve().parent.parent / "src/medimg/datasets/demo.yaml"
    assert (EXAMPLES / "demo.yaml").read_bytes() == packaged.read_bytes()
    assert demo_study_path().read_bytes() == packaged.read_bytes()


@pytest.mark.tools
def test_the_pacs_to_catalog_example_ingests_a_series(in_orthanc_netns, tmp_path: Path) -> None:  # noqa: F811
    import yaml

    from medimg import pacs
    from medimg.catalog import Catalog
    from medimg.catalog.query import query
    from medimg.datasets import make_cohort

    server = in_orthanc_netns
    cohort_ = make_cohort(tmp_path / "cohort", n_patients=1, seed=5, shape_zyx=(6, 32, 32),
                          spacing_mm=(2.0, 2.0, 6.0), followup_fraction=0.0)
    row = cohort_.rows[0]
    files = sorted((cohort_.root / row.ct_dir).glob("*.dcm"))
    assert pacs.send(server.dimse, files).failures == []
    data = yaml.safe_load((EXAMPLES / "pacs-to-catalog.yaml").read_text())
    data["inputs"]["pacs"].update(server=server.dimse, patient_id=row.patient_id)
    study = study_from_mapping(data)
    result = run_study(study, tmp_path / "run", base=tmp_path, scheduler="serial")
    assert not result.failures and result.n_cases == 1
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        rows = query(catalog)
    assert [r["series_uid"] for r in rows] == [row.series_uid]
    noise = pd.read_csv(tmp_path / "run/tables/noise.csv")
    assert len(noise) == 1 and 0 < float(noise["noise"].iloc[0]) < 100


def _context(frame: pd.DataFrame, written: dict, **kw) -> object:
    from medimg.pipeline.cohort import CohortContext

    def write(name: str, data: bytes) -> str:
        written[name] = data
        return f"cohort/x/{name}"

    return CohortContext(inputs={"predictions": frame}, id_column="case", label_column="y_true",
                         group_column=kw.get("group"), subgroup_columns=kw.get("subgroups", []),
                         case_columns=["case"], seed=0, write=write)


def _predictions(n: int = 300, gap: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    sex = rng.choice(["F", "M"], n)
    signal = np.where(sex == "F", 1.5, 1.5 - gap)
    score = 1 / (1 + np.exp(-(y * signal + rng.normal(0, 1, n) - signal / 2)))
    return pd.DataFrame({"case": [f"c{i}" for i in range(n)], "y_true": y, "y_score": score,
                         "y_pred": (score >= 0.5).astype(int), "sex": sex})


def test_the_evaluate_op_gives_the_library_metrics_and_plots() -> None:
    from medimg.evaluation.classification import binary_metrics
    from medimg.pipeline.cohort import find_cohort_op

    frame = _predictions()
    written: dict = {}
    op = find_cohort_op("evaluate")
    params = op.validate({"n_bootstrap": 200})
    out = op.run(_context(frame, written), params)
    direct = binary_metrics(frame["y_true"], frame["y_score"], frame["y_pred"], n_bootstrap=200, seed=0)
    assert out.metrics["auc"]["value"] == pytest.approx(direct["auc"].value)
    assert out.metrics["auc"]["ci"] == pytest.approx(list(direct["auc"].ci))
    assert out.metrics["sensitivity"]["value"] == pytest.approx(direct["sensitivity"].value)
    assert {"roc.png", "pr.png", "confusion.png", "calibration.png", "metrics.json"} <= set(written)
    assert all(written[k].startswith(b"\x89PNG") for k in written if k.endswith(".png"))


def test_the_audit_op_flags_a_planted_gap_and_not_a_null_one() -> None:
    from medimg.pipeline.cohort import find_cohort_op

    op = find_cohort_op("audit")
    params = op.validate({"n_bootstrap": 400})
    planted = op.run(_context(_predictions(n=1200, gap=1.4, seed=1), {}, subgroups=["sex"]), params)
    assert planted.extra["n_flagged"] >= 1
    null = op.run(_context(_predictions(n=1200, gap=0.0, seed=2), {}, subgroups=["sex"]), params)
    assert null.extra["n_flagged"] == 0
    with pytest.raises(Exception, match="subgroup columns"):
        op.run(_context(_predictions(), {}), params)


def test_model_evaluate_audit_and_embedding_run_as_cohort_steps(tmp_path: Path) -> None:
    from medimg import Image, io

    rng = np.random.default_rng(3)
    rows = ["case,image,mask,outcome,patient,sex"]
    z, y, x = np.indices((8, 20, 20))
    sphere = ((z - 4) * 2.0) ** 2 + (y - 10.0) ** 2 + (x - 10.0) ** 2 < 30
    for k in range(30):
        label = k % 3 == 0
        contrast = 40.0 + 15.0 * label + rng.normal(0, 8)
        array = (100.0 + contrast * sphere + rng.normal(0, 5, sphere.shape)).astype(np.float32)
        image = Image.from_geometry(array, spacing=(1.0, 1.0, 2.0))
        io.write(image, tmp_path / f"i{k}.nii.gz")
        io.write(image.with_array(sphere.astype(np.uint8), meta={}), tmp_path / f"m{k}.nii.gz")
        rows.append(f"c{k},i{k}.nii.gz,m{k}.nii.gz,{int(label)},p{k // 2},{'FM'[k % 2]}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    data = {"name": "cohort-ops", "seed": 1,
            "inputs": {"cases": "cases.csv", "label_column": "outcome", "group_column": "patient",
                       "subgroup_columns": ["sex"]},
            "steps": [{"id": "radiomics", "op": "features", "params": {"preset": "default", "families": ["stat"]}}],
            "cohort": [{"id": "clf", "op": "model", "params": {"imbalance": "smote", "tune": "random", "trials": 3,
                                                               "folds": 3, "n_bootstrap": 200}},
                       {"id": "perf", "op": "evaluate", "params": {"n_bootstrap": 200}},
                       {"id": "fair", "op": "audit", "params": {"n_bootstrap": 200}},
                       {"id": "pca", "op": "embedding", "inputs": {"table": "radiomics"}}]}
    result = run_study(study_from_mapping(data), tmp_path / "out", base=tmp_path, scheduler="serial")
    assert not result.failures
    out = tmp_path / "out"
    predictions = pd.read_csv(out / "cohort/clf/predictions.csv", dtype={"case": str})
    assert sorted(predictions["case"]) == sorted(f"c{k}" for k in range(30))
    assert {"y_true", "y_score", "y_pred", "fold", "patient", "sex"} <= set(predictions.columns)
    # no patient is split across folds
    assert (predictions.groupby("patient")["fold"].nunique() == 1).all()
    perf = json.loads((out / "cohort/perf/result.json").read_text())
    from medimg.evaluation.classification import binary_metrics

    direct = binary_metrics(predictions["y_true"], predictions["y_score"], predictions["y_pred"],
                            cluster=predictions["patient"].astype(str).to_numpy(), n_bootstrap=200, seed=0)
    assert perf["metrics"]["auc"]["value"] == pytest.approx(direct["auc"].value)
    assert perf["metrics"]["auc"]["value"] > 0.7  # the contrast carries the label
    assert (out / "cohort/fair/gaps.csv").is_file()
    html = (out / "report.html").read_text()
    for heading in ("Model: clf", "Evaluation: perf", "Subgroup audit: fair", "Embedding: pca"):
        assert heading in html
