"""Explanations (medimg.ml.explain): known answers.

Images whose class is decided by a bright blob at one place: Grad-CAM (equal to MONAI's
GradCAM) and occlusion put their mass there. A feature table where only one feature matters:
its permutation importance and Shapley contributions dominate. Linear models: the
contributions are exactly coefficient x (standardised x - standardised mean); for a forest
they match Shapley values enumerated over all coalitions, and always add up to the log-odds.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from medimg import Image
from medimg.errors import ParameterError

_BLOB = (8, 8)


def _blob_images(n: int, rng: np.random.Generator, size: int = 32) -> tuple[list[np.ndarray], np.ndarray]:
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - _BLOB[0]) ** 2 + (xx - _BLOB[1]) ** 2) <= 9
    images = [(rng.normal(0, 1, (size, size)) + 2.5 * (i % 2) * disc).astype(np.float32) for i in range(n)]
    return images, np.arange(n) % 2


@pytest.fixture(scope="module")
def blob_model():
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from medimg.ml.deep import CNNConfig, train_classifier

    images, labels = _blob_images(120, np.random.default_rng(0))
    cfg = CNNConfig(architecture="resnet_tiny", image_size=(32, 32), epochs=6, learning_rate=3e-3, flip=False,
                    rotate_deg=0.0, val_fraction=0.2)
    result = train_classifier(images, labels, config=cfg, seed=0)
    assert result.metrics["val_auc"] > 0.95
    return result.model


def _mass_near_blob(heat: np.ndarray, radius: float) -> float:
    yy, xx = np.mgrid[: heat.shape[0], : heat.shape[1]]
    near = ((yy - _BLOB[0]) ** 2 + (xx - _BLOB[1]) ** 2) <= radius**2
    pos = np.clip(heat, 0, None)
    return float(pos[near].sum() / pos.sum())


def test_grad_cam_concentrates_on_the_deciding_blob_and_equals_monai_gradcam(blob_model) -> None:
    import torch
    from monai.visualize import GradCAM

    from medimg.ml.deep.data import prepare_image
    from medimg.ml.explain import grad_cam

    images, _ = _blob_images(10, np.random.default_rng(1))
    area = math.pi * 8**2 / 32**2  # the disc of radius 8 around the blob: 20 % of the image
    reference = GradCAM(nn_module=blob_model.network, target_layers="backbone.layer4")
    cams = []
    for img in images[1::2]:
        cam = grad_cam(blob_model, img).array  # the last stage: a 4 x 4 map, coarse
        assert cam.shape == img.shape and 0.0 <= cam.min() and cam.max() == pytest.approx(1.0)
        cams.append(cam)
        ours = grad_cam(blob_model, img, input_space=True).array
        theirs = reference(torch.from_numpy(prepare_image(img, blob_model.config)[None]), class_idx=1)[0, 0].numpy()
        np.testing.assert_allclose(ours, 1.0 - theirs, atol=1e-5)  # MONAI's normaliser maps (min, max) to (1, 0)
    # over training seeds 0-4 the mean map holds 1.5-1.9x its area's share near the blob, its peak within
    # one 8-pixel cell of it (Grad-CAM is coarse and seed-dependent; occlusion below is sharper)
    mean = np.mean(cams, axis=0)
    assert _mass_near_blob(mean, 8) > 1.4 * area
    assert math.dist(np.unravel_index(np.argmax(mean), mean.shape), _BLOB) < 6.5
    finer = grad_cam(blob_model, images[1], layer="backbone.layer3")
    assert finer.shape == (32, 32) and not np.allclose(finer.array, cams[0])
    with pytest.raises(ParameterError, match="did you mean 'backbone.layer4'"):
        grad_cam(blob_model, images[1], layer="backbone.layer5")


def test_occlusion_sensitivity_peaks_at_the_blob_on_the_image_grid(blob_model, tmp_path: Path) -> None:
    from medimg.ml.explain import occlusion_sensitivity, save_overlay

    img = _blob_images(2, np.random.default_rng(2))[0][1]
    # the image on a 0.5 mm grid, 48 x 48 voxels: the map comes back on that grid
    from medimg.ml.deep.data import resize

    fine = Image(resize(img, (48, 48)), np.diag([0.5 * 32 / 48] * 2 + [1.0, 1.0]))
    occ = occlusion_sensitivity(blob_model, fine, patch_mm=3.0)
    assert occ.shape == (48, 48) and np.allclose(occ.affine, fine.affine)
    peak = np.unravel_index(np.argmax(occ.array), occ.shape)
    assert math.dist(np.array(peak) * 32 / 48, _BLOB) < 4.0
    coarse = occlusion_sensitivity(blob_model, img, patch_mm=4.0)
    assert _mass_near_blob(coarse.array, 8) > 0.5
    png = save_overlay(fine, occ, tmp_path / "occ.png", title="occlusion")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ParameterError, match="target"):
        occlusion_sensitivity(blob_model, img, target=5)


def _table(n: int, rng: np.random.Generator, k: int = 2, d: int = 5):
    pd = pytest.importorskip("pandas")
    x = rng.normal(size=(n, d))
    y = (x[:, k] + 0.3 * rng.normal(size=n) > 0).astype(int)
    return pd.DataFrame(x, columns=[f"f{j}" for j in range(d)]), y


def test_permutation_importance_and_contributions_single_out_the_only_informative_feature() -> None:
    pytest.importorskip("sklearn")
    from medimg.ml.explain import permutation_importance, shapley_contributions
    from medimg.ml.models import fit_pipeline

    rng = np.random.default_rng(0)
    train, y = _table(200, rng)
    test, y_test = _table(100, rng)
    for name in ("logistic", "rf"):
        model = fit_pipeline(train, y, model=name, seed=0)
        ranking = permutation_importance(model, test, y_test, n_repeats=5, seed=0)
        assert ranking[0]["feature"] == "f2" and ranking[0]["importance"] > 5 * max(0.01, ranking[1]["importance"])
        contrib = shapley_contributions(model, test.iloc[:30], background=train, n_permutations=8, max_background=20)
        order = list(contrib.mean_abs())
        assert order[0] == "f2" and contrib.mean_abs()["f2"] > 3 * contrib.mean_abs()[order[1]]


def test_linear_contributions_are_exact_and_all_contributions_add_up() -> None:
    pytest.importorskip("sklearn")
    from medimg.ml.explain import shapley_contributions
    from medimg.ml.models import fit_pipeline

    rng = np.random.default_rng(1)
    train, y = _table(150, rng, d=4)
    model = fit_pipeline(train, y, model="logistic", seed=0)
    contrib = shapley_contributions(model, train.iloc[:20], n_permutations=2, seed=3)
    scaler, logistic = model.pipeline.named_steps["scale"], model.pipeline.named_steps["model"]
    z = scaler.transform(train.iloc[:20].to_numpy())
    zbar = scaler.transform(train.iloc[:20].to_numpy().mean(0, keepdims=True))
    np.testing.assert_allclose(contrib.values, logistic.coef_[0] * (z - zbar), atol=1e-8)
    np.testing.assert_allclose(contrib.base + contrib.values.sum(1), contrib.log_odds, atol=1e-8)


def test_forest_contributions_match_shapley_values_enumerated_over_all_coalitions() -> None:
    pytest.importorskip("sklearn")
    from sklearn.ensemble import RandomForestClassifier

    from medimg.ml.explain import shapley_contributions

    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 4))
    y = ((x[:, 0] > 0) & (x[:, 1] + 0.5 * x[:, 2] > 0)).astype(int)  # an interaction
    forest = RandomForestClassifier(n_estimators=30, min_samples_leaf=5, random_state=0).fit(x, y)
    cases, background = x[:3], x[100:103]

    def f(rows: np.ndarray) -> np.ndarray:
        p = np.clip(forest.predict_proba(rows)[:, 1], 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p))

    d = 4
    exact = np.zeros((3, d))
    for i in range(3):
        for j in range(d):
            others = [k for k in range(d) if k != j]
            for size in range(d):
                for subset in itertools.combinations(others, size):
                    w = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
                    with_j, without = background.copy(), background.copy()
                    for k in subset:
                        with_j[:, k] = without[:, k] = cases[i, k]
                    with_j[:, j] = cases[i, j]
                    exact[i, j] += w * float(np.mean(f(with_j) - f(without)))
    estimate = shapley_contributions(forest, cases, background=background, n_permutations=400, seed=0)
    np.testing.assert_allclose(estimate.base + estimate.values.sum(1), f(cases), atol=1e-9)  # efficiency, exact
    np.testing.assert_allclose(estimate.values, exact, atol=0.08 * np.abs(exact).max())


def test_maps_of_a_3d_network_lie_on_the_volume_grid() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from medimg.ml.deep import CNNConfig, train_classifier
    from medimg.ml.explain import grad_cam, occlusion_sensitivity

    rng = np.random.default_rng(4)
    zz, yy, xx = np.mgrid[:10, :20, :20]
    affine = np.diag([0.6, 0.6, 2.5, 1.0])
    vols = [Image((rng.normal(0, 1, (10, 20, 20)) + 3.0 * (i % 2) * (((zz - 3) ** 2 + (yy - 5) ** 2 + (xx - 5) ** 2) <= 6)
                   ).astype(np.float32), affine) for i in range(16)]
    cfg = CNNConfig(spatial_dims=3, image_size=(8, 16, 16), epochs=3, learning_rate=3e-3, val_fraction=0.0, flip=False)
    model = train_classifier(vols, np.arange(16) % 2, config=cfg, seed=0).model
    for heat in (grad_cam(model, vols[1]), occlusion_sensitivity(model, vols[1], patch_mm=4.0)):
        assert heat.shape == (10, 20, 20) and np.allclose(heat.affine, affine)
        assert np.all(np.isfinite(heat.array))


def test_cli_importance_ranks_the_informative_feature_and_writes_additive_contributions(tmp_path: Path, capsys) -> None:
    pd = pytest.importorskip("pandas")
    from medimg.cli.main import main
    from medimg.ml.models import fit_pipeline, save_pipeline

    rng = np.random.default_rng(5)
    train, y = _table(150, rng)
    test, y_test = _table(80, rng)
    save_pipeline(fit_pipeline(train, y, model="logistic", seed=0), tmp_path / "model")
    test.assign(case=[f"c{i}" for i in range(80)], label=y_test).to_csv(tmp_path / "test.csv", index=False)
    train.to_csv(tmp_path / "train.csv", index=False)
    assert main(["importance", str(tmp_path / "model"), str(tmp_path / "test.csv"), "--label", "label",
                 "--background", str(tmp_path / "train.csv"), "--permutations", "4", "--repeats", "3",
                 "-o", str(tmp_path / "imp")]) == 0
    assert "top: f2" in capsys.readouterr().out
    importance = pd.read_csv(tmp_path / "imp" / "importance.csv")
    assert importance.feature.iloc[0] == "f2" and importance.permutation_auc_drop.iloc[0] > 0.2
    contributions = pd.read_csv(tmp_path / "imp" / "contributions.csv")
    assert list(contributions.case[:2]) == ["c0", "c1"]
    features = [f"f{j}" for j in range(5)]
    np.testing.assert_allclose(contributions[features].sum(axis=1) + contributions.base, contributions.log_odds, atol=1e-6)
    assert main(["importance", str(tmp_path / "model"), str(tmp_path / "test.csv"), "--label", "labels",
                 "-o", str(tmp_path / "x")]) == 2
    assert "did you mean 'label'" in capsys.readouterr().err
