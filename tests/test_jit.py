"""The compiled-kernel switch (medimg.core.jit)."""

from __future__ import annotations

import pytest

from medimg.core import jit
from medimg.errors import ParameterError


def test_switch_follows_blocks_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIMG_JIT", "1")
    base = jit.numba_available()
    assert jit.wanted() is base
    with jit.use_compiled(False):
        assert jit.wanted() is False
        with jit.use_compiled(None):
            assert jit.wanted() is base
        assert jit.wanted() is False
    assert jit.wanted() is base
    monkeypatch.setenv("MEDIMG_JIT", "0")
    assert not jit.numba_available() and not jit.wanted()
    with pytest.raises(ParameterError, match="numba"), jit.use_compiled(True):
        pass


def test_compile_kernel_once_and_correct() -> None:
    pytest.importorskip("numba")

    def add(a: float, b: float) -> float:
        return a + b

    k = jit.compile_kernel(add)
    assert k is jit.compile_kernel(add)
    assert k(2.0, 3.5) == 5.5
