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
from medimg.pacs.nodes import PacsError, SendReport, WebNode, received_path

__all__ = ["echo", "find", "retrieve", "send"]


def _client(node: WebNode, timeout: float) -> Any:
    from medimg.core.optional import require

    require("dicomweb_client", extra="dicomnet")
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=node.url, timeout=timeout)
    # dicomweb-client retries failed requests with exponential back-off for ~30 s by default;
    # a server that is down should be reported at once
    client.set_http_retry_params(retry=False)
    return client


def _call(node: WebNode, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
    import requests

    try:
        return func(*args, **kwargs)
    except requests.exceptions.HTTPError as err:
        code = err.response.status_code if err.response is not None else "?"
        raise PacsError(f"{node}: {what} failed with HTTP {code}") from err
    except requests.exceptions.RequestException as err:
        raise PacsError(f"{node}: {what} failed: {type(err).__name__} (is the server running?)") from err


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
         timeout: float = 30.0) -> list[dict[str, Any]]:
    """QIDO-RS search at ``level`` (study, series, image) with DICOM matching ``filters``."""
    from medimg.errors import UnknownNameError

    if level not in ("study", "series", "image"):
        raise UnknownNameError("DICOMweb query level", level, ("study", "series", "image"))
    client = _client(node, timeout)
    search = {k: v for k, v in (filters or {}).items() if v not in (None, "")}
    fields = [k for k in RETURN_KEYS[level] if k not in search]
    method = {"study": client.search_for_studies, "series": client.search_for_series,
              "image": client.search_for_instances}[level]
    items = _call(node, "QIDO-RS", method, search_filters=search, fields=fields, get_remaining=True)
    return [_row(item) for item in items]


def retrieve(node: WebNode, *, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None,
             dest: str | Path, timeout: float = 120.0) -> tuple[list[Path], int]:
    """WADO-RS a study, series or instance into ``dest/<study>/<series>/<sop>.dcm``."""
    client = _client(node, timeout)
    if sop_uid:
        if not series_uid:
            raise PacsError("retrieving one instance needs its series UID too")
        datasets = [_call(node, "WADO-RS", client.retrieve_instance, study_uid, series_uid, sop_uid)]
    elif series_uid:
        datasets = _call(node, "WADO-RS", client.retrieve_series, study_uid, series_uid)
    else:
        datasets = _call(node, "WADO-RS", client.retrieve_study, study_uid)
    files, failed = [], 0
    for ds in datasets:
        try:
            path = received_path(Path(dest), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                                 str(ds.SOPInstanceUID))
            with atomic_path(path) as tmp, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds.save_as(tmp, enforce_file_format=True)
        except Exception:  # noqa: BLE001 - an instance that cannot be stored is counted
            failed += 1
            continue
        files.append(path)
    return sorted(files), failed


def send(node: WebNode, files: Sequence[str | Path], *, batch: int = 50, timeout: float = 120.0) -> SendReport:
    """STOW-RS ``files`` (in requests of ``batch`` instances); failures come from the response."""
    import pydicom

    client = _client(node, timeout)
    report = SendReport()
    loaded: list[tuple[Path, Any]] = []
    for f in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded.append((Path(f), pydicom.dcmread(f)))
        except Exception as err:  # noqa: BLE001
            report.failures.append((str(f), f"not a readable DICOM file ({type(err).__name__})"))
    for start in range(0, len(loaded), batch):
        chunk = loaded[start:start + batch]
        response = _call(node, "STOW-RS", client.store_instances, [ds for _, ds in chunk])
        failed = {str(item.ReferencedSOPInstanceUID): int(getattr(item, "FailureReason", 0))
                  for item in getattr(response, "FailedSOPSequence", None) or ()}
        for path, ds in chunk:
            reason = failed.get(str(ds.SOPInstanceUID))
            if reason is None:
                report.sent += 1
            else:
                report.failures.append((str(path), f"failure reason 0x{reason:04X}"))
    return report
