"""Validated settings of a radiomics extraction, their YAML/JSON form and the IBSI presets.

A :class:`RadiomicsConfig` holds every choice that changes a feature value: image processing
(interpolation, re-segmentation, discretisation), the families to compute, the IBSI aggregation
methods and the per-family parameters, and the convolutional filters whose response maps get
their own features. The keys of the YAML form are the field names below, nested the same way;
an unknown key is an error that names its path and suggests the closest known key.

Presets (:data:`PRESETS`) reproduce the IBSI chapter 1 configurations: ``ibsi-dig`` (digital
phantom) and ``ibsi-ct-a`` ... ``ibsi-ct-e`` (CT phantom configurations A-E); the IBSI chapter 2 ones,
``ibsi2-ph1-<id>`` (phase 1 configurations 1a1 ... 8a3) and ``ibsi2-ph2-<id>`` (phase 2 filter
ids 1a ... 9b);
``default`` is a general 3-D configuration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic

from medimg.errors import FileFormatError, ParameterError, UnknownNameError, did_you_mean

__all__ = [
    "InterpolationConfig",
    "ResegmentationConfig",
    "DiscretisationConfig",
    "FilterConfig",
    "RadiomicsConfig",
    "PRESETS",
    "preset_summary",
    "IBSI_FAMILIES",
    "preset",
    "load_config",
    "config_from_mapping",
]

#: The IBSI chapter 1 families, in the order of the IBSI reference manual.
IBSI_FAMILIES = ("morph", "li", "stat", "ih", "ivh", "glcm", "glrlm", "glszm", "gldzm", "ngtdm", "ngldm")

_ALL_AGGREGATIONS = ("2d_avg", "2d_comb", "2_5d_avg", "2_5d_comb", "3d_avg", "3d_comb", "2d", "2_5d", "3d")

_STRICT = pydantic.ConfigDict(extra="forbid", frozen=True)


class InterpolationConfig(pydantic.BaseModel):
    """IBSI interpolation to a new voxel spacing (grid centres aligned, IBSI "align grid centres").

    Attributes
    ----------
    spacing_mm
        New voxel spacing (x, y, z) in mm. With ``in_plane_only`` the z value is ignored (the
        slice spacing is kept).
    in_plane_only
        2-D interpolation: resample within each slice only (IBSI configuration B).
    image_method
        ``"linear"``, ``"cubic"`` (cubic B-spline) or ``"nearest"``.
    mask_method
        ``"linear"`` (then the partial-volume threshold) or ``"nearest"``.
    mask_threshold
        Partial-volume fraction at or above which an interpolated mask voxel is inside (0.5).
    round_intensities
        Round interpolated intensities to the nearest integer (IBSI for CT, HU are integers).
    """

    model_config = _STRICT
    spacing_mm: tuple[float, float, float]
    in_plane_only: bool = False
    image_method: Literal["linear", "cubic", "nearest"] = "linear"
    mask_method: Literal["linear", "nearest"] = "linear"
    mask_threshold: float = pydantic.Field(0.5, gt=0.0, le=1.0)
    round_intensities: bool = False

    @pydantic.field_validator("spacing_mm")
    @classmethod
    def _positive(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not v > 0 for v in value):
            raise ValueError(f"every spacing must be > 0 mm, got {value}")
        return value


class ResegmentationConfig(pydantic.BaseModel):
    """IBSI re-segmentation of the intensity mask.

    Attributes
    ----------
    range
        ``(low, high)`` in image units: voxels outside are dropped from the intensity mask
        (either bound may be ``None``: open).
    outlier_sigma
        Drop voxels further than this many standard deviations from the ROI mean (IBSI outlier
        filtering, usually 3); ``None`` for none.
    """

    model_config = _STRICT
    range: tuple[float | None, float | None] | None = None
    outlier_sigma: float | None = pydantic.Field(None, gt=0.0)

    @pydantic.field_validator("range")
    @classmethod
    def _ordered(cls, value: Any) -> Any:
        if value is not None and None not in value and value[0] > value[1]:
            raise ValueError(f"range low must be <= high, got {value}")
        return value


class DiscretisationConfig(pydantic.BaseModel):
    """IBSI intensity discretisation for the histogram and texture families.

    Attributes
    ----------
    method
        ``"fixed_bin_size"`` (FBS), ``"fixed_bin_number"`` (FBN) or ``"none"`` (the image
        already holds integer grey levels >= 1, like the IBSI digital phantom).
    bin_width
        FBS bin width, image units.
    lower_bound
        FBS lower bound :math:`X_{lb}`, image units. ``None``: the re-segmentation range's lower
        bound if there is one, else the ROI minimum.
    n_bins
        FBN number of bins.
    """

    model_config = _STRICT
    method: Literal["fixed_bin_size", "fixed_bin_number", "none"] = "fixed_bin_number"
    bin_width: float = pydantic.Field(25.0, gt=0.0)
    lower_bound: float | None = None
    n_bins: int = pydantic.Field(32, ge=1)


class FilterConfig(pydantic.BaseModel):
    """One convolutional filter (IBSI chapter 2) whose response map gets ``families`` features.

    ``name`` is a registered filter (``registry("feature_filters")``: ``mean``, ``log``,
    ``laws``, ``gabor``, ``wavelet``); ``params`` are its keyword parameters (validated there);
    ``families`` the families computed on the response (intensity statistics by default).
    """

    model_config = _STRICT
    name: str
    params: dict[str, Any] = pydantic.Field(default_factory=dict)
    families: tuple[str, ...] = ("stat",)
    label: str | None = None


class RadiomicsConfig(pydantic.BaseModel):
    """Every setting of an extraction. Build it in Python, from YAML (:func:`load_config`) or by
    name (:func:`preset`).

    Attributes
    ----------
    families
        Registered family names, computed in this order.
    interpolation
        :class:`InterpolationConfig`, or ``None`` for no interpolation.
    resegmentation
        :class:`ResegmentationConfig` (no re-segmentation by default).
    discretisation
        :class:`DiscretisationConfig` for ``ih`` and the texture families.
    aggregations
        IBSI aggregation methods to report for texture families (each family reports those it
        supports): ``2d_avg``, ``2d_comb``, ``2_5d_avg``, ``2_5d_comb``, ``3d_avg``, ``3d_comb``
        (GLCM, GLRLM) and ``2d``, ``2_5d``, ``3d`` (GLSZM, GLDZM, NGTDM, NGLDM).
    family_params
        ``{family: {parameter: value}}``, e.g. ``{"glcm": {"distance": 1}}``.
    filters
        :class:`FilterConfig` list: image filters whose response maps get features too.
    """

    model_config = _STRICT
    families: tuple[str, ...] = IBSI_FAMILIES
    interpolation: InterpolationConfig | None = None
    resegmentation: ResegmentationConfig = ResegmentationConfig()
    discretisation: DiscretisationConfig = DiscretisationConfig()
    aggregations: tuple[
        Literal["2d_avg", "2d_comb", "2_5d_avg", "2_5d_comb", "3d_avg", "3d_comb", "2d", "2_5d", "3d"], ...
    ] = ("3d_avg", "3d_comb", "3d")
    family_params: dict[str, dict[str, Any]] = pydantic.Field(default_factory=dict)
    filters: tuple[FilterConfig, ...] = ()
    #: A PyRadiomics parameter mapping (``setting``, ``imageType``, ``featureClass``): when set, the
    #: extraction is PyRadiomics's (:mod:`medimg.features.pyradiomics_compat`) and the other fields
    #: are not used.
    pyradiomics: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the YAML form)."""
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        """Compact JSON, keys sorted (stable: used in provenance columns)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def replace(self, **changes: Any) -> RadiomicsConfig:
        """A copy with top-level fields changed (validated)."""
        data = self.to_dict()
        data.update({k: (v.model_dump(mode="json") if isinstance(v, pydantic.BaseModel) else v)
                     for k, v in changes.items()})
        return config_from_mapping(data)


def _validate_names(config: RadiomicsConfig) -> RadiomicsConfig:
    from medimg.features._base import FAMILIES

    if config.pyradiomics is not None:
        from medimg.features.pyradiomics_compat import check_params

        check_params(config.pyradiomics)

    for fam in config.families:
        FAMILIES.get(fam)  # UnknownNameError with suggestions
    for fam, params in config.family_params.items():
        if fam not in FAMILIES:
            raise UnknownNameError("feature family (in family_params)", fam, FAMILIES.names())
        entry = FAMILIES.get(fam)
        bad = set(params) & {"aggregations"}
        if bad:
            msg = f"family_params.{fam}: set 'aggregations' at the top level of the config, not per family"
            raise ParameterError(msg)
        entry.validate(params)
    for i, filt in enumerate(config.filters):
        from medimg.features.filters import FILTERS  # only with filters (start-up of a command)

        entry = FILTERS.get(filt.name)
        try:
            entry.validate(filt.params)
        except ParameterError as err:
            raise ParameterError(f"filters[{i}]: {err}") from err
        for fam in filt.families:
            FAMILIES.get(fam)
    return config


def _check_keys(model: type[pydantic.BaseModel], data: Any, path: str) -> None:
    """Unknown keys -> ParameterError naming the path with a did-you-mean (before pydantic)."""
    if not isinstance(data, Mapping):
        return
    fields = model.model_fields
    for key, value in data.items():
        where = f"{path}{key}"
        if key not in fields:
            msg = (f"config: unknown key {where!r}{did_you_mean(str(key), fields)}; "
                   f"known keys{' of ' + path.rstrip('.') if path else ''}: {', '.join(fields)}")
            raise ParameterError(msg)
        ann = fields[key].annotation
        for sub in (InterpolationConfig, ResegmentationConfig, DiscretisationConfig):
            if ann is sub or (hasattr(ann, "__args__") and sub in getattr(ann, "__args__", ())):
                _check_keys(sub, value, where + ".")
        if key == "filters" and isinstance(value, list | tuple):
            for i, item in enumerate(value):
                _check_keys(FilterConfig, item, f"{where}[{i}].")


def config_from_mapping(data: Mapping[str, Any]) -> RadiomicsConfig:
    """Validate a mapping (parsed YAML/JSON) into a :class:`RadiomicsConfig`.

    A ``preset`` key starts from that preset and overrides it with the other keys (one level
    deep for the nested sections).

    Raises
    ------
    ParameterError
        An unknown key (with its path and a did-you-mean) or an invalid value.
    UnknownNameError
        An unknown preset, family or filter name.
    """
    data = dict(data)
    base_name = data.pop("preset", None)
    if base_name is not None:
        base = preset(str(base_name)).to_dict()
        for key, value in data.items():
            if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        data = base
    _check_keys(RadiomicsConfig, data, "")
    try:
        config = RadiomicsConfig.model_validate(data)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        msg = f"config: {loc}: {first['msg']} (got {first.get('input')!r})"
        raise ParameterError(msg) from err
    return _validate_names(config)


def load_config(path: str | Path) -> RadiomicsConfig:
    """Read a YAML (``.yaml``/``.yml``) or JSON config file; see :func:`config_from_mapping`."""
    import yaml

    from medimg.core.yamlio import safe_load

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "no such config file")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise FileFormatError(path, f"cannot parse the config: {err}") from err
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise FileFormatError(path, f"a config must be a mapping of keys, got {type(data).__name__}")
    try:
        return config_from_mapping(data)
    except UnknownNameError:
        raise
    except ParameterError as err:
        raise ParameterError(f"{path}: {err}") from err


_IBSI_TEXTURE = {"glcm": {"distance": 1}, "ngldm": {"distance": 1, "alpha": 0}, "ngtdm": {"distance": 1},
                 "morph": {"non_standard": True}}

#: Named configurations. The IBSI ones follow the IBSI reference manual's settings tables.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "ibsi-dig": {
        "discretisation": {"method": "none"},
        "aggregations": list(_ALL_AGGREGATIONS),
        "family_params": {**_IBSI_TEXTURE, "ivh": {"discretisation": "texture"}},
    },
    # PyRadiomics's default extraction (binWidth 25, Original, 3-D, 107 features), value for value.
    "pyradiomics": {"pyradiomics": {"setting": {"binWidth": 25, "label": 1}, "imageType": {"Original": {}},
                                    "featureClass": {c: None for c in ("firstorder", "shape", "glcm", "glrlm",
                                                                         "glszm", "gldm", "ngtdm")}}},
    "ibsi-ct-a": {
        "resegmentation": {"range": [-500.0, 400.0]},
        "discretisation": {"method": "fixed_bin_size", "bin_width": 25.0, "lower_bound": -500.0},
        "aggregations": ["2d_avg", "2d_comb", "2_5d_avg", "2_5d_comb", "2d", "2_5d"],
        "family_params": {**_IBSI_TEXTURE, "ivh": {"discretisation": "none"}},
    },
    "ibsi-ct-b": {
        "interpolation": {"spacing_mm": [2.0, 2.0, 2.0], "in_plane_only": True, "image_method": "linear",
                          "mask_method": "linear", "mask_threshold": 0.5, "round_intensities": True},
        "resegmentation": {"range": [-500.0, 400.0]},
        "discretisation": {"method": "fixed_bin_number", "n_bins": 32},
        "aggregations": ["2d_avg", "2d_comb", "2_5d_avg", "2_5d_comb", "2d", "2_5d"],
        "family_params": {**_IBSI_TEXTURE, "ivh": {"discretisation": "none"}},
    },
    "ibsi-ct-c": {
        "interpolation": {"spacing_mm": [2.0, 2.0, 2.0], "image_method": "linear",
                          "mask_method": "linear", "mask_threshold": 0.5, "round_intensities": True},
        "resegmentation": {"range": [-1000.0, 400.0]},
        "discretisation": {"method": "fixed_bin_size", "bin_width": 25.0, "lower_bound": -1000.0},
        "aggregations": ["3d_avg", "3d_comb", "3d"],
        "family_params": {**_IBSI_TEXTURE,
                          "ivh": {"discretisation": "fixed_bin_size", "bin_width": 2.5, "lower_bound": -1000.0}},
    },
    # IBSI chapter 1 CT configurations D and E: D filters outliers (3 sigma) without a range, E
    # applies the range [-1000, 400] HU and then the outlier filter.
    "ibsi-ct-d": {
        "interpolation": {"spacing_mm": [2.0, 2.0, 2.0], "image_method": "linear",
                          "mask_method": "linear", "mask_threshold": 0.5, "round_intensities": True},
        "resegmentation": {"outlier_sigma": 3.0},
        "discretisation": {"method": "fixed_bin_number", "n_bins": 32},
        "aggregations": ["3d_avg", "3d_comb", "3d"],
        "family_params": {**_IBSI_TEXTURE, "ivh": {"discretisation": "none"}},
    },
    "ibsi-ct-e": {
        "interpolation": {"spacing_mm": [2.0, 2.0, 2.0], "image_method": "cubic",
                          "mask_method": "linear", "mask_threshold": 0.5, "round_intensities": True},
        "resegmentation": {"range": [-1000.0, 400.0], "outlier_sigma": 3.0},
        "discretisation": {"method": "fixed_bin_number", "n_bins": 32},
        "aggregations": ["3d_avg", "3d_comb", "3d"],
        "family_params": {**_IBSI_TEXTURE, "ivh": {"discretisation": "fixed_bin_number", "n_bins": 1000}},
    },
}


def _ibsi2_presets() -> dict[str, dict[str, Any]]:
    """``ibsi2-ph1-<id>``: the filter of each IBSI chapter 2 phase 1 configuration (no image
    processing; intensity statistics of the response); ``ibsi2-ph2-<id>``: the phase 2 settings
    (``a``: 2-D, CT grid; ``b``: 1 mm isotropic, cubic spline, rounded; both re-segmented to
    [-1000, 400] HU) with intensity statistics of the original image and of the response map."""
    from medimg.features.ibsi2 import PHASE1, PHASE2, image_label

    out: dict[str, dict[str, Any]] = {}
    for cid, c in PHASE1.items():
        out[f"ibsi2-ph1-{cid}"] = {
            "families": ["stat"], "discretisation": {"method": "none"},
            "filters": [{"name": c.filter, "params": dict(c.params), "families": ["stat"],
                         "label": image_label(c.filter, c.params)}],
        }
    for fid, (name, params) in PHASE2.items():
        cfg: dict[str, Any] = {"families": ["stat"], "resegmentation": {"range": [-1000.0, 400.0]},
                               "aggregations": ["2d", "3d"] if fid.endswith("a") else ["3d"]}
        if fid.endswith("b"):
            cfg["interpolation"] = {"spacing_mm": [1.0, 1.0, 1.0], "image_method": "cubic",
                                    "mask_method": "linear", "mask_threshold": 0.5, "round_intensities": True}
        if name is not None:
            cfg["filters"] = [{"name": name, "params": dict(params), "families": ["stat"],
                               "label": image_label(name, params)}]
        out[f"ibsi2-ph2-{fid}"] = cfg
    return out


PRESETS.update(_ibsi2_presets())


def preset_summary(name: str) -> str:
    """One line describing the preset ``name``: its settings that differ from the defaults."""
    if name not in PRESETS:
        raise UnknownNameError("radiomics preset", name, PRESETS)
    settings = PRESETS[name]
    if not settings:
        return "medimg's defaults"
    return "; ".join(f"{key}: {json.dumps(value, separators=(',', ':'))}" for key, value in settings.items())


def preset(name: str) -> RadiomicsConfig:
    """The configuration called ``name`` (see :data:`PRESETS`)."""
    if name not in PRESETS:
        raise UnknownNameError("radiomics preset", name, PRESETS)
    return config_from_mapping(PRESETS[name])
