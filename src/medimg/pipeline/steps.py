"""The operations a study step can run, and the resolved plan of a study.

A step's ``op`` is ``<kind>.<name>`` of a registered operation (``filters.gaussian``,
``segmentation.otsu``, ``feature_filters.log``, ``quality.psnr``, ...; the kind may be left out
when the name is unique) or a pipeline operation (``features``). Each op declares the input
roles it takes and the kind of output it gives:

=====================  ======================  ==========================================
op                     inputs                  output
=====================  ======================  ==========================================
``filters.*``          ``image``               an image on the input's grid (or its new one)
``feature_filters.*``  ``image``               a response map
``segmentation.*``     ``image``               a label map
``quality.*``          ``image`` (and          values: ``{<step id>: number}``
                       ``reference``)
``features``           ``image``, ``mask``     values: the radiomics features
=====================  ======================  ==========================================

A parameter whose type is an image (``resample_to``'s ``reference``, a ``mask``) takes a
reference in the YAML — a case file role or an earlier step's id — instead of a value.

Defaults for inputs that a step does not name: ``image`` is the output of the nearest earlier
step that gives an image (else the case's ``image``), ``mask`` the nearest earlier label map
(else the case's ``mask``), ``reference`` the case's ``image``.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medimg.errors import ParameterError, UnknownNameError, UserInputError

__all__ = ["Op", "PlannedStep", "Plan", "resolve_plan", "find_op", "op_names"]

Output = Literal["image", "labels", "values"]

#: Registry kinds whose operations map one image to one image (or label map).
_IMAGE_KINDS: dict[str, Output] = {"filters": "image", "feature_filters": "image", "segmentation": "labels"}


@dataclass(frozen=True)
class Op:
    """What a step can run: its input roles, output kind, parameter validation and the call."""

    name: str
    inputs: tuple[str, ...]
    output: Output
    validate: Callable[[Mapping[str, Any]], dict[str, Any]]
    run: Callable[[dict[str, Any], dict[str, Any]], Any]
    optional_inputs: tuple[str, ...] = ()
    image_params: tuple[str, ...] = ()  # parameters that take an image (a reference in the YAML)
    summary: str = ""
    param_names: tuple[str, ...] | None = None  # every parameter it takes (None: validate says)
    file_params: tuple[str, ...] = ()  # parameters that name an input file (resolved against the study's folder)


def _annotation_takes_image(annotation: Any) -> bool:
    from medimg.core.image import Image

    if annotation is Image:
        return True
    return any(_annotation_takes_image(a) for a in typing.get_args(annotation))


def _registry_op(kind: str, entry: Any) -> Op:
    from medimg.core.types import is_input_file

    image_params = tuple(n for n, info in entry.params.model_fields.items()
                         if _annotation_takes_image(info.annotation))
    file_params = tuple(n for n, info in entry.params.model_fields.items() if is_input_file(info))
    if kind in _IMAGE_KINDS:
        if kind == "feature_filters":
            def run(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
                from medimg.features.filters import filter_image

                return filter_image(inputs["image"], entry.name, **params)
        else:
            def run(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
                return entry(inputs["image"], **params)

        return Op(f"{kind}.{entry.name}", ("image",), _IMAGE_KINDS[kind], entry.validate, run,
                  image_params=image_params, summary=entry.summary, param_names=tuple(entry.params.model_fields),
                  file_params=file_params)
    if kind == "quality":
        import inspect

        n_images = sum(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                       for p in inspect.signature(entry.func).parameters.values())
        roles = ("reference", "image") if n_images == 2 else ("image",)

        def run_metric(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
            return float(entry(*(inputs[r] for r in roles), **params))

        return Op(f"quality.{entry.name}", roles, "values", entry.validate, run_metric,
                  image_params=image_params, summary=entry.summary, param_names=tuple(entry.params.model_fields))
    raise ParameterError(f"operations of kind {kind!r} cannot be a study step")


def _features_op() -> Op:
    def validate(params: Mapping[str, Any]) -> dict[str, Any]:
        from medimg.features import _resolve_config, preset

        allowed = {"preset", "config", "families", "label"}
        for key in params:
            if key not in allowed:
                from medimg.errors import did_you_mean

                raise ParameterError(f"features has no parameter {key!r}{did_you_mean(key, allowed)}; "
                                     f"parameters: {', '.join(sorted(allowed))}")
        if "preset" in params and "config" in params:
            raise ParameterError("features: give preset or config, not both")
        config = preset(str(params["preset"])) if "preset" in params else _resolve_config(params.get("config"))
        families = params.get("families")
        if families is not None:
            from medimg.core.registry import load_registries

            registered = load_registries(["features"])["features"]
            for name in families:
                registered.get(str(name))
            families = [str(f) for f in families]
        label = params.get("label", 1)
        if not isinstance(label, int) or isinstance(label, bool):
            raise ParameterError(f"features: parameter label: must be an integer, got {label!r}")
        return {"config": config.to_dict(), "families": families, "label": label}

    def run(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        from medimg.features import extract

        return extract(inputs["image"], inputs["mask"], families=params["families"], label=params["label"],
                       config=params["config"])

    return Op("features", ("image", "mask"), "values", validate, run,
              summary="IBSI radiomics features of the region mask == label of the image",
              param_names=("preset", "config", "families", "label"))


def _segmentation_metrics_op() -> Op:
    allowed = {"label", "percentile", "tolerance_mm", "convention"}

    def validate(params: Mapping[str, Any]) -> dict[str, Any]:
        from medimg.errors import did_you_mean

        for key in params:
            if key not in allowed:
                raise ParameterError(f"segmentation_metrics has no parameter {key!r}{did_you_mean(key, allowed)}; "
                                     f"parameters: {', '.join(sorted(allowed))}")
        label = params.get("label")
        if label is not None and (not isinstance(label, int) or isinstance(label, bool)):
            raise ParameterError(f"segmentation_metrics: parameter label: must be an integer, got {label!r}")
        out = {"label": label, "percentile": float(params.get("percentile", 95.0)),
               "tolerance_mm": float(params.get("tolerance_mm", 1.0)),
               "convention": str(params.get("convention", "surface-distance"))}
        if not 0 < out["percentile"] <= 100:
            raise ParameterError("segmentation_metrics: parameter percentile: must be in (0, 100]")
        if out["tolerance_mm"] < 0:
            raise ParameterError("segmentation_metrics: parameter tolerance_mm: must be >= 0")
        if out["convention"] not in ("surface-distance", "monai", "medpy"):
            raise ParameterError("segmentation_metrics: parameter convention: one of surface-distance, monai, medpy")
        return out

    def run(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        from medimg.evaluation.segmentation import segmentation_metrics

        mask, truth = inputs["mask"], inputs["truth"]
        if truth.shape != mask.shape:
            from medimg.filters.resample import resample_to

            truth = resample_to(truth, reference=mask, interpolator="nearest")
        values = segmentation_metrics(mask, truth, label=params["label"], convention=params["convention"],
                                      percentile=params["percentile"], tolerance_mm=params["tolerance_mm"])
        return {k: float(v) for k, v in values.items() if not isinstance(v, str)}

    return Op("segmentation_metrics", ("mask", "truth"), "values", validate, run,
              summary="Dice, IoU, sensitivity, precision, volume difference and surface distances (mm) of a "
                      "label map against a reference",
              param_names=tuple(sorted(allowed)))


def _checked(params: Mapping[str, Any], spec: Mapping[str, tuple[Any, Callable[[Any], Any]]], op: str) -> dict[str, Any]:
    """Resolve ``params`` against ``spec`` (name -> (default, converter that raises ValueError));
    an unknown name or a bad value is a ParameterError naming the parameter."""
    from medimg.errors import did_you_mean

    for key in params:
        if key not in spec:
            raise ParameterError(f"{op} has no parameter {key!r}{did_you_mean(key, spec)}; "
                                 f"parameters: {', '.join(sorted(spec))}")
    out: dict[str, Any] = {}
    for name, (default, convert) in spec.items():
        value = params.get(name, default)
        try:
            out[name] = convert(value)
        except (TypeError, ValueError) as err:
            raise ParameterError(f"{op} {op!r}: parameter {name}: {err}") from err
    return out


def _one_of(*choices: Any) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value not in choices:
            raise ValueError(f"one of {', '.join(map(str, choices))}; got {value!r}")
        return value

    return convert


def _register_op() -> Op:
    spec: dict[str, tuple[Any, Callable[[Any], Any]]] = {
        "transform": ("rigid", _one_of("rigid", "similarity", "affine", "bspline", "syn")),
        "metric": (None, _one_of(None, "mi", "ncc", "ms")),
        "task": ("mono-modal", _one_of("mono-modal", "multi-modal", "longitudinal")),
        "seed": (0, int),
    }

    def run(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        from medimg.registration import register

        result = register(inputs["fixed"], inputs["moving"], transform=params["transform"], metric=params["metric"],
                          task=params["task"], seed=params["seed"])
        return result.resampled

    return Op("register", ("fixed", "moving"), "image", lambda p: _checked(p, spec, "register"), run,
              summary="the moving image registered to the fixed one and resampled onto its grid",
              param_names=tuple(spec))


def _longitudinal_op() -> Op:
    spec: dict[str, tuple[Any, Callable[[Any], Any]]] = {
        "transform": ("rigid", _one_of("rigid", "affine")),
        "stable_percent": (0.0, float),
        "min_volume_mm3": (0.0, float),
    }

    def run(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        from medimg.registration.longitudinal import longitudinal_change

        result = longitudinal_change(inputs["baseline"], inputs["followup"], inputs["mask"],
                                     transform_kind=params["transform"], stable_percent=params["stable_percent"],
                                     min_volume_mm3=params["min_volume_mm3"])
        summary = result.as_dict()["summary"]
        values = {k: float("nan") if v is None else float(v) for k, v in summary.items()}
        quality = result.registration or {}
        if isinstance(quality.get("final_metric"), (int, float)):
            values["registration_final_metric"] = float(quality["final_metric"])
        return values

    return Op("longitudinal", ("baseline", "followup", "mask"), "values", lambda p: _checked(p, spec, "longitudinal"),
              run, summary="register the follow-up to its baseline, carry the lesion mask across and measure "
                           "each lesion's volume change (mm^3, %), new and vanished lesions",
              param_names=tuple(spec))


def _crop_op() -> Op:
    spec: dict[str, tuple[Any, Callable[[Any], Any]]] = {"margin_mm": (10.0, float)}

    def run(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        from medimg.core.crop import crop_to_mask

        return crop_to_mask(inputs["image"], inputs["mask"], margin_mm=params["margin_mm"])

    return Op("crop_to_mask", ("image", "mask"), "image", lambda p: _checked(p, spec, "crop_to_mask"), run,
              summary="the image inside the mask's bounding box grown by margin_mm (geometry kept): e.g. the "
                      "input of a CNN cohort step", param_names=tuple(spec))


#: Pipeline operations that are not entries of a registry kind, by name.
_PIPELINE_OPS: dict[str, Callable[[], Op]] = {"features": _features_op,
                                              "segmentation_metrics": _segmentation_metrics_op,
                                              "register": _register_op,
                                              "longitudinal": _longitudinal_op,
                                              "crop_to_mask": _crop_op}
#: Registry kinds a step may name.
_STEP_KINDS = ("filters", "feature_filters", "segmentation", "quality")


def op_names() -> list[str]:
    """Every op a step may name (``kind.name`` and the pipeline's own)."""
    from medimg.core.registry import load_registries

    names = list(_PIPELINE_OPS)
    for kind, reg in load_registries(_STEP_KINDS).items():
        names.extend(f"{kind}.{n}" for n in reg.names())
    return sorted(names)


def find_op(name: str) -> Op:
    """The op called ``name`` (``kind.name``, a unique bare name, or a pipeline op)."""
    from medimg.core.registry import load_registries

    if name in _PIPELINE_OPS:
        return _PIPELINE_OPS[name]()
    registries = load_registries(_STEP_KINDS)
    if "." in name:
        kind, _, short = name.partition(".")
        if kind in registries and short in registries[kind]:
            return _registry_op(kind, registries[kind].get(short))
    else:
        hits = [kind for kind, reg in registries.items() if name in reg]
        if len(hits) == 1:
            return _registry_op(hits[0], registries[hits[0]].get(name))
        if len(hits) > 1:
            raise ParameterError(f"{name!r} is an operation of several kinds: write one of "
                                 f"{', '.join(f'{k}.{name}' for k in hits)}")
    raise UnknownNameError("operation", name, op_names())


@dataclass(frozen=True)
class PlannedStep:
    """A step with its op found, its parameters resolved (defaults included) and its inputs
    resolved to case file roles or earlier step ids. It holds the op by name (``op_name``) so
    that it pickles to worker processes; :attr:`op` finds it again there."""

    id: str
    op_name: str
    output: Output
    inputs: dict[str, str]  # role -> case file role or step id
    params: dict[str, Any]  # resolved, image parameters excluded
    image_params: dict[str, str] = field(default_factory=dict)  # parameter -> reference
    keep: bool = False

    @property
    def op(self) -> Op:
        """The operation this step runs."""
        return _cached_op(self.op_name)

    def describe(self) -> dict[str, Any]:
        """JSON-able: what the manifest records of this step."""
        return {"id": self.id, "op": self.op_name, "output": self.output, "inputs": dict(self.inputs),
                "image_params": dict(self.image_params), "params": self.params, "keep": self.keep}


@functools.cache
def _cached_op(name: str) -> Op:
    return find_op(name)


@dataclass(frozen=True)
class Plan:
    """The resolved per-case steps of a study."""

    steps: tuple[PlannedStep, ...]
    file_roles: tuple[str, ...]

    def step(self, step_id: str) -> PlannedStep:
        """The step called ``step_id``."""
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


def resolve_plan(study: Any, base: str | Path | None = None) -> Plan:
    """Find every step's op, validate its parameters and resolve its inputs; errors name the
    YAML path (``steps[2].params.sigma_mm: ...``). With ``base`` (the study's folder), parameters
    that name an input file are made absolute against it and must exist."""
    from medimg.pipeline.study import StudyError

    roles = tuple(study.inputs.files)
    outputs: dict[str, Output] = {}  # step id -> output kind
    last: dict[str, str | None] = {"image": None, "labels": None}
    planned: list[PlannedStep] = []
    for k, spec in enumerate(study.steps):
        here = f"steps[{k}]"
        try:
            op = find_op(spec.op)
        except UserInputError as err:
            raise StudyError(f"{here}.op", str(err)) from err
        if op.param_names is not None:
            for pname in spec.params:
                if pname not in op.param_names:
                    raise StudyError(f"{here}.params.{pname}", f"{op.name} has no such parameter"
                                     f"{_suggest(pname, list(op.param_names))}; parameters: "
                                     f"{', '.join(op.param_names) or 'none'}")
        given = {p: v for p, v in spec.params.items() if p not in op.image_params}
        for pname in op.file_params:
            if base is not None and isinstance(given.get(pname), str) and "://" not in given[pname]:
                path = Path(given[pname]).expanduser()
                path = path if path.is_absolute() else Path(base) / path
                if not path.is_file():
                    raise StudyError(f"{here}.params.{pname}", f"no such file: {path}")
                given[pname] = str(path.resolve())
        if op.param_names is not None and "seed" in op.param_names and "seed" not in given:
            given["seed"] = study.seed  # randomness only through the study's seed
        image_params: dict[str, str] = {}
        for pname in op.image_params:
            if pname in spec.params:
                ref = spec.params[pname]
                if not isinstance(ref, str):
                    raise StudyError(f"{here}.params.{pname}", "takes an image: name a case file role or an earlier "
                                                              f"step's id, got {ref!r}")
                image_params[pname] = _check_ref(ref, roles, outputs, f"{here}.params.{pname}")
        try:
            resolved = op.validate(given)
        except UserInputError as err:
            param, problem = _split_param_error(str(err))
            raise StudyError(f"{here}.params{'.' + param if param else ''}", problem) from err
        for pname in op.image_params:
            resolved.pop(pname, None)
        for role in spec.inputs:
            if role not in op.inputs and role not in op.optional_inputs:
                raise StudyError(f"{here}.inputs.{role}", f"{op.name} takes no input {role!r}; it takes "
                                 f"{', '.join(op.inputs + op.optional_inputs)}")
        inputs: dict[str, str] = {}
        for role in op.inputs:
            if role in spec.inputs:
                inputs[role] = _check_ref(spec.inputs[role], roles, outputs, f"{here}.inputs.{role}")
                continue
            default = _default_ref(role, roles, last)
            if default is None:
                raise StudyError(f"{here}.inputs.{role}", f"{op.name} needs an input {role!r}: name a case file "
                                 f"role ({', '.join(roles)}) or an earlier step")
            inputs[role] = default
        planned.append(PlannedStep(spec.id, op.name, op.output, inputs, resolved, image_params, spec.keep))
        outputs[spec.id] = op.output
        if op.output in last:
            last[op.output] = spec.id
        if spec.keep and op.output == "values":
            raise StudyError(f"{here}.keep", "only image and label-map outputs are kept as files; values go "
                                             "to the tables")
    if study.outputs.tables is not None:
        for k, name in enumerate(study.outputs.tables):
            if outputs.get(name) != "values":
                raise StudyError(f"outputs.tables[{k}]", f"{name!r} is not a step that gives values "
                                 f"({', '.join(s for s, o in outputs.items() if o == 'values') or 'none'})")
    return Plan(tuple(planned), roles)


def _check_ref(ref: str, roles: tuple[str, ...], outputs: Mapping[str, str], where: str) -> str:
    from medimg.pipeline.study import StudyError

    if ref in roles:
        return ref
    if ref in outputs:
        if outputs[ref] == "values":
            raise StudyError(where, f"step {ref!r} gives values, not an image")
        return ref
    raise StudyError(where, f"unknown input {ref!r}: not a case file role ({', '.join(roles)}) nor an "
                            f"earlier step{_suggest(ref, [*roles, *outputs])}")


def _suggest(ref: str, names: list[str]) -> str:
    from medimg.errors import did_you_mean

    return did_you_mean(ref, names)


def _default_ref(role: str, roles: tuple[str, ...], last: Mapping[str, str | None]) -> str | None:
    if role == "image":
        return last["image"] or ("image" if "image" in roles else None)
    if role == "mask":
        return last["labels"] or ("mask" if "mask" in roles else None)
    if role == "reference":
        return "image" if "image" in roles else None
    return role if role in roles else None


def _split_param_error(message: str) -> tuple[str, str]:
    """``filters 'gaussian': parameter sigma_mm: msg`` -> (``sigma_mm``, ``msg``), so that the
    YAML path names the parameter; other messages are kept whole."""
    import re

    m = re.match(r"^[\w ]+ '[^']+': parameter ([\w.]+): (.*)$", message, flags=re.S)
    return (m.group(1), m.group(2)) if m else ("", message)
