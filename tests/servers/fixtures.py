"""pytest fixtures for the throwaway servers; import them into a test module to use them.

* ``postgres_url`` (session): URL of a fresh database on a private PostgreSQL cluster.
* ``orthanc`` (session): a running :class:`~servers.orthanc.OrthancServer`.
* ``in_orthanc_netns`` (function): the test body runs inside Orthanc's network namespace.

Each skips with the reason when its server cannot be run here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servers import orthanc as orthanc_mod
from servers import postgres as postgres_mod
from servers.netns import entered


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    reason = postgres_mod.why_unavailable()
    if reason:
        pytest.skip(reason)
    server = postgres_mod.start()
    try:
        yield server.url
    finally:
        postgres_mod.stop(server)


@pytest.fixture(scope="session")
def orthanc() -> Iterator[orthanc_mod.OrthancServer]:
    reason = orthanc_mod.why_unavailable()
    if reason:
        pytest.skip(reason)
    server = orthanc_mod.start()
    try:
        yield server
    finally:
        orthanc_mod.stop(server)


@pytest.fixture
def in_orthanc_netns(orthanc: orthanc_mod.OrthancServer) -> Iterator[orthanc_mod.OrthancServer]:
    with entered(orthanc.pid):
        yield orthanc
