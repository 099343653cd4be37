"""Machine learning: models on feature tables and on images.

- :mod:`medimg.ml.classify` — the registered ``logistic`` and ``random_forest`` classifiers and the
  demo's cross-validated AUC;
- :mod:`medimg.ml.pipelines` — imputation, scaling, feature selection (variance, correlation,
  mRMR, LASSO), class-imbalance handling (SMOTE, ADASYN, under-sampling, class weights) and the
  classifiers registered in ``registry("classifiers")`` as one imbalanced-learn pipeline;
- :mod:`medimg.ml.validation` — grouped, nested cross-validation with grid, random and Bayesian
  (Optuna) tuning;
- :mod:`medimg.ml.models` — the pipeline refitted on all rows, saved and loaded;
- :mod:`medimg.ml.reduce` — PCA, LDA, t-SNE (UMAP) embeddings and their plots;
- :mod:`medimg.ml.study` — the ``medimg model`` study (predictions, metrics, model);
- :mod:`medimg.ml.deep` — CNN classifiers (ResNet, DenseNet, EfficientNet; 2-D/3-D), LSTM/GRU
  over time points, transfer learning, augmentation, ``medimg train`` / ``medimg predict``;
- :mod:`medimg.ml.explain` — Grad-CAM, occlusion sensitivity and overlays for the CNNs;
  permutation importance and per-case Shapley contributions for the feature models;
- :mod:`medimg.ml.plots` — ROC and embedding plots.

scikit-learn, imbalanced-learn, Optuna and torch are imported only when a model is built.
"""

from __future__ import annotations

from medimg.ml import pipelines as _pipelines  # noqa: F401  (registers the classifiers)
from medimg.ml.classify import CVResult, cross_validated_auc, roc_auc
from medimg.ml.validation import CrossValidation, cross_validate

__all__ = ["CVResult", "cross_validated_auc", "roc_auc", "CrossValidation", "cross_validate"]
