"""The catalog's tables (SQLAlchemy 2 declarative models).

Patient 1-n Study 1-n Series 1-n Instance; each indexed file is a :class:`File` row (path,
size, modification time, status) pointing at the instance it holds. Derived objects (volumes,
segmentations, feature tables, runs) are :class:`Derived` rows linked to their sources (series,
instances, studies or other derived objects) through :class:`DerivedSource`.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["Base", "Patient", "Study", "Series", "Instance", "File", "Derived", "DerivedSource",
           "FILE_STATUSES", "DERIVED_KINDS", "SCHEMA_VERSION", "Meta"]

#: ``ok``: indexed; ``missing``: vanished since; ``corrupt``: DICOM but broken; ``not_dicom``.
FILE_STATUSES = ("ok", "missing", "corrupt", "not_dicom")
#: Kinds of derived objects.
DERIVED_KINDS = ("volume", "segmentation", "feature_table", "run", "report", "other")
SCHEMA_VERSION = "1"


class Base(DeclarativeBase):
    """Declarative base of the catalog tables."""


class Meta(Base):
    """Key/value facts about the catalog (schema version)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Patient(Base):
    """A patient, keyed by Patient ID (an empty ID is one "unknown" patient)."""

    __tablename__ = "patient"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(320))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(16))
    studies: Mapped[list[Study]] = relationship(back_populates="patient")


class Study(Base):
    """A study (Study Instance UID)."""

    __tablename__ = "study"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    study_date: Mapped[dt.date | None] = mapped_column(Date, index=True)
    study_time: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(String(256))
    accession_number: Mapped[str | None] = mapped_column(String(64))
    study_id: Mapped[str | None] = mapped_column(String(64))
    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study")


class Series(Base):
    """A series (Series Instance UID)."""

    __tablename__ = "series"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    modality: Mapped[str | None] = mapped_column(String(16), index=True)
    body_part: Mapped[str | None] = mapped_column(String(64), index=True)
    description: Mapped[str | None] = mapped_column(String(256))
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_date: Mapped[dt.date | None] = mapped_column(Date)
    manufacturer: Mapped[str | None] = mapped_column(String(128))
    model: Mapped[str | None] = mapped_column(String(128))
    frame_of_reference_uid: Mapped[str | None] = mapped_column(String(64))
    study: Mapped[Study] = relationship(back_populates="series")


class Instance(Base):
    """A SOP instance (SOP Instance UID)."""

    __tablename__ = "instance"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_class_uid: Mapped[str | None] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    n_frames: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax: Mapped[str | None] = mapped_column(String(64))


class File(Base):
    """An indexed file; unchanged files (same size and mtime) are skipped by the next index."""

    __tablename__ = "file"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(4096), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    instance_pk: Mapped[int | None] = mapped_column(ForeignKey("instance.id"), index=True)
    indexed_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Derived(Base):
    """A result computed from catalogued data: a volume, a segmentation, a feature table, a run."""

    __tablename__ = "derived"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    uri: Mapped[str] = mapped_column(String(4096))
    name: Mapped[str | None] = mapped_column(String(256))
    sop_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    params: Mapped[str | None] = mapped_column(Text)  # JSON
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    sources: Mapped[list[DerivedSource]] = relationship(
        back_populates="derived", cascade="all, delete-orphan", foreign_keys="DerivedSource.derived_pk"
    )


class DerivedSource(Base):
    """One source of a derived object: a study, a series, an instance or another derived object."""

    __tablename__ = "derived_source"
    __table_args__ = (UniqueConstraint("derived_pk", "source_kind", "source_pk"),
                      Index("ix_derived_source_target", "source_kind", "source_pk"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    derived_pk: Mapped[int] = mapped_column(ForeignKey("derived.id"))
    source_kind: Mapped[str] = mapped_column(String(16))  # study | series | instance | derived
    source_pk: Mapped[int] = mapped_column(Integer)
    derived: Mapped[Derived] = relationship(back_populates="sources", foreign_keys=[derived_pk])
