"""The U-Net configuration: network, patches, augmentation and training schedule, in one object.

A :class:`UNetConfig` is saved in every checkpoint, so a model can be rebuilt and used exactly
as it was trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from medimg.errors import ParameterError

__all__ = ["UNetConfig"]


@dataclass(frozen=True)
class UNetConfig:
    """Settings of a MONAI U-Net and of its training (every field is recorded in checkpoints).

    Attributes
    ----------
    spatial_dims
        2 (the network sees axial slices; volumes are segmented slice by slice) or 3 (patches).
    channels, strides, num_res_units, dropout
        MONAI ``UNet`` architecture: feature maps per level, down-sampling strides, residual
        units per block, dropout.
    n_classes
        Output classes including background (2 for one structure). Labels of the training
        maps must be in ``0..n_classes - 1``.
    patch_size
        Training patch and inference window in voxels, array order ((y, x) or (z, y, x)).
    intensity_window
        Image units (HU for CT) mapped linearly to [-1, 1] after clipping.
    batch_size, learning_rate, weight_decay
        Adam optimiser settings; patches per step.
    max_steps
        Upper bound of optimiser steps.
    val_interval
        Steps between validations (Dice on whole validation volumes).
    patience
        Early stopping: validations without an improvement of the best validation Dice.
    pos_fraction
        Class balance of the crops: the fraction of patches centred on a random foreground
        voxel (the others are centred anywhere).
    flip, rotate90, intensity_shift, intensity_scale, noise_std
        Augmentation (in-plane flips, in-plane quarter turns, intensity shift and scale in
        normalised units, Gaussian noise in normalised units), sampled with the training seed.
    overlap
        Fraction of overlap of neighbouring inference windows (Gaussian-weighted blending).
    sw_batch_size
        Windows per forward pass at inference (bounds memory).
    num_threads
        Torch CPU threads used for training and inference.
    """

    spatial_dims: int = 2
    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 1
    dropout: float = 0.0
    n_classes: int = 2
    patch_size: tuple[int, ...] = (64, 64)
    intensity_window: tuple[float, float] = (-200.0, 300.0)
    batch_size: int = 16
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    max_steps: int = 400
    val_interval: int = 40
    patience: int = 4
    pos_fraction: float = 0.6
    flip: bool = True
    rotate90: bool = True
    intensity_shift: float = 0.1
    intensity_scale: float = 0.1
    noise_std: float = 0.03
    overlap: float = 0.25
    sw_batch_size: int = 4
    num_threads: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        object.__setattr__(self, "intensity_window", tuple(float(v) for v in self.intensity_window))
        if self.spatial_dims not in (2, 3):
            raise ParameterError(f"spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        if len(self.patch_size) != self.spatial_dims:
            msg = f"patch_size must have {self.spatial_dims} values (array order), got {self.patch_size}"
            raise ParameterError(msg)
        if len(self.strides) != len(self.channels) - 1:
            msg = f"strides must have len(channels) - 1 = {len(self.channels) - 1} values, got {self.strides}"
            raise ParameterError(msg)
        factor = 1
        for s in self.strides:
            factor *= s
        if any(p % factor for p in self.patch_size):
            msg = f"patch_size {self.patch_size} must be divisible by the total stride {factor}"
            raise ParameterError(msg)
        lo, hi = self.intensity_window
        if not hi > lo:
            raise ParameterError(f"intensity_window must be (low, high) with high > low, got {self.intensity_window}")
        if self.n_classes < 2:
            raise ParameterError(f"n_classes must be >= 2 (background included), got {self.n_classes}")
        if not 0.0 <= self.pos_fraction <= 1.0:
            raise ParameterError(f"pos_fraction must be in [0, 1], got {self.pos_fraction}")
        if not 0.0 <= self.overlap < 1.0:
            raise ParameterError(f"overlap must be in [0, 1), got {self.overlap}")
        for name in ("batch_size", "max_steps", "val_interval", "patience", "sw_batch_size", "num_threads"):
            if int(getattr(self, name)) < 1:
                raise ParameterError(f"{name} must be >= 1, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists for tuples), as stored in checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> UNetConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys raise :class:`ParameterError`."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            from medimg.errors import did_you_mean

            key = sorted(unknown)[0]
            raise ParameterError(f"UNetConfig has no field {key!r}{did_you_mean(key, known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
