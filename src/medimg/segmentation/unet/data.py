"""Training data for the U-Net: intensity normalisation, class-balanced patches, augmentation.

Random quantities are drawn in one place (:func:`sample_patch_params`, from an explicit
``numpy.random.Generator``) and applied deterministically (:func:`apply_patch_params`), so a
batch is reproducible from its seed and its parameters can be recorded or injected in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medimg.segmentation.unet.config import UNetConfig

__all__ = ["Case", "normalise", "sample_patch_params", "apply_patch_params", "make_batch"]


@dataclass(frozen=True)
class Case:
    """One training volume: normalised intensities and labels, array order (z, y, x)."""

    image: np.ndarray  # float32, normalised to [-1, 1]
    label: np.ndarray  # uint8 classes
    foreground: np.ndarray  # (N, 3) indices of label > 0


def normalise(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Clip to ``window`` (image units) and map linearly to [-1, 1], float32 (NaN -> -1)."""
    lo, hi = window
    out = (np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32), nan=lo), lo, hi) - lo) / (hi - lo)
    return (out * 2.0 - 1.0).astype(np.float32)


def _crop_start(centre: int, size: int, extent: int) -> int:
    """Start of a window of ``size`` centred at ``centre`` and kept inside ``extent`` when possible."""
    if extent <= size:
        return 0
    return int(np.clip(centre - size // 2, 0, extent - size))


def sample_patch_params(rng: np.random.Generator, cases: list[Case], config: UNetConfig) -> dict[str, Any]:
    """Draw one patch: which case, where (class-balanced), and its augmentation.

    With probability ``pos_fraction`` the patch is centred on a random foreground voxel of a
    case that has foreground; otherwise on a random voxel of a random case.
    """
    with_foreground = [i for i, c in enumerate(cases) if len(c.foreground)]
    positive = bool(rng.random() < config.pos_fraction) and bool(with_foreground)
    k = int(with_foreground[int(rng.integers(len(with_foreground)))]) if positive else int(rng.integers(len(cases)))
    case = cases[k]
    shape = case.image.shape
    if positive:
        centre = case.foreground[int(rng.integers(len(case.foreground)))]
    else:
        centre = np.array([int(rng.integers(n)) for n in shape])
    return {
        "case": k,
        "centre": [int(c) for c in centre],
        "positive": positive,
        "flip": [bool(rng.random() < 0.5) if config.flip else False for _ in range(2)],
        "rot90": int(rng.integers(4)) if config.rotate90 else 0,
        "shift": float(rng.uniform(-config.intensity_shift, config.intensity_shift)),
        "scale": float(1.0 + rng.uniform(-config.intensity_scale, config.intensity_scale)),
        "noise_seed": int(rng.integers(2**31)),
    }


def apply_patch_params(cases: list[Case], params: dict[str, Any], config: UNetConfig) -> tuple[np.ndarray, np.ndarray]:
    """The (image, label) patch that ``params`` describe; deterministic."""
    case = cases[params["case"]]
    centre = params["centre"]
    size = config.patch_size
    if config.spatial_dims == 2:
        img, lab = case.image[centre[0]], case.label[centre[0]]
        centre = centre[1:]
    else:
        img, lab = case.image, case.label
    box = tuple(slice(_crop_start(c, s, n), _crop_start(c, s, n) + s)
                for c, s, n in zip(centre, size, img.shape, strict=True))
    img, lab = img[box], lab[box]
    pad = [(0, max(0, s - n)) for s, n in zip(size, img.shape, strict=True)]
    if any(p[1] for p in pad):
        img = np.pad(img, pad, constant_values=-1.0)
        lab = np.pad(lab, pad, constant_values=0)
    axes = (-2, -1)
    for axis, flip in zip(axes, params["flip"], strict=True):
        if flip:
            img, lab = np.flip(img, axis), np.flip(lab, axis)
    if params["rot90"] and size[-1] == size[-2]:
        img = np.rot90(img, params["rot90"], axes=axes)
        lab = np.rot90(lab, params["rot90"], axes=axes)
    img = img * params["scale"] + params["shift"]
    if config.noise_std > 0:
        noise = np.random.default_rng(params["noise_seed"]).normal(0.0, config.noise_std, img.shape)
        img = img + noise
    return np.ascontiguousarray(img, dtype=np.float32), np.ascontiguousarray(lab, dtype=np.int64)


def make_batch(rng: np.random.Generator, cases: list[Case], config: UNetConfig) -> tuple[np.ndarray, np.ndarray]:
    """A batch: images (B, 1, *patch) float32 and labels (B, 1, *patch) int64."""
    images, labels = [], []
    for _ in range(config.batch_size):
        img, lab = apply_patch_params(cases, sample_patch_params(rng, cases, config), config)
        images.append(img[np.newaxis])
        labels.append(lab[np.newaxis])
    return np.stack(images), np.stack(labels)
