"""Tables of results (feature rows, predictions, summaries) written as CSV or Parquet, atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medimg.core.files import atomic_path, full_suffix
from medimg.errors import ParameterError

__all__ = ["write_table", "read_csv", "TABLE_SUFFIXES"]

#: The table formats medimg writes, by extension.
TABLE_SUFFIXES = (".csv", ".parquet")


def read_csv(path: str | Path, **options: Any) -> Any:
    """A CSV file as a pandas ``DataFrame`` (``options`` go to ``pandas.read_csv``); a missing
    file or one pandas cannot parse is a :class:`~medimg.errors.FileFormatError` naming it."""
    from medimg.core.optional import require
    from medimg.errors import FileFormatError

    pd = require("pandas", extra="ml")
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "no such file")
    try:
        return pd.read_csv(path, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise FileFormatError(path, f"cannot read as CSV: {str(err).splitlines()[0]}") from None


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
    rows = list(rows)
    if suffix == ".csv":
        cells = _plain_cells(rows, order)
        if cells is not None:  # no pandas import for plain tables (a command's start-up cost)
            import csv

            with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(order)
                writer.writerows(cells)
            return path
    import pandas as pd

    frame = pd.DataFrame(rows, columns=order)
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return path


def _plain_cells(rows: Sequence[Mapping[str, Any]], order: Sequence[str]) -> list[list[str]] | None:
    """The CSV cells exactly as pandas writes them, for tables whose every column holds one
    plain kind of value (non-empty str, bool, int or 64-bit float; every row has the key; NaN only in
    float columns, written empty); ``None`` for anything else (pandas then writes the table)."""
    import math
    import numbers

    if not rows:
        return None
    kinds = []
    for name in order:
        kind = None
        for row in rows:
            if name not in row:
                return None
            v = row[name]
            if isinstance(v, bool) or type(v).__name__ == "bool_":
                k = "bool"
            elif isinstance(v, numbers.Integral):
                k = "int"
            elif isinstance(v, float):  # Python floats and float64 (float32 columns: pandas)
                k = "float"
            elif isinstance(v, str) and v:
                k = "str"
            else:
                return None
            if kind not in (None, k):
                return None
            kind = k
        kinds.append(kind)
    out = []
    for row in rows:
        cells = []
        for name, kind in zip(order, kinds, strict=True):
            v = row[name]
            if kind == "float":
                f = float(v)
                cells.append("" if math.isnan(f) else repr(f))
            elif kind == "bool":
                cells.append(str(bool(v)))
            elif kind == "int":
                cells.append(str(int(v)))
            else:
                cells.append(v)
        out.append(cells)
    return out
