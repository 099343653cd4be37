"""DICOMweb with dicomweb-client: QIDO-RS (search), WADO-RS (retrieve), STOW-RS (store)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medimg.core.files import atomic_path
from medimg.io.dicom.values import dataset_to_row
from medimg.pacs.dimse import RETURN_KEYS
from medimg.pacs.nodes import (
    Outgoing,
    PacsError,
    SendReport,
    TransientPacsError,
    WebNode,
    received_path,
    resolve_host,
)

__all__ = ["echo", "find", "retrieve", "send"]


def _client(node: WebNode, timeout: float) -> Any:
    from urllib.parse import urlsplit

    from medimg.core.optional import require

    require("dicomweb_client", extra="dicomnet")
    from dicomweb_client.api import DICOMwebClient

    parts = urlsplit(node.url)
    if not parts.hostname:
        raise PacsError(f"{node}: no host in the DICOMweb URL")
    resolve_host(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), node)
    client = DICOMwebClient(url=node.url, timeout=timeout)
    # dicomweb-client retries failed requests with exponential back-off for ~30 s by default;
    # medimg retries itself (only what is worth it) so a server that is down is reported soon
    client.set_http_retry_params(retry=False)
    return client


def _call(node: WebNode, what: str, func: Any, *args: Any, retries: int = 0, backoff_s: float = 0.5,
          **kwargs: Any) -> Any:
    """``func(*args, **kwargs)``; HTTP and connection errors become one-line :class:`PacsError`.

    No answer (connection refused or dropped, timeout) and HTTP 429 / 5xx are tried again
    ``retries`` times after ``backoff_s``, ``2 * backoff_s``, ... seconds.
    """
    import requests

    for attempt in range(retries + 1):
        try:
            return func(*args, **kwargs)
        except requests.exceptions.HTTPError as err:
            code = err.response.status_code if err.response is not None else 0
            error: PacsError = (TransientPacsError if code == 429 or code >= 500 else PacsError)(
                f"{node}: {what} failed with HTTP {code or '?'}")
            cause: Exception = err
        except requests.exceptions.RequestException as err:
            error = TransientPacsError(f"{node}: {what} failed: {type(err).__name__} (is the server running?)")
            cause = err
        if not isinstance(error, TransientPacsError) or attempt == retries:
            raise error from cause
        time.sleep(backoff_s * 2 ** attempt)
    raise AssertionError(what)  # pragma: no cover - the loop returns or raises


def echo(node: WebNode, *, timeout: float = 10.0) -> float:
    """A QIDO-RS study search limited to one result; return the round trip in seconds."""
    client = _client(node, timeout)
    t0 = time.perf_counter()
    _call(node, "QIDO-RS", client.search_for_studies, limit=1)
    return time.perf_counter() - t0


def _row(item: Mapping[str, Any]) -> dict[str, Any]:
    from pydicom.dataset import Dataset

    ds = Dataset.from_json(dict(item))
    return dataset_to_row(ds, skip=("SpecificCharacterSet", "RetrieveURL"))


def find(node: WebNode, *, level: str = "study", filters: Mapping[str, str | None] | None = None,
         timeout: float = 30.0, retries: int = 2, backoff_s: float = 0.5) -> list[dict[str, Any]]:
    """QIDO-RS search at ``level`` (study, series, image) with DICOM matching ``filters``.

    No answer or HTTP 429/5xx is tried again ``retries`` times (back-off from ``backoff_s`` s).
    """
    from medimg.errors import UnknownNameError

    if level not in ("study", "series", "image"):
        raise UnknownNameError("DICOMweb query level", level, ("study", "series", "image"))
    client = _client(node, timeout)
    search = {k: v for k, v in (filters or {}).items() if v not in (None, "")}
    fields = [k for k in RETURN_KEYS[level] if k not in search]
    method = {"study": client.search_for_studies, "series": client.search_for_series,
              "image": client.search_for_instances}[level]
    items = _call(node, "QIDO-RS", method, search_filters=search, fields=fields, get_remaining=True,
                  retries=retries, backoff_s=backoff_s)
    return [_row(item) for item in items]


def retrieve(node: WebNode, *, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None,
             dest: str | Path, timeout: float = 120.0, retries: int = 2,
             backoff_s: float = 0.5) -> tuple[list[Path], int, list[str]]:
    """WADO-RS a study, series or instance into ``dest/<study>/<series>/<sop>.dcm``.

    Paths are built from checked UIDs and confined to ``dest``. Returns (files written,
    instances that could not be stored, why).
    """
    client = _client(node, timeout)
    again = {"retries": retries, "backoff_s": backoff_s}
    if sop_uid:
        if not series_uid:
            raise PacsError("retrieving one instance needs its series UID too")
        datasets = [_call(node, "WADO-RS", client.retrieve_instance, study_uid, series_uid, sop_uid, **again)]
    elif series_uid:
        datasets = _call(node, "WADO-RS", client.retrieve_series, study_uid, series_uid, **again)
    else:
        datasets = _call(node, "WADO-RS", client.retrieve_study, study_uid, **again)
    files: set[Path] = set()
    failed = 0
    problems: list[str] = []
    for ds in datasets:
        try:
            path = received_path(Path(dest), ds.get("StudyInstanceUID"), ds.get("SeriesInstanceUID"),
                                 ds.get("SOPInstanceUID"))
            with atomic_path(path) as tmp, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds.save_as(tmp, enforce_file_format=True)
        except Exception as err:  # noqa: BLE001 - an instance that cannot be stored is counted
            failed += 1
            if len(problems) < 20:
                problems.append(str(err) if isinstance(err, PacsError) else
                                f"a received instance could not be stored ({type(err).__name__}: {err})")
            continue
        files.add(path)
    return sorted(files), failed, problems


def send(node: WebNode, items: Sequence[Outgoing], *, batch: int = 50, timeout: float = 120.0,
         retries: int = 3, backoff_s: float = 0.5, report: SendReport | None = None) -> SendReport:
    """STOW-RS ``items`` in requests of ``batch`` instances (read when their request is built).

    A request that gets no answer or HTTP 429/5xx is sent again after a pause (``retries``
    times, back-off from ``backoff_s`` s); a request that still fails, or is refused, fails each
    of its files with the reason. Per-instance failures come from the response's Failed SOP
    Sequence.
    """
    import pydicom

    client = _client(node, timeout)
    report = report if report is not None else SendReport()
    for start in range(0, len(items), batch):
        chunk: list[tuple[Outgoing, Any]] = []
        for item in items[start:start + batch]:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    chunk.append((item, pydicom.dcmread(item.path)))
            except Exception as err:  # noqa: BLE001
                report.failures.append((str(item.path), f"not a readable DICOM file ({type(err).__name__})"))
        if not chunk:
            continue
        calls = [0]

        def store(datasets: list[Any], calls: list[int] = calls) -> Any:
            calls[0] += 1
            return client.store_instances(datasets)

        try:
            response = _call(node, "STOW-RS", store, [ds for _, ds in chunk], retries=retries, backoff_s=backoff_s)
        except PacsError as err:
            report.retries += calls[0] - 1
            for item, _ds in chunk:
                report.failures.append((str(item.path), f"not stored: {err}"))
            continue
        report.retries += calls[0] - 1
        failed = {str(entry.ReferencedSOPInstanceUID): int(getattr(entry, "FailureReason", 0))
                  for entry in getattr(response, "FailedSOPSequence", None) or ()}
        for item, ds in chunk:
            reason = failed.get(str(ds.SOPInstanceUID))
            if reason is None:
                report.sent += 1
                report.stored.append(str(item.path))
            else:
                report.failures.append((str(item.path), f"failure reason 0x{reason:04X}"))
    return report
