r"""PET standardised uptake value, body-weight normalised (SUVbw), decay-corrected.

.. math:: \mathrm{SUV_{bw}} = \frac{C(t)\ [\mathrm{Bq/ml}] \times W\ [\mathrm{g}]}
          {D\ [\mathrm{Bq}] \times 2^{-\Delta t / T_{1/2}}}

:math:`C` is the voxel's activity concentration, :math:`W` the patient weight, :math:`D` the
injected dose measured at the radiopharmaceutical start time, :math:`T_{1/2}` the half-life and
:math:`\Delta t` the time from injection to the time the image's activities refer to, which
depends on Decay Correction (0054,1102):

* ``START`` — activities are decay-corrected to the series start: :math:`\Delta t` runs from
  injection to Series Date/Time (0008,0021/0031);
* ``ADMIN`` — already corrected to the administration time: :math:`\Delta t = 0`;
* ``NONE`` — not corrected: :math:`\Delta t` runs to Acquisition Date/Time (0008,0022/0032).

The result is in g/ml (:math:`1\ \mathrm{g/ml}` = SUV 1, tissue density taken as 1 g/ml). This
follows the QIBA vendor-neutral pseudo-code for images in Units (0054,1001) ``BQML``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.filters._common import check_scalar, filter_output, float_array, positive

__all__ = ["suv", "suv_factor", "parse_dicom_time"]

_filters = registry("filters")


def parse_dicom_time(text: str, *, tag: str = "time") -> dt.time:
    """A DICOM TM value (``HHMMSS.FFFFFF``, ``HHMM``, ``HH``, or ``HH:MM:SS``) as a time."""
    s = str(text).strip().replace(":", "")
    try:
        whole, _, frac = s.partition(".")
        hh = int(whole[0:2])
        mm = int(whole[2:4]) if len(whole) >= 4 else 0
        ss = int(whole[4:6]) if len(whole) >= 6 else 0
        us = int((frac + "000000")[:6]) if frac else 0
        return dt.time(hh, mm, ss, us)
    except (ValueError, IndexError):
        raise ParameterError(f"SUV: {tag} {text!r} is not a DICOM time (HHMMSS.FFFFFF)") from None


def _parse_date(text: str, *, tag: str) -> dt.date:
    s = str(text).strip().replace("-", "").replace(".", "")
    try:
        return dt.date(int(s[0:4]), int(s[4:6]), int(s[6:8]))
    except (ValueError, IndexError):
        raise ParameterError(f"SUV: {tag} {text!r} is not a DICOM date (YYYYMMDD)") from None


def _parse_datetime(text: str, *, tag: str) -> dt.datetime:
    s = str(text).strip()
    for sign in ("+", "-"):  # drop a UTC offset suffix (&ZZXX); both times share the zone
        if sign in s[8:]:
            s = s[: 8 + s[8:].index(sign)]
    date = _parse_date(s[:8], tag=tag)
    time = parse_dicom_time(s[8:] or "000000", tag=tag)
    return dt.datetime.combine(date, time)


def _get(pet: dict[str, Any], key: str) -> Any:
    value = pet.get(key)
    return None if value in (None, "") else value


def suv_factor(
    meta: dict[str, Any],
    *,
    weight_kg: float | None = None,
    dose_bq: float | None = None,
    half_life_s: float | None = None,
) -> dict[str, Any]:
    """The SUVbw scale factor (g/ml per Bq/ml) and how it was derived, from an image's ``meta``.

    ``meta["pet"]`` holds the tags the DICOM reader keeps (Units, DecayCorrection,
    PatientWeight, SeriesDate/Time, AcquisitionDate/Time and the Radiopharmaceutical item);
    the keyword arguments override the weight (kg), the injected dose (Bq) and the half-life
    (s). Returns a dict with ``factor``, ``decay_factor``, ``elapsed_s``, ``weight_kg``,
    ``dose_bq``, ``half_life_s``, ``decay_correction``.
    """
    pet = meta.get("pet")
    if not isinstance(pet, dict):
        msg = ("SUV: the image has no PET tags (meta['pet']); read the PET series with medimg.io.read "
               "or give weight_kg, dose_bq, half_life_s and the times in meta['pet']")
        raise ParameterError(msg)
    units = str(_get(pet, "Units") or "").upper()
    if units != "BQML":
        msg = (f"SUV: Units (0054,1001) is {units or 'missing'!r}; SUVbw needs activity concentrations in BQML "
               "(CNTS needs a vendor scale factor; GML is already SUV)")
        raise ParameterError(msg)
    rp = pet.get("Radiopharmaceutical") or {}
    weight = weight_kg if weight_kg is not None else (_get(pet, "PatientWeight") or _get(meta, "PatientWeight"))
    if weight is None:
        raise ParameterError("SUV: Patient's Weight (0010,1030) is missing; give weight_kg")
    dose = dose_bq if dose_bq is not None else _get(rp, "RadionuclideTotalDose")
    if dose is None:
        raise ParameterError("SUV: Radionuclide Total Dose (0018,1074) is missing; give dose_bq")
    half = half_life_s if half_life_s is not None else _get(rp, "RadionuclideHalfLife")
    if half is None:
        raise ParameterError("SUV: Radionuclide Half Life (0018,1075) is missing; give half_life_s")
    weight = positive(float(weight), "weight_kg", "kg")
    dose = positive(float(dose), "dose_bq", "Bq")
    half = positive(float(half), "half_life_s", "s")
    correction = str(_get(pet, "DecayCorrection") or "").upper()
    if correction == "ADMIN":
        elapsed = 0.0
    elif correction in ("START", "NONE"):
        date_key, time_key = ("SeriesDate", "SeriesTime") if correction == "START" else ("AcquisitionDate", "AcquisitionTime")
        ref_time = _get(pet, time_key)
        if ref_time is None:
            raise ParameterError(f"SUV: Decay Correction is {correction} but {time_key} is missing")
        ref_date_s = _get(pet, date_key) or _get(pet, "SeriesDate")
        start_dt = _get(rp, "RadiopharmaceuticalStartDateTime")
        start_t = _get(rp, "RadiopharmaceuticalStartTime")
        if start_dt is None and start_t is None:
            raise ParameterError("SUV: Radiopharmaceutical Start (Date)Time (0018,1072/1078) is missing")
        if start_dt is not None and ref_date_s is not None:
            ref = dt.datetime.combine(_parse_date(ref_date_s, tag=date_key), parse_dicom_time(ref_time, tag=time_key))
            elapsed = (ref - _parse_datetime(start_dt, tag="RadiopharmaceuticalStartDateTime")).total_seconds()
        else:
            t_ref = parse_dicom_time(ref_time, tag=time_key)
            t_inj = parse_dicom_time(start_t if start_t is not None else str(start_dt)[8:],
                                     tag="RadiopharmaceuticalStartTime")
            day = dt.date(2000, 1, 1)
            elapsed = (dt.datetime.combine(day, t_ref) - dt.datetime.combine(day, t_inj)).total_seconds()
            if elapsed < 0:  # times only: the scan started after midnight
                elapsed += 86400.0
        if elapsed < 0:
            msg = f"SUV: the injection ({start_dt}) is after the scan reference time ({ref_date_s} {ref_time})"
            raise ParameterError(msg)
    else:
        raise ParameterError(f"SUV: Decay Correction (0054,1102) must be START, ADMIN or NONE, got {correction or 'missing'!r}")
    decay = float(2.0 ** (-elapsed / half))
    factor = weight * 1000.0 / (dose * decay)
    return {"factor": factor, "decay_factor": decay, "elapsed_s": elapsed, "weight_kg": weight,
            "dose_bq": dose, "half_life_s": half, "decay_correction": correction}


@_filters.register("suv", tags=("intensity",))
def suv(image: Image, *, weight_kg: float | None = None, dose_bq: float | None = None,
        half_life_s: float | None = None) -> Image:
    """Convert a PET image in Bq/ml to body-weight SUV (g/ml), decay-corrected (module notes).

    Parameters
    ----------
    image
        PET activity concentrations in Bq/ml with the reader's ``meta["pet"]``.
    weight_kg
        Patient weight in kg; ``None``: Patient's Weight from the file.
    dose_bq
        Injected activity in Bq at the radiopharmaceutical start time; ``None``: from the file.
    half_life_s
        Radionuclide half-life in s; ``None``: from the file (F-18: 6586.2 s).

    Returns
    -------
    Image
        float32 SUVbw image on the input's grid; ``meta["units"] = "g/ml"`` and ``meta["suv"]``
        records the factor, the decay factor and the elapsed time.

    Raises
    ------
    ParameterError
        Units not BQML, missing weight, dose, half-life or times, or an unknown decay correction.
    """
    check_scalar(image)
    info = suv_factor(image.meta, weight_kg=weight_kg, dose_bq=dose_bq, half_life_s=half_life_s)
    out = float_array(image, np.float64) * info["factor"]
    return filter_output(image, out.astype(np.float32), {"op": "filters.suv", **info}, units="g/ml", suv=info)
