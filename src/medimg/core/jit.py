"""Optional compiled (numba) kernels: one switch for every hot loop that has a compiled twin.

A kernel module keeps its loops as plain Python functions and compiles them on first use with
:func:`compile_kernel`; the caller asks :func:`wanted` whether to use them. Every compiled kernel
has a NumPy path computing the same values (tests compare the two), so numba is never required.

Policy (``compiled`` below, set for a block of work with :func:`use_compiled`):

* ``None`` (default, automatic): the NumPy path until this process has spent as long in it (work
  timed by :func:`tiered`) as switching to the compiled kernels costs (``SWITCH_COST_S``: importing
  numba and loading the kernels' cached machine code, 0.75 s measured on the 2-core development
  machine; ``MEDIMG_JIT_AFTER`` overrides it), then compiled where numba is installed. This is the
  ski-rental rule: a one-off call never pays the switch (a single case: 0.3 s from a fresh
  process on the NumPy path, 1.1 s with the kernels loaded), a long batch pays it once, and no
  run takes more than the best of the two choices plus ``SWITCH_COST_S``.
* ``False``: the NumPy path.
* ``True``: compiled; :class:`~medimg.errors.ParameterError` where numba is not installed.

``MEDIMG_JIT=0`` switches the compiled kernels off everywhere.

Kernels are compiled with ``cache=True`` (machine code kept beside the module, or in numba's user
cache where that folder is read-only), so a process pays compilation once per installation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.util import find_spec
from typing import Any

from medimg.errors import ParameterError

_COMPILED: ContextVar[bool | None] = ContextVar("medimg_compiled", default=None)
_AVAILABLE: bool | None = None

#: Seconds a switch to the compiled kernels costs a process (numba's import and the kernels' cached
#: machine code loaded), measured on the 2-core development machine (BENCHMARKS.md, PyRadiomics mode).
SWITCH_COST_S = 0.75
_NUMPY_WORK_S = 0.0  # NumPy-path seconds this process spent under the automatic policy
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


def _switch_after_s() -> float:
    try:
        return float(os.environ.get("MEDIMG_JIT_AFTER", SWITCH_COST_S))
    except ValueError:
        return SWITCH_COST_S


def wanted() -> bool:
    """Whether the current block of work should use compiled kernels (see the module notes)."""
    flag = _COMPILED.get()
    if flag is None:
        return numba_available() and _NUMPY_WORK_S >= _switch_after_s()
    return bool(flag) and numba_available()


@contextmanager
def tiered() -> Iterator[None]:
    """Time the block as NumPy-path work when the automatic policy has it on the NumPy path (and
    numba could take over); the time counts towards the switch (:data:`SWITCH_COST_S`)."""
    global _NUMPY_WORK_S
    if _COMPILED.get() is not None or not numba_available() or wanted():
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        _NUMPY_WORK_S += time.perf_counter() - start


def module_kernel(namespace: dict[str, Any], helpers: tuple[str, ...], name: str) -> Callable[..., Any]:
    """The compiled version of the function ``namespace[name]`` of a kernel module (its
    ``globals()``), its ``helpers`` (functions the kernel calls) compiled first: each is rebound in
    ``namespace`` to its compiled version, because numba resolves a kernel's globals when it
    compiles it. Call only when :func:`wanted` is true."""
    for helper in (*helpers, name):
        func = namespace[helper]
        if not hasattr(func, "py_func"):
            namespace[helper] = compile_kernel(func)
    return namespace[name]


def compile_kernel(func: Callable[..., Any], **options: Any) -> Callable[..., Any]:
    """``func`` compiled by ``numba.njit(cache=True, nogil=True, **options)``, once per process.

    Call only when :func:`wanted` is true (numba is imported here)."""
    kernel = _CACHE.get(func)
    if kernel is None:
        import numba

        kernel = numba.njit(cache=True, nogil=True, **options)(func)
        _CACHE[func] = kernel
    return kernel
