"""`medimg convert` of a folder as a whole process: headers read by the workers (frames packed
for the trip back), the file listing, the header walk's tables, the integer rescale's range
check, and the CLI's start-up (no pydantic for plain options) — each checked against the
plain computation it replaces."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medimg import Image
from medimg.core.provenance import sha256_file
from medimg.io.dicom.writer import write_series
from series_factory import write_test_series  # tests/ is on the path

ROOT = Path(__file__).resolve().parents[1]


def _series(root: Path, k: int, shape=(5, 8, 6)) -> Path:
    return write_test_series(root, k, shape)


def test_packed_frames_come_back_equal(tmp_path: Path) -> None:
    """The frames a worker packs and this process unpacks equal the frames read here, field by field."""
    from dataclasses import fields

    from medimg.io.convert import _scan_chunk, _scan_packed, _unpack_frames
    from medimg.io.dicom.header import Header
    from medimg.io.dicom.scan import Frame, list_files

    for k in range(2):
        _series(tmp_path, k)
    files = list_files(tmp_path)
    (tmp_path / "junk").write_bytes(b"not dicom at all" * 10)
    files.append(tmp_path / "junk")
    ref, ref_failures = _scan_chunk(files[1:])
    start, headers, frames, failures = _scan_packed((0, 1, len(files), files[1:]))
    got = _unpack_frames(files[start:] if start == 0 else files[1:], headers, frames)
    assert failures == ref_failures and len(failures) == 1 and "junk" in failures[0][0]
    assert len(got) == len(ref) > 0
    for a, b in zip(got, ref, strict=True):
        for f in fields(Frame):
            if f.name == "header":
                continue
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if isinstance(vb, np.ndarray):
                assert isinstance(va, np.ndarray) and va.dtype == vb.dtype
                np.testing.assert_array_equal(va, vb)
            else:
                assert va == vb, f.name
        for f in fields(Header):
            assert getattr(a.header, f.name) == getattr(b.header, f.name), f.name
        assert a.header.path is files[1:][files[1:].index(b.header.path)]  # this process's own Path


def test_frames_of_one_file_share_their_header(tmp_path: Path, monkeypatch) -> None:
    """The frames of one (multi-frame) file come back sharing one header, sent once."""
    import dataclasses

    import medimg.io.convert as convert

    files = sorted(_series(tmp_path, 0, shape=(2, 4, 3)).iterdir())
    frames, failures = convert._scan_chunk(files)
    first = frames[0]
    stack = [dataclasses.replace(first, index=k, position=first.position + k) for k in range(3)] + frames[1:]
    monkeypatch.setattr(convert, "_scan_chunk", lambda chunk: (stack, failures))
    start, headers, packed, _ = convert._scan_packed((0, 0, len(files), files))
    got = convert._unpack_frames(files, headers, packed)
    assert len(headers) == len(files) and len(got) == len(stack)
    assert got[0].header is got[1].header is got[2].header and got[3].header is not got[0].header
    assert [f.index for f in got[:3]] == [0, 1, 2]
    np.testing.assert_array_equal(got[2].position, first.position + 2)


def _reference_listing(path: Path) -> list[Path]:
    """The listing as it was: every kept name under ``path`` (hidden folders skipped), sorted as Paths."""
    skip_names = {"DICOMDIR", ".DS_Store", "Thumbs.db"}
    skip = {".txt", ".csv", ".json", ".xml", ".nii", ".gz", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".jpeg",
            ".md", ".html", ".py", ".zip", ".raw", ".zraw"}
    out = []
    for root, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out += [Path(root) / n for n in names
                if n not in skip_names and not n.startswith(".") and Path(n).suffix.lower() not in skip]
    return sorted(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_listing_order_is_path_order(tmp_path: Path, seed: int) -> None:
    from medimg.io.dicom.scan import list_files

    rng = random.Random(seed)
    names = ["a", "a b", "a-b", "a.b", "A", "b", "Z", "z.txt", ".hid", "x.DCM", "x.nii", "x.", "DICOMDIR",
             "ab", "a_b", "1", "10", "2", "y.Nii", "q.tar.gz", "k.json.bak", "j..", "i.Png", "é", "ß.dcm"]

    def fill(root: Path, depth: int) -> None:
        for name in rng.sample(names, 10):
            p = root / name
            if depth < 3 and rng.random() < 0.4:
                p.mkdir(exist_ok=True)
                fill(p, depth + 1)
            elif not p.exists():
                p.write_text("x")

    fill(tmp_path, 0)
    for arg in (tmp_path, str(tmp_path) + "/", str(tmp_path) + "//"):
        assert list_files(arg) == _reference_listing(Path(arg))
    assert list_files(tmp_path, recursive=False) == sorted(
        p for p in _reference_listing(tmp_path) if p.parent == tmp_path)


def test_walk_tables_name_the_same_tags() -> None:
    """The swapped-tag tables of the header walk hold exactly the tags of the readable tables."""
    from medimg.io.dicom import header as h

    def unswap(tag: int) -> int:
        return ((tag & 0xFFFF) << 16) | (tag >> 16)

    assert {unswap(t): v for t, v in h._WANTED_S.items()} == h.WANTED
    assert {unswap(t): v for t, v in h._MARKERS_S.items()} == h._MARKERS
    assert {unswap(t): v for t, v in h._PIXEL_S.items()} == h._PIXEL_TAGS
    assert {unswap(t) for t in h._PER_FILE_S} == set(h._PER_FILE)
    assert h._VR_HEADER[b"OB"] == 12 and h._VR_HEADER[b"DS"] == 8 and h._VR_HEADER[b"ZZ"] == 8
    assert b"ds" not in h._VR_HEADER and b"\x00\x00" not in h._VR_HEADER and len(h._VR_HEADER) == 26 * 26


@pytest.mark.parametrize("workers", [2, 3])
def test_headers_read_by_workers_same_outputs(tmp_path: Path, monkeypatch, workers: int) -> None:
    """2 or 3 workers reading the headers (forced for a small folder): byte-identical outputs to one process."""
    import medimg.io.convert as convert

    root = tmp_path / "in"
    for k in range(3):
        _series(root, k, shape=(3 + k, 6, 5))
    monkeypatch.setattr(convert, "PARALLEL_SCAN_MIN_FILES", 1)
    monkeypatch.setattr(convert, "PARALLEL_SCAN_MIN_WORKERS", 2)
    ref = {o.path.name: sha256_file(o.path) for o in convert.convert_folder(root, tmp_path / "a", suffix=".nii", workers=1)}
    got = {o.path.name: sha256_file(o.path) for o in convert.convert_folder(root, tmp_path / "b", suffix=".nii",
                                                                            workers=workers)}
    assert got == ref and len(ref) == 3
    assert not convert._FORKED_FILES and not convert._FORKED_JOBS  # nothing left behind


@pytest.mark.parametrize(("dtype", "values", "intercept"), [
    ("<u2", [0, 40000], -1024), ("<u2", [5, 33791], -1024), ("<u2", [5, 33792], -1024),
    ("<u2", [0, 65535], -32768), ("<u2", [0, 10], -40000), ("<u1", [3, 255], -200),
])
def test_unsigned_rescale_type_from_the_largest_value(dtype: str, values: list[int], intercept: int) -> None:
    """Unsigned stored values: the result type chosen from the largest value alone is the one the
    exact range gives (int16 where every rescaled value fits, else int32)."""
    from types import SimpleNamespace

    from medimg.io.dicom.volume import _apply_rescale

    stored = np.array(values * 3, dtype=dtype).reshape(3, 1, 2)
    exact = stored.astype(np.int64) + intercept
    frames = [SimpleNamespace(slope=1.0, intercept=float(intercept))] * 3
    out, _ = _apply_rescale(stored.copy(), frames)  # type: ignore[arg-type]
    np.testing.assert_array_equal(out.astype(np.int64), exact)
    fits16 = exact.min() >= -32768 and exact.max() <= 32767
    assert out.dtype == (np.int16 if fits16 else np.int32)


def _cli(*args: str, code: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    prog = code + "\nfrom medimg.cli.main import main\nimport sys\nrc = main(sys.argv[1:])\n" \
        "print('PYDANTIC' if 'pydantic' in sys.modules else 'NO-PYDANTIC', file=sys.stderr)\nsys.exit(rc)"
    return subprocess.run([sys.executable, "-c", prog, *args], env=env, capture_output=True, text=True, check=False)


def test_convert_folder_cli_needs_no_pydantic(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _series(root, 0)
    r = _cli("convert", str(root), str(tmp_path / "out"), "--ext", ".nii", "--workers", "1", "--no-input-hashes")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "NO-PYDANTIC"
    assert "1 series written" in r.stdout and len(list((tmp_path / "out").glob("*.nii"))) == 1


@pytest.mark.parametrize(("value", "message"), [("0", "greater than or equal to 1"), ("2.5", "valid integer"),
                                                ("x", "valid integer")])
def test_bad_workers_value_one_line(tmp_path: Path, value: str, message: str) -> None:
    """Values outside the plain path still get typer's own refusal: one line, status 2."""
    r = _cli("convert", str(tmp_path), str(tmp_path / "out"), "--workers", value)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line != "PYDANTIC" and line != "NO-PYDANTIC"]
    assert len(lines) == 1 and "--workers" in lines[0] and message in lines[0], r.stderr


def test_hostile_folder_one_line(tmp_path: Path) -> None:
    """A folder of files that are not DICOM (headers read by 2 workers): one clear line, status 2."""
    root = tmp_path / "in"
    root.mkdir()
    for i in range(300):
        (root / f"f{i:03d}.dcm").write_bytes(b"DICM" * (i % 7) + os.urandom(64 + i))
    r = _cli("convert", str(root), str(tmp_path / "out"), "--workers", "2",
             code="import medimg.io.convert as c\nc.PARALLEL_SCAN_MIN_FILES = 1\nc.PARALLEL_SCAN_MIN_WORKERS = 2")
    lines = [line for line in r.stderr.splitlines() if line not in ("PYDANTIC", "NO-PYDANTIC")]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "no DICOM image series found" in lines[0] and "300 unreadable" in lines[0]


def test_package_versions_as_importlib_reads_them() -> None:
    import importlib.metadata

    from medimg.core.provenance import _TRACKED_PACKAGES, _installed_version, package_versions

    versions = package_versions()
    assert versions and "numpy" in versions
    for name in _TRACKED_PACKAGES:
        try:
            expected = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            assert name not in versions
            continue
        assert _installed_version(name) == expected == versions[name]


# ----------------------------------------------------------------------------- header templates
def _full(path: Path):
    """The header read by the element walk, no template."""
    from medimg.io.dicom import header as h

    kept = h._TEMPLATE
    h._TEMPLATE = None
    try:
        return h.read_header(path)
    finally:
        h._TEMPLATE = kept


def _same_header(a, b) -> None:
    from dataclasses import fields

    from medimg.io.dicom.header import Header

    for f in fields(Header):
        assert getattr(a, f.name) == getattr(b, f.name), (a.path, f.name, getattr(a, f.name), getattr(b, f.name))


@pytest.mark.parametrize("syntax", ["explicit", "implicit", "rle"])
def test_template_headers_equal_walked_headers(tmp_path: Path, monkeypatch, syntax: str) -> None:
    """Files read through the template of the file before give the header the element walk gives,
    positions of every string length included (the varying elements change length)."""
    from medimg.io.dicom import header as h

    rng = np.random.default_rng(7)
    for k, z0 in enumerate((-9.5, 100.25)):
        img = Image.from_geometry(rng.integers(-1000, 2000, size=(12, 5, 4)).astype(np.float32),
                                  spacing=(0.7, 0.7, 1.37), origin=(-90.0, -9.25, z0))
        write_series(img, tmp_path / f"s{k}", seed=k, transfer_syntax=syntax)
    hits = []
    match = h._Template.match

    def counting(self, *args):
        out = match(self, *args)
        hits.append(out is not None)
        return out

    monkeypatch.setattr(h, "_TEMPLATE", None)
    monkeypatch.setattr(h._Template, "match", counting)
    files = sorted(tmp_path.rglob("*.dcm")) or sorted(p for p in tmp_path.rglob("*") if p.is_file())
    for path in files:
        _same_header(h.read_header(path), _full(path))
    assert sum(hits) >= len(files) - 6  # all but the first files of each series (learning)
    positions = {tuple(h.read_header(p).values["ImagePositionPatient"]) for p in files}
    assert len(positions) == len(files)


def test_template_changes_to_a_header_stay_in_it(tmp_path: Path, monkeypatch) -> None:
    from medimg.io.dicom import header as h

    monkeypatch.setattr(h, "_TEMPLATE", None)
    files = sorted(_series(tmp_path, 0, shape=(6, 4, 4)).iterdir())
    first = [h.read_header(p) for p in files[:3]]
    for header in first:
        header.values["ImageOrientationPatient"].append(99.0)
        header.values["Rows"] = 1
    for path in files[3:]:
        got = h.read_header(path)
        assert len(got.values["ImageOrientationPatient"]) == 6 and got.values["Rows"] == 4
        _same_header(got, _full(path))


def test_template_hostile_files_as_walked(tmp_path: Path, monkeypatch) -> None:
    """Files that share a template's bytes but are cut short, or whose varying element lies about
    its length: the same header or the same error as the element walk gives."""
    from dicom_mutate import (  # tests/ is on the path (as for test_reader_hardening)
        set_length,
        set_value,
    )
    from medimg.errors import MedimgError
    from medimg.io.dicom import header as h

    files = sorted(_series(tmp_path, 0, shape=(5, 6, 4)).iterdir())
    data = files[-1].read_bytes()
    cases = {
        "cut_pixels": data[:-10],
        "cut_header": data[:700],
        "long_position": set_value(data, 0x00200032, b"-90.5\\-9.25\\1234567.125"),
        "position_length_huge": set_length(data, 0x00200032, 0xFFF0),
        "position_length_odd": set_length(data, 0x00200032, 13),
        "position_length_zero": set_length(data, 0x00200032, 0),
        "instance_not_number": set_value(data, 0x00200013, b"abc"),
        "uid_empty": set_value(data, 0x00080018, b""),
    }
    for name, blob in cases.items():
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(blob)
        monkeypatch.setattr(h, "_TEMPLATE", None)
        for earlier in files[:-1]:  # learn the series' template first
            h.read_header(earlier)
        assert h._TEMPLATE is not None and h._TEMPLATE.variable
        try:
            got = h.read_header(path)
        except MedimgError as err:
            got = err
        try:
            ref = _full(path)
        except MedimgError as err:
            ref = err
        if isinstance(ref, BaseException):
            assert type(got) is type(ref) and str(got) == str(ref), name
        else:
            _same_header(got, ref)
