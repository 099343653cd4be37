"""Registries of named operations, filled by declaration.

Each family of named variants (segmentation methods, feature families, filters, ...) has one
:class:`Registry`. A function is registered once with :meth:`Registry.register`; its keyword
parameters (with their type hints and defaults) become a pydantic model that validates values
coming from the CLI or a YAML pipeline. The CLI ``medimg list``, configuration validation and
"unknown name" errors all read the same registry, so there is no second list of names.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from medimg.errors import ParameterError, UnknownNameError, did_you_mean

__all__ = ["Registry", "Entry", "REGISTRIES", "registry", "type_name"]


@dataclass(frozen=True)
class Entry:
    """One registered operation."""

    name: str
    kind: str
    func: Callable[..., Any]
    params: type[pydantic.BaseModel]
    summary: str
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def validate(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``values`` against the parameter model; unknown keys get a did-you-mean."""
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
        return {k: getattr(model, k) for k in values}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
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
        return type_name(args[0])
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

    def register(self, name: str, *, fixed: Mapping[str, Any] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register ``func`` under ``name``.

        Only keyword-only parameters become user-facing parameters; ``fixed`` binds some of them
        (so one function can back several named variants, e.g. ``otsu`` and ``li``).
        """

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
            )
            return func

        return deco

    def get(self, name: str) -> Entry:
        """The entry called ``name``; :class:`UnknownNameError` with suggestions otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


#: Every registry, by kind. Modules create theirs with :func:`registry`.
REGISTRIES: dict[str, Registry] = {}


def registry(kind: str) -> Registry:
    """The registry for ``kind``, created on first use."""
    if kind not in REGISTRIES:
        REGISTRIES[kind] = Registry(kind)
    return REGISTRIES[kind]
