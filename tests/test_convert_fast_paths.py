"""The fast paths of `medimg convert`: input hashed from the read of its pixels (one preadv),
header values decoded once per series, integer rescale in place; and the NIfTI it writes against
dcm2niix's, voxel for voxel in world space."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from medimg import Image
from medimg.core.provenance import sha256_file
from medimg.io.convert import convert_folder
from medimg.io.dicom import scan
from medimg.io.dicom.header import read_header
from medimg.io.dicom.pixels import read_raw_frames_hashed, read_raw_frames_into
from medimg.io.dicom.scan import frames_of
from medimg.io.dicom.volume import _apply_rescale
from medimg.io.dicom.writer import write_series
from medimg.io.sidecar import sidecar_path
from series_factory import write_test_series  # tests/ is on the path


def _series(root: Path, k: int = 0, shape=(6, 10, 12)) -> Path:
    return write_test_series(root, k, shape)


def test_hashed_read_gives_the_file_hash_and_the_same_pixels(tmp_path: Path) -> None:
    folder = _series(tmp_path)
    for path in sorted(folder.iterdir()):
        header = read_header(path)
        rows, cols = header.get("Rows"), header.get("Columns")
        a = np.empty((1, rows, cols), dtype="<i2" if header.get("PixelRepresentation") else "<u2")
        b = np.empty_like(a)
        assert read_raw_frames_hashed(header, a) == sha256_file(path)
        read_raw_frames_into(header, b)
        np.testing.assert_array_equal(a, b)


def test_hashed_read_of_a_file_that_changed_size_gives_no_hash(tmp_path: Path) -> None:
    path = sorted(_series(tmp_path).iterdir())[0]
    header = read_header(path)
    with open(path, "ab") as fh:  # grown after its header was read: the hash must come from a full read
        fh.write(b"\0\0")
    out = np.empty((1, header.get("Rows"), header.get("Columns")), dtype="<u2" if not header.get("PixelRepresentation") else "<i2")
    assert read_raw_frames_hashed(header, out) is None


def test_sidecar_input_hash_unchanged_by_where_it_is_taken(tmp_path: Path) -> None:
    """The series' input record equals the one from hashing every file on its own."""
    import hashlib
    import json

    root = tmp_path / "in"
    _series(root, 0)
    _series(root, 1, shape=(4, 9, 7))
    outs = list(convert_folder(root, tmp_path / "out", suffix=".nii", workers=1))
    for series, out in zip(sorted(scan(root).series, key=lambda s: s.key),
                           sorted(outs, key=lambda o: o.key), strict=True):
        digest = hashlib.sha256()
        for f in sorted(series.files, key=lambda p: p.relative_to(root).as_posix()):
            digest.update(f.relative_to(root).as_posix().encode() + b"\0" + sha256_file(f).encode() + b"\n")
        side = json.loads(sidecar_path(out.path).read_text())
        assert side["inputs"][0]["sha256_files"] == digest.hexdigest()


def test_decoded_values_are_not_shared_between_headers(tmp_path: Path) -> None:
    files = sorted(_series(tmp_path).iterdir())
    h1, h2 = read_header(files[0]), read_header(files[1])
    assert h1.values["ImageOrientationPatient"] == h2.values["ImageOrientationPatient"]
    h1.values["ImageOrientationPatient"].append(99.0)  # one header's list changed: the other's is its own
    assert len(h2.values["ImageOrientationPatient"]) == 6
    assert len(read_header(files[2]).values["ImageOrientationPatient"]) == 6


def test_unusable_orientation_still_reported_when_judged_once(tmp_path: Path) -> None:
    path = sorted(_series(tmp_path).iterdir())[0]
    for _ in range(2):  # the second time from the cache of judged orientations
        header = read_header(path)
        header.values["ImageOrientationPatient"] = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]  # parallel cosines
        (frame,) = frames_of(header)
        assert frame.orientation is None and any("Orientation" in p for p in header.problems)
        header = read_header(path)
        header.values["ImageOrientationPatient"] = [1.0, 0.0, 0.0, 0.0, float("nan"), 1.0]
        (frame,) = frames_of(header)
        assert frame.orientation is None


@pytest.mark.parametrize(("dtype", "lo", "hi", "slope", "intercept"), [
    ("<u2", 0, 65535, 1, -32768), ("<u2", 0, 4095, 1, -1024), ("<u2", 30000, 40000, 1, -20000),
    ("<i2", -2000, 3000, 1, -1024), ("<u2", 0, 4000, 3, -5000), ("<i2", -32768, 32767, 1, 100),
    ("<u1", 0, 255, 2, -100),
])
def test_integer_rescale_in_place_equals_exact_arithmetic(dtype, lo, hi, slope, intercept) -> None:
    from types import SimpleNamespace

    rng = np.random.default_rng(1)
    stored = rng.integers(lo, hi, size=(3, 5, 7), endpoint=True).astype(dtype)
    stored.flat[0], stored.flat[1] = lo, hi
    exact = stored.astype(np.int64) * slope + intercept
    frames = [SimpleNamespace(slope=float(slope), intercept=float(intercept))] * 3
    out, info = _apply_rescale(stored.copy(), frames)  # type: ignore[arg-type]
    np.testing.assert_array_equal(out.astype(np.int64), exact)
    assert out.dtype == (np.int16 if exact.min() >= -32768 and exact.max() <= 32767 else np.int32)
    assert info == {"slope": float(slope), "intercept": float(intercept)}


def test_nifti_voxels_match_dcm2niix(tmp_path: Path) -> None:
    """The same world-space voxel values as dcm2niix's NIfTI of the same series (both read by nibabel,
    both brought to the closest canonical orientation; dcm2niix stores raw values + scl_slope/inter)."""
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not installed (Debian package dcm2niix)")
    nib = pytest.importorskip("nibabel")
    root = tmp_path / "in"
    _series(root, 0, shape=(7, 16, 20))
    ours = list(convert_folder(root, tmp_path / "m", suffix=".nii", workers=1))
    (tmp_path / "d").mkdir()
    subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "vol", "-o", str(tmp_path / "d"), str(root)],
                   check=True, capture_output=True)
    a = nib.as_closest_canonical(nib.load(str(ours[0].path)))
    b = nib.as_closest_canonical(nib.load(str(tmp_path / "d" / "vol.nii")))
    assert a.get_data_dtype() == np.int16  # int16 stays int16: no float conversion on the way
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.asarray(a.dataobj), b.get_fdata())
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-3)


@pytest.mark.parametrize("parallel_scan", [True, False])
def test_scan_here_or_in_workers_same_outputs(tmp_path: Path, monkeypatch, parallel_scan: bool) -> None:
    """Headers read by 3 workers (forced for a small folder) or in this process: the same files."""
    import medimg.io.convert as convert

    root = tmp_path / "in"
    for k in range(3):
        _series(root, k, shape=(3 + k, 6, 5))
    monkeypatch.setattr(convert, "PARALLEL_SCAN_MIN_FILES", 1 if parallel_scan else 10**9)
    ref = {o.path.name: sha256_file(o.path) for o in convert_folder(root, tmp_path / "a", suffix=".nii", workers=1)}
    got = {o.path.name: sha256_file(o.path) for o in convert_folder(root, tmp_path / "b", suffix=".nii", workers=3)}
    assert got == ref and len(ref) == 3


@pytest.mark.parametrize("cached", [True, False])
def test_read_ahead_only_for_files_not_in_the_page_cache(tmp_path: Path, monkeypatch, cached: bool) -> None:
    import importlib

    scan_mod = importlib.import_module("medimg.io.dicom.scan")
    files = sorted(_series(tmp_path, shape=(7, 4, 4)).iterdir())
    asked: list[Path] = []
    monkeypatch.setattr(scan_mod, "_cached", lambda f: cached)
    monkeypatch.setattr(scan_mod, "_prefetch", asked.append)
    got = [f for f, h in scan_mod._read_headers(files, 3)]
    assert got == files  # file order kept, every file read once
    assert sorted(asked) == ([] if cached else files)  # each file asked for once, when not cached


def test_page_cache_probe_tells_a_dropped_file(tmp_path: Path) -> None:
    import importlib
    import os

    scan_mod = importlib.import_module("medimg.io.dicom.scan")
    path = tmp_path / "x.bin"
    path.write_bytes(os.urandom(1 << 16))
    if not scan_mod._cached(path):  # just written, so in the page cache: the probe cannot tell here
        pytest.skip("no non-blocking reads on this file system (RWF_NOWAIT)")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    if scan_mod._cached(path):
        pytest.skip("this file system keeps the pages (or has no non-blocking reads)")
    assert not scan_mod._cached(path)


def test_nifti_written_whole_when_the_kernel_writes_in_pieces(tmp_path: Path, monkeypatch) -> None:
    """One writev normally; continued correctly where a (short) writev stopped."""
    import hashlib
    import os

    from medimg.io.nifti import write_nifti

    arr = np.random.default_rng(3).integers(-1000, 1000, size=(3, 5, 7)).astype(np.int16)
    image = Image.from_geometry(arr, spacing=(0.5, 0.7, 2.0))
    ref = tmp_path / "ref.nii"
    sha_ref, size_ref = write_nifti(image, ref)
    real_writev, calls = os.writev, []

    def short_writev(fd, buffers):  # at most 100 bytes a call, across buffer boundaries
        calls.append(1)
        left, parts = 100, []
        for b in buffers:
            parts.append(bytes(b[:left]))
            left -= len(parts[-1])
            if not left:
                break
        return real_writev(fd, parts)

    monkeypatch.setattr(os, "writev", short_writev)
    got = tmp_path / "got.nii"
    assert write_nifti(image, got) == (sha_ref, size_ref)
    assert got.read_bytes() == ref.read_bytes() and len(calls) == -(-size_ref // 100)
    assert hashlib.sha256(got.read_bytes()).hexdigest() == sha_ref and size_ref == 352 + arr.nbytes


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_no_file_hashed_by_a_second_read(tmp_path: Path, monkeypatch, ext: str) -> None:
    """Inputs are hashed from the read of their pixels, outputs as they are written: the
    whole-file hash function is never needed (and the records still match it, checked above)."""
    import medimg.core.provenance as provenance
    import medimg.io.sidecar as sidecar

    root = tmp_path / "in"
    _series(root, 0)

    def refuse(path, *a, **k):
        raise AssertionError(f"{path} hashed by a second read")

    monkeypatch.setattr(provenance, "sha256_file", refuse)
    monkeypatch.setattr(sidecar, "sha256_file", refuse)
    outs = list(convert_folder(root, tmp_path / "out", suffix=ext, workers=1))
    assert len(outs) == 1 and outs[0].path is not None, outs


@pytest.mark.parametrize("syntax", ["implicit", "rle"])
def test_input_record_for_other_syntaxes(tmp_path: Path, syntax: str) -> None:
    """Implicit VR files go through the hashed pixel read, RLE files through pydicom and a
    separate hash: both give the record of hashing every file on its own."""
    import hashlib
    import json

    from medimg import io
    from medimg.io.dicom import read_series

    root = tmp_path / "in"
    rng = np.random.default_rng(5)
    img = Image.from_geometry(rng.integers(-1000, 2000, size=(4, 6, 5)).astype(np.float32), spacing=(0.9, 0.9, 2.0))
    write_series(img, root / "s", seed=5, transfer_syntax=syntax)
    (out,) = convert_folder(root, tmp_path / "out", suffix=".nii", workers=1)
    (series,) = scan(root).series
    digest = hashlib.sha256()
    for f in sorted(series.files, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0" + sha256_file(f).encode() + b"\n")
    assert json.loads(sidecar_path(out.path).read_text())["inputs"][0]["sha256_files"] == digest.hexdigest()
    np.testing.assert_array_equal(io.read(out.path).array, read_series(series).array)


def test_no_input_hashes_same_output_and_no_hash_work(tmp_path: Path, monkeypatch) -> None:
    """``hash_inputs=False`` (``--no-input-hashes``): the same NIfTI bytes, the output still hashed
    in its sidecar, the inputs recorded by count and series without any hash computed."""
    import json

    import medimg.core.provenance as provenance
    import medimg.io.dicom.volume as volume
    from medimg.cli.main import main

    root = tmp_path / "in"
    _series(root, 0)
    ref = list(convert_folder(root, tmp_path / "hashed", suffix=".nii", workers=1))

    def refuse(*a, **k):
        raise AssertionError("an input was hashed")

    monkeypatch.setattr(volume, "read_raw_frames_hashed", refuse)  # the fused read-and-hash
    monkeypatch.setattr(provenance, "sha256_file", refuse)  # a hash by a second read
    got = list(convert_folder(root, tmp_path / "plain", suffix=".nii", workers=1, hash_inputs=False))
    assert got[0].path.read_bytes() == ref[0].path.read_bytes()
    side = json.loads(sidecar_path(got[0].path).read_text())
    row = side["inputs"][0]
    assert row["sha256_files"] is None and row["n_files"] == 6 and row["series_uid"]
    assert side["parameters"]["hash_inputs"] is False
    assert side["file"]["sha256"] == sha256_file(got[0].path)
    assert main(["convert", str(root), str(tmp_path / "cli"), "--ext", ".nii", "--workers", "1", "--no-input-hashes"]) == 0
    cli_side = json.loads(next((tmp_path / "cli").glob("*.json")).read_text())
    assert cli_side["inputs"][0]["sha256_files"] is None
