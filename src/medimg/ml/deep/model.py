"""A trained CNN classifier: the network with its configuration, saved to and loaded from a
local checkpoint, and used for prediction.

A checkpoint is a ``torch.save`` file of a plain dictionary (no pickled code; it is loaded with
``weights_only=True``)::

    {"format": "medimg-cnn", "format_version": 1, "state_dict": {...},
     "config": CNNConfig.to_dict(), "medimg_version": "...", "software": {...}, "seed": int,
     "data_sha256": {"train": "...", "validation": "..."}, "n_train": int, "n_validation": int,
     "metrics": {...}, "history": [...], "transfer": {...} | None}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.files import atomic_path
from medimg.core.image import Image
from medimg.core.optional import require
from medimg.errors import FileFormatError
from medimg.ml.deep.config import CNNConfig
from medimg.ml.deep.data import CaseSet, prepare_cases

__all__ = ["CNNModel", "save_model", "load_model", "load_weights", "predict_proba", "batch_tensor"]

_FORMAT = "medimg-cnn"
_VERSIONS = ("medimg", "numpy", "scipy", "torch", "monai")


@dataclass
class CNNModel:
    """A network with the configuration it was built from.

    Attributes
    ----------
    network
        The ``torch.nn.Module`` (:class:`~medimg.ml.deep.networks.ImageClassifier` or
        :class:`~medimg.ml.deep.networks.SequenceClassifier`), in eval mode after training and
        loading.
    config
        Its :class:`CNNConfig`.
    info
        The rest of the record: seed, data hashes, metrics, training history, versions.
    """

    network: Any
    config: CNNConfig
    info: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, cases: Sequence[Any] | CaseSet) -> np.ndarray:
        """Class probabilities (N, n_classes) of images (or sequences); see :func:`predict_proba`."""
        return predict_proba(self, cases)


def batch_tensor(inputs: Sequence[np.ndarray], sequence: bool) -> tuple[Any, Any]:
    """A batch tensor of prepared inputs and, for sequences, their lengths (padded with zeros
    after the last time point)."""
    import torch

    if not sequence:
        return torch.from_numpy(np.stack(inputs)), None
    lengths = np.array([a.shape[0] for a in inputs])
    out = np.zeros((len(inputs), int(lengths.max()), *inputs[0].shape[1:]), dtype=np.float32)
    for i, a in enumerate(inputs):
        out[i, : a.shape[0]] = a
    return torch.from_numpy(out), torch.from_numpy(lengths)


def logits(network: Any, x: Any, lengths: Any) -> Any:
    """Forward pass of an image or sequence network."""
    return network(x) if lengths is None else network(x, lengths)


def predict_proba(model: CNNModel, cases: Sequence[Image | np.ndarray | Sequence[Image]] | CaseSet, *,
                  batch_size: int = 32) -> np.ndarray:
    """Softmax class probabilities (N, n_classes) of ``cases`` (images, or lists of images for a
    sequence model, prepared as at training; or a prepared :class:`CaseSet`)."""
    torch = require("torch", extra="dl")
    data = cases if isinstance(cases, CaseSet) else prepare_cases(cases, model.config)
    previous = torch.get_num_threads()
    torch.set_num_threads(model.config.num_threads)
    model.network.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                x, lengths = batch_tensor(data.inputs[start:start + batch_size], model.config.sequence != "none")
                out.append(torch.softmax(logits(model.network, x, lengths), dim=1).numpy())
    finally:
        torch.set_num_threads(previous)
    return np.concatenate(out).astype(np.float64)


def save_model(model: CNNModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (see the module notes for the contents)."""
    torch = require("torch", extra="dl")
    from medimg import __version__
    from medimg.core.provenance import jsonable, package_versions

    payload = {
        "format": _FORMAT, "format_version": 1,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.network.state_dict().items()},
        "config": model.config.to_dict(), "medimg_version": __version__,
        "software": package_versions(_VERSIONS),
        **jsonable({k: v for k, v in model.info.items() if k not in ("medimg_version", "software")}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _read(path: str | Path) -> Mapping[str, Any]:
    from medimg.core.files import read_torch_file

    return read_torch_file(path, what="weights")


def load_model(path: str | Path) -> CNNModel:
    """Load a model saved by :func:`save_model` from a local file (``weights_only`` loading:
    the file cannot run code)."""
    from medimg.ml.deep.networks import build_network

    payload = _read(path)
    if payload.get("format") != _FORMAT:
        raise FileFormatError(path, f"not a medimg CNN checkpoint (no format {_FORMAT!r}; write one with `medimg train`)")
    config = CNNConfig.from_dict(dict(payload["config"]))
    network = build_network(config)
    network.load_state_dict(payload["state_dict"])
    network.eval()
    info = {k: v for k, v in payload.items() if k not in ("state_dict", "config", "format")}
    return CNNModel(network, config, info)


def load_weights(network: Any, path: str | Path) -> dict[str, Any]:
    """Load the tensors of a local weights file into ``network`` wherever a name and shape match
    (transfer learning; the classification layer of another task is skipped when its shape
    differs: a layer loads whole or not at all). The file is a medimg CNN checkpoint or a ``torch.save``'d state dict; keys may
    carry a ``module.`` prefix (DataParallel) and may be the backbone's own (MONAI) names.

    Returns ``{"path", "loaded", "skipped"}`` (counts of tensors). Raises
    :class:`~medimg.errors.FileFormatError` when nothing matches.
    """
    payload = _read(path)
    state = payload.get("state_dict", payload)
    if not isinstance(state, Mapping):
        raise FileFormatError(path, "no state dict in this file")
    own = network.state_dict()
    loaded, skipped = {}, 0
    for key, value in state.items():
        if not hasattr(value, "shape"):
            skipped += 1
            continue
        name = str(key).removeprefix("module.")
        for candidate in (name, f"backbone.{name}"):
            if candidate in own and tuple(own[candidate].shape) == tuple(value.shape):
                loaded[candidate] = value
                break
        else:
            skipped += 1
    # a layer loads whole or not at all (a classification layer of another shape keeps its own bias too)
    matched_per_module: dict[str, int] = {}
    for key in loaded:
        module = key.rsplit(".", 1)[0]
        matched_per_module[module] = matched_per_module.get(module, 0) + 1
    offered: dict[str, int] = {}
    for key in state:
        name = str(key).removeprefix("module.")
        for candidate in (name, f"backbone.{name}"):
            if candidate in own:
                module = candidate.rsplit(".", 1)[0]
                offered[module] = offered.get(module, 0) + 1
                break
    partial = {m for m, n in matched_per_module.items() if n < offered.get(m, 0)}
    for key in [k for k in loaded if k.rsplit(".", 1)[0] in partial]:
        del loaded[key]
        skipped += 1
    if not loaded:
        raise FileFormatError(path, "no tensor matches the network's layers by name and shape (another architecture?)")
    network.load_state_dict(loaded, strict=False)
    return {"path": str(path), "loaded": len(loaded), "skipped": skipped, "n_tensors": len(own)}
