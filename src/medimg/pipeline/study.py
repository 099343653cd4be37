"""A study in YAML: its schema, and its validation before any work starts.

A study names its inputs (a CSV of cases, a folder, or a catalog query), the per-case steps
(any registered operation, by name, with parameters; a step takes the case's files or earlier
steps' outputs), the cohort steps that run once on the collected results, and the outputs::

    name: lesion-radiomics
    seed: 0
    inputs:
      cases: cases.csv              # columns: case, image, mask, label, and any others
      label_column: outcome         # optional: the outcome a model predicts
      group_column: patient_id      # optional: cases of one patient stay in one fold
      subgroup_columns: [sex, scanner]
    steps:
      - id: smooth
        op: filters.gaussian
        params: {sigma_mm: 1.0}     # takes the case's image (the default)
      - id: lesion
        op: segmentation.otsu
        inputs: {image: smooth}
        keep: true                  # write it to cases/<case>/lesion.nii.gz
      - id: radiomics
        op: features
        inputs: {image: image, mask: lesion}
        params: {preset: ibsi-ct-a, families: [firstorder, glcm]}
    outputs:
      tables: [radiomics]

:func:`load_study` reads and validates a study; every error names its place in the YAML
(``steps[2].params.sigma_mm: ...``) and nothing has run yet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic

from medimg.errors import ParameterError, UserInputError, did_you_mean

__all__ = ["Study", "StepSpec", "InputSpec", "OutputSpec", "CatalogInput", "FolderInput", "PacsInput", "PrepareSpec",
           "load_study",
           "study_from_mapping", "StudyError"]

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


class StudyError(ParameterError):
    """A study that cannot run: the message starts with the YAML path of the problem."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}" if where else problem)


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class FolderInput(_Strict):
    """Every DICOM series (or image file) under a folder is one case, its image."""

    path: str
    pattern: str | None = None  # e.g. "*.nii.gz": image files instead of DICOM series
    modality: str | None = None  # keep only DICOM series of this modality


class CatalogInput(_Strict):
    """The series a catalog query returns are the cases (``medimg index`` built the catalog)."""

    url: str  # sqlite:///path or postgresql://...
    patient: str | None = None
    modality: str | None = None
    description: str | None = None  # regular expression on the series and study descriptions
    body_part: str | None = None
    date_from: str | None = None
    date_to: str | None = None


class PacsInput(_Strict):
    """The series a PACS query finds are retrieved into the output folder (``pacs/``); each
    series is a case, its image."""

    server: str  # dicom://AET@host:port or a DICOMweb root http(s)://host:port/dicom-web
    patient_id: str | None = None
    study_uid: str | None = None
    modality: str | None = None
    study_date: str | None = None  # YYYYMMDD, or a range FROM..TO
    description: str | None = None
    method: str = "get"  # DIMSE: get or move


class InputSpec(_Strict):
    """Where the cases come from: exactly one of ``cases``, ``folder``, ``catalog``, ``pacs``."""

    cases: str | None = None
    folder: FolderInput | str | None = None
    catalog: CatalogInput | None = None
    pacs: PacsInput | None = None
    files: list[str] = ["image", "mask"]  # CSV columns holding paths (each becomes an input role)
    optional_files: list[str] = []  # of those, the ones a case may leave empty (steps that need it skip it)
    id_column: str = "case"
    label_column: str | None = None
    group_column: str | None = None
    subgroup_columns: list[str] = []

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> InputSpec:
        given = [n for n in ("cases", "folder", "catalog", "pacs") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of cases, folder, catalog, pacs (got {', '.join(given) or 'none'})")
        unknown = [r for r in self.optional_files if r not in self.files]
        if unknown:
            raise ValueError(f"optional_files {unknown} are not in files {self.files}")
        return self


class StepSpec(_Strict):
    """One step: ``op`` (``kind.name`` of a registered operation, or a pipeline operation such
    as ``features``), its ``inputs`` (role -> a case file role or an earlier step's id) and
    ``params`` (the operation's keyword parameters)."""

    id: str
    op: str
    inputs: dict[str, str] = {}
    params: dict[str, Any] = {}
    keep: bool = False
    #: Whether the step's image output goes into the cache: ``True`` always, ``False`` never,
    #: unset: when recomputing it would cost at least 20x storing it (docs/pipeline.md).
    cache: pydantic.StrictBool | None = None

    @pydantic.field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("must start with a letter or _ and hold only letters, digits, _ and - (at most 64)")
        return value


class PrepareSpec(_Strict):
    """A step run once on the whole set of cases before the per-case steps: ``deidentify`` (the
    cases' DICOM files are de-identified and the cases go on with the de-identified copies) or
    ``index`` (the cases' DICOM files are indexed into a catalog)."""

    op: str
    params: dict[str, Any] = {}


class OutputSpec(_Strict):
    """What the study leaves in its output folder besides the manifest, run log and cache."""

    tables: list[str] | None = None  # value-step ids written as tables (default: all)
    report: bool = True


class Study(_Strict):
    """A validated study (see the module notes for the YAML form)."""

    name: str
    seed: int = 0
    description: str = ""
    inputs: InputSpec
    prepare: list[PrepareSpec] = []
    steps: list[StepSpec] = []
    cohort: list[StepSpec] = []
    outputs: OutputSpec = OutputSpec()


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def study_from_mapping(data: Mapping[str, Any], *, base: str | Path | None = None) -> Study:
    """Validate a study given as a mapping (the parsed YAML); relative paths stay as written
    (:func:`load_study` resolves them against the YAML's folder)."""
    if not isinstance(data, Mapping):
        raise StudyError("", f"a study is a mapping of name, inputs, steps, ...; got {type(data).__name__}")
    known = set(Study.model_fields)
    for key in data:
        if key not in known:
            raise StudyError(str(key), f"unknown key{did_you_mean(str(key), known)}; keys: {', '.join(sorted(known))}")
    try:
        study = Study.model_validate(dict(data))
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        where = _where(tuple(first["loc"]))
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            msg = "unknown key"
        raise StudyError(where, msg) from err
    _check_ids(study)
    from medimg.pipeline.prepare import check_prepare
    from medimg.pipeline.steps import resolve_plan

    check_prepare(study)
    plan = resolve_plan(study, base)  # every op known, every parameter valid, every input reference defined
    _check_cache_keys(study, {s.id: s.output for s in plan.steps})
    if study.cohort:
        from medimg.pipeline.cohort import resolve_cohort

        resolve_cohort(study, [s.id for s in plan.steps if s.output == "values"],
                       {s.id: s.keep for s in plan.steps if s.output in ("image", "labels")})
    return study


def _check_ids(study: Study) -> None:
    seen: dict[str, str] = {}
    for group in ("steps", "cohort"):
        for k, step in enumerate(getattr(study, group)):
            where = f"{group}[{k}].id"
            if step.id in seen:
                raise StudyError(where, f"{step.id!r} is already the id of {seen[step.id]}")
            if step.id in study.inputs.files:
                raise StudyError(where, f"{step.id!r} is also the name of an input file role; choose another id")
            seen[step.id] = f"{group}[{k}]"


def _check_cache_keys(study: Study, outputs: Mapping[str, str]) -> None:
    """``cache`` chooses whether an image step is stored; values and cohort results always are."""
    for k, step in enumerate(study.steps):
        if step.cache is False and outputs.get(step.id) == "values":
            raise StudyError(f"steps[{k}].cache", "a step that gives values is always cached (its values are "
                                                  "the results); only image steps take cache: false")
    for k, step in enumerate(study.cohort):
        if step.cache is not None:
            raise StudyError(f"cohort[{k}].cache", "cohort steps are always cached; remove this key")


def load_study(path: str | Path) -> tuple[Study, Path]:
    """Read and validate the study in the YAML file ``path``; return it and the folder its
    relative paths are relative to."""
    from medimg.core.yamlio import load_file

    path = Path(path)
    data = load_file(path, what="study file")
    try:
        study = study_from_mapping(data or {}, base=path.parent)
    except StudyError as err:
        raise StudyError(err.where, f"{err.problem} (in {path})") from err
    except UserInputError:
        raise
    return study, path.parent.resolve()
