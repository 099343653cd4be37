"""U-Net models: building, checkpoints (local files only) and sliding-window inference.

A checkpoint is a ``torch.save`` file of a plain dictionary (no pickled code, loaded with
``weights_only=True``)::

    {"format": "medimg-unet", "format_version": 1, "state_dict": {...},
     "config": UNetConfig.to_dict(), "spacing_mm": [x, y, z], "medimg_version": "...",
     "seed": int, "history": [...], "best_val_dice": float}

``spacing_mm`` is the voxel size of the training images: at inference an image on another grid
is resampled to it (linear), segmented, and the labels are brought back to the image's grid
(nearest neighbour).

Inference reports its progress (:mod:`medimg.core.progress`, ``what="unet"``): per slice for
2-D models, per batch of sliding windows for 3-D ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core import progress
from medimg.core.files import atomic_path
from medimg.core.image import Image
from medimg.core.optional import require
from medimg.core.registry import registry
from medimg.core.types import InputFile
from medimg.errors import FileFormatError, ParameterError
from medimg.segmentation.morphology import _check_scalar, _label_output, _region
from medimg.segmentation.unet.config import UNetConfig
from medimg.segmentation.unet.data import normalise

__all__ = ["UNetModel", "build_network", "save_checkpoint", "load_checkpoint", "predict", "unet_segment"]

_segmentation = registry("segmentation")
_FORMAT = "medimg-unet"


def build_network(config: UNetConfig) -> Any:
    """A MONAI ``UNet`` for ``config`` (1 input channel, ``n_classes`` outputs, instance norm)."""
    nets = require("monai.networks.nets", extra="dl")
    return nets.UNet(
        spatial_dims=config.spatial_dims,
        in_channels=1,
        out_channels=config.n_classes,
        channels=config.channels,
        strides=config.strides,
        num_res_units=config.num_res_units,
        dropout=config.dropout,
    )


@dataclass
class UNetModel:
    """A network with the configuration and voxel spacing it was trained with.

    Attributes
    ----------
    network
        The ``torch.nn.Module`` (in eval mode after loading).
    config
        Its :class:`UNetConfig`.
    spacing_mm
        Training voxel size (x, y, z) in mm.
    info
        The rest of the checkpoint: medimg version, seed, training history, best validation Dice.
    """

    network: Any
    config: UNetConfig
    spacing_mm: tuple[float, float, float]
    info: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(model: UNetModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (see the module notes for the contents)."""
    torch = require("torch", extra="dl")
    from medimg import __version__

    payload = {
        "format": _FORMAT,
        "format_version": 1,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.network.state_dict().items()},
        "config": model.config.to_dict(),
        "spacing_mm": [float(v) for v in model.spacing_mm],
        "medimg_version": __version__,
        **{k: v for k, v in model.info.items() if k not in ("medimg_version",)},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path) -> UNetModel:
    """Load a checkpoint written by :func:`save_checkpoint` from a local file.

    Only local paths are accepted (no URLs, no downloads); the file is read with
    ``torch.load(weights_only=True)``, which cannot run code.

    Raises
    ------
    FileFormatError
        The file is missing or is not a medimg U-Net checkpoint.
    """
    from medimg.core.files import read_torch_file

    payload = read_torch_file(path, what="checkpoint")
    if payload.get("format") != _FORMAT:
        raise FileFormatError(path, "not a medimg U-Net checkpoint (no format 'medimg-unet')")
    config = UNetConfig.from_dict(dict(payload["config"]))
    network = build_network(config)
    network.load_state_dict(payload["state_dict"])
    network.eval()
    info = {k: v for k, v in payload.items() if k not in ("state_dict", "config", "spacing_mm", "format")}
    spacing = tuple(float(v) for v in payload["spacing_mm"])
    return UNetModel(network, config, spacing, info)  # type: ignore[arg-type]


def _resample(image: Image, spacing_xyz: Sequence[float], *, reference: Image | None = None,
              nearest: bool = False) -> Image:
    """``image`` on a grid of ``spacing_xyz`` covering the same extent, or on ``reference``'s grid
    (the package's one resampler, :mod:`medimg.core.resample`)."""
    from medimg.core.resample import grid_for_spacing, resample_image

    if reference is not None:
        affine, size = reference.affine, reference.size
    else:
        affine, size = grid_for_spacing(image, list(spacing_xyz)[: image.spatial_ndim])
    if nearest:
        return resample_image(image, affine, size, interpolator="nearest", default_value=0)
    src = image if not image.is_label else image.with_array(image.array.astype(np.float32))
    return resample_image(src, affine, size, interpolator="linear", default_value=float(np.nanmin(image.array)))


def _probabilities(values: np.ndarray, model: UNetModel) -> np.ndarray:
    """Softmax class probabilities (C, *shape) of a normalised 3-D (z, y, x) array."""
    torch = require("torch", extra="dl")
    inferers = require("monai.inferers", extra="dl")
    cfg = model.config
    network = model.network
    network.eval()
    out = np.zeros((cfg.n_classes,) + values.shape, dtype=np.float32)
    with torch.inference_mode():
        if cfg.spatial_dims == 2:
            chunk = max(1, cfg.sw_batch_size)
            steps = progress.Steps(values.shape[0], "unet")
            for z0 in range(0, values.shape[0], chunk):
                block = torch.from_numpy(np.ascontiguousarray(values[z0:z0 + chunk, np.newaxis]))
                logits = inferers.sliding_window_inference(
                    block, cfg.patch_size, cfg.sw_batch_size, network, overlap=cfg.overlap,
                    mode="gaussian", padding_mode="constant", cval=-1.0)
                out[:, z0:z0 + chunk] = torch.softmax(logits, dim=1).numpy().transpose(1, 0, 2, 3)
                steps.advance(block.shape[0])
        else:
            steps = progress.Steps(window_batches(values.shape, cfg.patch_size, cfg.overlap, cfg.sw_batch_size),
                                   "unet")

            def predictor(batch: Any) -> Any:
                result = network(batch)
                steps.advance()
                return result

            block = torch.from_numpy(np.ascontiguousarray(values[np.newaxis, np.newaxis]))
            logits = inferers.sliding_window_inference(
                block, cfg.patch_size, cfg.sw_batch_size, predictor, overlap=cfg.overlap,
                mode="gaussian", padding_mode="constant", cval=-1.0)
            steps.finish()
            out[:] = torch.softmax(logits, dim=1)[0].numpy()
    return out


def window_batches(shape: Sequence[int], patch_size: Sequence[int], overlap: float, batch_size: int) -> int:
    """How many network calls a sliding-window pass over one image of ``shape`` makes: windows
    of ``patch_size`` (voxels) stepped by ``int(patch * (1 - overlap))`` (at least 1; a whole
    axis when the patch covers it), the last one shifted back inside, ``batch_size`` per call
    (MONAI's ``sliding_window_inference``)."""
    import math

    n_windows = 1
    for size, patch in zip(shape, patch_size, strict=True):
        size = max(int(size), int(patch))  # MONAI pads an image smaller than the patch
        patch = int(patch)
        step = patch if patch == size else max(1, int(patch * (1 - overlap)))
        n_windows *= next(d for d in range(size + 1) if d * step + patch >= size) + 1
    return math.ceil(n_windows / max(1, int(batch_size)))


def predict(image: Image, model: UNetModel | str | Path, *, mask: Image | None = None,
            resample: bool = True, spacing_tolerance: float = 0.05) -> Image:
    """Segment ``image`` with a U-Net by sliding-window inference.

    Parameters
    ----------
    image
        A 3-D (or 2-D) scalar image in the units the model was trained on (HU for CT).
    model
        A :class:`UNetModel` or the path of a local checkpoint.
    mask
        Optional region of interest: the result is 0 outside it.
    resample
        When the image spacing differs from the model's by more than ``spacing_tolerance``
        (relative; in-plane for 2-D models), resample the image to the model's spacing
        (linear) and the labels back (nearest neighbour). ``False`` raises instead.
    spacing_tolerance
        Relative spacing difference accepted without resampling.

    Returns
    -------
    Image
        ``uint8`` label map (argmax of the softmax; classes ``0..n_classes - 1``) on
        ``image``'s grid.

    Notes
    -----
    Memory is bounded by the window batch: 2-D models process ``sw_batch_size`` slices at a
    time, 3-D models ``sw_batch_size`` windows at a time; the only full-size buffers are the
    normalised image and the class probabilities (float32).
    """
    torch = require("torch", extra="dl")
    _check_scalar(image, "image")
    if not isinstance(model, UNetModel):
        model = load_checkpoint(model)
    roi = _region(image, mask)
    cfg = model.config
    dims = 2 if cfg.spatial_dims == 2 else 3
    img_sp = np.asarray(image.spacing[:dims], dtype=float)
    mod_sp = np.asarray(model.spacing_mm[:dims], dtype=float)
    rel = np.max(np.abs(img_sp - mod_sp) / mod_sp)
    work = image
    if rel > spacing_tolerance and image.spatial_ndim == 3:
        if not resample:
            msg = (f"image spacing {tuple(img_sp)} mm differs from the model's {tuple(mod_sp)} mm by "
                   f"{rel:.0%}; pass resample=True or resample the image first")
            raise ParameterError(msg)
        target = list(model.spacing_mm)
        if dims == 2:
            target[2] = image.spacing[2]
        work = _resample(image, target)
    values = work.array if work.spatial_ndim == 3 else work.array[np.newaxis]
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.num_threads)
    try:
        probs = _probabilities(normalise(values, cfg.intensity_window), model)
    finally:
        torch.set_num_threads(previous)
    labels = np.argmax(probs, axis=0).astype(np.uint8)
    if work.spatial_ndim == 2 or image.spatial_ndim == 2:
        labels = labels[0]
    if work is not image:
        labels = _resample(work.with_array(labels), image.spacing, reference=image, nearest=True).array
        labels = labels.astype(np.uint8)
    if roi is not None:
        labels[~roi] = 0
    step = {"op": "segmentation.unet", "spatial_dims": cfg.spatial_dims, "resampled": work is not image,
            "model_spacing_mm": list(model.spacing_mm)}
    return _label_output(image, labels, step)


@_segmentation.register("unet", tags=("learned",))
def unet_segment(image: Image, *, checkpoint: InputFile, resample: bool = True, mask: Image | None = None) -> Image:
    """Segment with a trained U-Net checkpoint (a local file; see :func:`predict`).

    Parameters
    ----------
    image
        Scalar image in the units the model was trained on.
    checkpoint
        Path of a checkpoint written by :func:`~medimg.segmentation.unet.train_unet`.
    resample
        Resample to the model's spacing when the image's differs (see :func:`predict`).
    mask
        Optional region of interest; the result is 0 outside it.

    Returns
    -------
    Image
        ``uint8`` label map on ``image``'s grid.
    """
    return predict(image, checkpoint, mask=mask, resample=resample)
