"""DIMSE with pynetdicom: C-ECHO, C-FIND, C-GET, C-MOVE (with our own storage SCP) and C-STORE.

Every association sets TCP_NODELAY on its socket: without it, Nagle's algorithm and delayed
ACKs stall each small PDU by ~40 ms and C-STORE runs at a few files per second.
"""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medimg.core.files import atomic_path
from medimg.io.dicom.values import dataset_to_row
from medimg.pacs.nodes import DimseNode, PacsError, SendReport, received_path

__all__ = ["echo", "find", "get", "move", "send", "RETURN_KEYS"]

#: Attributes asked for (returned) at each query level.
RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "patient": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies"),
    "study": ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription",
              "AccessionNumber", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances"),
    "series": ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber",
               "SeriesDescription", "BodyPartExamined", "NumberOfSeriesRelatedInstances"),
    "image": ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
              "InstanceNumber"),
}
_LEVEL_NAME = {"patient": "PATIENT", "study": "STUDY", "series": "SERIES", "image": "IMAGE"}
_OK_STATUSES = (0x0000,)
_PENDING = (0xFF00, 0xFF01)


def _nodelay(event: Any) -> None:
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


def _ae(node: DimseNode, timeout: float) -> Any:
    from medimg.core.optional import require

    require("pynetdicom", extra="dicomnet")
    from pynetdicom import AE

    ae = AE(ae_title=node.calling_aet)
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    return ae


def _associate(ae: Any, node: DimseNode, *, ext_neg: Sequence[Any] = (), handlers: Sequence[Any] = ()) -> Any:
    from pynetdicom import evt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assoc = ae.associate(node.host, node.port, ae_title=node.aet, ext_neg=list(ext_neg) or None,
                             evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay), *handlers])
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "could not be established"
        raise PacsError(f"{node}: association {why} (is the PACS running, and are the AE titles right?)")
    return assoc


def echo(node: DimseNode, *, timeout: float = 10.0) -> float:
    """C-ECHO; return the round trip in seconds. Raises :class:`PacsError` on failure."""
    from pynetdicom.sop_class import Verification

    ae = _ae(node, timeout)
    ae.add_requested_context(Verification)
    t0 = time.perf_counter()
    assoc = _associate(ae, node)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or status.Status != 0:
        raise PacsError(f"{node}: C-ECHO failed (status {getattr(status, 'Status', 'none')})")
    return time.perf_counter() - t0


def _identifier(level: str, filters: Mapping[str, str | None]) -> Any:
    from pydicom.dataset import Dataset

    if level not in RETURN_KEYS:
        from medimg.errors import UnknownNameError

        raise UnknownNameError("query level", level, RETURN_KEYS)
    ds = Dataset()
    ds.QueryRetrieveLevel = _LEVEL_NAME[level]
    for keyword in RETURN_KEYS[level]:
        setattr(ds, keyword, "")
    for keyword, value in filters.items():
        if value is not None and value != "":
            setattr(ds, keyword, value)
    return ds


def _to_dict(ds: Any) -> dict[str, Any]:
    return dataset_to_row(ds, skip=("QueryRetrieveLevel", "RetrieveAETitle", "SpecificCharacterSet"))


def find(node: DimseNode, *, level: str = "study", filters: Mapping[str, str | None] | None = None,
         timeout: float = 30.0) -> list[dict[str, Any]]:
    """C-FIND at ``level`` (patient, study, series, image) with DICOM matching keys ``filters``.

    ``filters`` maps keywords to DICOM matching values (``"DOE*"``, ``"20200101-20201231"``).
    Returns one dict (keyword -> value) per match.
    """
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
    )

    model = PatientRootQueryRetrieveInformationModelFind if level == "patient" else StudyRootQueryRetrieveInformationModelFind
    identifier = _identifier(level, filters or {})
    ae = _ae(node, timeout)
    ae.add_requested_context(model)
    assoc = _associate(ae, node)
    rows: list[dict[str, Any]] = []
    try:
        for status, found in assoc.send_c_find(identifier, model):
            if status is None:
                raise PacsError(f"{node}: C-FIND timed out or the association was aborted")
            code = int(status.Status)
            if code in _PENDING and found is not None:
                rows.append(_to_dict(found))
            elif code not in _OK_STATUSES and code not in _PENDING:
                raise PacsError(f"{node}: C-FIND failed with status 0x{code:04X}")
    finally:
        if assoc.is_established:
            assoc.release()
    return rows


class _Receiver:
    """Stores incoming C-STORE requests under ``dest`` (atomic writes); thread-safe."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.files: list[Path] = []
        self.failed = 0
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> int:
        try:
            ds = event.dataset
            path = received_path(self.dest, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                                 str(ds.SOPInstanceUID))
            data = event.encoded_dataset(include_meta=True)
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        except Exception:  # noqa: BLE001 - report "cannot process" to the sender, count it
            with self._lock:
                self.failed += 1
            return 0xC211
        with self._lock:
            self.files.append(path)
        return 0x0000


def _storage_contexts(limit: int) -> list[Any]:
    from pynetdicom import StoragePresentationContexts

    return list(StoragePresentationContexts)[:limit]


def _retrieve_identifier(study_uid: str, series_uid: str | None, sop_uid: str | None) -> Any:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.StudyInstanceUID = study_uid
    ds.QueryRetrieveLevel = "STUDY"
    if series_uid:
        ds.SeriesInstanceUID = series_uid
        ds.QueryRetrieveLevel = "SERIES"
    if sop_uid:
        if not series_uid:
            raise PacsError("retrieving one instance needs its series UID too")
        ds.SOPInstanceUID = sop_uid
        ds.QueryRetrieveLevel = "IMAGE"
    return ds


def _check_responses(responses: Iterable[Any], node: DimseNode, what: str) -> None:
    for status, _identifier in responses:
        if status is None:
            raise PacsError(f"{node}: {what} timed out or the association was aborted")
        code = int(status.Status)
        if code in _OK_STATUSES or code in _PENDING:
            continue
        if code == 0xB000:  # warning: some sub-operations failed
            continue
        raise PacsError(f"{node}: {what} failed with status 0x{code:04X}")


def get(node: DimseNode, *, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None,
        dest: str | Path, timeout: float = 60.0) -> tuple[list[Path], int]:
    """C-GET a study, a series or one instance into ``dest/<study>/<series>/<sop>.dcm``.

    Returns (files written, instances that could not be stored).
    """
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

    receiver = _Receiver(Path(dest))
    ae = _ae(node, timeout)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    contexts = _storage_contexts(127)
    roles = []
    for cx in contexts:
        ae.add_requested_context(cx.abstract_syntax)
        roles.append(build_role(cx.abstract_syntax, scp_role=True))
    assoc = _associate(ae, node, ext_neg=roles, handlers=[(evt.EVT_C_STORE, receiver)])
    try:
        _check_responses(assoc.send_c_get(_retrieve_identifier(study_uid, series_uid, sop_uid),
                                          StudyRootQueryRetrieveInformationModelGet), node, "C-GET")
    finally:
        if assoc.is_established:
            assoc.release()
    return sorted(receiver.files), receiver.failed


def move(node: DimseNode, *, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None,
         dest: str | Path, move_aet: str | None = None, port: int = 11113, bind: str = "127.0.0.1",
         timeout: float = 60.0) -> tuple[list[Path], int]:
    """C-MOVE to our own storage SCP (listening on ``bind:port`` as ``move_aet``) into ``dest``.

    The PACS must know ``move_aet`` (default: the node's calling AE title) with this host and
    port. Returns (files written, instances that could not be stored).
    """
    from pynetdicom import AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

    move_aet = move_aet or node.calling_aet
    receiver = _Receiver(Path(dest))
    scp = _ae(DimseNode(bind, port, move_aet, move_aet), timeout)
    scp.supported_contexts = AllStoragePresentationContexts
    try:
        server = scp.start_server((bind, port), block=False, ae_title=move_aet,
                                  evt_handlers=[(evt.EVT_C_STORE, receiver), (evt.EVT_CONN_OPEN, _nodelay)])
    except OSError as err:
        raise PacsError(f"cannot listen on {bind}:{port} for C-MOVE: {err.strerror or err}") from err
    try:
        ae = _ae(node, timeout)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = _associate(ae, node)
        try:
            _check_responses(assoc.send_c_move(_retrieve_identifier(study_uid, series_uid, sop_uid), move_aet,
                                               StudyRootQueryRetrieveInformationModelMove), node, "C-MOVE")
        finally:
            if assoc.is_established:
                assoc.release()
    finally:
        server.shutdown()
    return sorted(receiver.files), receiver.failed


def send(node: DimseNode, files: Sequence[str | Path], *, timeout: float = 60.0) -> SendReport:
    """C-STORE ``files`` over one association (contexts for each SOP class and transfer syntax found)."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    report = SendReport()
    datasets: list[tuple[Path, Any]] = []
    pairs: dict[str, set[str]] = {}
    for f in files:
        path = Path(f)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path)
            sop_class = str(ds.SOPClassUID)
            syntax = str(ds.file_meta.TransferSyntaxUID)
        except Exception as err:  # noqa: BLE001 - an unreadable file is reported, the rest is sent
            report.failures.append((str(path), f"not a readable DICOM file ({type(err).__name__})"))
            continue
        datasets.append((path, ds))
        pairs.setdefault(sop_class, set()).add(syntax)
    if not datasets:
        return report
    ae = _ae(node, timeout)
    for sop_class, syntaxes in pairs.items():
        wanted = sorted(syntaxes | {ExplicitVRLittleEndian, ImplicitVRLittleEndian})
        ae.add_requested_context(sop_class, wanted)
    if len(ae.requested_contexts) > 128:
        raise PacsError(f"{len(pairs)} SOP classes in one send: more than one association can carry; send fewer")
    assoc = _associate(ae, node)
    try:
        for path, ds in datasets:
            try:
                status = assoc.send_c_store(ds)
            except ValueError as err:  # no accepted context for this class / syntax
                report.failures.append((str(path), f"refused: {err}"))
                continue
            if status is None:
                report.failures.append((str(path), "no response (timed out or aborted)"))
                if not assoc.is_established:
                    break
                continue
            code = int(status.Status)
            if code == 0x0000 or code & 0xF000 == 0xB000:
                report.sent += 1
            else:
                report.failures.append((str(path), f"status 0x{code:04X}"))
    finally:
        if assoc.is_established:
            assoc.release()
    return report
