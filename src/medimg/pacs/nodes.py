"""Naming a PACS: ``dicom://AET@host:port`` (DIMSE) or ``http(s)://host:port/dicom-web`` (DICOMweb)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimg.errors import ParameterError, UserInputError

__all__ = ["DimseNode", "WebNode", "parse_server", "PacsError", "TransientPacsError", "UnknownHostError", "QUERY_LEVELS",
           "RetrieveReport", "SendReport", "Outgoing", "read_outgoing", "received_path", "check_uid",
           "resolve_host"]

QUERY_LEVELS = ("patient", "study", "series", "image")
_AET = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable, no backslash, at most 16


class PacsError(UserInputError):
    """A PACS could not be reached, refused a request or reported a failure."""


class TransientPacsError(PacsError):
    """No answer from the PACS (timeout, aborted or failed connection): worth trying again."""


class UnknownHostError(PacsError):
    """The PACS's host name does not resolve."""


@dataclass(frozen=True)
class DimseNode:
    """A DICOM network node (DIMSE): its AE title, host and port, and the AE title we call from."""

    host: str
    port: int
    aet: str
    calling_aet: str = "MEDIMG"

    def __str__(self) -> str:
        return f"dicom://{self.aet}@{self.host}:{self.port}"


@dataclass(frozen=True)
class WebNode:
    """A DICOMweb service root (QIDO-RS, WADO-RS and STOW-RS below it)."""

    url: str

    def __str__(self) -> str:
        return self.url


def _check_aet(aet: str, what: str) -> str:
    if not _AET.match(aet) or aet.strip() != aet or not aet.strip():
        raise ParameterError(f"{what} {aet!r} is not a valid AE title (1-16 printable characters, no backslash, "
                             "no leading or trailing space)")
    return aet


def parse_server(text: str | DimseNode | WebNode, *, calling_aet: str = "MEDIMG") -> DimseNode | WebNode:
    """Parse ``dicom://AET@host:port`` (or ``dimse://``) or an ``http(s)://`` DICOMweb root."""
    if isinstance(text, (DimseNode, WebNode)):
        return text
    text = str(text).strip()
    if text.startswith(("http://", "https://")):
        return WebNode(text.rstrip("/"))
    m = re.match(r"^(?:dicom|dimse)://(?P<aet>[^@]+)@(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d+)/?$", text)
    if m is None:
        msg = (f"server {text!r} is neither dicom://AET@host:port (DIMSE) nor an http(s):// DICOMweb URL; "
               "e.g. dicom://ORTHANC@127.0.0.1:4242 or http://127.0.0.1:8042/dicom-web")
        raise ParameterError(msg)
    port = int(m["port"])
    if not 0 < port < 65536:
        raise ParameterError(f"server {text!r}: port {port} is out of range 1-65535")
    return DimseNode(m["host"].strip("[]"), port, _check_aet(m["aet"], "called AE title"),
                     _check_aet(calling_aet, "calling AE title"))


@dataclass
class RetrieveReport:
    """Files written by a retrieve, the instances that could not be stored and why (and, when a
    catalog was given, how the files were indexed)."""

    files: list[Path]
    failed: int = 0
    index: Any = None
    problems: list[str] = field(default_factory=list)


@dataclass
class SendReport:
    """What a send did: ``stored`` (files the PACS accepted in this call; ``sent`` counts them),
    ``skipped`` (files whose SOP Instance UID the PACS already held), ``failures`` ((file,
    reason) for each file not stored), ``retries`` (stores or associations tried again) and
    ``notes`` (what the user should know, e.g. that the held instances could not be asked for)."""

    sent: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    retries: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Outgoing:
    """A file to send, with what its header says (read once, before anything is sent)."""

    path: Path
    sop_class: str
    sop_uid: str
    transfer_syntax: str
    study_uid: str
    series_uid: str


def read_outgoing(files: Sequence[str | Path], report: SendReport) -> list[Outgoing]:
    """Headers of ``files`` (pixel data not read); unreadable files go to ``report.failures``."""
    import warnings

    import pydicom

    items: list[Outgoing] = []
    for f in files:
        path = Path(f)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            items.append(Outgoing(path, str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                                  str(ds.file_meta.TransferSyntaxUID), str(ds.get("StudyInstanceUID", "") or ""),
                                  str(ds.get("SeriesInstanceUID", "") or "")))
        except Exception as err:  # noqa: BLE001 - an unreadable file is reported, the rest is sent
            report.failures.append((str(path), f"not a readable DICOM file ({type(err).__name__})"))
    return items


#: A UID as PS3.5 9.1 defines it: numeric components without leading zeros, dots between, 64 at most.
_UID = re.compile(r"^(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+$")


def check_uid(value: object, what: str) -> str:
    """``value`` as a UID string, or :class:`PacsError` naming ``what`` and the value received."""
    text = str(value if value is not None else "").strip("\0 ")
    if len(text) > 64 or not _UID.match(text):
        raise PacsError(f"received {what} {text[:80]!r}, which is not a valid UID (digits and dots, "
                        "at most 64 characters); not stored")
    return text


def received_path(dest: Path, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    """Where a received instance is stored: ``dest/<study>/<series>/<sop>.dcm``.

    The UIDs come from the PACS and are checked (UID syntax, PS3.5 9.1), and the path is
    confined to ``dest`` (:func:`medimg.core.files.confined_path`): a hostile or broken PACS
    cannot make medimg write outside ``dest``.
    """
    from medimg.core.files import confined_path

    study = check_uid(study_uid, "Study Instance UID")
    series = check_uid(series_uid, "Series Instance UID")
    sop = check_uid(sop_uid, "SOP Instance UID")
    return confined_path(dest, study, series, f"{sop}.dcm")


def resolve_host(host: str, port: int, where: object) -> None:
    """Check that ``host`` resolves; :class:`PacsError` (one line) when it does not."""
    import socket

    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise UnknownHostError(f"{where}: cannot resolve host {host!r} ({reason})") from err
    except OSError as err:
        raise UnknownHostError(f"{where}: cannot look up host {host!r} ({err.strerror or err})") from err
