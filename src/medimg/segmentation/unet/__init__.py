"""U-Net segmentation (MONAI): training with class-balanced patches, sliding-window inference,
checkpoints that carry their configuration and spacing.

torch and MONAI are imported inside the functions that need them (``pip install 'medimg[dl]'``),
so importing this package is cheap. Typical use::

    from medimg.segmentation.unet import UNetConfig, train_unet, predict
    result = train_unet(images, labels, val_images=vi, val_labels=vl, seed=0,
                        checkpoint_path="unet.pt")
    label_map = predict(ct, "unet.pt")

Training and testing on a cohort of studies is :func:`medimg.pipeline.unet.train_unet_on_cohort`.
"""

from __future__ import annotations

from medimg.segmentation.unet.config import UNetConfig
from medimg.segmentation.unet.infer import (
    UNetModel,
    build_network,
    load_checkpoint,
    predict,
    save_checkpoint,
    unet_segment,
)
from medimg.segmentation.unet.train import TrainResult, train_unet

__all__ = [
    "UNetConfig",
    "UNetModel",
    "TrainResult",
    "build_network",
    "train_unet",
    "predict",
    "save_checkpoint",
    "load_checkpoint",
    "unet_segment",
]
