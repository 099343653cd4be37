"""Append-only logs whose records are chained by hashes and, with a key, signed: the
de-identification audit trail (:mod:`medimg.deid.audit`) and the run log of a study
(:mod:`medimg.pipeline.runlog`).

* Each record holds ``prev``, the SHA-256 of the previous line's bytes (64 zeros for the first):
  changing, removing, inserting or reordering a record breaks the chain after it.
* With a key (any object with ``digest(purpose, text) -> bytes`` and ``key_id``, e.g. the
  de-identification :class:`~medimg.deid.keys.Key`), each record holds ``mac``, an HMAC-SHA256
  of the record (``prev`` included): without the key nobody can write a record that checks, so
  the chain cannot be recomputed after an edit. Without a key the chain and the head show
  accidental damage and edits by whoever does not recompute the hashes.
* The **head** (``<trail stem>.head.json`` beside the trail, rewritten atomically after the
  first and the last record of each run, and at least every 64 records or second in between)
  holds the number of records, the hash of the last one and the key id, also under an HMAC
  (when keyed):
  removing or changing the *last* records, or the whole trail, no longer goes unnoticed.

:func:`check_chain` checks all three (the HMACs only when given the key). Records name files by
keyed reference and content hash, list actions and counts, and never hold a value read from a
DICOM file.

A crash while a line was being written can leave a last line without its newline; the next
run closes that line and records ``"partial_previous": true``, so the chain stays checkable.
A run that dies leaves the head a few records behind (at most 64, or a second's worth): records
beyond the head are accepted when their HMACs check, so removing *those* is not detected by the
head (:func:`medimg.deid.verify` still reports outputs that no record names).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from medimg.core.files import atomic_path
from medimg.errors import FileFormatError, ParameterError

__all__ = ["ChainedLog", "SigningKey", "read_records", "check_chain", "ChainCheck", "GENESIS", "head_path",
           "read_head"]


class SigningKey(Protocol):
    """What signs a log: HMAC digests for a purpose, and an id that names the key."""

    def digest(self, purpose: str, value: str) -> bytes: ...  # pragma: no cover

    @property
    def key_id(self) -> str: ...  # pragma: no cover

GENESIS = "0" * 64
#: The head is rewritten at least every this many records (and every second).
HEAD_EVERY = 64


def _hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _record_mac(key: SigningKey, record: dict[str, Any]) -> str:
    return key.digest("audit-record", _canonical({k: v for k, v in record.items() if k != "mac"})).hex()


def _head_mac(key: SigningKey, head: dict[str, Any]) -> str:
    return key.digest("audit-head", _canonical({k: v for k, v in head.items() if k != "mac"})).hex()


def head_path(trail: str | Path) -> Path:
    """The head file of a trail: ``deid-audit.jsonl`` -> ``deid-audit.head.json``."""
    trail = Path(trail)
    return trail.with_name(f"{trail.stem}.head.json")


def read_head(trail: str | Path) -> dict[str, Any] | None:
    """The head record of a trail (``count``, ``last_hash``, ``key_id``, ``mac``), or ``None``."""
    path = head_path(trail)
    try:
        head = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise FileFormatError(path, f"the audit head is not readable JSON ({type(err).__name__})") from err
    if not isinstance(head, dict):
        raise FileFormatError(path, "the audit head is not a JSON object")
    return head


@dataclass(frozen=True)
class ChainCheck:
    """Result of :func:`check_chain`.

    ``ok``: no problem found; ``n_records``: complete records; ``problem``: the first problem;
    ``authenticated``: the HMACs of every record and of the head were checked with the key
    (``False`` when no key was given: then only the chain and the head's count and hash are
    checked, which whoever can write the folder could recompute).
    """

    ok: bool
    n_records: int
    problem: str = ""
    authenticated: bool = False


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
        return [line + b"\n" for line in lines]
    return [line + b"\n" for line in lines[:-1]] + [lines[-1]]  # last one unterminated


def check_chain(path: str | Path, *, key: SigningKey | None = None, name: str = "audit trail") -> ChainCheck:
    """Check a chained log: the hash chain, the head, and (with ``key``) every HMAC.

    Detected: a changed, removed, inserted or reordered record (anywhere, the last ones
    included), a removed trail or head, a head that does not match the trail; with the key
    also a chain recomputed after an edit (its HMACs no longer check) and a trail written with
    another key. See ``docs/deid.md`` for what is not detected.
    """
    path = Path(path)
    head_file = head_path(path)
    try:
        head = read_head(path)
    except FileFormatError as err:
        return ChainCheck(False, 0, err.problem)
    if not path.exists():
        if head is not None:
            return ChainCheck(False, 0, f"the {name} {path.name} is missing but its head says "
                              f"{head.get('count')} records: the trail was deleted")
        return ChainCheck(False, 0, f"no {name} {path.name}")
    lines = _lines(path)
    prev = GENESIS
    partial = False
    n = 0
    hashes: list[str] = []
    for i, line in enumerate(lines, 1):
        if not line.endswith(b"\n"):
            if i == len(lines):
                break  # a crash cut the last line; the next run closes it
            return ChainCheck(False, n, f"line {i} is cut short")
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            if i < len(lines):
                try:
                    nxt = json.loads(lines[i])
                except ValueError:
                    nxt = {}
                if isinstance(nxt, dict) and nxt.get("partial_previous"):
                    prev = _hash(line)
                    partial = True
                    continue
            return ChainCheck(False, n, f"line {i} is not a JSON record")
        if record.get("prev") != prev:
            return ChainCheck(False, n, f"record {i}: 'prev' does not match the hash of line {i - 1} "
                              "(the log was changed)")
        if record.get("partial_previous") and not partial:
            return ChainCheck(False, n, f"record {i} claims a cut-short line before it, but there is none")
        if key is not None:
            mac = record.get("mac")
            if not isinstance(mac, str):
                return ChainCheck(False, n, f"record {i} has no MAC (not written by this medimg, or edited)")
            if not hmac.compare_digest(mac, _record_mac(key, record)):
                return ChainCheck(False, n, f"record {i}: its MAC does not match (the record was changed, or the "
                                  "trail was written with another key)")
        partial = False
        prev = _hash(line)
        hashes.append(prev)
        n += 1
    if head is None:
        if n:
            return ChainCheck(False, n, f"the {name} head {head_file.name} is missing (deleted?): the end of the "
                              "trail cannot be checked")
        return ChainCheck(True, 0, "", key is not None)
    count = head.get("count")
    if not isinstance(count, int) or count < 0:
        return ChainCheck(False, n, f"the {name} head {head_file.name} has no valid record count")
    if key is not None:
        if head.get("key_id") != key.key_id:
            return ChainCheck(False, n, f"the {name} was written with another key (key id {head.get('key_id')})")
        mac = head.get("mac")
        if not isinstance(mac, str) or not hmac.compare_digest(mac, _head_mac(key, head)):
            return ChainCheck(False, n, f"the {name} head {head_file.name}: its MAC does not match (it was changed)")
    if count > n:
        return ChainCheck(False, n, f"the trail has {n} records but its head says {count}: the last "
                          f"{count - n} record(s) were removed")
    if count and hashes[count - 1] != head.get("last_hash"):
        return ChainCheck(False, n, f"record {count} does not match the hash in the head (the last records were "
                          "changed)")
    return ChainCheck(True, n, "", key is not None)


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """The JSON records of a chained log, in order (a cut-short line is skipped)."""
    for line in _lines(Path(path)):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def _lock(fh: Any, path: Path, name: str) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        fh.close()
        raise ParameterError(f"{path.parent}: another run is writing to this folder (its {name} is locked); "
                             "wait for it to end") from err


class ChainedLog:
    """Appends chained (and, with a key, signed) records to ``path`` (created when missing) and
    keeps its head.

    Opening takes an exclusive lock on the log (a second run into the same folder is refused),
    checks the existing log (:func:`check_chain`) and refuses to extend a broken one.

    Parameters
    ----------
    path
        The log (e.g. ``OUT/deid-audit.jsonl``); the head is :func:`head_path` of it.
    key
        Signs records and head with HMACs (:class:`SigningKey`); ``None``: chained, unsigned.
    name
        What the log is called in messages (``"audit trail"``, ``"run log"``).
    """

    def __init__(self, path: str | Path, *, key: SigningKey | None, name: str = "audit trail") -> None:
        self.path = Path(path)
        self.key = key
        self.name = name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._prev = GENESIS
        self._partial = False
        self._seq = 0
        self._n = 0
        self._head_n = -1
        self._head_time = 0.0
        if not self.path.exists() and head_path(self.path).exists():
            raise FileFormatError(self.path, f"the {name} is missing although its head exists (deleted?); "
                                  "keep the folder as evidence and write to a new output folder")
        self._fh = open(self.path, "ab")  # noqa: SIM115 - kept open (and locked) for the run
        _lock(self._fh, self.path, name)
        check = check_chain(self.path, key=key, name=name)
        if not check.ok:
            self._fh.close()
            raise FileFormatError(self.path, f"{name} is broken: {check.problem}; "
                                  "keep it as evidence and write to a new output folder")
        lines = _lines(self.path)
        if lines:
            last = lines[-1]
            if not last.endswith(b"\n"):  # a crash cut the last record: close it
                self._fh.write(b"\n")
                self._fh.flush()
                last += b"\n"
                self._partial = True
            self._prev = _hash(last)
            self._seq = check.n_records
            self._n = check.n_records
        if not head_path(self.path).exists():  # a new trail: its head (0 records) exists from the start
            self._write_head()

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one record (``seq``, ``time``, ``event``, ``prev``, ``fields`` and ``mac``);
        return it. The head follows after ``run`` and ``end`` records, and at least every
        :data:`HEAD_EVERY` records or second."""
        self._seq += 1
        record: dict[str, Any] = {"seq": self._seq, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                  "event": event, "prev": self._prev}
        if self._partial:
            record["partial_previous"] = True
            self._partial = False
        record.update(fields)
        if self.key is not None:
            record["mac"] = _record_mac(self.key, record)
        line = (_canonical(record) + "\n").encode()
        self._fh.write(line)
        self._fh.flush()
        self._prev = _hash(line)
        self._n += 1
        if (event in ("run", "end") or self._n - self._head_n >= HEAD_EVERY
                or time.monotonic() - self._head_time > 1.0):
            self._write_head()
        return record

    def _write_head(self) -> None:
        self._head_n, self._head_time = self._n, time.monotonic()
        head: dict[str, Any] = {"trail": self.path.name, "count": self._n, "last_hash": self._prev}
        if self.key is not None:
            head["key_id"] = self.key.key_id
            head["mac"] = _head_mac(self.key, head)
        with atomic_path(head_path(self.path)) as tmp:
            tmp.write_text(_canonical(head) + "\n")

    @property
    def n_records(self) -> int:
        """Complete records in the trail."""
        return self._n

    @property
    def last_hash(self) -> str:
        """SHA-256 of the last record's line (the head's ``last_hash``)."""
        return self._prev

    def sync(self) -> None:
        """Flush the trail to disk."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Flush, sync, write the head if behind, unlock and close."""
        if not self._fh.closed:
            with contextlib.suppress(OSError):
                self.sync()
            if self._head_n != self._n and self._n:
                self._write_head()
            self._fh.close()

    def __enter__(self) -> ChainedLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
