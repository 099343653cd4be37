"""Parsing DICOM value representations shared by the catalog, de-identification and PACS code."""

from __future__ import annotations

import datetime as dt
from typing import Any

__all__ = ["parse_da", "dataset_to_row"]


def parse_da(value: Any) -> dt.date | None:
    """A DA value (``YYYYMMDD``; ACR-NEMA ``YYYY.MM.DD`` and ISO ``YYYY-MM-DD`` tolerated) as a date.

    Returns ``None`` for empty or malformed values instead of raising.
    """
    text = str(value or "").strip().replace(".", "").replace("-", "")[:8]
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def dataset_to_row(ds: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Top-level, non-sequence attributes of a pydicom Dataset as ``{keyword: str | None}``.

    Multi-valued attributes are joined with a backslash, as DICOM writes them; ``skip`` names
    keywords to leave out (query-control attributes such as ``QueryRetrieveLevel``).
    """
    out: dict[str, Any] = {}
    for elem in ds:
        if elem.VR == "SQ" or not elem.keyword or elem.keyword in skip:
            continue
        value = elem.value
        if value is None or value == "":
            out[elem.keyword] = None
        elif type(value).__name__ == "MultiValue" or isinstance(value, list):
            out[elem.keyword] = "\\".join(str(v) for v in value)
        else:
            out[elem.keyword] = str(value)
    return out
