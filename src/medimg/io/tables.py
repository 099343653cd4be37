"""Tables of results (feature rows, predictions, summaries) written as CSV or Parquet, atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medimg.core.files import atomic_path, full_suffix
from medimg.errors import ParameterError

__all__ = ["write_table", "TABLE_SUFFIXES"]

#: The table formats medimg writes, by extension.
TABLE_SUFFIXES = (".csv", ".parquet")


def write_table(rows: Sequence[Mapping[str, Any]], path: str | Path, *, columns: Sequence[str] | None = None,
                last: Sequence[str] = ()) -> Path:
    """Write ``rows`` (one mapping per row) as CSV or Parquet, chosen by ``path``'s extension.

    Parameters
    ----------
    rows
        The rows; a key missing from a row is an empty cell.
    path
        ``.csv`` or ``.parquet``. Written to a temporary name and renamed.
    columns
        The columns in order (default: the union of the rows' keys in first-seen order).
    last
        Columns moved to the end, in this order, where present (e.g. status and provenance).

    Returns
    -------
    Path
        ``path``.
    """
    import pandas as pd

    path = Path(path)
    suffix = full_suffix(path)
    if suffix not in TABLE_SUFFIXES:
        raise ParameterError(f"{path}: table format must be {' or '.join(TABLE_SUFFIXES)}, got {suffix or '(none)'!r}")
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            for key in row:
                seen.setdefault(key, None)
        columns = list(seen)
    tail = [c for c in last if c in columns]
    order = [c for c in columns if c not in tail] + tail
    frame = pd.DataFrame(list(rows), columns=order)
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return path
