"""Mechanical IBSI compliance: long-format rows keyed by IBSI codes, matched against a reference table.

A reference table is a CSV with the IBSI columns ``ibsi_code``, ``aggregation_code``,
``reference_value`` and ``tolerance`` (as the IBSI publishes them; rows without a reference
value are not standardised and are skipped). The IBSI matching rule: a value matches when,
rounded to 3 significant digits, it lies within the tolerance of the reference.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from medimg.features._base import AGGREGATION_CODES, FAMILIES

__all__ = ["LongRow", "long_rows", "ibsi_match", "ComplianceReport", "compare_with_reference"]


@dataclass(frozen=True)
class LongRow:
    """One feature value with the two IBSI codes that identify it."""

    feature: str
    ibsi_code: str
    aggregation_code: str
    value: float


def long_rows(values: Mapping[str, float]) -> list[LongRow]:
    """Rows ``(feature, ibsi_code, aggregation_code, value)`` of an :func:`extract` result.

    Keys of filter response maps (``"<filter>.<family>..."``) keep their full name; their IBSI
    codes are those of the feature computed on the response map.
    """
    spec_by_family = {}
    rows = []
    for key, value in values.items():
        parts = key.split(".")
        # find the family part: the first part that is a registered family
        fam_pos = next((i for i, p in enumerate(parts) if p in FAMILIES), None)
        code = agg_code = ""
        if fam_pos is not None:
            fam = parts[fam_pos]
            if fam not in spec_by_family:
                spec_by_family[fam] = {s.name: s for s in FAMILIES.get(fam).func.feature_specs}
            rest = parts[fam_pos + 1:]
            name = rest[-1]
            spec = spec_by_family[fam].get(name)
            code = spec.ibsi_code if spec else ""
            if len(rest) == 2:
                agg_code = AGGREGATION_CODES.get(rest[0], "")
        rows.append(LongRow(key, code, agg_code, float(value)))
    return rows


def ibsi_match(value: float, reference: float, tolerance: float) -> bool:
    """The IBSI rule: ``value`` rounded to 3 significant digits is within ``tolerance`` of ``reference``."""
    if value is None or not math.isfinite(value):
        return False
    rounded = float(f"{value:.3g}")
    slack = 1e-9 * max(1.0, abs(reference))
    return abs(rounded - reference) <= tolerance + slack or abs(value - reference) <= tolerance + slack


@dataclass
class ComplianceReport:
    """Result of :func:`compare_with_reference`."""

    matched: int = 0
    total: int = 0
    mismatches: list[tuple[str, str, str, float, float, float | None]] = field(default_factory=list)

    @property
    def all_matched(self) -> bool:
        return self.matched == self.total


def compare_with_reference(rows: Iterable[LongRow], reference_csv: str | Path,
                           *, families: Iterable[str] | None = None) -> ComplianceReport:
    """Count the reference values (with an IBSI code) that ``rows`` match.

    Parameters
    ----------
    rows
        Long rows (:func:`long_rows`).
    reference_csv
        IBSI reference table.
    families
        Only reference rows whose ``family`` column starts with one of these (e.g.
        ``"Morphology"``); all rows with an IBSI code when None.

    Returns
    -------
    ComplianceReport
        Matched and total counts, and each mismatch as (family, IBSI name, aggregation code,
        reference, tolerance, our value or None when missing).
    """
    ours = {(r.ibsi_code, r.aggregation_code): r.value for r in rows if r.ibsi_code}
    report = ComplianceReport()
    wanted = tuple(families) if families is not None else None
    with open(reference_csv, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if not row.get("reference_value") or not row.get("ibsi_code"):
                continue
            if wanted is not None and not row["family"].startswith(wanted):
                continue
            report.total += 1
            ref, tol = float(row["reference_value"]), float(row["tolerance"] or 0.0)
            got = ours.get((row["ibsi_code"], row["aggregation_code"]))
            if got is not None and ibsi_match(got, ref, tol):
                report.matched += 1
            else:
                report.mismatches.append((row["family"], row["ibsi_feature_name"], row["aggregation_code"],
                                          ref, tol, got))
    return report
