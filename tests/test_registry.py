"""The registry: declared kinds and tags, every resolved parameter returned, and a calling
convention in which no parameter name can collide with a dispatcher's own arguments."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import numpy as np
import pytest

from medimg import Image
from medimg.core.registry import KINDS, TAGS, Registry, load_registries, registry
from medimg.errors import ParameterError, UnknownNameError

# Required parameters of registered operations, by (kind, name): a value that validates.
# A new operation with a required parameter must add one here (the test below says which).
_IMAGE = Image.from_geometry(np.zeros((4, 6, 6), np.float32), spacing=(1.0, 1.0, 1.0))
REQUIRED: dict[tuple[str, str], dict[str, Any]] = {
    ("filters", "lowpass"): {"cutoff": 0.2},
    ("filters", "highpass"): {"cutoff": 0.2},
    ("filters", "bandpass"): {"low_cutoff": 0.05, "high_cutoff": 0.3},
    ("filters", "nyul"): {"standard": [0.0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]},
    ("filters", "resample"): {"spacing_mm": 1.5},
    ("filters", "resample_to"): {"reference": _IMAGE},
    ("filters", "window"): {"level": 100.0, "width": 200.0},
    ("segmentation", "unet"): {"checkpoint": "model.pt"},
    ("segmentation", "hu_range"): {"tissue": "lung"},
    ("segmentation", "remove_small"): {"min_volume_mm3": 10.0},
    **{("segmentation", op): {"radius_mm": 1.0} for op in ("dilate", "erode", "opening", "closing")},
}


def _dispatchers() -> dict[str, Any]:
    from medimg.features.filters import filter_image
    from medimg.filters import apply
    from medimg.segmentation import segment

    return {"filters": apply, "segmentation": segment, "feature_filters": filter_image}


def test_kinds_are_declared_once_and_an_unknown_kind_is_an_error() -> None:
    assert set(KINDS) >= {"filters", "quality", "segmentation", "features", "feature_filters", "classifiers"}
    with pytest.raises(UnknownNameError, match="did you mean 'filters'"):
        registry("filter")
    assert registry("filters") is registry("filters")


def test_tags_are_declared() -> None:
    reg = Registry("filters")
    with pytest.raises(ValueError, match="undeclared tag"):
        reg.register("x", tags=("denoisr",))
    with pytest.raises(UnknownNameError, match="did you mean 'denoiser'"):
        registry("filters").names(tag="denoisr")
    used = {t for r in load_registries().values() for e in r for t in e.tags}
    assert used <= set(TAGS)


def test_denoisers_are_the_entries_tagged_so() -> None:
    from medimg.filters import denoising_methods

    reg = load_registries(["filters"])["filters"]
    assert denoising_methods() == sorted(e.name for e in reg if "denoiser" in e.tags)
    assert "nlm" in denoising_methods() and "window" not in denoising_methods()


def test_validate_returns_every_resolved_parameter_defaults_included() -> None:
    entry = load_registries(["filters"])["filters"].get("gaussian")
    resolved = entry.validate({"sigma_mm": 2.0})
    assert resolved["sigma_mm"] == 2.0
    assert set(resolved) == set(entry.params.model_fields)
    defaults = {n: p.default for n, p in inspect.signature(entry.func).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and n != "sigma_mm"}
    assert {k: resolved[k] for k in defaults} == defaults


def test_validate_names_a_missing_required_parameter() -> None:
    entry = load_registries(["filters"])["filters"].get("lowpass")
    with pytest.raises(ParameterError, match="cutoff"):
        entry.validate({})


def test_dispatchers_take_the_operation_name_positionally_only() -> None:
    for kind, func in _dispatchers().items():
        params = list(inspect.signature(func).parameters.values())
        assert params[1].kind is inspect.Parameter.POSITIONAL_ONLY, kind
        assert params[-1].kind is inspect.Parameter.VAR_KEYWORD, kind


@pytest.mark.parametrize("kind", ["filters", "segmentation", "feature_filters"])
def test_every_operation_takes_every_declared_parameter_through_its_dispatcher(kind: str, monkeypatch) -> None:
    """Call each registered operation through the generic path with every parameter it declares
    given explicitly (a parameter called ``method`` or ``name`` must reach the operation)."""
    reg = load_registries([kind])[kind]
    dispatch = _dispatchers()[kind]
    assert len(reg) > 0
    for entry in reg:
        given: dict[str, Any] = {}
        for pname, info in entry.params.model_fields.items():
            if info.is_required():
                example = REQUIRED.get((kind, entry.name), {})
                assert pname in example, f"add an example value of {kind} {entry.name!r} {pname!r} to REQUIRED"
                given[pname] = example[pname]
            else:
                given[pname] = info.default
        received: dict[str, Any] = {}

        def record(data: Any, /, *args: Any, _into: dict[str, Any] = received, **kwargs: Any) -> Any:
            _into.update(kwargs)
            return data

        monkeypatch.setitem(reg._entries, entry.name, dataclasses.replace(entry, func=record))
        dispatch(_IMAGE, entry.name, **given)
        assert received == {**entry.fixed, **given}, entry.name


def test_wavelet_method_parameter_reaches_the_filter() -> None:
    """The reported crash: ``-m wavelet -p method=VisuShrink`` collided with ``apply(image, method)``."""
    from medimg.filters import apply, denoise

    rng = np.random.default_rng(0)
    z, y, x = np.indices((6, 24, 24))
    disc = 100.0 + 80.0 * ((y - 12) ** 2 + (x - 12) ** 2 < 40)
    image = Image.from_geometry((disc + rng.normal(0, 10, disc.shape)).astype(np.float32), spacing=(1.0, 1.0, 2.0))
    visu = apply(image, "wavelet", method="VisuShrink")
    bayes = apply(image, "wavelet", method="BayesShrink")
    assert visu.meta["history"][-1]["method"] == "VisuShrink"
    assert not np.allclose(visu.array, bayes.array)
    np.testing.assert_array_equal(denoise(image, "wavelet", method="VisuShrink").array, visu.array)


def test_yaml_values_are_read_as_yaml_1_2() -> None:
    """`-p injection_time=10:00:00` is a time, not the base-60 integer 36000 of YAML 1.1."""
    from medimg.cli.params import parse_params
    from medimg.core.yamlio import safe_load

    assert safe_load("t: 10:00:00\nb: no\nx: 1e-3\nn: 7\ny: true") == {"t": "10:00:00", "b": "no", "x": 0.001,
                                                                        "n": 7, "y": True}
    assert parse_params(["injection_time=10:00:00", "sigma_mm=1.5"]) == {"injection_time": "10:00:00",
                                                                          "sigma_mm": 1.5}


def test_constraints_in_signatures_are_checked_before_any_work() -> None:
    from medimg.core.registry import type_name
    from medimg.core.types import Positive

    entry = load_registries(["filters"])["filters"].get("gaussian")
    with pytest.raises(ParameterError, match="sigma_mm: Input should be greater than 0"):
        entry.validate({"sigma_mm": 0.0})
    assert entry.validate({"sigma_mm": 0.5})["sigma_mm"] == 0.5
    assert type_name(Positive) == "float > 0"
