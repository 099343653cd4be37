"""Quantitative features of an image inside a mask, named and coded as the IBSI defines them.

Feature *families* (``firstorder`` now; shape and texture families later) are registered in
``registry("features")`` with :func:`feature_family`, which also attaches the family's table of
:class:`FeatureSpec` rows (our name, IBSI code, ...). :func:`feature_specs` reads that table from
the registry, so there is no second list of feature names.

Conventions:

* ``image`` and ``mask`` must share one voxel grid (:class:`~medimg.errors.GeometryMismatchError`
  otherwise); the region of interest is ``mask == label``.
* Intensities are in image units (HU for CT); volumes in mm^3.
* A family function returns an ordered ``dict`` of its feature names to floats; :func:`extract`
  prefixes each name with its family: ``"firstorder.mean"``.

References
----------
Zwanenburg A. et al. The Image Biomarker Standardization Initiative. Radiology 2020;295:328-338.
IBSI reference manual, https://ibsi.readthedocs.io (feature codes such as ``Q4LE``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.errors import ParameterError, did_you_mean

__all__ = ["FeatureSpec", "feature_family", "feature_specs", "extract", "firstorder"]

_features = registry("features")


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
    name: str, specs: Iterable[FeatureSpec]
) -> Callable[[Callable[..., dict[str, float]]], Callable[..., dict[str, float]]]:
    """Decorator: register a feature family ``name`` with its table of :class:`FeatureSpec`.

    The decorated function has the signature ``func(image, mask, *, label=1, **params) ->
    dict[str, float]`` and returns exactly the names of ``specs``, in their order.
    """
    specs = tuple(specs)
    names = [s.name for s in specs]
    if len(set(names)) != len(names) or any(s.family != name for s in specs):
        raise ValueError(f"feature family {name!r}: duplicate names or a foreign family in specs")

    def deco(func: Callable[..., dict[str, float]]) -> Callable[..., dict[str, float]]:
        func.feature_specs = specs  # type: ignore[attr-defined]
        return _features.register(name)(func)

    return deco


def feature_specs(families: Iterable[str] | None = None) -> list[FeatureSpec]:
    """The feature table: every :class:`FeatureSpec` of ``families`` (all registered if None).

    Raises
    ------
    UnknownNameError
        A family is not registered.
    """
    names = _features.names() if families is None else list(families)
    rows: list[FeatureSpec] = []
    for fam in names:
        rows.extend(_features.get(fam).func.feature_specs)
    return rows


def extract(
    image: Image,
    mask: Image,
    *,
    families: Iterable[str] = ("firstorder",),
    label: int = 1,
    **params: Any,
) -> dict[str, float]:
    """Compute the features of ``families`` for the region ``mask == label`` of ``image``.

    Parameters
    ----------
    image
        Scalar intensity image (image units, e.g. HU).
    mask
        Label map on the same grid as ``image``.
    families
        Registered family names, computed in this order (see ``registry("features").names()``).
    label
        The mask value that marks the region of interest.
    **params
        Family parameters, e.g. ``bin_width=25.0`` (image units). A parameter goes to every
        requested family that declares it; one that no requested family declares is an error.

    Returns
    -------
    dict[str, float]
        ``"<family>.<feature>"`` -> value, in family order then each family's table order.

    Raises
    ------
    UnknownNameError
        A family is not registered.
    ParameterError
        A parameter is unknown to every requested family or invalid; the region is empty.
    GeometryMismatchError
        ``image`` and ``mask`` are not on the same grid.

    Examples
    --------
    >>> import numpy as np
    >>> from medimg import Image
    >>> img = Image(np.arange(8, dtype=float).reshape(2, 2, 2))
    >>> roi = Image(np.ones((2, 2, 2), dtype=np.uint8))
    >>> extract(img, roi)["firstorder.mean"]
    3.5
    """
    if isinstance(families, str):
        families = (families,)
    entries = [_features.get(f) for f in families]
    if not entries:
        raise ParameterError("extract: `families` is empty; name at least one feature family")
    known = {p for e in entries for p in e.params.model_fields} - {"label"}
    for key in params:
        if key not in known:
            msg = (
                f"no requested feature family ({', '.join(e.name for e in entries)}) has a "
                f"parameter {key!r}{did_you_mean(key, known)}; parameters: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
            raise ParameterError(msg)
    out: dict[str, float] = {}
    for entry in entries:
        own: Mapping[str, Any] = {k: v for k, v in params.items() if k in entry.params.model_fields}
        values = entry(image, mask, label=label, **own)
        out.update({f"{entry.name}.{k}": v for k, v in values.items()})
    return out


# Families register themselves on import; they need the names defined above.
from medimg.features import firstorder  # noqa: E402
