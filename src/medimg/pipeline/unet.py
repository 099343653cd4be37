"""Training a U-Net on a cohort of studies: the Flow-layer side of U-Net training.

:func:`train_unet_on_cohort` reads the baseline studies of a synthetic cohort
(:func:`medimg.datasets.make_cohort`) through the executor, splits them by patient, trains with
:func:`medimg.segmentation.unet.train_unet` (which knows nothing of cohorts or folders), tests on
the held-out patients and writes the checkpoint and a metrics record.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medimg.core.files import atomic_path
from medimg.core.image import Image
from medimg.errors import ParameterError
from medimg.pipeline.executor import run_cases

if TYPE_CHECKING:
    from medimg.segmentation.unet import UNetConfig

__all__ = ["CohortTrainingResult", "train_unet_on_cohort"]


def _read_case(cohort: Any, row: Any) -> tuple[Image, Image]:
    """The CT and its lesion mask (0/1) of one cohort study."""
    from medimg import io

    image = io.read(cohort.ct_dir(row))
    mask = io.read(cohort.mask_path(row))
    return image, image.with_array((mask.array != 0).astype(np.uint8), meta={})


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


def train_unet_on_cohort(
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
    from medimg.datasets import Cohort, load_cohort
    from medimg.evaluation import dice
    from medimg.segmentation.unet import UNetConfig, predict, train_unet

    t0 = time.perf_counter()
    config = UNetConfig() if config is None else config
    if not isinstance(cohort, Cohort):
        cohort = load_cohort(cohort)
    rows = [row for row in cohort.rows if row.timepoint == 0]
    n_needed = n_val + n_test + (n_train or 1)
    if len(rows) < n_needed or n_val < 0 or n_test < 1:
        msg = (f"train_unet_on_cohort: {len(rows)} patients, need at least {n_needed} "
               f"(n_train={n_train}, n_val={n_val}, n_test={n_test}, n_test >= 1)")
        raise ParameterError(msg)
    order = np.random.default_rng(int(seed)).permutation(len(rows))
    test_rows = [rows[i] for i in order[:n_test]]
    val_rows = [rows[i] for i in order[n_test:n_test + n_val]]
    rest = [rows[i] for i in order[n_test + n_val:]]
    train_rows = rest if n_train is None else rest[:n_train]

    def load(selected: list[Any]) -> tuple[list[Image], list[Image], list[Any]]:
        """Read the cases through the executor; a case that cannot be read is logged and left out."""
        images, labels, kept = [], [], []
        for outcome in run_cases(functools.partial(_read_case, cohort), selected,
                                 key=lambda row: row.patient_id, ordered=True):
            if not outcome.ok:
                if log is not None:
                    log(f"U-Net: left out {outcome.key}: {outcome.error}")
                continue
            image, label = outcome.value
            images.append(image)
            labels.append(label)
            kept.append(selected[outcome.index])
        return images, labels, kept

    if log is not None:
        log(f"U-Net: {len(train_rows)} training, {len(val_rows)} validation, {len(test_rows)} test patients")
    train_x, train_y, train_rows = load(train_rows)
    val_x, val_y, val_rows = load(val_rows)
    if not train_x:
        raise ParameterError("train_unet_on_cohort: no training case could be read")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = train_unet(train_x, train_y, val_images=val_x, val_labels=val_y, config=config, seed=seed,
                        checkpoint_path=out / "unet.pt", log=log)
    test_x, test_y, test_rows = load(test_rows)
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
