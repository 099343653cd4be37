"""Lists of cases: which image, which mask, which label, read from a CSV.

A case list is a CSV with the columns ``image`` and ``mask`` (paths, relative to the CSV's
folder or absolute) and optionally ``case`` (a name; default the image's file name) and
``label`` (the mask value of the region; default 1). Other columns (outcome labels, subgroups
such as sex or scanner, a patient id) are kept in :attr:`Case.columns`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from medimg.errors import FileFormatError

__all__ = ["Case", "read_cases"]


@dataclass(frozen=True)
class Case:
    """One (image, mask, label) to process; ``case`` names it in tables and manifests."""

    case: str
    image: Path
    mask: Path
    label: int = 1
    columns: Mapping[str, str] = field(default_factory=dict, compare=False)


def read_cases(path: str | Path) -> list[Case]:
    """Read a case list (module notes); :class:`FileFormatError` names the line of a bad row."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "no such case list")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or ())
        missing = {"image", "mask"} - fields
        if missing:
            raise FileFormatError(path, f"missing column(s) {', '.join(sorted(missing))}; "
                                        "need image, mask (and optionally case, label)")
        out = []
        for k, row in enumerate(reader, start=2):
            try:
                label = int(row.get("label") or 1)
            except ValueError as err:
                raise FileFormatError(path, f"line {k}: label must be an integer, got {row.get('label')!r}") from err
            if not row.get("image") or not row.get("mask"):
                raise FileFormatError(path, f"line {k}: image and mask must not be empty")
            image = Path(row["image"])
            mask = Path(row["mask"])
            extra = {key: value for key, value in row.items() if key not in ("case", "image", "mask", "label")
                     and key is not None}
            out.append(Case(
                case=row.get("case") or image.name,
                image=image if image.is_absolute() else path.parent / image,
                mask=mask if mask.is_absolute() else path.parent / mask,
                label=label,
                columns=extra,
            ))
    if not out:
        raise FileFormatError(path, "the case list has no rows")
    return out
