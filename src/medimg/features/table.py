"""Feature tables: one row per (case, ROI) with provenance, or one row per value (long form),
written to CSV or Parquet; and the batch over many cases (worker processes, or Dask), where a
failing case is recorded and the batch goes on.

Wide table columns: ``case``, ``label``, the feature keys of :func:`~medimg.features.extract`,
then the provenance columns ``prov.medimg_version``, ``prov.config`` (the resolved settings as
JSON), ``prov.image``, ``prov.mask`` (paths), ``prov.image_sha256``, ``prov.mask_sha256`` and, for
batches, ``status`` (``ok``/``error``) and ``error``.

Long table columns: ``case``, ``label``, ``feature``, ``ibsi_code``, ``aggregation_code`` (empty
where the family has none) and ``value`` — the codes of the IBSI reference tables.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimg.core.files import atomic_path, full_suffix, sha256_file
from medimg.errors import FileFormatError, ParameterError, UserInputError
from medimg.features.compliance import long_rows

__all__ = ["Case", "case_row", "extract_batch", "read_cases", "write_table", "to_long", "TABLE_SUFFIXES"]

TABLE_SUFFIXES = (".csv", ".parquet")
PROVENANCE = ("prov.medimg_version", "prov.config", "prov.image", "prov.mask", "prov.image_sha256",
              "prov.mask_sha256")


@dataclass(frozen=True)
class Case:
    """One (image, mask, label) to extract; ``case`` names it in the table."""

    case: str
    image: Path
    mask: Path
    label: int = 1


def case_row(case: Case, config: Any, *, families: Sequence[str] | None = None) -> dict[str, Any]:
    """Read ``case``'s files, extract its features and return its wide-table row (with provenance)."""
    from medimg import __version__
    from medimg.features import _resolve_config, extract
    from medimg.io import read

    cfg = _resolve_config(config)
    image = read(case.image)
    mask = read(case.mask)
    values = extract(image, mask, families=families, label=case.label, config=cfg)
    row: dict[str, Any] = {"case": case.case, "label": case.label}
    row.update(values)
    row.update({
        "prov.medimg_version": __version__,
        "prov.config": cfg.to_json(),
        "prov.image": str(case.image),
        "prov.mask": str(case.mask),
        "prov.image_sha256": sha256_file(case.image) if Path(case.image).is_file() else "",
        "prov.mask_sha256": sha256_file(case.mask) if Path(case.mask).is_file() else "",
    })
    return row


def _safe_row(case: Case, config: Any, families: Sequence[str] | None) -> dict[str, Any]:
    try:
        row = case_row(case, config, families=families)
        row["status"], row["error"] = "ok", ""
    except UserInputError as err:
        row = {"case": case.case, "label": case.label, "status": "error", "error": str(err),
               "prov.image": str(case.image), "prov.mask": str(case.mask)}
    return row


def _safe_rows(cases: Sequence[Case], config: Any, families: Sequence[str] | None) -> list[dict[str, Any]]:
    return [_safe_row(c, config, families) for c in cases]


#: Environment variables that size the thread pools of numerical libraries.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")


def _worker_init() -> None:
    """Process-pool initializer. One thread per numerical library, so that N worker processes
    use N cores (a worker's BLAS or OpenMP pool would otherwise compete with the other workers).
    With glibc, freed memory is kept for the next case instead of being returned to the system
    and faulted in again (each case allocates and frees the same large arrays; measured: the IBSI
    CT phantom case 0.36 -> 0.28 s); a worker's memory stays at its largest case's."""
    import os

    for var in _THREAD_VARS:
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    else:
        threadpool_limits(1)
    if "SimpleITK" in sys.modules:  # imported before the fork: the variable comes too late
        sys.modules["SimpleITK"].ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: glibc's largest, 32 MiB
            libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
        except (OSError, AttributeError):  # not glibc (musl): nothing to tune
            pass


#: Modules that extraction imports on first use: imported once in the parent, so that forked
#: workers start with them (instead of each worker of each pool importing them again).
_WORKER_MODULES = ("scipy.fft", "scipy.ndimage", "scipy.spatial", "skimage.measure", "nibabel",
                   "medimg.io.dicom")


def _process_batch(cases: list[Case], cfg: Any, families: Sequence[str] | None, workers: int | None,
                   progress: Callable[[int, int], None] | None) -> list[dict[str, Any]]:
    """Cases in chunks over a pool of single-threaded worker processes; rows in the given order.

    Workers read the files themselves: only paths go out and rows (floats) come back."""
    import importlib
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    method = multiprocessing.get_start_method(allow_none=True)
    if method == "fork" or (method is None and multiprocessing.get_all_start_methods()[0] == "fork"):
        for name in _WORKER_MODULES:
            try:
                importlib.import_module(name)
            except ImportError:  # an optional reader: the workers do without it too
                pass

    n = max(1, min(workers or len(os.sched_getaffinity(0)), len(cases)))
    # several chunks per worker keep the load balanced; chunks amortise the per-task overhead
    size = max(1, min(8, len(cases) // (4 * n)))
    starts = range(0, len(cases), size)
    rows: list[dict[str, Any]] = [{} for _ in cases]
    done = 0
    with ProcessPoolExecutor(max_workers=n, initializer=_worker_init) as pool:
        futures = {pool.submit(_safe_rows, cases[k:k + size], cfg, families): k for k in starts}
        for fut in as_completed(futures):
            k = futures[fut]
            chunk = fut.result()
            rows[k:k + len(chunk)] = chunk
            done += len(chunk)
            if progress:
                progress(done, len(cases))
    return rows


def extract_batch(
    cases: Iterable[Case],
    config: Any = None,
    *,
    families: Sequence[str] | None = None,
    scheduler: str = "processes",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Extract every case in parallel; a case that fails is recorded, not fatal.

    Parameters
    ----------
    cases
        The cases.
    config
        A :class:`~medimg.features.RadiomicsConfig`, a preset name or a mapping.
    families
        Families to compute (default: the config's).
    scheduler
        ``"processes"`` (default: a pool of worker processes with one thread per numerical
        library, cases sent in chunks), ``"threads"`` (Dask threads), ``"synchronous"``, or the
        address of a Dask distributed scheduler (``"tcp://host:8786"``).
    workers
        Number of local workers (processes or threads); all cores when None.
    progress
        ``progress(done, total)`` called as cases finish (local schedulers).

    Returns
    -------
    list[dict]
        One row per case, in the order given; failed cases have ``status == "error"`` and the
        message in ``error``.
    """
    from medimg.features import _resolve_config

    cfg = _resolve_config(config)  # validate before starting workers
    cases = list(cases)
    if not cases:
        raise ParameterError("the batch has no cases")
    if scheduler == "synchronous" or len(cases) == 1:
        rows = []
        for k, c in enumerate(cases):
            rows.append(_safe_row(c, cfg, families))
            if progress:
                progress(k + 1, len(cases))
        return rows
    if scheduler == "processes":
        return _process_batch(cases, cfg, families, workers, progress)
    import dask

    tasks = [dask.delayed(_safe_row)(c, cfg, families) for c in cases]
    if scheduler == "threads":
        from dask.callbacks import Callback

        class _Progress(Callback):
            def __init__(self) -> None:
                super().__init__()
                self.done = 0

            def _posttask(self, key, result, dsk, state, worker_id):  # noqa: ANN001
                if isinstance(result, dict) and "case" in result:
                    self.done += 1
                    if progress:
                        progress(self.done, len(cases))

        with _Progress():
            (rows,) = dask.compute(tasks, scheduler=scheduler, num_workers=workers)
        return list(rows)
    try:
        from dask.distributed import Client
    except ImportError as err:  # pragma: no cover - dask[distributed] is a dependency of the extra
        raise ParameterError("a scheduler address needs dask.distributed (pip install medimg[parallel])") from err
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as err:
        raise UserInputError(f"cannot reach the Dask scheduler at {scheduler!r}: {err}") from err
    with client:
        futures = client.compute(tasks)
        return list(client.gather(futures))


def read_cases(path: str | Path) -> list[Case]:
    """Read a batch list: a CSV with columns ``image`` and ``mask`` (paths, relative to the CSV's
    folder or absolute), and optionally ``case`` and ``label``."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "no such case list")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or ())
        missing = {"image", "mask"} - fields
        if missing:
            raise FileFormatError(path, f"missing column(s) {', '.join(sorted(missing))}; "
                                        "need image, mask (and optionally case, label)")
        out = []
        for k, row in enumerate(reader, start=2):
            try:
                label = int(row.get("label") or 1)
            except ValueError as err:
                raise FileFormatError(path, f"line {k}: label must be an integer, got {row.get('label')!r}") from err
            image = Path(row["image"])
            mask = Path(row["mask"])
            out.append(Case(
                case=row.get("case") or image.name,
                image=image if image.is_absolute() else path.parent / image,
                mask=mask if mask.is_absolute() else path.parent / mask,
                label=label,
            ))
    if not out:
        raise FileFormatError(path, "the case list has no rows")
    return out


def to_long(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Long form of wide rows: one row per feature value with its IBSI codes."""
    out = []
    skip = {"case", "label", "status", "error", *PROVENANCE}
    for row in rows:
        values = {k: v for k, v in row.items() if k not in skip}
        for lr in long_rows(values):
            out.append({"case": row.get("case", ""), "label": row.get("label", ""), "feature": lr.feature,
                        "ibsi_code": lr.ibsi_code, "aggregation_code": lr.aggregation_code, "value": lr.value})
    return out


def write_table(rows: Sequence[Mapping[str, Any]], path: str | Path, *, long: bool = False) -> Path:
    """Write rows as CSV or Parquet (by extension), atomically; ``long`` writes the long form.

    Wide columns: the union of the rows' keys, in first-seen order, with ``status``/``error`` and
    provenance last.
    """
    import pandas as pd

    path = Path(path)
    suffix = full_suffix(path)
    if suffix not in TABLE_SUFFIXES:
        raise ParameterError(f"{path}: table format must be {' or '.join(TABLE_SUFFIXES)}, got {suffix or '(none)'!r}")
    data = to_long(rows) if long else list(rows)
    if long:
        frame = pd.DataFrame(data, columns=["case", "label", "feature", "ibsi_code", "aggregation_code", "value"])
    else:
        columns: dict[str, None] = {}
        for row in data:
            for key in row:
                columns.setdefault(key, None)
        tail = [c for c in ("status", "error", *PROVENANCE) if c in columns]
        order = [c for c in columns if c not in tail] + tail
        frame = pd.DataFrame(data, columns=order)
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return path
