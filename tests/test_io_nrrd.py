"""The native NRRD reader gives exactly what SimpleITK gives: same array, dtype and LPS geometry."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import DIRECTIONS
from medimg import Image, io
from medimg.errors import FileFormatError
from medimg.io import formats


def _installed(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


INFLATERS = [pytest.param(name, marks=pytest.mark.skipif(not _installed(name), reason=f"{name} absent"))
             for name in ("deflate", "isal")]
needs_isal = pytest.mark.skipif(not _installed("isal"), reason="isal absent")


@pytest.fixture(params=INFLATERS)
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Read gzip NRRDs with this optional inflater only (the other one hidden)."""
    other = "isal" if request.param == "deflate" else "deflate"
    monkeypatch.setitem(sys.modules, other, None)  # `import other` raises ImportError
    return request.param


DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
          np.float32, np.float64]


def _by_itk(path: Path) -> Image:
    return Image.from_sitk(sitk.ReadImage(str(path)), meta={"source_format": "nrrd"})


def _assert_same(ours: Image, itk: Image) -> None:
    assert ours.array.dtype == itk.array.dtype and ours.array.dtype.isnative
    assert ours.array.shape == itk.array.shape
    np.testing.assert_array_equal(ours.array, itk.array)
    assert np.array_equal(ours.affine, itk.affine)  # bit for bit
    assert ours.meta == itk.meta and ours.channel_axis == itk.channel_axis
    assert ours.array.flags.writeable and ours.array.flags.c_contiguous


def _native(path: Path) -> Image:
    image = formats._read_nrrd_native(path)
    assert image is not None, f"{path.name} was not read natively"
    return image


def _write_itk(tmp_path: Path, array: np.ndarray, direction: np.ndarray, *, compress: bool,
               name: str = "v.nrrd") -> Path:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((0.78125, 0.9, 6.5))
    img.SetOrigin((-99.609375, 120.25, -78.0))
    img.SetDirection(tuple(np.asarray(direction, dtype=float).ravel()))
    path = tmp_path / name
    sitk.WriteImage(img, str(path), useCompression=compress)
    return path


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_raw_written_by_itk(tmp_path: Path, rng: np.random.Generator, dtype) -> None:
    _check_dtype(tmp_path, rng, dtype, compress=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_gzip_written_by_itk(tmp_path: Path, rng: np.random.Generator, dtype,
                                         inflater: str) -> None:
    _check_dtype(tmp_path, rng, dtype, compress=True)


def _check_dtype(tmp_path: Path, rng: np.random.Generator, dtype, *, compress: bool) -> None:
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        array = rng.integers(info.min, info.max, size=(5, 7, 9), dtype=dtype, endpoint=True)
    else:
        array = rng.normal(0, 1e3, size=(5, 7, 9)).astype(dtype)
    path = _write_itk(tmp_path, array, DIRECTIONS["oblique"], compress=compress)
    ours = _native(path)
    _assert_same(ours, _by_itk(path))
    _assert_same(io.read(path), _by_itk(path))


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_directions_written_by_itk(tmp_path: Path, rng: np.random.Generator, name: str,
                                   inflater: str) -> None:
    array = rng.integers(-1000, 3000, size=(4, 6, 5), dtype=np.int16)
    path = _write_itk(tmp_path, array, DIRECTIONS[name], compress=True)
    _assert_same(_native(path), _by_itk(path))


def _write_header(path: Path, header: str, payload: bytes) -> Path:
    path.write_bytes(header.encode("latin-1") + payload)
    return path


ARRAY = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4) * 37 - 300
DIRS = "(0.5,0.1,0) (0,0.75,0.2) (0.3,0,2)"


def _header(space: str = "space: left-posterior-superior\n", *, dirs: str = DIRS,
            origin: str | None = "(1.5,-2.25,3)", encoding: str = "raw", endian: str = "little",
            type_: str = "short", extra: str = "") -> str:
    lines = ["NRRD0004", "# Complete NRRD file format specification at:", f"type: {type_}", "dimension: 3"]
    header = "\n".join(lines) + "\n" + space + "sizes: 4 3 2\n" + f"space directions: {dirs}\n"
    header += "kinds: domain domain domain\n" + f"endian: {endian}\n" + f"encoding: {encoding}\n"
    if origin is not None:
        header += f"space origin: {origin}\n"
    return header + extra + "\n"


@pytest.mark.parametrize("space", ["left-posterior-superior", "LPS", "right-anterior-superior", "RAS",
                                   "left-anterior-superior", "LAS"])
def test_spaces_are_converted_to_lps_as_itk_does(tmp_path: Path, space: str) -> None:
    path = _write_header(tmp_path / "s.nrrd", _header(f"space: {space}\n"), ARRAY.tobytes())
    ours = _native(path)
    _assert_same(ours, _by_itk(path))
    if space in ("RAS", "right-anterior-superior"):
        assert ours.origin == (-1.5, 2.25, 3.0)


def test_header_variants_match_itk(tmp_path: Path) -> None:
    cases = {
        "big_endian": (_header(endian="big"), ARRAY.astype(">i2").tobytes()),
        "spaced_vectors": (_header(dirs="( 0.5, 0.1, 0 ) (0, 0.75,0.2) (0.3, 0, 2)",
                                   origin="( 1.5, -2.25, 3 )"), ARRAY.tobytes()),
        "no_origin": (_header(origin=None), ARRAY.tobytes()),
        "key_values_and_comments": (_header(extra="# a comment\nmodality:=MR\ncontent: test\n"),
                                    ARRAY.tobytes()),
        "float64": (_header(type_="double"), ARRAY.astype("<f8").tobytes()),
    }
    for name, (header, payload) in cases.items():
        path = _write_header(tmp_path / f"{name}.nrrd", header, payload)
        _assert_same(_native(path), _by_itk(path))


def test_gzip_payload_written_by_other_tools(tmp_path: Path, inflater: str) -> None:
    # gzip streams from Python's gzip module (header with a file name and mtime)
    raw = ARRAY.tobytes()
    one = _write_header(tmp_path / "one.nrrd", _header(encoding="gz"), gzip.compress(raw))
    _assert_same(_native(one), _by_itk(one))
    big = _write_header(tmp_path / "big.nrrd", _header(encoding="gzip", endian="big", type_="double"),
                        gzip.compress(ARRAY.astype(">f8").tobytes()))
    _assert_same(_native(big), _by_itk(big))
    # in two members: libdeflate reads one member only, then ISA-L (or ITK) reads the file
    two = _write_header(tmp_path / "two.nrrd", _header(encoding="gzip"),
                        gzip.compress(raw[:10]) + gzip.compress(raw[10:]))
    if inflater == "isal":
        _assert_same(_native(two), _by_itk(two))
    _assert_same(io.read(two), _by_itk(two))


def test_unusual_files_go_to_itk(tmp_path: Path) -> None:
    # detached header, ASCII encoding, a 2-D image, a vector image, a byte skip, no space field
    nhdr = tmp_path / "d.nhdr"
    (tmp_path / "d.raw").write_bytes(ARRAY.tobytes())
    nhdr.write_text(_header(extra="data file: d.raw\n"))
    ascii_path = _write_header(tmp_path / "a.nrrd", _header(encoding="ascii"),
                               " ".join(str(v) for v in ARRAY.ravel()).encode())
    skip = _write_header(tmp_path / "k.nrrd", _header(extra="byte skip: 4\n"), b"\0" * 4 + ARRAY.tobytes())
    nospace = _write_header(tmp_path / "n.nrrd", _header(space="", dirs="", origin=None).replace(
        "space directions: \n", "spacings: 0.5 0.75 2\n"), ARRAY.tobytes())
    two_d = tmp_path / "p.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(ARRAY[0]), str(two_d))
    vec = tmp_path / "v.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 3), np.uint8), isVector=True), str(vec))
    for path in (ascii_path, skip, nospace, two_d, vec):
        assert formats._read_nrrd_native(path) is None, path.name
        back = io.read(path)
        itk = Image.from_sitk(sitk.ReadImage(str(path)), meta={"source_format": "nrrd"})
        np.testing.assert_array_equal(back.array, itk.array)
        assert np.array_equal(back.affine, itk.affine)
    assert formats._read_nrrd_native(nhdr) is None
    np.testing.assert_array_equal(io.read(nhdr).array, ARRAY)


def test_gzip_without_a_fast_inflater_is_read_by_itk(tmp_path: Path, rng: np.random.Generator,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    array = rng.integers(0, 4000, size=(3, 4, 5), dtype=np.uint16)
    path = _write_itk(tmp_path, array, DIRECTIONS["sagittal"], compress=True)
    monkeypatch.setitem(sys.modules, "deflate", None)
    monkeypatch.setitem(sys.modules, "isal", None)
    assert formats._read_nrrd_native(path) is None
    _assert_same(io.read(path), _by_itk(path))


def test_damaged_files_are_clear_errors(tmp_path: Path, inflater: str) -> None:
    bad_gzip = _write_header(tmp_path / "bad.nrrd", _header(encoding="gzip"), b"\x1f\x8b\x08\x00broken")
    short = _write_header(tmp_path / "short.nrrd", _header(), ARRAY.tobytes()[:-3])
    for path in (bad_gzip, short):
        assert formats._read_nrrd_native(path) is None
        with pytest.raises(FileFormatError, match=path.name):
            io.read(path)


@needs_isal
def test_public_isal_reader_gives_the_same(tmp_path: Path, rng: np.random.Generator,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from isal import isal_zlib

    monkeypatch.setitem(sys.modules, "deflate", None)
    array = rng.integers(-5000, 5000, size=(6, 5, 7), dtype=np.int32)
    path = _write_itk(tmp_path, array, DIRECTIONS["coronal"], compress=True)
    monkeypatch.delattr(isal_zlib, "_GzipReader", raising=False)
    _assert_same(_native(path), _by_itk(path))
