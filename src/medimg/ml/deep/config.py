"""The configuration of a CNN image classifier and of its training, in one object.

A :class:`CNNConfig` is saved in every checkpoint, so a model is rebuilt and used exactly as it
was trained; the ``model:`` section of a ``medimg train`` YAML file has exactly these keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from medimg.errors import ParameterError, UnknownNameError

__all__ = ["CNNConfig", "ARCHITECTURES", "SEQUENCE_MODELS", "SCHEDULES"]

#: Network variants (MONAI implementations, see :mod:`medimg.ml.deep.networks`). The ``_tiny``
#: ones train on a CPU in seconds on small images; the others are the published sizes.
ARCHITECTURES = ("resnet_tiny", "resnet10", "resnet18", "resnet34", "densenet_tiny", "densenet121",
                 "efficientnet_tiny", "efficientnet-b0")
#: The smallest network input (voxels per axis) of each architecture (its total down-sampling).
MIN_SIZE = {"resnet_tiny": 8, "resnet10": 32, "resnet18": 32, "resnet34": 32, "densenet_tiny": 16,
            "densenet121": 32, "efficientnet_tiny": 8, "efficientnet-b0": 32}
#: Sequence models over per-time-point CNN embeddings (``none``: one image per case).
SEQUENCE_MODELS = ("none", "lstm", "gru")
#: Learning-rate schedules (per epoch).
SCHEDULES = ("cosine", "step", "none")


def _tuple(value: Any, cast: type) -> tuple[Any, ...] | None:
    return None if value is None else tuple(cast(v) for v in value)


@dataclass(frozen=True)
class CNNConfig:
    """Settings of a CNN classifier and of its training (all recorded in checkpoints).

    Attributes
    ----------
    architecture
        One of :data:`ARCHITECTURES` (ResNet, DenseNet, EfficientNet; MONAI implementations).
    spatial_dims
        2 (images, or 3-D images with one slice) or 3 (volumes).
    image_size
        The network input in voxels, array order ((y, x) or (z, y, x)); every image is resampled
        to it (linear interpolation over the whole field of view).
    in_channels
        Channels of each image (2 for PET/CT or two MR sequences): an Image with a trailing
        channel axis, or several image columns of a case table, on one grid.
    n_classes
        Number of classes; labels must be ``0..n_classes - 1``.
    dropout
        Dropout probability before the classification layer.
    intensity_window
        ``None``: each image is z-scored (mean 0, SD 1); ``(low, high)`` in image units (HU
        for CT): clipped and mapped linearly to [-1, 1].
    sequence, hidden_size
        ``"lstm"`` or ``"gru"``: each case is a time-ordered sequence of images; the CNN embeds
        every time point and a recurrent layer of ``hidden_size`` units reads the embeddings
        (the last state is classified). ``"none"``: one image per case.
    epochs, batch_size, learning_rate, weight_decay
        AdamW optimisation (cases per batch; decoupled weight decay).
    schedule
        Learning-rate schedule over the epochs of each phase: cosine annealing, a step (halved
        every third of the epochs) or constant.
    class_weight
        ``"balanced"``: the cross-entropy weights classes by inverse frequency (cost-sensitive
        loss); ``"none"``: unweighted.
    patience
        Early stopping: epochs without a decrease of the validation loss before training stops
        (the weights of the best epoch are kept).
    val_fraction
        Fraction of patients held out for validation when no validation set is given.
    flip, rotate90, rotate_deg, elastic_voxels, noise_std, intensity_shift, intensity_scale, bias_field
        Augmentation of the training batches only: random flips of the in-plane axes, random
        in-plane quarter turns, a random in-plane rotation in [-rotate_deg, rotate_deg] degrees,
        an elastic deformation of up to ``elastic_voxels`` voxels of the network input (smooth
        random field), Gaussian noise of SD ``noise_std`` (normalised units), an intensity
        shift in [-s, s] and a scale in [1 - s, 1 + s], and a smooth multiplicative bias field
        of up to ``bias_field`` (exp of a random linear+quadratic polynomial).
    pretrained
        A local file of weights (a medimg CNN checkpoint or a ``torch.save`` state dict): the
        layers whose names and shapes match are loaded (transfer learning).
    freeze_epochs
        With ``pretrained``: epochs during which only the classification layer learns (the
        backbone frozen), before all layers are fine-tuned.
    finetune_lr_factor
        With ``pretrained``: the learning rate of the fine-tuning phase is
        ``learning_rate * finetune_lr_factor``.
    num_threads
        Torch CPU threads (the same seed, data and thread count give the same weights).
    """

    architecture: str = "resnet_tiny"
    spatial_dims: int = 2
    image_size: tuple[int, ...] = (32, 32)
    in_channels: int = 1
    n_classes: int = 2
    dropout: float = 0.2
    intensity_window: tuple[float, float] | None = None
    sequence: str = "none"
    hidden_size: int = 32
    epochs: int = 30
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    class_weight: str = "none"
    patience: int = 8
    val_fraction: float = 0.2
    flip: bool = True
    rotate90: bool = False
    rotate_deg: float = 10.0
    elastic_voxels: float = 0.0
    noise_std: float = 0.05
    intensity_shift: float = 0.1
    intensity_scale: float = 0.1
    bias_field: float = 0.0
    pretrained: str | None = None
    freeze_epochs: int = 0
    finetune_lr_factor: float = 0.1
    num_threads: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", _tuple(self.image_size, int))
        object.__setattr__(self, "intensity_window", _tuple(self.intensity_window, float))
        if self.architecture not in ARCHITECTURES:
            raise UnknownNameError("architecture", self.architecture, ARCHITECTURES)
        if self.sequence not in SEQUENCE_MODELS:
            raise UnknownNameError("sequence", self.sequence, SEQUENCE_MODELS)
        if self.schedule not in SCHEDULES:
            raise UnknownNameError("schedule", self.schedule, SCHEDULES)
        if self.class_weight not in ("none", "balanced"):
            raise UnknownNameError("class_weight", self.class_weight, ("none", "balanced"))
        if self.spatial_dims not in (2, 3):
            raise ParameterError(f"spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        if self.image_size is None or len(self.image_size) != self.spatial_dims:
            msg = f"image_size must have {self.spatial_dims} values (array order), got {self.image_size}"
            raise ParameterError(msg)
        if min(self.image_size) < MIN_SIZE[self.architecture]:
            msg = (f"image_size must be at least {MIN_SIZE[self.architecture]} voxels along each axis for "
                   f"{self.architecture} (its down-sampling), got {self.image_size}")
            raise ParameterError(msg)
        if self.intensity_window is not None and (len(self.intensity_window) != 2
                                                  or not self.intensity_window[1] > self.intensity_window[0]):
            raise ParameterError(f"intensity_window must be (low, high) with high > low, got {self.intensity_window}")
        if self.n_classes < 2:
            raise ParameterError(f"n_classes must be >= 2, got {self.n_classes}")
        for name in ("dropout", "val_fraction"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ParameterError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        for name in ("in_channels", "epochs", "batch_size", "patience", "hidden_size", "num_threads"):
            if int(getattr(self, name)) < 1:
                raise ParameterError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("learning_rate", "finetune_lr_factor"):
            if not float(getattr(self, name)) > 0:
                raise ParameterError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "rotate_deg", "elastic_voxels", "noise_std", "intensity_shift", "bias_field"):
            if float(getattr(self, name)) < 0:
                raise ParameterError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.intensity_scale < 1.0:
            raise ParameterError(f"intensity_scale must be in [0, 1), got {self.intensity_scale!r}")
        if not 0 <= self.freeze_epochs < self.epochs:
            raise ParameterError(f"freeze_epochs must be in [0, epochs), got {self.freeze_epochs} (epochs={self.epochs})")
        if self.freeze_epochs and not self.pretrained:
            raise ParameterError("freeze_epochs > 0 needs pretrained weights (`pretrained: path/to/weights.pt`)")
        if self.pretrained is not None and "://" in str(self.pretrained):
            msg = f"pretrained must be a local file path, got the URL {self.pretrained!r} (download it first)"
            raise ParameterError(msg)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists for tuples), as stored in checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CNNConfig:
        """Build from a mapping of field values; an unknown key raises :class:`ParameterError`
        with a "did you mean"."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            from medimg.errors import did_you_mean

            key = sorted(unknown)[0]
            raise ParameterError(f"CNN config has no field {key!r}{did_you_mean(key, known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
