"""The compiled-kernel switch (medimg.core.jit)."""

from __future__ import annotations

import time

import pytest

from medimg.core import jit
from medimg.errors import ParameterError


def test_switch_follows_blocks_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIMG_JIT", "1")
    monkeypatch.setattr(jit, "_NUMPY_WORK_S", jit.SWITCH_COST_S)  # the automatic policy past its switch
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


def test_automatic_policy_switches_after_numpy_work_worth_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ski rental: the NumPy path until the process spent MEDIMG_JIT_AFTER seconds on it."""
    if not jit.numba_available():
        pytest.skip("numba not installed")
    monkeypatch.setattr(jit, "_NUMPY_WORK_S", 0.0)
    monkeypatch.setenv("MEDIMG_JIT_AFTER", "1000")
    assert not jit.wanted()
    with jit.tiered():
        assert not jit.wanted()  # stable within a block
        time.sleep(0.02)
    spent = jit._NUMPY_WORK_S
    assert spent >= 0.02 and not jit.wanted()
    with jit.use_compiled(False), jit.tiered():  # an explicit choice is not counted
        time.sleep(0.01)
    assert jit._NUMPY_WORK_S == spent
    monkeypatch.setenv("MEDIMG_JIT_AFTER", repr(spent))  # the work done is worth the switch now
    assert jit.wanted()
    with jit.tiered():  # compiled now: nothing more counted
        time.sleep(0.01)
    assert jit._NUMPY_WORK_S == spent and jit.wanted()
    with jit.use_compiled(False):
        assert not jit.wanted()
    monkeypatch.setenv("MEDIMG_JIT_AFTER", "not a number")
    assert jit._switch_after_s() == jit.SWITCH_COST_S
