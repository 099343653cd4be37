"""Missing data: tabular imputation inside CV folds, image inpainting, missing-slice interpolation,
and a sensitivity analysis over imputation methods. Heavy libraries are imported lazily."""

from medimg.missing.images import (
    INPAINT_METHODS,
    SLICE_METHODS,
    evaluate_slice_interpolation,
    inpaint,
    interpolate_slices,
)
from medimg.missing.sensitivity import imputation_sensitivity
from medimg.missing.tabular import IMPUTERS, imputation_pipeline, make_imputer

__all__ = [
    "INPAINT_METHODS",
    "SLICE_METHODS",
    "inpaint",
    "interpolate_slices",
    "evaluate_slice_interpolation","IMPUTERS", "make_imputer", "imputation_pipeline", "imputation_sensitivity"]
