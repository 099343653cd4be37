"""The audit trail: an append-only JSON Lines file whose records are chained by hashes.

Each record holds ``prev``, the SHA-256 of the previous line's bytes (64 zeros for the first),
so changing, removing or reordering a record breaks the chain at that point; :func:`check_chain`
finds the first break. Records name files by keyed reference and content hash, list actions
and counts, and never hold a value read from a DICOM file.

A crash while a line was being written can leave a last line without its newline; the next
run closes that line and records ``"partial_previous": true``, so the chain stays checkable.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimg.errors import FileFormatError

__all__ = ["AuditTrail", "read_records", "check_chain", "ChainCheck", "GENESIS"]

GENESIS = "0" * 64


def _hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    """Result of :func:`check_chain`: ``ok``, the number of records and the first problem."""

    ok: bool
    n_records: int
    problem: str = ""


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
        return [line + b"\n" for line in lines]
    return [line + b"\n" for line in lines[:-1]] + [lines[-1]]  # last one unterminated


def check_chain(path: str | Path) -> ChainCheck:
    """Check that every record's ``prev`` is the hash of the line before it."""
    path = Path(path)
    lines = _lines(path)
    prev = GENESIS
    partial = False
    n = 0
    for i, line in enumerate(lines, 1):
        if not line.endswith(b"\n"):
            return ChainCheck(True, n, "") if i == len(lines) else ChainCheck(False, n, f"line {i} is cut short")
        try:
            record = json.loads(line)
        except ValueError:
            if i < len(lines):
                try:
                    nxt = json.loads(lines[i])
                except ValueError:
                    nxt = {}
                if nxt.get("partial_previous"):
                    prev = _hash(line)
                    partial = True
                    continue
            return ChainCheck(False, n, f"line {i} is not a JSON record")
        if record.get("prev") != prev:
            return ChainCheck(False, n, f"record {i}: 'prev' does not match the hash of line {i - 1} "
                              "(the trail was changed)")
        if record.get("partial_previous") and not partial:
            return ChainCheck(False, n, f"record {i} claims a cut-short line before it, but there is none")
        partial = False
        prev = _hash(line)
        n += 1
    return ChainCheck(True, n)


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """The JSON records of an audit trail, in order (a cut-short line is skipped)."""
    for line in _lines(Path(path)):
        try:
            yield json.loads(line)
        except ValueError:
            continue


class AuditTrail:
    """Appends chained records to ``path`` (created when missing).

    Opening checks the existing chain and refuses to extend a broken one.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._prev = GENESIS
        self._partial = False
        self._seq = 0
        if self.path.exists():
            check = check_chain(self.path)
            if not check.ok:
                raise FileFormatError(self.path, f"audit trail is broken: {check.problem}; "
                                      "keep it as evidence and write to a new output folder")
            lines = _lines(self.path)
            if lines:
                last = lines[-1]
                if not last.endswith(b"\n"):  # a crash cut the last record: close it
                    with open(self.path, "ab") as fh:
                        fh.write(b"\n")
                    last += b"\n"
                    self._partial = True
                self._prev = _hash(last)
                self._seq = check.n_records
        self._fh = open(self.path, "ab")  # noqa: SIM115 - kept open for the run

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one record (``seq``, ``time``, ``event``, ``prev`` and ``fields``); return it."""
        self._seq += 1
        record: dict[str, Any] = {"seq": self._seq, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                  "event": event, "prev": self._prev}
        if self._partial:
            record["partial_previous"] = True
            self._partial = False
        record.update(fields)
        line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()
        self._fh.write(line)
        self._fh.flush()
        self._prev = _hash(line)
        return record

    def sync(self) -> None:
        """Flush the file to disk."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Flush, sync and close."""
        if not self._fh.closed:
            self.sync()
            self._fh.close()

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
