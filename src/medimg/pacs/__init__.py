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
    PacsError,
    RetrieveReport,
    SendReport,
    WebNode,
    parse_server,
)

__all__ = [
    "echo", "find", "retrieve", "send", "matching_keys", "parse_server", "DimseNode", "WebNode",
    "PacsError", "RetrieveReport", "SendReport", "QUERY_LEVELS",
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
            files, failed = dimse.get(node, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid,
                                      dest=dest, timeout=timeout)
        elif method == "move":
            files, failed = dimse.move(node, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid,
                                       dest=dest, move_aet=move_aet, port=move_port, timeout=timeout)
        else:
            from medimg.errors import UnknownNameError

            raise UnknownNameError("retrieve method", str(method), ("get", "move"))
    else:
        if method != "get":
            raise ParameterError("DICOMweb retrieves with WADO-RS; method='move' is for DIMSE servers")
        from medimg.pacs import web

        files, failed = web.retrieve(node, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid,
                                     dest=dest, timeout=timeout)
    report = RetrieveReport(files=files, failed=failed)
    if catalog is not None and files:
        from medimg.catalog import index_files

        report.index = index_files(catalog, files)
    return report


def send(server: str | DimseNode | WebNode, files: Sequence[str | Path], *, catalog: Any = None,
         derived: bool = False, timeout: float = 120.0) -> SendReport:
    """Store ``files`` on the server (C-STORE or STOW-RS).

    With a ``catalog`` and ``derived=True``, each file sent is also indexed and recorded as a
    derived object (segmentation, report, ...) linked to the series and instances it
    references (:func:`medimg.catalog.register_dicom_result`).
    """
    node = parse_server(server)
    if isinstance(node, DimseNode):
        from medimg.pacs import dimse

        report = dimse.send(node, files, timeout=timeout)
    else:
        from medimg.pacs import web

        report = web.send(node, files, timeout=timeout)
    if catalog is not None and derived:
        from medimg.catalog import register_dicom_result

        failed = {f for f, _ in report.failures or ()}
        for f in files:
            if str(f) not in failed:
                register_dicom_result(catalog, f)
    return report
