"""DICOM: series to volumes with correct geometry, single files, multi-frame objects.

* :func:`scan` reads headers under a folder and groups frames into series (one volume each).
* :func:`read_series` turns one of them into an :class:`~medimg.Image`.
* :func:`read_dicom` does both for a path that holds one series.
* :func:`decode_pixels` gives the stored values of one file (any supported transfer syntax).
* :func:`write_series` writes a 3-D Image as a single-frame DICOM series.
"""

from __future__ import annotations

from typing import Any

from medimg.io.dicom.header import Header, read_header
from medimg.io.dicom.pixels import decode_pixels
from medimg.io.dicom.scan import Frame, ScanResult, SeriesInfo, list_files, scan
from medimg.io.dicom.volume import StackGeometry, analyze_geometry, read_dicom, read_series

__all__ = [
    "Header", "read_header", "decode_pixels", "Frame", "ScanResult", "SeriesInfo", "list_files",
    "scan", "StackGeometry", "analyze_geometry", "read_dicom", "read_series", "write_series",
]


def __getattr__(name: str) -> Any:
    if name == "write_series":
        from medimg.io.dicom.writer import write_series

        return write_series
    raise AttributeError(f"module 'medimg.io.dicom' has no attribute {name!r}")
