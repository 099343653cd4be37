"""The DICOM reader under broken and hostile files: mutants of real files from the corpus.

One test per class of fault (issue 13, items 3 to 6):

* every exception of the reader is medimg's own, naming the file (the fast parser's internal
  signals, zlib, pydicom, struct...), and one bad file never ends a folder (`info`, `convert`);
* every size claim is checked against the bytes present before anything is allocated;
* compressed pixel data is checked against its codestream (family and frame header) before a
  native decoder sees it: no process abort;
* values that would give silently wrong results (NaN rescale, corrupt geometry, a mislabelled
  codestream, a length field of 4 GB) are errors or warnings recorded in the image's meta.
"""

from __future__ import annotations

import io
import json
import math
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import DATA
from dicom_mutate import set_length, set_transfer_syntax, set_value
from medimg import Image
from medimg import io as mio
from medimg.cli.main import main
from medimg.errors import FileFormatError, MedimgError, TruncatedFileError, UserInputError
from medimg.io.dicom import decode_pixels, read_header, scan
from medimg.io.dicom.codestream import identify
from medimg.io.dicom.scan import UnexpectedReadError
from medimg.io.dicom.writer import write_series

CORPUS = DATA / "dicom-corpus"
ROWS, COLUMNS, FRAMES, SLOPE, IPP, IOP = 0x00280010, 0x00280011, 0x00280008, 0x00281053, 0x00200032, 0x00200037


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _with(name: str, **values: object) -> bytes:
    """A corpus file re-encoded by pydicom with some attributes changed (values pydicom accepts)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(CORPUS / name)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        out = io.BytesIO()
        ds.save_as(out)
    return out.getvalue()


def _read_everything(path: Path) -> None:
    """Header, pixels and the whole read: each either succeeds or raises medimg's own error."""
    for step in (read_header, decode_pixels, mio.read):
        try:
            step(path)
        except MedimgError as err:
            assert not isinstance(err, UnexpectedReadError), err
            assert str(path) in str(err) or path.name in str(err), err


# ------------------------------------------------------------------------------ 3: own errors
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "image_dfl.dcm", "MR_small_jpeg_ls_lossless.dcm", "nested_priv_SQ.dcm",
                                  "emri_small_jpeg_2k_lossless.dcm", "no_meta.dcm"])
def test_a_file_cut_anywhere_gives_medimgs_own_error(name: str, tmp_path: Path) -> None:
    """Truncations (fast parser's _NeedMore, zlib.error of deflate, pydicom's EOF and struct errors)."""
    data = (CORPUS / name).read_bytes()
    cuts = sorted({int(len(data) * f) for f in np.linspace(0.0, 0.999, 41)} | {129, 131, 133, 140, 200, 300})
    for cut in cuts:
        _read_everything(_write(tmp_path, f"cut{cut}.dcm", data[:cut]))


def test_a_truncated_sequence_is_a_truncated_file_error(tmp_path: Path) -> None:
    data = (CORPUS / "nested_priv_SQ.dcm").read_bytes()
    path = _write(tmp_path, "cut.dcm", data[: len(data) - 20])
    with pytest.raises(TruncatedFileError, match="cut short"):
        read_header(path)


def test_a_cut_deflate_stream_names_the_file(tmp_path: Path) -> None:
    data = (CORPUS / "image_dfl.dcm").read_bytes()
    path = _write(tmp_path, "cut.dcm", data[: len(data) // 2])
    with pytest.raises(FileFormatError) as info:
        mio.read(path)
    assert "cut.dcm" in str(info.value)


def test_a_value_of_the_wrong_length_for_its_vr(tmp_path: Path) -> None:
    """pydicom's BytesLengthException (a US value of 3 bytes) on the pydicom path."""
    data = (CORPUS / "MR_small_bigendian.dcm").read_bytes()
    for value in (b"\x00", b"\x00\x40\x00"):
        path = _write(tmp_path, "odd.dcm", set_value(data, ROWS, value, pad=False))
        _read_everything(path)


def _series(folder: Path) -> Path:
    z, y, x = np.indices((5, 12, 10))
    img = Image.from_geometry((x + 10 * y + 100 * z).astype(np.float32), spacing=(0.8, 0.8, 2.0))
    write_series(img, folder, seed=0, patient={"PatientID": "P1", "PatientName": "DOE^J"})
    return folder


def test_one_bad_file_never_ends_a_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    folder = _series(tmp_path / "series")
    ct = (CORPUS / "CT_small.dcm").read_bytes()
    _write(folder, "zz_cut.dcm", ct[:5000])  # another series, cut short
    _write(folder, "zz_frames.dcm", _with("CT_small.dcm", NumberOfFrames=999999999))
    _write(folder, "zz_garbage.dcm", bytes(range(256)) * 20)
    scan_module = sys.modules["medimg.io.dicom.scan"]
    real = scan_module.read_header

    def flaky(path: Path):  # a reader bug on one file: recorded, not fatal
        if Path(path).name == "zz_garbage.dcm":
            raise RuntimeError("boom")
        return real(path)

    monkeypatch.setattr(scan_module, "read_header", flaky)
    result = scan(folder)
    assert len(result.series) == 1 and result.series[0].n_frames == 5
    failed = {p.name: e for p, e in result.failures}
    assert set(failed) == {"zz_cut.dcm", "zz_frames.dcm", "zz_garbage.dcm"}
    assert isinstance(failed["zz_garbage.dcm"], UnexpectedReadError)
    assert isinstance(failed["zz_garbage.dcm"].__cause__, RuntimeError)
    assert all(isinstance(e, UserInputError) for e in failed.values())
    capsys.readouterr()
    assert main(["info", str(folder)]) == 1
    out = capsys.readouterr().out
    assert out.count("unreadable") == 3 and "Traceback" not in out
    out_file = tmp_path / "out.nii.gz"
    assert main(["convert", str(folder), str(out_file)]) == 1  # written, but the status says files were skipped
    captured = capsys.readouterr()
    assert out_file.exists() and "3 file(s)" in captured.err and "zz_frames.dcm" in captured.err
    assert mio.read(out_file).shape == (5, 12, 10)


# ------------------------------------------------------------------------------ 4: size claims
def _bounded(fn, *args) -> tuple[BaseException | None, float, int]:
    tracemalloc.start()
    start = time.perf_counter()
    caught = None
    try:
        fn(*args)
    except BaseException as err:  # noqa: BLE001
        caught = err
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return caught, elapsed, peak


@pytest.mark.parametrize(("name", "changes"), [
    ("CT_small.dcm", {"NumberOfFrames": 999999999}),  # the 39 kB file
    ("CT_small.dcm", {"Rows": 65535, "Columns": 65535}),
    ("MR_small_bigendian.dcm", {"NumberOfFrames": 999999999}),  # pydicom path
    ("MR_small_bigendian.dcm", {"Columns": 65535}),
    ("MR_small_jpeg_ls_lossless.dcm", {"NumberOfFrames": 999999999}),  # encapsulated
    ("MR_small_RLE.dcm", {"NumberOfFrames": 2147483647}),
    ("emri_small_jpeg_2k_lossless.dcm", {"NumberOfFrames": 11}),  # 10 frames, 10 fragments
    ("CT_small.dcm", {"NumberOfFrames": 0}),
    ("CT_small.dcm", {"NumberOfFrames": -5}),
])
def test_size_claims_are_checked_before_allocating(name: str, changes: dict, tmp_path: Path) -> None:
    path = _write(tmp_path, "claim.dcm", _with(name, **changes))
    err, elapsed, peak = _bounded(mio.read, path)
    assert isinstance(err, FileFormatError), repr(err)
    assert "claim.dcm" in str(err) and ("claims" in str(err) or "Number of Frames" in str(err)), err
    assert elapsed < 10 and peak < 50e6, (elapsed, peak)


def _without_meta(name: str) -> bytes:
    """A corpus file's data set alone (no preamble, no File Meta): read on pydicom's path."""
    data = (CORPUS / name).read_bytes()
    group, elem, vr, _l16, length = struct.unpack_from("<HH2sHI", data, 132)
    assert (group, elem, vr) == (2, 0, b"UL")
    return data[132 + 12 + length :]


@pytest.mark.parametrize(("name", "tag"), [
    ("MR_small_bigendian.dcm", 0x7FE00010),  # pydicom path, pixel data
    ("MR_small_implicit.dcm (no meta)", 0x00080008),  # pydicom path, a header element
    ("MR_small_implicit.dcm (no meta)", 0x7FE00010),
    ("CT_small.dcm", 0x7FE00010),  # fast path
    ("CT_small.dcm", 0x00431028),
    ("image_dfl.dcm", 0x7FE00010),  # deflated
])
def test_a_length_field_of_4_gb_is_a_clean_error_in_bounded_memory(name: str, tag: int, tmp_path: Path) -> None:
    data = _without_meta(name.split()[0]) if "no meta" in name else (CORPUS / name).read_bytes()
    if name == "image_dfl.dcm":  # the length lies inside the deflate stream: inflate, edit, deflate
        import zlib

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(CORPUS / name)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
        plain = io.BytesIO()
        ds.save_as(plain, enforce_file_format=True)
        inflated = set_length(plain.getvalue(), tag, 0xFFFFFFF0)
        meta_end = 132 + 12 + struct.unpack_from("<I", inflated, 140)[0]
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = packer.compress(inflated[meta_end:]) + packer.flush()
        mutated = set_transfer_syntax(inflated[:meta_end], "1.2.840.10008.1.2.1.99") + body
    else:
        mutated = set_length(data, tag, 0xFFFFFFF0)
    path = _write(tmp_path, "huge.dcm", mutated)
    for step in (read_header, decode_pixels, mio.read):
        err, elapsed, peak = _bounded(step, path)
        assert isinstance(err, FileFormatError), (step.__name__, repr(err))
        assert "huge.dcm" in str(err)
        assert peak < 50e6 and elapsed < 10, (step.__name__, peak, elapsed)


# ------------------------------------------------------------------------------ 5: codestreams
def test_codestream_headers_match_what_the_decoders_give() -> None:
    """identify() reads the dimensions every installed decoder produces (the outside reference)."""
    from pydicom.encaps import generate_fragments, parse_basic_offsets

    checked = 0
    for path in sorted(CORPUS.glob("*.dcm")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path)
                if not ds.file_meta.TransferSyntaxUID.is_compressed or "PixelData" not in ds:
                    continue
                array = ds.pixel_array
            except Exception:  # noqa: BLE001 - undecodable files: nothing to compare with
                continue
        fp = io.BytesIO(ds.PixelData)
        parse_basic_offsets(fp)
        first = next(generate_fragments(fp))
        found = identify(first, rle=ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5")
        assert found is not None, path.name
        frames = int(ds.get("NumberOfFrames") or 1)
        shape = array.shape[1:3] if frames > 1 else array.shape[:2]
        if found.rows is not None:
            assert (found.rows, found.columns) == shape, path.name
            checked += 1
    assert checked >= 20


@pytest.mark.parametrize(("name", "changes", "match"), [
    ("MR_small_jpeg_ls_lossless.dcm", {"Columns": 65535}, "JPEG-LS codestream is 64 x 64"),
    ("MR_small_jpeg_ls_lossless.dcm", {"Rows": 32}, "JPEG-LS codestream is 64 x 64"),
    ("MR_small_jpeg_ls_lossless.dcm", {"SamplesPerPixel": 3}, "1 component"),
    ("JLSL_16_15_1_1F.dcm", {"BitsAllocated": 8}, "15-bit samples"),
    ("MR_small_jp2klossless.dcm", {"Columns": 65535}, "JPEG 2000 codestream is 64 x 64"),
    ("SC_jpeg_no_color_transform.dcm", {"Rows": 9999}, "JPEG codestream"),
    ("MR_small_RLE.dcm", {"BitsAllocated": 8}, "RLE frame header holds 2 segment"),
])
def test_header_disagreeing_with_its_codestream_is_an_error(name: str, changes: dict, match: str,
                                                           tmp_path: Path) -> None:
    path = _write(tmp_path, "lie.dcm", _with(name, **changes))
    with pytest.raises(FileFormatError, match=match):
        decode_pixels(path)


def test_jpeg_ls_columns_65535_does_not_abort_the_process(tmp_path: Path) -> None:
    """The issue's case, in a child process: GDCM aborted it (exit 134); now one line, exit 2."""
    path = _write(tmp_path, "jls.dcm", _with("MR_small_jpeg_ls_lossless.dcm", Columns=65535))
    code = "import sys; from medimg.cli.main import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "info", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("error: ") and "65535" in done.stderr


@pytest.mark.parametrize(("name", "syntax", "found"), [
    ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.50", "JPEG 2000"),  # J2K labelled JPEG Baseline
    ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.80", "JPEG 2000"),
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.90", "JPEG-LS"),
    ("SC_jpeg_no_color_transform.dcm", "1.2.840.10008.1.2.4.201", "JPEG codestream"),
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.50", "JPEG-LS"),
])
def test_a_mislabelled_codestream_is_an_error(name: str, syntax: str, found: str, tmp_path: Path) -> None:
    path = _write(tmp_path, "label.dcm", set_transfer_syntax((CORPUS / name).read_bytes(), syntax))
    with pytest.raises(FileFormatError, match=f"pixel data is a {found}.*mislabelled"):
        mio.read(path)


def test_rle_data_labelled_jpeg_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "rle.dcm", set_transfer_syntax((CORPUS / "MR_small_RLE.dcm").read_bytes(),
                                                           "1.2.840.10008.1.2.4.70"))
    with pytest.raises(FileFormatError, match="does not start with a JPEG codestream"):
        mio.read(path)


# ------------------------------------------------------------------------------ 6: silent errors
@pytest.mark.parametrize("value", [b"NaN", b"inf", b"-Infinity"])
def test_a_rescale_that_is_not_finite_is_an_error(value: bytes, tmp_path: Path) -> None:
    path = _write(tmp_path, "slope.dcm", set_value((CORPUS / "CT_small.dcm").read_bytes(), SLOPE, value))
    with pytest.raises(FileFormatError, match=r"RescaleSlope \(0028,1053\).*not a finite number"):
        mio.read(path)
    assert main(["info", str(path)]) == 2


@pytest.mark.parametrize(("tag", "value", "what"), [
    (IPP, b"abc\\1\\x", "ImagePositionPatient"),
    (IPP, b"1\\2", "Image Position"),
    (IPP, b"NaN\\0\\0", "Image Position"),
    (IOP, b"0\\0\\0\\0\\0\\0", "Image Orientation"),
    (IOP, b"1\\0\\0\\1\\0\\0", "Image Orientation"),
])
def test_corrupt_geometry_is_a_loud_warning_with_the_fallback_stated(tag: int, value: bytes, what: str,
                                                                    tmp_path: Path, capsys) -> None:
    path = _write(tmp_path, "geo.dcm", set_value((CORPUS / "CT_small.dcm").read_bytes(), tag, value))
    image = mio.read(path)
    assert not image.has_patient_geometry
    warnings_ = " ".join(image.meta["warnings"])
    assert what in warnings_ and "without patient geometry" in warnings_ and "geo.dcm" in warnings_
    out = tmp_path / "geo.nii.gz"
    assert main(["convert", str(path), str(out)]) == 0
    assert "without patient geometry" in " ".join(capsys.readouterr().err.split())
    sidecar = json.loads((tmp_path / "geo.json").read_text())
    assert "without patient geometry" in json.dumps(sidecar)


def test_corrupt_pixel_spacing_is_said(tmp_path: Path) -> None:
    path = _write(tmp_path, "ps.dcm", set_value((CORPUS / "CT_small.dcm").read_bytes(), 0x00280030, b"0\\-1"))
    image = mio.read(path)
    assert any("Pixel Spacing" in w for w in image.meta["warnings"])
    assert image.spacing[:2] == (1.0, 1.0)


def test_an_intact_file_reads_as_before(tmp_path: Path) -> None:
    """No false alarm: the originals of every mutant above read without warnings."""
    for name in ("CT_small.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm",
                 "MR_small_bigendian.dcm", "SC_jpeg_no_color_transform.dcm", "JLSL_16_15_1_1F.dcm"):
        image = mio.read(CORPUS / name)
        assert not image.meta.get("warnings"), (name, image.meta.get("warnings"))
        assert math.isfinite(float(np.asarray(image.array, dtype=float).sum()))


# ------------------------------------------------------------------------------ 15: what a new user hit
def test_info_shows_each_series_uid_for_series(tmp_path: Path, capsys) -> None:
    folder = _series(tmp_path / "s")
    uid = scan(folder).series[0].key
    capsys.readouterr()
    assert main(["info", str(folder)]) == 0
    assert f"--series {uid}" in capsys.readouterr().out  # whole, on one line


def test_convert_to_png_takes_a_single_slice_volume_and_a_slice_option(tmp_path: Path, capsys) -> None:
    from PIL import Image as PILImage

    one = tmp_path / "one"
    z, y, x = np.indices((1, 12, 10))
    write_series(Image.from_geometry((x + 10 * y).astype(np.uint16), spacing=(1.0, 1.0, 2.0)), one, seed=1)
    assert main(["convert", str(one), str(tmp_path / "one.png")]) == 0
    np.testing.assert_array_equal(np.asarray(PILImage.open(tmp_path / "one.png")), (x + 10 * y)[0])
    folder = _series(tmp_path / "s")  # 5 slices, values x + 10 y + 100 z
    volume = mio.read(folder)
    assert main(["convert", str(folder), str(tmp_path / "three.nii.gz"), "--slice", "3"]) == 0
    got = mio.read(tmp_path / "three.nii.gz")
    np.testing.assert_array_equal(np.squeeze(got.array), volume.array[3])
    np.testing.assert_allclose(got.origin, volume.index_to_physical([0, 0, 3]), atol=1e-4)
    capsys.readouterr()
    assert main(["convert", str(folder), str(tmp_path / "x.png"), "--slice", "5"]) == 2
    assert "outside" in capsys.readouterr().err
    assert main(["convert", str(folder), str(tmp_path / "all.png")]) == 2
    assert "--slice" in capsys.readouterr().err
