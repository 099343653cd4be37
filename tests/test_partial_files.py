"""Nothing half-written survives: partial files of killed writers are removed by the next write
into their folder; SIGTERM and SIGINT of a command remove its own partial output."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from medimg.core import files
from medimg.core.files import atomic_dir, atomic_path, remove_stale_partials

_WRITER = """
import sys, time
from medimg.core.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half")
    print("writing", flush=True)
    time.sleep(60)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _start_writer(target: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], env=_env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def _partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


def test_partials_of_a_killed_writer_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "out.nii.gz"
    proc = _start_writer(target)
    proc.kill()
    proc.wait()
    [left] = _partials(tmp_path)
    assert left.startswith(".out.") and left.endswith(".part.nii.gz") and f"-{proc.pid}-" in left
    files._CLEANED.clear()  # this process has not written into tmp_path yet
    with atomic_path(tmp_path / "other.nii.gz") as tmp:
        tmp.write_bytes(b"whole")
    assert _partials(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.nii.gz"]


def test_partials_of_running_writers_and_other_hosts_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "out.nrrd"
    proc = _start_writer(target)
    foreign = tmp_path / ".out.ffffff-1-abcdefgh.part.nrrd"  # another host's writer
    foreign.write_bytes(b"")
    try:
        assert remove_stale_partials(tmp_path, again=True) == []
        assert len(_partials(tmp_path)) == 2
    finally:
        proc.kill()
        proc.wait()
    removed = remove_stale_partials(tmp_path, again=True)
    assert [p.name for p in removed] != [] and _partials(tmp_path) == [foreign.name]


def test_stale_partial_folders_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    host = files._host_tag()
    stale = tmp_path / f".series.{host}-{pid}-zzzz.part"
    stale.mkdir()
    (stale / "a.dcm").write_bytes(b"x")
    files._CLEANED.clear()
    with atomic_dir(tmp_path / "series") as tmp:
        (tmp / "b.dcm").write_bytes(b"y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]
    assert socket.gethostname()  # the host tag is derived from it


_COMMAND = """
import sys, time
from medimg.cli.main import _terminate_as_exit
from medimg.core.files import atomic_path
with _terminate_as_exit():
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"half")
        print("writing", flush=True)
        time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_command_stopped_by_a_signal_removes_its_partial_output(tmp_path: Path, sig: int) -> None:
    """The CLI turns SIGTERM/SIGHUP into an orderly exit (Ctrl-C already is one): the partial
    output is removed, the exit status says the command was stopped."""
    target = tmp_path / "out.nii.gz"
    # A shell starts background jobs with SIGINT ignored, and the child inherits that (Python then
    # keeps ignoring Ctrl-C, as it should in a background job): give the command the disposition
    # of an interactive one, whatever launched the tests.
    proc = subprocess.Popen([sys.executable, "-c", _COMMAND, str(target)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "writing"
    assert len(_partials(tmp_path)) == 1
    proc.send_signal(sig)
    proc.wait(30)
    assert proc.returncode != 0
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_just_after_the_partial_is_created_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    """A signal's exception can arrive the moment the partial file exists, before the caller's
    cleanup would know its name (as mkstemp's return can be interrupted): the partial is removed
    and the target is not created."""
    real_close = os.close
    calls = []

    def interrupted_close(fd: int) -> None:
        real_close(fd)
        calls.append(fd)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "close", interrupted_close)
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "out.nii.gz") as tmp:
        tmp.write_bytes(b"never")
    assert calls and list(tmp_path.iterdir()) == []
