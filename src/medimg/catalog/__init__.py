"""The DICOM catalog: patients, studies, series, instances and derived objects in SQL.

* :class:`Catalog` opens one (SQLite in the user data folder by default, PostgreSQL or any
  SQLAlchemy URL by URL, or ``$MEDIMG_CATALOG_URL``).
* :func:`index_folder` indexes a folder incrementally and in parallel; :func:`index_files`
  indexes given files (instances retrieved from a PACS).
* :func:`query` finds studies, series or instances; :func:`format_rows` prints CSV or JSON.
* :meth:`Catalog.add_derived` links volumes, segmentations, feature tables and runs to sources;
  :func:`register_dicom_result` does it for a DICOM result (SEG, RTSTRUCT, SR) from its references.

See ``docs/catalog.md``.
"""

from __future__ import annotations

from medimg.catalog.db import ENV_URL, Catalog, CatalogBusyError, default_catalog_url, normalize_url
from medimg.catalog.derived import referenced_uids, register_dicom_result
from medimg.catalog.index import IndexReport, index_files, index_folder
from medimg.catalog.query import FORMATS, LEVELS, QueryResult, format_rows, parse_date, query

__all__ = [
    "Catalog", "CatalogBusyError", "default_catalog_url", "normalize_url", "ENV_URL", "index_folder", "index_files",
    "IndexReport", "register_dicom_result", "referenced_uids", "query", "QueryResult", "format_rows", "parse_date", "LEVELS", "FORMATS",
]
