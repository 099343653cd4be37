"""The de-identification audit trail: a chained log (:mod:`medimg.core.chain`) whose records
and head are signed with the de-identification key (HMAC-SHA256), so that nobody without the key
can rewrite it after an edit.

Records name files by keyed reference and content hash, list actions and counts, and never hold
a value read from a DICOM file. ``docs/deid.md`` states what the trail proves and what it cannot.
"""

from __future__ import annotations

from pathlib import Path

from medimg.core.chain import (
    GENESIS,
    ChainCheck,
    ChainedLog,
    check_chain,
    head_path,
    read_head,
    read_records,
)
from medimg.deid.keys import Key

__all__ = ["AuditTrail", "read_records", "check_chain", "ChainCheck", "GENESIS", "head_path", "read_head"]


class AuditTrail(ChainedLog):
    """The audit trail of a de-identification output folder, signed with ``key``."""

    def __init__(self, path: str | Path, *, key: Key) -> None:
        super().__init__(path, key=key, name="audit trail")
