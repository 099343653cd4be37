"""The networks: a MONAI backbone (ResNet, DenseNet, EfficientNet) that maps an image to an
embedding, a dropout + linear classification head, and a recurrent model over the embeddings
of a sequence of images.

This module imports torch and MONAI at its top: it is imported only inside the functions that
build, train or run a network, never by ``import medimg`` or ``import medimg.ml.deep``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medimg.ml.deep.config import CNNConfig

__all__ = ["ImageClassifier", "SequenceClassifier", "build_network", "cam_layer_name"]

# EfficientNet blocks of the tiny variant (MONAI's block-string format; width 0.25 below).
_EFFICIENTNET_TINY = ["r1_k3_s11_e1_i32_o16_se0.25", "r1_k3_s22_e4_i16_o24_se0.25", "r1_k3_s22_e4_i24_o40_se0.25"]


def _backbone(config: CNNConfig) -> tuple[nn.Module, int]:
    """A MONAI network whose forward returns the pooled embedding (B, F), and F."""
    from monai.networks import nets

    sd, arch = config.spatial_dims, config.architecture
    if arch.startswith("resnet"):
        layers, planes = {"resnet_tiny": ([1, 1, 1, 1], [8, 16, 32, 64]),
                          "resnet10": ([1, 1, 1, 1], [64, 128, 256, 512]),
                          "resnet18": ([2, 2, 2, 2], [64, 128, 256, 512]),
                          "resnet34": ([3, 4, 6, 3], [64, 128, 256, 512])}[arch]
        small = arch == "resnet_tiny"
        net = nets.ResNet("basic", layers, planes, spatial_dims=sd, n_input_channels=config.in_channels,
                          conv1_t_size=3 if small else 7, conv1_t_stride=1 if small else 2,
                          no_max_pool=small, feed_forward=False)
        return net, planes[-1]
    if arch.startswith("densenet"):
        kw = ({"init_features": 8, "growth_rate": 8, "block_config": (2, 2, 2), "bn_size": 2}
              if arch == "densenet_tiny" else {"init_features": 64, "growth_rate": 32, "block_config": (6, 12, 24, 16)})
        net = nets.DenseNet(sd, config.in_channels, 2, **kw)
        width = net.class_layers.out.in_features
        net.class_layers.out = nn.Identity()
        return net, width
    if arch == "efficientnet_tiny":
        net = nets.EfficientNet(_EFFICIENTNET_TINY, spatial_dims=sd, in_channels=config.in_channels, num_classes=2,
                                width_coefficient=0.25, depth_coefficient=1.0, dropout_rate=0.0, drop_connect_rate=0.0,
                                image_size=max(config.image_size), norm=("batch", {"eps": 1e-3, "momentum": 0.1}))
    else:
        net = nets.EfficientNetBN(arch, pretrained=False, spatial_dims=sd, in_channels=config.in_channels,
                                  num_classes=2)
        net._dropout = nn.Identity()
    width = net._fc.in_features
    net._fc = nn.Identity()
    return net, width


class ImageClassifier(nn.Module):
    """``backbone`` (image -> embedding) then dropout and a linear layer (``head``)."""

    def __init__(self, backbone: nn.Module, width: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, n_classes)
        self.width = width

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *size) -> (B, F) embeddings."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *size) -> (B, n_classes) logits."""
        return self.head(self.dropout(self.backbone(x)))


class SequenceClassifier(nn.Module):
    """A CNN ``backbone`` applied to every time point, an LSTM/GRU over the embeddings, and a
    dropout + linear ``head`` on the recurrent state after the last time point of each case."""

    def __init__(self, backbone: nn.Module, width: int, n_classes: int, dropout: float, kind: str,
                 hidden_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        rnn = nn.LSTM if kind == "lstm" else nn.GRU
        self.rnn = rnn(width, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_classes)
        self.width = width

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x`` (B, T, C, *size) padded after each case's ``lengths`` time points -> (B, n_classes)."""
        b, t = x.shape[:2]
        valid = torch.arange(t)[None, :] < lengths[:, None]
        emb = self.backbone(x[valid])
        seq = torch.zeros(b, t, emb.shape[1], dtype=emb.dtype)
        seq[valid] = emb
        packed = nn.utils.rnn.pack_padded_sequence(seq, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed)
        last = state[0] if isinstance(state, tuple) else state
        return self.head(self.dropout(last[-1]))


def build_network(config: CNNConfig) -> nn.Module:
    """The classifier of ``config``: :class:`ImageClassifier` or :class:`SequenceClassifier`
    (weights initialised from torch's global generator: seed it first)."""
    backbone, width = _backbone(config)
    if config.sequence == "none":
        return ImageClassifier(backbone, width, config.n_classes, config.dropout)
    return SequenceClassifier(backbone, width, config.n_classes, config.dropout, config.sequence, config.hidden_size)


def cam_layer_name(config: CNNConfig) -> str:
    """The module whose activations Grad-CAM uses by default: the last convolutional stage."""
    if config.architecture.startswith("resnet"):
        return "backbone.layer4"
    if config.architecture.startswith("densenet"):
        return "backbone.features"
    return "backbone._bn1"


def count_parameters(network: Any) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in network.parameters() if p.requires_grad))
