"""Decoding DICOM pixel data: raw little-endian frames directly, everything else through pydicom.

Native (uncompressed) little-endian pixel data is read straight from the file into the output
array (``readinto``, no intermediate copy). Compressed transfer syntaxes (JPEG, JPEG-LS,
JPEG 2000, HTJ2K, RLE, deflate, big endian) go through pydicom's pixel plugins (pylibjpeg,
GDCM, pyjpegls, Pillow). A syntax that no installed plugin decodes raises
:class:`~medimg.errors.UnsupportedTransferSyntaxError` naming it.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import (
    FileFormatError,
    MissingPixelDataError,
    TruncatedFileError,
    UnsupportedTransferSyntaxError,
)
from medimg.io.dicom.header import NATIVE_LE, TS_NAMES, Header

__all__ = ["raw_dtype", "can_read_raw", "read_raw_frames_into", "read_raw_frames_hashed", "decode_pixels",
           "syntax_name", "check_size_claims"]

#: Fewest bytes one encapsulated frame takes: an item header (8 bytes) and a codestream of at
#: least a start and an end marker (JPEG SOI + EOI, 4 bytes).
_MIN_ENCAPSULATED_FRAME = 12


def syntax_name(uid: str) -> str:
    """Human name of a transfer syntax UID (pydicom's dictionary, or the UID itself)."""
    if uid in TS_NAMES:
        return TS_NAMES[uid]
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return name or uid
    except Exception:  # noqa: BLE001
        return uid


def check_size_claims(header: Header) -> None:
    """Check the image size the header claims against the pixel bytes the file holds.

    Rows x Columns x Samples per Pixel x Bits Allocated / 8 x Number of Frames must fit in native
    pixel data; encapsulated pixel data must hold at least a minimal fragment per claimed frame.
    Called before anything is allocated for the frames, so that a file claiming a billion frames
    (or 65535 x 65535 pixels) fails at once, naming the claim, instead of exhausting memory.
    Raises :class:`FileFormatError`.
    """
    path = header.path
    values = header.values
    n = values.get("NumberOfFrames")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise FileFormatError(path, f"Number of Frames (0028,0008) = {n}: must be 1 or more")
    rows, cols = values.get("Rows"), values.get("Columns")
    if not rows or not cols:
        return
    frames = header.number_of_frames
    present = header.pixel_bytes
    if present is None:
        return
    if header.encapsulated:
        if frames * _MIN_ENCAPSULATED_FRAME > present:
            raise FileFormatError(
                path, f"claims {frames} frames, but its encapsulated pixel data holds only {present} "
                f"bytes (at least {_MIN_ENCAPSULATED_FRAME} bytes per frame)")
        return
    samples = int(values.get("SamplesPerPixel") or 1)
    if header.pixel_keyword == "FloatPixelData":
        bits = 32
    elif header.pixel_keyword == "DoubleFloatPixelData":
        bits = 64
    else:
        bits = int(values.get("BitsAllocated") or 0)
    if bits <= 0:
        return
    if samples == 3 and str(values.get("PhotometricInterpretation", "")).startswith("YBR_") and \
            str(values.get("PhotometricInterpretation", "")).endswith(("_422", "_420")):
        samples = 2  # chroma subsampled: two samples per pixel on average (at most)
    expected = (rows * cols * samples * bits * frames + 7) // 8
    if present < expected:
        raise FileFormatError(
            path, f"claims {frames} frame(s) of {rows} x {cols} pixels, {samples} sample(s) of {bits} bits "
            f"({expected} bytes), but its pixel data holds {present} bytes")


def raw_dtype(header: Header) -> np.dtype | None:
    """The numpy dtype of native pixel data, or ``None`` when it cannot be read raw."""
    keyword = header.pixel_keyword
    if keyword == "FloatPixelData":
        return np.dtype("<f4")
    if keyword == "DoubleFloatPixelData":
        return np.dtype("<f8")
    bits = header.get("BitsAllocated")
    signed = header.get("PixelRepresentation", 0) == 1
    if bits == 8:
        return np.dtype("i1" if signed else "u1")
    if bits == 16:
        return np.dtype("<i2" if signed else "<u2")
    if bits == 32:
        return np.dtype("<i4" if signed else "<u4")
    return None


def can_read_raw(header: Header) -> bool:
    """True when the pixels can be read straight from the file (native LE, monochrome, whole bytes)."""
    if header.transfer_syntax not in NATIVE_LE or header.pixel_offset is None:
        return False
    if header.get("SamplesPerPixel", 1) != 1:
        return False
    if header.get("PhotometricInterpretation", "MONOCHROME2") not in ("MONOCHROME1", "MONOCHROME2"):
        return False
    dtype = raw_dtype(header)
    if dtype is None:
        return False
    rows, cols = header.get("Rows"), header.get("Columns")
    if not rows or not cols:
        return False
    expected = rows * cols * header.number_of_frames * dtype.itemsize
    length = header.pixel_length or 0
    if length not in (expected, expected + 1):
        return False
    stored = header.get("BitsStored", dtype.itemsize * 8)
    # pydicom leaves unused high bits of unsigned data as they are, and sign-extends signed data.
    return not (header.pixel_keyword == "PixelData" and stored < dtype.itemsize * 8 and dtype.kind == "i")


def read_raw_frames_into(header: Header, out: np.ndarray) -> None:
    """Read all frames of a native-LE file into ``out`` (shape (frames, rows, cols), raw dtype)."""
    view = memoryview(out.reshape(-1).view(np.uint8))
    with open(header.path, "rb") as fh:
        fh.seek(header.pixel_offset)
        got = fh.readinto(view)
    if got != view.nbytes:
        raise TruncatedFileError(header.path, f"pixel data is cut short: {got} of {view.nbytes} bytes")


def read_raw_frames_hashed(header: Header, out: np.ndarray) -> str | None:
    """As :func:`read_raw_frames_into`, reading the whole file in the same pass; returns the
    file's SHA-256 (hex), or ``None`` when it could not be taken from that read (the file's size
    changed since its header was read: hash it separately).

    One ``preadv`` call reads the bytes before the pixel data and those after it into two small
    buffers and the pixels straight into ``out``; the hash is updated from the three pieces, so
    every byte is read once and copied nowhere else.
    """
    import hashlib
    import os

    view = memoryview(out.reshape(-1).view(np.uint8))
    offset = header.pixel_offset
    size = header.file_size
    if offset is None or not size or not hasattr(os, "preadv") or offset + view.nbytes > size:
        read_raw_frames_into(header, out)
        return None
    head, tail = bytearray(offset), bytearray(size - offset - view.nbytes)
    fd = os.open(header.path, os.O_RDONLY)
    try:
        got = os.preadv(fd, [head, view, tail], 0)
        same_size = os.fstat(fd).st_size == size
    finally:
        os.close(fd)
    if got != size:  # cut short since the header was read: the plain read reports it (or reads it)
        read_raw_frames_into(header, out)
        return None
    if not same_size:
        return None
    digest = hashlib.sha256(head)
    digest.update(view)
    digest.update(tail)
    return digest.hexdigest()


def decode_pixels(path: str | Path, header: Header | None = None, *, dataset: Any = None) -> np.ndarray:
    """Stored pixel values of a DICOM file, before any rescale.

    Shape (frames, rows, cols) or (frames, rows, cols, samples); colour data are returned as
    RGB (YBR converted, as pydicom does by default). Raises a :class:`FileFormatError`
    subclass naming the file and the problem.
    """
    from medimg.io.dicom.header import read_header

    path = Path(path)
    if header is None:
        header = read_header(path)
    if not header.has_pixels:
        raise MissingPixelDataError(path, "no Pixel Data (7FE0,0010) element: not an image object")
    if can_read_raw(header):
        rows, cols = header.get("Rows"), header.get("Columns")
        out = np.empty((header.number_of_frames, rows, cols), dtype=raw_dtype(header))
        read_raw_frames_into(header, out)
        return out.astype(out.dtype.newbyteorder("="), copy=False)
    return _decode_with_pydicom(path, header, dataset)


def _decode_with_pydicom(path: Path, header: Header, dataset: Any) -> np.ndarray:
    import pydicom

    from medimg.io.dicom.header import open_bounded

    ts = header.transfer_syntax
    name = syntax_name(ts)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dataset is not None:
                ds = dataset
            else:
                with open_bounded(path) as fh:
                    ds = pydicom.dcmread(fh, force=header.via_pydicom)
                    ds.PixelData if "PixelData" in ds else None  # noqa: B018 - read it while the file is open
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001
        raise FileFormatError(path, f"cannot be read by pydicom ({type(err).__name__}: {err})") from err
    try:
        if ts and not getattr(ds.file_meta, "TransferSyntaxUID", None):
            # File Meta without a Transfer Syntax UID: use the encoding the data set was read with.
            ds.file_meta.TransferSyntaxUID = ts
        _check_before_decoding(path, header, ds)
    except FileFormatError:
        raise
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - damaged values met while checking
        raise FileFormatError(path, f"pixel data cannot be decoded ({type(err).__name__}: {err})") from err
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = _pixel_array(ds, path, ts)
    except (NotImplementedError, RuntimeError) as err:
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UnsupportedTransferSyntaxError(path, ts, name, detail) from err
    except ValueError as err:
        msg = str(err)
        if "less than expected" in msg or "short" in msg:
            raise TruncatedFileError(path, f"pixel data is cut short ({msg.split(' - ')[0]})") from err
        raise FileFormatError(path, f"pixel data cannot be decoded ({msg[:200]})") from err
    except AttributeError as err:
        if "no 'Pixel Data'" in str(err) and header.pixel_keyword is not None:
            # Our parser saw the Pixel Data element; pydicom lost it: the fragments run off the end.
            msg = "encapsulated pixel data has no sequence delimiter: the file is cut short"
            raise TruncatedFileError(path, msg) from err
        raise FileFormatError(path, f"pixel data cannot be decoded: {err}") from err
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - plugins raise anything
        raise FileFormatError(path, f"pixel data cannot be decoded ({type(err).__name__}: {err})") from err
    except BaseException as err:
        if type(err).__name__ != "PanicException":  # a Rust decoder (pyo3) panicked: not ours to stop
            raise
        raise FileFormatError(path, f"pixel data cannot be decoded (decoder panic: {err})") from err
    frames = header.number_of_frames
    samples = header.get("SamplesPerPixel", 1)
    if frames == 1:
        array = array[np.newaxis]
    if samples == 1 and array.ndim == 4:  # should not happen; keep shapes honest
        array = array[..., 0]
    rows, cols = int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0)
    expected = (frames, rows, cols) if samples == 1 else (frames, rows, cols, samples)
    if tuple(array.shape) != expected:
        # a decoder that trusts the codestream (or the data length) over the header: the header
        # does not describe these pixels, so neither can be trusted
        raise FileFormatError(path, f"pixel data decodes to shape {tuple(array.shape)}, but the header "
                                    f"describes {expected} (frames, rows, columns[, samples])")
    return array.astype(array.dtype.newbyteorder("="), copy=False)


#: pydicom pixel plugins that are never run in this process: GDCM turns a corrupt codestream or a
#: header it disagrees with into an uncaught C++ exception, which aborts the whole process.
#: They run last, in a child process (:func:`_decode_in_child`).
UNSAFE_PLUGINS = ("gdcm",)
#: Plugins tried after the others: pyjpegls (CharLS) spends over 10 s on some corrupt JPEG-LS
#: streams that pylibjpeg rejects or decodes in milliseconds (found by the fuzzer).
SLOW_PLUGINS = ("pyjpegls",)


def _pixel_array(ds: Any, path: Path, ts: str) -> np.ndarray:
    """``ds.pixel_array`` with the in-process plugins first, then the unsafe ones in a child process."""
    try:
        from pydicom.pixels import get_decoder

        plugins = list(get_decoder(ts).available_plugins) if ts else []
    except (NotImplementedError, ValueError, KeyError):
        plugins = []
    unsafe = [p for p in plugins if p in UNSAFE_PLUGINS]
    if not unsafe:
        return ds.pixel_array
    failures: list[tuple[str, Exception]] = []
    safe = sorted((p for p in plugins if p not in UNSAFE_PLUGINS), key=lambda p: p in SLOW_PLUGINS)
    for plugin in safe:
        try:
            ds.pixel_array_options(decoding_plugin=plugin)
            return ds.pixel_array
        except MemoryError:
            raise
        except Exception as err:  # noqa: BLE001 - the next plugin may do better
            failures.append((plugin, err))
    if failures and all(isinstance(err, (ValueError, AttributeError)) for _p, err in failures):
        raise failures[0][1]  # the data themselves are wrong (short, inconsistent): no decoder will do
    try:
        return _decode_in_child(path, ts, unsafe[0])
    except RuntimeError as err:
        detail = "; ".join(f"{p}: {str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__}"
                           for p, e in [*failures, (unsafe[0], err)])
        raise RuntimeError(f"no installed decoder could decode it ({detail})") from err


_CHILD = """
import sys, warnings
import numpy as np
import pydicom
warnings.simplefilter("ignore")
path, ts, plugin, out = sys.argv[1:5]
ds = pydicom.dcmread(path, force=True)
if not getattr(ds.file_meta, "TransferSyntaxUID", None):
    ds.file_meta.TransferSyntaxUID = ts
ds.pixel_array_options(decoding_plugin=plugin)
np.save(out, ds.pixel_array, allow_pickle=False)
"""


def _decode_in_child(path: Path, ts: str, plugin: str) -> np.ndarray:
    """Decode with ``plugin`` in a child process: if the native code aborts, only the child dies.

    Raises :class:`FileFormatError` when the child is killed by a signal, ``RuntimeError``
    (with the child's last error line) when the plugin cannot decode the file.
    """
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="medimg-decode-") as tmp:
        out = Path(tmp) / "pixels.npy"
        try:
            done = subprocess.run([sys.executable, "-c", _CHILD, str(path), ts, plugin, str(out)],
                                  capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired as err:
            raise FileFormatError(path, f"the {plugin} decoder did not finish within 600 s") from err
        if done.returncode < 0:
            raise FileFormatError(
                path, f"the {plugin} decoder aborted on its pixel data (signal {-done.returncode}): the "
                "codestream is corrupt or disagrees with the header")
        if done.returncode != 0 or not out.exists():
            lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
            raise RuntimeError(lines[-1][:300] if lines else f"{plugin} failed (status {done.returncode})")
        return np.load(out, allow_pickle=False)


def _check_before_decoding(path: Path, header: Header, ds: Any) -> None:
    """Size claims against the bytes present, and encapsulated codestreams against the header
    (:func:`~medimg.io.dicom.codestream.check_encapsulated`), before a decoder allocates anything."""
    from io import BytesIO

    from medimg.io.dicom.codestream import check_encapsulated

    data = ds.get("PixelData") if "PixelData" in ds else None
    elem = ds["PixelData"] if data is not None else None
    if elem is None or not getattr(elem, "is_undefined_length", False):
        if header.pixel_bytes is None and isinstance(data, (bytes, bytearray)):
            header.pixel_bytes = len(data)
        check_size_claims(header)
        return
    header.encapsulated = True
    header.pixel_bytes = len(data)
    check_size_claims(header)
    ts = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or header.transfer_syntax)
    from pydicom.encaps import generate_fragments, parse_basic_offsets

    fp = BytesIO(data)
    try:
        parse_basic_offsets(fp)
        fragments = list(generate_fragments(fp))
    except (ValueError, struct.error, EOFError) as err:
        raise FileFormatError(path, f"encapsulated pixel data is malformed ({err})") from err
    check_encapsulated(path, ts, header.values, fragments, header.number_of_frames)
