"""Non-DICOM formats: NIfTI (nibabel), NRRD / MHA / MHD (SimpleITK), PNG / JPEG / TIFF (Pillow).

NIfTI is written in one pass by :mod:`medimg.io.nifti` (the same bytes nibabel writes) and read
through :meth:`Image.from_nibabel` (:meth:`Image.to_nibabel` for nibabel users), the one place where
RAS <-> LPS happens; a ``.nii.gz`` is inflated in one call by libdeflate when the optional
``deflate`` is installed, then parsed by nibabel from memory. NRRD and MetaImage are written, and but for the plain NRRD below read, by
ITK, whose geometry is LPS already.
PNG/JPEG are 2-D images with no patient geometry (``has_patient_geometry=False``).

Reading NRRD: the common single-file NRRD (3-D scalar, every axis a domain axis, ``space`` one of
left-posterior-superior / right-anterior-superior / left-anterior-superior, ``raw`` encoding, or
``gzip`` when an optional fast inflater is installed: ``deflate`` (libdeflate) or ``isal``
(ISA-L)) is read natively: the header is parsed here and the payload inflated straight into the
array's memory. The result is what ITK gives: the same array (native byte order, writable) and
the same LPS geometry, computed as ITK's NRRD reader does (spacing = length of each space
direction, direction = the space direction times 1/spacing, x and y negated for a
right-anterior-superior space, y for left-anterior-superior). Anything else (detached headers,
other encodings or spaces, multi-component or 2-D images, line/byte skips), and gzip without
either inflater (ITK inflates faster than Python's zlib), goes to SimpleITK.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.files import atomic_path, full_suffix
from medimg.core.image import Image
from medimg.errors import FileFormatError, UnsupportedFormatError

__all__ = ["NIFTI_SUFFIXES", "ITK_SUFFIXES", "RASTER_SUFFIXES", "read_file", "read_nifti_slices", "read_nrrd_slices",
           "scan_nifti_label", "scan_nrrd_label", "write_file"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_file(path: str | Path) -> Image:
    """Read one NIfTI / NRRD / MetaImage / PNG / JPEG file (by extension)."""
    path = Path(path)
    suffix = full_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return _read_nifti(path)
    if suffix in ITK_SUFFIXES:
        return _read_itk(path)
    if suffix in RASTER_SUFFIXES:
        return _read_raster(path)
    msg = f"{path}: unsupported file extension {suffix!r}"
    raise UnsupportedFormatError(msg)


def write_file(image: Image, path: str | Path) -> Path:
    """Write ``image`` to NIfTI / NRRD / MetaImage / PNG (by extension), atomically."""
    path = Path(path)
    suffix = full_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        from medimg.io.nifti import write_nifti

        with atomic_path(path) as tmp:
            write_nifti(image, tmp, gzip=suffix == ".nii.gz")
    elif suffix in (".nrrd", ".mha"):
        import SimpleITK as sitk

        with atomic_path(path) as tmp:
            sitk.WriteImage(image.to_sitk(), str(tmp), useCompression=True)
    elif suffix in (".png",):
        _write_png(image, path)
    else:
        msg = (
            f"{path}: cannot write extension {suffix!r}; "
            "use .nii, .nii.gz, .nrrd, .mha or .png"
        )
        raise UnsupportedFormatError(msg)
    return path


def _read_nifti(path: Path) -> Image:
    import nibabel as nib

    fast = _nifti_libdeflate(path, None)
    if fast is not None:
        return fast
    try:
        img = _nifti_in_memory(path) or nib.load(str(path))
        _check_nifti_size(path, img)
        image = Image.from_nibabel(img, meta={"source_format": "nifti"})
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, MemoryError) as err:
        raise FileFormatError(path, f"not a readable NIfTI file ({err})") from err
    if isinstance(img, nib.Nifti1Image):
        codes = img.get_qform(coded=True)[1], img.get_sform(coded=True)[1]
        if codes == (0, 0):
            image.meta["warnings"] = ["NIfTI has qform_code = sform_code = 0: geometry is a guess"]
    return image


def _check_nifti_size(path: Path, img: Any) -> None:
    """ValueError when the header claims more voxel bytes than the file can hold (its size, or 1032
    times it for gzip, deflate's largest ratio): such a header would make nibabel allocate what it
    claims before finding the data missing."""
    header = getattr(img, "header", None)
    if header is None or not hasattr(header, "get_data_dtype"):
        return
    need = int(np.prod([int(v) for v in img.shape], dtype=object)) * header.get_data_dtype().itemsize
    size = path.stat().st_size
    room = size * 1032 + 1024 if path.name.lower().endswith(".gz") else size
    if need > room:
        raise ValueError(f"header claims {need} bytes of voxels, the file holds at most {room}")


def _nifti_in_memory(path: Path) -> Any | None:
    """A ``.nii.gz`` inflated in one call by libdeflate (the optional package ``deflate``) and parsed
    by nibabel from memory: the same image as ``nibabel.load``, about 2.5x faster than its streaming
    gzip. None (nibabel then reads the file) without ``deflate``, for an uncompressed file, or when the
    payload is not a whole NIfTI-1 file in one gzip member."""
    if not path.name.lower().endswith(".gz"):
        return None
    try:
        import deflate
    except ImportError:
        return None
    import nibabel as nib

    try:
        raw = deflate.gzip_decompress(path.read_bytes())
        if len(raw) < 352 or 348 not in (int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")):
            return None  # not NIfTI-1 (NIfTI-2 and the rest go to nibabel.load)
        img = nib.Nifti1Image.from_bytes(bytes(raw))
        need = int(img.header["vox_offset"]) + int(np.prod(img.shape)) * img.header.get_data_dtype().itemsize
    except Exception:  # noqa: BLE001 - anything unusual: nibabel reads the file and reports it
        return None
    return img if len(raw) >= need else None  # a second gzip member (not inflated here): nibabel


_MEMORY_PROXY: list[type] = []


def _memory_proxy_class() -> type:
    """A ``nibabel.arrayproxy.ArrayProxy`` whose unscaled voxels are an array in memory (no copy):
    reading it applies nibabel's own scaling, as reading a file does."""
    if not _MEMORY_PROXY:
        from nibabel.arrayproxy import ArrayProxy

        class MemoryProxy(ArrayProxy):  # type: ignore[misc]
            def __init__(self, name: str, header: Any, voxels: np.ndarray) -> None:
                super().__init__(name, header, mmap=False)
                if tuple(voxels.shape) != tuple(self.shape) or voxels.dtype != self.dtype:
                    raise ValueError("voxels do not match the header")
                self._voxels = voxels

            def _get_unscaled(self, slicer: Any) -> np.ndarray:
                if slicer != ():
                    raise ValueError("a memory proxy is read whole")
                return self._voxels

        _MEMORY_PROXY.append(MemoryProxy)
    return _MEMORY_PROXY[0]


def read_nifti_slices(path: Path, stop: int) -> Image | None:
    """The first ``stop`` slices (z) of a 3-D single-file NIfTI-1 ``.nii.gz``, with the file's
    geometry and ``meta["source_slices"]`` (as :func:`read_nrrd_slices`): the gzip payload is inflated
    by libdeflate only up to the end of slice ``stop - 1``, the header's ``dim[3]`` set to ``stop``,
    and the voxels scaled by nibabel's own array proxy in memory (no copy), with the affine nibabel
    takes from the (whole file's) header: the same voxels, type and geometry as :func:`read_file`
    gives. None when it is not such a file, ``stop`` covers every slice, or libdeflate (the
    optional ``deflate``) is missing: :func:`read_file` then reads it whole."""
    if stop < 1:
        return None
    return _nifti_libdeflate(path, stop)


def _nifti_libdeflate(path: Path, stop: int | None) -> Image | None:
    """A 3-D single-file little-endian NIfTI-1 ``.nii.gz`` inflated by libdeflate straight into the
    voxel buffer (no copy after it), up to slice ``stop`` (exclusive; None: the whole file, then
    without ``meta["source_slices"]``); the voxels scaled by nibabel's own proxy. None when the file
    is not such a file, ``stop`` covers every slice, or libdeflate is missing (the caller then reads
    it another way)."""
    if not path.name.lower().endswith(".nii.gz"):
        return None
    try:
        import nibabel as nib

        payload = memoryview(path.read_bytes())
        head = _inflate_prefix(payload, 352)
        if head is None or int.from_bytes(head[:4].tobytes(), "little") != 348:  # NIfTI-1, little-endian
            return None
        header = nib.Nifti1Header.from_fileobj(io.BytesIO(head.tobytes()))
        dims = header["dim"]
        if header["magic"].item() != b"n+1" or int(dims[0]) != 3:
            return None
        nx, ny, nz = (int(v) for v in dims[1:4])
        offset = int(header["vox_offset"])
        whole = stop is None
        if whole:
            stop = nz
        elif stop >= nz:
            return None
        if min(nx, ny, nz) < 1 or offset < 352:
            return None
        dtype = header.get_data_dtype()
        raw = _inflate_prefix(payload, offset + nx * ny * stop * dtype.itemsize)
        if raw is None:
            return None
        cut = header.copy()
        cut.set_data_shape((nx, ny, stop))
        voxels = np.frombuffer(raw, dtype=dtype, count=nx * ny * stop, offset=offset).reshape((nx, ny, stop), order="F")
        # nibabel's own proxy (its scaling by scl_slope / scl_inter), over the voxels in memory
        proxy = _memory_proxy_class()("memory", cut, voxels)
        img = nib.Nifti1Image(proxy, header.get_best_affine(), header=cut)
        image = Image.from_nibabel(img, meta={"source_format": "nifti"})
    except Exception:  # noqa: BLE001 - anything unusual: the whole file is read, and errors reported, by read_file
        return None
    codes = header.get_qform(coded=True)[1], header.get_sform(coded=True)[1]
    if codes == (0, 0):
        image.meta["warnings"] = ["NIfTI has qform_code = sform_code = 0: geometry is a guess"]
    if not whole:
        image.meta["source_slices"] = nz
    return image


#: NRRD ``type`` field -> numpy dtype (the names of the NRRD format specification).
_NRRD_TYPES: dict[str, str] = {}
for _names, _code in (
    (("signed char", "int8", "int8_t"), "i1"),
    (("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
    (("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"),
    (("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
    (("int", "signed int", "int32", "int32_t"), "i4"),
    (("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
    (("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
      "int64_t"), "i8"),
    (("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"), "u8"),
    (("float",), "f4"),
    (("double",), "f8"),
):
    for _name in _names:
        _NRRD_TYPES[_name] = _code

#: NRRD spaces read natively, and the sign that takes each axis of the space to LPS.
_NRRD_SPACES: dict[str, tuple[float, float, float]] = {
    "left-posterior-superior": (1.0, 1.0, 1.0), "lps": (1.0, 1.0, 1.0),
    "right-anterior-superior": (-1.0, -1.0, 1.0), "ras": (-1.0, -1.0, 1.0),
    "left-anterior-superior": (1.0, -1.0, 1.0), "las": (1.0, -1.0, 1.0),
}

#: Header fields read natively; any other field (data file, line/byte skip, spacings, axis mins,
#: space dimension, block size, ...) sends the file to ITK.
_NRRD_FIELDS = frozenset({
    "type", "dimension", "sizes", "encoding", "endian", "space", "space directions", "space origin",
    "kinds",
    # descriptive only: they change neither the voxels nor the geometry ITK reports
    "content", "space units", "measurement frame", "centerings", "centers", "labels", "units",
    "thicknesses", "min", "max", "old min", "oldmin", "old max", "oldmax", "sample units", "sampleunits",
})
_NRRD_VECTOR = re.compile(r"\(([^()]*)\)|(\S+)")


def _inflate(payload: memoryview, nbytes: int) -> np.ndarray | bytearray | None:
    """The ``nbytes`` bytes of the gzip stream ``payload``, in a writable buffer, with the fastest
    optional inflater installed: libdeflate (package ``deflate``: whole buffer, straight into the
    result), else ISA-L (package ``isal``: streamed into the result). None without either, or when
    the stream does not hold exactly ``nbytes`` bytes in one member (ITK then reads the file)."""
    try:
        import deflate
    except ImportError:
        pass
    else:
        try:
            out = deflate.gzip_decompress(payload, nbytes)  # a bytearray: writable
        except deflate.DeflateError:
            return None
        if len(out) == nbytes:
            return out
    stream = _gzip_stream(payload)
    if stream is None:
        return None
    buffer = np.empty(nbytes, dtype=np.uint8)
    try:
        got = _readinto_full(stream, memoryview(buffer))
    except Exception:  # noqa: BLE001 - isal's error types: a damaged stream
        return None
    finally:
        stream.close()
    return buffer if got == nbytes else None


#: Bytes beyond the wanted prefix given to libdeflate when it inflates only a prefix: one whole
#: stored block (65,535 bytes) or match (258) that starts inside the prefix then always fits.
_PREFIX_MARGIN = 65535 + 258
_LIBDEFLATE: list[Any] = []


def _libdeflate() -> Any:
    """libdeflate's C functions, from the optional ``deflate`` package's extension module (which
    exports them), through ctypes; None without the package or the symbols."""
    if not _LIBDEFLATE:
        lib = None
        try:
            import ctypes

            import deflate._deflate as ext

            cdll = ctypes.CDLL(ext.__file__)
            cdll.libdeflate_alloc_decompressor.restype = ctypes.c_void_p
            cdll.libdeflate_alloc_decompressor.argtypes = []
            cdll.libdeflate_free_decompressor.restype = None
            cdll.libdeflate_free_decompressor.argtypes = [ctypes.c_void_p]
            fn = cdll.libdeflate_gzip_decompress_ex
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                           ctypes.c_void_p, ctypes.c_void_p]
            lib = cdll
        except (ImportError, OSError, AttributeError):
            lib = None
        _LIBDEFLATE.append(lib)
    return _LIBDEFLATE[0]


def _inflate_prefix(payload: memoryview, nbytes: int) -> np.ndarray | None:
    """The first ``nbytes`` bytes of the gzip stream ``payload`` (a writable uint8 array), inflated
    by libdeflate into a buffer ``nbytes`` + :data:`_PREFIX_MARGIN` long: libdeflate writes its
    output in order and stops (``LIBDEFLATE_INSUFFICIENT_SPACE``) only at a literal, match or stored
    block that does not fit, which then starts at or after ``nbytes``: the prefix is complete
    (``tests/test_prad_shape_kernels.py`` checks it against zlib, stored blocks included). None
    without libdeflate, on a damaged stream, or a stream shorter than ``nbytes``."""
    lib = _libdeflate()
    if lib is None or nbytes <= 0 or nbytes > 1032 * len(payload) + 1024:  # deflate expands 1032:1 at most
        return None
    src = np.frombuffer(payload, dtype=np.uint8)
    out = np.empty(nbytes + _PREFIX_MARGIN, dtype=np.uint8)
    written = np.zeros(1, dtype=np.uintp)
    handle = lib.libdeflate_alloc_decompressor()
    if not handle:
        return None
    try:
        code = lib.libdeflate_gzip_decompress_ex(handle, src.ctypes.data, src.size, out.ctypes.data, out.size,
                                                 None, written.ctypes.data)
    finally:
        lib.libdeflate_free_decompressor(handle)
    if code == 3:  # LIBDEFLATE_INSUFFICIENT_SPACE: the stream goes on past the buffer
        return out[:nbytes]
    if code == 0 and int(written[0]) >= nbytes:  # the whole stream fitted
        return out[:nbytes]
    return None


def _gzip_stream(data: memoryview) -> Any:
    """An ISA-L gzip stream over the bytes ``data`` whose ``readinto`` fills a buffer directly,
    or None without the optional ``isal`` package."""
    try:
        from isal import igzip, isal_zlib
    except ImportError:
        return None
    reader = getattr(isal_zlib, "_GzipReader", None)  # the C reader behind igzip.IGzipFile
    if reader is not None:
        return reader(data)
    return igzip.IGzipFile(fileobj=io.BytesIO(data), mode="rb")


def _readinto_full(stream: Any, buffer: memoryview) -> int:
    """Fill ``buffer`` from ``stream`` (raw reads may come in pieces); the bytes read."""
    done = 0
    while done < len(buffer):
        got = stream.readinto(buffer[done:])
        if not got:
            break
        done += got
    return done


def _nrrd_vectors(text: str) -> list[list[float]] | None:
    """The vectors of a ``space directions`` / ``space origin`` value; None if one is ``none``."""
    out = []
    for inside, other in _NRRD_VECTOR.findall(text):
        if other:
            return None
        out.append([float(v) for v in inside.split(",")])
    return out


def read_nrrd_slices(path: Path, stop: int) -> Image | None:
    """The first ``stop`` slices (z) of a plain single-file NRRD (see the module docstring), with the
    file's geometry (the slab starts at slice 0: same origin) and ``meta["source_slices"]``, the file's
    number of slices: a gzip payload is inflated only that far (by libdeflate, the optional
    ``deflate``, else ISA-L, the optional ``isal``). None when the file is not read natively or
    neither is installed; :func:`read_file` then reads it whole."""
    try:
        return _read_nrrd_native(path, stop)
    except (OSError, ValueError, EOFError):
        return None


class _NrrdHeader:
    """What the native NRRD reader takes from a header: voxel type, sizes (x, y, z), encoding, where
    the payload starts, and the LPS geometry as ITK computes it (module docstring)."""

    __slots__ = ("dtype", "sizes", "encoding", "data_start", "spacing", "direction", "origin")

    def __init__(self, dtype: np.dtype, sizes: list[int], encoding: str, data_start: int, spacing: tuple[float, ...],
                 direction: tuple[float, ...], origin: tuple[float, ...]) -> None:
        self.dtype = dtype
        self.sizes = sizes
        self.encoding = encoding
        self.data_start = data_start
        self.spacing = spacing
        self.direction = direction
        self.origin = origin

    def image(self, array: np.ndarray, meta: dict[str, Any]) -> Image:
        return Image.from_geometry(array, spacing=self.spacing, origin=self.origin, direction=self.direction,
                                   meta=meta)


def _nrrd_header(fh: Any) -> _NrrdHeader | None:
    """The header of the plain single-file NRRD open as ``fh`` (read from its start); None when it is
    not one the native reader takes."""
    head = fh.read(65536)
    end = head.find(b"\n\n")
    if not head.startswith(b"NRRD000") or end < 0 or b"\r" in head[:end]:
        return None
    fields: dict[str, str] = {}
    for line in head[:end].decode("latin-1").split("\n")[1:]:
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(": ")
        if ":=" in key:  # a key/value pair: metadata only
            continue
        if not sep:
            return None
        fields[key.strip().lower()] = value.strip()
    if any(k not in _NRRD_FIELDS for k in fields):
        return None
    dtype_code = _NRRD_TYPES.get(fields.get("type", "").lower())
    space = _NRRD_SPACES.get(fields.get("space", "").lower())
    encoding = fields.get("encoding", "").lower()
    if dtype_code is None or space is None or fields.get("dimension") != "3":
        return None
    if encoding not in ("raw", "gzip", "gz"):
        return None
    if any(k not in ("domain", "space") for k in fields.get("kinds", "domain domain domain").split()):
        return None
    sizes = [int(v) for v in fields.get("sizes", "").split()]
    dirs = _nrrd_vectors(fields.get("space directions", ""))
    origins = _nrrd_vectors(fields["space origin"]) if "space origin" in fields else [[0.0, 0.0, 0.0]]
    if len(sizes) != 3 or min(sizes) < 1 or dirs is None or len(dirs) != 3 or origins is None:
        return None
    if len(origins) != 1 or any(len(v) != 3 for v in (*dirs, origins[0])):
        return None
    origin = origins[0]
    endian = fields.get("endian", "little").lower()
    if endian not in ("little", "big") or (int(dtype_code[1]) > 1 and "endian" not in fields):
        return None
    dtype = np.dtype(("<" if endian == "little" else ">") + dtype_code)
    # ITK (teem's nrrdSpacingCalculate): spacing = |v|, direction = v * (1 / spacing).
    spacing, columns = [], []
    for vec in dirs:
        norm = 0.0
        for c in vec:
            norm += c * c
        length = math.sqrt(norm)
        if not length > 0:
            return None
        inv = 1.0 / length
        spacing.append(length)
        columns.append([c * inv * s for c, s in zip(vec, space, strict=True)])
    direction = tuple(columns[col][row] for row in range(3) for col in range(3))
    origin_lps = tuple(o * s for o, s in zip(origin, space, strict=True))
    return _NrrdHeader(dtype, sizes, encoding, end + 2, tuple(spacing), direction, origin_lps)


def _read_nrrd_native(path: Path, stop: int | None = None) -> Image | None:
    """Read a plain single-file NRRD (see the module docstring); None when it is not one.
    ``stop``: only the first ``stop`` slices (None: all)."""
    with open(path, "rb") as fh:
        header = _nrrd_header(fh)
        if header is None:
            return None
        dtype, encoding = header.dtype, header.encoding
        sizes = list(header.sizes)
        source_slices = sizes[2]
        if stop is not None:
            sizes[2] = max(1, min(sizes[2], int(stop)))
        count = sizes[0] * sizes[1] * sizes[2]
        fh.seek(header.data_start)
        if stop is not None and encoding != "raw":
            payload = memoryview(fh.read())
            prefix = _inflate_prefix(payload, count * dtype.itemsize) if stop < source_slices else None
            stream = _gzip_stream(payload) if prefix is None else None
            if prefix is not None:
                out = prefix.view(dtype)
            elif stream is None:
                return None
            else:
                out = np.empty(count, dtype=dtype)
                try:
                    if _readinto_full(stream, memoryview(out).cast("B")) != out.nbytes:
                        return None
                except Exception:  # noqa: BLE001 - isal's error types: a damaged stream
                    return None
                finally:
                    stream.close()
        elif encoding == "raw":
            out = np.empty(count, dtype=dtype)
            if _readinto_full(fh, memoryview(out).cast("B")) != out.nbytes:
                return None
        else:
            decoded = _inflate(memoryview(fh.read()), count * dtype.itemsize)
            if decoded is None:
                return None
            out = np.frombuffer(decoded, dtype=dtype)
    if not dtype.isnative:
        out = out.byteswap().view(dtype.newbyteorder("="))
    meta: dict[str, Any] = {"source_format": "nrrd"}
    if stop is not None:
        meta["source_slices"] = source_slices
    return header.image(out.reshape(sizes[::-1]), meta)


#: A raw one-byte label map up to this size is read in one piece by :func:`scan_nrrd_label` (then only
#: the slices between the label's first and last voxel are compared); larger ones, and wider types
#: (measured: no faster read whole), are streamed.
_SCAN_WHOLE_BYTES = 64 << 20


def scan_nrrd_label(path: Path, label: Any
                    ) -> tuple[Image, tuple[np.ndarray, np.ndarray] | None, np.ndarray | None] | None:
    """Find ``label`` in the label map of a plain single-file NRRD without keeping the map.

    The payload is read (raw) about 1 MB at a time into one buffer, or inflated whole (gzip, as
    :func:`read_file` inflates it), and compared with ``label`` 1 MB at a time; only the slices that
    hold it are kept (no full-size ROI array is made, nor for a raw file the label array).

    Returns
    -------
    (geometry, bounds, roi) or None
        ``geometry``: an Image with the map's grid (LPS, as :func:`read_file` gives it) whose array is a
        read-only broadcast of zeros of the map's shape and type (not the labels); ``bounds``: the
        label's index bounds ``(lo, hi)`` (z, y, x, inclusive), None when it is absent; ``roi``: the
        boolean ``labels == label`` inside the bounds (None when absent). None when the file is not
        read natively, or is gzip without ``deflate`` or ``isal``: read it with :func:`read_file` then.
    """
    try:
        with open(path, "rb") as fh:
            header = _nrrd_header(fh)
            if header is None:
                return None
            nx, ny, nz = header.sizes
            dtype = header.dtype
            fh.seek(header.data_start)
            plane = nx * ny
            nbytes = nz * plane * dtype.itemsize
            if header.encoding != "raw":
                decoded = _inflate(memoryview(fh.read()), nbytes)
                if decoded is None:
                    return None
                kept = _label_slices(np.frombuffer(decoded, dtype=dtype), (nz, ny, nx), label, decoded, 0)
            elif dtype.itemsize == 1 and nbytes <= _SCAN_WHOLE_BYTES:  # one read, then memchr narrows it
                raw = fh.read(nbytes)
                if len(raw) != nbytes:
                    return None
                kept = _label_slices(np.frombuffer(raw, dtype=dtype), (nz, ny, nx), label, raw, 0)
            else:
                per = max(1, (1 << 18) // (plane * dtype.itemsize))  # 256 KB: in cache
                buffer = np.empty(min(per, nz) * plane, dtype=dtype)
                kept = {}
                for first in range(0, nz, per):
                    k = min(per, nz - first)
                    chunk = buffer[:k * plane]
                    if _readinto_full(fh, memoryview(chunk).cast("B")) != chunk.nbytes:
                        return None
                    kept.update(_label_slices(chunk, (k, ny, nx), label, None, 0, first))
    except (OSError, ValueError, EOFError):
        return None
    geometry = header.image(np.broadcast_to(np.zeros((), dtype=dtype.newbyteorder("=")), (nz, ny, nx)),
                            {"source_format": "nrrd"})
    return (geometry, *_kept_box(kept, ny, nx))


def scan_nifti_label(path: Path, label: Any
                     ) -> tuple[Image, tuple[np.ndarray, np.ndarray] | None, np.ndarray | None] | None:
    """:func:`scan_nrrd_label` for a 3-D single-file NIfTI-1 ``.nii.gz`` label map without scaling
    (no ``scl_slope`` / ``scl_inter`` other than 1 / 0): inflated whole by libdeflate, compared with
    ``label`` a few slices at a time. The geometry is the one :func:`read_file` gives (nibabel's
    affine from the header, to LPS). None otherwise (read it with :func:`read_file` then)."""
    if not path.name.lower().endswith(".nii.gz"):
        return None
    try:
        import deflate
        import nibabel as nib

        from medimg.core.image import LPS_TO_RAS

        raw = deflate.gzip_decompress(path.read_bytes())
        if len(raw) < 352 or int.from_bytes(raw[:4], "little") != 348:
            return None
        header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw[:348])))
        dims = header["dim"]
        if header["magic"].item() != b"n+1" or int(dims[0]) != 3:
            return None
        slope, inter = header.get_slope_inter()
        if slope not in (None, 1.0) or inter not in (None, 0.0):
            return None
        nx, ny, nz = (int(v) for v in dims[1:4])
        dtype = header.get_data_dtype()
        offset = int(header["vox_offset"])
        plane = nx * ny
        if min(nx, ny, nz) < 1 or offset < 352 or len(raw) < offset + nz * plane * dtype.itemsize:
            return None
        voxels = np.frombuffer(raw, dtype=dtype, count=nz * plane, offset=offset)
        affine = LPS_TO_RAS @ np.asarray(header.get_best_affine(), dtype=float)
    except Exception:  # noqa: BLE001 - anything unusual: read_file reads it, or reports why not
        return None
    kept = _label_slices(voxels, (nz, ny, nx), label, raw, offset)
    geometry = Image(np.broadcast_to(np.zeros((), dtype=dtype.newbyteorder("=")), (nz, ny, nx)), affine,
                     meta={"source_format": "nifti"})
    return (geometry, *_kept_box(kept, ny, nx))


def _label_slices(voxels: np.ndarray, shape: tuple[int, int, int], label: Any, raw: Any, offset: int,
                  base: int = 0) -> dict[int, np.ndarray]:
    """The slices of the label map ``voxels`` (C order, ``shape`` (z, y, x)) that hold ``label``:
    slice index (plus ``base``) -> its boolean ROI, compared a few slices (256 KB) at a time. For an
    integer map whose bytes are ``raw[offset:]`` (a bytes or bytearray), only the slices from the
    label's first to its last voxel are compared, found by ``find`` / ``rfind`` of the label's bytes
    (memchr speed; a match not on a voxel boundary is skipped)."""
    nz, ny, nx = shape
    plane = ny * nx
    lo, hi = 0, nz
    if raw is not None and voxels.dtype.kind in "biu" and isinstance(raw, (bytes, bytearray)):
        with np.errstate(invalid="ignore", over="ignore"):
            probe = np.asarray(label).astype(voxels.dtype)
        if probe.ndim != 0 or probe != label:
            return {}  # no voxel of this type equals the label
        code = probe.tobytes()  # in the map's own byte order
        end = offset + nz * plane * len(code)
        first = _voxel_find(raw, code, offset, end, last=False)
        if first == -1:
            return {}
        if first is not None:
            last = _voxel_find(raw, code, offset, end, last=True)
            if last is not None:
                step = plane * len(code)
                lo, hi = (first - offset) // step, (last - offset) // step + 1
    per = max(1, (1 << 18) // (plane * voxels.dtype.itemsize))
    kept: dict[int, np.ndarray] = {}
    for first in range(lo, hi, per):
        k = min(per, hi - first)
        hit = (voxels[first * plane:(first + k) * plane] == label).reshape(k, ny, nx)
        for i in np.flatnonzero(hit.reshape(k, -1).any(axis=1)):
            kept[base + first + int(i)] = hit[i].copy()
    return kept


def _voxel_find(raw: bytes | bytearray, code: bytes, start: int, end: int, *, last: bool) -> int | None:
    """Byte position in ``raw[start:end]`` of the first (``last``: the last) voxel whose bytes are
    ``code`` (voxels of ``len(code)`` bytes from ``start``); -1 when there is none. Searched by one
    non-zero byte of ``code`` (memchr: a multi-byte pattern search is slow over runs of zeros),
    each hit checked whole; None for an all-zero ``code`` or after 64 hits that are not such a voxel
    (the caller then compares every voxel)."""
    size = len(code)
    key = next((j for j, b in enumerate(code) if b), -1)
    if key < 0:
        return None
    byte = code[key:key + 1]
    lo, hi = start + key, end - size + key + 1  # where the key byte of a whole voxel can be
    for _ in range(64):
        pos = raw.rfind(byte, lo, hi) if last else raw.find(byte, lo, hi)
        if pos < 0:
            return -1
        voxel = pos - key
        if (voxel - start) % size == 0 and raw[voxel:voxel + size] == code:
            return voxel
        if last:
            hi = pos
        else:
            lo = pos + 1
    return None


def _kept_box(kept: dict[int, np.ndarray], ny: int, nx: int
              ) -> tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray | None]:
    """The bounds (z, y, x, inclusive) and the boolean ROI inside them of the slices ``kept``
    (slice index -> its (ny, nx) boolean ROI); (None, None) when there are none."""
    if not kept:
        return None, None
    z0, z1 = min(kept), max(kept)
    stack = np.zeros((z1 - z0 + 1, ny, nx), dtype=bool)
    for z, hit in kept.items():
        stack[z - z0] = hit
    inplane = stack.any(axis=0)
    ys = np.flatnonzero(inplane.any(axis=1))
    xs = np.flatnonzero(inplane.any(axis=0))
    lo = np.asarray([z0, ys[0], xs[0]], dtype=np.intp)
    hi = np.asarray([z1, ys[-1], xs[-1]], dtype=np.intp)
    return (lo, hi), np.ascontiguousarray(stack[:, ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1])


def _read_itk(path: Path) -> Image:
    if full_suffix(path) == ".nrrd":
        try:
            image = _read_nrrd_native(path)
        except (OSError, ValueError, EOFError):  # unreadable here: ITK reads it or explains why
            image = None
        if image is not None:
            return image
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        raise FileFormatError(path, f"ITK cannot read it ({first})") from err
    fmt = "nrrd" if full_suffix(path) in (".nrrd", ".nhdr") else "metaimage"
    return Image.from_sitk(img, meta={"source_format": fmt})


def _read_raster(path: Path) -> Image:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(path) as pil:
            mode = pil.mode
            if mode == "P":
                pil = pil.convert("RGBA" if "transparency" in pil.info else "RGB")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                pil = pil.convert("RGB")
            array = np.asarray(pil)
    except (UnidentifiedImageError, OSError) as err:
        raise FileFormatError(path, f"not a readable image ({err})") from err
    channel_axis = -1 if array.ndim == 3 else None
    return Image(
        array,
        meta={"source_format": full_suffix(path).lstrip("."), "photometric": mode},
        channel_axis=channel_axis,
        has_patient_geometry=False,
    )


def _write_png(image: Image, path: Path) -> None:
    from PIL import Image as PILImage

    array = image.array
    if image.spatial_ndim == 3 and image.spatial_shape[0] == 1:  # a single-slice volume is a 2-D image
        array = array[0]
    elif image.spatial_ndim != 2:
        msg = (f"{path}: PNG holds a 2-D image; this image is {image.spatial_ndim}-D with "
               f"{image.spatial_shape[0]} slices (medimg convert --slice K writes one)")
        raise UnsupportedFormatError(msg)
    if array.dtype not in (np.uint8, np.uint16) or (array.ndim == 3 and array.dtype != np.uint8):
        msg = (
            f"{path}: PNG stores uint8 (grey or RGB) or uint16 (grey) pixels; got {array.dtype}. "
            "Window or rescale the image first."
        )
        raise UnsupportedFormatError(msg)
    with atomic_path(path) as tmp:
        PILImage.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
