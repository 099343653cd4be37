"""Registries of named operations, filled by declaration.

Each family of named variants (segmentation methods, feature families, filters, ...) has one
:class:`Registry`. The families themselves are declared once, in :data:`KINDS` (with the module
whose import fills each one); asking for a kind that is not declared is an error, so a typo
cannot create a new, empty registry. A function is registered once with
:meth:`Registry.register`; its keyword parameters (with their type hints and defaults) become a
pydantic model that validates values coming from the CLI or a YAML pipeline, and
:meth:`Entry.validate` returns every resolved parameter (defaults included) so that a manifest
can record exactly what ran. Entries carry declared *tags* (e.g. ``"denoiser"``); the tags are
declared in :data:`TAGS`. The CLI ``medimg list``, configuration validation and "unknown name"
errors all read the same registry, so there is no second list of names.

Calling convention: a dispatcher takes the operation's name positionally only
(``apply(image, name, /, **params)``), so no parameter of an operation can collide with it.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from medimg.errors import ParameterError, UnknownNameError, did_you_mean

__all__ = ["Registry", "Entry", "Kind", "KINDS", "TAGS", "REGISTRIES", "registry", "load_registries",
           "type_name"]


@dataclass(frozen=True)
class Kind:
    """A declared family of named operations: its name, the module whose import registers its
    entries, and a one-line description."""

    name: str
    module: str
    summary: str


#: Every kind of registered operation, declared once. ``module`` is imported by
#: :func:`load_registries` (``medimg list``, the pipeline) to fill the registry.
KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("filters", "medimg.filters", "image filters: noise reduction, enhancement, intensity, resampling"),
    Kind("quality", "medimg.quality", "image quality metrics (full-reference and no-reference)"),
    Kind("segmentation", "medimg.segmentation", "segmentation methods and label-map morphology"),
    Kind("features", "medimg.features", "radiomics feature families (IBSI chapter 1)"),
    Kind("feature_filters", "medimg.features.filters", "convolutional filters for radiomics (IBSI chapter 2)"),
    Kind("classifiers", "medimg.ml", "classifiers for feature tables"),
    Kind("registration", "medimg.registration", "image registration methods"),
)}

#: Tags an entry may declare (``register(name, tags=(...))``), with what each means.
TAGS: dict[str, str] = {
    "denoiser": "reduces noise while keeping the image's grid and units (compared by `denoise-compare`)",
    "enhancement": "changes contrast or sharpness for viewing",
    "intensity": "maps intensities to other units or a standard range",
    "geometry": "changes the grid (resampling)",
    "morphology": "operates on a label map",
    "learned": "needs a trained model",
}


@dataclass(frozen=True)
class Entry:
    """One registered operation."""

    name: str
    kind: str
    func: Callable[..., Any]
    params: type[pydantic.BaseModel]
    summary: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()

    def validate(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``values`` against the parameter model and return every parameter resolved:
        the given values (validated) and the defaults of those not given. Unknown keys get a
        did-you-mean; a missing required parameter is named."""
        known = set(self.params.model_fields)
        for key in values:
            if key not in known:
                msg = (
                    f"{self.kind} {self.name!r} has no parameter {key!r}"
                    f"{did_you_mean(key, known)}; parameters: {', '.join(sorted(known)) or 'none'}"
                )
                raise ParameterError(msg)
        try:
            model = self.params(**values)
        except pydantic.ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            msg = f"{self.kind} {self.name!r}: parameter {loc}: {first['msg']}"
            raise ParameterError(msg) from err
        return {k: getattr(model, k) for k in self.params.model_fields}

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        params = self.validate(kwargs)
        return self.func(*args, **self.fixed, **params)

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, type, default) of each parameter."""
        rows = []
        for name, info in self.params.model_fields.items():
            default = "required" if info.is_required() else repr(info.default)
            rows.append((name, type_name(info.annotation), default))
        return rows


def type_name(annotation: Any) -> str:
    """A short readable name of a type hint: ``float | None``, ``'nearest' | 'linear'``, ``Sequence[float]``."""
    import types

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        bounds = []
        for meta in args[1:]:
            for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
                if getattr(meta, attr, None) is not None and type(meta).__name__.lower() in (attr, "interval"):
                    bounds.append(f"{sign} {getattr(meta, attr)}")
        return " ".join([type_name(args[0]), *bounds])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if annotation is type(None):
        return "None"
    if origin is not None:
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join(type_name(a) for a in args)}]" if args else base
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _params_model(func: Callable[..., Any], name: str, skip: set[str]) -> type[pydantic.BaseModel]:
    sig = inspect.signature(func)
    hints = typing.get_type_hints(func, include_extras=True)
    fields: dict[str, Any] = {}
    for pname, param in sig.parameters.items():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY or pname in skip:
            continue
        ann = hints.get(pname, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (ann, default)
    model_name = "".join(part.capitalize() for part in name.replace("-", "_").split("_")) + "Params"
    return pydantic.create_model(
        model_name,
        __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )


class Registry:
    """A named collection of operations of one kind (e.g. ``"segmentation"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, *, fixed: Mapping[str, Any] | None = None,
                 tags: Iterable[str] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register ``func`` under ``name``.

        Only keyword-only parameters become user-facing parameters; ``fixed`` binds some of them
        (so one function can back several named variants, e.g. ``otsu`` and ``li``). ``tags``
        are declared in :data:`TAGS` (e.g. ``"denoiser"``).
        """
        tag_set = frozenset(tags)
        unknown = tag_set - set(TAGS)
        if unknown:
            raise ValueError(f"{self.kind} {name!r}: undeclared tag(s) {', '.join(sorted(unknown))}; "
                             f"declared: {', '.join(sorted(TAGS))}")

        def deco(func: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = inspect.getdoc(func) or ""
            summary = doc.strip().splitlines()[0] if doc.strip() else ""
            fixed_d = dict(fixed or {})
            self._entries[name] = Entry(
                name=name,
                kind=self.kind,
                func=func,
                params=_params_model(func, name, set(fixed_d)),
                summary=summary,
                fixed=fixed_d,
                tags=tag_set,
            )
            return func

        return deco

    def get(self, name: str) -> Entry:
        """The entry called ``name``; :class:`UnknownNameError` with suggestions otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def names(self, *, tag: str | None = None) -> list[str]:
        """Registered names, sorted; only those tagged ``tag`` when given."""
        if tag is not None and tag not in TAGS:
            raise UnknownNameError("tag", tag, TAGS)
        return sorted(n for n, e in self._entries.items() if tag is None or tag in e.tags)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


#: Every registry, by kind (one per entry of :data:`KINDS`).
REGISTRIES: dict[str, Registry] = {name: Registry(name) for name in KINDS}


def registry(kind: str) -> Registry:
    """The registry of a declared ``kind`` (:data:`KINDS`); :class:`UnknownNameError` otherwise."""
    try:
        return REGISTRIES[kind]
    except KeyError:
        raise UnknownNameError("kind", kind, KINDS) from None


def load_registries(kinds: Iterable[str] | None = None) -> dict[str, Registry]:
    """The registries of ``kinds`` (default: all), after importing the modules that fill them.

    A kind whose module is not installed (an optional extra) is left empty."""
    import importlib
    import importlib.util

    names = list(KINDS) if kinds is None else list(kinds)
    for name in names:
        module = KINDS[name].module if name in KINDS else registry(name).kind
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            importlib.import_module(module)
    return {name: REGISTRIES[name] for name in names}
