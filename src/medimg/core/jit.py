"""Optional compiled (numba) kernels: one switch for every hot loop that has a compiled twin.

A kernel module keeps its loops as plain Python functions and compiles them on first use with
:func:`compile_kernel`; the caller asks :func:`wanted` whether to use them. Every compiled kernel
has a NumPy path computing the same values (tests compare the two), so numba is never required.

Policy (``compiled`` below, set for a block of work with :func:`use_compiled`):

* ``None`` (default): compiled where numba is installed and ``MEDIMG_JIT`` is not ``0``.
* ``False``: the NumPy path. A single case from a fresh process uses it (``medimg features``):
  importing numba (about 0.3 s on 2 cores) and loading its cached machine code cost more than
  the kernels save on one ROI.
* ``True``: compiled; :class:`~medimg.errors.ParameterError` where numba is not installed.

Kernels are compiled with ``cache=True`` (machine code kept beside the module, or in numba's user
cache where that folder is read-only), so a process pays compilation once per installation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.util import find_spec
from typing import Any

from medimg.errors import ParameterError

_COMPILED: ContextVar[bool | None] = ContextVar("medimg_compiled", default=None)
_AVAILABLE: bool | None = None
_CACHE: dict[Callable[..., Any], Callable[..., Any]] = {}


def numba_available() -> bool:
    """Whether numba is installed and not switched off by ``MEDIMG_JIT=0`` (numba is not imported)."""
    global _AVAILABLE
    if os.environ.get("MEDIMG_JIT", "1") == "0":
        return False
    if _AVAILABLE is None:
        _AVAILABLE = find_spec("numba") is not None
    return _AVAILABLE


@contextmanager
def use_compiled(compiled: bool | None) -> Iterator[None]:
    """Within the block, :func:`wanted` follows ``compiled`` (see the module notes); restored after."""
    if compiled and not numba_available():
        raise ParameterError("compiled=True needs numba (pip install numba) and MEDIMG_JIT not 0")
    token = _COMPILED.set(compiled)
    try:
        yield
    finally:
        _COMPILED.reset(token)


def wanted() -> bool:
    """Whether the current block of work should use compiled kernels."""
    flag = _COMPILED.get()
    if flag is None:
        return numba_available()
    return bool(flag) and numba_available()


def compile_kernel(func: Callable[..., Any], **options: Any) -> Callable[..., Any]:
    """``func`` compiled by ``numba.njit(cache=True, nogil=True, **options)``, once per process.

    Call only when :func:`wanted` is true (numba is imported here)."""
    kernel = _CACHE.get(func)
    if kernel is None:
        import numba

        kernel = numba.njit(cache=True, nogil=True, **options)(func)
        _CACHE[func] = kernel
    return kernel
