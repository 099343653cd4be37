"""Write a 3-D :class:`~medimg.Image` as a DICOM series (one single-frame file per slice).

The geometry follows the DICOM Image Plane module exactly (PS3.3 C.7.6.2), from the Image's
LPS affine that maps the voxel index (x, y, z, 1) to mm:

* Image Position (Patient) of slice ``k`` is the LPS position of voxel (x=0, y=0, z=k);
* Image Orientation (Patient) is the row direction (the x voxel axis, ``direction[:, 0]``)
  followed by the column direction (the y voxel axis, ``direction[:, 1]``);
* Pixel Spacing is ``[row spacing, column spacing]`` = ``[spacing y, spacing x]`` — the
  *reverse* of medimg's (x, y, z) order;
* Slice Thickness and Spacing Between Slices are the z spacing; Slice Location is the
  position's projection on the slice normal (row x column).

Pixel values are written as 16-bit stored values with Rescale Slope / Intercept chosen so that
``stored * slope + intercept`` gives the input back exactly where that is possible (see
:func:`write_series`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medimg.core.files import atomic_dir
from medimg.core.image import Image
from medimg.errors import ParameterError, UnknownNameError, did_you_mean

__all__ = ["write_series", "TRANSFER_SYNTAXES", "META_KEYWORDS", "DEFAULT_UID_ROOT"]

log = logging.getLogger(__name__)

#: Names accepted by ``transfer_syntax`` and the UIDs they stand for.
TRANSFER_SYNTAXES: dict[str, str] = {
    "explicit": "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "implicit": "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "rle": "1.2.840.10008.1.2.5",  # RLE Lossless
    "jpeg2000-lossless": "1.2.840.10008.1.2.4.90",  # JPEG 2000 Image Compression (Lossless Only)
    "jpegls-lossless": "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless Image Compression
}

_SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
}

#: ``image.meta`` keys that :func:`write_series` copies into the files, and their DICOM keywords.
META_KEYWORDS: dict[str, str] = {
    "patient_name": "PatientName",
    "patient_id": "PatientID",
    "patient_birth_date": "PatientBirthDate",
    "patient_sex": "PatientSex",
    "study_date": "StudyDate",
    "study_time": "StudyTime",
    "study_description": "StudyDescription",
    "series_description": "SeriesDescription",
    "series_number": "SeriesNumber",
    "manufacturer": "Manufacturer",
    "manufacturer_model_name": "ManufacturerModelName",
    "body_part_examined": "BodyPartExamined",
    "window_center": "WindowCenter",
    "window_width": "WindowWidth",
}

# Attributes that write_series derives itself; the patient/study/series/extra mappings may not set them.
_MANAGED = frozenset(
    {
        "SOPClassUID", "SOPInstanceUID", "Modality", "ImageOrientationPatient",
        "ImagePositionPatient", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
        "SliceLocation", "InstanceNumber", "SamplesPerPixel", "PhotometricInterpretation", "Rows",
        "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PixelData",
        "RescaleSlope", "RescaleIntercept", "NumberOfFrames",
    }
)

#: pydicom's registered UID root, used when ``uid_root`` is not given.
DEFAULT_UID_ROOT = "1.2.826.0.1.3680043.8.498."

_SCALES = (1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 256, 1000, 1024)
_INT16 = (-32768, 32767)
_UINT16 = (0, 65535)


def write_series(
    image: Image,
    folder: str | Path,
    *,
    modality: Literal["CT", "MR"] | None = None,
    patient: Mapping[str, Any] | None = None,
    study: Mapping[str, Any] | None = None,
    series: Mapping[str, Any] | None = None,
    transfer_syntax: Literal[
        "explicit", "implicit", "rle", "jpeg2000-lossless", "jpegls-lossless"
    ] = "explicit",
    rescale_slope: float | None = None,
    rescale_intercept: float | None = None,
    file_names: Literal["index", "uid"] = "index",
    shuffle_seed: int | None = None,
    uid_root: str | None = None,
    seed: int | str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write a 3-D scalar image as a DICOM series, one single-frame file per slice.

    The files are CT Image Storage or MR Image Storage objects that ``dciodvfy`` accepts
    without errors. They are written into a temporary folder beside ``folder`` that is renamed
    to ``folder`` at the end, so an interrupted call leaves no partial series.

    Parameters
    ----------
    image
        A 3-D scalar :class:`~medimg.Image`, array (z, y, x), any orthonormal direction (axial,
        sagittal, coronal, oblique; a left-handed z axis is fine). Slice ``k`` of the series is
        ``image.array[k]``. A 2-D image is written as a series of one slice.
    folder
        The series folder to create. It must not exist or be an empty folder.
    modality
        ``"CT"`` or ``"MR"``; ``None`` takes ``image.meta["modality"]`` and else ``"CT"``.
    patient, study, series
        DICOM attributes by keyword (``{"PatientName": "DOE^JANE", "PatientID": "123"}``) for
        the Patient, Study and Series/Equipment levels. They override the defaults and the
        values taken from ``image.meta`` (see :data:`META_KEYWORDS`). ``study`` may give
        ``StudyInstanceUID``; ``series`` may give ``SeriesInstanceUID`` and
        ``FrameOfReferenceUID``; otherwise these are generated (see ``seed``).
    transfer_syntax
        ``"explicit"`` (Explicit VR Little Endian), ``"implicit"`` (Implicit VR Little Endian),
        ``"rle"`` (RLE Lossless), ``"jpeg2000-lossless"`` (slices of at least 32 x 32 pixels)
        or ``"jpegls-lossless"``.
    rescale_slope, rescale_intercept
        Force the Modality LUT: stored value = round((value - intercept) / slope), which must
        fit in 16 bits. ``None`` (default) chooses them (see Notes).
    file_names
        ``"index"``: ``0001.dcm``, ``0002.dcm``, ...; ``"uid"``: ``<SOPInstanceUID>.dcm``.
    shuffle_seed
        When given, the files are written in a random order and, with ``file_names="index"``,
        the names are a random permutation of the slices, so that a reader that sorts by file
        name gets the slices wrong (a test aid). Instance Number always follows the slice index.
    uid_root
        Root of generated UIDs (at most 50 characters, ending with ``"."``); default
        :data:`DEFAULT_UID_ROOT`.
    seed
        Makes the generated UIDs deterministic: the same ``seed`` (and ``uid_root``) gives the
        same Study, Series, Frame of Reference and SOP Instance UIDs. Use a different seed for
        each series (for example ``f"{cohort_seed}/{patient}/{study}"``). ``None``: random UIDs.
    extra
        Further top-level attributes by keyword, applied last (for example
        ``{"ConvolutionKernel": "B30f", "KVP": 120}``). The attributes that the writer derives
        (geometry, pixel description, rescale, SOP Class / Instance UID, Modality, Instance
        Number) cannot be set through these mappings.

    Returns
    -------
    list of Path
        The written files, in slice order (element ``k`` holds ``image.array[k]``).

    Raises
    ------
    ParameterError
        Non-3-D or vector image, non-orthonormal direction, non-finite values, a forced
        rescale that does not fit 16 bits, a non-empty ``folder`` or an unknown keyword.
    UnknownNameError
        Unknown ``modality``, ``transfer_syntax`` or ``file_names``.

    Notes
    -----
    Stored values are 16-bit (Bits Allocated = Bits Stored = 16), unsigned when possible.

    * Integer images are stored as they are (slope 1, intercept 0) when they fit ``int16`` or
      ``uint16``; otherwise shifted by an integer intercept, and only if their range exceeds
      65535 quantised linearly.
    * Float images whose values are integers are stored exactly with slope 1 — for CT with
      intercept -1024 (stored = HU + 1024, ``uint16``), as scanners do. Values on a grid
      of 1/2, 1/4, 1/5, 1/8, 1/10, ... 1/1024 are stored exactly with slope 1/n. Other float
      images are quantised linearly onto 0..65535 (error at most slope / 2).
    * For MR, Rescale Slope / Intercept are written only when not 1 / 0.

    All values written are deterministic for a given ``seed``: no current date or time is used.
    Dates and times that are not given are left empty (type 2). Laterality is written empty
    (unknown) unless ``BodyPartExamined`` or ``Laterality`` is given; non-ASCII text sets
    Specific Character Set to ``ISO_IR 192`` (UTF-8).

    Examples
    --------
    >>> import numpy as np
    >>> from medimg import Image
    >>> img = Image.from_geometry(np.zeros((3, 4, 5)), spacing=(0.7, 0.7, 2.0))
    >>> files = write_series(img, tmp_path / "ct", seed=1)  # doctest: +SKIP
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    if modality is None:
        modality = str(image.meta.get("modality", "CT")).upper()
    if modality not in _SOP_CLASSES:
        raise UnknownNameError("modality", str(modality), _SOP_CLASSES)
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise UnknownNameError("transfer_syntax", str(transfer_syntax), TRANSFER_SYNTAXES)
    if file_names not in ("index", "uid"):
        raise UnknownNameError("file_names", str(file_names), ("index", "uid"))
    array, affine = _check_image(image)
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        msg = f"{folder}: the series folder must not exist or be empty; choose a new folder"
        raise ParameterError(msg)
    root = _check_uid_root(uid_root)

    stored, slope, intercept = _to_stored(
        array, modality=modality, slope=rescale_slope, intercept=rescale_intercept
    )

    n_slices, rows, columns = stored.shape
    if transfer_syntax == "jpeg2000-lossless" and min(rows, columns) < 32:
        msg = (
            f"transfer_syntax='jpeg2000-lossless' needs slices of at least 32 x 32 pixels (the "
            f"OpenJPEG encoder uses 6 wavelet resolutions), got {rows} x {columns}; use 'rle' "
            "or 'jpegls-lossless' for small images"
        )
        raise ParameterError(msg)
    direction = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    row_dir, col_dir = direction[:, 0], direction[:, 1]
    normal = np.cross(row_dir, col_dir)
    positions = affine[:3, 3][np.newaxis, :] + np.arange(n_slices)[:, np.newaxis] * affine[:3, 2]

    def uid(*parts: object) -> str:
        if seed is None:
            return str(pydicom.uid.generate_uid(prefix=root))
        return str(pydicom.uid.generate_uid(prefix=root, entropy_srcs=[str(seed), *map(str, parts)]))

    # ---- attributes, lowest precedence first: defaults < image.meta < patient/study/series < extra
    attrs: dict[str, Any] = _default_attributes(modality)
    attrs["StudyInstanceUID"] = uid("study")
    attrs["SeriesInstanceUID"] = uid("series")
    attrs["FrameOfReferenceUID"] = uid("frame-of-reference")
    for key, keyword in META_KEYWORDS.items():
        if key in image.meta and image.meta[key] is not None:
            attrs[keyword] = image.meta[key]
    for name, mapping in (("patient", patient), ("study", study), ("series", series), ("extra", extra)):
        for keyword, value in (mapping or {}).items():
            _check_keyword(keyword, name)
            if keyword in _MANAGED:
                msg = (
                    f"{name}: {keyword} is set by write_series from the image and its "
                    "arguments (geometry, pixels, SOP identity); it cannot be given"
                )
                raise ParameterError(msg)
            attrs[keyword] = value

    attrs.update(
        {
            "SOPClassUID": _SOP_CLASSES[modality],
            "Modality": modality,
            "ImageOrientationPatient": [_ds(v) for v in (*row_dir, *col_dir)],
            "PixelSpacing": [_ds(spacing[1]), _ds(spacing[0])],
            "SliceThickness": _ds(spacing[2]),
            "SpacingBetweenSlices": _ds(spacing[2]),
            "SamplesPerPixel": 1,
            "PhotometricInterpretation": "MONOCHROME2",
            "Rows": rows,
            "Columns": columns,
            "BitsAllocated": 16,
            "BitsStored": 16,
            "HighBit": 15,
            "PixelRepresentation": 1 if stored.dtype == np.int16 else 0,
        }
    )
    if modality == "CT" or (slope, intercept) != ("1", "0"):
        attrs["RescaleSlope"] = slope
        attrs["RescaleIntercept"] = intercept
        if modality == "CT":
            attrs.setdefault("RescaleType", "HU")
        else:
            attrs.setdefault("RescaleType", "US")
    if not attrs.get("BodyPartExamined") and "Laterality" not in attrs:
        attrs["Laterality"] = ""  # type 2C: body part unknown, so laterality "actually unknown"
    if "SpecificCharacterSet" not in attrs and any(
        isinstance(v, str) and not v.isascii() for v in attrs.values()
    ):
        attrs["SpecificCharacterSet"] = "ISO_IR 192"

    ds = Dataset()
    for keyword, value in sorted(attrs.items()):
        setattr(ds, keyword, value)

    ts_uid = pydicom.uid.UID(TRANSFER_SYNTAXES[transfer_syntax])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = attrs["SOPClassUID"]
    meta.MediaStorageSOPInstanceUID = "1.2"  # set per file
    meta.TransferSyntaxUID = ts_uid
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    encoder = _SeriesEncoder(ds, meta, implicit=transfer_syntax == "implicit")

    sop_uids = [uid("instance", k) for k in range(n_slices)]
    order = np.arange(n_slices)
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(n_slices)
    width = max(4, len(str(n_slices)))
    names = {}
    for j, k in enumerate(order):
        names[int(k)] = f"{j + 1:0{width}d}.dcm" if file_names == "index" else f"{sop_uids[k]}.dcm"

    pixel_encoder = pydicom.pixels.get_encoder(ts_uid) if ts_uid.is_compressed else None
    with atomic_dir(folder) as tmp:
        for k in (int(i) for i in order):
            per_slice = Dataset()
            per_slice.SOPInstanceUID = sop_uids[k]
            per_slice.InstanceNumber = k + 1
            per_slice.ImagePositionPatient = [_ds(v) for v in positions[k]]
            per_slice.SliceLocation = _ds(float(positions[k] @ normal))
            frame = np.ascontiguousarray(stored[k])
            if pixel_encoder is None:
                per_slice.PixelData = frame.tobytes()
                per_slice["PixelData"].VR = "OW"
            else:
                encoded = pixel_encoder.encode(
                    frame,
                    rows=rows,
                    columns=columns,
                    samples_per_pixel=1,
                    number_of_frames=1,
                    bits_allocated=16,
                    bits_stored=16,
                    pixel_representation=ds.PixelRepresentation,
                    photometric_interpretation="MONOCHROME2",
                )
                per_slice.PixelData = pydicom.encaps.encapsulate([encoded])
                per_slice["PixelData"].VR = "OB"
                per_slice["PixelData"].is_undefined_length = True
            encoder.write(tmp / names[k], per_slice)
    log.debug("wrote %d %s files to %s", n_slices, modality, folder)
    return [folder / names[k] for k in range(n_slices)]


class _SeriesEncoder:
    """Writes Part 10 files that share most elements: the shared ones are encoded once.

    The bytes are those of ``pydicom.dcmwrite(..., enforce_file_format=True)`` for the merged
    data set (elements in ascending tag order, each encoded by pydicom's own
    ``write_data_element``), at a fraction of the cost for long series.
    """

    def __init__(self, common: Any, file_meta: Any, *, implicit: bool) -> None:
        from pydicom.charset import convert_encodings

        self._implicit = implicit
        self._encodings = convert_encodings(common.get("SpecificCharacterSet"))
        self._meta = file_meta
        self._common = {int(elem.tag): self._encode(elem) for elem in common}

    def _encode(self, elem: Any) -> bytes:
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_data_element

        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, self._implicit
        write_data_element(fp, elem, self._encodings)
        return bytes(fp.getvalue())

    def write(self, path: Path, per_file: Any) -> None:
        """Write the common elements plus ``per_file`` (a Dataset with SOPInstanceUID) to ``path``."""
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_file_meta_info

        self._meta.MediaStorageSOPInstanceUID = per_file.SOPInstanceUID
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_file_meta_info(fp, self._meta, enforce_standard=True)
        pieces = dict(self._common)
        pieces.update({int(elem.tag): self._encode(elem) for elem in per_file})
        body = b"".join(pieces[tag] for tag in sorted(pieces))
        with open(path, "wb") as fh:
            fh.write(b"\x00" * 128 + b"DICM" + bytes(fp.getvalue()) + body)


# ---------------------------------------------------------------------------------- helpers
def _check_image(image: Image) -> tuple[np.ndarray, np.ndarray]:
    """The (z, y, x) array and affine of a scalar image, or a ParameterError."""
    if image.channel_axis is not None:
        msg = f"write_series needs a scalar image, got {image.n_channels} channels"
        raise ParameterError(msg)
    array = np.asarray(image.array)
    affine = np.array(image.affine, dtype=float)
    if image.spatial_ndim == 2:
        array = array[np.newaxis]
    if array.size == 0:
        raise ParameterError(f"write_series got an empty image of shape {image.shape}")
    if array.dtype.kind not in "biuf":
        msg = f"write_series needs an integer, boolean or float image, got dtype {array.dtype}"
        raise ParameterError(msg)
    direction = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    deviation = float(np.max(np.abs(direction.T @ direction - np.eye(3))))
    if deviation > 1e-6:
        msg = (
            f"the image's direction is not orthonormal (max |D^T D - I| = {deviation:.3g}); "
            "DICOM slices must be orthogonal to the stack axis (no shear / gantry tilt). "
            "Resample the image onto an orthonormal grid first."
        )
        raise ParameterError(msg)
    return array, affine


def _check_uid_root(uid_root: str | None) -> str:
    root = DEFAULT_UID_ROOT if uid_root is None else str(uid_root)
    if not root.endswith("."):
        root += "."
    parts = root[:-1].split(".")
    ok = len(root) <= 50 and all(p.isdigit() and (p == "0" or not p.startswith("0")) for p in parts)
    if not ok:
        msg = f"uid_root {uid_root!r} is not a valid UID root (digits and dots, <= 50 chars, no leading zeros)"
        raise ParameterError(msg)
    return root


def _check_keyword(keyword: str, where: str) -> None:
    from pydicom.datadict import keyword_dict, tag_for_keyword

    if tag_for_keyword(keyword) is None:
        msg = f"{where}: {keyword!r} is not a DICOM keyword{did_you_mean(keyword, keyword_dict)}"
        raise ParameterError(msg)


def _default_attributes(modality: str) -> dict[str, Any]:
    """Type 1 / 2 attributes of the CT or MR Image IOD that have no better value (PS3.3 A.3, A.4)."""
    attrs: dict[str, Any] = {
        # Patient
        "PatientName": "",
        "PatientID": "",
        "PatientBirthDate": "",
        "PatientSex": "",
        # General Study
        "StudyDate": "",
        "StudyTime": "",
        "ReferringPhysicianName": "",
        "StudyID": "1",
        "AccessionNumber": "",
        # General Series
        "SeriesNumber": 1,
        "PatientPosition": "HFS",
        # Frame of Reference
        "PositionReferenceIndicator": "",
        # General Equipment
        "Manufacturer": "",
        # General Image / Acquisition
        "AcquisitionNumber": 1,
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL" if modality == "CT" else "OTHER"],
    }
    if modality == "CT":
        attrs.update({"KVP": "", "WindowCenter": "40", "WindowWidth": "400"})
    else:
        attrs.update(
            {
                "ScanningSequence": "RM",
                "SequenceVariant": "NONE",
                "ScanOptions": "",
                "MRAcquisitionType": "3D",
                "RepetitionTime": "",
                "EchoTime": "",
                "EchoTrainLength": "",
            }
        )
    return attrs


def _ds(value: float) -> str:
    """A Decimal String (at most 16 characters) for ``value``; integers without ``.0``."""
    from pydicom.valuerep import format_number_as_ds

    value = float(value)
    if abs(value) < 1e-12:
        return "0"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format_number_as_ds(value)


def _fits(values: np.ndarray, bounds: tuple[int, int]) -> bool:
    return bool(values.min() >= bounds[0] and values.max() <= bounds[1])


def _to_stored(
    array: np.ndarray, *, modality: str, slope: float | None, intercept: float | None
) -> tuple[np.ndarray, str, str]:
    """Stored 16-bit values and the Rescale Slope / Intercept strings that give ``array`` back."""
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        msg = "write_series: the image has NaN or infinite values; DICOM cannot store them"
        raise ParameterError(msg)

    if slope is not None or intercept is not None:  # forced Modality LUT
        m_str, b_str = _ds(1.0 if slope is None else slope), _ds(0.0 if intercept is None else intercept)
        m, b = float(m_str), float(b_str)
        if m == 0.0:
            raise ParameterError("rescale_slope must not be 0")
        q = np.round((array.astype(np.float64) - b) / m)
        for dtype, bounds in ((np.uint16, _UINT16), (np.int16, _INT16)):
            if _fits(q, bounds):
                return q.astype(dtype), m_str, b_str
        msg = (
            f"rescale_slope={m_str}, rescale_intercept={b_str} map the image range "
            f"[{array.min()}, {array.max()}] to stored values [{q.min():.0f}, {q.max():.0f}], "
            "which do not fit 16 bits; choose another slope/intercept or leave them None"
        )
        raise ParameterError(msg)

    if array.dtype.kind in "iu":
        n = array.astype(np.int64)
        if array.dtype.kind == "i" and _fits(n, _INT16):
            return n.astype(np.int16), "1", "0"
        if _fits(n, _UINT16):
            return n.astype(np.uint16), "1", "0"
        if _fits(n, _INT16):
            return n.astype(np.int16), "1", "0"
        lo = int(n.min())
        if int(n.max()) - lo <= _UINT16[1]:
            return (n - lo).astype(np.uint16), "1", str(lo)
        return _quantise(n.astype(np.float64))

    v = array.astype(np.float64)
    eps = float(np.finfo(array.dtype).eps) if array.dtype.itemsize < 8 else float(np.finfo(np.float64).eps)
    tol = 4.0 * eps * max(1.0, float(np.max(np.abs(v))))
    for scale in _SCALES:
        s = v * scale
        n = np.round(s)
        if np.max(np.abs(s - n)) > tol * scale:
            continue
        n = n.astype(np.int64)
        m_str = _ds(1.0 / scale)
        candidates: list[tuple[int, np.dtype]] = []
        if modality == "CT":
            candidates.append((-1024 * scale, np.dtype(np.uint16)))
        candidates += [(0, np.dtype(np.int16)), (0, np.dtype(np.uint16)), (int(n.min()), np.dtype(np.uint16))]
        for offset, dtype in candidates:
            stored = n - offset
            bounds = _INT16 if dtype == np.int16 else _UINT16
            b_str = _ds(offset / scale)
            if _fits(stored, bounds) and float(b_str) * scale == offset:
                return stored.astype(dtype), m_str, b_str
    return _quantise(v)


def _quantise(v: np.ndarray) -> tuple[np.ndarray, str, str]:
    """Linear quantisation of ``v`` onto 0..65535 (lossy: error at most slope / 2)."""
    lo, hi = float(v.min()), float(v.max())
    b_str = _ds(lo)
    b = float(b_str)
    m_str = _ds((hi - b) / _UINT16[1] * (1 + 1e-9)) if hi > b else "1"
    m = float(m_str)
    q = np.clip(np.round((v - b) / m), *_UINT16)
    log.debug("quantised float values [%g, %g] with slope %s intercept %s", lo, hi, m_str, b_str)
    return q.astype(np.uint16), m_str, b_str

