"""Machine learning on feature tables: cross-validated classifiers with honest uncertainty.

Classifiers are registered by name in ``registry("classifiers")`` (``"logistic"``,
``"random_forest"``). scikit-learn is imported only when a model is built or evaluated.
"""

from __future__ import annotations

from medimg.ml.classify import CVResult, cross_validated_auc, roc_auc

__all__ = ["CVResult", "cross_validated_auc", "roc_auc"]
