"""DIMSE with pynetdicom: C-ECHO, C-FIND, C-GET, C-MOVE (with our own storage SCP) and C-STORE.

Every association sets TCP_NODELAY on its socket: without it, Nagle's algorithm and delayed
ACKs stall each small PDU by ~40 ms and C-STORE runs at a few files per second.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from medimg.core.files import atomic_path
from medimg.io.dicom.values import dataset_to_row
from medimg.pacs.nodes import (
    DimseNode,
    Outgoing,
    PacsError,
    SendReport,
    TransientPacsError,
    received_path,
    resolve_host,
)

__all__ = ["echo", "find", "get", "move", "send", "status_code", "RETURN_KEYS"]

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


def status_code(status: Any) -> int | None:
    """The Status of a DIMSE response, or ``None`` when there was no usable response.

    pynetdicom returns ``None`` or an *empty* Dataset (no Status element) when the DIMSE
    timeout expired, the association was aborted or the response was invalid; both mean "no
    answer", never success.
    """
    if status is None:
        return None
    value = getattr(status, "Status", None)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


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
    """Open an association; every failure (unresolvable host included) is one :class:`PacsError`.

    A rejection by the peer raises :class:`PacsError`; a connection that could not be made or
    was aborted raises :class:`TransientPacsError` (worth a retry).
    """
    from pynetdicom import evt

    resolve_host(node.host, node.port, node)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assoc = ae.associate(node.host, node.port, ae_title=node.aet, ext_neg=list(ext_neg) or None,
                                 evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay), *handlers])
    except OSError as err:  # socket errors that pynetdicom lets through
        raise TransientPacsError(f"{node}: cannot connect ({err.strerror or err})") from err
    if not assoc.is_established:
        if assoc.is_rejected:
            raise PacsError(f"{node}: association rejected (are the AE titles right?)")
        rejected = list(getattr(assoc, "rejected_contexts", None) or ())
        if assoc.is_aborted and rejected and not list(getattr(assoc, "accepted_contexts", None) or ()):
            names = sorted({getattr(cx.abstract_syntax, "name", str(cx.abstract_syntax)) for cx in rejected})
            raise PacsError(f"{node}: the PACS accepts none of the services asked for ({', '.join(names[:3])})")
        why = "aborted" if assoc.is_aborted else "could not be established"
        raise TransientPacsError(f"{node}: association {why} (is the PACS running, and are the AE titles right?)")
    return assoc


@contextlib.contextmanager
def _accepted(node: DimseNode, what: str) -> Iterator[None]:
    """pynetdicom raises ValueError when the PACS accepted no presentation context for a request."""
    try:
        yield
    except ValueError as err:
        raise PacsError(f"{node}: the PACS does not accept {what} from us ({err})") from err


def _retrying(what: str, call: Callable[[], Any], *, retries: int, backoff_s: float) -> Any:
    """``call()``, again after ``backoff_s``, ``2 * backoff_s``... while it raises
    :class:`TransientPacsError`, at most ``retries`` more times."""
    for attempt in range(retries + 1):
        try:
            return call()
        except TransientPacsError:
            if attempt == retries:
                raise
            time.sleep(backoff_s * 2 ** attempt)
    raise AssertionError(what)  # pragma: no cover - the loop returns or raises


def echo(node: DimseNode, *, timeout: float = 10.0) -> float:
    """C-ECHO; return the round trip in seconds. Raises :class:`PacsError` on failure."""
    from pynetdicom.sop_class import Verification

    ae = _ae(node, timeout)
    ae.add_requested_context(Verification)
    t0 = time.perf_counter()
    assoc = _associate(ae, node)
    try:
        with _accepted(node, "C-ECHO"):
            status = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    code = status_code(status)
    if code is None:
        raise PacsError(f"{node}: C-ECHO got no response (timed out or the association was aborted)")
    if code != 0:
        raise PacsError(f"{node}: C-ECHO failed with status 0x{code:04X}")
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
         timeout: float = 30.0, retries: int = 2, backoff_s: float = 0.5) -> list[dict[str, Any]]:
    """C-FIND at ``level`` (patient, study, series, image) with DICOM matching keys ``filters``.

    ``filters`` maps keywords to DICOM matching values (``"DOE*"``, ``"20200101-20201231"``).
    Returns one dict (keyword -> value) per match. A search that gets no response (timeout,
    abort) or no association is tried again ``retries`` times, after ``backoff_s`` seconds,
    then twice that, and so on.
    """
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
    )

    model = PatientRootQueryRetrieveInformationModelFind if level == "patient" else StudyRootQueryRetrieveInformationModelFind
    identifier = _identifier(level, filters or {})

    def once() -> list[dict[str, Any]]:
        ae = _ae(node, timeout)
        ae.add_requested_context(model)
        assoc = _associate(ae, node)
        rows: list[dict[str, Any]] = []
        try:
            with _accepted(node, "C-FIND"):
                responses = assoc.send_c_find(identifier, model)
                first = next(responses, None)
            for status, found in itertools.chain([first] if first is not None else [], responses):
                code = status_code(status)
                if code is None:
                    raise TransientPacsError(f"{node}: C-FIND got no response (timed out or the association "
                                             "was aborted)")
                if code in _PENDING and found is not None:
                    rows.append(_to_dict(found))
                elif code not in _OK_STATUSES and code not in _PENDING:
                    raise PacsError(f"{node}: C-FIND failed with status 0x{code:04X}")
        finally:
            if assoc.is_established:
                assoc.release()
        return rows

    return _retrying("C-FIND", once, retries=retries, backoff_s=backoff_s)


class _Receiver:
    """Stores incoming C-STORE requests under ``dest`` (atomic writes, confined paths); thread-safe."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.files: set[Path] = set()
        self.failed = 0
        self.problems: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> int:
        try:
            ds = event.dataset
            path = received_path(self.dest, ds.get("StudyInstanceUID"), ds.get("SeriesInstanceUID"),
                                 ds.get("SOPInstanceUID"))
            data = event.encoded_dataset(include_meta=True)
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        except Exception as err:  # noqa: BLE001 - report "cannot process" to the sender, count it
            with self._lock:
                self.failed += 1
                if len(self.problems) < 20:
                    self.problems.append(str(err) if isinstance(err, PacsError) else
                                         f"a received instance could not be stored ({type(err).__name__}: {err})")
            return 0xC211
        with self._lock:
            self.files.add(path)
        return 0x0000

    def report(self) -> tuple[list[Path], int, list[str]]:
        with self._lock:
            return sorted(self.files), self.failed, list(self.problems)


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
        code = status_code(status)
        if code is None:
            raise TransientPacsError(f"{node}: {what} got no response (timed out or the association was aborted)")
        if code in _OK_STATUSES or code in _PENDING:
            continue
        if code == 0xB000:  # warning: some sub-operations failed
            continue
        raise PacsError(f"{node}: {what} failed with status 0x{code:04X}")


def get(node: DimseNode, *, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None,
        dest: str | Path, timeout: float = 60.0, retries: int = 2,
        backoff_s: float = 0.5) -> tuple[list[Path], int, list[str]]:
    """C-GET a study, a series or one instance into ``dest/<study>/<series>/<sop>.dcm``.

    Every path is built from checked UIDs and confined to ``dest``. A C-GET that gets no
    response (timeout, abort) is tried again (``retries``, back-off from ``backoff_s`` seconds);
    instances already received are simply written again. Returns (files written, instances
    that could not be stored, why).
    """
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

    receiver = _Receiver(Path(dest))
    identifier = _retrieve_identifier(study_uid, series_uid, sop_uid)

    def once() -> None:
        ae = _ae(node, timeout)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        roles = []
        for cx in _storage_contexts(127):
            ae.add_requested_context(cx.abstract_syntax)
            roles.append(build_role(cx.abstract_syntax, scp_role=True))
        assoc = _associate(ae, node, ext_neg=roles, handlers=[(evt.EVT_C_STORE, receiver)])
        try:
            with _accepted(node, "C-GET"):
                responses = assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
                first = next(responses, None)
            _check_responses(itertools.chain([first] if first is not None else [], responses), node, "C-GET")
        finally:
            if assoc.is_established:
                assoc.release()

    _retrying("C-GET", once, retries=retries, backoff_s=backoff_s)
    return receiver.report()


def move(node: DimseNode, *, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None,
         dest: str | Path, move_aet: str | None = None, port: int = 11113, bind: str = "127.0.0.1",
         timeout: float = 60.0, retries: int = 2, backoff_s: float = 0.5) -> tuple[list[Path], int, list[str]]:
    """C-MOVE to our own storage SCP (listening on ``bind:port`` as ``move_aet``) into ``dest``.

    The PACS must know ``move_aet`` (default: the node's calling AE title) with this host and
    port. Paths are confined to ``dest`` and retries work as in :func:`get`. Returns (files
    written, instances that could not be stored, why).
    """
    from pynetdicom import AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

    move_aet = move_aet or node.calling_aet
    receiver = _Receiver(Path(dest))
    identifier = _retrieve_identifier(study_uid, series_uid, sop_uid)
    scp = _ae(DimseNode(bind, port, move_aet, move_aet), timeout)
    scp.supported_contexts = AllStoragePresentationContexts
    try:
        server = scp.start_server((bind, port), block=False, ae_title=move_aet,
                                  evt_handlers=[(evt.EVT_C_STORE, receiver), (evt.EVT_CONN_OPEN, _nodelay)])
    except OSError as err:
        raise PacsError(f"cannot listen on {bind}:{port} for C-MOVE: {err.strerror or err}") from err

    def once() -> None:
        ae = _ae(node, timeout)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = _associate(ae, node)
        try:
            with _accepted(node, "C-MOVE"):
                responses = assoc.send_c_move(identifier, move_aet, StudyRootQueryRetrieveInformationModelMove)
                first = next(responses, None)
            _check_responses(itertools.chain([first] if first is not None else [], responses), node, "C-MOVE")
        finally:
            if assoc.is_established:
                assoc.release()

    try:
        _retrying("C-MOVE", once, retries=retries, backoff_s=backoff_s)
    finally:
        server.shutdown()
    return receiver.report()


def _transient_store_status(code: int) -> bool:
    """A C-STORE refused with "Out of Resources" (A7xx) is tried again after a pause."""
    return code & 0xFF00 == 0xA700


def send(node: DimseNode, items: Sequence[Outgoing], *, timeout: float = 60.0, retries: int = 3,
         backoff_s: float = 0.5, report: SendReport | None = None) -> SendReport:
    """C-STORE ``items`` (read one at a time), with retries.

    One association carries contexts for every SOP class and transfer syntax found. When a
    store gets no response (timeout, abort: pynetdicom then returns an empty Dataset) or the
    association drops or cannot be made, medimg waits (``backoff_s``, then twice as long, ...),
    opens a new association and goes on from that instance; each instance is tried at most
    ``retries + 1`` times, and "out of resources" (A7xx) refusals are tried again the same way.
    The report lists the files stored and those not stored, with the reason.
    """
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    report = report if report is not None else SendReport()
    if not items:
        return report
    pairs: dict[str, set[str]] = {}
    for item in items:
        pairs.setdefault(item.sop_class, set()).add(item.transfer_syntax)
    if len(pairs) > 128:  # one presentation context per SOP class, 128 at most in one association
        raise PacsError(f"{len(pairs)} SOP classes in one send: more than one association can carry; send fewer")

    def open_assoc() -> Any:
        ae = _ae(node, timeout)
        for sop_class, syntaxes in pairs.items():
            ae.add_requested_context(sop_class, sorted(syntaxes | {ExplicitVRLittleEndian, ImplicitVRLittleEndian}))
        return _associate(ae, node)

    attempts = [0] * len(items)
    assoc = None
    i = 0
    try:
        while i < len(items):
            item = items[i]
            if assoc is None or not assoc.is_established:
                try:
                    assoc = open_assoc()
                except PacsError as err:
                    attempts[i] += 1
                    if isinstance(err, TransientPacsError) and attempts[i] <= retries:
                        report.retries += 1
                        time.sleep(backoff_s * 2 ** (attempts[i] - 1))
                        continue
                    if not report.stored and i == 0:
                        raise  # nothing sent yet: the PACS cannot be used at all (one line)
                    # the PACS went away part-way: report what was stored and what was not
                    for rest in items[i:]:
                        report.failures.append((str(rest.path), f"not sent: {err}"))
                    break
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(item.path)
                status = assoc.send_c_store(ds)
            except (ValueError, AttributeError) as err:  # no accepted context for this class / syntax
                report.failures.append((str(item.path), f"refused: {err}"))
                i += 1
                continue
            except (OSError, EOFError) as err:
                report.failures.append((str(item.path), f"cannot be read ({type(err).__name__})"))
                i += 1
                continue
            del ds
            code = status_code(status)
            if code == 0x0000 or (code is not None and code & 0xF000 == 0xB000):
                report.stored.append(str(item.path))
                report.sent += 1
                i += 1
                continue
            if code is None or _transient_store_status(code):
                attempts[i] += 1
                why = "no response (timed out or aborted)" if code is None else f"status 0x{code:04X}"
                if attempts[i] > retries:
                    report.failures.append((str(item.path), f"{why}, {retries + 1} attempts"))
                    i += 1
                    continue
                report.retries += 1
                if code is None and assoc.is_established:
                    assoc.abort()
                if code is None:
                    assoc = None  # a new association after the pause
                time.sleep(backoff_s * 2 ** (attempts[i] - 1))
                continue
            report.failures.append((str(item.path), f"status 0x{code:04X}"))
            i += 1
    finally:
        if assoc is not None and assoc.is_established:
            assoc.release()
    return report
