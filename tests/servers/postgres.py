"""A private PostgreSQL cluster for the tests: 127.0.0.1 on a free port, a temporary folder."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("MEDIMG_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class PostgresServer:
    """A running cluster and the SQLAlchemy URL of its test database."""

    folder: Path
    port: int
    prefix: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/medimg_test"


def why_unavailable() -> str | None:
    """A reason to skip, or ``None`` when a cluster can be started here."""
    for tool in ("initdb", "pg_ctl", "createdb"):
        if not (PG_BIN / tool).is_file():
            return f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "runuser not found (needed to run PostgreSQL as the postgres user)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr or done.stdout}")


def start() -> PostgresServer:
    """initdb + pg_ctl start (127.0.0.1, socket in the folder) + createdb; about a second."""
    folder = Path(tempfile.mkdtemp(prefix="medimg-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    try:
        _run([*prefix, str(PG_BIN / "initdb"), "-D", str(folder / "data"), "-U", "postgres", "--auth=trust",
              "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"])
        _run([*prefix, str(PG_BIN / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "server.log"),
              "-w", "-t", "30", "-o",
              f"-k {folder} -h 127.0.0.1 -p {port} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
              "start"])
        _run([*prefix, str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "medimg_test"])
    except Exception:
        stop(PostgresServer(folder, port, prefix))
        raise
    return PostgresServer(folder, port, prefix)


def stop(server: PostgresServer) -> None:
    """pg_ctl stop (fast) and remove the folder."""
    if (server.folder / "data" / "postmaster.pid").exists():
        subprocess.run([*server.prefix, str(PG_BIN / "pg_ctl"), "-D", str(server.folder / "data"), "-m", "fast",
                        "-w", "stop"], capture_output=True, check=False)
    shutil.rmtree(server.folder, ignore_errors=True)
