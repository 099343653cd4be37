"""Byte-level edits of real DICOM files, for the hardening and fuzz tests.

pydicom refuses to *write* most hostile values (``ImagePositionPatient = 'abc'``, a length of
4 GB), so these helpers find an element with pydicom and splice its bytes: the rest of the
file stays byte for byte what it was. Top-level elements of the data set only.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import pydicom

_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


@dataclass(frozen=True)
class Span:
    """Where one element's length field and value lie in a file."""

    length_pos: int
    length_size: int  # 2 or 4 bytes
    endian: str  # "<" or ">"
    value_pos: int
    length: int


def span(data: bytes, tag: int) -> Span:
    """The :class:`Span` of top-level element ``tag`` (``0xGGGGEEEE``) in ``data``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), force=True, defer_size=None)
        raw = ds.get_item(tag)
        implicit, little = ds.original_encoding
    if raw is None:
        raise KeyError(f"no element {tag:08X}")
    endian = "<" if little is not False else ">"
    vr = getattr(raw, "VR", None)
    tell = raw.value_tell
    if implicit or vr in _LONG_VRS:
        return Span(tell - 4, 4, endian, tell, raw.length)
    return Span(tell - 2, 2, endian, tell, raw.length)


def set_value(data: bytes, tag: int, value: bytes, *, pad: bool = True) -> bytes:
    """``data`` with element ``tag``'s value replaced (padded to even length unless ``pad`` is
    false, length field updated)."""
    if pad and len(value) % 2:
        value += b" "
    s = span(data, tag)
    fmt = s.endian + ("H" if s.length_size == 2 else "I")
    return data[: s.length_pos] + struct.pack(fmt, len(value)) + value + data[s.value_pos + s.length :]


def set_length(data: bytes, tag: int, length: int) -> bytes:
    """``data`` with element ``tag``'s length field set to ``length`` (the value bytes untouched)."""
    s = span(data, tag)
    fmt = s.endian + ("H" if s.length_size == 2 else "I")
    return data[: s.length_pos] + struct.pack(fmt, length) + data[s.length_pos + s.length_size :]


def set_transfer_syntax(data: bytes, uid: str) -> bytes:
    """``data`` with the File Meta's Transfer Syntax UID replaced (group length fixed)."""
    pos = 132
    out = bytearray(data[:132])
    body = bytearray()
    while pos + 8 <= len(data):
        group, elem, vr, l16 = struct.unpack_from("<HH2sH", data, pos)
        if group != 0x0002:
            break
        if vr in (b"OB", b"UN", b"UT", b"SQ", b"OW"):
            length, head = struct.unpack_from("<I", data, pos + 8)[0], 12
        else:
            length, head = l16, 8
        value = data[pos + head : pos + head + length]
        if elem == 0x0010:
            value = uid.encode() + (b"\0" if len(uid) % 2 else b"")
            body += struct.pack("<HH2sH", group, elem, vr, len(value)) + value
        elif elem != 0x0000:
            body += data[pos : pos + head + length]
        pos += head + length
    out += struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body)) + body
    return bytes(out) + data[pos:]
