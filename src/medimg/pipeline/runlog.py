"""The run log of a study: an append-only JSON Lines file whose records are chained by hashes
(:mod:`medimg.core.chain`, the same chain as the de-identification audit trail, unsigned here:
each record holds the SHA-256 of the line before it, and a head file beside the log holds the
record count and the last hash), so a changed, removed or reordered record is found by
:func:`check_run_log`. While a run writes, the log is locked: a second run into the same output
folder is refused.

Records: ``run`` (study, version, cases, scheduler), one ``case`` per finished case (status,
per-step cache key, status and time, output hashes, or the error), and ``end`` (the counts).
Each run appends; the log of a resumed study holds every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medimg.core.chain import ChainCheck, ChainedLog, check_chain, read_records

__all__ = ["RunLog", "check_run_log", "read_run_log"]


class RunLog(ChainedLog):
    """Appends chained records to a run log (created when missing; a broken one is refused)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, key=None, name="run log")


def check_run_log(path: str | Path) -> ChainCheck:
    """Check the chain and head of the run log at ``path``."""
    return check_chain(path, name="run log")


def read_run_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of the run log at ``path``, in order."""
    return list(read_records(path))
