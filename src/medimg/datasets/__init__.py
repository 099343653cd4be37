"""Synthetic data with known answers: phantoms and a seeded CT cohort written as DICOM.

* :mod:`medimg.datasets.phantoms` — shapes, masks and correlated noise (pure numpy).
* :mod:`medimg.datasets.cohort` — :func:`make_cohort` writes a synthetic CT cohort (DICOM
  series, lesion masks, ``cohort.csv``, ``ground_truth.json``); :func:`load_cohort` reads it back.
"""

from __future__ import annotations

from medimg.datasets.cohort import SCANNERS, Cohort, CohortRow, Scanner, load_cohort, make_cohort
from medimg.datasets.phantoms import (
    Ellipsoid,
    LobulatedShape,
    RandomField,
    correlated_noise,
    ellipsoid_mask,
    grid_points_mm,
    lobulated_mask,
)

__all__ = [
    "make_cohort",
    "load_cohort",
    "Cohort",
    "CohortRow",
    "Scanner",
    "SCANNERS",
    "Ellipsoid",
    "LobulatedShape",
    "RandomField",
    "grid_points_mm",
    "ellipsoid_mask",
    "lobulated_mask",
    "correlated_noise",
]
