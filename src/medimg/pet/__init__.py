"""PET quantification: SUV from every vendor's headers, lesion metrics, PET/CT.

* :func:`read_pet` reads a PET DICOM series with every image's PET attributes
  (:func:`~medimg.pet.tags.pet_tags`); :func:`to_suv` / :func:`suv_scale` convert it to SUV by
  the QIBA vendor-neutral decision tree (:mod:`medimg.pet.suv`), recording each branch;
  SUVbw, SUL (James, Janmahasatian), SUVbsa, SUVibw (:mod:`medimg.pet.body`).
* :func:`lesion_metrics`: SUVmax, SUVmean, SUVpeak (IBSI local intensity peak sphere), MTV by
  SUV >= 2.5 and by 41 % / 50 % of SUVmax, TLG; :func:`liver_reference`: the PERCIST liver
  reference (SUL mean and SD in a 3 cm sphere in the right lobe).
* :func:`read_pet_ct`, :func:`onto_grid`, :func:`metrics_with_mask`: a PET and a CT of one
  patient, either resampled onto the other's grid, a CT-defined mask used for PET metrics.
* :func:`write_pet_series`: synthetic PET DICOM series with any header (tests, validation).
"""

from __future__ import annotations

from medimg.pet.body import (
    body_surface_area,
    ideal_body_weight,
    lean_body_mass_james,
    lean_body_mass_janmahasatian,
)
from medimg.pet.metrics import lesion_metrics, liver_reference, suv_peak
from medimg.pet.petct import check_same_patient, metrics_with_mask, onto_grid, read_pet_ct
from medimg.pet.phantom import write_pet_headers, write_pet_series
from medimg.pet.reading import read_pet
from medimg.pet.suv import SUV_TYPES, SuvError, SuvScale, suv_scale, to_suv
from medimg.pet.tags import pet_tags

__all__ = [
    "read_pet", "pet_tags", "suv_scale", "to_suv", "SuvScale", "SuvError", "SUV_TYPES",
    "lean_body_mass_james", "lean_body_mass_janmahasatian", "body_surface_area", "ideal_body_weight",
    "lesion_metrics", "suv_peak", "liver_reference", "read_pet_ct", "check_same_patient", "onto_grid",
    "metrics_with_mask",
    "write_pet_series", "write_pet_headers",
]
