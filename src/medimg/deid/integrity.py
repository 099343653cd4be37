"""Is a DICOM file whole? A walk over its encoded elements, and the checks a de-identified copy must pass.

pydicom reads what it can: a file cut inside an element header, or inside an undefined-length
sequence or encapsulated pixel data, comes back as a data set that simply ends early (the rest
is dropped with at most a warning). :func:`check_encoding` walks the bytes independently
(File Meta Information, then the data set in its transfer syntax: defined lengths must fit,
undefined lengths must reach their delimiters, items and fragments included, deflated data
sets must inflate completely) and raises :class:`~medimg.errors.TruncatedFileError` or
:class:`~medimg.errors.FileFormatError` naming the offset and the element.

:func:`check_complete` checks a de-identified data set against its input before it is counted
as done: the object's identity (SOP Class, SOP Instance, Study and Series UIDs) present and
valid, the image description (rows, columns, bits, samples, photometric interpretation)
unchanged and the pixel data byte for byte the input's.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path
from typing import Any

from medimg.errors import FileFormatError, TruncatedFileError

__all__ = ["check_encoding", "check_complete", "snapshot", "PIXEL_KEYWORDS"]

_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_DEFLATED = ("1.2.840.10008.1.2.1.99",)  # Deflated Explicit VR Little Endian (the data set itself)
_MAX_DEPTH = 64
_UID = re.compile(r"^(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+$")
#: Attributes that describe an image's pixels: a de-identified copy keeps them unchanged.
PIXEL_KEYWORDS = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "PixelRepresentation",
                  "PhotometricInterpretation", "NumberOfFrames", "PlanarConfiguration")
_PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float and Double Float Pixel Data


class _Walker:
    """Walks elements of one encoding over ``data``; raises at the first inconsistency."""

    def __init__(self, data: bytes | memoryview, path: Path, *, implicit: bool, little: bool, base: int) -> None:
        self.data = data
        self.path = path
        self.implicit = implicit
        self.end = "<" if little else ">"
        self.base = base  # offset of data[0] in the file, for messages
        self.short = struct.Struct(self.end + "HH2sH")
        self.tag_len = struct.Struct(self.end + "HHL")
        self.long_len = struct.Struct(self.end + "L")

    def _cut(self, pos: int, what: str) -> TruncatedFileError:
        return TruncatedFileError(self.path, f"the file is cut short: {what} at byte {self.base + pos} "
                                  f"(the file has {self.base + len(self.data)} bytes)")

    def header(self, pos: int, limit: int) -> tuple[int, bytes | None, int, int]:
        """(tag, VR or None, value length, value offset) of the element at ``pos``."""
        if pos + 8 > limit:
            raise self._cut(pos, "an element header ends")
        group, element, vr, length = self.short.unpack_from(self.data, pos)
        tag = group << 16 | element
        if group == 0xFFFE or self.implicit or not (b"AA" <= vr <= b"ZZ"):
            # items and delimiters have no VR; a VR of non-letters means implicit VR here
            # (writers switch inside sequences; pydicom reads them the same way)
            _g, _e, length = self.tag_len.unpack_from(self.data, pos)
            return tag, None, length, pos + 8
        if vr in _LONG_VRS:
            if pos + 12 > limit:
                raise self._cut(pos, "an element header ends")
            return tag, vr, self.long_len.unpack_from(self.data, pos + 8)[0], pos + 12
        return tag, vr, length, pos + 8

    def dataset(self, pos: int, limit: int, depth: int, *, in_item: bool) -> int:
        """Walk a data set from ``pos``; return where it ends (after the Item Delimiter in an item)."""
        if depth > _MAX_DEPTH:
            raise FileFormatError(self.path, f"sequences nested more than {_MAX_DEPTH} deep at byte {self.base + pos}")
        while pos < limit:
            tag, vr, length, value = self.header(pos, limit)
            if tag == _ITEM_END:
                if not in_item:
                    raise FileFormatError(self.path, f"an Item Delimiter outside any item at byte {self.base + pos}")
                return value
            if tag in (_ITEM, _SEQ_END):
                raise FileFormatError(self.path, f"an item tag where an element was expected at byte {self.base + pos}")
            if length == _UNDEFINED:
                if tag == 0x7FE00010 and vr != b"SQ":
                    pos = self.fragments(value, limit)
                elif vr == b"UN":  # a sequence of unknown VR: its items are implicit VR little endian
                    inner = _Walker(self.data, self.path, implicit=True, little=True, base=self.base)
                    pos = inner.sequence(value, limit, depth, tag)
                else:  # SQ, or an implicit VR sequence
                    pos = self.sequence(value, limit, depth, tag)
                continue
            if value + length > limit:
                raise self._cut(pos, f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs {length} bytes, "
                                     f"{max(0, limit - value)} are present,")
            pos = value + length
        if in_item:
            raise self._cut(pos, "an undefined-length item has no Item Delimiter;")
        return pos

    def sequence(self, pos: int, limit: int, depth: int, tag: int) -> int:
        """Items of an undefined-length sequence, up to and past its Sequence Delimiter."""
        while True:
            if pos + 8 > limit:
                raise self._cut(pos, f"sequence ({tag >> 16:04X},{tag & 0xFFFF:04X}) has no Sequence Delimiter;")
            item, _vr, length, value = self.header(pos, limit)
            if item == _SEQ_END:
                return value
            if item != _ITEM:
                raise FileFormatError(self.path, f"sequence ({tag >> 16:04X},{tag & 0xFFFF:04X}) holds "
                                      f"({item >> 16:04X},{item & 0xFFFF:04X}) where an item was expected, "
                                      f"at byte {self.base + pos}")
            if length == _UNDEFINED:
                pos = self.dataset(value, limit, depth + 1, in_item=True)
            elif value + length > limit:
                raise self._cut(pos, f"an item of ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs {length} bytes,")
            else:
                pos = value + length

    def fragments(self, pos: int, limit: int) -> int:
        """Encapsulated pixel data: the offset table and fragments, up to the Sequence Delimiter."""
        while True:
            if pos + 8 > limit:
                raise self._cut(pos, "encapsulated pixel data has no Sequence Delimiter;")
            group, element, length = self.tag_len.unpack_from(self.data, pos)
            item = group << 16 | element
            if item == _SEQ_END:
                return pos + 8
            if item != _ITEM or length == _UNDEFINED:
                raise FileFormatError(self.path, f"encapsulated pixel data holds a malformed fragment at byte "
                                      f"{self.base + pos}")
            if pos + 8 + length > limit:
                raise self._cut(pos, f"a pixel data fragment needs {length} bytes,")
            pos += 8 + length


def _meta_end(data: bytes, path: Path) -> int:
    """Offset just past the File Meta Information group (explicit VR little endian)."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise FileFormatError(path, "no 'DICM' prefix at byte 128: not a DICOM Part 10 file")
    walker = _Walker(data, path, implicit=False, little=True, base=0)
    pos = 132
    while pos + 4 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 0x0002:
        _tag, _vr, length, value = walker.header(pos, len(data))
        if length == _UNDEFINED or value + length > len(data):
            raise walker._cut(pos, "the File Meta Information ends")
        pos = value + length
    return pos


def check_encoding(data: bytes, path: str | Path, *, transfer_syntax: str, implicit: bool,
                   little_endian: bool) -> None:
    """Check that ``data`` (a whole Part 10 file) is one complete, well-formed DICOM object.

    Parameters
    ----------
    data
        The file's bytes.
    path
        Named in errors.
    transfer_syntax
        The Transfer Syntax UID (deflated data sets are inflated first).
    implicit, little_endian
        The data set's encoding (as the reader determined it).

    Raises
    ------
    TruncatedFileError
        The file ends inside an element, item, sequence, pixel data fragment or deflate stream.
    FileFormatError
        Items, delimiters or nesting are malformed, or the deflated data set is corrupt.
    """
    path = Path(path)
    start = _meta_end(data, path)
    body: bytes | memoryview = memoryview(data)[start:]
    if transfer_syntax in _DEFLATED:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            body = inflater.decompress(bytes(body)) + inflater.flush()
        except zlib.error as err:
            raise FileFormatError(path, f"the deflated data set is corrupt ({err})") from err
        if not inflater.eof:
            raise TruncatedFileError(path, "the file is cut short: the deflated data set ends before its last block")
        start = 0  # offsets below are in the inflated data set
    walker = _Walker(body, path, implicit=implicit, little=little_endian, base=start)
    walker.dataset(0, len(body), 0, in_item=False)


def snapshot(ds: Any) -> dict[int, tuple[Any, Any]]:
    """What :func:`check_complete` compares: the input's pixel-describing elements and pixel data,
    each as (element, its value object), taken before de-identification changes ``ds`` in place
    (raw elements stay raw: nothing is decoded here)."""
    from pydicom.datadict import tag_for_keyword

    shot: dict[int, tuple[Any, Any]] = {}
    for tag in (*(tag_for_keyword(k) for k in PIXEL_KEYWORDS), *_PIXEL_DATA_TAGS):
        if tag is not None and tag in ds:
            elem = ds.get_item(tag)
            shot[tag] = (elem, elem.value)
    return shot


def _value(elem: Any) -> Any:
    from pydicom.dataelem import RawDataElement, convert_raw_data_element

    return convert_raw_data_element(elem).value if isinstance(elem, RawDataElement) else elem.value


def check_complete(ds: Any, before: dict[int, tuple[Any, Any]], path: str | Path) -> None:
    """Check that the de-identified ``ds`` is a complete object: raise :class:`FileFormatError` if not.

    * SOP Class UID, SOP Instance UID, Study Instance UID and Series Instance UID are present
      and valid UIDs (they also name the output file);
    * every pixel-describing attribute the input had (:data:`PIXEL_KEYWORDS`) is present with
      the same value, and Pixel Data (or Float / Double Float Pixel Data) is byte for byte the
      input's (``before`` from :func:`snapshot`);
    * an object whose SOP class is an image (its IOD requires Pixel Data and Rows) has them.
    """
    from medimg.deid.iod import attribute_type

    path = Path(path)
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        value = str(ds.get(keyword, "") or "").strip("\0 ")
        if not value:
            raise FileFormatError(path, f"has no {keyword}: not a complete composite object")
        if len(value) > 64 or not _UID.match(value):
            raise FileFormatError(path, f"{keyword} is not a valid UID after de-identification")
    for tag, (elem, value) in before.items():
        after = ds.get_item(tag) if tag in ds else None
        if after is elem and after.value is value:
            continue  # the very element and value read from the input: untouched
        original = _value(elem) if elem.value is value else value
        if after is None or _value(after) != original:
            what = "pixel data" if tag in _PIXEL_DATA_TAGS else "the pixel description"
            raise FileFormatError(path, f"{what} ({tag >> 16:04X},{tag & 0xFFFF:04X}) was not carried over intact")
    sop_class = str(ds.get("SOPClassUID", ""))
    if attribute_type(sop_class, (), "Rows") in ("1", "1C"):  # an image IOD
        if not any(t in before for t in _PIXEL_DATA_TAGS) and "PixelDataProviderURL" not in ds:
            raise FileFormatError(path, "is an image (by its SOP class) without pixel data: incomplete")
        for keyword in ("Rows", "Columns"):
            if keyword not in ds:
                raise FileFormatError(path, f"is an image (by its SOP class) without {keyword}: incomplete")
