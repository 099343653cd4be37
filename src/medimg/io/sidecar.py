"""Provenance sidecars: a JSON file beside every image medimg writes, read back by ``read``.

Naming rule (BIDS): the sidecar is the image's path with its whole extension replaced by
``.json``, for every format medimg writes:

=====================  =====================
image                  sidecar
=====================  =====================
``out.nii.gz``         ``out.json``
``out.nii``            ``out.json``
``out.nrrd``           ``out.json``
``out.mha``            ``out.json``
``out.png``            ``out.json``
``lesion.dcm`` (SEG)   ``lesion.json``
=====================  =====================

So two images that differ only in extension would share a sidecar; writing the second one is
refused (:func:`check_sidecar_slot`) rather than silently replacing the first one's record.

What a sidecar holds (see ``docs/io.md``): the marker ``"medimg_sidecar": 1``; the written
file's name, size and SHA-256; the image's grid; the command, its command line (when it came
from the CLI), every resolved parameter, the inputs with their SHA-256, the seed, medimg's
version, the versions of the scientific packages, the git commit and the platform (from a
:class:`medimg.core.provenance.Manifest`); the image's ``meta["history"]``; an allow-listed,
non-identifying part of ``meta`` (:data:`SIDECAR_META_KEYS`) and the warnings.

Privacy: a sidecar never carries more identifying information than the image file beside it.
A NIfTI written from DICOM holds voxels and geometry only, so nothing that names or dates the
patient (name, ID, birth date, study date, accession number, institution, UIDs, free-text
descriptions, ROI names) may appear in its sidecar. Meta keys are copied only when they are in
the explicit allow-list :data:`SIDECAR_META_KEYS` (technical attributes that the PS3.15 Basic
Profile retains); the warnings are scrubbed of every text value of the other meta keys; history
entries drop the patient-derived values in :data:`PATIENT_DERIVED_KEYS`; warnings raised by
third-party writers (highdicom quotes the source's Patient's Name) lose their quoted values.

Written atomically with the image: the image is written to a temporary name, hashed, the
sidecar is written (temporary name, then renamed) and only then is the image renamed into
place. An interrupted write leaves either the old pair or, at worst, a new sidecar whose
SHA-256 matches no image: :func:`read_sidecar` checks the hash and ignores a sidecar that does
not describe the file beside it.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from medimg.core.files import atomic_path, full_suffix, sha256_file
from medimg.core.image import Image
from medimg.core.provenance import Manifest, git_commit, jsonable, package_versions, platform_info
from medimg.errors import FileFormatError, UserInputError

__all__ = [
    "SIDECAR_VERSION", "SIDECAR_META_KEYS", "PATIENT_DERIVED_KEYS", "sidecar_path", "build_sidecar",
    "write_with_sidecar", "read_sidecar", "attach_sidecar", "check_sidecar_slot",
]

#: Format version of the sidecar (the value of its ``"medimg_sidecar"`` key).
SIDECAR_VERSION = 1

#: The meta keys a sidecar may copy: technical attributes that identify nobody (all retained by
#: the DICOM PS3.15 Basic Application Level Confidentiality Profile) and medimg's own
#: non-identifying keys. Anything else in ``meta`` (patient, study and series attributes, UIDs,
#: dates, descriptions, ROI and segment names, PET dosing) stays out.
SIDECAR_META_KEYS: tuple[str, ...] = (
    "Modality", "SOPClassUID", "Manufacturer", "ManufacturerModelName", "BodyPartExamined",
    "PatientPosition", "ImageType", "PhotometricInterpretation", "RescaleType", "KVP", "EchoTime",
    "MagneticFieldStrength", "SliceThickness", "DoseUnits",
    "source_format", "transfer_syntax", "rescale", "window_presets", "units", "photometric",
)

#: Keys of ``meta["history"]`` entries whose values come from the patient (PS3.15 removes them:
#: Patient's Weight); a sidecar writes ``"withheld"`` in their place.
PATIENT_DERIVED_KEYS = frozenset({"weight_kg", "PatientWeight", "PatientSize", "PatientAge", "PatientSex"})

#: Allow-listed keys that describe how the *source* file was encoded; recorded, but not put back
#: into the meta of the file read (a NIfTI has no transfer syntax and its values are rescaled).
_ENCODING_KEYS = frozenset({"source_format", "transfer_syntax", "rescale", "photometric",
                            "PhotometricInterpretation", "SOPClassUID"})

_MARKER = "medimg_sidecar"
_QUOTED = re.compile(r'"[^"\n]{1,256}"')


def sidecar_path(path: str | Path) -> Path:
    """The sidecar of the image file ``path``: its whole extension replaced by ``.json``
    (``a/out.nii.gz`` -> ``a/out.json``; see the module notes)."""
    path = Path(path)
    suffix = full_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    if not stem:
        raise UserInputError(f"{path}: an image file name needs a stem before its extension")
    return path.with_name(stem + ".json")


def _load(side: Path) -> dict[str, Any] | None:
    """The sidecar at ``side`` if it is a medimg sidecar; None when absent or someone else's."""
    try:
        text = side.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise FileFormatError(side, f"cannot read the sidecar ({err.strerror or err})") from err
    try:
        data = json.loads(text)
    except ValueError:
        if f'"{_MARKER}"' in text:
            raise FileFormatError(side, "a damaged medimg sidecar (not valid JSON)") from None
        return None  # someone else's file that happens to be named like a sidecar
    if not isinstance(data, dict) or _MARKER not in data:
        return None
    if not isinstance(data.get("file"), dict):
        raise FileFormatError(side, "a medimg sidecar without its 'file' record")
    return data


def check_sidecar_slot(path: str | Path) -> None:
    """Refuse to write the image ``path`` when its sidecar name is taken by another image's
    sidecar (e.g. ``out.json`` of ``out.nii.gz`` when writing ``out.nrrd``).

    A sidecar of ``path`` itself, a JSON file that is not a medimg sidecar when ``path``
    exists (it is being replaced), or no file at all leave the slot free.

    Raises
    ------
    UserInputError
        The slot holds the sidecar of a different image, or a file medimg did not write while
        ``path`` does not exist yet.
    """
    path = Path(path)
    side = sidecar_path(path)
    if not side.exists():
        return
    try:
        data = _load(side)
    except FileFormatError:
        data = None
    owner = (data or {}).get("file", {}).get("name") if data else None
    if owner == path.name:
        return
    if data is None and path.exists():
        return
    whose = f"the sidecar of {owner}" if owner else "a file medimg did not write"
    msg = (f"{side}: is {whose}; writing {path.name} would replace it (its sidecar is named "
           f"{side.name}). Choose another output name or folder")
    raise UserInputError(msg)


def _text_values(value: Any, out: set[str]) -> None:
    if isinstance(value, str):
        if len(value.strip()) >= 3:
            out.add(value.strip())
    elif isinstance(value, Mapping):
        for v in value.values():
            _text_values(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _text_values(v, out)
    elif type(value).__module__.startswith("pydicom"):  # PersonName, MultiValue, UID ...
        _text_values(str(value), out)


def _identifying_values(meta: Mapping[str, Any]) -> list[str]:
    """Every text value of the meta keys a sidecar leaves out (longest first)."""
    found: set[str] = set()
    for key, value in meta.items():
        if key in SIDECAR_META_KEYS or key in ("history", "warnings"):
            continue
        _text_values(value, found)
    return sorted(found, key=len, reverse=True)


def _redact(text: str, values: Iterable[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, "<withheld>")
    return text


def _scrub_history(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: ("withheld" if k in PATIENT_DERIVED_KEYS and v is not None else _scrub_history(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_history(v) for v in value]
    return value


def _input_rows(inputs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Inputs, each with the command line that produced it when it has a matching sidecar."""
    rows = []
    for row in inputs:
        row = dict(row)
        path = Path(str(row.get("path", "")))
        if path.is_file():
            try:
                earlier = read_sidecar(path)
            except (FileFormatError, UserInputError):
                earlier = None
            if earlier is not None:
                row["produced_by"] = earlier.get("command_line") or earlier.get("command")
        rows.append(row)
    return rows


def build_sidecar(image: Image, path: str | Path, *, sha256: str, size_bytes: int,
                  provenance: Manifest | None = None, warnings_: Iterable[str] = ()) -> dict[str, Any]:
    """The sidecar record (JSON-ready) of ``image`` written to ``path`` (see the module notes).

    Parameters
    ----------
    image
        The image that was written.
    path
        Where it was written (its final name).
    sha256, size_bytes
        SHA-256 and size of the written file.
    provenance
        The run that produced it (command, argv, every resolved parameter, inputs, seed);
        ``None`` for a plain :func:`medimg.io.write` from Python (the record then holds the
        software, the history and the meta only).
    warnings_
        Further warnings to record (e.g. those a third-party writer raised), already scrubbed.
    """
    from medimg import __version__

    path = Path(path)
    meta = image.meta
    hidden = _identifying_values(meta)
    record: dict[str, Any] = {
        _MARKER: SIDECAR_VERSION,
        "medimg_version": __version__,
        "file": {"name": path.name, "format": full_suffix(path).lstrip("."), "size_bytes": int(size_bytes),
                 "sha256": sha256},
        "image": {
            "dtype": str(image.dtype), "shape": list(image.shape), "channel_axis": image.channel_axis,
            "spacing_mm": list(image.spacing), "origin_mm": list(image.origin),
            "direction": image.direction.tolist(), "orientation": image.orientation,
            "has_patient_geometry": image.has_patient_geometry,
        },
    }
    if provenance is not None:
        run = provenance.to_dict()
        run.pop("outputs", None)
        run.pop("failures", None)
        run["inputs"] = _input_rows(run.get("inputs", []))
        record.update(run)
        record["reproduce"] = run.get("command_line")
    else:
        record.update({"command": None, "command_line": None, "parameters": {}, "inputs": [], "seed": None,
                       "software": package_versions(), "git_commit": git_commit(), "platform": platform_info(),
                       "reproduce": None})
    record["history"] = _scrub_history(list(meta.get("history", [])))
    record["meta"] = {k: meta[k] for k in SIDECAR_META_KEYS if k in meta}
    record["warnings"] = [_redact(str(w), hidden) for w in meta.get("warnings", [])] + list(warnings_)
    return jsonable(record)


def _third_party(caught: Iterable[warnings.WarningMessage]) -> list[str]:
    """One scrubbed line per warning a writer raised: package, first sentence, quoted values
    withheld (they may be header values such as Patient's Name)."""
    lines = []
    for item in caught:
        text = " ".join(str(item.message).split())
        first = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
        first = _QUOTED.sub('"<withheld>"', first)
        where = Path(item.filename).parts
        package = next((p for p in ("highdicom", "pydicom", "nibabel", "SimpleITK", "PIL") if p in where), None)
        line = f"{package}: {first}" if package else first
        if line not in lines:
            lines.append(line)
    return lines


def write_with_sidecar(image: Image, path: str | Path, write: Callable[[Path], Any], *,
                       provenance: Manifest | None = None, capture_warnings: bool = False) -> Path:
    """Write ``image`` to ``path`` with ``write(temporary_path)`` and its sidecar beside it,
    as one unit (see the module notes). A ``write`` that returns ``(sha256_hex, size_bytes)``
    of what it wrote spares reading the file again to hash it.

    With ``capture_warnings``, warnings the writer raises (a third-party library's
    ``UserWarning``, e.g. highdicom's) are caught, recorded in the sidecar's ``"warnings"``
    scrubbed of quoted values, and re-issued as one ``UserWarning`` each, naming the output.
    (Python's warning capture is process-wide, not thread-safe, so it is used only for writers
    known to warn: the DICOM SEG writer.)

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    UserInputError
        The sidecar name is taken by another image's sidecar (:func:`check_sidecar_slot`).
    """
    path = Path(path)
    check_sidecar_slot(path)
    side = sidecar_path(path)
    with atomic_path(path) as tmp_image:
        if capture_warnings:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                written = write(tmp_image)
            extra = _third_party(caught)
        else:
            written = write(tmp_image)
            extra = []
        if isinstance(written, tuple) and len(written) == 2:  # (sha256, size) hashed while writing
            digest, size = written
        else:
            digest, size = sha256_file(tmp_image), tmp_image.stat().st_size
        record = build_sidecar(image, path, sha256=digest, size_bytes=size,
                               provenance=provenance, warnings_=extra)
        with atomic_path(side) as tmp_side:
            tmp_side.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    for line in extra:
        warnings.warn(f"{path.name}: {line}", UserWarning, stacklevel=2)
    return path


def read_sidecar(path: str | Path, *, verify: bool = True) -> dict[str, Any] | None:
    """The sidecar of the image file ``path``, or ``None`` when it has none.

    ``None`` also when the JSON file beside it is not a medimg sidecar or is the sidecar of
    another file. With ``verify`` (default), a sidecar whose recorded size or SHA-256 differs
    from the file's (the image was replaced after it was written) raises.

    Raises
    ------
    FileFormatError
        The sidecar is damaged, or (``verify``) does not match the image file.
    """
    path = Path(path)
    side = sidecar_path(path)
    data = _load(side)
    if data is None or data["file"].get("name") != path.name:
        return None
    if verify:
        recorded = data["file"]
        if not path.is_file():
            raise FileFormatError(path, f"no such file (its sidecar {side.name} exists)")
        if recorded.get("size_bytes") != path.stat().st_size or recorded.get("sha256") != sha256_file(path):
            raise FileFormatError(side, f"does not match {path.name} (the image changed after the sidecar was written)")
    return data


def attach_sidecar(image: Image, path: str | Path) -> Image:
    """``image`` read from ``path``, with what its sidecar records put back into ``meta``.

    ``meta["history"]`` is restored; the sidecar's allow-listed meta keys that describe the
    acquisition (Modality, window presets, units, ...; not those of the source file's encoding)
    fill those the reader did not set; ``meta["sidecar"]`` names the sidecar. A damaged or mismatched sidecar is not
    used and ``meta["warnings"]`` says why. ``image`` itself is returned (it was just read, so
    no caller holds it yet).
    """
    try:
        data = read_sidecar(path)
    except FileFormatError as err:
        image.meta.setdefault("warnings", []).append(f"provenance sidecar not used: {err}")
        return image
    if data is None:
        return image
    history = data.get("history")
    if isinstance(history, list):
        image.meta["history"] = [*history, *image.meta.get("history", [])]
    for key, value in (data.get("meta") or {}).items():
        if key in SIDECAR_META_KEYS and key not in _ENCODING_KEYS:
            image.meta.setdefault(key, value)
    image.meta["sidecar"] = str(sidecar_path(path))
    return image
