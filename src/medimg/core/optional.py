"""Optional heavy dependencies, imported on demand with an error that names the pip extra."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from medimg.errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, *, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``medimg[extra]``."""
    top = module.split(".")[0]
    if importlib.util.find_spec(top) is None:
        msg = f"`{top}` is needed for this; install it with `pip install 'medimg[{extra}]'`."
        raise MissingDependencyError(msg)
    return importlib.import_module(module)
