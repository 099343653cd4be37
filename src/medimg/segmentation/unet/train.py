"""Training a U-Net: seeded patch sampling, Dice + cross-entropy loss, validation Dice, early
stopping, best-model checkpoint; and :func:`train_on_cohort` for the synthetic CT cohort."""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.files import atomic_path
from medimg.core.image import Image
from medimg.core.optional import require
from medimg.errors import ParameterError
from medimg.segmentation.unet.config import UNetConfig
from medimg.segmentation.unet.data import Case, make_batch, normalise
from medimg.segmentation.unet.infer import UNetModel, build_network, predict, save_checkpoint

__all__ = ["TrainResult", "train_unet", "CohortTrainingResult", "train_on_cohort"]


@dataclass
class TrainResult:
    """What :func:`train_unet` produced.

    Attributes
    ----------
    model
        The best model (highest validation Dice; the last one without validation data).
    checkpoint
        Where it was saved (``None`` when no path was given).
    best_val_dice
        Its mean foreground Dice on the validation volumes (``None`` without validation data).
    steps
        Optimiser steps taken.
    stopped_early
        True when early stopping ended the training before ``max_steps``.
    history
        One entry per validation: step, mean training loss since the previous one, val Dice.
    seconds
        Wall time of the training.
    """

    model: UNetModel
    checkpoint: Path | None
    best_val_dice: float | None
    steps: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _cases(images: Sequence[Image], labels: Sequence[Image], config: UNetConfig, what: str) -> tuple[list[Case], tuple[float, float, float]]:
    if len(images) != len(labels):
        raise ParameterError(f"{what}: {len(images)} images but {len(labels)} label maps")
    if not images:
        raise ParameterError(f"{what}: no images")
    cases = []
    spacing = np.asarray(images[0].spacing, dtype=float)
    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        image.check_same_grid(label, names=(f"{what} image {k}", f"{what} label {k}"))
        if image.spatial_ndim != 3:
            raise ParameterError(f"{what} image {k} must be 3-D (z, y, x), got {image.spatial_ndim}-D")
        sp = np.asarray(image.spacing, dtype=float)
        if np.max(np.abs(sp - spacing) / spacing) > 0.05:
            msg = (f"{what} image {k} has spacing {tuple(sp)} mm, image 0 has {tuple(spacing)} mm; "
                   "resample the training images onto one spacing first")
            raise ParameterError(msg)
        lab = np.asarray(label.array)
        if lab.min() < 0 or lab.max() >= config.n_classes:
            msg = (f"{what} label {k} has values {int(lab.min())}..{int(lab.max())}; "
                   f"expected 0..{config.n_classes - 1} (n_classes={config.n_classes})")
            raise ParameterError(msg)
        lab = lab.astype(np.uint8)
        cases.append(Case(normalise(image.array, config.intensity_window), lab, np.argwhere(lab > 0)))
    return cases, tuple(float(v) for v in spacing)  # type: ignore[return-value]


def _mean_dice(model: UNetModel, images: Sequence[Image], labels: Sequence[Image]) -> float:
    from medimg.evaluation import dice

    scores = []
    for image, label in zip(images, labels, strict=True):
        pred = predict(image, model, resample=False, spacing_tolerance=1.0)
        for c in range(1, model.config.n_classes):
            scores.append(dice(pred, label, label=c))
    return float(np.mean(scores))


def train_unet(
    images: Sequence[Image],
    labels: Sequence[Image],
    *,
    val_images: Sequence[Image] = (),
    val_labels: Sequence[Image] = (),
    config: UNetConfig | None = None,
    seed: int = 0,
    checkpoint_path: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a MONAI U-Net on label maps; keep the model with the best validation Dice.

    Each step draws ``batch_size`` patches (class-balanced: ``pos_fraction`` of them centred on
    foreground; axial slices for a 2-D network), augments them (flips, quarter turns, intensity
    shift/scale, noise) and minimises Dice + cross-entropy with Adam and a cosine learning-rate
    schedule. Every ``val_interval`` steps the mean foreground Dice of the whole validation
    volumes is measured; training stops after ``patience`` validations without improvement.

    Parameters
    ----------
    images, labels
        Training volumes (3-D, one spacing) and their label maps (classes ``0..n_classes-1``).
    val_images, val_labels
        Validation volumes and labels (same spacing); empty: no validation or early stopping.
    config
        Network and training settings (:class:`UNetConfig`; ``None``: the defaults).
    seed
        Seeds the weights' initialisation, the patches and the augmentation: the same seed and
        data give the same weights (on the same machine and thread count).
    checkpoint_path
        Where to save the best model (atomically), or ``None``.
    log
        Called with one line per validation.

    Returns
    -------
    TrainResult
    """
    torch = require("torch", extra="dl")
    losses = require("monai.losses", extra="dl")
    config = UNetConfig() if config is None else config
    cases, spacing = _cases(images, labels, config, "training")
    if len(val_images) != len(val_labels):
        raise ParameterError(f"validation: {len(val_images)} images but {len(val_labels)} label maps")
    if val_images:
        _cases(val_images, val_labels, config, "validation")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    t0 = time.perf_counter()
    try:
        torch.manual_seed(int(seed))
        rng = np.random.default_rng(int(seed))
        network = build_network(config)
        optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.max_steps)
        loss_fn = losses.DiceCELoss(to_onehot_y=True, softmax=True)
        model = UNetModel(network, config, spacing, {"seed": int(seed)})
        best, best_state, bad, stopped_early = -math.inf, None, 0, False
        history: list[dict[str, float]] = []
        running: list[float] = []
        step = 0
        for step in range(1, config.max_steps + 1):
            network.train()
            x, y = make_batch(rng, cases, config)
            optimiser.zero_grad()
            loss = loss_fn(network(torch.from_numpy(x)), torch.from_numpy(y))
            loss.backward()
            optimiser.step()
            schedule.step()
            running.append(float(loss.detach()))
            if not val_images or (step % config.val_interval and step != config.max_steps):
                continue
            val = _mean_dice(model, val_images, val_labels)
            entry = {"step": step, "loss": float(np.mean(running)), "val_dice": val}
            history.append(entry)
            running = []
            if log is not None:
                log(f"  step {step}: loss {entry['loss']:.3f}, validation Dice {val:.3f}")
            if val > best + 1e-4:
                best, best_state, bad = val, copy.deepcopy(network.state_dict()), 0
            else:
                bad += 1
                if bad >= config.patience:
                    stopped_early = step < config.max_steps
                    break
        if best_state is not None:
            network.load_state_dict(best_state)
        network.eval()
        seconds = time.perf_counter() - t0
        model.info.update({"history": history, "best_val_dice": None if best_state is None else float(best),
                           "steps": step, "train_seconds": seconds})
        path = save_checkpoint(model, checkpoint_path) if checkpoint_path is not None else None
    finally:
        torch.set_num_threads(previous_threads)
    return TrainResult(model, path, None if best_state is None else float(best), step, stopped_early,
                       history, seconds)


@dataclass
class CohortTrainingResult:
    """What :func:`train_on_cohort` produced (also written to ``unet_metrics.json``).

    Attributes
    ----------
    checkpoint
        The trained model's checkpoint.
    train_patients, val_patients, test_patients
        The patient split (by patient, baseline studies).
    test_dice
        Dice of the lesion on each held-out (test) patient.
    mean_test_dice
        Their mean.
    best_val_dice
        Best validation Dice during training.
    steps
        Optimiser steps.
    train_seconds, total_seconds
        Training time and the whole call's time (reading, training, testing).
    """

    checkpoint: Path
    train_patients: list[str]
    val_patients: list[str]
    test_patients: list[str]
    test_dice: dict[str, float]
    mean_test_dice: float
    best_val_dice: float | None
    steps: int
    train_seconds: float
    total_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        out = dict(self.__dict__)
        out["checkpoint"] = str(self.checkpoint)
        return out


def train_on_cohort(
    cohort: Any,
    out_dir: str | Path,
    *,
    n_val: int = 2,
    n_test: int = 4,
    n_train: int | None = None,
    config: UNetConfig | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> CohortTrainingResult:
    """Train a lesion U-Net on a synthetic cohort (:func:`medimg.datasets.make_cohort`) and test it.

    The baseline studies are split by patient (seeded): ``n_test`` held-out test patients,
    ``n_val`` validation patients, and ``n_train`` (default: the rest) training patients. The
    model (2-D on axial slices by default) is trained with :func:`train_unet`, saved to
    ``out_dir/unet.pt``, and its Dice on each test patient's lesion mask is written with the
    split and timings to ``out_dir/unet_metrics.json``.

    Parameters
    ----------
    cohort
        A :class:`~medimg.datasets.Cohort` or the folder of one.
    out_dir
        Output folder (created).
    n_val, n_test, n_train
        Split sizes (patients).
    config
        Training settings (``None``: :class:`UNetConfig` defaults, a 2-D network on slices).
    seed
        Seeds the split and the training.
    log
        Progress lines.

    Returns
    -------
    CohortTrainingResult
    """
    from medimg import io
    from medimg.datasets import Cohort, load_cohort
    from medimg.evaluation import dice

    t0 = time.perf_counter()
    config = UNetConfig() if config is None else config
    if not isinstance(cohort, Cohort):
        cohort = load_cohort(cohort)
    rows = [row for row in cohort.rows if row.timepoint == 0]
    n_needed = n_val + n_test + (n_train or 1)
    if len(rows) < n_needed or n_val < 0 or n_test < 1:
        msg = (f"train_on_cohort: {len(rows)} patients, need at least {n_needed} "
               f"(n_train={n_train}, n_val={n_val}, n_test={n_test}, n_test >= 1)")
        raise ParameterError(msg)
    order = np.random.default_rng(int(seed)).permutation(len(rows))
    test_rows = [rows[i] for i in order[:n_test]]
    val_rows = [rows[i] for i in order[n_test:n_test + n_val]]
    rest = [rows[i] for i in order[n_test + n_val:]]
    train_rows = rest if n_train is None else rest[:n_train]

    def load(selected: list[Any]) -> tuple[list[Image], list[Image]]:
        images, labels = [], []
        for row in selected:
            image = io.read(cohort.ct_dir(row))
            mask = io.read(cohort.mask_path(row))
            images.append(image)
            labels.append(image.with_array((mask.array != 0).astype(np.uint8), meta={}))
        return images, labels

    if log is not None:
        log(f"U-Net: {len(train_rows)} training, {len(val_rows)} validation, {len(test_rows)} test patients")
    train_x, train_y = load(train_rows)
    val_x, val_y = load(val_rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = train_unet(train_x, train_y, val_images=val_x, val_labels=val_y, config=config, seed=seed,
                        checkpoint_path=out / "unet.pt", log=log)
    test_x, test_y = load(test_rows)
    scores = {}
    for row, image, label in zip(test_rows, test_x, test_y, strict=True):
        scores[row.patient_id] = dice(predict(image, result.model), label)
    summary = CohortTrainingResult(
        checkpoint=out / "unet.pt",
        train_patients=[r.patient_id for r in train_rows],
        val_patients=[r.patient_id for r in val_rows],
        test_patients=[r.patient_id for r in test_rows],
        test_dice=scores,
        mean_test_dice=float(np.mean(list(scores.values()))),
        best_val_dice=result.best_val_dice,
        steps=result.steps,
        train_seconds=result.seconds,
        total_seconds=time.perf_counter() - t0,
    )
    if log is not None:
        log(f"U-Net: {result.steps} steps in {result.seconds:.0f} s; held-out Dice "
            f"{summary.mean_test_dice:.3f} (mean of {len(scores)})")
    from medimg.core.provenance import package_versions

    record = {**summary.to_dict(), "config": config.to_dict(), "seed": int(seed), "history": result.history,
              "versions": package_versions()}
    with atomic_path(out / "unet_metrics.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return summary
