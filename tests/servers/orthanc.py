"""A real Orthanc PACS for the tests, reachable on loopback only.

Orthanc 1.10 has no bind-address option, so it runs in a network namespace of its own
(``unshare --net``) where only ``lo`` exists; the tests enter that namespace
(:func:`servers.netns.entered`) to talk to it. TCP_NODELAY=1 keeps C-STORE fast.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from servers.netns import entered

PLUGIN = Path(os.environ.get("MEDIMG_ORTHANC_DICOMWEB", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"))
HTTP_PORT, DICOM_PORT, MOVE_PORT = 8042, 4242, 11113


@dataclass
class OrthancServer:
    """A running Orthanc: its process, folder and the addresses seen from inside its namespace."""

    process: subprocess.Popen
    folder: Path
    aet: str = "ORTHANC"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def dimse(self) -> str:
        return f"dicom://{self.aet}@127.0.0.1:{DICOM_PORT}"

    @property
    def dicomweb(self) -> str:
        return f"http://127.0.0.1:{HTTP_PORT}/dicom-web"

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{HTTP_PORT}"


def why_unavailable() -> str | None:
    """A reason to skip, or ``None`` when Orthanc can be run here."""
    for tool in ("Orthanc", "unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install orthanc orthanc-dicomweb iproute2 util-linux)"
    if not PLUGIN.is_file():
        return f"Orthanc DICOMweb plugin not found at {PLUGIN} (apt-get install orthanc-dicomweb)"
    if not Path("/proc/self/ns/net").exists():
        return "network namespaces are not available"
    if os.geteuid() != 0:
        return "running Orthanc in its own network namespace needs root (unshare --net, setns)"
    return None


def start(timeout: float = 20.0) -> OrthancServer:
    """Start Orthanc in a new network namespace with its own storage folder; wait until it answers."""
    folder = Path(tempfile.mkdtemp(prefix="medimg-orthanc-"))
    config = {
        "Name": "medimg-test", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "storage"),
        "Plugins": [str(PLUGIN)], "HttpPort": HTTP_PORT, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "DicomAet": "ORTHANC", "DicomPort": DICOM_PORT,
        "DicomCheckCalledAet": False, "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True, "DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True,
        "DicomModalities": {"medimg": ["MEDIMG", "127.0.0.1", MOVE_PORT]},
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                     "Host": "127.0.0.1", "Ssl": False},
        "StableAge": 1,
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115 - closed with the process
    env = dict(os.environ, TCP_NODELAY="1")
    # unshare execs sh, which execs Orthanc: the Popen pid is Orthanc's, in the new namespace
    process = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", f"ip link set lo up && exec Orthanc {folder / 'orthanc.json'}"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    server = OrthancServer(process, folder)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            text = (folder / "orthanc.log").read_text(errors="replace")[-2000:]
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError(f"Orthanc exited with {process.returncode}:\n{text}")
        try:
            with entered(process.pid):
                with urllib.request.urlopen(f"{server.rest}/system", timeout=1) as response:
                    if response.status == 200:
                        return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop(server)
            raise RuntimeError(f"Orthanc did not answer within {timeout} s")
        time.sleep(0.1)


def stop(server: OrthancServer, timeout: float = 15.0) -> None:
    """Stop Orthanc (SIGTERM, then SIGKILL), wait for it to exit and remove its folder."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    shutil.rmtree(server.folder, ignore_errors=True)
