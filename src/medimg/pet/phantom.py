"""Write a synthetic PET DICOM series with any header: every branch of the SUV tree, on demand.

:func:`write_pet_series` writes one PET Image Storage file per slice with the geometry of an
:class:`~medimg.Image`, the PET Series / Isotope / Image attributes, per-image values (multi-bed
acquisition times, frame durations, Philips per-image factors, ...) and the vendor private
elements under their real private creators. Tests and validation build the header sets of the
decision tree with it; the pixel values are 16-bit signed with one Rescale Slope per image (as
GE and Siemens write them), so ``stored x slope`` is the value given to within slope / 2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medimg.core.files import atomic_dir
from medimg.core.image import Image
from medimg.errors import ParameterError

__all__ = ["write_pet_series", "write_pet_headers", "PET_IMAGE_STORAGE", "DEFAULT_HEADER"]

#: SOP Class UID of PET Image Storage.
PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"

#: The header written unless overridden: FDG, 370 MBq injected at 10:00, scan at 11:00, 70 kg.
DEFAULT_HEADER: dict[str, dict[str, Any]] = {
    "patient": {"PatientName": "PET^PHANTOM", "PatientID": "PET-PHANTOM", "PatientBirthDate": "",
                "PatientSex": "M", "PatientWeight": 70.0, "PatientSize": 1.75},
    "series": {"StudyDate": "20240102", "StudyTime": "104500", "SeriesDate": "20240102", "SeriesTime": "110000",
               "AcquisitionDate": "20240102", "AcquisitionTime": "110000", "Manufacturer": "medimg",
               "SeriesNumber": 1, "SeriesDescription": "PET synthetic", "FrameReferenceTime": 0.0,
               "ActualFrameDuration": 120000},
    "radiopharmaceutical": {"Radiopharmaceutical": "Fluorodeoxyglucose",
                            "RadiopharmaceuticalStartTime": "100000",
                            "RadiopharmaceuticalStartDateTime": "20240102100000",
                            "RadionuclideTotalDose": 370e6, "RadionuclideHalfLife": 6586.2,
                            "RadionuclidePositronFraction": 0.9673},
}

# name -> (group, offset, private creator, VR)
_PRIVATE = {
    "philips_suv_factor": (0x7053, 0x00, "Philips PET Private Group", "DS"),
    "philips_activity_factor": (0x7053, 0x09, "Philips PET Private Group", "DS"),
    "ge_scan_datetime": (0x0009, 0x0D, "GEMS_PETD_01", "DT"),
    "ge_admin_datetime": (0x0009, 0x3B, "GEMS_PETD_01", "DT"),
    "siemens_decay_datetime": (0x0071, 0x22, "SIEMENS MED PT", "DT"),
}
_RP_KEYS = ("Radiopharmaceutical", "RadiopharmaceuticalStartTime", "RadiopharmaceuticalStartDateTime",
            "RadionuclideTotalDose", "RadionuclideHalfLife", "RadionuclidePositronFraction")


def _ds_text(value: float) -> str:
    """A Decimal String (at most 16 characters) as close to ``value`` as DS allows."""
    for digits in range(17, 5, -1):
        text = f"{float(value):.{digits}g}"
        if len(text) <= 16:
            return text
    raise ParameterError(f"write_pet_series: {value!r} does not fit a Decimal String")  # pragma: no cover


def _set(ds: Any, keyword: str, value: Any) -> None:
    import pydicom

    if keyword in _PRIVATE:
        group, offset, creator, vr = _PRIVATE[keyword]
        block = ds.private_block(group, creator, create=True)
        block.add_new(offset, vr, _ds_text(value) if vr == "DS" else str(value))
        return
    if pydicom.datadict.tag_for_keyword(keyword) is None:
        raise ParameterError(f"write_pet_series: {keyword!r} is not a DICOM keyword nor a private value "
                             f"({', '.join(_PRIVATE)})")
    vr = pydicom.datadict.dictionary_VR(pydicom.datadict.tag_for_keyword(keyword))
    if vr == "DS":
        value = [_ds_text(v) for v in value] if isinstance(value, (list, tuple)) else _ds_text(value)
    setattr(ds, keyword, value)


def write_pet_series(
    activity: Image,
    folder: str | Path,
    *,
    units: str = "BQML",
    decay_correction: str = "START",
    corrected_image: Sequence[str] | None = ("NORM", "DTIM", "ATTN", "SCAT", "DECY", "RAN"),
    patient: Mapping[str, Any] | None = None,
    series: Mapping[str, Any] | None = None,
    radiopharmaceutical: Mapping[str, Any] | None = None,
    private: Mapping[str, Any] | None = None,
    per_image: Sequence[Mapping[str, Any]] | None = None,
    transfer_syntax: Literal["explicit", "implicit"] = "explicit",
    seed: int | str | None = None,
) -> list[Path]:
    """Write a 3-D activity image as a PET DICOM series (one file per slice).

    Parameters
    ----------
    activity
        A 3-D scalar image; its values are written in ``units`` (Bq/ml for ``"BQML"``, counts for
        ``"CNTS"``, SUV for ``"GML"``). Slice ``k`` is ``activity.array[k]``.
    folder
        The series folder to create (must not exist or be empty); written atomically.
    units, decay_correction
        Units (0054,1001) and Decay Correction (0054,1102); ``None`` omits the attribute.
    corrected_image
        Corrected Image (0028,0051) values; ``None`` omits it.
    patient, series, radiopharmaceutical
        Attributes by DICOM keyword, over :data:`DEFAULT_HEADER`; a value ``None`` removes the
        attribute (to write a header that lacks it). ``radiopharmaceutical`` fills the first
        item of the Radiopharmaceutical Information Sequence (0054,0016).
    private
        Vendor private values for every image: ``philips_suv_factor`` (7053,xx00),
        ``philips_activity_factor`` (7053,xx09), ``ge_scan_datetime`` (0009,xx0D),
        ``ge_admin_datetime`` (0009,xx3B), ``siemens_decay_datetime`` (0071,xx22), each under
        its vendor's private creator.
    per_image
        One mapping per slice of attributes (keywords or private names) for that image only,
        e.g. its ``AcquisitionTime`` or ``ActualFrameDuration`` (ms).
    transfer_syntax
        ``"explicit"`` or ``"implicit"`` VR little endian.
    seed
        Makes the UIDs deterministic (same seed, same UIDs); ``None``: random UIDs.

    Returns
    -------
    list of Path
        The files, in slice order.

    Raises
    ------
    ParameterError
        Not a 3-D scalar image, non-finite values, a non-empty ``folder``, an unknown keyword or
        a ``per_image`` list of the wrong length.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

    from medimg.io.dicom.writer import DEFAULT_UID_ROOT

    if not isinstance(activity, Image) or activity.spatial_ndim != 3 or activity.channel_axis is not None:
        raise ParameterError("write_pet_series: activity must be a 3-D scalar medimg.Image")
    values = np.asarray(activity.array, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ParameterError("write_pet_series: activity has non-finite values")
    n, rows, cols = values.shape
    if per_image is not None and len(per_image) != n:
        raise ParameterError(f"write_pet_series: per_image has {len(per_image)} entries for {n} slices")
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ParameterError(f"{folder}: the series folder must not exist or be empty")

    def uid(*parts: object) -> str:
        if seed is None:
            return str(generate_uid(prefix=DEFAULT_UID_ROOT))
        return str(generate_uid(prefix=DEFAULT_UID_ROOT, entropy_srcs=[str(seed), *map(str, parts)]))

    affine = activity.affine
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction = affine[:3, :3] / spacing
    header: dict[str, Any] = {**DEFAULT_HEADER["patient"], **DEFAULT_HEADER["series"]}
    header.update({"StudyInstanceUID": uid("study"), "SeriesInstanceUID": uid("series"),
                   "FrameOfReferenceUID": uid("frame-of-reference"), "StudyID": "1", "AccessionNumber": "",
                   "ReferringPhysicianName": "", "PositionReferenceIndicator": ""})
    header.update(patient or {})
    header.update(series or {})
    rp = {**DEFAULT_HEADER["radiopharmaceutical"], **(radiopharmaceutical or {})}
    bad = set(rp) - set(_RP_KEYS)
    if bad:
        raise ParameterError(f"write_pet_series: radiopharmaceutical keys must be among {', '.join(_RP_KEYS)}, got {sorted(bad)}")
    pet_series = {"Units": units, "DecayCorrection": decay_correction,
                  "CorrectedImage": list(corrected_image) if corrected_image is not None else None,
                  "SeriesType": ["WHOLE BODY", "IMAGE"], "CountsSource": "EMISSION",
                  "RandomsCorrectionMethod": "DLYD", "AttenuationCorrectionMethod": "CT",
                  "ReconstructionMethod": "OSEM", "NumberOfSlices": n, "CollimatorType": "NONE",
                  "Laterality": "", "PatientOrientationCodeSequence": [],
                  "PatientGantryRelationshipCodeSequence": []}
    header.update(pet_series)

    ts = ImplicitVRLittleEndian if transfer_syntax == "implicit" else ExplicitVRLittleEndian
    paths: list[Path] = []
    with atomic_dir(folder) as tmp:
        for k in range(n):
            ds = Dataset()
            for keyword, value in header.items():
                if value is not None:
                    _set(ds, keyword, value)
            item = Dataset()
            item.RadionuclideCodeSequence = []
            for keyword, value in rp.items():
                if value is not None:
                    _set(item, keyword, value)
            ds.RadiopharmaceuticalInformationSequence = [item]
            for keyword, value in (private or {}).items():
                if value is not None:
                    _set(ds, keyword, value)
            for keyword, value in (per_image[k] if per_image is not None else {}).items():
                if value is None:
                    if keyword in ds:
                        delattr(ds, keyword)
                else:
                    _set(ds, keyword, value)
            if decay_correction in ("START", "ADMIN") and "DecayFactor" not in ds:
                _set(ds, "DecayFactor", _decay_factor(ds, item, decay_correction))
            plane = values[k]
            peak = float(np.max(np.abs(plane)))
            slope = peak / 32767.0 if peak > 0 else 1.0
            stored = np.clip(np.rint(plane / slope), -32768, 32767).astype(np.int16)
            sop = uid("instance", k)
            position = affine[:3, 3] + k * affine[:3, 2]
            _set(ds, "SOPClassUID", PET_IMAGE_STORAGE)
            _set(ds, "SOPInstanceUID", sop)
            _set(ds, "Modality", "PT")
            _set(ds, "ImageType", ["ORIGINAL", "PRIMARY"])
            _set(ds, "InstanceNumber", k + 1)
            _set(ds, "ImageIndex", k + 1)
            _set(ds, "ImagePositionPatient", [float(v) for v in position])
            _set(ds, "ImageOrientationPatient", [float(v) for v in (*direction[:, 0], *direction[:, 1])])
            _set(ds, "PixelSpacing", [float(spacing[1]), float(spacing[0])])
            _set(ds, "SliceThickness", float(spacing[2]))
            _set(ds, "RescaleSlope", slope)
            _set(ds, "RescaleIntercept", 0.0)
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = rows, cols
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.LossyImageCompression = "00"
            ds.PixelData = stored.tobytes()
            ds["PixelData"].VR = "OW"
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = PET_IMAGE_STORAGE
            meta.MediaStorageSOPInstanceUID = sop
            meta.TransferSyntaxUID = ts
            ds.file_meta = meta
            name = f"{k + 1:04d}.dcm"
            pydicom.dcmwrite(tmp / name, ds, enforce_file_format=True)
            paths.append(folder / name)
    return paths


def _decay_factor(ds: Any, item: Any, decay_correction: str) -> float:
    """Decay Factor (0054,1321) a scanner would write: from the frame's mean-count time back to the
    series start (START) or the injection (ADMIN); 1 when the header lacks the times."""
    import datetime as dt
    import math

    try:
        half = float(item.RadionuclideHalfLife)
        acq = dt.datetime.strptime(f"{ds.AcquisitionDate}{str(ds.AcquisitionTime)[:6]}", "%Y%m%d%H%M%S")
        if decay_correction == "START":
            ref = dt.datetime.strptime(f"{ds.SeriesDate}{str(ds.SeriesTime)[:6]}", "%Y%m%d%H%M%S")
        else:
            ref = dt.datetime.strptime(str(item.RadiopharmaceuticalStartDateTime)[:14], "%Y%m%d%H%M%S")
        tau = float(ds.ActualFrameDuration) / 1000.0
    except (AttributeError, ValueError, TypeError):
        return 1.0
    lam = math.log(2.0) / half
    within = lam * tau / -math.expm1(-lam * tau) if tau > 0 else 1.0
    return math.exp(lam * (acq - ref).total_seconds()) * within


_PATIENT_KEYS = ("PatientSex", "PatientWeight", "PatientSize", "PatientID", "PatientName")


def write_pet_headers(
    headers: Mapping[str, Any],
    folder: str | Path,
    *,
    activity: float = 1000.0,
    shape: tuple[int, int] = (4, 4),
    seed: int | str | None = 0,
) -> list[Path]:
    """Write a small uniform PET series that carries exactly the header set ``headers``.

    ``headers`` describes a series the way the SUV reference data do
    (``tests/data/pet-suv-headers``): ``series`` (Units, DecayCorrection, CorrectedImage,
    Series Date/Time and the Patient's Weight / Size / Sex), ``radiopharmaceutical`` (the
    sequence item) and ``instances`` (one mapping per image: acquisition date/time, frame timing,
    private values). Attributes absent from ``headers`` are absent from the files (the defaults
    of :data:`DEFAULT_HEADER` are not filled in for them). Each image holds ``activity`` in
    every voxel.
    """
    series = dict(headers.get("series") or {})
    instances = list(headers.get("instances") or [{}])
    patient = {k: series.pop(k, None) for k in _PATIENT_KEYS}
    units = series.pop("Units", None)
    decay = series.pop("DecayCorrection", None)
    corrected = series.pop("CorrectedImage", None)
    blank = {k: None for k in DEFAULT_HEADER["series"] if k not in ("StudyDate", "StudyTime", "SeriesNumber",
                                                                    "SeriesDescription", "Manufacturer")}
    rp = {k: None for k in _RP_KEYS}
    rp.update(headers.get("radiopharmaceutical") or {})
    image = Image.from_geometry(np.full((len(instances), *shape), float(activity)), spacing=(4.0, 4.0, 4.0))
    return write_pet_series(image, folder, units=units, decay_correction=decay, corrected_image=corrected,
                            patient={k: patient.get(k) for k in _PATIENT_KEYS if k in patient},
                            series={**blank, **series}, radiopharmaceutical=rp, per_image=instances, seed=seed)
