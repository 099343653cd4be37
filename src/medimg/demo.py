"""The end-to-end demo: ``examples/demo.yaml`` run as a study on a seeded synthetic CT cohort.

:func:`run_demo` makes the cohort (DICOM series with known lesion masks, a follow-up study for
half the patients), a de-identification key, and a small U-Net trained on a *separate* synthetic
training cohort (so that every study case is unseen by it); writes the case list; then runs the
study: index -> de-identify -> denoise -> segment (threshold and U-Net, each scored against the
true masks) -> register the follow-up to its baseline and measure lesion growth -> radiomics ->
a model with imbalance handling and tuning -> evaluation with confidence intervals -> subgroup
audit -> embedding -> the report. Everything is seeded; the study writes its manifest.

:func:`segment_lesion` is the classical segmentation the study's threshold steps spell out, as
one function for Python users.
"""

from __future__ import annotations

import csv
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimg.core.image import Image
from medimg.errors import UserInputError

__all__ = ["DemoConfig", "DemoResult", "segment_lesion", "run_demo", "demo_study_path",
           "write_demo_cases"]


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the classical lesion segmentation (:func:`segment_lesion`)."""

    body_threshold_hu: float = -300.0
    lesion_lower_hu: float = 70.0
    lesion_upper_hu: float = 300.0
    min_lesion_mm3: float = 50.0


@dataclass
class DemoResult:
    """Where the demo wrote its outputs, and its headline numbers (read from the study's outputs)."""

    report_path: Path
    manifest_path: Path
    features_path: Path
    n_cases: int
    failures: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def segment_lesion(image: Image, config: DemoConfig = DemoConfig()) -> Image:
    """Threshold segmentation of the (one) enhancing lesion of a synthetic CT.

    Body = largest connected region above ``body_threshold_hu`` with holes filled; lesion = the
    largest connected region inside the body whose HU lies in [``lesion_lower_hu``,
    ``lesion_upper_hu``], after removing specks smaller than ``min_lesion_mm3``, holes filled.
    """
    from medimg import segmentation as seg

    body = seg.threshold(image, lower=config.body_threshold_hu)
    body = seg.largest_component(body)
    body = seg.fill_holes(body, slice_wise=True)
    candidates = seg.threshold(image, lower=config.lesion_lower_hu, upper=config.lesion_upper_hu, mask=body)
    candidates = seg.remove_small(candidates, min_volume_mm3=config.min_lesion_mm3)
    return seg.fill_holes(seg.largest_component(candidates))


def demo_study_path() -> Path:
    """The demo's study: ``examples/demo.yaml`` of a source checkout, else the copy installed
    with the package (the two are the same file; a test checks it)."""
    here = Path(__file__).resolve()
    checkout = here.parents[2] / "examples" / "demo.yaml"
    return checkout if checkout.is_file() else here.parent / "datasets" / "demo.yaml"


def _age_band(age: int) -> str:
    return "<50" if age < 50 else ("50-64" if age < 65 else ">=65")


def write_demo_cases(cohort: Any, path: Path) -> Path:
    """The case list of the demo study: one row per patient's baseline study (``case`` a
    pseudonymous id, ``image`` its CT series folder, ``mask`` the true lesion mask, ``followup``
    the follow-up series or empty, ``malignant`` 0/1, ``patient`` the grouping id, ``sex``,
    ``age_band``, ``scanner``); paths relative to the cohort folder."""
    by_patient: dict[str, dict[int, Any]] = {}
    for row in cohort.rows:
        by_patient.setdefault(row.patient_id, {})[row.timepoint] = row
    from medimg.core.files import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case", "image", "mask", "followup", "malignant", "patient", "sex", "age_band", "scanner"])
        for k, (_pid, rows) in enumerate(sorted(by_patient.items()), start=1):
            base = rows[0]
            follow = rows.get(1)
            case = f"c{k:03d}"
            writer.writerow([case, base.ct_dir, base.mask_path, follow.ct_dir if follow else "", base.label, case,
                             base.sex, _age_band(base.age_years), base.scanner_model])
    return path


def run_demo(
    out_dir: str | Path,
    *,
    n_patients: int = 40,
    seed: int = 0,
    unet: bool = True,
    workers: int | None = None,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo study (``examples/demo.yaml``) into ``out_dir``; return where the report is.

    ``unet=False`` leaves the U-Net steps out of the study (for quick runs).
    """
    import json

    from medimg.core.yamlio import safe_load
    from medimg.datasets import make_cohort
    from medimg.deid.keys import generate_key_file
    from medimg.pipeline.runner import run_study
    from medimg.pipeline.study import study_from_mapping

    if n_patients < 8:
        raise UserInputError("the demo needs at least 8 patients (cross-validation folds of both classes)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    cohort_dir = out / "cohort"
    log(f"[1/4] generating a synthetic cohort of {n_patients} patients in {cohort_dir}")
    if cohort_dir.exists():
        shutil.rmtree(cohort_dir)
    cohort = make_cohort(cohort_dir, n_patients=n_patients, seed=seed, followup_fraction=0.5,
                         malignant_fraction=0.3)
    write_demo_cases(cohort, cohort_dir / "cases.csv")
    key = out / "deid.key"
    if not key.exists():
        generate_key_file(key)
    seconds["cohort"] = time.perf_counter() - t0

    data = safe_load(demo_study_path().read_text(encoding="utf-8"))
    data["seed"] = seed
    if unet:
        log("[2/4] training a 2-D U-Net on a separate synthetic training cohort (10 patients)")
        t0 = time.perf_counter()
        from medimg.pipeline.unet import train_unet_on_cohort

        training = make_cohort(out / "unet-training-cohort", n_patients=10, seed=seed + 1000, followup_fraction=0.0)
        trained = train_unet_on_cohort(training, out / "unet", n_val=2, n_test=2, seed=seed,
                                       log=lambda m: log(f"  {m}"))
        shutil.copyfile(trained.checkpoint, out / "unet.pt")
        seconds["unet training"] = time.perf_counter() - t0
    else:
        log("[2/4] U-Net left out (--no-unet)")
        data["steps"] = [s for s in data["steps"] if "unet" not in s["id"]]
        data["outputs"]["tables"] = [t for t in data["outputs"]["tables"] if "unet" not in t]
    study = study_from_mapping(data, base=out)
    log(f"[3/4] running the study {study.name!r}: {len(study.steps)} case steps, {len(study.cohort)} cohort steps")
    t0 = time.perf_counter()

    def progress(outcome: Any, done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            log(f"  {done}/{total} cases")

    result = run_study(study, out / "study", base=out, scheduler="processes", workers=workers, progress=progress,
                       command="medimg demo")
    seconds["study"] = time.perf_counter() - t0
    log("[4/4] done")
    metrics: dict[str, Any] = {}
    for step in ("performance", "fairness"):
        path = out / "study" / "cohort" / step / "result.json"
        if path.is_file():
            metrics[step] = json.loads(path.read_text())["metrics"]
    return DemoResult(report_path=Path(result.report or out / "study" / "report.html"),
                      manifest_path=Path(result.manifest), features_path=out / "study" / "tables" / "radiomics.csv",
                      n_cases=result.n_cases, failures=[f.key for f in result.failures], metrics=metrics,
                      seconds=seconds)
