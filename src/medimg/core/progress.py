"""Progress of long operations, without tying operations to a display.

An operation that can run for more than a few seconds (non-local means, N4, radiomics
extraction, level sets, U-Net inference) reports how far it is with :func:`report` or a
:class:`Steps` counter. By default nothing listens and a report costs one context-variable
look-up. Whoever wants to see progress installs a *reporter* for a block of code with
:func:`reporting`; the CLI installs a Rich progress bar on stderr, a notebook could install a
tqdm bar, a pipeline could log. The reporter lives in a :class:`contextvars.ContextVar`, so it
is local to the calling thread (and asyncio task) and there is no module-level flag to
save and restore.

A reporter is any callable ``reporter(done, total, what)``:

* ``done`` -- units of work finished so far (an int, monotone within one ``what``);
* ``total`` -- units in all, or ``None`` when unknown;
* ``what`` -- a short label of the work (``"nlm"``, ``"features: glcm"``), the key a display
  uses to tell concurrent or nested pieces of work apart.

Threads started by an operation do not inherit the caller's context; create a :class:`Steps`
in the calling thread (it captures the reporter) and call :meth:`Steps.advance` from the
workers: it is thread-safe.

Examples
--------
>>> from medimg.core import progress
>>> seen = []
>>> with progress.reporting(lambda done, total, what: seen.append((done, total, what))):
...     steps = progress.Steps(2, "demo")
...     steps.advance()
...     steps.advance()
>>> seen
[(0, 2, 'demo'), (1, 2, 'demo'), (2, 2, 'demo')]
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

__all__ = ["Reporter", "reporting", "report", "current", "Steps", "track"]

T = TypeVar("T")


class Reporter(Protocol):
    """What :func:`reporting` installs: called as ``reporter(done, total, what)``."""

    def __call__(self, done: int, total: int | None, what: str) -> None: ...  # pragma: no cover


_REPORTER: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("medimg_progress_reporter",
                                                                           default=None)


@contextlib.contextmanager
def reporting(reporter: Reporter | None) -> Iterator[Reporter | None]:
    """Install ``reporter`` for the code inside the ``with`` block (``None``: silence it).

    The previous reporter comes back on exit, exceptions included; blocks nest.
    """
    token = _REPORTER.set(reporter)
    try:
        yield reporter
    finally:
        _REPORTER.reset(token)


def current() -> Reporter | None:
    """The reporter installed in this context, or ``None`` (the default: nobody listens)."""
    return _REPORTER.get()


def report(done: int, total: int | None, what: str = "") -> None:
    """Tell the installed reporter that ``done`` of ``total`` units of ``what`` are finished.

    A no-op when no reporter is installed. A reporter's own exception propagates (a display
    that breaks should be seen, not hidden).
    """
    reporter = _REPORTER.get()
    if reporter is not None:
        reporter(done, total, what)


class Steps:
    """A thread-safe counter of ``total`` steps of ``what`` that reports as it advances.

    The count never passes ``total`` and completion is reported once. It captures the reporter installed when it is created, so worker threads may call
    :meth:`advance`. Creating it reports ``(0, total, what)``; with no reporter installed it
    does nothing at all.

    Parameters
    ----------
    total
        Number of steps, or ``None`` when unknown.
    what
        Label of the work.
    """

    __slots__ = ("total", "what", "done", "_reporter", "_lock")

    def __init__(self, total: int | None, what: str) -> None:
        self.total = None if total is None else int(total)
        self.what = what
        self.done = 0
        self._reporter = _REPORTER.get()
        self._lock = threading.Lock() if self._reporter is not None else None
        if self._reporter is not None:
            self._reporter(0, self.total, what)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more steps done and report."""
        if self._reporter is None:
            return
        with self._lock:  # type: ignore[union-attr]
            done = self.done + n
            if self.total is not None:
                if self.done >= self.total:
                    return  # complete already: an estimate of the total was short
                done = min(done, self.total)
            self.done = done
            self._reporter(done, self.total, self.what)

    def update(self, done: int) -> None:
        """Set the count to ``done`` (for callbacks that give a running total) and report."""
        if self._reporter is None:
            return
        self.advance(int(done) - self.done)

    def finish(self) -> None:
        """Report the work complete (``done = total``), e.g. after an early convergence; an
        open-ended count (``total=None``) gets ``total = done``."""
        if self._reporter is None:
            return
        with self._lock:  # type: ignore[union-attr]
            if self.total is None:
                self.total = self.done  # an open-ended count ends where it stands
            elif self.done >= self.total:
                return  # reported complete already
            self.done = self.total
            self._reporter(self.done, self.total, self.what)


def track(items: Iterable[T], what: str, *, total: int | None = None) -> Iterator[T]:
    """Yield ``items``, reporting one step after each (``total`` defaults to ``len(items)``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    steps = Steps(total, what)
    for item in items:
        yield item
        steps.advance()
    steps.finish()
