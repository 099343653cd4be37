"""Training a CNN classifier (one image or a sequence of images per case): patient-grouped
validation split, seeded batches and augmentation, AdamW with weight decay, a learning-rate
schedule, early stopping on the validation loss and transfer learning from local weights
(frozen backbone first, then fine-tuning of every layer with a lower learning rate).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core import progress
from medimg.core.optional import require
from medimg.errors import ParameterError
from medimg.ml.deep.config import CNNConfig
from medimg.ml.deep.data import CaseSet, prepare_cases, split_by_patient
from medimg.ml.deep.model import CNNModel, batch_tensor, logits, save_model

__all__ = ["TrainResult", "train_classifier"]


@dataclass
class TrainResult:
    """What :func:`train_classifier` produced.

    Attributes
    ----------
    model
        The model of the best epoch (lowest validation loss; the last epoch without validation).
    checkpoint
        Where it was saved (``None`` when no path was given).
    metrics
        Validation metrics of that model: ``loss`` (cross-entropy), ``accuracy`` and, for two
        classes, ``auc``; plus ``best_epoch``.
    history
        One entry per epoch: phase, learning rate, training loss, validation loss/AUC/accuracy.
    epochs
        Epochs run.
    stopped_early
        True when early stopping ended the last phase before its last epoch.
    seconds
        Wall time of the training.
    images_per_second
        Training images (time points) per second of optimisation, validation excluded.
    validation
        The validation cases (``None`` without validation), for predictions and explanations.
    """

    model: CNNModel
    checkpoint: Path | None
    metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    images_per_second: float = 0.0
    validation: CaseSet | None = None


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Near-equal batches of at most ``batch_size + 1`` cases, none of a single case when there
    are several (batch norm needs two)."""
    n = order.size
    nb = max(1, math.ceil(n / batch_size))
    if nb > 1 and n % batch_size == 1:
        nb -= 1
    return [b for b in np.array_split(order, nb) if b.size]


def _evaluate(network: Any, data: CaseSet, config: CNNConfig, batch_size: int = 64) -> dict[str, float]:
    import torch

    from medimg.evaluation.classification import roc_auc

    network.eval()
    probs, total = [], 0.0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            x, lengths = batch_tensor(data.inputs[start:start + batch_size], config.sequence != "none")
            out = logits(network, x, lengths)
            y = torch.from_numpy(data.labels[start:start + batch_size])
            total += float(torch.nn.functional.cross_entropy(out, y, reduction="sum"))
            probs.append(torch.softmax(out, dim=1).numpy())
    p = np.concatenate(probs)
    metrics = {"loss": total / len(data), "accuracy": float(np.mean(p.argmax(1) == data.labels))}
    if config.n_classes == 2 and np.unique(data.labels).size == 2:
        metrics["auc"] = float(roc_auc(data.labels.astype(bool), p[:, 1]))
    return metrics


def _augmented(x: Any, lengths: Any, rng: np.random.Generator, config: CNNConfig) -> Any:
    from medimg.ml.deep.augment import apply_params, repeat_params, sample_params

    params = sample_params(rng, x.shape[0], config, config.image_size)
    if lengths is None:
        return apply_params(x, params)
    import torch

    valid = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    out = x.clone()
    out[valid] = apply_params(x[valid], repeat_params(params, lengths.numpy()))
    return out


def _schedule(torch: Any, optimiser: Any, config: CNNConfig, epochs: int) -> Any:
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, epochs))
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimiser, step_size=max(1, epochs // 3), gamma=0.5)
    return None


def train_classifier(
    cases: Sequence[Any] | CaseSet,
    labels: Sequence[int] | np.ndarray | None = None,
    *,
    groups: Sequence[Any] | np.ndarray | None = None,
    validation: CaseSet | None = None,
    config: CNNConfig | None = None,
    seed: int = 0,
    checkpoint_path: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a CNN classifier and keep the weights of the epoch with the lowest validation loss.

    Parameters
    ----------
    cases
        :class:`~medimg.core.image.Image` objects or arrays (one per case; time-ordered lists of
        them for a sequence model), or a :class:`~medimg.ml.deep.data.CaseSet` already prepared
        with :func:`~medimg.ml.deep.data.prepare_cases`.
    labels
        Class of each case (``0..n_classes-1``); not needed with a labelled ``CaseSet``.
    groups
        Patient of each case: the validation split holds out whole patients (none of a
        patient's lesions or time points is on both sides).
    validation
        A prepared validation set; ``None``: ``config.val_fraction`` of the patients.
    config
        Network and training settings (:class:`CNNConfig`; ``None``: the defaults).
    seed
        Seeds the weights' initialisation, dropout, the split, the batches and the
        augmentation: the same seed, data and thread count give identical weights.
    checkpoint_path
        Where to save the model (atomically), or ``None``.
    log
        Called with one line per epoch.

    Returns
    -------
    TrainResult
    """
    torch = require("torch", extra="dl")
    require("monai", extra="dl")
    from medimg.ml.deep.networks import build_network, count_parameters

    config = CNNConfig() if config is None else config
    data = cases if isinstance(cases, CaseSet) else prepare_cases(cases, config, labels=labels, groups=groups)
    if isinstance(cases, CaseSet) and labels is not None:
        raise ParameterError("labels come with the CaseSet; do not pass them again")
    if data.labels is None:
        raise ParameterError("training needs labels")
    rng = np.random.default_rng(int(seed))
    if validation is None and config.val_fraction > 0:
        train_idx, val_idx = split_by_patient(data.labels, data.groups, config.val_fraction, rng)
        train, val = data.subset(train_idx), (data.subset(val_idx) if val_idx.size else None)
    else:
        train, val = data, validation
    if val is not None and val.labels is None:
        raise ParameterError("the validation set needs labels")
    if train.groups is not None and val is not None and val.groups is not None:
        shared = set(train.groups) & set(val.groups)
        if shared:
            raise ParameterError(f"patients in both training and validation: {sorted(shared)[:5]}")
    if len(train) < 2:
        raise ParameterError(f"{len(train)} training case(s); at least 2 are needed")
    sequence = config.sequence != "none"
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    t0 = time.perf_counter()
    try:
        torch.manual_seed(int(seed))
        network = build_network(config)
        transfer = None
        if config.pretrained:
            from medimg.ml.deep.model import load_weights

            transfer = load_weights(network, config.pretrained)
            transfer.update(freeze_epochs=config.freeze_epochs, finetune_lr_factor=config.finetune_lr_factor)
        weight = None
        if config.class_weight == "balanced":
            counts = np.bincount(train.labels, minlength=config.n_classes).astype(float)
            weight = torch.tensor(train.labels.size / (config.n_classes * np.maximum(counts, 1)), dtype=torch.float32)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
        if transfer is None:
            phases = [("train", config.epochs, config.learning_rate)]
        else:
            phases = [("frozen", config.freeze_epochs, config.learning_rate),
                      ("finetune", config.epochs - config.freeze_epochs, config.learning_rate * config.finetune_lr_factor)]
        best, best_state, best_epoch = math.inf, None, 0
        history: list[dict[str, Any]] = []
        epoch, stopped_early, n_seen, fit_seconds = 0, False, 0, 0.0
        for phase, n_epochs, lr in phases:
            if n_epochs <= 0:
                continue
            frozen = phase == "frozen"
            for p in network.backbone.parameters():
                p.requires_grad_(not frozen)
            params = [p for p in network.parameters() if p.requires_grad]
            optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
            schedule = _schedule(torch, optimiser, config, n_epochs)
            bad, stopped_early = 0, False
            for _ in range(n_epochs):
                epoch += 1
                network.train()
                if frozen:
                    network.backbone.eval()  # a frozen backbone keeps its batch-norm statistics
                t_fit = time.perf_counter()
                losses = []
                current_lr = optimiser.param_groups[0]["lr"]
                for idx in _batches(rng.permutation(len(train)), config.batch_size):
                    x, lengths = batch_tensor([train.inputs[i] for i in idx], sequence)
                    x = _augmented(x, lengths, rng, config)
                    optimiser.zero_grad()
                    loss = loss_fn(logits(network, x, lengths), torch.from_numpy(train.labels[idx]))
                    loss.backward()
                    optimiser.step()
                    losses.append(float(loss.detach()))
                    n_seen += int(lengths.sum()) if lengths is not None else len(idx)
                if schedule is not None:
                    schedule.step()
                fit_seconds += time.perf_counter() - t_fit
                entry: dict[str, Any] = {"epoch": epoch, "phase": phase, "lr": current_lr,
                                         "train_loss": float(np.mean(losses))}
                if val is not None:
                    entry.update({f"val_{k}": v for k, v in _evaluate(network, val, config).items()})
                history.append(entry)
                if log is not None:
                    extra = "".join(f", {k} {entry[k]:.3f}" for k in ("val_loss", "val_auc") if k in entry)
                    log(f"  epoch {epoch} ({phase}): loss {entry['train_loss']:.3f}{extra}")
                progress.report(epoch, config.epochs, "training")
                score = entry.get("val_loss", -epoch)  # without validation: the last epoch
                if score < best - 1e-6:
                    best, best_state, best_epoch, bad = score, copy.deepcopy(network.state_dict()), epoch, 0
                else:
                    bad += 1
                    if val is not None and bad >= config.patience:
                        stopped_early = True
                        break
        progress.report(config.epochs, config.epochs, "training")
        for p in network.parameters():
            p.requires_grad_(True)
        if best_state is not None:
            network.load_state_dict(best_state)
        network.eval()
        metrics: dict[str, Any] = {"best_epoch": best_epoch}
        if val is not None:
            metrics.update({f"val_{k}": v for k, v in _evaluate(network, val, config).items()})
        seconds = time.perf_counter() - t0
        rate = n_seen / fit_seconds if fit_seconds > 0 else 0.0
        info = {"seed": int(seed), "data_sha256": {"train": train.sha256(), "validation": None if val is None else val.sha256()},
                "n_train": len(train), "n_validation": 0 if val is None else len(val),
                "validation_patients": None if val is None or val.groups is None else sorted(set(val.groups.tolist())),
                "metrics": metrics, "history": history, "transfer": transfer, "epochs_run": epoch,
                "stopped_early": stopped_early, "train_seconds": seconds, "images_per_second": rate,
                "n_parameters": count_parameters(network), "num_threads": config.num_threads}
        model = CNNModel(network, config, info)
        path = save_model(model, checkpoint_path) if checkpoint_path is not None else None
    finally:
        torch.set_num_threads(previous_threads)
    return TrainResult(model, path, metrics, history, epoch, stopped_early, seconds, rate, val)
