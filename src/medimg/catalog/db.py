"""Opening a catalog: SQLite in the user's data folder by default, PostgreSQL (or any SQLAlchemy URL) by URL."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medimg.errors import ParameterError, UnknownNameError, UserInputError

__all__ = ["Catalog", "default_catalog_url", "normalize_url", "ENV_URL"]

#: Environment variable that overrides the default catalog location.
ENV_URL = "MEDIMG_CATALOG_URL"


def _data_home() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def default_catalog_url() -> str:
    """``$MEDIMG_CATALOG_URL``, else SQLite at ``<user data dir>/medimg/catalog.sqlite``.

    The user data dir is ``$XDG_DATA_HOME`` (default ``~/.local/share``) on Linux,
    ``~/Library/Application Support`` on macOS and ``%LOCALAPPDATA%`` on Windows.
    """
    env = os.environ.get(ENV_URL)
    if env:
        return normalize_url(env)
    return normalize_url(_data_home() / "medimg" / "catalog.sqlite")


def normalize_url(db: str | Path | None) -> str:
    """A SQLAlchemy URL from a URL or a file path (a path means SQLite).

    ``postgresql://`` and ``postgres://`` URLs use the psycopg (3) driver.
    """
    if db is None:
        return default_catalog_url()
    text = str(db)
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    for prefix in ("postgresql://", "postgres://"):
        if text.startswith(prefix):
            return "postgresql+psycopg://" + text[len(prefix):]
    return text


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for messages
        return url


class Catalog:
    """A connection to a catalog database; the tables are created on first use.

    Parameters
    ----------
    url
        SQLAlchemy URL (``sqlite:///path``, ``postgresql://user@host:port/db``) or a file path
        for SQLite; ``None`` for :func:`default_catalog_url`.

    Examples
    --------
    >>> with Catalog("sqlite:///:memory:") as cat:  # doctest: +SKIP
    ...     index_folder(cat, "/data/dicom")
    """

    def __init__(self, url: str | Path | None = None) -> None:
        from medimg.core.optional import require

        require("sqlalchemy", extra="dicomnet")
        from sqlalchemy import create_engine, event
        from sqlalchemy.exc import SQLAlchemyError

        from medimg.catalog.schema import SCHEMA_VERSION, Base, Meta

        self.url = normalize_url(url)
        if self.url.startswith("sqlite:///") and not self.url.startswith("sqlite:///:memory:"):
            Path(self.url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = create_engine(self.url)
        except (SQLAlchemyError, ImportError, ValueError) as err:
            raise UserInputError(f"cannot open the catalog {_safe(self.url)}: {err}") from err
        if self.engine.dialect.name == "sqlite":
            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()
        try:
            Base.metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                row = conn.execute(Meta.__table__.select().where(Meta.key == "schema_version")).first()
                if row is None:
                    conn.execute(Meta.__table__.insert().values(key="schema_version", value=SCHEMA_VERSION))
                elif row.value != SCHEMA_VERSION:
                    raise UserInputError(f"catalog {_safe(self.url)} has schema version {row.value}, "
                                         f"this medimg uses {SCHEMA_VERSION}")
        except SQLAlchemyError as err:
            self.engine.dispose()
            msg = f"cannot open the catalog {_safe(self.url)}: {str(err).splitlines()[0]}"
            raise UserInputError(msg) from err

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({_safe(self.url)!r})"

    # ------------------------------------------------------------------ summary
    def counts(self) -> dict[str, int]:
        """Number of patients, studies, series, instances, and files by status."""
        from sqlalchemy import func, select

        from medimg.catalog.schema import Derived, File, Instance, Patient, Series, Study

        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            for name, table in (("patients", Patient), ("studies", Study), ("series", Series),
                                ("instances", Instance), ("derived", Derived)):
                out[name] = conn.execute(select(func.count()).select_from(table)).scalar_one()
            for status, n in conn.execute(select(File.status, func.count()).group_by(File.status)):
                out[f"files_{status}"] = n
        return out

    def file_status(self, path: str | Path) -> str | None:
        """Status of an indexed file (``ok``, ``missing``, ``corrupt``, ``not_dicom``) or ``None``."""
        from sqlalchemy import select

        from medimg.catalog.schema import File

        with self.engine.connect() as conn:
            return conn.execute(select(File.status).where(File.path == str(Path(path).resolve()))).scalar()

    # ------------------------------------------------------------------ derived objects
    def add_derived(
        self,
        kind: str,
        uri: str | Path,
        *,
        series_uids: Iterable[str] = (),
        study_uids: Iterable[str] = (),
        sop_uids: Iterable[str] = (),
        derived_ids: Iterable[int] = (),
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        sop_uid: str | None = None,
    ) -> int:
        """Record a derived object and link it to its sources; return its id.

        Parameters
        ----------
        kind
            One of :data:`~medimg.catalog.schema.DERIVED_KINDS` (volume, segmentation,
            feature_table, run, report, other).
        uri
            Where it is (a path or a URL).
        series_uids, study_uids, sop_uids, derived_ids
            The catalogued objects it was made from (they must be in the catalog).
        name, params
            A label and the parameters that made it (stored as JSON).
        sop_uid
            Its own SOP Instance UID when it is a DICOM object (a DICOM SEG, say).
        """
        from sqlalchemy import select

        from medimg.catalog.schema import (
            DERIVED_KINDS,
            Derived,
            DerivedSource,
            Instance,
            Series,
            Study,
        )

        if kind not in DERIVED_KINDS:
            raise UnknownNameError("derived kind", kind, DERIVED_KINDS)
        uri_s = str(Path(uri).resolve()) if isinstance(uri, Path) else str(uri)
        with self.engine.begin() as conn:
            links: list[tuple[str, int]] = []
            for label, table, column, values in (
                ("series", Series, Series.series_uid, series_uids),
                ("study", Study, Study.study_uid, study_uids),
                ("instance", Instance, Instance.sop_uid, sop_uids),
            ):
                for value in values:
                    pk = conn.execute(select(table.id).where(column == value)).scalar()
                    if pk is None:
                        raise ParameterError(f"{label} {value} is not in the catalog {self!r}; index it first")
                    links.append((label, pk))
            for did in derived_ids:
                if conn.execute(select(Derived.id).where(Derived.id == int(did))).scalar() is None:
                    raise ParameterError(f"derived object {did} is not in the catalog")
                links.append(("derived", int(did)))
            new_id = conn.execute(
                Derived.__table__.insert().values(
                    kind=kind, uri=uri_s, name=name, sop_uid=sop_uid,
                    params=json.dumps(dict(params), default=str, sort_keys=True) if params else None,
                    created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                )
            ).inserted_primary_key[0]
            if links:
                conn.execute(DerivedSource.__table__.insert(),
                             [{"derived_pk": new_id, "source_kind": k, "source_pk": pk} for k, pk in links])
        return int(new_id)

    def derived_from(self, *, series_uid: str | None = None, study_uid: str | None = None,
                     sop_uid: str | None = None, derived_id: int | None = None) -> list[dict[str, Any]]:
        """Derived objects made directly from the given source."""
        from sqlalchemy import select

        from medimg.catalog.schema import Derived, DerivedSource, Instance, Series, Study

        with self.engine.connect() as conn:
            if series_uid is not None:
                kind, pk = "series", conn.execute(select(Series.id).where(Series.series_uid == series_uid)).scalar()
            elif study_uid is not None:
                kind, pk = "study", conn.execute(select(Study.id).where(Study.study_uid == study_uid)).scalar()
            elif sop_uid is not None:
                kind, pk = "instance", conn.execute(select(Instance.id).where(Instance.sop_uid == sop_uid)).scalar()
            elif derived_id is not None:
                kind, pk = "derived", derived_id
            else:
                raise ParameterError("derived_from needs one of series_uid, study_uid, sop_uid, derived_id")
            if pk is None:
                return []
            rows = conn.execute(
                select(Derived.__table__).join(DerivedSource, DerivedSource.derived_pk == Derived.id)
                .where(DerivedSource.source_kind == kind, DerivedSource.source_pk == pk)
                .order_by(Derived.id)
            ).mappings().all()
        return [_derived_row(r) for r in rows]

    def sources_of(self, derived_id: int) -> list[tuple[str, str]]:
        """(kind, UID or id) of each source of a derived object."""
        from sqlalchemy import select

        from medimg.catalog.schema import DerivedSource, Instance, Series, Study

        out = []
        with self.engine.connect() as conn:
            for kind, pk in conn.execute(select(DerivedSource.source_kind, DerivedSource.source_pk)
                                         .where(DerivedSource.derived_pk == derived_id)
                                         .order_by(DerivedSource.id)):
                column = {"series": Series.series_uid, "study": Study.study_uid,
                          "instance": Instance.sop_uid}.get(kind)
                if column is None:
                    out.append((kind, str(pk)))
                    continue
                table = column.class_
                out.append((kind, conn.execute(select(column).where(table.id == pk)).scalar_one()))
        return out


def _derived_row(r: Mapping[str, Any]) -> dict[str, Any]:
    row = {k: r[k] for k in ("id", "kind", "uri", "name", "sop_uid", "created_at")}
    row["params"] = json.loads(r["params"]) if r["params"] else {}
    return row
