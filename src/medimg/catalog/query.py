"""Querying the catalog: filters on patient, modality, dates, body part and description; table, CSV or JSON."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from medimg.catalog.db import Catalog
from medimg.errors import ParameterError, UnknownNameError

__all__ = ["query", "QueryResult", "format_rows", "parse_date", "LEVELS", "FORMATS"]

LEVELS = ("study", "series", "instance")
FORMATS = ("table", "csv", "json")


def parse_date(value: str | dt.date | None, *, name: str = "date") -> dt.date | None:
    """``YYYYMMDD`` or ``YYYY-MM-DD`` (or a date) to a date; ``None`` passes through."""
    if value is None or isinstance(value, dt.date):
        return value
    text = str(value).strip().replace("-", "")
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) == 8 and text.isdigit() else _bad(value, name)
    except ValueError:
        return _bad(value, name)


def _bad(value: Any, name: str) -> dt.date:
    raise ParameterError(f"{name} {value!r} is not a date; use YYYYMMDD or YYYY-MM-DD")


def query(
    catalog: Catalog,
    *,
    patient: str | None = None,
    modality: str | None = None,
    date_from: str | dt.date | None = None,
    date_to: str | dt.date | None = None,
    body_part: str | None = None,
    description: str | None = None,
    level: Literal["study", "series", "instance"] = "series",
    include_missing: bool = False,
    limit: int | None = None,
) -> QueryResult:
    """Find studies, series or instances in the catalog.

    Parameters
    ----------
    catalog
        An open catalog.
    patient
        Patient ID (exact) or part of the patient's name (case-insensitive). Taken literally:
        ``%``, ``_`` and ``*`` are ordinary characters, not wildcards.
    modality
        One modality or several separated by commas (``"CT,MR"``).
    date_from, date_to
        Study date range, inclusive (``YYYYMMDD`` or ``YYYY-MM-DD``).
    body_part
        Body Part Examined (case-insensitive).
    description
        A regular expression searched (case-insensitively) in the series and study descriptions.
    level
        ``"study"``, ``"series"`` (default) or ``"instance"``: what one row stands for.
    include_missing
        Also list objects whose files have all vanished (default: only those with a readable file).
    limit
        At most this many rows.

    Returns
    -------
    QueryResult
        A list with one dict per row, JSON-ready (dates as ``YYYY-MM-DD``); its ``columns``
        name the columns even when nothing matched.
    """
    from sqlalchemy import distinct, func, literal, or_, select

    from medimg.catalog.schema import File, Instance, Patient, Series, Study

    if level not in LEVELS:
        raise UnknownNameError("level", str(level), LEVELS)
    lo = parse_date(date_from, name="date_from")
    hi = parse_date(date_to, name="date_to")
    if lo and hi and lo > hi:
        raise ParameterError(f"date_from {lo} is after date_to {hi}")
    if description is not None:
        try:
            re.compile(description)
        except re.error as err:
            raise ParameterError(f"description {description!r} is not a valid regular expression: {err}") from err

    sqlite = catalog.engine.dialect.name == "sqlite"
    conds = []
    if patient:
        # the text is matched literally: % and _ are escaped, not LIKE wildcards
        conds.append(or_(Patient.patient_id == patient, Patient.name.icontains(patient, autoescape=True)))
    if modality:
        mods = [m.strip().upper() for m in modality.split(",") if m.strip()]
        conds.append(func.upper(Series.modality).in_(mods))
    if lo:
        conds.append(Study.study_date >= lo)
    if hi:
        conds.append(Study.study_date <= hi)
    if body_part:
        conds.append(func.upper(Series.body_part) == body_part.strip().upper())
    if description:
        pattern = f"(?i){description}" if sqlite else description
        flags = None if sqlite else "i"
        conds.append(or_(
            func.coalesce(Series.description, literal("")).regexp_match(pattern, flags=flags),
            func.coalesce(Study.description, literal("")).regexp_match(pattern, flags=flags),
        ))
    present = File.status == "ok"
    base = (
        select()
        .select_from(Patient)
        .join(Study, Study.patient_pk == Patient.id)
        .join(Series, Series.study_pk == Study.id)
        .join(Instance, Instance.series_pk == Series.id)
        .join(File, File.instance_pk == Instance.id)
    )
    if level == "series":
        n_files = func.count(distinct(Instance.id)).filter(present)
        stmt = base.add_columns(
            Patient.patient_id, Patient.name.label("patient_name"), Study.study_uid, Study.study_date,
            Study.description.label("study_description"), Series.series_uid, Series.series_number,
            Series.modality, Series.body_part, Series.description.label("series_description"),
            n_files.label("n_instances"), func.min(File.path).label("first_file"),
        ).group_by(Patient.patient_id, Patient.name, Study.study_uid, Study.study_date, Study.description,
                   Series.series_uid, Series.series_number, Series.modality, Series.body_part,
                   Series.description)
        order = (Patient.patient_id, Study.study_date, Study.study_uid, Series.series_number, Series.series_uid)
        having = n_files > 0
    elif level == "study":
        n_files = func.count(distinct(Instance.id)).filter(present)
        stmt = base.add_columns(
            Patient.patient_id, Patient.name.label("patient_name"), Study.study_uid, Study.study_date,
            Study.description.label("study_description"), Study.accession_number,
            func.count(distinct(Series.id)).label("n_series"), n_files.label("n_instances"),
        ).group_by(Patient.patient_id, Patient.name, Study.study_uid, Study.study_date, Study.description,
                   Study.accession_number)
        order = (Patient.patient_id, Study.study_date, Study.study_uid)
        having = n_files > 0
    else:
        n_files = func.count(File.id).filter(present)
        stmt = base.add_columns(
            Patient.patient_id, Study.study_uid, Series.series_uid, Series.modality, Instance.sop_uid,
            Instance.sop_class_uid, Instance.instance_number, func.min(File.path).label("path"),
            n_files.label("n_files"),
        ).group_by(Patient.patient_id, Study.study_uid, Series.series_uid, Series.modality,
                   Instance.sop_uid, Instance.sop_class_uid, Instance.instance_number)
        order = (Patient.patient_id, Study.study_uid, Series.series_uid, Instance.instance_number, Instance.sop_uid)
        having = n_files > 0
    if conds:
        stmt = stmt.where(*conds)
    if not include_missing:
        stmt = stmt.having(having)
    stmt = stmt.order_by(*order)
    if limit is not None:
        stmt = stmt.limit(int(limit))
    with catalog.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
        if not rows:  # the columns still: an empty CSV keeps its header
            return QueryResult(columns=[*conn.execute(stmt.limit(0)).keys(),
                                        *(("modalities",) if level == "study" else ())])
    if level == "study":
        _add_modalities(catalog, rows)
    for row in rows:
        for key, value in row.items():
            if isinstance(value, dt.date):
                row[key] = value.isoformat()
    return QueryResult(rows, columns=list(rows[0]))


class QueryResult(list):
    """The rows of :func:`query` (a list of dicts), with ``columns``: their names in order, also
    when no row matched."""

    def __init__(self, rows: Iterable[dict[str, Any]] = (), *, columns: Sequence[str] = ()) -> None:
        super().__init__(rows)
        self.columns = list(columns)


def _add_modalities(catalog: Catalog, rows: list[dict[str, Any]]) -> None:
    from sqlalchemy import select

    from medimg.catalog.schema import Series, Study

    uids = [r["study_uid"] for r in rows]
    found: dict[str, set[str]] = {u: set() for u in uids}
    with catalog.engine.connect() as conn:
        for start in range(0, len(uids), 500):
            for uid, mod in conn.execute(select(Study.study_uid, Series.modality)
                                         .join(Series, Series.study_pk == Study.id)
                                         .where(Study.study_uid.in_(uids[start:start + 500]))):
                if mod:
                    found[uid].add(mod)
    for r in rows:
        r["modalities"] = ",".join(sorted(found[r["study_uid"]]))


def format_rows(rows: list[dict[str, Any]], fmt: Literal["csv", "json"], *,
                columns: Sequence[str] | None = None) -> str:
    """Rows as CSV (header + one line per row) or a JSON array.

    The CSV header lists ``columns`` (default: the rows' ``columns`` attribute, as
    :func:`query` returns, else the first row's keys), so a query without matches still prints
    its header line.
    """
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str) + "\n"
    if fmt == "csv":
        if columns is None:
            columns = getattr(rows, "columns", None) or (list(rows[0]) if rows else [])
        out = io.StringIO()
        if columns:
            writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        return out.getvalue()
    raise UnknownNameError("format", str(fmt), ("csv", "json"))
