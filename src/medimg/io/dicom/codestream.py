"""What compressed pixel data really holds, read from the codestream before anything decodes it.

A decoder trusts the header: it allocates Rows x Columns x Samples x Bits for each frame and
writes the decoded codestream into it. When the header lies (Columns = 65535 over a 64 x 64
JPEG-LS stream), a native decoder can abort the whole process (GDCM does); when the transfer
syntax lies (a JPEG 2000 codestream labelled JPEG Baseline), a plugin can decode it to wrong
values. So every fragment that starts a codestream is identified from its own magic bytes and
its frame header (JPEG SOFn, JPEG-LS SOF55, JPEG 2000 / HTJ2K SIZ, inside a JP2 wrapper or
not; the RLE segment header) and checked against the transfer syntax and the DICOM header
first (:func:`check_encapsulated`). Only the marker segments are read, not the entropy-coded data.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimg.errors import FileFormatError

__all__ = ["Codestream", "identify", "syntax_family", "check_encapsulated"]

#: Transfer syntax UID -> the codestream family its fragments must hold.
_FAMILIES: dict[str, str] = {
    **{f"1.2.840.10008.1.2.4.{n}": "jpeg" for n in (50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62,
                                                    63, 64, 65, 66, 70)},
    "1.2.840.10008.1.2.4.80": "jpeg-ls",
    "1.2.840.10008.1.2.4.81": "jpeg-ls",
    **{f"1.2.840.10008.1.2.4.{n}": "jpeg2000" for n in (90, 91, 92, 93, 201, 202, 203)},
    "1.2.840.10008.1.2.5": "rle",
}
_NAMES = {"jpeg": "JPEG", "jpeg-ls": "JPEG-LS", "jpeg2000": "JPEG 2000", "rle": "RLE", "jp2": "JPEG 2000"}
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
#: JPEG start-of-frame markers (all processes), and JPEG-LS's SOF55.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_SOF55 = 0xF7
_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI: no length field


@dataclass(frozen=True)
class Codestream:
    """The frame header of one codestream: its family and the image it encodes (``None``: not stated)."""

    family: str  # "jpeg", "jpeg-ls", "jpeg2000" or "rle"
    rows: int | None = None
    columns: int | None = None
    components: int | None = None
    precision: int | None = None  # bits per sample (largest over the components)
    segments: int | None = None  # RLE only


def syntax_family(uid: str) -> str | None:
    """The codestream family a transfer syntax UID implies, or ``None`` when medimg does not check it."""
    return _FAMILIES.get(uid)


def identify(data: bytes | memoryview, *, rle: bool = False) -> Codestream | None:
    """Identify a codestream from its first bytes and read its frame header.

    Returns ``None`` when ``data`` starts no known codestream. RLE has no magic bytes: it is
    read as an RLE header only when ``rle`` is true (the transfer syntax says RLE).
    """
    data = bytes(data[:65536])
    if data[:2] == b"\xff\xd8":
        return _jpeg(data)
    if data[:4] == b"\xff\x4f\xff\x51":
        return _siz(data, 4)
    if data[:12] == _JP2_SIGNATURE:
        return _jp2(data)
    if rle and len(data) >= 64:
        n = struct.unpack_from("<I", data)[0]
        return Codestream("rle", segments=n)
    return None


def _jpeg(data: bytes) -> Codestream:
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = struct.unpack_from(">H", data, pos + 2)[0]
        if marker in _SOF or marker == _SOF55:
            if pos + 10 > n:
                break
            precision, rows, columns, components = struct.unpack_from(">BHHB", data, pos + 4)
            family = "jpeg-ls" if marker == _SOF55 else "jpeg"
            return Codestream(family, rows or None, columns or None, components, precision)
        if marker == 0xDA or length < 2:  # start of scan before any frame header, or garbage
            break
        pos += 2 + length
    # A JPEG-LS stream may carry an LSE segment before its SOF55; a stream whose frame header we
    # cannot reach is still recognisably JPEG-family: say so without dimensions.
    family = "jpeg-ls" if b"\xff\xf7" in data[:4096] else "jpeg"
    return Codestream(family)


def _siz(data: bytes, pos: int) -> Codestream:
    """The SIZ marker segment (its Lsiz at ``pos``) of a JPEG 2000 / HTJ2K codestream."""
    if pos + 38 > len(data):
        return Codestream("jpeg2000")
    (_lsiz, _rsiz, xsiz, ysiz, xo, yo, _xt, _yt, _xto, _yto, csiz) = struct.unpack_from(">HHIIIIIIIIH", data, pos)
    precision = None
    if csiz and pos + 38 + 3 * csiz <= len(data):
        precision = max((data[pos + 38 + 3 * k] & 0x7F) + 1 for k in range(csiz))
    rows, columns = ysiz - yo, xsiz - xo
    return Codestream("jpeg2000", rows if rows > 0 else None, columns if columns > 0 else None, csiz, precision)


def _jp2(data: bytes) -> Codestream:
    """Find the contiguous codestream box (``jp2c``) of a JP2 file and read its SIZ."""
    pos = 0
    n = len(data)
    while pos + 8 <= n:
        length, box = struct.unpack_from(">I4s", data, pos)
        header = 8
        if length == 1:
            if pos + 16 > n:
                break
            length = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        if box == b"jp2c":
            start = pos + header
            if data[start : start + 4] == b"\xff\x4f\xff\x51":
                return _siz(data, start + 4)
            break
        if length == 0 or length < header:
            break
        pos += length
    return Codestream("jpeg2000")


def check_encapsulated(path: Path, transfer_syntax: str, values: dict[str, Any],
                       fragments: Iterable[bytes | memoryview], n_frames: int) -> None:
    """Check encapsulated pixel data against its transfer syntax and the DICOM header, before decoding.

    ``fragments`` are the pixel data fragments (Basic Offset Table excluded). Every fragment that
    starts a codestream must be of the family the transfer syntax names, and encode the header's
    Rows x Columns, Samples per Pixel, and at most Bits Allocated bits per sample; RLE frames must
    hold Samples x Bytes per sample segments; there must be at least one fragment per frame (a
    fragment never holds more than one frame, PS3.5 A.4). Raises :class:`FileFormatError` that
    names what the header and the codestream say.
    """
    family = syntax_family(transfer_syntax)
    if family is None:
        return
    from medimg.io.dicom.pixels import syntax_name

    syntax = f"{syntax_name(transfer_syntax)} [{transfer_syntax}]"
    rows, columns = values.get("Rows"), values.get("Columns")
    samples = int(values.get("SamplesPerPixel") or 1)
    bits = int(values.get("BitsAllocated") or 0)
    count = 0
    for index, fragment in enumerate(fragments):
        count += 1
        found = identify(fragment, rle=family == "rle" and index == 0)
        if family == "rle":
            if index == 0 and found is not None:
                expected = samples * max(1, (bits + 7) // 8)
                if found.segments != expected:
                    raise FileFormatError(
                        path, f"RLE frame header holds {found.segments} segment(s); Samples per Pixel {samples} "
                        f"x Bits Allocated {bits} need {expected}")
                # PackBits expands 2 bytes to at most 128: a frame cannot decode to more than 64 x its bytes.
                frame_bytes = int(rows or 0) * int(columns or 0) * expected
                if frame_bytes > 64 * len(fragment):
                    raise FileFormatError(
                        path, f"header says {rows} x {columns} pixels ({frame_bytes} bytes a frame), but an RLE "
                        f"frame of {len(fragment)} bytes decodes to at most {64 * len(fragment)} bytes")
            elif index == 0:
                raise FileFormatError(path, f"transfer syntax {syntax}, but the first fragment is too short "
                                      "for an RLE header")
            continue
        if found is None:
            if index == 0:
                raise FileFormatError(
                    path, f"transfer syntax {syntax}, but the pixel data does not start with a "
                    f"{_NAMES[family]} codestream (first bytes {bytes(fragment[:4]).hex(' ')})")
            continue  # the continuation of a frame split over fragments
        if found.family != family:
            raise FileFormatError(
                path, f"transfer syntax {syntax}, but the pixel data is a {_NAMES[found.family]} codestream: "
                "the file is mislabelled")
        _compare(path, found, rows, columns, samples, bits)
    if count < n_frames:
        raise FileFormatError(path, f"claims {n_frames} frames, but its encapsulated pixel data holds "
                              f"{count} fragment(s) (at least one per frame)")


def _compare(path: Path, found: Codestream, rows: Any, columns: Any, samples: int, bits: int) -> None:
    name = _NAMES[found.family]
    if found.rows is not None and found.columns is not None and (found.rows, found.columns) != (rows, columns):
        raise FileFormatError(
            path, f"header says Rows x Columns = {rows} x {columns}, but the {name} codestream is "
            f"{found.rows} x {found.columns}")
    if found.components is not None and found.components != samples:
        raise FileFormatError(
            path, f"header says Samples per Pixel = {samples}, but the {name} codestream has "
            f"{found.components} component(s)")
    if found.precision is not None and bits and found.precision > bits:
        raise FileFormatError(
            path, f"header says Bits Allocated = {bits}, but the {name} codestream has {found.precision}-bit samples")
