"""YAML as people write it today: the YAML 1.2 core schema's scalars, not YAML 1.1's.

PyYAML follows YAML 1.1, where ``10:00:00`` is the base-60 integer 36000, ``1:30`` is 90, and
``yes``/``no``/``on``/``off`` are booleans. A time of day in a parameter (``injection_time:
10:00:00``) or a Norwegian country code (``NO``) then changes silently. :func:`safe_load`
reads them as YAML 1.2 does: times and such words stay strings; ``true``/``false``, integers,
floats (``1e-3`` included) and ``null`` are typed as usual.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

__all__ = ["safe_load", "load_file", "Loader"]


class Loader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's implicit scalar types."""


Loader.yaml_implicit_resolvers = {}
Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                             list("tTfF"))
Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                             list("-+0123456789"))
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))
Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])


def _int(loader: Loader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    return int(text, 0) if text.startswith(("0o", "0x")) else int(text)


Loader.add_constructor("tag:yaml.org,2002:int", _int)


def safe_load(text: str) -> Any:
    """Parse ``text`` with :class:`Loader` (module notes)."""
    return yaml.load(text, Loader=Loader)  # noqa: S506 - Loader derives from SafeLoader


def load_file(path: str | Path, *, what: str = "file") -> Any:
    """Parse the YAML file ``path`` (:func:`safe_load`); a missing file, a syntax error (with
    its line and column) or a file that is not UTF-8 text is one
    :class:`~medimg.errors.FileFormatError` naming the file (``what``: "study file", ...)."""
    from medimg.errors import FileFormatError

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, f"no such {what}")
    try:
        return safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise FileFormatError(path, f"not valid YAML: {where}{getattr(err, 'problem', err)}") from err
    except UnicodeDecodeError as err:
        raise FileFormatError(path, "not a text file (UTF-8)") from err
