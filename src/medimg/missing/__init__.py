"""Missing data: tabular imputation inside CV folds, image inpainting, missing-slice interpolation,
and a sensitivity analysis over imputation methods. Heavy libraries are imported lazily."""

from medimg.missing.sensitivity import imputation_sensitivity
from medimg.missing.tabular import IMPUTERS, imputation_pipeline, make_imputer

__all__ = ["IMPUTERS", "make_imputer", "imputation_pipeline", "imputation_sensitivity"]
