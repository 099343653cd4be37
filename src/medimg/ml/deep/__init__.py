"""CNN image classifiers (ResNet, DenseNet, EfficientNet; 2-D and 3-D), sequence models over
per-time-point CNN embeddings (LSTM/GRU), transfer learning from local weights, augmentation,
early stopping, saved models (PyTorch + MONAI, imported only when a network is built).

- :mod:`medimg.ml.deep.config` — :class:`CNNConfig`, every setting of a model and its training;
- :mod:`medimg.ml.deep.data` — images to network inputs, case tables, patient-grouped splits;
- :mod:`medimg.ml.deep.train` — :func:`train_classifier`;
- :mod:`medimg.ml.deep.model` — :class:`CNNModel`, saving, loading, prediction;
- :mod:`medimg.ml.deep.networks`, :mod:`medimg.ml.deep.augment` — the torch parts.

Grad-CAM and occlusion sensitivity are in :mod:`medimg.ml.explain`.
"""

from __future__ import annotations

from medimg.ml.deep.config import ARCHITECTURES, CNNConfig
from medimg.ml.deep.data import CaseSet, prepare_cases, read_case_table
from medimg.ml.deep.model import CNNModel, load_model, predict_proba, save_model
from medimg.ml.deep.train import TrainResult, train_classifier

__all__ = ["ARCHITECTURES", "CNNConfig", "CaseSet", "prepare_cases", "read_case_table", "CNNModel", "load_model",
           "predict_proba", "save_model", "TrainResult", "train_classifier"]
