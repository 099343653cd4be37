"""Augmentation of training batches: random parameters are drawn in one place
(:func:`sample_params`, from the training run's ``numpy.random.Generator``) and applied
deterministically to a whole batch (:func:`apply_params`), so a seed reproduces every batch.

The transforms are those of MONAI's and TorchIO's random transforms (flip, quarter turn,
rotation, elastic deformation, Gaussian noise, intensity shift and scale, bias field) written
for a batch tensor at once: one ``grid_sample`` per batch for all the spatial transforms
rather than one call per image. They are applied to training batches only; validation and
inference see the images as they are.

Imports torch at its top (imported only inside training).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medimg.ml.deep.config import CNNConfig

__all__ = ["sample_params", "apply_params", "repeat_params"]


def sample_params(rng: np.random.Generator, n: int, config: CNNConfig, shape: tuple[int, ...]) -> dict[str, Any]:
    """Random augmentation parameters for ``n`` images of array shape ``shape`` ((y, x) or
    (z, y, x)), drawn from ``rng`` in a fixed order."""
    in_plane = shape[-2:]
    p: dict[str, Any] = {}
    p["flip"] = rng.random((n, 2)) < 0.5 if config.flip else np.zeros((n, 2), bool)
    if config.rotate90:
        p["k90"] = rng.integers(0, 4, n) if in_plane[0] == in_plane[1] else 2 * rng.integers(0, 2, n)
    else:
        p["k90"] = np.zeros(n, int)
    p["angle_rad"] = np.deg2rad(rng.uniform(-config.rotate_deg, config.rotate_deg, n))
    coarse = (4,) * len(shape)
    p["elastic"] = (rng.uniform(-1, 1, (n, len(shape), *coarse)) * config.elastic_voxels
                    if config.elastic_voxels > 0 else None)
    p["scale"] = rng.uniform(1 - config.intensity_scale, 1 + config.intensity_scale, n)
    p["shift"] = rng.uniform(-config.intensity_shift, config.intensity_shift, n)
    n_terms = 2 * len(shape)
    p["bias"] = (rng.uniform(-config.bias_field, config.bias_field, (n, n_terms)) / n_terms
                 if config.bias_field > 0 else None)
    p["noise_std"] = float(config.noise_std)
    p["noise_seed"] = int(rng.integers(0, 2**31 - 1))
    return p


def _grid(n: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Identity sampling grid (N, *shape, ndim), last axis (x, y[, z]) in [-1, 1]."""
    theta = torch.zeros(n, len(shape), len(shape) + 1, dtype=torch.float32)
    theta[:, :, :-1] = torch.eye(len(shape))
    return F.affine_grid(theta, [n, 1, *shape], align_corners=False)


def apply_params(x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
    """Apply :func:`sample_params` output to a batch ``x`` (N, 1, *shape); returns a new tensor."""
    n, shape = x.shape[0], tuple(x.shape[2:])
    nd = len(shape)
    y_ax, x_ax = x.ndim - 2, x.ndim - 1
    out = x.clone()
    for i in range(n):  # flips and quarter turns are exact index operations
        dims = [ax for ax, f in zip((y_ax - 1, x_ax - 1), params["flip"][i], strict=True) if f]
        if dims:
            out[i] = torch.flip(out[i], dims)
        if params["k90"][i]:
            out[i] = torch.rot90(out[i], int(params["k90"][i]), dims=(y_ax - 1, x_ax - 1))
    angles = np.asarray(params["angle_rad"], dtype=float)
    if np.any(angles != 0) or params["elastic"] is not None:
        theta = torch.zeros(n, nd, nd + 1, dtype=torch.float32)
        theta[:, :, :-1] = torch.eye(nd)
        # the sign convention of MONAI's ``Rotate`` (angle in the (y, x) plane; tested equal)
        c, s = torch.tensor(np.cos(angles), dtype=torch.float32), torch.tensor(-np.sin(angles), dtype=torch.float32)
        # in-plane rotation about the image centre; grid coordinates are (x, y[, z]), normalised
        # per axis, so the y/x aspect ratio is applied to keep the rotation rigid in voxels
        ratio = shape[-1] / shape[-2]
        theta[:, 0, 0], theta[:, 0, 1] = c, -s / ratio
        theta[:, 1, 0], theta[:, 1, 1] = s * ratio, c
        grid = F.affine_grid(theta, [n, 1, *shape], align_corners=False)
        if params["elastic"] is not None:
            coarse = torch.tensor(params["elastic"], dtype=torch.float32)  # (N, nd, *coarse) in voxels, array order
            mode = "bicubic" if nd == 2 else "trilinear"
            field = F.interpolate(coarse, size=shape, mode=mode, align_corners=True)
            scale = torch.tensor([2.0 / s_ for s_ in shape], dtype=torch.float32)  # voxels -> normalised
            field = field * scale.view(1, nd, *([1] * nd))
            grid = grid + torch.flip(field, dims=[1]).movedim(1, -1)  # array order -> (x, y[, z])
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="border", align_corners=False)
    scale = torch.tensor(params["scale"], dtype=torch.float32).view(n, *([1] * (nd + 1)))
    shift = torch.tensor(params["shift"], dtype=torch.float32).view(n, *([1] * (nd + 1)))
    out = out * scale + shift
    if params["bias"] is not None:
        coords = _grid(1, shape)[0].movedim(-1, 0)  # (nd, *shape), x first
        terms = torch.cat([coords, coords**2 - 1.0 / 3.0])  # linear and centred quadratic terms
        coef = torch.tensor(params["bias"], dtype=torch.float32)
        field = torch.exp(torch.einsum("nk,k...->n...", coef, terms))
        out = out * field[:, None]
    if params["noise_std"] > 0:
        gen = torch.Generator().manual_seed(params["noise_seed"])
        out = out + params["noise_std"] * torch.randn(out.shape, generator=gen)
    return out


def repeat_params(params: dict[str, Any], counts: np.ndarray) -> dict[str, Any]:
    """Parameters of ``len(counts)`` cases repeated ``counts[i]`` times (every time point of a
    sequence gets its case's spatial and intensity transform; the noise differs)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        out[key] = np.repeat(value, counts, axis=0) if isinstance(value, np.ndarray) else value
    return out
