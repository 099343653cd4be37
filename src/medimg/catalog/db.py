"""Opening a catalog: SQLite in the user's data folder by default, PostgreSQL (or any SQLAlchemy URL) by URL."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from medimg.errors import MedimgError, ParameterError, UnknownNameError, UserInputError

__all__ = ["Catalog", "CatalogBusyError", "default_catalog_url", "normalize_url", "ENV_URL"]

T = TypeVar("T")
_WRITE_OPTION = "medimg_write"
_PG_SCHEMA_LOCK = 0x6D6564696D67  # "medimg": the advisory lock taken while creating the tables
#: SQLSTATEs of conflicts worth running the transaction again for (PostgreSQL): serialisation
#: failure, deadlock, lock not available.
_PG_RETRY = {"40001", "40P01", "55P03"}


class CatalogBusyError(MedimgError):
    """Another writer kept the catalog locked (or conflicting) through every attempt."""


def _transient(err: Any, dialect: str) -> bool:
    """True for a conflict with another writer (worth running the transaction again).

    SQLite and PostgreSQL writes are upserts, so a unique-key violation there is a real error;
    on other databases it means another writer inserted the same key first.
    """
    from sqlalchemy.exc import IntegrityError, OperationalError

    orig = getattr(err, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code is not None:
        return code in _PG_RETRY
    if isinstance(err, OperationalError):
        text = str(orig).lower()
        return "locked" in text or "busy" in text
    return isinstance(err, IntegrityError) and dialect not in ("sqlite", "postgresql")

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


def _enable_wal(cursor: Any, timeout_s: float) -> None:
    """Put a SQLite catalog in WAL mode (persistent: a catalog already in it is left alone).

    Switching the journal mode needs the database to itself, and SQLite answers "database is
    locked" at once, without its busy handler, while another process holds a lock (two indexers
    opening a new catalog at the same instant). So the switch is retried, backing off from 5 to
    100 ms, for up to ``timeout_s`` seconds (the catalog's busy timeout)."""
    import sqlite3

    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if ("locked" not in str(err) and "busy" not in str(err)) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 0.1)


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

    def __init__(self, url: str | Path | None = None, *, busy_timeout_s: float = 60.0) -> None:
        from medimg.core.optional import require

        require("sqlalchemy", extra="dicomnet")
        from sqlalchemy import create_engine, event
        from sqlalchemy.exc import SQLAlchemyError

        self.url = normalize_url(url)
        self.busy_timeout_s = float(busy_timeout_s)
        sqlite = self.url.startswith("sqlite")
        if sqlite and self.url.startswith("sqlite:///") and not self.url.startswith("sqlite:///:memory:"):
            Path(self.url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            # SQLite: wait up to busy_timeout_s for another writer's lock instead of failing at once
            self.engine = create_engine(self.url, connect_args={"timeout": self.busy_timeout_s} if sqlite else {})
        except (SQLAlchemyError, ImportError, ValueError) as err:
            raise UserInputError(f"cannot open the catalog {_safe(self.url)}: {err}") from err
        if self.engine.dialect.name == "sqlite":
            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # medimg emits BEGIN itself (below)
                cur = dbapi_conn.cursor()
                cur.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
                _enable_wal(cur, self.busy_timeout_s)
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            @event.listens_for(self.engine, "begin")
            def _begin(conn: Any) -> None:
                # A writing transaction takes the write lock when it starts (BEGIN IMMEDIATE), so
                # it waits for another writer (busy timeout) rather than failing half-way when a
                # read lock cannot be upgraded; reading transactions stay deferred.
                write = conn.get_execution_options().get(_WRITE_OPTION, False)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            if not self._schema_ready():
                self.run_write(self._create_schema)
        except SQLAlchemyError as err:
            self.engine.dispose()
            msg = f"cannot open the catalog {_safe(self.url)}: {str(err).splitlines()[0]}"
            raise UserInputError(msg) from err
        except BaseException:
            self.engine.dispose()
            raise

    def _schema_ready(self) -> bool:
        """True when every table exists and the schema version is this medimg's (read only: an
        existing catalog opens without taking the write lock)."""
        from sqlalchemy import inspect

        from medimg.catalog.schema import SCHEMA_VERSION, Base, Meta

        with self.engine.connect() as conn:
            if not set(Base.metadata.tables) <= set(inspect(conn).get_table_names()):
                return False
            row = conn.execute(Meta.__table__.select().where(Meta.key == "schema_version")).first()
        if row is not None and row.value != SCHEMA_VERSION:
            raise UserInputError(f"catalog {_safe(self.url)} has schema version {row.value}, "
                                 f"this medimg uses {SCHEMA_VERSION}")
        return row is not None

    def _create_schema(self, conn: Any) -> None:
        """Tables and the schema version, in one writing transaction (two processes opening a new
        catalog at once: one creates, the other waits and finds them)."""
        from sqlalchemy import text

        from medimg.catalog.schema import SCHEMA_VERSION, Base, Meta

        if conn.dialect.name == "postgresql":  # serialise concurrent CREATE TABLEs
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SCHEMA_LOCK})
        Base.metadata.create_all(conn)
        row = conn.execute(Meta.__table__.select().where(Meta.key == "schema_version")).first()
        if row is None:
            conn.execute(Meta.__table__.insert().values(key="schema_version", value=SCHEMA_VERSION))
        elif row.value != SCHEMA_VERSION:
            raise UserInputError(f"catalog {_safe(self.url)} has schema version {row.value}, "
                                 f"this medimg uses {SCHEMA_VERSION}")

    # ------------------------------------------------------------------ writing
    def run_write(self, work: Callable[[Any], T], *, attempts: int = 8) -> T:
        """Run ``work(connection)`` in one writing transaction, committed when it returns.

        Concurrent writers (several ``medimg index`` runs, a retrieve) are safe: on SQLite the
        transaction takes the write lock as it begins and waits for it up to the busy timeout;
        on PostgreSQL rows are written with upserts in key order. A transaction that still
        meets a conflict (database locked, deadlock, serialisation failure; on databases other
        than SQLite and PostgreSQL also a unique key another writer inserted first) is rolled
        back and run again, after a short
        random pause, up to ``attempts`` times. ``work`` must therefore keep its effects inside
        the transaction (and merge caches only after this returns).

        Raises
        ------
        CatalogBusyError
            The conflict persisted through every attempt.
        """
        from sqlalchemy.exc import DBAPIError

        for attempt in range(attempts):
            try:
                with self.engine.connect() as conn:
                    conn = conn.execution_options(**{_WRITE_OPTION: True})
                    with conn.begin():
                        return work(conn)
            except DBAPIError as err:
                if not _transient(err, self.engine.dialect.name):
                    raise
                if attempt == attempts - 1:
                    raise CatalogBusyError(
                        f"catalog {_safe(self.url)} is busy: {str(err.orig).splitlines()[0]} "
                        f"({attempts} attempts); try again later") from err
                time.sleep(random.uniform(0.02, 0.1) * 2 ** min(attempt, 5))
        raise AssertionError("unreachable")  # pragma: no cover

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
        series_uids, study_uids, sop_uids = list(series_uids), list(study_uids), list(sop_uids)
        derived_ids = [int(d) for d in derived_ids]

        def work(conn: Any) -> int:
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
            links = list(dict.fromkeys(links))  # a source named twice is linked once
            if links:
                conn.execute(DerivedSource.__table__.insert(),
                             [{"derived_pk": new_id, "source_kind": k, "source_pk": pk} for k, pk in links])
            return int(new_id)

        return self.run_write(work)

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
