"""Encoding a de-identified data set as a Part 10 file, fast.

Most elements of a de-identified object are kept untouched: pydicom still holds them as raw
bytes read from the input. They are copied as they are (tag, VR and length header plus the
value bytes); only elements that changed are encoded by pydicom's own
``write_data_element``. The bytes are those of ``Dataset.save_as(..., enforce_file_format=True)``
(a test compares them), at a fraction of the cost. Big endian and deflated data sets return
``None``: the caller then uses pydicom's writer.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["encode_part10"]

_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_UNDEFINED = 0xFFFFFFFF
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2s2xI")
_IMPLICIT = struct.Struct("<HHI")


def encode_part10(ds: Any) -> bytes | None:
    """Preamble, File Meta Information and data set of ``ds`` as bytes, or ``None`` when the
    transfer syntax is big endian or deflated (use pydicom's writer then)."""
    from pydicom.charset import convert_encodings
    from pydicom.dataelem import RawDataElement
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element, write_file_meta_info

    syntax = str(ds.file_meta.TransferSyntaxUID)
    implicit = syntax == _IMPLICIT_LE
    if not implicit and syntax != _EXPLICIT_LE and not ds.file_meta.TransferSyntaxUID.is_compressed:
        return None
    if ds.file_meta.TransferSyntaxUID.is_deflated:
        return None
    encodings = convert_encodings(ds.get("SpecificCharacterSet"))
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
    parts = [bytes(getattr(ds, "preamble", None) or b"\0" * 128), b"DICM", bytes(fp.getvalue())]
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, implicit
    for tag in sorted(ds.keys()):
        elem = ds.get_item(tag)
        t = int(tag)
        if t >> 16 == 0x0002:
            continue  # File Meta elements belong in file_meta
        if (
            isinstance(elem, RawDataElement)
            and elem.value is not None
            and elem.length != _UNDEFINED
            and elem.is_little_endian
            and elem.is_implicit_VR == implicit
            and (implicit or elem.VR)
        ):
            value = elem.value
            if len(value) % 2:
                value = bytes(value) + (b"\0" if elem.VR in ("UI", "OB", "UN", None) else b" ")
            group, element = t >> 16, t & 0xFFFF
            if implicit:
                out.write(_IMPLICIT.pack(group, element, len(value)))
            elif elem.VR in _LONG_VRS:
                out.write(_LONG.pack(group, element, elem.VR.encode(), len(value)))
            else:
                if len(value) > 0xFFFF:
                    write_data_element(out, ds[tag], encodings)
                    continue
                out.write(_SHORT.pack(group, element, elem.VR.encode(), len(value)))
            out.write(value)
        else:
            write_data_element(out, ds[tag], encodings)
    parts.append(bytes(out.getvalue()))
    return b"".join(parts)
