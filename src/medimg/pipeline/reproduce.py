"""Reproducing a run from its manifest: run the recorded study again, from scratch, and compare
every output with the one the manifest records.

An output is **identical** when its content hash is the same; otherwise it is compared by value
— images voxel by voxel, values one by one — and is **within tolerance** when every difference
is at most ``rtol`` times the reference's magnitude (images: times the reference's value range)
plus ``atol``, else **different**. A deterministic step must give identical outputs; the
tolerance exists for steps whose floating-point results depend on the thread count or the
machine. An input whose hash differs from the recorded one is reported first: then no output
can be expected to match.

An intermediate image that the run did not store (docs/pipeline.md: only images worth storing
are cached) cannot be compared by value when its hash differs, or has no recorded hash (the
recorded run did not need to compute it): it is reported as **not stored**, compared through
the steps that read it, and does not fail the comparison on its own; the values and kept
images downstream of it decide. Kept images are compared through their files
(``cases/<case>/<step>.nii.gz``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import FileFormatError, UserInputError

__all__ = ["Difference", "ReproduceReport", "reproduce"]


@dataclass(frozen=True)
class Difference:
    """One output (or input) that did not come out the same."""

    case: str
    step: str
    status: str  # "within tolerance", "different", "missing", "input changed", "not stored"
    detail: str = ""


@dataclass
class ReproduceReport:
    """The comparison of a re-run with its manifest."""

    out: str
    n_compared: int = 0
    n_identical: int = 0
    n_within_tolerance: int = 0
    n_not_stored: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every output is identical or within tolerance and no input changed."""
        return not any(d.status in ("different", "missing", "input changed") for d in self.differences)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"out": self.out, "ok": self.ok, "compared": self.n_compared, "identical": self.n_identical,
                "within_tolerance": self.n_within_tolerance, "not_stored": self.n_not_stored,
                "differences": [d.__dict__ for d in self.differences]}


def _load_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileFormatError(path, "no such manifest")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise FileFormatError(path, f"not a JSON manifest: {err}") from err
    if not isinstance(data, dict) or "study" not in data.get("parameters", {}):
        raise FileFormatError(path, "not the manifest of a study run (no parameters.study); "
                                    "`medimg reproduce` takes the manifest.json written by `medimg run`")
    return data


def _case_outputs(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["case"]: o for o in manifest.get("outputs", []) if o.get("kind") == "case"}


def reproduce(
    manifest_path: str | os.PathLike[str],
    *,
    out: str | None = None,
    scheduler: str = "processes",
    workers: int | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-9,
) -> ReproduceReport:
    """Re-run the study recorded in ``manifest_path`` into ``out`` (default: a new temporary
    folder; never the original's cache) and compare its outputs (module notes)."""
    from medimg.pipeline.runner import run_study
    from medimg.pipeline.store import Store
    from medimg.pipeline.study import study_from_mapping

    path = Path(manifest_path)
    manifest = _load_manifest(path)
    params = manifest["parameters"]
    study = study_from_mapping(params["study"])
    target = out or tempfile.mkdtemp(prefix="medimg-reproduce-")
    store = Store(target)
    if store.exists("manifest.json"):
        raise UserInputError(f"{target}: already holds a run; reproduce into a new folder")
    run_study(study, target, base=params.get("base", "."), scheduler=scheduler, workers=workers,
              command=f"medimg reproduce {path}")
    rerun = json.loads(store.read_bytes("manifest.json"))
    original_store = Store(params["out"]) if params.get("out") else None
    report = ReproduceReport(out=store.url)
    recorded_inputs = {(i["case"], i["role"]): i.get("sha256") for i in manifest.get("inputs", [])}
    for item in rerun.get("inputs", []):
        before = recorded_inputs.get((item["case"], item["role"]))
        if before and item.get("sha256") and before != item["sha256"]:
            report.differences.append(Difference(item["case"], item["role"], "input changed",
                                                 f"{item['path']}: sha256 {item['sha256'][:12]} != recorded {before[:12]}"))
    old_cases = _case_outputs(manifest)
    new_cases = _case_outputs(rerun)
    for case, old in old_cases.items():
        new = new_cases.get(case)
        for step, rec in old.get("steps", {}).items():
            report.n_compared += 1
            if new is None or step not in new.get("steps", {}):
                report.differences.append(Difference(case, step, "missing", "the re-run did not produce it"))
                continue
            after = new["steps"][step]
            if rec.get("status") == after.get("status") == "skipped":  # an optional file this case lacks
                report.n_identical += 1
                continue
            if rec.get("output_sha256") and rec["output_sha256"] == after.get("output_sha256"):
                report.n_identical += 1
                continue
            status, detail = _compare(step, old, new, rec, after, original_store, store, rtol, atol)
            if status == "not stored":
                report.n_not_stored += 1
                report.differences.append(Difference(case, step, status, detail))
            elif status == "identical":
                report.n_identical += 1
            elif status == "within tolerance":
                report.n_within_tolerance += 1
                report.differences.append(Difference(case, step, status, detail))
            else:
                report.differences.append(Difference(case, step, status, detail))
    return report


def _compare(step: str, old: dict[str, Any], new: dict[str, Any], rec: dict[str, Any], after: dict[str, Any],
             original: Any, rerun: Any, rtol: float, atol: float) -> tuple[str, str]:
    if step in old.get("values", {}):
        a = old["values"][step]
        b = new.get("values", {}).get(step, {})
        if set(a) != set(b):
            return "different", f"features differ: {sorted(set(a) ^ set(b))[:5]}"
        worst, name = 0.0, ""
        for key, va in a.items():
            va, vb = float(va), float(b[key])
            if np.isnan(va) and np.isnan(vb):
                continue
            excess = abs(va - vb) - (atol + rtol * abs(va))
            if not np.isfinite(excess) or excess > worst:
                worst, name = (np.inf if not np.isfinite(excess) else excess), key
        if name:
            return "different", f"{name}: {a[name]} != {b[name]}"
        return "within tolerance", f"every value within rtol={rtol}"
    from medimg.pipeline.runner import _cache_key, _load_image

    if original is None:
        return "different", "content hash differs and the original output is not available to compare"
    kept_old, kept_new = old.get("kept", {}).get(step), new.get("kept", {}).get(step)
    if kept_old and kept_new:  # a kept image: its files
        from medimg import io as mio

        try:
            with original.reading(kept_old) as path:
                first = mio.read(path)
        except (OSError, ValueError, UserInputError):
            return "different", "content hash differs; the original kept image is gone, so values cannot be compared"
        with rerun.reading(kept_new) as path:
            second = mio.read(path)
    else:
        name = _cache_key(rec["key"], "image")
        stored = bool(rec.get("key")) and original.exists(name) and original.exists(name + ".sha256")
        if not stored and "status" in rec:
            # an intermediate the run did not store (or did not need; a manifest written before
            # images were stored selectively has no status, and there a missing entry is a loss)
            why = ("hash differs" if rec.get("output_sha256") and after.get("output_sha256")
                   else "no hash to compare in one of the runs")
            return "not stored", f"not stored, compared through the steps that read it ({why})"
        import zipfile

        try:
            first = _load_image(original, name)
        except (OSError, ValueError, zipfile.BadZipFile):
            return "different", "content hash differs; the original cache entry is gone, so values cannot be compared"
        try:
            second = _load_image(rerun, _cache_key(after["key"], "image"))
        except (OSError, ValueError, zipfile.BadZipFile):
            return "not stored", "not stored by the re-run, compared through the steps that read it"
    a, b = np.asarray(first.array, np.float64), np.asarray(second.array, np.float64)
    if a.shape != b.shape or not np.allclose(first.affine, second.affine, atol=1e-6):
        return "different", f"grids differ: {first.grid_summary()} vs {second.grid_summary()}"
    scale = float(np.nanmax(a) - np.nanmin(a)) if a.size else 0.0
    diff = float(np.nanmax(np.abs(a - b))) if a.size else 0.0
    if diff <= atol + rtol * scale:
        return "within tolerance", f"max voxel difference {diff:.3g} (range {scale:.3g})"
    return "different", f"max voxel difference {diff:.3g} (range {scale:.3g})"
