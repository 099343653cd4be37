"""Learning: CNN training throughput on the CPU (medimg vs MONAI as usually written) and
`medimg model`'s cross-validation vs the same scikit-learn pipeline written by hand.

CNN: the same network (medimg's ``resnet_tiny``: a MONAI ResNet with one basic block per stage,
8-16-32-64 channels, plus dropout and a linear head; the MONAI loop builds it with the same
function and seed), the same images, batch size, optimiser (AdamW) and loss, 1 thread. The
MONAI loop is the tutorial pattern: a ``monai.data.Dataset`` of dicts with a ``Compose`` of
dictionary random transforms (flip, rotate, Gaussian noise, intensity scale and shift) applied
per image, a ``DataLoader`` (shuffled, ``num_workers=0``) and the training loop. medimg
augments a whole batch at once (one ``grid_sample``). Throughput counts training images per
second over whole epochs (validation off in both). A run without augmentation isolates the
network. Medians of 5 runs interleaved between the tools after a warm-up round (``BENCH_REPEATS=1``
for a quick smoke test). `python benchmarks/run.py bench_learning`.

Feature models: a synthetic table (600 rows, 200 patients, 40 features), logistic regression
and random forest, grouped 5-fold cross-validation; the hand-written version is
``Pipeline([StandardScaler, model])`` + ``StratifiedGroupKFold(shuffle, seed)`` +
``cross_val_predict``; out-of-fold AUCs must be equal.
"""

from __future__ import annotations

import os
import time

import numpy as np

from _common import bench_repeats, interleaved, load_average, pin_threads, protocol, write_section

REPEATS = bench_repeats()


def _images(n: int, size: tuple[int, ...], rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    grids = np.meshgrid(*[np.arange(s) for s in size], indexing="ij")
    images, labels = [], []
    for i in range(n):
        img = rng.normal(0, 1, size)
        if i % 2:
            centre = rng.uniform(4, min(size) - 4, len(size))
            img += 2.0 * (sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) <= 9)
        images.append(img.astype(np.float32))
        labels.append(i % 2)
    return images, np.array(labels)


def _monai_loop(images, labels, config, epochs: int, augment: bool) -> float:
    """Images per second of the usual MONAI training loop on the same network."""
    import torch
    from monai import transforms as mt
    from monai.data import DataLoader, Dataset
    from monai.utils import set_determinism

    from medimg.ml.deep.data import prepare_image
    from medimg.ml.deep.networks import build_network

    set_determinism(seed=0)
    torch.manual_seed(0)
    nd = config.spatial_dims
    keys = ["img"]
    aug = [mt.RandFlipd(keys, prob=0.5, spatial_axis=nd - 2), mt.RandFlipd(keys, prob=0.5, spatial_axis=nd - 1),
           mt.RandRotated(keys, range_x=np.deg2rad(config.rotate_deg), prob=1.0, padding_mode="border"),
           mt.RandScaleIntensityd(keys, factors=config.intensity_scale, prob=1.0),
           mt.RandShiftIntensityd(keys, offsets=config.intensity_shift, prob=1.0),
           mt.RandGaussianNoised(keys, prob=1.0, std=config.noise_std)] if augment else []
    transform = mt.Compose([*aug, mt.ToTensord(keys=keys)])
    data = [{"img": prepare_image(img, config), "label": int(y)} for img, y in zip(images, labels, strict=True)]
    loader = DataLoader(Dataset(data, transform=transform), batch_size=config.batch_size, shuffle=True, num_workers=0)
    network = build_network(config)
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    seen, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        network.train()
        for batch in loader:
            optimiser.zero_grad()
            loss = loss_fn(network(batch["img"].as_tensor() if hasattr(batch["img"], "as_tensor") else batch["img"]),
                           batch["label"])
            loss.backward()
            optimiser.step()
            seen += batch["img"].shape[0]
    return seen / (time.perf_counter() - t0)


def _cnn_rows() -> tuple[list[str], str]:
    import torch

    from medimg.ml.deep import CNNConfig, prepare_cases, train_classifier

    torch.set_num_threads(1)
    rows = []
    for label, size, n, epochs in (("2-D 64x64", (64, 64), 256, 3), ("3-D 32^3", (32, 32, 32), 32, 2)):
        images, labels = _images(n, size, np.random.default_rng(0))
        for augment in (True, False):
            extra = {} if augment else {"flip": False, "rotate_deg": 0.0, "noise_std": 0.0, "intensity_shift": 0.0,
                                        "intensity_scale": 0.0}
            cfg = CNNConfig(architecture="resnet_tiny", spatial_dims=len(size), image_size=size, epochs=epochs,
                            batch_size=16, val_fraction=0.0, **extra)
            data = prepare_cases(images, cfg, labels=labels)
            train_classifier(data, config=cfg, seed=0)  # warm-up round, not counted
            _monai_loop(images, labels, cfg, epochs, augment)
            ours, theirs = [], []
            for _ in range(REPEATS):  # interleaved: load from other processes hits both alike
                ours.append(train_classifier(data, config=cfg, seed=0).images_per_second)
                theirs.append(_monai_loop(images, labels, cfg, epochs, augment))
            a, b = float(np.median(ours)), float(np.median(theirs))
            rows.append(f"| {label}, {n} images, {epochs} epochs | {'flip, rotate, noise, intensity' if augment else 'none'} "
                        f"| {a:.0f} | {b:.0f} | {a / b:.2f}x |")
    return rows, f"medians of {REPEATS} runs interleaved between the tools after a warm-up round"


def _feature_rows() -> list[str]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from medimg.ml.validation import cross_validate

    rng = np.random.default_rng(0)
    n, d = 600, 40
    groups = np.repeat(np.arange(200), 3)
    patient_effect = rng.normal(size=200)[groups]
    x = rng.normal(size=(n, d)) + 0.5 * patient_effect[:, None]
    y = (x[:, 0] - x[:, 1] + 0.5 * x[:, 2] + rng.normal(size=n) > 0).astype(int)
    rows = []
    for name, medimg_name, model in (
        ("logistic regression", "logistic", LogisticRegression(max_iter=1000, random_state=0)),
        ("random forest (300 trees)", "random_forest", RandomForestClassifier(n_estimators=300, random_state=0, n_jobs=1)),
    ):
        def by_hand(model=model) -> float:
            pipe = Pipeline([("scale", StandardScaler()), ("model", model)])
            cv = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
            score = cross_val_predict(pipe, x, y, groups=groups, cv=cv, method="predict_proba")[:, 1]
            return float(roc_auc_score(y, score))

        def ours(medimg_name=medimg_name) -> float:
            return cross_validate(x, y, groups=groups, model=medimg_name, folds=5, seed=0).auc

        a_hand, a_ours = by_hand(), ours()
        times = interleaved({"hand": by_hand, "medimg": ours}, repeats=REPEATS)
        rows.append(f"| {name} | {a_ours:.6f} | {a_hand:.6f} | {'yes' if abs(a_ours - a_hand) < 1e-12 else 'NO'} "
                    f"| {times['medimg']:.3f} | {times['hand']:.3f} | {100 * (times['medimg'] / times['hand'] - 1):+.1f} % |")
    return rows


def main() -> None:
    threads = pin_threads(1)
    before = load_average()
    cnn, how = _cnn_rows()
    features = _feature_rows()
    after = load_average()
    head = protocol(threads + "; torch.set_num_threads(1)", before, after,
                    f"medians of {REPEATS} runs interleaved between the tools after a warm-up round (shared "
                    "machine, run with `nice`)")
    body = f"""## Learning: CNN training throughput and feature-model cross-validation

{head}

CNN training on the CPU (images per second over whole training epochs, {how}). Same network (`resnet_tiny`,
MONAI ResNet), data, batch size 16, AdamW, cross-entropy, 1 thread. MONAI column: `Dataset` + `Compose` of
dictionary random transforms + `DataLoader`, the usual tutorial loop. medimg: `train_classifier`
(batched augmentation). medimg and MONAI alternate within a row; rows are measured at different moments of
a shared machine, where the same configuration's throughput varies by up to a third from minute to minute, so
compare within a row, not across rows. In process (images in memory); the end-to-end counterpart
(`medimg train` as a process against a MONAI script) is not measured: start-up (about 1-2 s for torch and MONAI
in both) is small next to a training run.
Comparison: the "none" rows are the same computation (same network, data, batch size, optimiser, loss, epochs);
with augmentation, each tool applies the same kinds of random transforms its own way (medimg per batch, MONAI per
image), not the same random draws.

| data | augmentation | medimg (images/s) | MONAI loop (images/s) | medimg / MONAI |
|---|---|---:|---:|---:|
{chr(10).join(cnn)}

Feature models: grouped 5-fold cross-validation, 600 rows (200 patients) x 40 features; medimg
`cross_validate` (what `medimg model` runs, before its bootstrap CIs, plots and refit) vs the same scikit-learn
pipeline by hand (medians of {REPEATS} interleaved runs after a warm-up; in process, table in memory).
Comparison: the same computation: the same folds, models and seeds, so the out-of-fold AUCs are equal (column "equal").

| model | medimg AUC | by-hand AUC | equal | medimg (s) | by hand (s) | overhead |
|---|---:|---:|---|---:|---:|---:|
{chr(10).join(features)}

`python benchmarks/run.py bench_learning`.
"""
    write_section("learning", body)
    print(body)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
