"""Talking to a PACS over DIMSE (pynetdicom) or DICOMweb (dicomweb-client).

A server is named ``dicom://AET@host:port`` (C-ECHO, C-FIND, C-GET or C-MOVE, C-STORE) or by
its DICOMweb root ``http(s)://host:port/dicom-web`` (QIDO-RS, WADO-RS, STOW-RS). The same four
calls work for both:

* :func:`echo` checks the connection;
* :func:`find` searches patients, studies, series or instances;
* :func:`retrieve` fetches a study, series or instance into a folder and indexes it into a
  catalog when one is given;
* :func:`send` stores files (a DICOM SEG made from a retrieved series, say) and records them
  in the catalog as derived objects of what they reference.

See ``docs/pacs.md``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from medimg.errors import ParameterError
from medimg.pacs.nodes import (
    QUERY_LEVELS,
    DimseNode,
    Outgoing,
    PacsError,
    RetrieveReport,
    SendReport,
    TransientPacsError,
    UnknownHostError,
    WebNode,
    parse_server,
    read_outgoing,
)

__all__ = [
    "echo", "find", "retrieve", "send", "held_instances", "matching_keys", "parse_server", "DimseNode",
    "WebNode", "PacsError", "TransientPacsError", "UnknownHostError", "RetrieveReport", "SendReport", "Outgoing", "QUERY_LEVELS",
]


def _date_range(text: str) -> str:
    def one(part: str) -> str:
        digits = part.strip().replace("-", "")
        if part.strip() and (len(digits) != 8 or not digits.isdigit()):
            raise ParameterError(f"date {part!r} must be YYYYMMDD or YYYY-MM-DD")
        if digits:
            try:
                dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
            except ValueError:
                raise ParameterError(f"date {part!r} is not a calendar date") from None
        return digits

    text = text.strip()
    if ".." in text:
        lo, hi = text.split("..", 1)
        return f"{one(lo)}-{one(hi)}"
    return one(text)


def matching_keys(
    level: str,
    *,
    patient_id: str | None = None,
    patient_name: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    modality: str | None = None,
    study_date: str | None = None,
    description: str | None = None,
) -> dict[str, str]:
    """DICOM matching keys for :func:`find` from friendly filters.

    ``patient_name`` and ``description`` may use DICOM wildcards (``*``, ``?``); ``study_date``
    is one date or a range ``FROM..TO`` (either end may be empty), as YYYYMMDD or YYYY-MM-DD.
    """
    if level not in QUERY_LEVELS:
        from medimg.errors import UnknownNameError

        raise UnknownNameError("query level", level, QUERY_LEVELS)
    keys: dict[str, str] = {}
    if patient_id:
        keys["PatientID"] = patient_id
    if patient_name:
        keys["PatientName"] = patient_name
    if study_uid:
        keys["StudyInstanceUID"] = study_uid
    if series_uid:
        keys["SeriesInstanceUID"] = series_uid
    if modality:
        keys["ModalitiesInStudy" if level == "study" else "Modality"] = modality.upper()
    if study_date:
        keys["StudyDate"] = _date_range(study_date)
    if description:
        keys["StudyDescription" if level in ("study", "patient") else "SeriesDescription"] = description
    return keys


def echo(server: str | DimseNode | WebNode, *, timeout: float = 10.0) -> float:
    """C-ECHO (DIMSE) or a one-result QIDO-RS search (DICOMweb); the round trip in seconds."""
    node = parse_server(server)
    if isinstance(node, DimseNode):
        from medimg.pacs import dimse

        return dimse.echo(node, timeout=timeout)
    from medimg.pacs import web

    return web.echo(node, timeout=timeout)


def find(server: str | DimseNode | WebNode, *, level: str = "study", timeout: float = 30.0,
         **filters: str | None) -> list[dict[str, Any]]:
    """Search the server at ``level`` (patient, study, series, image); filters as :func:`matching_keys`."""
    node = parse_server(server)
    keys = matching_keys(level, **filters)
    if isinstance(node, DimseNode):
        from medimg.pacs import dimse

        return dimse.find(node, level=level, filters=keys, timeout=timeout)
    from medimg.pacs import web

    return web.find(node, level=level, filters=keys, timeout=timeout)


def retrieve(
    server: str | DimseNode | WebNode,
    *,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    dest: str | Path,
    method: Literal["get", "move"] = "get",
    move_aet: str | None = None,
    move_port: int = 11113,
    catalog: Any = None,
    timeout: float = 120.0,
) -> RetrieveReport:
    """Fetch a study, series or instance into ``dest/<study>/<series>/<sop>.dcm``.

    The UIDs in those paths come from the PACS: they are checked (UID syntax) and every path
    is confined to ``dest``; an instance that fails the check is not stored, and is counted in
    ``failed`` with the reason in ``problems``.

    Parameters
    ----------
    server
        ``dicom://AET@host:port`` or a DICOMweb root.
    study_uid, series_uid, sop_uid
        What to fetch (an instance needs its series UID too).
    dest
        Folder for the files (written atomically).
    method
        DIMSE only: ``"get"`` (C-GET, one association) or ``"move"`` (C-MOVE to a storage SCP
        that this call runs on ``127.0.0.1:move_port`` as ``move_aet``; the PACS must know it).
    catalog
        A :class:`~medimg.catalog.Catalog`: the retrieved files are indexed into it.
    """
    node = parse_server(server)
    dest = Path(dest)
    if isinstance(node, DimseNode):
        from medimg.pacs import dimse

        if method == "get":
            files, failed, problems = dimse.get(node, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid,
                                      dest=dest, timeout=timeout)
        elif method == "move":
            files, failed, problems = dimse.move(node, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid,
                                       dest=dest, move_aet=move_aet, port=move_port, timeout=timeout)
        else:
            from medimg.errors import UnknownNameError

            raise UnknownNameError("retrieve method", str(method), ("get", "move"))
    else:
        if method != "get":
            raise ParameterError("DICOMweb retrieves with WADO-RS; method='move' is for DIMSE servers")
        from medimg.pacs import web

        files, failed, problems = web.retrieve(node, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid,
                                     dest=dest, timeout=timeout)
    report = RetrieveReport(files=files, failed=failed, problems=problems)
    if catalog is not None and files:
        from medimg.catalog import index_files

        report.index = index_files(catalog, files)
    return report


def held_instances(server: str | DimseNode | WebNode, items: Sequence[Outgoing], *,
                   timeout: float = 60.0, retries: int = 2) -> set[str]:
    """SOP Instance UIDs among ``items`` that the server already holds (one image-level search
    per series: C-FIND or QIDO-RS)."""
    node = parse_server(server)
    series: dict[tuple[str, str], set[str]] = {}
    for item in items:
        if item.study_uid and item.series_uid:
            series.setdefault((item.study_uid, item.series_uid), set()).add(item.sop_uid)
    held: set[str] = set()
    for (study, series_uid), wanted in series.items():
        keys = {"StudyInstanceUID": study, "SeriesInstanceUID": series_uid}
        if isinstance(node, DimseNode):
            from medimg.pacs import dimse

            rows = dimse.find(node, level="image", filters=keys, timeout=timeout, retries=retries)
        else:
            from medimg.pacs import web

            rows = web.find(node, level="image", filters=keys, timeout=timeout, retries=retries)
        held.update(str(r.get("SOPInstanceUID")) for r in rows if str(r.get("SOPInstanceUID")) in wanted)
    return held


def send(server: str | DimseNode | WebNode, files: Sequence[str | Path], *, catalog: Any = None,
         derived: bool = False, skip_existing: bool = True, timeout: float = 120.0, retries: int = 3,
         backoff_s: float = 0.5) -> SendReport:
    """Store ``files`` on the server (C-STORE or STOW-RS).

    Parameters
    ----------
    server
        ``dicom://AET@host:port`` or a DICOMweb root.
    files
        DICOM files (read one at a time while sending).
    catalog, derived
        With a ``catalog`` and ``derived=True``, each file stored (or already held) is also
        indexed and recorded as a derived object (segmentation, report, ...) linked to the
        series and instances it references (:func:`medimg.catalog.register_dicom_result`).
    skip_existing
        First ask the server which of the files' SOP Instance UIDs it already holds (one
        image-level search per series) and send only the others; they are listed in
        ``skipped``. A re-send after an interrupted one thus sends only what is missing. An
        instance is matched by its SOP Instance UID only.
    timeout
        Seconds to wait for the association, each response or each HTTP request.
    retries, backoff_s
        A store that gets no response (timeout or abort), a dropped association and "out of
        resources" refusals (DIMSE), or a request without answer or with HTTP 429/5xx
        (DICOMweb), are tried again up to ``retries`` times after ``backoff_s`` seconds, then
        twice as long each time.

    Returns
    -------
    SendReport
        ``stored`` and ``skipped`` files, ``failures`` with their reasons, and ``retries``.
    """
    node = parse_server(server)
    report = SendReport()
    items = read_outgoing(files, report)
    if skip_existing and items:
        try:
            held = held_instances(node, items, timeout=timeout, retries=min(retries, 2))
        except UnknownHostError:
            raise
        except PacsError as err:  # a PACS without image-level search (say): send everything
            report.notes.append(f"could not ask which instances the server holds, sending all: {err}")
            held = set()
        report.skipped = [str(i.path) for i in items if i.sop_uid in held]
        items = [i for i in items if i.sop_uid not in held]
    if isinstance(node, DimseNode):
        from medimg.pacs import dimse

        dimse.send(node, items, timeout=timeout, retries=retries, backoff_s=backoff_s, report=report)
    else:
        from medimg.pacs import web

        web.send(node, items, timeout=timeout, retries=retries, backoff_s=backoff_s, report=report)
    if catalog is not None and derived:
        from medimg.catalog import register_dicom_result

        for f in [*report.stored, *report.skipped]:
            register_dicom_result(catalog, f)
    return report
