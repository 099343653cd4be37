"""U-Net: determinism with a seed, checkpoints, sliding-window inference geometry, and (slow) Dice on the
synthetic cohort."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from medimg import Image  # noqa: E402
from medimg.datasets import ellipsoid_mask  # noqa: E402
from medimg.errors import FileFormatError, ParameterError  # noqa: E402
from medimg.pipeline.unet import train_unet_on_cohort  # noqa: E402
from medimg.segmentation import segment  # noqa: E402
from medimg.segmentation.unet import (  # noqa: E402
    UNetConfig,
    load_checkpoint,
    predict,
    train_unet,
)
from medimg.segmentation.unet.data import apply_patch_params, sample_patch_params  # noqa: E402

TINY = UNetConfig(channels=(4, 8), strides=(2,), num_res_units=0, patch_size=(16, 16), batch_size=4,
                  max_steps=6, val_interval=3, patience=5, num_threads=1, sw_batch_size=2)


def _volumes(n: int, seed: int = 0) -> tuple[list[Image], list[Image]]:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        centre = np.array([rng.uniform(7, 13), rng.uniform(7, 13), rng.uniform(4, 6)])
        truth = ellipsoid_mask((6, 20, 20), centre, (4.0, 4.0, 5.0), (1.0, 1.0, 2.0))
        values = np.where(truth, 100.0, 0.0) + rng.normal(0, 10, truth.shape)
        image = Image.from_geometry(values.astype(np.float32), spacing=(1.0, 1.0, 2.0), origin=(5, -3, 20))
        images.append(image)
        labels.append(image.with_array(truth.astype(np.uint8), meta={}))
    return images, labels


def test_same_seed_same_weights_and_patches(tmp_path: Path):
    images, labels = _volumes(3)
    a = train_unet(images[:2], labels[:2], val_images=images[2:], val_labels=labels[2:], config=TINY, seed=7)
    b = train_unet(images[:2], labels[:2], val_images=images[2:], val_labels=labels[2:], config=TINY, seed=7)
    c = train_unet(images[:2], labels[:2], config=TINY, seed=8)
    sa, sb, sc = (r.model.network.state_dict() for r in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.history == b.history and len(a.history) == 2 and c.best_val_dice is None
    # patches: sampled once, applied deterministically
    from medimg.segmentation.unet.train import _cases

    cases, _ = _cases(images, labels, TINY, "training")
    params = sample_patch_params(np.random.default_rng(1), cases, TINY)
    x1, y1 = apply_patch_params(cases, params, TINY)
    x2, y2 = apply_patch_params(cases, params, TINY)
    assert x1.shape == (16, 16) and np.array_equal(x1, x2) and np.array_equal(y1, y2)


def test_class_balanced_patches_hit_the_foreground():
    images, labels = _volumes(2)
    from medimg.segmentation.unet.train import _cases

    cfg = UNetConfig(channels=(4, 8), strides=(2,), patch_size=(16, 16), pos_fraction=1.0)
    cases, _ = _cases(images, labels, cfg, "training")
    rng = np.random.default_rng(0)
    hits = [apply_patch_params(cases, sample_patch_params(rng, cases, cfg), cfg)[1].any() for _ in range(20)]
    assert all(hits)


def test_checkpoint_round_trip_and_inference_geometry(tmp_path: Path):
    images, labels = _volumes(3)
    path = tmp_path / "model.pt"
    result = train_unet(images[:2], labels[:2], val_images=images[2:], val_labels=labels[2:], config=TINY,
                        seed=0, checkpoint_path=path)
    model = load_checkpoint(path)
    assert model.config == TINY and model.spacing_mm == (1.0, 1.0, 2.0)
    assert model.info["seed"] == 0 and "medimg_version" in model.info and model.info["history"]
    for key, value in result.model.network.state_dict().items():
        assert torch.equal(value, model.network.state_dict()[key])
    image = images[2]
    out = predict(image, model)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out.affine, image.affine)
    np.testing.assert_array_equal(out.array, predict(image, path).array)
    np.testing.assert_array_equal(out.array, segment(image, "unet", checkpoint=str(path)).array)
    # a finer grid is resampled to the model's spacing and back
    fine = Image.from_geometry(np.repeat(image.array, 2, axis=2), spacing=(0.5, 1.0, 2.0), origin=image.origin)
    out_fine = predict(fine, model)
    assert out_fine.shape == fine.shape and out_fine.meta["history"][-1]["resampled"]
    with pytest.raises(ParameterError, match="resample"):
        predict(fine, model, resample=False)
    roi = image.with_array(np.zeros(image.shape, np.uint8))
    assert predict(image, model, mask=roi).array.max() == 0


def test_checkpoint_errors(tmp_path: Path):
    with pytest.raises(ParameterError, match="local file"):
        load_checkpoint("https://example.org/model.pt")
    with pytest.raises(FileFormatError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"something": 1}, bad)
    with pytest.raises(FileFormatError, match="not a medimg U-Net checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(ParameterError, match="divisible"):
        UNetConfig(patch_size=(30, 30))
    images, labels = _volumes(1)
    wrong = labels[0].with_array(labels[0].array * 3)
    with pytest.raises(ParameterError, match="n_classes"):
        train_unet(images, [wrong], config=TINY)


def test_three_d_network_trains_and_predicts():
    images, labels = _volumes(2)
    cfg = UNetConfig(spatial_dims=3, channels=(4, 8), strides=(2,), num_res_units=0, patch_size=(4, 16, 16),
                     batch_size=2, max_steps=2, val_interval=2, num_threads=1)
    result = train_unet(images[:1], labels[:1], val_images=images[1:], val_labels=labels[1:], config=cfg, seed=0)
    out = predict(images[1], result.model)
    assert out.shape == images[1].shape and out.dtype == np.uint8


@pytest.mark.slow
def test_unet_on_synthetic_cohort_reaches_dice_085(tmp_path: Path):
    from medimg.datasets import make_cohort

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cohort = make_cohort(tmp_path / "cohort", n_patients=14, seed=0, followup_fraction=0.0)
    result = train_unet_on_cohort(cohort, tmp_path / "unet", n_val=2, n_test=4, seed=0)
    elapsed = time.perf_counter() - t0
    assert result.mean_test_dice >= 0.85, result.test_dice
    assert set(result.test_patients).isdisjoint(result.train_patients + result.val_patients)
    assert (tmp_path / "unet" / "unet.pt").is_file() and (tmp_path / "unet" / "unet_metrics.json").is_file()
    assert elapsed < 240, elapsed
