"""Fuzzing the DICOM header parser and reader (issue 13, item 17): a bounded run in every test
session, the fuzzer's past findings as regression cases, and proof that the harness catches
each kind of failure. Longer runs: ``make fuzz`` (see ``tests/fuzzing.py``, ``docs/development.md``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fuzzing import Worker, _failed, fuzz

REGRESSIONS = Path(__file__).parent / "data" / "fuzz-regressions"
#: Seconds of fuzzing in the test suite, and its seed (override with FUZZ_TEST_SECONDS / FUZZ_TEST_SEED).
SECONDS = float(os.environ.get("FUZZ_TEST_SECONDS", 20))
SEED = int(os.environ.get("FUZZ_TEST_SEED", 13))


@pytest.fixture(scope="module")
def worker():
    w = Worker(memory_mb=1024)
    yield w
    w.stop()


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.dcm")), ids=lambda p: p.stem)
def test_past_findings_stay_fixed(path: Path, worker: Worker) -> None:
    results = worker.run(path, timeout=20)
    assert not _failed(results), results


@pytest.mark.parametrize(("what", "expected"), [("raise", "BUG"), ("abort", "CRASH"), ("hang", "HANG"),
                                                ("memory", "BUG")])
def test_the_harness_catches_every_kind_of_failure(what: str, expected: str, tmp_path: Path) -> None:
    w = Worker(memory_mb=512)
    try:
        path = tmp_path / f"selftest-{what}.dcm"
        path.write_bytes(b"")
        results = w.run(path, timeout=5)
    finally:
        w.stop()
    problems = _failed(results)
    assert problems and expected in problems[0], results
    if what == "memory":
        assert "MemoryError" in problems[0]


def test_a_bounded_fuzz_run_finds_nothing(tmp_path: Path) -> None:
    report = fuzz(SECONDS, SEED, tmp_path / "findings")
    assert report["cases"] >= 50, report
    assert not report["failures"], report["failures"][:3]
    assert report["outcomes"].get("ok", 0) > 0  # mutants that still read: the run is not all errors
