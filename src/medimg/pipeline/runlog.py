"""The run log of a study: an append-only JSON Lines file whose records are chained by hashes
(the same chain as the de-identification audit trail: each record holds the SHA-256 of the line
before it), so a changed, removed or reordered record is found by :func:`check_run_log`.

Records: ``run`` (study, version, cases, scheduler), one ``case`` per finished case (status,
per-step cache key, status and time, output hashes, or the error), and ``end`` (the counts).
Each run appends; the log of a resumed study holds every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medimg.deid.audit import AuditTrail, ChainCheck, check_chain, read_records

__all__ = ["RunLog", "check_run_log", "read_run_log"]


class RunLog:
    """Appends chained records to a run log (created when missing; a broken one is refused)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._trail = AuditTrail(self.path)

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one record and flush it; return it."""
        return self._trail.append(event, **fields)

    def close(self) -> None:
        """Flush, sync and close."""
        self._trail.close()


def check_run_log(path: str | Path) -> ChainCheck:
    """Check the chain of the run log at ``path``."""
    return check_chain(path)


def read_run_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of the run log at ``path``, in order."""
    return list(read_records(path))
