"""What every command shares: ``--param NAME=VALUE`` parsing and output-path checks.

One convention for all commands: a value is read as YAML (so ``3``, ``0.5``, ``-200``,
``[1, 2]``, ``true``, ``null`` and plain words all work), an image-typed parameter of the
operation (``mask``, ``reference``, ``markers``...) takes a file path, and ``@path`` reads an
image for any parameter.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medimg.errors import ParameterError, UserInputError

__all__ = ["parse_params", "check_output", "image_param_files", "read_input", "read_transform_input", "json_value",
           "check_choice"]


def _is_image_type(annotation: Any) -> bool:
    from medimg.core.image import Image

    if annotation is Image:
        return True
    return any(_is_image_type(a) for a in typing.get_args(annotation))


def parse_params(items: Iterable[str], entry: Any = None, *, option: str = "--param") -> dict[str, Any]:
    """``["k=v", ...]`` as keyword arguments (validated against the registry ``entry`` when given)."""
    import yaml

    from medimg import io
    from medimg.core.yamlio import safe_load

    fields = entry.params.model_fields if entry is not None else {}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise ParameterError(f"{option} {item!r}: expected NAME=VALUE, e.g. {option} sigma_mm=1.5")
        if raw.startswith("@"):
            out[key] = io.read(Path(raw[1:]))
        elif key in fields and _is_image_type(fields[key].annotation):
            out[key] = io.read(Path(raw))
        else:
            try:
                out[key] = safe_load(raw) if raw else None
            except yaml.YAMLError as err:
                raise ParameterError(f"{option} {key}: cannot parse {raw!r} ({type(err).__name__})") from err
    if entry is not None:
        entry.validate(out)
    return out


def image_param_files(items: Iterable[str], entry: Any = None) -> dict[str, Path]:
    """The parameters of ``items`` that :func:`parse_params` reads as images, with their files
    (to record them as inputs of the run)."""
    fields = entry.params.model_fields if entry is not None else {}
    out: dict[str, Path] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if raw.startswith("@"):
            out[key] = Path(raw[1:])
        elif sep and key in fields and _is_image_type(fields[key].annotation):
            out[key] = Path(raw)
    return out


def check_output(path: Path, overwrite: bool, *, suffixes: Sequence[str] | None = None) -> None:
    """Refuse to replace ``path`` without ``overwrite``, and an extension outside ``suffixes``
    (default: the image formats :func:`medimg.io.write` writes). For an image, also refuse when
    its provenance sidecar's name is taken by another image's sidecar (before any work)."""
    from medimg.core.files import full_suffix

    if suffixes is None:
        from medimg.io import WRITE_SUFFIXES

        suffixes = WRITE_SUFFIXES
    if full_suffix(path) not in suffixes:
        raise UserInputError(f"{path}: cannot write this extension; use one of {', '.join(suffixes)}")
    if path.exists() and not overwrite:
        raise UserInputError(f"{path}: exists already (pass --overwrite to replace it)")
    from medimg.io.labels import LABEL_WRITE_SUFFIXES

    if full_suffix(path) in LABEL_WRITE_SUFFIXES:
        from medimg.io.sidecar import check_sidecar_slot

        check_sidecar_slot(path)


def read_input(path: Path, role: str) -> Any:
    """Read the image a command was given as ``role`` (one line naming both when it is missing)."""
    from medimg import io

    if not path.exists():
        raise UserInputError(f"{path}: no such file or folder ({role})")
    return io.read(path)


def read_transform_input(path: Path) -> Any:
    """Read a transform file a command was given (.tfm, .txt, .h5)."""
    from medimg.registration.transform import Transform

    if not path.exists():
        raise UserInputError(f"{path}: no such transform file")
    return Transform.load(path)


def json_value(value: Any) -> Any:
    """``value`` for a command's ``--json`` output: a non-finite float is null (what a reader of
    the JSON tests for), NumPy scalars and arrays become numbers and lists, keys strings."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_value(value.tolist())
    return value


def check_choice(value: str, choices: tuple[str, ...], option: str) -> str:
    """``value`` when it is one of ``choices``; else an error naming ``option`` and the choices."""
    from medimg.errors import UnknownNameError

    if value not in choices:
        raise UnknownNameError(option, value, choices)
    return value
