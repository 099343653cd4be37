r"""Standardised uptake values from PET headers: the QIBA vendor-neutral decision tree.

.. math:: \mathrm{SUV_{bw}} = \frac{C\ [\mathrm{Bq/ml}] \times W\ [\mathrm{g}]}
          {D\ [\mathrm{Bq}] \times 2^{-\Delta t / T_{1/2}}}

:math:`C` is the voxel's activity concentration, :math:`W` the patient's weight, :math:`D` the
injected activity at the injection time, :math:`T_{1/2}` the half-life and :math:`\Delta t` the
time from the injection to the time the image's activities are decay-corrected to. SUVbw is in
g/ml (SUV 1 = uniform distribution, tissue density taken as 1 g/ml).

The tree follows the QIBA SUV technical subcommittee's vendor-neutral pseudo-code, branch by
branch, and every branch taken is written into the result's ``branches`` (and so into the
output's ``meta["history"]``):

1. **Units** (0054,1001): ``BQML`` — pixel values are Bq/ml. ``CNTS`` — Philips: the SUV Scale
   Factor (7053,xx00) of "Philips PET Private Group" is the SUVbw factor itself; without it, the
   Activity Concentration Scale Factor (7053,xx09) times the (rescaled) pixel value is Bq/ml and
   the tree goes on as for BQML. ``GML`` — already SUVbw (SUV Type (0054,1006) BW or absent).
   Anything else is an error.
2. **Corrected Image** (0028,0051) must contain ATTN, and DECY exactly when the image is decay
   corrected (START / ADMIN); an absent value is recorded.
3. **Decay Correction** (0054,1102):

   * ``START`` — the decay reference is the Series Date/Time (0008,0021/0031), unless it is
     later than the earliest Acquisition Date/Time (0008,0022/0032) of the series' images (a
     post-processed series, whose series time is when it was made): then the GE private scan
     date-time (0009,xx0D) "GEMS_PETD_01" or the Siemens private Decay Correction DateTime
     (0071,xx22) "SIEMENS MED PT" when present and plausible (not after the earliest acquisition,
     not before the injection), else the earliest Acquisition Date/Time;
   * ``ADMIN`` — already corrected to the administration time: no decay;
   * ``NONE`` — not decay corrected: each image is corrected to its own acquisition, at the
     mean-count time of its frame :math:`t_0 + \frac{1}{\lambda}\ln\frac{\lambda\tau}
     {1 - e^{-\lambda\tau}}` (Actual Frame Duration :math:`\tau` (0018,1242); the frame start
     when absent, recorded), so the factor varies per slice.

4. **Injection time**: Radiopharmaceutical Start DateTime (0018,1078); else the GE private
   admin_datetime (0009,xx3B) "GEMS_PETD_01"; else Radiopharmaceutical Start Time (0018,1072) on
   the date of the decay reference (the Series Date in the ordinary case, as QIBA says), one day
   earlier when that would put the injection after the reference (the uptake crossed midnight).
5. Weight (0010,1030), Radionuclide Total Dose (0018,1074) and Half Life (0018,1075) must be
   present and plausible.

Whatever the tree cannot resolve is a :class:`SuvError` that names the tag and the override:
``weight_kg`` / ``--weight-kg``, ``dose_bq`` / ``--dose-bq``, ``injection_time`` /
``--injection-time``, ``half_life_s`` / ``--half-life-s``, ``height_m`` / ``--height-m``,
``sex`` / ``--sex``. Nothing is assumed silently.

Other normalisations (``suv_type``) rescale SUVbw by :math:`X / W`: ``lbm-james`` and
``lbm-janma`` (SUL, lean body mass by James or Janmahasatian), ``ibw`` (ideal body weight) in
g/ml, and ``bsa`` (body surface area in cm², :math:`X/W` with :math:`W` in g) in cm²/ml; see
:mod:`medimg.pet.body`.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from medimg.core.image import Image
from medimg.errors import ParameterError
from medimg.pet import body
from medimg.pet._dicomtime import iso, parse_da, parse_dt, parse_tm, parse_user_time

__all__ = ["SuvError", "SuvScale", "SUV_TYPES", "suv_scale", "to_suv"]

SuvType = Literal["bw", "lbm-james", "lbm-janma", "bsa", "ibw"]
#: The normalisations :func:`to_suv` offers, with their output units.
SUV_TYPES: dict[str, str] = {"bw": "g/ml", "lbm-james": "g/ml", "lbm-janma": "g/ml", "bsa": "cm2/ml",
                             "ibw": "g/ml"}

#: Largest injection-after-reference gap (s) accepted (dynamic scans may start just before it).
_EARLY_START_S = 60.0


class SuvError(ParameterError):
    """A PET header the SUV decision tree cannot resolve (the message names the tag and the override)."""


@dataclass(frozen=True)
class SuvScale:
    """How to turn a PET image into SUV, and how that was decided.

    Attributes
    ----------
    factor
        One factor per slice (array order z), multiplying the image's values (after the Modality
        LUT) to give SUV in ``units``.
    suv_type
        The normalisation (:data:`SUV_TYPES`).
    units
        ``"g/ml"`` or ``"cm2/ml"`` (SUVbsa).
    branches
        Every branch of the decision tree taken, in order, in words.
    values
        The resolved inputs: ``weight_kg``, ``dose_bq``, ``half_life_s``, ``reference_time``,
        ``injection_time``, ``elapsed_s``, ``decay_factor``, ``height_m``, ``sex``,
        ``body_size`` (the normaliser: kg, or m² for BSA) ... (``None`` when not used).
    """

    factor: np.ndarray
    suv_type: str
    units: str
    branches: tuple[str, ...]
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: ``factor`` (a number when uniform, else one per slice), the values,
        ``branches``."""
        out: dict[str, Any] = {"factor": _scalar_or_list(self.factor), "suv_type": self.suv_type,
                               "units": self.units}
        out.update({k: _scalar_or_list(v) if isinstance(v, np.ndarray) else v for k, v in self.values.items()})
        out["branches"] = list(self.branches)
        return out


def _scalar_or_list(values: Any) -> Any:
    arr = np.atleast_1d(np.asarray(values, dtype=float))
    if arr.size and np.all(arr == arr[0]):
        return float(arr[0])
    return [float(v) for v in arr]


# ----------------------------------------------------------------------------- header access
class _Tree:
    """State of one walk through the tree: the header, the overrides and the branches taken."""

    def __init__(self, meta: dict[str, Any], overrides: dict[str, Any]) -> None:
        pet = meta.get("pet")
        if not isinstance(pet, dict):
            msg = ("SUV: the image has no PET tags (meta['pet']); read the PET DICOM series with "
                   "medimg.io.read / medimg.pet.read_pet (CLI: medimg suv SERIES OUT)")
            raise SuvError(msg)
        self.meta = meta
        self.pet = pet
        self.over = overrides
        self.branches: list[str] = []
        self.values: dict[str, Any] = {}
        instances = pet.get("instances")
        if instances:
            self.instances: list[dict[str, Any]] = list(instances)
        else:
            self.instances = [{k: pet[k] for k in ("AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime")
                               if pet.get(k) not in (None, "")}]
            self.note("meta['pet'] lists no images: its own Acquisition Date/Time stands for the series'")
        self._tz_noted = self._acq_date_noted = False

    def note(self, text: str) -> None:
        self.branches.append(text)

    def get(self, key: str) -> Any:
        value = self.pet.get(key)
        return None if value in (None, "", []) else value

    def rp(self, key: str) -> Any:
        value = (self.pet.get("Radiopharmaceutical") or {}).get(key)
        return None if value in (None, "") else value

    def first_private(self, name: str) -> Any:
        for inst in self.instances:
            if inst.get(name) not in (None, ""):
                return inst[name]
        return None

    def check_consistent(self, key: str, tag: str) -> None:
        bad = (self.pet.get("inconsistent") or {}).get(key)
        if bad:
            msg = (f"SUV: {tag} differs between the images of the series ({', '.join(bad)}); "
                   "the SUV of one series needs one value")
            raise SuvError(msg)

    # -------------------------------------------------------------- times
    def _local(self, value: dt.datetime, offset: dt.timedelta | None, tag: str) -> dt.datetime:
        """A DT value on the clock of the DA/TM values (Timezone Offset From UTC (0008,0201))."""
        if offset is None:
            return value
        local = self.get("TimezoneOffsetFromUTC")
        if local is not None:
            _, local_off = parse_dt(f"19700101{str(local).strip()}", tag="Timezone Offset From UTC (0008,0201)")
            return value - offset + (local_off or dt.timedelta(0))
        if not self._tz_noted:
            self.note(f"{tag} carries a UTC offset but Timezone Offset From UTC (0008,0201) is absent: "
                      "the offset is ignored (all times taken as the scanner's local time)")
            self._tz_noted = True
        return value

    def series_datetime(self) -> dt.datetime:
        date, time = self.get("SeriesDate"), self.get("SeriesTime")
        if date is None or time is None:
            missing = " and ".join(n for n, v in (("Series Date (0008,0021)", date),
                                                  ("Series Time (0008,0031)", time)) if v is None)
            raise SuvError(f"SUV: {missing} is missing; the decay reference time cannot be established")
        self.check_consistent("SeriesDate", "Series Date (0008,0021)")
        self.check_consistent("SeriesTime", "Series Time (0008,0031)")
        return dt.datetime.combine(parse_da(date, tag="Series Date (0008,0021)"),
                                   parse_tm(time, tag="Series Time (0008,0031)"))

    def acquisition_datetime(self, inst: dict[str, Any]) -> dt.datetime | None:
        where = f" of {inst['file']}" if inst.get("file") else ""
        if inst.get("AcquisitionDateTime"):
            tag = f"Acquisition DateTime (0008,002A){where}"
            value, offset = parse_dt(inst["AcquisitionDateTime"], tag=tag)
            return self._local(value, offset, "Acquisition DateTime (0008,002A)")
        if not inst.get("AcquisitionTime"):
            return None
        time = parse_tm(inst["AcquisitionTime"], tag=f"Acquisition Time (0008,0032){where}")
        if inst.get("AcquisitionDate"):
            date = parse_da(inst["AcquisitionDate"], tag=f"Acquisition Date (0008,0022){where}")
        else:
            if self.get("SeriesDate") is None:
                return None
            date = parse_da(self.get("SeriesDate"), tag="Series Date (0008,0021)")
            if not self._acq_date_noted:
                self._acq_date_noted = True
                self.note("Acquisition Date (0008,0022) absent: the Series Date is taken as the acquisition date")
        return dt.datetime.combine(date, time)

    def acquisitions(self, *, required: bool) -> list[dt.datetime | None]:
        times = [self.acquisition_datetime(inst) for inst in self.instances]
        if required and any(t is None for t in times):
            k = next(i for i, t in enumerate(times) if t is None)
            where = self.instances[k].get("file", f"image {k + 1}")
            msg = (f"SUV: Acquisition Date/Time (0008,0022/0032) is missing in {where}; "
                   "Decay Correction NONE decays each image to its own acquisition time")
            raise SuvError(msg)
        return times

    def injection_datetime(self, reference: dt.datetime, reference_name: str) -> dt.datetime:
        """The injection time (module notes, step 4); ``reference`` dates a time of day."""
        override = self.over.get("injection_time")
        if override is not None:
            value = override if isinstance(override, dt.datetime) else parse_user_time(str(override))
            if isinstance(value, dt.datetime) and value.tzinfo is not None:
                raise SuvError("SUV: injection_time (--injection-time) must be local time without a UTC offset")
            if isinstance(value, dt.datetime):
                self.note(f"injection time {iso(value)} from injection_time (--injection-time)")
                return value
            return self._time_of_day(value, reference, reference_name, "injection_time (--injection-time)")
        start_dt = self.rp("RadiopharmaceuticalStartDateTime")
        if start_dt is not None:
            value, offset = parse_dt(start_dt, tag="Radiopharmaceutical Start DateTime (0018,1078)")
            value = self._local(value, offset, "Radiopharmaceutical Start DateTime (0018,1078)")
            self.note(f"injection time {iso(value)} from Radiopharmaceutical Start DateTime (0018,1078)")
            return value
        start_t = self.rp("RadiopharmaceuticalStartTime")
        ge_admin = self.first_private("ge_admin_datetime")
        if ge_admin is not None:
            value, offset = parse_dt(ge_admin, tag="GE private admin_datetime (0009,xx3B)")
            value = self._local(value, offset, "GE private admin_datetime (0009,xx3B)")
            same = start_t is None or abs(
                dt.datetime.combine(value.date(), parse_tm(start_t, tag="Radiopharmaceutical Start Time (0018,1072)"))
                - value) <= dt.timedelta(seconds=1)
            if same:
                self.note(f"injection time {iso(value)} from the GE private admin_datetime (0009,xx3B) "
                          "\"GEMS_PETD_01\" (Radiopharmaceutical Start DateTime (0018,1078) absent)")
                return value
            self.note(f"GE private admin_datetime (0009,xx3B) {iso(value)} disagrees with Radiopharmaceutical "
                      f"Start Time (0018,1072) {start_t}: not used")
        if start_t is not None:
            time = parse_tm(start_t, tag="Radiopharmaceutical Start Time (0018,1072)")
            return self._time_of_day(time, reference, reference_name, "Radiopharmaceutical Start Time (0018,1072)")
        msg = ("SUV: the injection time is unknown: Radiopharmaceutical Start DateTime (0018,1078) and "
               "Start Time (0018,1072) are both missing; give it with --injection-time "
               "(injection_time='2024-01-02T10:00:00')")
        raise SuvError(msg)

    def _time_of_day(self, time: dt.time, reference: dt.datetime, reference_name: str, source: str) -> dt.datetime:
        value = dt.datetime.combine(reference.date(), time)
        if value > reference:
            value -= dt.timedelta(days=1)
            self.note(f"injection time {iso(value)}: {source} {time.isoformat()} on the date of the {reference_name} "
                      "would be after it, so the day before (the uptake crossed midnight)")
        else:
            self.note(f"injection time {iso(value)}: {source} {time.isoformat()} on the date of the {reference_name}")
        return value

    # -------------------------------------------------------------- scalars
    def scalar(self, key: str, override: str, tag: str, unit: str, flag: str, *,
               where: str = "pet", lo: float = 0.0, hi: float = math.inf, hint: str = "") -> float:
        value = self.over.get(override)
        if value is not None:
            source = f"{override} ({flag})"
            header = self.rp(key) if where == "rp" else self.get(key)
            self.note(f"{override} {float(value):g} {unit} from {flag}"
                      + (f" (the header says {header:g})" if isinstance(header, (int, float)) else ""))
        else:
            value = self.rp(key) if where == "rp" else (self.get(key) or self.meta.get(key))
            source = tag
            if where == "pet":
                self.check_consistent(key, tag)
        try:
            number = float(value) if value is not None else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if value is None or not math.isfinite(number) or number <= 0:
            state = "missing" if value is None else f"{value!r}"
            msg = f"SUV: {tag} is {state}; give the {override.rsplit('_', 1)[0].replace('_', ' ')} in {unit} with {flag}"
            raise SuvError(msg)
        if not lo < number <= hi:
            msg = f"SUV: {source} is {number:g} {unit}, which is implausible{hint}; give the value with {flag}"
            raise SuvError(msg)
        return number


# ----------------------------------------------------------------------------- the tree
def _check_corrections(tree: _Tree, decay: str) -> None:
    corrected = tree.get("CorrectedImage")
    if corrected is None:
        tree.note("Corrected Image (0028,0051) absent: attenuation and decay correction are not confirmed by the header")
        return
    flags = {str(v).strip().upper() for v in (corrected if isinstance(corrected, list) else str(corrected).split("\\"))}
    if "ATTN" not in flags:
        msg = (f"SUV: Corrected Image (0028,0051) is {sorted(flags)} without ATTN: the image is not "
               "attenuation-corrected, so its values are not activity concentrations and SUV is meaningless")
        raise SuvError(msg)
    if decay in ("START", "ADMIN") and "DECY" not in flags:
        msg = (f"SUV: Decay Correction (0054,1102) is {decay} but Corrected Image (0028,0051) {sorted(flags)} "
               "has no DECY; the header contradicts itself")
        raise SuvError(msg)
    if decay == "NONE" and "DECY" in flags:
        msg = ("SUV: Decay Correction (0054,1102) is NONE but Corrected Image (0028,0051) has DECY; "
               "the header contradicts itself")
        raise SuvError(msg)
    tree.note(f"Corrected Image (0028,0051) has ATTN{' and DECY' if 'DECY' in flags else ''}")


def _per_instance(tree: _Tree, name: str) -> np.ndarray | None:
    values = [inst.get(name) for inst in tree.instances]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        k = next(i for i, v in enumerate(values) if v is None)
        _, _, creator, desc = _private_desc(name)
        where = tree.instances[k].get("file", f"image {k + 1}")
        raise SuvError(f"SUV: the {creator} {desc} is missing in {where} but present in other images of the series")
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        arr = np.array([math.nan])
    if np.any(~np.isfinite(arr)) or np.any(arr <= 0):
        _, _, creator, desc = _private_desc(name)
        raise SuvError(f"SUV: the {creator} {desc} must be a number > 0, got {sorted({str(v) for v in values})[:4]}")
    return arr


def _private_desc(name: str) -> tuple[int, int, str, str]:
    from medimg.pet.tags import PRIVATE_TAGS

    return PRIVATE_TAGS[name]


def _start_reference(tree: _Tree, half_life: float) -> tuple[dt.datetime, str, dt.datetime]:
    """Decay reference and injection times for Decay Correction START (module notes, 3)."""
    series = tree.series_datetime()
    acq = [t for t in tree.acquisitions(required=False) if t is not None]
    if not acq:
        msg = ("SUV: no image of the series has an Acquisition Date/Time (0008,0022/0032); Decay "
               "Correction START needs it to check the Series Date/Time (QIBA)")
        raise SuvError(msg)
    earliest = min(acq)
    if series <= earliest:
        tree.note(f"decay reference = Series Date/Time (0008,0021/0031) {iso(series)}: not after the earliest "
                  f"Acquisition Date/Time {iso(earliest)} of the {len(tree.instances)} image(s)")
        injection = tree.injection_datetime(series, "series")
        return series, "series", injection
    tree.note(f"Series Date/Time (0008,0021/0031) {iso(series)} is after the earliest Acquisition Date/Time "
              f"(0008,0022/0032) {iso(earliest)}: a post-processed series, whose series time is not the scan's")
    injection = tree.injection_datetime(earliest, "earliest acquisition")
    for name, label in (("ge_scan_datetime", "GE private scan_datetime (0009,xx0D) \"GEMS_PETD_01\""),
                        ("siemens_decay_datetime", "Siemens private Decay Correction DateTime (0071,xx22) "
                                                   "\"SIEMENS MED PT\"")):
        raw = tree.first_private(name)
        if raw is None:
            continue
        value, offset = parse_dt(raw, tag=label)
        value = tree._local(value, offset, label)
        if injection <= value <= earliest + dt.timedelta(seconds=1):
            tree.note(f"decay reference = {label} {iso(value)}")
            return value, name, injection
        tree.note(f"{label} {iso(value)} is not between the injection {iso(injection)} and the earliest "
                  "acquisition: not used")
    tree.note(f"decay reference = the earliest Acquisition Date/Time (0008,0022/0032) {iso(earliest)}")
    return earliest, "earliest-acquisition", injection


def _decay(tree: _Tree, decay: str, half_life: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Decay factors and elapsed times (s), one per image."""
    if decay == "ADMIN":
        tree.note("Decay Correction ADMIN: activities are corrected to the administration time; no decay")
        return np.ones(n), np.zeros(n)
    if decay == "START":
        tree.note("Decay Correction START: activities are corrected to the scan start; the dose is decayed to it")
        reference, _, injection = _start_reference(tree, half_life)
        times = np.full(n, (reference - injection).total_seconds())
        tree.values["reference_time"] = iso(reference)
    else:
        tree.note("Decay Correction NONE: each image is decay-corrected to its own acquisition")
        acq = tree.acquisitions(required=True)
        earliest = min(acq)
        injection = tree.injection_datetime(earliest, "earliest acquisition")
        lam = math.log(2.0) / half_life
        times = np.empty(len(acq))
        noted_start = noted_mean = False
        for k, (inst, t0) in enumerate(zip(tree.instances, acq, strict=True)):
            try:
                tau = float(inst.get("ActualFrameDuration") or 0.0) / 1000.0
            except ValueError:
                where = inst.get("file", f"image {k + 1}")
                raise SuvError(f"SUV: Actual Frame Duration (0018,1242) of {where} is "
                               f"{inst['ActualFrameDuration']!r}, not a number (ms)") from None
            shift = 0.0
            if tau > 0:
                shift = math.log(lam * tau / -math.expm1(-lam * tau)) / lam
                noted_mean = True
            else:
                noted_start = True
            times[k] = (t0 - injection).total_seconds() + shift
        if noted_mean:
            tree.note("each image's reference = its Acquisition Date/Time + the mean-count time of its frame "
                      "(Actual Frame Duration (0018,1242))")
        if noted_start:
            tree.note("Actual Frame Duration (0018,1242) absent for some images: those are decayed to their frame start")
        tree.values["reference_time"] = iso(earliest) if np.all(times == times[0]) else "per image"
    tree.values["injection_time"] = iso(injection)
    if np.min(times) < -_EARLY_START_S:
        msg = (f"SUV: the injection ({iso(injection)}) is {-np.min(times):.0f} s after the decay reference time; "
               "check Radiopharmaceutical Start (Date)Time (0018,1072/1078) or give --injection-time")
        raise SuvError(msg)
    if np.min(times) < 0:
        tree.note(f"the scan starts {-np.min(times):.1f} s before the injection (a dynamic scan)")
    return np.exp2(-times / half_life), times


def suv_scale(
    meta: dict[str, Any],
    *,
    suv_type: SuvType = "bw",
    weight_kg: float | None = None,
    dose_bq: float | None = None,
    injection_time: str | dt.datetime | None = None,
    half_life_s: float | None = None,
    height_m: float | None = None,
    sex: str | None = None,
    n_slices: int | None = None,
) -> SuvScale:
    """Walk the SUV decision tree (module notes) on an image's ``meta``.

    Parameters
    ----------
    meta
        ``Image.meta`` with ``meta["pet"]`` as the DICOM reader fills it
        (:func:`medimg.pet.tags.pet_tags`).
    suv_type
        ``"bw"`` (body weight), ``"lbm-james"`` / ``"lbm-janma"`` (SUL), ``"bsa"``, ``"ibw"``.
    weight_kg, dose_bq, injection_time, half_life_s, height_m, sex
        Overrides of Patient's Weight (kg), Radionuclide Total Dose (Bq, at the injection),
        the injection date-time (``"2024-01-02T10:00:00"``, ``"20240102100000"`` or a time of day
        ``"10:00:00"``), Radionuclide Half Life (s), Patient's Size (m) and Patient's Sex
        (``"M"``/``"F"``). Each override used is recorded in ``branches``.
    n_slices
        Number of slices of the image the factors are for (checks the per-image list).

    Returns
    -------
    SuvScale
        Per-slice factors, units, the resolved values and the branches taken.

    Raises
    ------
    SuvError
        Anything the tree cannot resolve; the message names the tag and the override.
    """
    if suv_type not in SUV_TYPES:
        from medimg.errors import UnknownNameError

        raise UnknownNameError("suv_type", str(suv_type), SUV_TYPES)
    overrides = {"weight_kg": weight_kg, "dose_bq": dose_bq, "injection_time": injection_time,
                 "half_life_s": half_life_s, "height_m": height_m, "sex": sex}
    tree = _Tree(meta, overrides)
    modality = tree.get("Modality") or meta.get("Modality")
    if modality not in (None, "PT"):
        raise SuvError(f"SUV: the image is modality {modality!r}, not PT (PET)")
    tree.check_consistent("Units", "Units (0054,1001)")
    tree.check_consistent("DecayCorrection", "Decay Correction (0054,1102)")
    units = str(tree.get("Units") or "").strip().upper()
    decay = str(tree.get("DecayCorrection") or "").strip().upper()
    n = len(tree.instances)
    values = tree.values
    values.update({"units_in": units or None, "decay_correction": decay or None})
    dose_like = [k for k in ("dose_bq", "injection_time", "half_life_s") if overrides[k] is not None]
    weight_header_only = False

    if units == "GML":
        suv_kind = str(tree.get("SUVType") or "BW").strip().upper()
        tree.check_consistent("SUVType", "SUV Type (0054,1006)")
        if suv_kind != "BW":
            msg = (f"SUV: Units (0054,1001) GML with SUV Type (0054,1006) {suv_kind}: the values are SUV{suv_kind.lower()}, "
                   "not SUVbw; converting them needs the formula the scanner used, which the header does not say")
            raise SuvError(msg)
        if dose_like:
            raise SuvError(f"SUV: Units (0054,1001) is GML (already SUVbw): {', '.join(dose_like)} cannot be applied")
        _check_corrections(tree, decay)
        tree.note("Units GML: the values are SUVbw already (SUV Type (0054,1006) BW or absent); factor 1")
        bw = np.ones(n)
        weight_header_only = True
    elif units in ("BQML", "CNTS"):
        activity = np.ones(n)
        if units == "CNTS":
            suv_f = _per_instance(tree, "philips_suv_factor")
            act_f = _per_instance(tree, "philips_activity_factor")
            changed = dose_like + (["weight_kg"] if weight_kg is not None else [])
            if suv_f is not None and not changed:
                _check_corrections(tree, decay)
                tree.note("Units CNTS with the Philips private SUV Scale Factor (7053,xx00) \"Philips PET Private "
                          f"Group\": factor = {_scalar_or_list(suv_f)} (SUVbw per count)")
                values["philips_suv_factor"] = suv_f
                bw = suv_f
                weight_header_only = True
            elif act_f is not None:
                if suv_f is not None:
                    tree.note(f"{', '.join(changed)} given: the Philips SUV Scale Factor (7053,xx00) embeds the header's "
                              "values, so the Activity Concentration Scale Factor (7053,xx09) is used instead")
                tree.note("Units CNTS with the Philips private Activity Concentration Scale Factor (7053,xx09): "
                          f"Bq/ml = value x {_scalar_or_list(act_f)}; then as for BQML")
                values["philips_activity_factor"] = act_f
                activity = act_f
            elif suv_f is not None:
                msg = (f"SUV: Units CNTS with only the Philips SUV Scale Factor (7053,xx00): it embeds the header's "
                       f"weight, dose and times, so {', '.join(changed)} cannot be applied (no Activity "
                       "Concentration Scale Factor (7053,xx09)); drop the override")
                raise SuvError(msg)
            else:
                msg = ("SUV: Units (0054,1001) is CNTS but neither the Philips SUV Scale Factor (7053,xx00) nor the "
                       "Activity Concentration Scale Factor (7053,xx09) (\"Philips PET Private Group\") is present; "
                       "counts cannot be converted (usable Units: BQML, GML, or CNTS with those factors)")
                raise SuvError(msg)
        else:
            tree.note("Units BQML: the values are activity concentrations in Bq/ml")
        if units == "BQML" or values.get("philips_activity_factor") is not None:
            _check_corrections(tree, decay)
            if decay not in ("START", "ADMIN", "NONE"):
                msg = (f"SUV: Decay Correction (0054,1102) is {decay or 'missing'!r}; the tree knows START, ADMIN "
                       "and NONE")
                raise SuvError(msg)
            weight = tree.scalar("PatientWeight", "weight_kg", "Patient's Weight (0010,1030)", "kg", "--weight-kg",
                                 hi=500.0, hint=" (more than 500 kg: grams?)")
            dose = tree.scalar("RadionuclideTotalDose", "dose_bq", "Radionuclide Total Dose (0018,1074)", "Bq",
                               "--dose-bq", where="rp", lo=1e4, hint=" (less than 10 kBq: MBq written as Bq?)")
            half = tree.scalar("RadionuclideHalfLife", "half_life_s", "Radionuclide Half Life (0018,1075)", "s",
                               "--half-life-s", where="rp")
            decay_factor, elapsed = _decay(tree, decay, half, n)
            values.update({"weight_kg": weight, "dose_bq": dose, "half_life_s": half, "elapsed_s": elapsed,
                           "decay_factor": decay_factor})
            bw = activity * weight * 1000.0 / (dose * decay_factor)
            tree.note("SUVbw factor = weight [g] / (dose [Bq] x decay factor)"
                      + (" x activity scale factor" if units == "CNTS" else ""))
    else:
        msg = (f"SUV: Units (0054,1001) is {units or 'missing'!r}; SUV needs BQML (Bq/ml), CNTS with a Philips "
               "private scale factor (7053,xx00 or 7053,xx09) or GML (SUVbw); no override can change that")
        raise SuvError(msg)

    radiopharm_items = tree.get("radiopharmaceutical_items")
    if radiopharm_items:
        tree.note(f"the Radiopharmaceutical Information Sequence (0054,0016) has {radiopharm_items} items: the first is used")
    factor = _normalise(tree, bw, suv_type, weight_header_only)
    factor = _per_slice(tree, factor, n_slices)
    return SuvScale(factor=factor, suv_type=suv_type, units=SUV_TYPES[suv_type], branches=tuple(tree.branches),
                    values=dict(values))


def _normalise(tree: _Tree, bw: np.ndarray, suv_type: str, weight_header_only: bool) -> np.ndarray:
    """SUVbw factors rescaled to ``suv_type`` (module notes)."""
    values = tree.values
    if suv_type == "bw":
        return bw
    weight = values.get("weight_kg")
    if weight is None:  # GML / Philips SUV factor: the weight the scanner's SUVbw used
        weight = tree.scalar("PatientWeight", "weight_kg", "Patient's Weight (0010,1030)", "kg", "--weight-kg",
                             hi=500.0, hint=" (more than 500 kg: grams?)")
        values["weight_kg"] = weight
        if weight_header_only and tree.over.get("weight_kg") is not None:
            tree.note("the given weight is taken as the one the scanner's SUVbw was computed with")
    height = tree.scalar("PatientSize", "height_m", "Patient's Size (0010,1020)", "m", "--height-m",
                         lo=0.2, hi=2.8, hint=" (outside 0.2-2.8 m: centimetres?)") if suv_type != "bw" else None
    values["height_m"] = height
    if suv_type != "bsa":
        raw_sex = tree.over.get("sex") or tree.get("PatientSex")
        source = "sex (--sex)" if tree.over.get("sex") else "Patient's Sex (0010,0040)"
        values["sex"] = body.check_sex(raw_sex, source=source)
    if suv_type == "lbm-james":
        size, what = body.lean_body_mass_james(weight, height, values["sex"]), "lean body mass (James)"
    elif suv_type == "lbm-janma":
        size, what = body.lean_body_mass_janmahasatian(weight, height, values["sex"]), "lean body mass (Janmahasatian)"
    elif suv_type == "ibw":
        size, what = body.ideal_body_weight(height, values["sex"]), "ideal body weight (Sugawara)"
    else:
        size, what = body.body_surface_area(weight, height), "body surface area (Du Bois)"
    values["body_size"] = size
    if suv_type == "bsa":
        tree.note(f"SUVbsa = SUVbw x BSA [cm2] / weight [g]: {what} {size:.6g} m2 for {weight:g} kg, {height:g} m")
        return bw * (size * 1e4) / (weight * 1000.0)
    tree.note(f"SUV{suv_type} = SUVbw x {what} / weight: {size:.6g} kg for {weight:g} kg, {height:g} m, sex {values['sex']}")
    return bw * size / weight


def _per_slice(tree: _Tree, factor: np.ndarray, n_slices: int | None) -> np.ndarray:
    factor = np.asarray(factor, dtype=float)
    uniform = bool(np.all(factor == factor[0]))
    if n_slices is None or factor.size == n_slices:
        if not uniform and tree.pet.get("in_volume_order") is False:
            raise SuvError("SUV: the factors differ per image but the series was resampled onto a new grid; "
                           "read it without resampling")
        return factor
    if uniform:
        return np.full(n_slices, factor[0])
    msg = (f"SUV: the factors differ per image ({factor.size} images) but the image has {n_slices} slices; "
           "they cannot be matched")
    raise SuvError(msg)


def to_suv(
    image: Image,
    *,
    suv_type: SuvType = "bw",
    weight_kg: float | None = None,
    dose_bq: float | None = None,
    injection_time: str | dt.datetime | None = None,
    half_life_s: float | None = None,
    height_m: float | None = None,
    sex: str | None = None,
    op: str = "pet.to_suv",
) -> Image:
    """Convert a PET image to SUV by the decision tree (module notes).

    Parameters
    ----------
    image
        A scalar PET image with the reader's ``meta["pet"]`` (values in the file's Units, after
        the Modality LUT), 2-D or 3-D.
    suv_type, weight_kg, dose_bq, injection_time, half_life_s, height_m, sex
        See :func:`suv_scale`.
    op
        Name recorded in ``meta["history"]``.

    Returns
    -------
    Image
        float32 SUV on the input's grid. ``meta["units"]`` is ``"g/ml"`` (``"cm2/ml"`` for
        ``bsa``); ``meta["suv"]`` is :meth:`SuvScale.to_dict`; ``meta["history"]`` gains one step
        with every parameter and every branch taken.

    Raises
    ------
    SuvError
        See :func:`suv_scale`.
    """
    from medimg.filters._common import check_scalar

    check_scalar(image)
    n = image.spatial_shape[0] if image.spatial_ndim == 3 else 1
    if isinstance(injection_time, dt.datetime):
        injection_time = iso(injection_time)
    params = {"suv_type": suv_type, "weight_kg": weight_kg, "dose_bq": dose_bq, "injection_time": injection_time,
              "half_life_s": half_life_s, "height_m": height_m, "sex": sex}
    scale = suv_scale(image.meta, n_slices=n, **params)
    values = np.asarray(image.array, dtype=np.float64)
    shape = (-1,) + (1,) * (values.ndim - 1) if image.spatial_ndim == 3 else ()
    out = values * (scale.factor.reshape(shape) if shape else scale.factor[0])
    info = scale.to_dict()
    meta = dict(image.meta)
    meta["history"] = [*image.meta.get("history", []), {"op": op, **params, **info}]
    meta["units"] = scale.units
    meta["suv"] = info
    return image.with_array(out.astype(np.float32), meta=meta)
