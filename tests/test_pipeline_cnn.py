"""A CNN cohort step: cross-validated on the kept images of a case step (a crop around each
lesion), grouped by patient, with out-of-fold predictions that the evaluate step reads and
Grad-CAM and occlusion saliency maps in the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medimg import Image, io
from medimg.pipeline.runner import run_study
from medimg.pipeline.study import StudyError, study_from_mapping

pytest.importorskip("torch")
pytest.importorskip("monai")


def _case(rng: np.random.Generator, bright: bool) -> tuple[Image, Image]:
    """A 3-D scan (1 mm) with one spherical lesion at a random place: 250 HU when ``bright``,
    else 60 HU, on a 0 HU background with noise (SD 20)."""
    shape = (20, 40, 40)
    zz, yy, xx = np.indices(shape)
    centre = rng.uniform([8, 12, 12], [12, 28, 28])
    inside = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= 4.0**2
    values = rng.normal(0, 20, size=shape) + np.where(inside, 250.0 if bright else 60.0, 0.0)
    image = Image.from_geometry(values.astype(np.float32), spacing=(1.0, 1.0, 1.0))
    return image, image.with_array(inside.astype(np.uint8))


@pytest.fixture(scope="module")
def cnn_cohort(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cnn")
    rng = np.random.default_rng(3)
    rows = ["case,image,mask,bright,patient,sex"]
    for k in range(32):  # 24 patients; eight of them with a second lesion
        patient = f"pt{k % 24}"
        image, mask = _case(rng, bright=bool(k % 2))
        io.write(image, folder / f"img{k}.nii.gz")
        io.write(mask, folder / f"mask{k}.nii.gz")
        rows.append(f"c{k},img{k}.nii.gz,mask{k}.nii.gz,{k % 2},{patient},{'FM'[(k // 2) % 2]}")
    (folder / "cases.csv").write_text("\n".join(rows) + "\n")
    return folder


def _study(n_saliency: int = 2, keep: bool = True) -> dict:
    return {
        "name": "cnn", "seed": 1,
        "inputs": {"cases": "cases.csv", "label_column": "bright", "group_column": "patient",
                   "subgroup_columns": ["sex"]},
        "steps": [{"id": "crop", "op": "crop_to_mask", "inputs": {"image": "image", "mask": "mask"},
                   "params": {"margin_mm": 4.0}, "keep": keep}],
        "cohort": [
            {"id": "net", "op": "cnn", "inputs": {"images": "crop"},
             "params": {"image_size": [12, 12, 12], "intensity_window": [-100, 400], "epochs": 30, "folds": 3,
                        "batch_size": 8, "learning_rate": 0.01, "patience": 30, "n_saliency": n_saliency}},
            {"id": "net_performance", "op": "evaluate", "inputs": {"predictions": "net"},
             "params": {"n_bootstrap": 200}},
        ],
    }


def test_cnn_step_predicts_out_of_fold_and_shows_saliency(cnn_cohort: Path) -> None:
    out = cnn_cohort / "out"
    result = run_study(study_from_mapping(_study()), out, base=cnn_cohort, scheduler="serial")
    assert not result.failures, result.failures
    table = pd.read_csv(out / "cohort/net/predictions.csv", dtype={"case": str})
    assert sorted(table["case"]) == sorted(f"c{k}" for k in range(32))
    assert table["y_score"].between(0, 1).all()
    # grouped folds: a patient's lesions are predicted by one fold's model
    assert (table.groupby("patient")["fold"].nunique() == 1).all()
    # a bright lesion is an easy answer: the held-out scores separate the classes
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(table["y_true"], table["y_score"]) >= 0.8
    res = json.loads((out / "cohort/net/result.json").read_text())
    for method in ("Grad-CAM", "Occlusion"):  # both maps for each of the 2 cases shown
        saliency = [f for f in res["figures"] if f["caption"].startswith(method)]
        assert len(saliency) == 2 and all((out / f["path"]).is_file() for f in saliency)
    evaluated = json.loads((out / "cohort/net_performance/result.json").read_text())
    assert evaluated["metrics"]["auc"]["value"] == pytest.approx(roc_auc_score(table["y_true"], table["y_score"]))
    report = (out / "report.html").read_text()
    assert "Grad-CAM saliency" in report and "Occlusion saliency" in report
    # the kept crop: the lesion's box (radius 4 mm) grown by 4 mm, the same voxels as the scan's
    crop = io.read(out / "cases" / "c3" / "crop.nii.gz")
    scan = io.read(cnn_cohort / "img3.nii.gz")
    assert all(n <= 17 for n in crop.shape)
    lo = np.round(scan.physical_to_index(crop.index_to_physical(np.zeros((1, 3))))[0]).astype(int)[::-1]
    box = tuple(slice(a, a + n) for a, n in zip(lo, crop.shape, strict=True))
    np.testing.assert_array_equal(crop.array, scan.array[box])


def test_cnn_step_needs_kept_images() -> None:
    with pytest.raises(StudyError) as err:
        study_from_mapping(_study(keep=False))
    assert err.value.where == "cohort[0].inputs.images" and "keep: true" in err.value.problem


def test_crop_to_mask_keeps_the_geometry() -> None:
    from medimg.core.crop import crop_to_mask
    from medimg.errors import ParameterError

    rng = np.random.default_rng(0)
    image = Image.from_geometry(rng.normal(size=(20, 30, 40)).astype(np.float32), spacing=(0.5, 1.0, 2.0),
                                origin=(10.0, 20.0, 30.0))
    mask = np.zeros((20, 30, 40), np.uint8)
    mask[5:8, 10:12, 20:25] = 1
    crop = crop_to_mask(image, image.with_array(mask), margin_mm=2.0)
    # 2 mm: 4 voxels in x (0.5 mm), 2 in y, 1 in z
    np.testing.assert_array_equal(crop.array, image.array[4:9, 8:14, 16:29])
    np.testing.assert_allclose(crop.index_to_physical(np.array([[0.0, 0.0, 0.0]])),
                               image.index_to_physical(np.array([[16.0, 8.0, 4.0]])))
    with pytest.raises(ParameterError, match="empty"):
        crop_to_mask(image, image.with_array(np.zeros_like(mask)))
    # 2-D: 1 mm is 2 voxels in x (0.5 mm), 1 in y (2 mm, rounded up)
    flat = Image.from_geometry(np.arange(200, dtype=np.float32).reshape(10, 20), spacing=(0.5, 2.0), origin=(3.0, 4.0))
    mask2 = np.zeros((10, 20), np.uint8)
    mask2[4:6, 8:10] = 1
    crop2 = crop_to_mask(flat, flat.with_array(mask2), margin_mm=1.0)
    np.testing.assert_array_equal(crop2.array, flat.array[3:7, 6:12])
    np.testing.assert_allclose(crop2.origin[:2], (3.0 + 6 * 0.5, 4.0 + 3 * 2.0))
