"""Reading the DICOM header attributes medimg needs, fast.

A plain ``pydicom.dcmread`` builds a full data set and runs at about 800 files/s here. Reading
a series needs only ~60 top-level attributes and the offset of the pixel data, so this module
walks the elements of the first bytes of the file itself (explicit and implicit VR little
endian, the syntaxes of nearly every file in an archive), skipping sequences without decoding
them, and stops at the pixel data. Anything unusual — big endian, deflate, no File Meta, a
malformed element — falls back to pydicom, so the fast path is an optimisation, never a
different answer: the tests compare both on every file of the corpus.

The files of a series repeat their header byte for byte but for a few values; a file whose
bytes match the last header walked everywhere but in the elements seen to vary is read from
that template, only those elements decoded (see ``_Template``); any other file is walked.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimg.errors import FileFormatError, MedimgError, NotDicomError, TruncatedFileError

__all__ = ["Header", "read_header", "read_header_pydicom", "open_bounded", "WANTED", "TS_NAMES"]

# tag -> (keyword, kind). kinds: str, strs (backslash list), ds, dss, is, us, fd, uid
WANTED: dict[int, tuple[str, str]] = {
    0x00080005: ("SpecificCharacterSet", "strs"),
    0x00080008: ("ImageType", "strs"),
    0x00080016: ("SOPClassUID", "uid"),
    0x00080018: ("SOPInstanceUID", "uid"),
    0x00080020: ("StudyDate", "str"),
    0x00080021: ("SeriesDate", "str"),
    0x00080022: ("AcquisitionDate", "str"),
    0x00080030: ("StudyTime", "str"),
    0x00080031: ("SeriesTime", "str"),
    0x00080032: ("AcquisitionTime", "str"),
    0x00080050: ("AccessionNumber", "str"),
    0x00080060: ("Modality", "str"),
    0x00080070: ("Manufacturer", "str"),
    0x00080080: ("InstitutionName", "str"),
    0x00081030: ("StudyDescription", "str"),
    0x0008103E: ("SeriesDescription", "str"),
    0x00081090: ("ManufacturerModelName", "str"),
    0x00100010: ("PatientName", "str"),
    0x00100020: ("PatientID", "str"),
    0x00100030: ("PatientBirthDate", "str"),
    0x00100040: ("PatientSex", "str"),
    0x00101010: ("PatientAge", "str"),
    0x00101030: ("PatientWeight", "ds"),
    0x00180015: ("BodyPartExamined", "str"),
    0x00180050: ("SliceThickness", "ds"),
    0x00180060: ("KVP", "ds"),
    0x00180081: ("EchoTime", "ds"),
    0x00180086: ("EchoNumbers", "is"),
    0x00180087: ("MagneticFieldStrength", "ds"),
    0x00180088: ("SpacingBetweenSlices", "ds"),
    0x00181060: ("TriggerTime", "ds"),
    0x00181120: ("GantryDetectorTilt", "ds"),
    0x00185100: ("PatientPosition", "str"),
    0x00189087: ("DiffusionBValue", "fd"),
    0x0020000D: ("StudyInstanceUID", "uid"),
    0x0020000E: ("SeriesInstanceUID", "uid"),
    0x00200010: ("StudyID", "str"),
    0x00200011: ("SeriesNumber", "is"),
    0x00200012: ("AcquisitionNumber", "is"),
    0x00200013: ("InstanceNumber", "is"),
    0x00200032: ("ImagePositionPatient", "dss"),
    0x00200037: ("ImageOrientationPatient", "dss"),
    0x00200052: ("FrameOfReferenceUID", "uid"),
    0x00200100: ("TemporalPositionIdentifier", "is"),
    0x00201041: ("SliceLocation", "ds"),
    0x00280002: ("SamplesPerPixel", "us"),
    0x00280004: ("PhotometricInterpretation", "str"),
    0x00280006: ("PlanarConfiguration", "us"),
    0x00280008: ("NumberOfFrames", "is"),
    0x00280010: ("Rows", "us"),
    0x00280011: ("Columns", "us"),
    0x00280030: ("PixelSpacing", "dss"),
    0x00280100: ("BitsAllocated", "us"),
    0x00280101: ("BitsStored", "us"),
    0x00280102: ("HighBit", "us"),
    0x00280103: ("PixelRepresentation", "us"),
    0x00281050: ("WindowCenter", "dss"),
    0x00281051: ("WindowWidth", "dss"),
    0x00281052: ("RescaleIntercept", "ds"),
    0x00281053: ("RescaleSlope", "ds"),
    0x00281054: ("RescaleType", "str"),
    0x00540081: ("NumberOfSlices", "us"),
    0x30040002: ("DoseUnits", "str"),
    0x3004000C: ("GridFrameOffsetVector", "dss"),
    0x3004000E: ("DoseGridScaling", "ds"),
}
# Presence-only markers (sequences we do not decode here).
_MARKERS = {
    0x52009229: "SharedFunctionalGroupsSequence",
    0x52009230: "PerFrameFunctionalGroupsSequence",
    0x00540016: "RadiopharmaceuticalInformationSequence",
}
_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_KEYWORD_KIND = {name: kind for name, kind in WANTED.values()}

TS_IMPLICIT_LE = "1.2.840.10008.1.2"
TS_EXPLICIT_LE = "1.2.840.10008.1.2.1"
TS_EXPLICIT_BE = "1.2.840.10008.1.2.2"
TS_DEFLATED = "1.2.840.10008.1.2.1.99"
NATIVE_LE = {TS_IMPLICIT_LE, TS_EXPLICIT_LE}

TS_NAMES = {
    TS_IMPLICIT_LE: "Implicit VR Little Endian",
    TS_EXPLICIT_LE: "Explicit VR Little Endian",
    TS_EXPLICIT_BE: "Explicit VR Big Endian",
    TS_DEFLATED: "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.8.1": "Deflated Image Frame Compression",
}

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_EXPLICIT = struct.Struct("<HH2sH")
_IMPLICIT = struct.Struct("<HHI")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQ_END = 0xFFFEE0DD
_CHUNK = 16384


@dataclass(slots=True)
class Header:
    """The attributes of one DICOM file that medimg uses, plus where its pixels are.

    ``values`` maps DICOM keywords to Python values (str, float, int or lists of them);
    missing attributes are absent. ``pixel_offset``/``pixel_length`` locate the native pixel
    data in the file (``None`` when encapsulated or read through pydicom).
    """

    path: Path
    transfer_syntax: str
    values: dict[str, Any] = field(default_factory=dict)
    pixel_keyword: str | None = None
    pixel_offset: int | None = None
    pixel_length: int | None = None
    pixel_vr: str | None = None
    markers: frozenset[str] = frozenset()
    file_size: int = 0
    via_pydicom: bool = False
    #: Bytes of pixel data present in the file: the defined length, or for encapsulated
    #: (undefined-length) pixel data the bytes from its start to the end of the data; ``None``
    #: when unknown. Size claims (frames x rows x columns x ...) are checked against it.
    pixel_bytes: int | None = None
    #: True when the pixel data is encapsulated (undefined length: compressed fragments).
    encapsulated: bool = False
    #: Values present in the file but unusable (not numbers, wrong count): said, never dropped silently.
    problems: list[str] = field(default_factory=list)

    def get(self, keyword: str, default: Any = None) -> Any:
        """``values.get(keyword, default)``."""
        return self.values.get(keyword, default)

    @property
    def has_pixels(self) -> bool:
        """True when the file has Pixel Data, Float Pixel Data or Double Float Pixel Data."""
        return self.pixel_keyword is not None

    @property
    def is_enhanced_multiframe(self) -> bool:
        """True for Enhanced (functional-group) multi-frame objects."""
        return "PerFrameFunctionalGroupsSequence" in self.markers

    @property
    def number_of_frames(self) -> int:
        """Number of Frames (1 when absent)."""
        n = self.values.get("NumberOfFrames")
        return int(n) if n else 1


class _FallBack(Exception):
    """Internal: the fast path does not handle this file; use pydicom."""


class _NeedMore(Exception):
    """Internal: the chunk read so far ends inside the header."""


#: Python codecs of the single-byte and UTF-8 Specific Character Sets (PS3.3 C.12.1.1.2).
#: Code extensions (ISO 2022 escapes) go through pydicom.
_CODECS = {
    "": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3", "ISO_IR 110": "iso8859_4", "ISO_IR 144": "iso8859_5",
    "ISO_IR 127": "iso8859_6", "ISO_IR 126": "iso8859_7", "ISO_IR 138": "iso8859_8",
    "ISO_IR 148": "iso8859_9", "ISO_IR 203": "iso8859_15", "ISO_IR 13": "shift_jis",
    "ISO_IR 166": "cp874", "ISO_IR 192": "utf_8", "GB18030": "gb18030", "GBK": "gbk",
}


def _codec(raw: bytes) -> str:
    names = [p.strip() for p in raw.decode("latin-1").strip(" \x00").split("\\")]
    if len(names) > 1 and any(names[1:]) or names[0] not in _CODECS:
        raise _FallBack
    return _CODECS[names[0]]


def _decode(raw: bytes, kind: str, codec: str = "latin_1") -> Any:
    if kind == "us":
        return struct.unpack_from("<H", raw)[0] if len(raw) >= 2 else None
    if kind == "fd":
        return struct.unpack_from("<d", raw)[0] if len(raw) >= 8 else None
    if kind == "str":
        return raw.decode(codec, errors="replace").strip(" \x00")
    text = raw.decode("latin-1").strip(" \x00")
    if kind == "uid":
        return text
    if kind == "strs":
        return [p.strip() for p in text.split("\\")]
    if not text:
        return None
    if kind == "ds":
        return float(text.split("\\")[0])
    if kind == "dss":
        return [float(p) for p in text.split("\\") if p.strip()]
    if kind == "is":
        return int(float(text.split("\\")[0]))
    raise ValueError(kind)


def _skip_undefined(buf: bytes, pos: int, explicit: bool) -> int:
    """Skip items of an undefined-length sequence starting at ``pos``; return the position after its delimiter."""
    n = len(buf)
    while True:
        if pos + 8 > n:
            raise _NeedMore
        group, elem, length = _IMPLICIT.unpack_from(buf, pos)
        tag = (group << 16) | elem
        pos += 8
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise _FallBack
        if length != _UNDEFINED:
            pos += length
            continue
        pos = _skip_item_elements(buf, pos, explicit)


def _skip_item_elements(buf: bytes, pos: int, explicit: bool) -> int:
    """Skip the elements of an undefined-length item; return the position after its delimiter."""
    n = len(buf)
    while True:
        if pos + 8 > n:
            raise _NeedMore
        if explicit:
            group, elem, vr, l16 = _EXPLICIT.unpack_from(buf, pos)
            tag = (group << 16) | elem
            if tag == _ITEM_END:
                return pos + 8
            if vr in _LONG_VRS:
                if pos + 12 > n:
                    raise _NeedMore
                length = _U32.unpack_from(buf, pos + 8)[0]
                pos += 12
            elif vr.isalpha() and vr.isupper():
                length = l16
                pos += 8
            else:
                raise _FallBack
            if length == _UNDEFINED:
                pos = _skip_undefined(buf, pos, explicit and vr != b"UN")
            else:
                pos += length
        else:
            group, elem, length = _IMPLICIT.unpack_from(buf, pos)
            tag = (group << 16) | elem
            pos += 8
            if tag == _ITEM_END:
                return pos
            if length == _UNDEFINED:
                pos = _skip_undefined(buf, pos, False)
            else:
                pos += length


#: Values already decoded, by (tag, value bytes, character set): the files of a series repeat
#: most of their header (UIDs, sizes, spacing, orientation, rescale), so each is decoded once.
#: Lists are copied out (every header owns its values). Bounded: cleared when full.
_DECODED: dict[tuple[int, bytes, str], Any] = {}
_MISSING = object()
_EMPTY = object()  # decoded to nothing (None, "", [""]): not put into the header's values
#: Tags whose values differ in every file: not worth remembering.
_PER_FILE = frozenset({0x00080018, 0x00200013, 0x00200032, 0x00201041})


def _swap(tag: int) -> int:
    """A tag as ``struct`` reads its 4 bytes as one little-endian int: (element << 16) | group."""
    return ((tag & 0xFFFF) << 16) | (tag >> 16)


# The element walk reads each element's tag as one int (``<I``: element and group swapped) and
# looks it up in these tables keyed the same way: one unpack of three fields, no shifting.
_TAG_VR_LEN = struct.Struct("<I2sH")
_TAG_LEN = struct.Struct("<II")
_WANTED_S = {_swap(tag): spec for tag, spec in WANTED.items()}
_MARKERS_S = {_swap(tag): name for tag, name in _MARKERS.items()}
_PIXEL_S = {_swap(tag): name for tag, name in _PIXEL_TAGS.items()}
_PER_FILE_S = frozenset(_swap(tag) for tag in _PER_FILE)
_CHARSET_S = _swap(0x00080005)
#: Explicit VR: bytes of an element's header by its VR (two upper-case letters; the long VRs
#: carry a 4-byte length after 2 reserved bytes). Any other VR bytes: not handled here.
_VR_HEADER = {bytes((a, b)): (12 if bytes((a, b)) in _LONG_VRS else 8)
              for a in range(65, 91) for b in range(65, 91)}


def _decoded_value(stag: int, raw: bytes, kind: str, codec: str) -> Any:
    """The value of a wanted element (``_EMPTY`` when it decodes to nothing), from the cache of
    values decoded before when there; raises :class:`_FallBack` when it cannot be decoded."""
    key = (stag, raw, codec)
    value = _DECODED.get(key, _MISSING)
    if value is _MISSING:
        try:
            value = _decode(raw, kind, codec)
        except (ValueError, OverflowError, struct.error, UnicodeDecodeError, LookupError) as err:
            raise _FallBack from err
        if value is None or value == "" or value == [""]:
            value = _EMPTY
        if stag not in _PER_FILE_S:
            if len(_DECODED) > 8192:
                _DECODED.clear()
            _DECODED[key] = value
    return value


def _parse(buf: bytes, pos: int, explicit: bool, file_size: int, header: Header,
           layout: list[tuple[int, int, int, int, str]] | None = None) -> None:
    """Walk top-level elements from ``pos``; fill ``header``; stop at the pixel data. With
    ``layout``, each top-level element of defined length is appended to it as (tag as read,
    position of its length field, position of its value, end of its value, character set)."""
    n = len(buf)
    decoded = _DECODED
    values = header.values
    markers = []
    wanted = _WANTED_S
    pixel_tags = _PIXEL_S
    marker_tags = _MARKERS_S
    per_file = _PER_FILE_S
    vr_header = _VR_HEADER
    tag_vr_len = _TAG_VR_LEN.unpack_from
    tag_len = _TAG_LEN.unpack_from
    u32 = _U32.unpack_from
    undefined = _UNDEFINED
    codec = "latin_1"
    while pos < n:
        if pos + 8 > n:
            raise _NeedMore
        if explicit:
            stag, vr, length = tag_vr_len(buf, pos)
            size = vr_header.get(vr)
            if size == 8:
                vpos = pos + 8
            elif size == 12:
                if pos + 12 > n:
                    raise _NeedMore
                length = u32(buf, pos + 8)[0]
                vpos = pos + 12
            else:
                raise _FallBack
        else:
            stag, length = tag_len(buf, pos)
            vr = b"SQ" if length == undefined else b""
            vpos = pos + 8
        if stag in pixel_tags:
            header.pixel_keyword = pixel_tags[stag]
            if length == undefined:
                header.pixel_vr = "OB"
                header.encapsulated = True
                header.pixel_bytes = max(0, file_size - vpos)
            else:
                if vpos + length > file_size:
                    header.markers = frozenset(markers)
                    msg = (
                        f"pixel data is cut short: {file_size - vpos} of {length} bytes present"
                    )
                    raise TruncatedFileError(header.path, msg)
                header.pixel_offset = vpos
                header.pixel_length = length
                header.pixel_bytes = length
                header.pixel_vr = vr.decode() if vr else None
            break
        if length == undefined:
            if stag in marker_tags:
                markers.append(marker_tags[stag])
            pos = _skip_undefined(buf, vpos, explicit and vr != b"UN")
            continue
        end = vpos + length
        if end > n:
            if end > file_size:
                msg = f"element ({stag & 0xFFFF:04X},{stag >> 16:04X}) runs past the end of the file"
                raise TruncatedFileError(header.path, msg)
            raise _NeedMore
        if layout is not None:
            layout.append((stag, pos + (6 if explicit and vpos - pos == 8 else 8 if explicit else 4), vpos, end,
                           codec))
        spec = wanted.get(stag)
        if spec is not None:
            raw = buf[vpos:end]
            if stag == _CHARSET_S:
                codec = _codec(raw)
            key = (stag, raw, codec)
            value = decoded.get(key, _MISSING)
            if value is _MISSING:
                try:
                    value = _decode(raw, spec[1], codec)
                except (ValueError, OverflowError, struct.error, UnicodeDecodeError, LookupError) as err:
                    raise _FallBack from err
                if value is None or value == "" or value == [""]:
                    value = _EMPTY
                if stag not in per_file:
                    if len(decoded) > 8192:
                        decoded.clear()
                    decoded[key] = value
            if value is not _EMPTY:
                values[spec[0]] = value.copy() if type(value) is list else value
        elif stag in marker_tags:
            markers.append(marker_tags[stag])
        pos = end
    header.markers = frozenset(markers)


def read_header(path: str | Path) -> Header:
    """Read the attributes medimg uses from a DICOM file (fast path, pydicom fallback).

    Raises :class:`NotDicomError` when the file is not DICOM, :class:`TruncatedFileError`
    when it ends early and :class:`FileFormatError` for any other damage: whatever the bytes,
    no other exception leaves this function (but :class:`OSError` when the file cannot be
    opened, and :class:`MemoryError`).
    """
    if not isinstance(path, Path):
        path = Path(path)
    with open(path, "rb") as fh:
        buf = fh.read(_CHUNK)
        size = fh.seek(0, 2) if len(buf) == _CHUNK else len(buf)
        try:
            return _read_fast(path, buf, size, fh)
        except _FallBack:
            pass
    return read_header_pydicom(path)


def _read_fast(path: Path, buf: bytes, size: int, fh: Any) -> Header:
    template = _TEMPLATE
    if template is not None:
        header = template.match(path, buf, size)
        if header is not None:
            return header
    if len(buf) < 132 or buf[128:132] != b"DICM":
        raise _FallBack
    # File Meta Information: explicit VR little endian, group 0002.
    pos = 132
    ts = None
    layout: list[tuple[int, int, int, int, str]] = []
    while pos + 8 <= len(buf):
        group, elem, vr, l16 = _EXPLICIT.unpack_from(buf, pos)
        if group != 0x0002:
            break
        if vr in _LONG_VRS:
            if pos + 12 > len(buf):
                raise _FallBack
            length = _U32.unpack_from(buf, pos + 8)[0]
            vpos = pos + 12
        else:
            length = l16
            vpos = pos + 8
        if elem == 0x0010:
            ts = buf[vpos : vpos + length].decode("latin-1").strip(" \x00")
        layout.append(((elem << 16) | group, vpos - (4 if vpos - pos == 12 else 2), vpos, vpos + length, ""))
        pos = vpos + length
    if ts == TS_DEFLATED:
        return _read_deflated(path, pos, size, fh)
    if ts not in NATIVE_LE and not _is_encapsulated_le(ts):
        raise _FallBack
    header = Header(path=path, transfer_syntax=ts, file_size=size)
    explicit = ts != TS_IMPLICIT_LE
    try:
        _parse(buf, pos, explicit, size, header, layout)
    except _NeedMore:
        fh.seek(0)
        buf = fh.read()
        header.values.clear()
        try:
            _parse(buf, pos, explicit, size, header)
        except _NeedMore:  # the whole file is in ``buf``: an element or sequence runs past its end
            msg = f"the file is cut short: the data set ends inside an element or sequence ({size} bytes)"
            raise TruncatedFileError(path, msg) from None
        return header
    if header.pixel_keyword is not None and header.pixel_offset is not None or header.encapsulated:
        _learn(template, buf, layout, header)
    return header


# ----------------------------------------------------------------------------- header templates
# The files of a series repeat their header byte for byte but for a few values (instance UID
# and number, position, slice location). After a file is walked, its header is kept as a
# template: the bytes that must match, and the elements found to differ between files (their
# length and value are read from each file). A file whose bytes match the template everywhere
# else has the template's element structure, so its header is the template's values with those
# few re-decoded: no element walk. Any other file (a byte differs, an element grew past the
# buffer) is walked as before, and teaches the template which elements vary.

#: Elements a template never treats as varying: the transfer syntax and the character set
#: (they decide how everything else is read).
_NEVER_VARIABLE = frozenset({_swap(0x00020010), _CHARSET_S})
#: Templates with more varying elements than this are not kept (little left to save).
_MAX_VARIABLE = 32


class _Template:
    """A header layout: fixed byte runs and varying elements, in file order, up to the pixel data."""

    __slots__ = ("pieces", "transfer_syntax", "values", "list_keys", "pixel_keyword", "pixel_vr",
                 "pixel_length", "encapsulated", "markers", "variable", "source", "layout")

    def __init__(self, buf: bytes, layout: list[tuple[int, int, int, int, str]], header: Header,
                 variable: frozenset[int]) -> None:
        pieces: list[Any] = []
        start = 0
        # the template's own copies: the header it came from is handed out, and its lists may change
        values = {k: v.copy() if type(v) is list else v for k, v in header.values.items()}
        for stag, len_pos, vpos, end, codec in layout:
            if stag not in variable:
                continue
            pieces.append(buf[start:len_pos])
            spec = _WANTED_S.get(stag)
            pieces.append((vpos - len_pos, spec, codec, stag))
            if spec is not None:
                values.pop(spec[0], None)
            start = end
        pixel_start = header.pixel_offset if header.pixel_offset is not None else header.file_size - (header.pixel_bytes or 0)
        pieces.append(buf[start:pixel_start])
        self.pieces = pieces
        self.transfer_syntax = header.transfer_syntax
        self.values = values
        self.list_keys = tuple(k for k, v in values.items() if type(v) is list)
        self.pixel_keyword, self.pixel_vr = header.pixel_keyword, header.pixel_vr
        self.pixel_length, self.encapsulated = header.pixel_length, header.encapsulated
        self.markers = header.markers
        self.variable = variable
        self.source = buf[:pixel_start]
        self.layout = layout

    def match(self, path: Path, buf: bytes, size: int) -> Header | None:
        """``path``'s header when its first bytes ``buf`` fit this template, else None."""
        pos = 0
        n = len(buf)
        got: list[tuple[Any, bytes, str, int]] = []
        u16, u32 = _U16.unpack_from, _U32.unpack_from
        for piece in self.pieces:
            if type(piece) is bytes:
                if not buf.startswith(piece, pos):
                    return None
                pos += len(piece)
                continue
            width, spec, codec, stag = piece
            if pos + width > n:
                return None
            length = u16(buf, pos)[0] if width == 2 else u32(buf, pos)[0]
            if length == _UNDEFINED:
                return None
            pos += width
            end = pos + length
            if end > n:
                return None
            if spec is not None:
                got.append((spec, buf[pos:end], codec, stag))
            pos = end
        values = dict(self.values)
        for key in self.list_keys:
            values[key] = values[key].copy()
        try:
            for spec, raw, codec, stag in got:
                value = _decoded_value(stag, raw, spec[1], codec)
                if value is not _EMPTY:
                    values[spec[0]] = value.copy() if type(value) is list else value
        except _FallBack:
            return None
        header = Header(path=path, transfer_syntax=self.transfer_syntax, values=values,
                        pixel_keyword=self.pixel_keyword, markers=self.markers, file_size=size)
        if self.encapsulated:
            header.pixel_vr = "OB"
            header.encapsulated = True
            header.pixel_bytes = max(0, size - pos)
            return header
        length = self.pixel_length
        if pos + length > size:
            raise TruncatedFileError(path, f"pixel data is cut short: {size - pos} of {length} bytes present")
        header.pixel_offset, header.pixel_length, header.pixel_bytes = pos, length, length
        header.pixel_vr = self.pixel_vr
        return header


_TEMPLATE: _Template | None = None


def _learn(old: _Template | None, buf: bytes, layout: list[tuple[int, int, int, int, str]], header: Header) -> None:
    """Make the header just walked the template, with the elements found to vary: those of the
    old template, and those whose value differs between the old template's file and this one
    when both have the same elements."""
    global _TEMPLATE
    variable = old.variable if old is not None else frozenset()
    if old is not None and len(old.layout) == len(layout) and all(
            a[0] == b[0] and (a[2] - a[1]) == (b[2] - b[1]) for a, b in zip(old.layout, layout, strict=True)):
        src = old.source
        changed = {b[0] for a, b in zip(old.layout, layout, strict=True)
                   if src[a[1]:a[3]] != buf[b[1]:b[3]] and b[0] not in _NEVER_VARIABLE}
        variable = variable | changed
    if len(variable) > _MAX_VARIABLE:
        _TEMPLATE = None
        return
    _TEMPLATE = _Template(buf, layout, header, variable)


#: A deflated data set may inflate to at most this many times its file's size (and 64 MiB at least):
#: a "deflate bomb" is refused before it takes the memory.
_MAX_INFLATE_RATIO = 200


def _read_deflated(path: Path, pos: int, size: int, fh: Any) -> Header:
    """Deflated Explicit VR Little Endian: inflate the data set (bounded) and walk it like any other."""
    import zlib

    fh.seek(pos)
    packed = fh.read()
    limit = max(64 << 20, _MAX_INFLATE_RATIO * size)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = inflater.decompress(packed, limit)
    except zlib.error as err:
        raise FileFormatError(path, f"the deflated data set is corrupt ({err})") from err
    if inflater.unconsumed_tail:
        raise FileFormatError(path, f"the deflated data set inflates to more than {limit} bytes: refused")
    if not inflater.eof:
        raise TruncatedFileError(path, "the deflated data set is cut short (the deflate stream does not end)")
    header = Header(path=path, transfer_syntax=TS_DEFLATED, file_size=size)
    try:
        _parse(data, 0, True, len(data), header)
    except _NeedMore:
        raise TruncatedFileError(path, "the deflated data set ends inside an element or sequence") from None
    header.pixel_offset = None  # offsets of the inflated stream, not of the file
    return header


def _is_encapsulated_le(ts: str | None) -> bool:
    # Every encapsulated (compressed) syntax is explicit VR little endian; they all start 1.2.840.10008.1.2.4/.5/.8?
    return bool(ts) and (
        ts.startswith("1.2.840.10008.1.2.4.") or ts == "1.2.840.10008.1.2.5"
        or ts.startswith("1.2.840.10008.1.2.8")
    ) and ts != "1.2.840.10008.1.2.8.1"  # deflated image frames: let pydicom judge


class _BoundedReader(io.BufferedReader):
    """A buffered file whose ``read(n)`` never asks for more than the bytes left in the file.

    pydicom reads an element's value with ``read(length)``; CPython allocates ``length`` bytes
    before reading, so a damaged length field of 4 GB would allocate 4 GB for a 40 kB file.
    Clamped, the read comes back short and pydicom reports the file as cut short.
    """

    def __init__(self, name: str | Path, mode: str = "rb") -> None:
        raw = io.FileIO(os.fspath(name), "rb")
        super().__init__(raw, buffer_size=65536)
        self._size = os.fstat(raw.fileno()).st_size

    def read(self, size: int | None = -1) -> bytes:  # noqa: D102 - see the class
        if size is not None and size > 65536:
            size = min(size, max(0, self._size - self.tell()))
        return super().read(size)


def open_bounded(path: str | Path) -> io.BufferedReader:
    """Open ``path`` for pydicom so that no length field can make it allocate more than the file holds."""
    return _BoundedReader(path)


def read_header_pydicom(path: str | Path) -> Header:
    """The same :class:`Header`, read with pydicom (any transfer syntax, files without File Meta)."""
    import zlib

    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    size = path.stat().st_size
    try:
        with warnings.catch_warnings(), open_bounded(path) as fh:
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(fh, defer_size=1024)
            _check_extents(ds, path, size)
            header = header_from_dataset(ds, path, size)
    except InvalidDicomError:
        ds = _read_forced(path)
        _check_extents(ds, path, size)
        header = _header_or_error(ds, path, size)
    except MedimgError:
        raise
    except (EOFError, struct.error) as err:
        raise TruncatedFileError(path, f"file ends inside the DICOM header ({err})") from err
    except zlib.error as err:
        raise FileFormatError(path, f"the deflated data set is corrupt or cut short ({err})") from err
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - pydicom raises many kinds on damaged input
        raise NotDicomError(path, f"not a readable DICOM file ({type(err).__name__}: {_short(err)})") from err
    if len(ds) == 0:
        raise TruncatedFileError(path, "holds no data set after the preamble and File Meta: the file is cut short")
    return header


def _check_extents(ds: Any, path: Path, size: int) -> None:
    """A deferred (large) top-level value whose length runs past the end of the file: pydicom
    skips it and stops there, silently; say that the file is cut short (or its length field damaged)."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and str(meta.get("TransferSyntaxUID", "") or "") == TS_DEFLATED:
        return  # offsets refer to the inflated stream
    for key in list(ds.keys()):
        elem = ds.get_item(key, keep_deferred=True)
        length, tell = getattr(elem, "length", None), getattr(elem, "value_tell", None)
        if isinstance(length, int) and isinstance(tell, int) and length != _UNDEFINED and tell + length > size:
            tag = elem.tag
            raise TruncatedFileError(
                path, f"element ({tag.group:04X},{tag.element:04X}) claims {length} bytes, but only "
                f"{max(0, size - tell)} remain in the file: it is cut short or its length field is damaged")


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""


def _header_or_error(ds: Any, path: Path, size: int) -> Header:
    try:
        return header_from_dataset(ds, path, size)
    except MedimgError:
        raise
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - values of a damaged data set
        raise NotDicomError(path, f"not a readable DICOM file ({type(err).__name__}: {_short(err)})") from err


def _read_forced(path: Path) -> Any:
    """Read a file without preamble/File Meta; accept it only if it parses as a data set."""
    import pydicom

    try:
        with warnings.catch_warnings(), open_bounded(path) as fh:
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(fh, force=True, defer_size=1024)
            keys = list(ds.keys())  # forces parsing of the element headers
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - pydicom raises many types on garbage
        raise NotDicomError(path, "not a DICOM file (no 'DICM' prefix and no readable data set)") from err
    if not keys or not any(0x0008 <= k.group <= 0x7FE0 for k in keys) or keys[0].group > 0x0030:
        raise NotDicomError(path, "not a DICOM file (no 'DICM' prefix and no readable data set)")
    return ds


def header_from_dataset(ds: Any, path: Path, size: int) -> Header:
    """Build a :class:`Header` from a pydicom Dataset (values converted like the fast path)."""
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    if not ts:
        ts = _guess_syntax(ds)
    header = Header(path=path, transfer_syntax=ts, file_size=size, via_pydicom=True)
    for keyword, kind in _KEYWORD_KIND.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                raw = ds.get(keyword)
            except Exception:  # noqa: BLE001 - a malformed value is treated as absent, and said
                header.problems.append(f"{keyword} {_TAG_TEXT[keyword]} cannot be decoded: ignored")
                continue
        if raw is None:
            continue
        try:
            value = _convert(raw, kind)
        except (ValueError, TypeError, OverflowError, IndexError):
            header.problems.append(f"{keyword} {_TAG_TEXT[keyword]} = {_show_raw(raw)} is not a valid value: ignored")
            continue
        if value is not None and value != "" and value != [""]:
            header.values[keyword] = value
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            header.pixel_keyword = keyword
            _pixel_extent(ds, keyword, header)
            break
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header.markers = frozenset(k for k in _MARKERS.values() if k in ds)
    return header


_TAG_TEXT = {name: f"({tag >> 16:04X},{tag & 0xFFFF:04X})" for tag, (name, _kind) in WANTED.items()}


def _show_raw(raw: Any) -> str:
    text = "\\".join(str(v) for v in raw) if isinstance(raw, (list, tuple)) or type(raw).__name__ == "MultiValue" else str(raw)
    return repr(text[:64])


def _pixel_extent(ds: Any, keyword: str, header: Header) -> None:
    """Record how many bytes of pixel data a pydicom data set holds (``pixel_bytes``), and whether
    they are encapsulated; deferred values are not read."""
    try:
        elem = ds.get_item(keyword, keep_deferred=True)
    except Exception:  # noqa: BLE001
        return
    length = getattr(elem, "length", None)
    undefined = bool(getattr(elem, "is_undefined_length", False)) or length == _UNDEFINED
    value = getattr(elem, "value", None)
    if undefined:
        header.encapsulated = True
        if isinstance(value, (bytes, bytearray)):
            header.pixel_bytes = len(value)
    elif isinstance(length, int):
        header.pixel_bytes = length
        tell = getattr(elem, "value_tell", None)
        if isinstance(tell, int) and header.transfer_syntax != TS_DEFLATED and tell + length > header.file_size:
            present = max(0, header.file_size - tell)
            raise TruncatedFileError(header.path, f"pixel data is cut short: {present} of {length} bytes present")
    elif isinstance(value, (bytes, bytearray)):
        header.pixel_bytes = len(value)


def _guess_syntax(ds: Any) -> str:
    """Transfer syntax of a data set read without one (pydicom records how it parsed it)."""
    implicit = getattr(ds, "is_implicit_VR", None)
    little = getattr(ds, "is_little_endian", None)
    if implicit is None:
        implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit:
        return TS_IMPLICIT_LE
    return TS_EXPLICIT_LE if little in (True, None) else TS_EXPLICIT_BE


def _convert(value: Any, kind: str) -> Any:
    if value is None or value == "":
        return None
    if kind in ("str", "uid"):
        return str(value).strip()
    if kind == "strs":
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return [str(v).strip() for v in value]
        return [p.strip() for p in str(value).split("\\")]
    if kind == "us":
        return int(value[0] if isinstance(value, (list, tuple)) else value)
    if kind == "fd":
        return float(value[0] if isinstance(value, (list, tuple)) else value)
    many = isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"
    if kind == "ds":
        return float(value[0] if many else value)
    if kind == "dss":
        return [float(v) for v in value] if many else [float(value)]
    if kind == "is":
        return int(value[0] if many else value)
    raise ValueError(kind)
