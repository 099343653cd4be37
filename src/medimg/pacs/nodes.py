"""Naming a PACS: ``dicom://AET@host:port`` (DIMSE) or ``http(s)://host:port/dicom-web`` (DICOMweb)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimg.errors import ParameterError, UserInputError

__all__ = ["DimseNode", "WebNode", "parse_server", "PacsError", "QUERY_LEVELS", "RetrieveReport",
           "SendReport", "received_path"]

QUERY_LEVELS = ("patient", "study", "series", "image")
_AET = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable, no backslash, at most 16


class PacsError(UserInputError):
    """A PACS could not be reached, refused a request or reported a failure."""


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
    """Files written by a retrieve (and, when a catalog was given, how they were indexed)."""

    files: list[Path]
    failed: int = 0
    index: Any = None


@dataclass
class SendReport:
    """Instances stored (``sent``) and refused (``failures``: (file, reason))."""

    sent: int = 0
    failures: list[tuple[str, str]] | None = None

    def __post_init__(self) -> None:
        if self.failures is None:
            self.failures = []


def received_path(dest: Path, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    """Where a received instance is stored: ``dest/<study>/<series>/<sop>.dcm`` (UIDs checked)."""
    for uid in (study_uid, series_uid, sop_uid):
        if not re.fullmatch(r"[0-9.]{1,64}", uid or ""):
            raise PacsError(f"received an instance with an invalid UID {uid!r}; not stored")
    return dest / study_uid / series_uid / f"{sop_uid}.dcm"
