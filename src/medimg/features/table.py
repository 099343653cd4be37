"""Feature tables: the long form of wide feature rows, with the IBSI codes of each value.

A wide row holds ``case``, ``label``, the feature keys of :func:`~medimg.features.extract` and,
from a batch (:func:`medimg.pipeline.extract_features`), ``status``, ``error`` and the
provenance columns :data:`PROVENANCE`. The long form has one row per value with the columns
``case``, ``label``, ``image`` (``original`` or the filter response map the value was computed
on, e.g. ``log-sigma-1.5mm-2d``), ``feature``, ``ibsi_code``, ``aggregation_code`` (empty where the family has
none), ``value`` and ``pyradiomics_name`` — the codes of the IBSI reference tables; in PyRadiomics
mode the feature is PyRadiomics's name and the IBSI code that of the same definition, where one exists. Tables are written with
:func:`medimg.io.tables.write_table`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from medimg.features.compliance import long_rows

__all__ = ["to_long", "image_of", "PROVENANCE", "TAIL_COLUMNS", "LONG_COLUMNS"]

#: Provenance columns of a wide row.
PROVENANCE = ("prov.medimg_version", "prov.config", "prov.image", "prov.mask", "prov.image_sha256",
              "prov.mask_sha256")
#: Columns written last in a wide table, in this order.
TAIL_COLUMNS = ("status", "error", *PROVENANCE)
#: Columns of the long table.
LONG_COLUMNS = ("case", "label", "image", "feature", "ibsi_code", "aggregation_code", "value",
                "pyradiomics_name")


def image_of(feature: str) -> str:
    """What a feature key was computed on: ``original``, or the filter label that prefixes it
    (``"log-sigma-1.5mm-2d.stat.mean"`` -> ``"log-sigma-1.5mm-2d"``)."""
    from medimg.features._base import FAMILIES

    parts = feature.split(".")
    fam_pos = next((i for i, p in enumerate(parts) if p in FAMILIES), 0)
    return ".".join(parts[:fam_pos]) or "original"


def to_long(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Long form of wide rows: one row per feature value with its IBSI codes."""
    out = []
    skip = {"case", "label", *TAIL_COLUMNS}
    from medimg.features.pyradiomics_compat import pyradiomics_name_info

    for row in rows:
        values = {k: v for k, v in row.items() if k not in skip}
        pyrad = {}
        for key in list(values):
            info = pyradiomics_name_info(key) if not key.startswith("diagnostics.") else ("", "", "")
            if info is not None:
                pyrad[key] = info
        for key, (_, _equiv, code) in pyrad.items():
            # PyRadiomics mode: the feature is the PyRadiomics name; the IBSI code of the same definition.
            image = "original" if key.startswith("diagnostics.") else key.split("_", 1)[0]
            out.append({"case": row.get("case", ""), "label": row.get("label", ""), "image": image, "feature": key,
                        "ibsi_code": code, "aggregation_code": "", "value": values.pop(key),
                        "pyradiomics_name": "" if key.startswith("diagnostics.") else key})
        for lr in long_rows(values):
            out.append({"case": row.get("case", ""), "label": row.get("label", ""), "image": image_of(lr.feature),
                        "feature": lr.feature,
                        "ibsi_code": lr.ibsi_code, "aggregation_code": lr.aggregation_code, "value": lr.value,
                        "pyradiomics_name": ""})
    return out
