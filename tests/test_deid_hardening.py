"""De-identification under broken, colliding and hostile input, and an audit trail that cannot be edited.

* inputs medimg cannot read whole (cut at any byte, corrupt deflate, no Study UID, an image
  without pixels) fail with their reason; nothing incomplete is counted as done;
* inputs sharing a SOP Instance UID never overwrite one another and every count is the files on disk;
* the audit trail detects edits and removals anywhere (the last records included), a removed
  trail or head, a recomputed chain (with the key), and outputs changed, removed or added.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medimg.cli.main import main
from medimg.core.files import UnsafePathError
from medimg.deid import (
    AUDIT_NAME,
    HEAD_NAME,
    Deidentifier,
    Key,
    check_chain,
    deidentify_file,
    read_records,
    verify,
)
from medimg.deid.audit import GENESIS
from medimg.deid.integrity import check_encoding
from medimg.deid.run import _stage
from medimg.errors import FileFormatError, TruncatedFileError
from medimg.pipeline.deid import deidentify

CORPUS = Path(__file__).parent / "data" / "dicom-corpus"
KEY = Key(b"medimg-test-key-0123456789abcdef")
MR_VARIANTS = sorted(CORPUS.glob("MR_small*.dcm"))  # one instance in eight encodings: one SOP Instance UID


def _read(data: bytes | Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data) if isinstance(data, bytes) else data)


def _pixels(ds: pydicom.Dataset) -> bytes | None:
    return bytes(ds.PixelData) if "PixelData" in ds else None


# ------------------------------------------------------------------------------ whole or not
def test_every_whole_corpus_file_passes_the_structure_walk() -> None:
    """No false alarm: every shipped file pydicom reads, except the three known to be cut short."""
    cut_short = {"MR_truncated.dcm", "rtplan_truncated.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm"}
    passed = 0
    for path in sorted(CORPUS.glob("*.dcm")):
        data = path.read_bytes()
        try:
            ds = _read(data)
        except Exception:  # noqa: BLE001 - not a Part 10 file pydicom reads: not for deid either
            continue
        implicit, little = ds.original_encoding
        args = {"transfer_syntax": str(ds.file_meta.get("TransferSyntaxUID", "")), "implicit": bool(implicit),
                "little_endian": little is not False}
        if path.name in cut_short:
            with pytest.raises(TruncatedFileError, match="cut short"):
                check_encoding(data, path, **args)
        else:
            check_encoding(data, path, **args)
            passed += 1
    assert passed >= 80


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm",
                                  "rtplan.dcm", "test-SR.dcm", "rtdose_rle.dcm", "UN_sequence.dcm", "image_dfl.dcm",
                                  "nested_priv_SQ.dcm"])
def test_a_file_cut_anywhere_fails_or_is_complete(name: str, tmp_path: Path) -> None:
    """Cut at many bytes: either a FileFormatError naming the file, or an output with the original's
    UIDs and pixel data byte for byte (the cut fell after everything the object needs)."""
    path = CORPUS / name
    data = path.read_bytes()
    full = _read(data)
    deidentifier = Deidentifier(KEY)
    rng = np.random.default_rng(len(data))
    cuts = sorted({*range(0, min(len(data), 600), 5), *range(max(0, len(data) - 80), len(data)),
                   *rng.integers(0, len(data), 60).tolist()})
    failed = 0
    for cut in cuts:
        target = tmp_path / f"cut{cut}.dcm"
        try:
            ds, _ = deidentify_file(target, deidentifier, data=data[:cut])
        except FileFormatError as err:
            assert str(target) in str(err)
            failed += 1
            continue
        for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            assert str(ds.get(keyword, "")).startswith("2.25."), (cut, keyword)
        assert _pixels(ds) == _pixels(full), cut
    assert failed >= len(cuts) - 10  # nearly every cut fails; the rest fell between elements, after all it needs


def test_deflated_data_set_cut_short_or_corrupt(tmp_path: Path) -> None:
    data = (CORPUS / "image_dfl.dcm").read_bytes()
    deidentifier = Deidentifier(KEY)
    with pytest.raises(FileFormatError, match="deflated data set is corrupt or cut short"):
        deidentify_file(tmp_path / "cut.dcm", deidentifier, data=data[: len(data) - 40])
    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF
    corrupt[len(data) // 2 + 1] ^= 0x5A
    with pytest.raises(FileFormatError):
        deidentify_file(tmp_path / "flip.dcm", deidentifier, data=bytes(corrupt))


def _saved(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_whole_but_incomplete_objects_fail(tmp_path: Path) -> None:
    deidentifier = Deidentifier(KEY)
    no_study = _read(CORPUS / "CT_small.dcm")
    del no_study.StudyInstanceUID
    with pytest.raises(FileFormatError, match="no StudyInstanceUID"):
        deidentify_file(tmp_path / "a.dcm", deidentifier, data=_saved(no_study))
    no_pixels = _read(CORPUS / "CT_small.dcm")
    del no_pixels.PixelData
    with pytest.raises(FileFormatError, match="image .*without pixel data"):
        deidentify_file(tmp_path / "b.dcm", deidentifier, data=_saved(no_pixels))


def test_run_counts_only_complete_outputs(tmp_path: Path, capsys) -> None:
    """The issue's case: cut copies of a CT file were reported as de-identified."""
    src = tmp_path / "in"
    src.mkdir()
    data = (CORPUS / "CT_small.dcm").read_bytes()
    for n in (300, 600, 1000, 2000, 5000, len(data) - 1):
        (src / f"ct_{n}.dcm").write_bytes(data[:n])
    shutil.copy(CORPUS / "MR_truncated.dcm", src)
    shutil.copy(CORPUS / "CT_small.dcm", src)
    assert main(["deid", str(src), str(tmp_path / "out"), "--key", str(_key_file(tmp_path)), "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert "8 input files: 1 de-identified" in captured.out and ", 7 failed" in captured.out
    assert captured.err.count("cut short") == 7
    outputs = list((tmp_path / "out").rglob("*.dcm"))
    assert len(outputs) == 1 and _pixels(_read(outputs[0])) == _pixels(_read(CORPUS / "CT_small.dcm"))
    failed = [r for r in read_records(tmp_path / "out" / AUDIT_NAME) if r.get("status") == "failed"]
    problems = {r.get("problem", "") for r in failed}
    assert all("cut short" in p for p in problems) and problems
    # each one is quarantined with its reason (never passed on), byte for byte
    quarantine = tmp_path / "out-quarantine"
    logged = [json.loads(line) for line in (quarantine / "quarantine.jsonl").read_text().splitlines()]
    assert len(logged) == 7 and all(r["failed"] and "cut short" in r["reason"] for r in logged)
    copies = {r["quarantine_copy"] for r in failed}
    assert copies == {r["copy"] for r in logged} and len(copies) == 7
    kept = {(quarantine / c).read_bytes() for c in copies}
    assert kept == {p.read_bytes() for p in src.iterdir() if p.name != "CT_small.dcm"}


def _key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key.txt"
    if not path.exists():
        path.write_bytes(KEY._secret)
    return path


def test_hostile_header_values_cannot_leave_out(tmp_path: Path) -> None:
    """UIDs such as '..' are replaced by keyed 2.25 UIDs; an output name that is not one is refused."""
    src = tmp_path / "in"
    src.mkdir()
    ds = _read(CORPUS / "CT_small.dcm")
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "..", "../..", "../../../evil"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    ds.save_as(src / "evil.dcm", enforce_file_format=True)
    report = deidentify(src, tmp_path / "a" / "out", key=KEY, workers=1)
    assert report.n_done == 1
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert all(f.startswith(("in/", "a/out/", "a/out-quarantine/")) for f in files), files
    written = next((tmp_path / "a" / "out").rglob("*.dcm")).relative_to(tmp_path / "a" / "out").parts
    assert all(part.startswith(("ANON", "2.25.")) for part in written)
    with pytest.raises(UnsafePathError, match="'..'"):  # the mechanism itself
        _stage(_read(CORPUS / "CT_small.dcm"), tmp_path / "a" / "out", "ANON1/../../x.dcm")


# ------------------------------------------------------------------------------ shared SOP Instance UIDs
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _outputs(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): _sha(p) for p in sorted(out.rglob("*.dcm"))}


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("variants") / "in"
    src.mkdir()
    for path in MR_VARIANTS:
        shutil.copy(path, src)
    shutil.copy(MR_VARIANTS[0], src / "same_bytes_again.dcm")
    return src


def test_shared_sop_uid_never_overwrites(variants: Path, tmp_path: Path) -> None:
    assert len(MR_VARIANTS) == 8 and len({str(_read(p).SOPInstanceUID) for p in MR_VARIANTS}) == 1
    out = tmp_path / "out"
    report = deidentify(variants, out, key=KEY, workers=1)
    files = _outputs(out)
    assert report.n_failed == report.n_quarantined == 0
    # every count is true of the disk: one new file per "de-identified"; the byte-identical copy
    # (and any variant whose de-identified bytes equal another's) adds none
    assert report.n_done == len(files) and report.n_done + report.n_duplicate == report.n_inputs == 9
    assert report.n_duplicate >= 1 and len(set(files.values())) == len(files)
    # all qualified (the first written took the plain name, then was renamed), none lost
    assert report.n_collisions + report.n_renamed == report.n_done and report.n_renamed == 1
    assert all(re.fullmatch(r"2\.25\.\d+-[0-9a-f]{16}\.dcm", Path(f).name) for f in files)
    # each input's de-identified object is on disk, with that input's pixel data
    records = [r for r in read_records(out / AUDIT_NAME) if r.get("event") == "file"]
    renamed = {r["from"]: r["to"] for r in read_records(out / AUDIT_NAME) if r.get("event") == "renamed"}
    by_input = {r["input_sha256"]: renamed.get(r["output"], r["output"]) for r in records}
    for path in [*MR_VARIANTS]:
        written = _read(out / by_input[_sha(path)])
        assert np.array_equal(written.pixel_array, _read(path).pixel_array), path.name
    assert verify(out, variants, key=KEY).ok


def test_shared_sop_uid_names_do_not_depend_on_order(variants: Path, tmp_path: Path) -> None:
    serial = tmp_path / "serial"
    deidentify(variants, serial, key=KEY, workers=1)
    parallel = tmp_path / "parallel"
    deidentify(variants, parallel, key=KEY, workers=2)
    # incremental: three variants first, then all of them
    partial_in = tmp_path / "partial"
    partial_in.mkdir()
    for path in MR_VARIANTS[5:]:
        shutil.copy(path, partial_in)
    staged = tmp_path / "staged"
    first = deidentify(partial_in, staged, key=KEY, workers=1)
    for path in MR_VARIANTS[:5]:
        shutil.copy(path, partial_in)
    shutil.copy(MR_VARIANTS[0], partial_in / "same_bytes_again.dcm")
    second = deidentify(partial_in, staged, key=KEY, workers=1)
    assert _outputs(serial) == _outputs(parallel) == _outputs(staged)
    assert first.n_done + second.n_done == len(_outputs(staged)) and second.n_skipped == 3
    again = deidentify(variants, serial, key=KEY, workers=1)
    assert (again.n_done, again.n_skipped) == (0, 9)
    assert verify(staged, partial_in, key=KEY).ok


# ------------------------------------------------------------------------------ the audit trail
@pytest.fixture(scope="module")
def run_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    src = tmp_path_factory.mktemp("audit") / "in"
    src.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "MR_truncated.dcm"):
        shutil.copy(CORPUS / name, src)
    out = src.parent / "out"
    deidentify(src, out, key=KEY, workers=1)
    return src, out


def _copy(out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    return copy


def _lines(out: Path) -> list[str]:
    return (out / AUDIT_NAME).read_text().splitlines(keepends=True)


def _write(out: Path, lines: list[str]) -> None:
    (out / AUDIT_NAME).write_text("".join(lines))


def _recompute(lines: list[str]) -> list[str]:
    """What someone without the key can do: fix every 'prev' and the head's count and hash."""
    out, prev = [], GENESIS
    for line in lines:
        record = json.loads(line)
        record["prev"] = prev
        text = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        prev = hashlib.sha256(text.encode()).hexdigest()
        out.append(text)
    return out


def _fix_head(out: Path, lines: list[str]) -> None:
    head = json.loads((out / HEAD_NAME).read_text())
    head["count"] = len(lines)
    head["last_hash"] = hashlib.sha256(lines[-1].encode()).hexdigest()
    (out / HEAD_NAME).write_text(json.dumps(head))


def test_intact_trail_verifies(run_out) -> None:
    src, out = run_out
    check = check_chain(out / AUDIT_NAME, key=KEY)
    assert check.ok and check.authenticated and check.n_records == len(_lines(out))
    report = verify(out, src, key=KEY)
    assert report.ok and report.audit_authenticated and not report.output_problems
    assert verify(out, src).ok and not verify(out, src).audit_authenticated


def test_edits_and_removals_anywhere_are_detected(run_out, tmp_path: Path) -> None:
    src, out = run_out
    n = len(_lines(out))
    cases = {
        "edit the last record": lambda ls: ls[:-1] + [ls[-1].replace('"n_failed":1', '"n_failed":0')],
        "edit a middle record": lambda ls: [*ls[:2], ls[2].replace('"status":"ok"', '"status":"failed"'), *ls[3:]],
        "remove the last record": lambda ls: ls[:-1],
        "remove the last three records": lambda ls: ls[:-3],
        "remove a middle record": lambda ls: ls[:2] + ls[3:],
        "swap two records": lambda ls: [ls[0], ls[2], ls[1], *ls[3:]],
        "empty the trail": lambda ls: [],
    }
    for what, change in cases.items():
        case = tmp_path / what.replace(" ", "_")
        shutil.copytree(out, case)
        lines = change(_lines(case))
        assert lines != _lines(case) and len(lines) <= n
        _write(case, lines)
        for key in (None, KEY):
            check = check_chain(case / AUDIT_NAME, key=key)
            assert not check.ok, (what, key)
            assert not verify(case, src, key=key).ok, (what, key)
        with pytest.raises(FileFormatError, match="broken"):  # and a run refuses to extend it
            deidentify(src, case, key=KEY, workers=1)


def test_removing_the_trail_or_its_head_is_detected(run_out, tmp_path: Path) -> None:
    src, out = run_out
    no_trail = _copy(out, tmp_path / "a")
    (no_trail / AUDIT_NAME).unlink()
    report = verify(no_trail, src)
    assert not report.ok and "deleted" in report.audit_problem
    with pytest.raises(FileFormatError, match="missing"):
        deidentify(src, no_trail, key=KEY, workers=1)
    neither = _copy(out, tmp_path / "b")
    (neither / AUDIT_NAME).unlink()
    (neither / HEAD_NAME).unlink()
    assert not verify(neither, src).ok and "no audit trail" in verify(neither, src).audit_problem
    with pytest.raises(Exception, match="no audit trail"):
        deidentify(src, neither, key=KEY, workers=1)
    no_head = _copy(out, tmp_path / "c")
    (no_head / HEAD_NAME).unlink()
    assert "head" in check_chain(no_head / AUDIT_NAME).problem and not verify(no_head, src).ok


def test_a_recomputed_chain_is_caught_by_the_key_only(run_out, tmp_path: Path) -> None:
    """Without the key, someone who rewrites the chain and the head goes unseen (documented);
    with the key the HMACs give them away."""
    src, out = run_out
    case = _copy(out, tmp_path)
    lines = _lines(case)
    edited = _recompute([*lines[:2], *lines[3:-1], lines[-1].replace('"n_failed":1', '"n_failed":0')])
    _write(case, edited)
    _fix_head(case, edited)
    assert check_chain(case / AUDIT_NAME).ok  # the limit without the key
    check = check_chain(case / AUDIT_NAME, key=KEY)
    assert not check.ok and "MAC" in check.problem
    assert not verify(case, src, key=KEY).ok
    other = check_chain(out / AUDIT_NAME, key=Key(b"another-secret-key-of-32-bytes!!"))
    assert not other.ok and "MAC" in other.problem


def test_outputs_changed_removed_or_added_are_reported(run_out, tmp_path: Path, capsys) -> None:
    src, out = run_out
    case = _copy(out, tmp_path)
    outputs = sorted(case.rglob("*.dcm"))
    data = bytearray(outputs[0].read_bytes())
    data[-1] ^= 1
    outputs[0].write_bytes(bytes(data))
    outputs[1].unlink()
    shutil.copy(outputs[2], outputs[2].with_name("extra.dcm"))
    report = verify(case, src, key=KEY)
    assert report.audit_ok and not report.ok
    kinds = sorted(p.split(": ", 1)[1].split(" ")[0] for p in report.output_problems)
    assert kinds == ["changed", "not", "recorded"], report.output_problems
    assert main(["deid", "verify", str(case), "--against", str(src), "--key", str(_key_file(tmp_path))]) == 1
    out_text = capsys.readouterr().out
    assert out_text.count("OUTPUT ") == 3 and "signatures verified" in out_text


def test_an_output_that_lost_its_pixels_is_not_counted(tmp_path: Path) -> None:
    """The check runs on what would be written: a de-identifier that damaged the image is caught."""

    class Damaging(Deidentifier):
        def __init__(self, damage) -> None:  # noqa: ANN001
            super().__init__(KEY)
            self.damage = damage

        def deidentify_dataset(self, ds):  # noqa: ANN001, ANN201
            result = super().deidentify_dataset(ds)
            self.damage(ds)
            return result

    data = (CORPUS / "CT_small.dcm").read_bytes()

    def flip(ds) -> None:  # noqa: ANN001
        pixels = bytearray(ds.PixelData)
        pixels[0] ^= 0xFF
        ds.PixelData = bytes(pixels)

    def drop(ds) -> None:  # noqa: ANN001
        del ds.Rows

    with pytest.raises(FileFormatError, match=r"pixel data \(7FE0,0010\) was not carried over intact"):
        deidentify_file(tmp_path / "a.dcm", Damaging(flip), data=data)
    with pytest.raises(FileFormatError, match=r"pixel description \(0028,0010\)"):
        deidentify_file(tmp_path / "b.dcm", Damaging(drop), data=data)


def test_a_second_run_into_the_same_folder_is_refused(run_out, tmp_path: Path) -> None:
    from medimg.deid import AuditTrail

    src, out = run_out
    case = _copy(out, tmp_path)
    with AuditTrail(case / AUDIT_NAME, key=KEY):  # a run in progress holds the trail
        with pytest.raises(Exception, match="another run is writing"):
            deidentify(src, case, key=KEY, workers=1)


_KILLABLE = """
import sys, time
from medimg.deid import Key
from medimg.pipeline.deid import deidentify
def slow(done, total):
    time.sleep(0.15)
deidentify(sys.argv[1], sys.argv[2], key=Key(sys.argv[3].encode()), workers=1, progress=slow)
"""


def test_a_killed_run_resumes_cleanly(tmp_path: Path) -> None:
    """kill -9 in the middle of a run: the next run removes its temporary outputs, finishes, and the
    folder verifies (every file on disk recorded, every record's file there)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from medimg.datasets import make_cohort

    src = tmp_path / "in"
    make_cohort(src, n_patients=2, seed=4, shape_zyx=(10, 32, 32), spacing_mm=(1.0, 1.0, 2.0), followup_fraction=0.0)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(deidentify.__code__.co_filename).parents[2]),
                                                         os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(src), str(out), KEY._secret.decode()], env=env)
    deadline = time.monotonic() + 60
    while not (out / AUDIT_NAME).exists() or (out / AUDIT_NAME).read_text().count('"event":"file"') < 4:
        assert time.monotonic() < deadline and proc.poll() is None, "the run did not start or ended early"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stage = next(out.rglob("*.dcm")).parent / ".left.abc.stage.dcm"  # as a kill during a write leaves it
    stage.write_bytes(b"partial")
    assert '"event":"end"' not in (out / AUDIT_NAME).read_text()
    report = deidentify(src, out, key=KEY, workers=1)
    assert report.n_skipped >= 4 and report.n_failed == 0
    assert not list(out.rglob("*.stage.dcm"))
    n_files = len(list(src.rglob("*.dcm")))
    assert len(list(out.rglob("*.dcm"))) == report.n_done + report.n_skipped == n_files
    assert check_chain(out / AUDIT_NAME, key=KEY).ok and verify(out, src, key=KEY).ok
