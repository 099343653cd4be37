"""The PET attributes an SUV computation needs, from every instance of a series.

The QIBA vendor-neutral SUV decision tree compares the Series Date/Time with the *earliest*
Acquisition Date/Time of all images of the series, and vendors keep per-image scale factors in
private groups; the first file alone is not enough. :func:`pet_tags` reads each file's header
once (pydicom, without pixel data) and returns a plain, JSON-able dict that the DICOM reader
stores in ``Image.meta["pet"]``:

* series-level attributes (from the first file): ``Units`` (0054,1001), ``DecayCorrection``
  (0054,1102), ``CorrectedImage`` (0028,0051), ``SUVType`` (0054,1006), ``PatientWeight``
  (0010,1030), ``PatientSize`` (0010,1020), ``PatientSex`` (0010,0040), ``SeriesDate`` /
  ``SeriesTime`` (0008,0021/0031), ``AcquisitionDate`` / ``AcquisitionTime`` of the first file,
  ``Manufacturer``, ``TimezoneOffsetFromUTC`` (0008,0201) and ``Radiopharmaceutical``: the
  first item of the Radiopharmaceutical Information Sequence (0054,0016);
* ``instances``: one dict per slice of the volume, in volume order, with the per-image values
  (acquisition date/time, Frame Reference Time, Actual Frame Duration, Decay Factor, Rescale
  Slope) and the vendor private values found under their private creators:
  ``philips_suv_factor`` (7053,xx00) and ``philips_activity_factor`` (7053,xx09) of
  "Philips PET Private Group", ``ge_scan_datetime`` (0009,xx0D) and ``ge_admin_datetime``
  (0009,xx3B) of "GEMS_PETD_01", ``siemens_decay_datetime`` (0071,xx22) of "SIEMENS MED PT";
* ``inconsistent``: series-level attributes whose value differs between instances (the SUV
  tree refuses those).

Private elements are looked up through their private creator, never by a fixed element number.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medimg.errors import FileFormatError

__all__ = ["pet_tags", "SERIES_KEYWORDS", "INSTANCE_KEYWORDS", "PRIVATE_TAGS"]

#: Attributes taken from the first file (and checked for consistency across the files).
SERIES_KEYWORDS = (
    "Units", "DecayCorrection", "CorrectedImage", "SUVType", "PatientWeight", "PatientSize",
    "PatientSex", "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime", "Manufacturer",
    "TimezoneOffsetFromUTC", "Modality",
)
#: Series-level attributes that must have one value in the whole series.
_CONSISTENT = ("Units", "DecayCorrection", "SUVType", "PatientWeight", "SeriesDate", "SeriesTime")
#: Attributes kept per instance.
INSTANCE_KEYWORDS = (
    "SOPInstanceUID", "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime",
    "FrameReferenceTime", "ActualFrameDuration", "DecayFactor", "RescaleSlope", "RescaleIntercept",
)
#: Radiopharmaceutical Information Sequence item attributes.
_RADIOPHARMACEUTICAL = (
    "Radiopharmaceutical", "RadiopharmaceuticalStartTime", "RadiopharmaceuticalStartDateTime",
    "RadionuclideTotalDose", "RadionuclideHalfLife", "RadionuclidePositronFraction",
)
#: name -> (group, element offset, private creator, description)
PRIVATE_TAGS: dict[str, tuple[int, int, str, str]] = {
    "philips_suv_factor": (0x7053, 0x00, "Philips PET Private Group", "SUV Scale Factor (7053,xx00)"),
    "philips_activity_factor": (0x7053, 0x09, "Philips PET Private Group",
                                "Activity Concentration Scale Factor (7053,xx09)"),
    "ge_scan_datetime": (0x0009, 0x0D, "GEMS_PETD_01", "PET scan_datetime (0009,xx0D)"),
    "ge_admin_datetime": (0x0009, 0x3B, "GEMS_PETD_01", "PET admin_datetime (0009,xx3B)"),
    "siemens_decay_datetime": (0x0071, 0x22, "SIEMENS MED PT", "Decay Correction DateTime (0071,xx22)"),
}
_NUMERIC = {"PatientWeight", "PatientSize", "FrameReferenceTime", "ActualFrameDuration", "DecayFactor",
            "RescaleSlope", "RescaleIntercept", "RadionuclideTotalDose", "RadionuclideHalfLife",
            "RadionuclidePositronFraction", "philips_suv_factor", "philips_activity_factor"}


def _plain(keyword: str, value: Any, path: Path) -> Any:
    """A JSON-able value: numbers as float (the text when it is not a number: the SUV tree names
    it then), multi-values as lists of str, the rest as str."""
    if value is None or value == "":
        return None
    if type(value).__name__ == "MultiValue" or isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").strip("\x00 ")
    text = str(value).strip()
    if keyword in _NUMERIC:
        try:
            return float(text)
        except ValueError:
            return text or None
    return text or None


_PRIVATE_GROUPS = frozenset(g for g, _, _, _ in PRIVATE_TAGS.values())


def _privates(ds: Any, path: Path) -> dict[str, Any]:
    """The :data:`PRIVATE_TAGS` values of ``ds``, found through their private creators."""
    blocks: dict[tuple[int, str], int] = {}
    for tag in list(ds.keys()):
        if tag.group in _PRIVATE_GROUPS and 0x10 <= tag.element <= 0xFF:
            creator = ds[tag].value
            if isinstance(creator, bytes):
                creator = creator.decode("ascii", "replace")
            blocks[(tag.group, str(creator).strip("\x00 "))] = tag.element << 8
    out: dict[str, Any] = {}
    if not blocks:
        return out
    for name, (group, offset, creator, _) in PRIVATE_TAGS.items():
        start = blocks.get((group, creator))
        elem = ds.get((group << 16) | (start + offset)) if start is not None else None
        if elem is None:
            continue
        value = elem.value
        if isinstance(value, bytes):  # implicit VR or unknown creator: the raw text
            value = value.decode("ascii", "replace").strip("\x00 ")
        value = _plain(name, value, path)
        if value is not None:
            out[name] = value
    return out


def _read(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=True, defer_size="64 KB")
    except (InvalidDicomError, OSError, ValueError, EOFError) as err:
        raise FileFormatError(path, f"cannot read the PET header: {err}") from None


def pet_tags(files: Sequence[str | Path], *, in_volume_order: bool = True) -> dict[str, Any]:
    """Collect the PET attributes of a series, one ``instances`` entry per slice.

    Parameters
    ----------
    files
        The file of each slice, in the volume's slice order (a file may repeat for the frames of
        a multi-frame object; it is read once).
    in_volume_order
        ``False`` when the volume is not one slice per entry of ``files`` (a series resampled
        onto a regular grid); per-slice factors then cannot be applied slice by slice.

    Returns
    -------
    dict
        See the module notes; plain JSON-able values (numbers as float, times as DICOM text;
        a numeric attribute that is not a number stays text, for the SUV tree to name).

    Raises
    ------
    FileFormatError
        A file cannot be read.
    """
    paths = [Path(p) for p in files]
    if not paths:
        return {"instances": [], "in_volume_order": in_volume_order}
    cache: dict[Path, dict[str, Any]] = {}
    first_ds = None
    for path in dict.fromkeys(paths):
        ds = _read(path)
        if first_ds is None:
            first_ds = ds
        entry: dict[str, Any] = {k: _plain(k, ds.get(k), path) for k in INSTANCE_KEYWORDS}
        entry.update(_privates(ds, path))
        entry["file"] = str(path)
        entry["_series"] = {k: _plain(k, ds.get(k), path) for k in _CONSISTENT}
        cache[path] = entry
    out: dict[str, Any] = {}
    for kw in SERIES_KEYWORDS:
        value = _plain(kw, first_ds.get(kw), paths[0])
        if value is not None:
            out[kw] = value
    seq = first_ds.get("RadiopharmaceuticalInformationSequence")
    if seq:
        item = seq[0]
        rp = {kw: _plain(kw, item.get(kw), paths[0]) for kw in _RADIOPHARMACEUTICAL}
        out["Radiopharmaceutical"] = {k: v for k, v in rp.items() if v is not None}
        if len(seq) > 1:
            out["radiopharmaceutical_items"] = len(seq)
    instances = []
    for path in paths:
        entry = dict(cache[path])
        entry.pop("_series")
        instances.append({k: v for k, v in entry.items() if v is not None})
    inconsistent = {}
    for kw in _CONSISTENT:
        values = {repr(cache[p]["_series"][kw]) for p in cache}
        if len(values) > 1:
            inconsistent[kw] = sorted(values)
    out["instances"] = instances
    out["in_volume_order"] = bool(in_volume_order)
    if inconsistent:
        out["inconsistent"] = inconsistent
    return out
