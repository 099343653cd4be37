"""Feature tables and the family decorator: one declaration per family, read by everything else.

A *family* is a registered function ``func(roi, **params) -> dict[str, float]`` that takes a
:class:`~medimg.features.roi.Roi` (the region after IBSI image processing) and returns its
features. Families whose IBSI definition has aggregation methods (texture matrices) return keys
``"<aggregation>.<name>"`` (``"3d_avg.joint_maximum"``); the others return ``"<name>"``.
:func:`~medimg.features.extract` prefixes each key with the family name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from medimg.core.registry import registry

__all__ = [
    "FeatureSpec",
    "Aggregation",
    "AGGREGATION_CODES",
    "feature_family",
    "family_entry",
    "FAMILIES",
]

#: The registry of feature families (``medimg list features``).
FAMILIES = registry("features")


class Aggregation(StrEnum):
    """IBSI aggregation methods of texture features (value = our key, lower-case IBSI tag).

    Matrix families with directions (GLCM, GLRLM) have the six ``*_avg`` / ``*_comb`` methods;
    zone and neighbourhood families (GLSZM, GLDZM, NGTDM, NGLDM) have ``2d``, ``2_5d``, ``3d``.
    """

    D2_AVG = "2d_avg"  #: 2-D, features per slice and direction, averaged (BTW3)
    D2_COMB = "2d_comb"  #: 2-D slice-merged: directions merged per slice, averaged over slices (SUJT)
    D25_AVG = "2_5d_avg"  #: 2.5-D direction-merged: slices merged per direction, averaged (JJUI)
    D25_COMB = "2_5d_comb"  #: 2.5-D merged: one matrix from every slice and direction (ZW7Z)
    D3_AVG = "3d_avg"  #: 3-D averaged: features per 3-D direction, averaged (ITBB)
    D3_COMB = "3d_comb"  #: 3-D merged: one matrix from every 3-D direction (IAZD)
    D2 = "2d"  #: 2-D: features per slice, averaged (8QNN)
    D25 = "2_5d"  #: 2.5-D: one matrix merged over slices (62GR)
    D3 = "3d"  #: 3-D: one matrix from the volume (KOBO)


#: IBSI identifier of each aggregation method.
AGGREGATION_CODES: dict[str, str] = {
    "2d_avg": "BTW3",
    "2d_comb": "SUJT",
    "2_5d_avg": "JJUI",
    "2_5d_comb": "ZW7Z",
    "3d_avg": "ITBB",
    "3d_comb": "IAZD",
    "2d": "8QNN",
    "2_5d": "62GR",
    "3d": "KOBO",
}

DIRECTIONAL = ("2d_avg", "2d_comb", "2_5d_avg", "2_5d_comb", "3d_avg", "3d_comb")
ZONAL = ("2d", "2_5d", "3d")


@dataclass(frozen=True)
class FeatureSpec:
    """One row of the feature table.

    Attributes
    ----------
    name
        Our key, snake_case, unique within its family (``"mean"``).
    ibsi_code
        The IBSI identifier of the feature (``"Q4LE"``), or ``""`` where the IBSI has none.
    family
        The registered family that computes it (``"firstorder"``).
    ibsi_name
        The IBSI's name of the feature (``"Mean"``).
    ibsi_family_code
        The IBSI identifier of the feature's IBSI family (``"UHIW"`` for intensity-based
        statistics), which may differ within one medimg family.
    unit
        Unit of the value: ``"image"`` (image units, e.g. HU), ``"image^2"``, ``"mm^3"``,
        ``"bits"`` or ``""`` (dimensionless).
    """

    name: str
    ibsi_code: str
    family: str
    ibsi_name: str = ""
    ibsi_family_code: str = ""
    unit: str = ""

    @property
    def key(self) -> str:
        """The name :func:`extract` uses: ``"<family>.<name>"``."""
        return f"{self.family}.{self.name}"


def feature_family(
    name: str,
    specs: Iterable[FeatureSpec],
    *,
    aggregations: tuple[str, ...] = (),
) -> Callable[[Callable[..., dict[str, float]]], Callable[..., dict[str, float]]]:
    """Decorator: register a feature family ``name`` with its table of :class:`FeatureSpec`.

    The decorated function has the signature ``func(roi, **params) -> dict[str, float]``;
    ``aggregations`` lists the IBSI aggregation methods it supports (empty for families without
    any), and then the function takes a keyword ``aggregations`` and returns
    ``"<aggregation>.<name>"`` keys.
    """
    specs = tuple(specs)
    names = [s.name for s in specs]
    if len(set(names)) != len(names) or any(s.family != name for s in specs):
        raise ValueError(f"feature family {name!r}: duplicate names or a foreign family in specs")
    unknown = set(aggregations) - set(AGGREGATION_CODES)
    if unknown:
        raise ValueError(f"feature family {name!r}: unknown aggregations {sorted(unknown)}")

    def deco(func: Callable[..., dict[str, float]]) -> Callable[..., dict[str, float]]:
        func.feature_specs = specs  # type: ignore[attr-defined]
        func.aggregations = tuple(aggregations)  # type: ignore[attr-defined]
        return FAMILIES.register(name)(func)

    return deco


def family_entry(name: str) -> Any:
    """The registry entry of family ``name`` (:class:`UnknownNameError` with suggestions)."""
    return FAMILIES.get(name)
