"""What the CLI sets up around every command: progress display, warnings, the command line.

:func:`invocation` wraps one run of :func:`medimg.cli.main.main`:

* it installs a Rich progress bar on stderr as the :mod:`medimg.core.progress` reporter, so
  the long operations a command calls (non-local means, N4, radiomics, level sets, U-Net
  inference) show how far they are -- only when stderr is a terminal;
* it prints each Python warning as one line ``warning: ...`` on stderr instead of the raw
  ``file:line: Category: message`` block with a source line;
* it remembers the command-line arguments, so a command can record the line that reproduces
  it in its provenance (:func:`command_manifest`).

Everything here is context-local (:class:`contextvars.ContextVar`); nothing is left behind
when the command returns.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from medimg.core.progress import reporting

__all__ = ["invocation", "command_argv", "command_manifest", "RichReporter"]

_ARGV: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("medimg_cli_argv", default=None)


class RichReporter:
    """A :mod:`medimg.core.progress` reporter drawing one Rich bar per piece of work (``what``).

    The display starts at the first report and a bar disappears when its work is complete.
    If another live display already holds the console (a command's own bar), reports are
    dropped rather than fighting over the terminal.
    """

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=console, transient=True,
        )
        self._tasks: dict[str, Any] = {}
        self._state = "idle"  # idle -> live | unavailable
        self._lock = threading.Lock()

    def __call__(self, done: int, total: int | None, what: str) -> None:
        with self._lock:
            if self._state == "unavailable":
                return
            if self._state == "idle":
                from rich.errors import LiveError

                try:
                    self._progress.start()
                except LiveError:
                    self._state = "unavailable"
                    return
                self._state = "live"
            task = self._tasks.get(what)
            if task is None:
                task = self._progress.add_task(what or "working", total=total)
                self._tasks[what] = task
            self._progress.update(task, completed=done, total=total)
            if total is not None and done >= total:
                self._progress.remove_task(task)
                del self._tasks[what]

    def close(self) -> None:
        """Stop the display (it leaves nothing on the terminal)."""
        with self._lock:
            if self._state == "live":
                self._progress.stop()
            self._state = "unavailable"


def _one_line_to(stream: TextIO) -> Any:
    """A ``warnings.showwarning`` that writes ``warning: <message>`` as one line on ``stream``."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        text = " ".join(str(message).split())
        with contextlib.suppress(OSError, ValueError):
            (file if file is not None else stream).write(f"warning: {text}\n")

    return show


@contextlib.contextmanager
def invocation(argv: Sequence[str], *, stderr: TextIO | None = None) -> Iterator[None]:
    """Set up one CLI run (see the module notes): argv, one-line warnings, the progress bar."""
    stream = stderr if stderr is not None else sys.stderr
    token = _ARGV.set(list(argv))
    reporter: RichReporter | None = None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_to(stream)
            if _is_terminal(stream):
                from rich.console import Console

                reporter = RichReporter(Console(file=stream, stderr=stream is sys.stderr, highlight=False))
            with reporting(reporter):
                yield
    finally:
        if reporter is not None:
            reporter.close()
        _ARGV.reset(token)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def command_argv() -> list[str] | None:
    """The running command's arguments (without ``--debug``), ``None`` outside :func:`invocation`."""
    argv = _ARGV.get()
    return None if argv is None else [a for a in argv if a != "--debug"]


def command_manifest(command: str, parameters: dict[str, Any], *, seed: int | None = None) -> Any:
    """A :class:`~medimg.core.provenance.Manifest` of the running command with its command
    line (the arguments :func:`invocation` recorded, without ``--debug``)."""
    from medimg.core.provenance import Manifest

    argv = _ARGV.get()
    if argv is not None:
        argv = [a for a in argv if a != "--debug"]
    return Manifest(command=command, parameters=parameters, seed=seed, argv=argv)
