"""Radiomics over many cases: read each case's image and mask, extract its features, and
return its table row with provenance; failing cases are recorded and the batch goes on.

Wide rows hold ``case``, ``label``, the feature keys of :func:`medimg.features.extract`, then
``status`` (``ok``/``error``), ``error``, and the provenance columns
``prov.medimg_version``, ``prov.config`` (the resolved settings as JSON), ``prov.image``,
``prov.mask`` (paths), ``prov.image_sha256`` and ``prov.mask_sha256``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from medimg.core.files import sha256_file
from medimg.errors import ParameterError
from medimg.pipeline.cases import Case
from medimg.pipeline.executor import run_cases

__all__ = ["feature_row", "extract_features", "WORKER_MODULES"]

#: Modules that extraction imports on first use: imported once before the workers start, so
#: that forked workers inherit them instead of each importing them again.
WORKER_MODULES = ("scipy.fft", "scipy.ndimage", "skimage.measure", "nibabel",
                  "medimg.io.dicom", "medimg.features")


def feature_row(case: Case, config: Any = None, *, families: Sequence[str] | None = None) -> dict[str, Any]:
    """Read ``case``'s image and mask, extract their features and return the wide-table row,
    with provenance columns (module notes). Errors propagate (the batch records them)."""
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
        "status": "ok", "error": "",
        "prov.medimg_version": __version__,
        "prov.config": cfg.to_json(),
        "prov.image": str(case.image),
        "prov.mask": str(case.mask),
        "prov.image_sha256": sha256_file(case.image) if Path(case.image).is_file() else "",
        "prov.mask_sha256": sha256_file(case.mask) if Path(case.mask).is_file() else "",
    })
    return row


def _preimport() -> None:
    import importlib

    for name in WORKER_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional reader: the workers do without it too
            pass


def extract_features(
    cases: Iterable[Case],
    config: Any = None,
    *,
    families: Sequence[str] | None = None,
    scheduler: str = "processes",
    workers: int | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> list[dict[str, Any]]:
    """Extract every case's features through :func:`~medimg.pipeline.run_cases`.

    Parameters
    ----------
    cases
        The cases (:func:`~medimg.pipeline.read_cases` reads them from a CSV).
    config
        A :class:`~medimg.features.RadiomicsConfig`, a preset name or a mapping; validated
        before any worker starts.
    families
        Families to compute (default: the config's).
    scheduler
        ``"processes"`` (default: single-threaded worker processes, cases sent in chunks as
        file paths), ``"threads"``, ``"serial"``, ``"dask"`` or a Dask scheduler address.
    workers
        Number of local workers (default: all cores).
    progress
        ``progress(done, total)`` as cases finish.

    Returns
    -------
    list[dict]
        One row per case, in the order given; a failed case has ``status == "error"`` and the
        message in ``error``.
    """
    from medimg.features import _resolve_config

    cfg = _resolve_config(config)  # a bad config fails here, before any work starts
    cases = list(cases)
    if not cases:
        raise ParameterError("the batch has no cases")
    if len(cases) == 1:
        scheduler = "serial"
    if scheduler == "processes":
        _preimport()
    fn = functools.partial(feature_row, config=cfg, families=families)
    rows: list[dict[str, Any]] = []
    for outcome in run_cases(fn, cases, key=lambda c: c.case, scheduler=scheduler, workers=workers,
                             progress=progress, ordered=True):
        if outcome.ok:
            rows.append(outcome.value)
            continue
        case = cases[outcome.index]
        rows.append({"case": case.case, "label": case.label, "status": "error", "error": outcome.error,
                     "prov.image": str(case.image), "prov.mask": str(case.mask)})
    return rows
