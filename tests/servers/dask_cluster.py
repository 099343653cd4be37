"""A real Dask cluster on loopback for the tests: `dask scheduler` and `dask worker` processes
started on 127.0.0.1 (every port on loopback), stopped by the fixture."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dask_cli() -> list[str]:
    exe = Path(sys.executable).with_name("dask")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dask"]


@contextmanager
def dask_cluster(n_workers: int = 2, env: dict[str, str] | None = None) -> Iterator[str]:
    """Yield the address of a scheduler with ``n_workers`` single-threaded workers."""
    from distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    environ = {**os.environ, **(env or {})}
    procs = [subprocess.Popen([*_dask_cli(), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard", "--dashboard-address", "127.0.0.1:0"], env=environ,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for k in range(n_workers):
            procs.append(subprocess.Popen([*_dask_cli(), "worker", address, "--nworkers", "1", "--nthreads", "1",
                                           "--memory-limit", "2GB", "--host", "127.0.0.1", "--no-dashboard",
                                           "--dashboard-address", "127.0.0.1:0", "--name", f"w{k}"],
                                          env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout="5s") as client:
                    client.wait_for_workers(n_workers, timeout=60)
                break
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield address
    finally:
        for proc in reversed(procs):  # workers first
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
