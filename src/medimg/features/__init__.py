"""Radiomics: quantitative features of an image inside a mask, named and coded as the IBSI defines them.

The complete IBSI chapter 1 feature set — morphology (``morph``), local intensity (``li``),
intensity statistics (``stat``), intensity histogram (``ih``), intensity-volume histogram
(``ivh``), and the texture matrices ``glcm``, ``glrlm``, ``glszm``, ``gldzm``, ``ngtdm``,
``ngldm`` with every IBSI aggregation — after the IBSI image processing (interpolation,
re-segmentation, discretisation), plus IBSI chapter 2 filters (:mod:`medimg.features.filters`)
and 2-D shape descriptors (:mod:`medimg.features.shape2d`).

Families are registered in ``registry("features")`` with :func:`feature_family`, which attaches
the family's table of :class:`FeatureSpec` rows (our name, IBSI code, ...); :func:`feature_specs`
reads that table, so there is no second list of feature names. ``firstorder`` is a compact
family (statistics, entropy, volume) kept for quick use.

Conventions:

* ``image`` and ``mask`` must share one voxel grid (:class:`~medimg.errors.GeometryMismatchError`
  otherwise); the region of interest is ``mask == label``.
* Intensities are in image units (HU for CT); lengths in mm, areas mm^2, volumes mm^3.
* :func:`extract` returns ``"<family>.<feature>"`` keys, ``"<family>.<aggregation>.<feature>"``
  for texture families (``"glcm.3d_avg.joint_maximum"``), and ``"<filter>.<family>..."`` for
  features of filter response maps.

References
----------
Zwanenburg A. et al. The Image Biomarker Standardization Initiative. Radiology 2020;295:328-338.
IBSI reference manual, https://ibsi.readthedocs.io (feature codes such as ``Q4LE``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from medimg.core import progress
from medimg.core.image import Image
from medimg.errors import ParameterError, did_you_mean
from medimg.features._base import (
    AGGREGATION_CODES,
    FAMILIES,
    Aggregation,
    FeatureSpec,
    feature_family,
)
from medimg.features.config import (
    IBSI_FAMILIES,
    PRESETS,
    RadiomicsConfig,
    config_from_mapping,
    load_config,
    preset,
)
from medimg.features.roi import Roi, prepare_roi

__all__ = [
    "FeatureSpec",
    "Aggregation",
    "AGGREGATION_CODES",
    "feature_family",
    "feature_specs",
    "feature_columns",
    "extract",
    "extract_roi",
    "prepare_roi",
    "Roi",
    "RadiomicsConfig",
    "load_config",
    "config_from_mapping",
    "preset",
    "PRESETS",
    "IBSI_FAMILIES",
    "firstorder",
]


def feature_specs(families: Iterable[str] | None = None) -> list[FeatureSpec]:
    """The feature table: every :class:`FeatureSpec` of ``families`` (all registered if None).

    Raises
    ------
    UnknownNameError
        A family is not registered.
    """
    names = FAMILIES.names() if families is None else list(families)
    rows: list[FeatureSpec] = []
    for fam in names:
        rows.extend(FAMILIES.get(fam).func.feature_specs)
    return rows


def _resolve_config(config: RadiomicsConfig | str | Mapping[str, Any] | None) -> RadiomicsConfig:
    if config is None:
        return RadiomicsConfig()
    if isinstance(config, RadiomicsConfig):
        return config
    if isinstance(config, str):
        return preset(config)
    if isinstance(config, Mapping):
        return config_from_mapping(config)
    raise ParameterError(f"config must be a RadiomicsConfig, a preset name or a mapping, got {type(config).__name__}")


def _family_calls(families: Iterable[str], config: RadiomicsConfig,
                  params: Mapping[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    if isinstance(families, str):
        families = (families,)
    entries = [FAMILIES.get(f) for f in families]
    if not entries:
        raise ParameterError("extract: `families` is empty; name at least one feature family")
    known = {p for e in entries for p in e.params.model_fields} - {"aggregations"}
    for key in params:
        if key not in known:
            msg = (
                f"no requested feature family ({', '.join(e.name for e in entries)}) has a "
                f"parameter {key!r}{did_you_mean(key, known)}; parameters: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
            raise ParameterError(msg)
    calls = []
    for entry in entries:
        own: dict[str, Any] = dict(config.family_params.get(entry.name, {}))
        own.update({k: v for k, v in params.items() if k in entry.params.model_fields})
        if entry.func.aggregations:
            own["aggregations"] = tuple(a for a in config.aggregations if a in entry.func.aggregations)
        calls.append((entry, entry.validate(own)))
    return calls


def extract_roi(roi: Roi, families: Iterable[str], *, config: RadiomicsConfig | None = None,
                **params: Any) -> dict[str, float]:
    """Features of ``families`` for an already processed :class:`Roi` (see :func:`extract`)."""
    config = config or RadiomicsConfig()
    calls = _family_calls(families, config, params)
    return _run(roi, calls, progress.Steps(len(calls), "features"))


def _run(roi: Roi, calls: list[tuple[Any, dict[str, Any]]], steps: progress.Steps) -> dict[str, float]:
    out: dict[str, float] = {}
    for entry, own in calls:
        values = entry.func(roi, **entry.fixed, **own)
        out.update({f"{entry.name}.{k}": float(v) for k, v in values.items()})
        steps.advance()
    return out


def extract(
    image: Image,
    mask: Image,
    *,
    families: Iterable[str] | None = None,
    label: int = 1,
    config: RadiomicsConfig | str | Mapping[str, Any] | None = None,
    **params: Any,
) -> dict[str, float]:
    """Compute the features of ``families`` for the region ``mask == label`` of ``image``.

    Parameters
    ----------
    image
        Scalar intensity image (image units, e.g. HU), 2-D or 3-D.
    mask
        Label map on the same grid as ``image``.
    families
        Registered family names, computed in this order (``registry("features").names()``);
        default: ``config.families`` (the IBSI chapter 1 families).
    label
        The mask value that marks the region of interest.
    config
        A :class:`RadiomicsConfig`, a preset name (``"ibsi-ct-a"``) or a mapping in the YAML
        form; default :class:`RadiomicsConfig()`.
    **params
        Family parameters, e.g. ``bin_width=25.0`` (image units) or ``distance=1``. A parameter
        goes to every requested family that declares it; one that no requested family declares
        is an error. They override ``config.family_params``.

    Returns
    -------
    dict[str, float]
        ``"<family>.<feature>"`` (``"<family>.<aggregation>.<feature>"`` for texture families)
        -> value, in family order then each family's table order; then the features of each
        configured filter's response map, ``"<filter label>.<family>...."``. Progress is
        reported per family and per filter response (:mod:`medimg.core.progress`,
        ``what="features"``).

    Raises
    ------
    UnknownNameError
        A family, preset or filter is not registered.
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
    >>> extract(img, roi, families=["stat"])["stat.mean"]
    3.5
    """
    config = _resolve_config(config)
    if config.pyradiomics is not None:
        from medimg.features.pyradiomics_compat import extract_pyradiomics

        if families is not None or params:
            raise ParameterError("extract: with a PyRadiomics configuration, choose features in its featureClass "
                                 "section, not with `families` or family parameters")
        diagnostics: dict[str, float] = {}
        values = extract_pyradiomics(image, mask, config.pyradiomics, label=label, diagnostics=diagnostics)
        values.update({f"diagnostics.{k}": v for k, v in diagnostics.items()})
        return values
    fams = config.families if families is None else ((families,) if isinstance(families, str) else tuple(families))
    calls = _family_calls(fams, config, params)  # validate before any work
    margin = None  # no filters: the local-intensity default
    if config.filters:  # (the filters module is imported only then: start-up of a command)
        from medimg.features.filters import filter_margin_mm

        spacing = np.asarray(image.spacing, dtype=float)[::-1]
        if config.interpolation is not None:
            spacing = np.maximum(spacing, np.asarray(config.interpolation.spacing_mm, dtype=float)[::-1])
        margin = filter_margin_mm(config, tuple(float(v) for v in spacing))
    filter_calls = [_family_calls(filt.families, config, {}) for filt in config.filters]
    # One step per family, per filter response and per family of each response.
    steps = progress.Steps(len(calls) + sum(1 + len(c) for c in filter_calls), "features")
    roi = prepare_roi(image, mask, config, label=label, margin_mm=margin)
    out = _run(roi, calls, steps)
    for filt, fcalls in zip(config.filters, filter_calls, strict=True):
        from medimg.features.filters import filtered_roi

        froi, tag = filtered_roi(roi, filt)
        steps.advance()
        values = _run(froi, fcalls, steps)
        out.update({f"{tag}.{k}": v for k, v in values.items()})
    return out


# Families register themselves on import; they need the names defined above.
from medimg.features import directional, firstorder, intensity, morphology, shape2d, zones  # noqa: E402,F401
