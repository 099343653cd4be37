"""PET standardised uptake values as a registered filter (``medimg filter IN OUT -m suv``).

The decision tree lives in :mod:`medimg.pet.suv` (QIBA vendor-neutral pseudo-code: Units BQML /
CNTS with the Philips private factors / GML; decay correction START / ADMIN / NONE; the decay
reference from the series or, for a post-processed series, the earliest acquisition or the
vendor private times; the injection from the Radiopharmaceutical Start DateTime, the GE private
admin time or the start time on the reference's date). Every branch taken is recorded in the
output's ``meta["history"]`` and ``meta["suv"]``; whatever the header cannot resolve is an error
that names the tag and the parameter that overrides it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.pet._dicomtime import parse_tm
from medimg.pet.suv import suv_scale, to_suv

__all__ = ["suv", "suv_factor", "parse_dicom_time"]

_filters = registry("filters")


def parse_dicom_time(text: str, *, tag: str = "time") -> Any:
    """A DICOM TM value (``HHMMSS.FFFFFF``, ``HHMM``, ``HH`` or ``HH:MM:SS``) as a :class:`datetime.time`."""
    return parse_tm(text, tag=tag)


def suv_factor(
    meta: dict[str, Any],
    *,
    weight_kg: float | None = None,
    dose_bq: float | None = None,
    half_life_s: float | None = None,
    injection_time: str | None = None,
) -> dict[str, Any]:
    """The SUVbw scale factor (g/ml per image unit) and how it was derived, from an image's ``meta``.

    Returns :meth:`medimg.pet.suv.SuvScale.to_dict`: ``factor`` (one number, or one per slice
    when it varies), ``decay_factor``, ``elapsed_s``, ``weight_kg``, ``dose_bq``,
    ``half_life_s``, ``decay_correction``, ``reference_time``, ``injection_time`` and
    ``branches``. Raises :class:`~medimg.pet.suv.SuvError` (a ``ParameterError``) naming the
    tag and the override when the header cannot be resolved.
    """
    return suv_scale(meta, weight_kg=weight_kg, dose_bq=dose_bq, half_life_s=half_life_s,
                     injection_time=injection_time).to_dict()


@_filters.register("suv", tags=("intensity",))
def suv(
    image: Image,
    *,
    suv_type: Literal["bw", "lbm-james", "lbm-janma", "bsa", "ibw"] = "bw",
    weight_kg: float | None = None,
    dose_bq: float | None = None,
    injection_time: str | dt.datetime | None = None,
    half_life_s: float | None = None,
    height_m: float | None = None,
    sex: Literal["M", "F"] | None = None,
) -> Image:
    """Convert a PET image to SUV by the QIBA decision tree (see :mod:`medimg.pet.suv`).

    Parameters
    ----------
    image
        PET image read from DICOM (values in its Units after the Modality LUT, ``meta["pet"]``).
    suv_type
        ``"bw"`` (body weight, g/ml), ``"lbm-james"`` / ``"lbm-janma"`` (SUL, g/ml), ``"ibw"``
        (ideal body weight, g/ml) or ``"bsa"`` (body surface area, cm2/ml).
    weight_kg
        Patient weight in kg; ``None``: Patient's Weight (0010,1030).
    dose_bq
        Injected activity in Bq at the injection time; ``None``: Radionuclide Total Dose (0018,1074).
    injection_time
        Injection date-time (``2024-01-02T10:00:00``) or time of day (``"10:00:00"``, quoted:
        on the command line ``-p "injection_time='10:00:00'"``); ``None``: from the header.
    half_life_s
        Radionuclide half-life in s; ``None``: Radionuclide Half Life (0018,1075).
    height_m
        Patient height in m (SUL, BSA, IBW); ``None``: Patient's Size (0010,1020).
    sex
        ``"M"`` or ``"F"`` (SUL, IBW); ``None``: Patient's Sex (0010,0040).

    Returns
    -------
    Image
        float32 SUV on the input's grid; ``meta["units"]``, ``meta["suv"]`` (factor, resolved
        values, branches) and a ``meta["history"]`` step with every parameter and branch.

    Raises
    ------
    SuvError
        A ``ParameterError`` naming the tag and the override when the header cannot be resolved.
    """
    return to_suv(image, suv_type=suv_type, weight_kg=weight_kg, dose_bq=dose_bq, injection_time=injection_time,
                  half_life_s=half_life_s, height_m=height_m, sex=sex, op="filters.suv")
