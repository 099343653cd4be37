"""NIfTI-1 writing in one pass: the 352-byte header packed here, then the voxels straight from
the array's memory (no nibabel image, no copy), gzip-compressed on the fly for ``.nii.gz``.

The header is the one :meth:`medimg.core.image.Image.to_nibabel` + ``nibabel.save`` wrote
(tests/test_nifti_writer.py compares them byte for byte): RAS affine in the sform and the
qform (code 1, the qform from the rotation made orthogonal, as nibabel does), mm / s units,
no scaling (``scl_slope`` 1, ``scl_inter`` 0). The (z, y, x) array in C order is exactly NIfTI's (x, y, z)
in Fortran order, so its bytes are written as they are: ``.nii`` by one ``os.writev`` of the
header and the array's own memory (no copy, no conversion: int16 stays int16). ``.nii.gz`` is
compressed at level 1 (nibabel's default) with ISA-L (package ``isal``) when installed, else
zlib. The SHA-256 of the file is computed from the bytes as they are written (for the
provenance sidecar; nothing is read back).
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medimg.errors import UnsupportedFormatError

if TYPE_CHECKING:
    from medimg.core.image import Image

__all__ = ["nifti_header", "write_nifti"]

#: NIfTI-1 datatype codes and bit widths of the array dtypes written.
_DATATYPES = {
    np.dtype(np.uint8): 2, np.dtype(np.int16): 4, np.dtype(np.int32): 8, np.dtype(np.float32): 16,
    np.dtype(np.complex64): 32, np.dtype(np.float64): 64, np.dtype(np.int8): 256,
    np.dtype(np.uint16): 512, np.dtype(np.uint32): 768, np.dtype(np.int64): 1024,
    np.dtype(np.uint64): 1280, np.dtype(np.complex128): 1792,
}


def _quaternion(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z), w >= 0, of a rotation matrix (Bar-Itzhack's method, as
    nibabel's ``mat2quat``)."""
    qxx, qyx, qzx, qxy, qyy, qzy, qxz, qyz, qzz = rotation.flat
    k = np.array([
        [qxx - qyy - qzz, 0, 0, 0],
        [qyx + qxy, qyy - qxx - qzz, 0, 0],
        [qzx + qxz, qzy + qyz, qzz - qxx - qyy, 0],
        [qyz - qzy, qzx - qxz, qxy - qyx, qxx + qyy + qzz]]) / 3.0
    vals, vecs = np.linalg.eigh(k)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    return -q if q[0] < 0 else q


def _disk_array(image: Image) -> np.ndarray:
    """The array in the order NIfTI stores it (C order of (z, y, x) or (c, z, y, x))."""
    array = image.array
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    if image.channel_axis == -1:
        array = np.moveaxis(array, -1, 0)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    array = np.ascontiguousarray(array)
    if array.dtype not in _DATATYPES:
        raise UnsupportedFormatError(f"NIfTI cannot hold {image.array.dtype} voxels")
    return array


def nifti_header(image: Image, array: np.ndarray | None = None) -> bytes:
    """The 348-byte NIfTI-1 header of ``image`` plus the 4-byte extension flag (352 bytes)."""
    from medimg.core.image import LPS_TO_RAS

    array = _disk_array(image) if array is None else array
    shape_xyz = array.shape[::-1]  # (x, y, z[, c])
    if len(shape_xyz) > 7:
        raise UnsupportedFormatError("NIfTI holds at most 7 dimensions")
    dim = [len(shape_xyz), *shape_xyz] + [1] * (7 - len(shape_xyz))
    affine = LPS_TO_RAS @ np.asarray(image.affine, dtype=np.float64)
    rzs = affine[:3, :3]
    zooms = np.sqrt(np.sum(rzs * rzs, axis=0))
    rotation = rzs / np.where(zooms == 0, 1.0, zooms)
    qfac = 1.0
    if np.linalg.det(rotation) <= 0:
        qfac = -1.0
        rotation[:, -1] *= -1
    p, _s, qt = np.linalg.svd(rotation)
    quat = _quaternion(p @ qt)
    pixdim = [qfac, *zooms.tolist()] + [1.0] * 4
    fields = [
        struct.pack("<i10s18sihcB", 348, b"", b"", 0, 0, b"\0", 0),
        struct.pack("<8h", *dim),
        struct.pack("<3f4h", 0.0, 0.0, 0.0, 0, _DATATYPES[array.dtype], array.dtype.itemsize * 8, 0),
        struct.pack("<8f", *pixdim),
        struct.pack("<3fhBB", 352.0, 1.0, 0.0, 0, 0, 10),  # slope 1, inter 0; mm + s
        struct.pack("<4f2i", 0.0, 0.0, 0.0, 0.0, 0, 0),
        struct.pack("<80s24s2h", b"", b"", 1, 1),
        struct.pack("<6f", *quat[1:].tolist(), *affine[:3, 3].tolist()),
        struct.pack("<12f", *affine[:3, :].ravel().tolist()),
        struct.pack("<16s4s", b"", b"n+1\0"),
        b"\0\0\0\0",
    ]
    header = b"".join(fields)
    assert len(header) == 352
    return header


class _Hashing:
    """A binary file that hashes (SHA-256) and counts what is written to it."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self.size += len(view)
        return self.raw.write(view)


def _write_all(fd: int, pieces: list[Any]) -> None:
    """Write the buffers ``pieces`` to ``fd`` with ``os.writev`` (one call for a file of any
    usual size; continued where the kernel stopped, as it may above 2 GiB)."""
    import os

    pending = [memoryview(p).cast("B") for p in pieces if len(p)]
    if not hasattr(os, "writev"):
        for piece in pending:
            while len(piece):
                piece = piece[os.write(fd, piece):]
        return
    while pending:
        done = os.writev(fd, pending)
        while pending and done >= len(pending[0]):
            done -= len(pending[0])
            pending.pop(0)
        if pending and done:
            pending[0] = pending[0][done:]


def write_nifti(image: Image, path: str | Path, *, gzip: bool | None = None,
                compresslevel: int = 1) -> tuple[str, int]:
    """Write ``image`` as NIfTI-1 to ``path`` in one pass (see the module notes).

    ``gzip``: compress (default: when ``path`` ends in ``.gz``). Returns the SHA-256 (hex) and
    the size in bytes of the file written.
    """
    path = Path(path)
    array = _disk_array(image)
    header = nifti_header(image, array)
    if gzip is None:
        gzip = path.name.endswith(".gz")
    data = memoryview(array.reshape(-1)).cast("B") if array.size else b""
    if not gzip:  # header and voxels in one writev, hashed from the same buffers
        sha = hashlib.sha256(header)
        sha.update(data)
        with open(path, "wb", buffering=0) as raw:
            _write_all(raw.fileno(), [memoryview(header), data])
        return sha.hexdigest(), len(header) + len(data)
    with open(path, "wb") as raw:
        out = _Hashing(raw)
        try:
            from isal import isal_zlib as zlib_mod
        except ImportError:
            import zlib as zlib_mod
        # a gzip member by hand: fixed header (no name, mtime 0), raw deflate, CRC-32 + size
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
        comp = zlib_mod.compressobj(compresslevel, zlib_mod.DEFLATED, -15)
        crc = zlib_mod.crc32(header)
        out.write(comp.compress(header))
        step = 1 << 24
        for start in range(0, len(data), step):
            piece = data[start:start + step]
            crc = zlib_mod.crc32(piece, crc)
            out.write(comp.compress(piece))
        out.write(comp.flush())
        out.write(struct.pack("<II", crc & 0xFFFFFFFF, (len(header) + len(data)) & 0xFFFFFFFF))
    return out.sha.hexdigest(), out.size
