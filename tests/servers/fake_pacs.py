"""Small misbehaving PACS for the tests: pynetdicom SCPs and a DICOMweb server on 127.0.0.1.

They answer the way a broken or hostile PACS does, which a real Orthanc will not do on demand:

* :class:`FlakyStoreSCP` stores C-STOREs but aborts the association, goes silent (so that the
  caller's DIMSE timeout expires) or answers "out of resources" at the calls it is told to;
  pynetdicom's C-STORE then returns an *empty* Dataset (no Status) to the sender.
* :class:`HostileRetrieveSCP` answers C-GET and C-MOVE with the instances it is given (UIDs such
  as ``..`` included), and can abort the first retrieve.
* :func:`hostile_dicomweb` serves the same instances over WADO-RS (multipart/related).

Everything listens on an ephemeral port of 127.0.0.1 and stops when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian


def ct_instance(study: str, series: str, sop: str, value: int = 0, patient: str = "P1") -> Dataset:
    """A 4x4 CT image with the given UIDs (any text: the hostile PACS sends what it likes)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientID = patient
    ds.PatientName = "TEST^PATIENT"
    ds.Modality = "CT"
    ds.InstanceNumber = 1
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes([value % 256, 0]) * 16
    return ds


@dataclass
class FlakyStoreSCP:
    """A C-STORE (and C-FIND) SCP that misbehaves at chosen C-STORE calls (1-based, counted over
    every association): ``abort_at`` aborts the association, ``silent_at`` waits ``silence_s``
    without answering, ``busy_at`` answers 0xA700 (out of resources). ``down_after``: from that
    call on, every association is rejected. ``find=False``: no C-FIND service. Stored instances
    are kept by SOP Instance UID."""

    abort_at: set[int] = field(default_factory=set)
    silent_at: set[int] = field(default_factory=set)
    busy_at: set[int] = field(default_factory=set)
    down_after: int | None = None
    silence_s: float = 3.0
    find: bool = True
    aet: str = "FLAKY"
    stored: dict[str, bytes] = field(default_factory=dict)
    calls: int = 0
    associations: int = 0
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _store(self, event: Any) -> int | Dataset:
        with self._lock:
            self.calls += 1
            n = self.calls
        if n in self.abort_at:
            event.assoc.abort()
            return 0x0000  # never reaches the sender
        if n in self.silent_at:
            time.sleep(self.silence_s)
            return 0x0000  # too late: the sender gave up and aborted
        if n in self.busy_at:
            return 0xA700
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self._lock:
            self.stored[str(ds.SOPInstanceUID)] = bytes(ds.PixelData)
        return 0x0000

    def _find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        wanted = event.identifier
        with self._lock:
            held = list(self.stored)
        for uid in held:
            out = Dataset()
            out.QueryRetrieveLevel = "IMAGE"
            out.StudyInstanceUID = wanted.get("StudyInstanceUID", "")
            out.SeriesInstanceUID = wanted.get("SeriesInstanceUID", "")
            out.SOPInstanceUID = uid
            yield 0xFF00, out

    def _open(self, event: Any) -> None:
        with self._lock:
            self.associations += 1
            if self.down_after is not None and self.calls >= self.down_after:
                event.assoc.abort()

    @contextlib.contextmanager
    def running(self) -> Iterator[FlakyStoreSCP]:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

        ae = AE(ae_title=self.aet)
        ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        if self.find:
            ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 10
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
            (evt.EVT_C_STORE, self._store), (evt.EVT_C_FIND, self._find), (evt.EVT_CONN_OPEN, self._open)])
        self.port = server.server_address[1]
        try:
            yield self
        finally:
            server.shutdown()

    @property
    def url(self) -> str:
        return f"dicom://{self.aet}@127.0.0.1:{self.port}"


@dataclass
class HostileRetrieveSCP:
    """Answers every C-GET and C-MOVE with ``instances`` (whatever their UIDs say); with
    ``abort_first`` the first retrieve association is aborted before anything is sent."""

    instances: Sequence[Dataset]
    abort_first: bool = False
    aet: str = "HOSTILE"
    port: int = 0
    move_port: int = 0
    retrieves: int = 0

    def _get(self, event: Any) -> Iterator[Any]:
        self.retrieves += 1
        if self.abort_first and self.retrieves == 1:
            event.assoc.abort()
            return
        yield len(self.instances)
        for ds in self.instances:
            yield 0xFF00, ds

    def _move(self, event: Any) -> Iterator[Any]:
        self.retrieves += 1
        yield "127.0.0.1", self.move_port
        if self.abort_first and self.retrieves == 1:
            event.assoc.abort()
            return
        yield len(self.instances)
        for ds in self.instances:
            yield 0xFF00, ds

    @contextlib.contextmanager
    def running(self) -> Iterator[HostileRetrieveSCP]:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import (
            StudyRootQueryRetrieveInformationModelGet,
            StudyRootQueryRetrieveInformationModelMove,
        )

        ae = AE(ae_title=self.aet)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
        ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian],
                                 scp_role=True, scu_role=False)
        ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 10
        server = ae.start_server(("127.0.0.1", 0), block=False,
                                 evt_handlers=[(evt.EVT_C_GET, self._get), (evt.EVT_C_MOVE, self._move)])
        self.port = server.server_address[1]
        try:
            yield self
        finally:
            server.shutdown()

    @property
    def url(self) -> str:
        return f"dicom://{self.aet}@127.0.0.1:{self.port}"


@contextlib.contextmanager
def hostile_dicomweb(instances: Sequence[Dataset]) -> Iterator[str]:
    """A WADO-RS server answering every retrieve with ``instances``; yields its DICOMweb root."""
    parts = []
    for ds in instances:
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        parts.append(buf.getvalue())
    boundary = b"medimg-hostile-boundary"
    body = b"".join(b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n" for p in parts)
    body += b"--" + boundary + b"--\r\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", f'multipart/related; type="application/dicom"; '
                                             f"boundary={boundary.decode()}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/dicom-web"
    finally:
        httpd.shutdown()
        httpd.server_close()
