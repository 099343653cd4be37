"""Training a U-Net: seeded patch sampling, Dice + cross-entropy loss, validation Dice, early
stopping, best-model checkpoint. Training on a cohort of studies (reading the cases, the split
by patient, held-out testing) is :func:`medimg.pipeline.unet.train_unet_on_cohort`."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medimg.core.image import Image
from medimg.core.optional import require
from medimg.errors import ParameterError
from medimg.segmentation.unet.config import UNetConfig
from medimg.segmentation.unet.data import Case, make_batch, normalise
from medimg.segmentation.unet.infer import UNetModel, build_network, predict, save_checkpoint

__all__ = ["TrainResult", "train_unet"]


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
