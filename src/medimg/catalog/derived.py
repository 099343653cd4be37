"""Recording DICOM results (SEG, RTSTRUCT, SR, ...) as derived objects linked to their sources."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from medimg.catalog.db import Catalog
from medimg.catalog.index import index_files
from medimg.errors import FileFormatError

__all__ = ["register_dicom_result", "referenced_uids"]

_KINDS = {
    "1.2.840.10008.5.1.4.1.1.66.4": "segmentation",  # Segmentation Storage
    "1.2.840.10008.5.1.4.1.1.481.3": "segmentation",  # RT Structure Set Storage
    "1.2.840.10008.5.1.4.1.1.88.": "report",  # Structured Reports (prefix)
}


def _walk(ds: Any) -> Any:
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value or ():
                yield from _walk(item)


def referenced_uids(ds: Any) -> tuple[set[str], set[str]]:
    """(series UIDs, SOP instance UIDs) that a DICOM object references, at any depth.

    Series come from Referenced Series / RT Referenced Series sequences; instances from
    Referenced SOP Instance UID anywhere (source images, contour images, ...).
    """
    series: set[str] = set()
    instances: set[str] = set()
    for elem in _walk(ds):
        if elem.keyword in ("ReferencedSeriesSequence", "RTReferencedSeriesSequence"):
            for item in elem.value or ():
                uid = item.get("SeriesInstanceUID")
                if uid:
                    series.add(str(uid))
        elif elem.keyword == "ReferencedSOPInstanceUID" and elem.value:
            instances.add(str(elem.value))
    return series, instances


def register_dicom_result(catalog: Catalog, path: str | Path, *, kind: str | None = None,
                          params: dict[str, Any] | None = None) -> int:
    """Index a DICOM result file and record it as a derived object of what it references.

    The kind follows the SOP class (Segmentation and RT Structure Set: ``segmentation``; SR:
    ``report``; else ``other``) unless given. Sources are the referenced series and instances
    that the catalog holds. Returns the derived object's id.
    """
    import pydicom
    from sqlalchemy import select

    from medimg.catalog.schema import Instance, Series

    path = Path(path).resolve()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as err:  # noqa: BLE001
        raise FileFormatError(path, f"not a readable DICOM file ({type(err).__name__})") from err
    index_files(catalog, [path])
    sop_class = str(ds.get("SOPClassUID", ""))
    if kind is None:
        kind = next((k for prefix, k in _KINDS.items() if sop_class.startswith(prefix)), "other")
    series, instances = referenced_uids(ds)
    with catalog.engine.connect() as conn:
        known_series = {u for (u,) in conn.execute(select(Series.series_uid).where(Series.series_uid.in_(series)))} if series else set()
        known_sops = {u for (u,) in conn.execute(select(Instance.sop_uid).where(Instance.sop_uid.in_(instances)))} if instances else set()
    if not known_series and known_sops:  # link the series of referenced instances too
        with catalog.engine.connect() as conn:
            known_series = {u for (u,) in conn.execute(
                select(Series.series_uid).join(Instance, Instance.series_pk == Series.id)
                .where(Instance.sop_uid.in_(known_sops)))}
    return catalog.add_derived(
        kind, path, series_uids=sorted(known_series), sop_uids=sorted(known_sops),
        name=str(ds.get("SeriesDescription", "") or "") or None, params=params,
        sop_uid=str(ds.get("SOPInstanceUID", "") or "") or None,
    )
