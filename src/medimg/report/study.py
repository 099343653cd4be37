"""The report of a study run: one self-contained HTML file built from the run's own outputs.

:func:`study_report` reads ``manifest.json``, the tables and the kept images of a run (a folder
or an fsspec URL) and writes ``report.html`` beside them. Sections appear for what the study ran:

* **Cohort**: cases, how many ran and failed, the outcome and subgroup columns' counts.
* **Steps**: each step's operation, resolved parameters, computed / cached counts, time per case.
* **Image quality** (``quality.*`` steps): the values per case, with outliers flagged by a robust
  z-score (|value - median| / (1.4826 MAD) > 3.5) and a strip plot.
* **Segmentation** (label-map steps marked ``keep``): overlays for the first cases, and the
  segmented volume per case.
* **Features** (``features`` steps): the distribution of the most variable features by outcome,
  and a PCA of the standardised features coloured by outcome or subgroup.
* **Failures** and **Provenance** (versions, commit, seed, platform, the study's YAML).

Every section is drawn from files the run wrote; nothing is recomputed except the plots.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from medimg.report.html import Figure, Section, Table, format_value, overlay_png, write_report

__all__ = ["study_report", "robust_outliers", "strip_png", "scatter_png", "histograms_png"]


def robust_outliers(values: Sequence[float], *, threshold: float = 3.5) -> np.ndarray:
    """Which values are outliers by the robust z-score (Iglewicz and Hoaglin):
    ``|x - median| / (1.4826 * MAD) > threshold``; none when the MAD is 0."""
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    if finite.sum() < 3:
        return np.zeros(x.shape, dtype=bool)
    med = np.median(x[finite])
    mad = np.median(np.abs(x[finite] - med))
    if mad == 0:
        return np.zeros(x.shape, dtype=bool)
    return finite & (np.abs(x - med) / (1.4826 * mad) > threshold)


def _figure() -> Any:
    from medimg.core.optional import require

    return require("matplotlib.figure", extra="report").Figure


def _png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    return buf.getvalue()


def strip_png(names: Sequence[str], values: Sequence[float], flagged: Sequence[bool], *, title: str) -> bytes:
    """A strip plot of one value per case, outliers in red and named."""
    fig = _figure()(figsize=(6.0, 2.2))
    ax = fig.add_subplot(1, 1, 1)
    x = np.asarray(values, dtype=np.float64)
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, x.size)
    flags = np.asarray(flagged, dtype=bool)
    ax.scatter(x[~flags], jitter[~flags], s=14, color="#1f5fbf", alpha=0.8)
    ax.scatter(x[flags], jitter[flags], s=22, color="#d62728")
    for name, xv, yv in zip(np.asarray(names)[flags], x[flags], jitter[flags], strict=True):
        ax.annotate(str(name), (xv, yv), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_yticks([])
    ax.set_ylim(-0.5, 0.5)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def scatter_png(xy: np.ndarray, groups: Sequence[str], *, title: str, xlabel: str, ylabel: str) -> bytes:
    """A 2-D scatter coloured by group (a legend names the groups)."""
    fig = _figure()(figsize=(4.8, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    colours = ["#1f5fbf", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]
    labels = np.asarray([str(g) for g in groups])
    for k, group in enumerate(sorted(set(labels))):
        sel = labels == group
        ax.scatter(xy[sel, 0], xy[sel, 1], s=18, color=colours[k % len(colours)], label=group, alpha=0.85)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    if len(set(labels)) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def histograms_png(columns: dict[str, np.ndarray], groups: Sequence[str] | None, *, title: str) -> bytes:
    """Small histograms of several features, split by group when given."""
    n = len(columns)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig = _figure()(figsize=(3.0 * cols, 2.2 * rows))
    labels = None if groups is None else np.asarray([str(g) for g in groups])
    for k, (name, values) in enumerate(columns.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        finite = np.isfinite(values)
        if labels is None:
            ax.hist(values[finite], bins=15, color="#1f5fbf", alpha=0.8)
        else:
            for group in sorted(set(labels)):
                sel = finite & (labels == group)
                ax.hist(values[sel], bins=15, alpha=0.6, label=group)
            if k == 0:
                ax.legend(fontsize=6)
        ax.set_title(name, fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _read_table(store: Any, key: str) -> Any:
    import io

    import pandas as pd

    return pd.read_csv(io.BytesIO(store.read_bytes(key)))


def _cohort(manifest: dict[str, Any], study: dict[str, Any], tables: dict[str, Any]) -> Section:
    summary = manifest["parameters"].get("summary", {})
    paragraphs = [f"{summary.get('total', 0)} cases: {summary.get('ok', 0)} ran, {summary.get('failed', 0)} failed"
                  + (f", {summary.get('not_run')} not run (the run was stopped)" if summary.get("not_run") else "")
                  + "."]
    inputs = study.get("inputs", {})
    source = inputs.get("cases") or inputs.get("folder") or inputs.get("catalog")
    paragraphs.append(f"Cases from {json.dumps(source) if isinstance(source, dict) else source}.")
    rows = []
    frame = next(iter(tables.values()), None)
    for column in [inputs.get("label_column"), *inputs.get("subgroup_columns", [])]:
        if column and frame is not None and column in frame.columns:
            counts = frame[column].astype(str).value_counts().sort_index()
            rows.extend([column, value, int(n)] for value, n in counts.items())
    tabs = [Table(["column", "value", "cases"], rows, caption="Outcome and subgroups (cases that ran)")] if rows else []
    return Section("Cohort", paragraphs, tabs)


def _steps(manifest: dict[str, Any]) -> Section:
    stats = manifest["parameters"].get("step_stats", {})
    rows = []
    for step in manifest["parameters"].get("plan", []):
        s = stats.get(step["id"], {})
        params = ", ".join(f"{k}={v}" for k, v in step["params"].items())
        rows.append([step["id"], step["op"], ", ".join(f"{r}<-{v}" for r, v in step["inputs"].items()), params,
                     int(s.get("computed", 0)), int(s.get("cached", 0)), s.get("seconds_mean", 0.0)])
    return Section("Steps", ["Every parameter as resolved (defaults included); times are per computed case."],
                   [Table(["step", "operation", "inputs", "parameters", "computed", "cached", "s/case"], rows)])


def _quality(plan: list[dict[str, Any]], tables: dict[str, Any]) -> Section | None:
    steps = [s for s in plan if s["op"].startswith("quality.") and s["id"] in tables]
    if not steps:
        return None
    figures, tabs, flagged_total = [], [], 0
    for step in steps:
        frame = tables[step["id"]]
        values = frame[step["id"]].to_numpy(dtype=float)
        flags = robust_outliers(values)
        flagged_total += int(flags.sum())
        figures.append(Figure(strip_png(frame["case"].astype(str).tolist(), values, flags,
                                        title=f"{step['id']} ({step['op']}) per case"),
                              caption=f"{step['id']}: one point per case; outliers in red."))
        rows = [[c, v, "outlier" if f else ""] for c, v, f in zip(frame["case"], values, flags, strict=True)]
        tabs.append(Table(["case", step["id"], "flag"], rows))
    text = (f"{flagged_total} outlying value(s) flagged (robust z-score > 3.5)." if flagged_total
            else "No outlying values (robust z-score > 3.5).")
    return Section("Image quality", [text], tabs, figures)


def _segmentation(store: Any, manifest: dict[str, Any], plan: list[dict[str, Any]], max_cases: int) -> Section | None:
    from medimg import io as mio
    from medimg.errors import UserInputError

    label_steps = [s for s in plan if s.get("output") == "labels" and s.get("keep")]
    if not label_steps:
        return None
    cases = [o for o in manifest.get("outputs", []) if o.get("kind") == "case"]
    figures, rows = [], []
    for step in label_steps:
        for k, case in enumerate(cases):
            kept = case.get("kept", {}).get(step["id"])
            if not kept:
                continue
            try:
                with store.reading(kept) as local:
                    labels = mio.read(local)
            except (UserInputError, OSError):
                continue
            volume = float(np.count_nonzero(labels.array) * labels.voxel_volume_mm3)
            rows.append([case["case"], step["id"], volume])
            if k < max_cases:
                base = _base_image(store, manifest, case, step, plan)
                if base is not None:
                    figures.append(Figure(overlay_png(base, labels, window=None, title=f"{case['case']}: {step['id']}"),
                                          caption=f"{case['case']}: {step['id']} outlined on the slice with the "
                                                  "largest segmented area."))
    return Section("Segmentation", [f"Label maps kept by {', '.join(s['id'] for s in label_steps)}."],
                   [Table(["case", "step", "volume (mm³)"], rows)], figures)


def _base_image(store: Any, manifest: dict[str, Any], case: dict[str, Any], step: dict[str, Any],
                plan: list[dict[str, Any]]) -> Any:
    """The image a label step segmented: the case's file, read again, or a cached step output."""
    from medimg.errors import UserInputError
    from medimg.pipeline.runner import _cache_key, _load_image, _read_input

    ref = step["inputs"].get("image", "image")
    try:
        if ref in case["steps"]:
            return _load_image(store, _cache_key(case["steps"][ref]["key"], "image"))
        for item in manifest.get("inputs", []):
            if item["case"] == case["case"] and item["role"] == ref:
                path = item["path"]
                return _read_input(tuple(path) if isinstance(path, list) else path, None)
    except (UserInputError, OSError, KeyError, ValueError):
        return None
    return None


def _segmentation_accuracy(plan: list[dict[str, Any]], tables: dict[str, Any], study: dict[str, Any]) -> Section | None:
    """Per ``segmentation_metrics`` step: the mean of each metric across cases with a bootstrap
    interval (cases of one patient drawn together), and a strip plot of the Dice per case."""
    from medimg.evaluation.classification import mean_ci

    steps = [s for s in plan if s["op"] == "segmentation_metrics" and s["id"] in tables]
    if not steps:
        return None
    group = study.get("inputs", {}).get("group_column")
    rows, figures = [], []
    for step in steps:
        frame = tables[step["id"]]
        cluster = frame[group].astype(str).to_numpy() if group and group in frame.columns else None
        for metric in ("dice", "iou", "sensitivity", "precision", "hd95", "assd", "nsd"):
            if metric in frame.columns:
                m = mean_ci(frame[metric].to_numpy(dtype=float), cluster=cluster, n_bootstrap=1000, seed=0)
                rows.append([step["id"], metric, int(np.isfinite(frame[metric].to_numpy(dtype=float)).sum()), m.value,
                             f"{format_value(m.ci[0])} - {format_value(m.ci[1])}"])
        if "dice" in frame.columns:
            dice = frame["dice"].to_numpy(dtype=float)
            flagged = robust_outliers(dice)
            figures.append(Figure(strip_png(frame["case"].astype(str).tolist(), dice, flagged,
                                            title=f"{step['id']}: Dice per case"),
                                  caption=f"{step['id']}: Dice per case against {step['inputs'].get('truth')}; "
                                          "outliers in red"))
    return Section("Segmentation accuracy",
                   ["Mean over cases with a 95 % bootstrap interval (1,000 resamples; the cases of one patient are "
                    "drawn together)."],
                   [Table(["step", "metric", "cases", "mean", "95 % CI"], rows)], figures)


def _registration(store: Any, manifest: dict[str, Any], plan: list[dict[str, Any]], tables: dict[str, Any],
                  study: dict[str, Any], max_cases: int) -> Section | None:
    """Checkerboards of ``register`` steps (fixed vs registered moving) and the lesion volume
    change of ``longitudinal`` steps (table and baseline-vs-follow-up plot)."""
    from medimg.pipeline.runner import _cache_key, _load_image

    reg_steps = [s for s in plan if s["op"] == "register"]
    long_steps = [s for s in plan if s["op"] == "longitudinal" and s["id"] in tables]
    if not reg_steps and not long_steps:
        return None
    figures, tabs, paragraphs = [], [], []
    cases = [o for o in manifest.get("outputs", []) if o.get("kind") == "case"]
    for step in reg_steps:
        shown = 0
        for case in cases:
            if shown >= max_cases or step["id"] not in case.get("steps", {}):
                continue
            fixed = _base_image(store, manifest, case, {"inputs": {"image": step["inputs"]["fixed"]}}, plan)
            try:
                moved = _load_image(store, _cache_key(case["steps"][step["id"]]["key"], "image"))
            except Exception:  # noqa: BLE001 - a figure that cannot be drawn is left out
                continue
            if fixed is None:
                continue
            from medimg.registration.fusion import fusion_view

            rgb = fusion_view(fixed, moved, mode="checkerboard")
            figures.append(Figure(_rgb_png(rgb), caption=f"{case['case']}: {step['inputs']['moving']} registered to "
                                                         f"{step['inputs']['fixed']} ({step['params'].get('transform')}); "
                                                         "checkerboard of the two"))
            shown += 1
    label = study.get("inputs", {}).get("label_column")
    for step in long_steps:
        frame = tables[step["id"]]
        cols = [c for c in ("case", label, "baseline_total_mm3", "followup_total_mm3", "change_total_mm3",
                            "change_total_percent", "new_lesions", "vanished_lesions") if c and c in frame.columns]
        tabs.append(Table(cols, frame[cols].values.tolist(), caption=f"{step['id']}: lesion volume per case"))
        if {"baseline_total_mm3", "followup_total_mm3"} <= set(frame.columns):
            xy = frame[["baseline_total_mm3", "followup_total_mm3"]].to_numpy(dtype=float)
            groups = frame[label].astype(str).tolist() if label in frame.columns else ["all"] * len(frame)
            figures.append(Figure(scatter_png(xy, groups, title=f"{step['id']}: lesion volume",
                                              xlabel="baseline (mm³)", ylabel="follow-up (mm³)"),
                                  caption="Lesion volume at follow-up against baseline, per case (the follow-up "
                                          "registered to its baseline and the lesion carried across)"))
            change = frame["change_total_percent"].to_numpy(dtype=float) if "change_total_percent" in frame else []
            if len(change):
                paragraphs.append(f"{step['id']}: {len(frame)} cases with a follow-up; median volume change "
                                  f"{np.nanmedian(change):+.1f} %.")
    return Section("Registration and longitudinal change", paragraphs, tabs, figures)


def _rgb_png(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _features(plan: list[dict[str, Any]], tables: dict[str, Any], study: dict[str, Any]) -> Section | None:
    steps = [s for s in plan if s["op"] == "features" and s["id"] in tables]
    if not steps:
        return None
    inputs = study.get("inputs", {})
    label = inputs.get("label_column")
    colour_by = label or next(iter(inputs.get("subgroup_columns", [])), None)
    figures, paragraphs = [], []
    for step in steps:
        frame = tables[step["id"]]
        skip = {"case", label, inputs.get("group_column"), *inputs.get("subgroup_columns", [])}
        numeric = frame[[c for c in frame.columns if c not in skip]].select_dtypes("number")
        numeric = numeric.loc[:, numeric.notna().all() & (numeric.std() > 0)]
        paragraphs.append(f"{step['id']}: {frame.shape[0]} cases x {numeric.shape[1]} varying features.")
        if numeric.shape[1] == 0:
            continue
        groups = frame[colour_by].astype(str).tolist() if colour_by in frame.columns else None
        cv = (numeric.std() / numeric.mean().abs().replace(0, np.nan)).fillna(0).sort_values(ascending=False)
        top = list(cv.index[:6])
        figures.append(Figure(histograms_png({c: numeric[c].to_numpy(float) for c in top}, groups,
                                             title=f"{step['id']}: the most variable features"),
                              caption="Histograms of the features with the largest coefficient of variation"
                                      + (f", by {colour_by}." if groups else ".")))
        if numeric.shape[0] >= 3 and numeric.shape[1] >= 2:
            z = (numeric - numeric.mean()) / numeric.std()
            u, s, _ = np.linalg.svd(z.to_numpy(float), full_matrices=False)
            xy = u[:, :2] * s[:2]
            explained = s ** 2 / np.sum(s ** 2)
            figures.append(Figure(scatter_png(xy, groups or ["all"] * len(xy), title=f"{step['id']}: PCA",
                                              xlabel=f"PC1 ({explained[0]:.0%})", ylabel=f"PC2 ({explained[1]:.0%})"),
                                  caption="Principal components of the standardised features"
                                          + (f", coloured by {colour_by}." if groups else ".")))
    return Section("Features", paragraphs, (), figures)


_COHORT_HEADINGS = {"model": "Model", "evaluate": "Evaluation", "audit": "Subgroup audit",
                    "embedding": "Embedding", "cnn": "CNN and saliency maps"}


def _cohort_steps(store: Any, manifest: dict[str, Any]) -> list[Section]:
    """One section per cohort step that ran: its metrics with intervals, its tables and figures
    (all read from the step's ``result.json`` and the files it names)."""
    sections = []
    for record in manifest["parameters"].get("cohort", []):
        if record.get("status") not in ("computed", "cached"):
            continue
        key = f"cohort/{record['id']}/result.json"
        if not store.exists(key):
            continue
        result = json.loads(store.read_bytes(key))
        heading = f"{_COHORT_HEADINGS.get(result['op'], result['op'])}: {record['id']}"
        params = ", ".join(f"{k}={v}" for k, v in result.get("params", {}).items())
        paragraphs = [f"Cohort step {record['id']!r} ({result['op']}; {params})."] + list(result.get("notes", []))
        tabs: list[Table] = []
        metrics = result.get("metrics", {})
        if metrics:
            rows = []
            for name, m in metrics.items():
                ci = m.get("ci")
                rows.append([name, m.get("value"),
                             f"{format_value(ci[0])} - {format_value(ci[1])}" if ci else ""])
            tabs.append(Table(["metric", "value", "95 % CI"], rows))
        for t in result.get("tables", []):
            if store.exists(t["path"]):
                frame = _read_table(store, t["path"])
                tabs.append(Table(list(map(str, frame.columns)), frame.head(60).values.tolist(),
                                  caption=t.get("caption", "")))
        figures = [Figure(store.read_bytes(f["path"]), caption=f.get("caption", ""), alt=f.get("caption", ""))
                   for f in result.get("figures", []) if store.exists(f["path"])]
        sections.append(Section(heading, paragraphs, tabs, figures))
    return sections


def _failures(manifest: dict[str, Any]) -> Section | None:
    failures = manifest.get("failures", [])
    if not failures:
        return None
    return Section("Failures", [f"{len(failures)} case(s) failed; the others went on."],
                   [Table(["case", "error"], [[f["item"], f["error"]] for f in failures])])


def _provenance(manifest: dict[str, Any]) -> Section:
    software = manifest.get("software", {})
    rows = [["command", manifest.get("command", "")], ["seed", manifest.get("seed")],
            ["git commit", manifest.get("git_commit") or "(not a git checkout)"],
            ["started", manifest.get("started_at", "")], ["finished", manifest.get("finished_at", "")],
            ["platform", manifest.get("platform", {}).get("system", "")],
            ["python", manifest.get("platform", {}).get("python", "")]]
    rows += [[name, version] for name, version in software.items()]
    paragraphs = ["Everything needed to reproduce this run is in manifest.json beside this report "
                  "(`medimg reproduce manifest.json` re-runs it and compares every output). The study:"]
    yaml_text = manifest["parameters"].get("study_yaml") or json.dumps(manifest["parameters"]["study"], indent=2)
    return Section("Provenance", paragraphs, [Table(["item", "value"], rows)], preformatted=[yaml_text])


def study_report(out: str, *, max_overlays: int = 6, extra_sections: Sequence[Section] = ()) -> str:
    """Write ``report.html`` for the run in ``out`` (a folder or URL); return its location."""
    from medimg.pipeline.store import Store

    store = Store(out)
    manifest = json.loads(store.read_bytes("manifest.json"))
    study = manifest["parameters"]["study"]
    plan = manifest["parameters"].get("plan", [])
    tables = {o["step"]: _read_table(store, o["path"]) for o in manifest.get("outputs", []) if o.get("kind") == "table"}
    sections = [_cohort(manifest, study, tables)]
    if manifest["parameters"].get("prepare"):
        from medimg.pipeline.prepare import describe

        sections.append(Section("Preparation", describe(manifest["parameters"]["prepare"])))
    sections.append(_steps(manifest))
    for part in (_quality(plan, tables), _segmentation(store, manifest, plan, max_overlays),
                 _segmentation_accuracy(plan, tables, study),
                 _registration(store, manifest, plan, tables, study, max_overlays),
                 _features(plan, tables, study)):
        if part is not None:
            sections.append(part)
    sections.extend(_cohort_steps(store, manifest))
    sections.extend(extra_sections)
    failures = _failures(manifest)
    if failures is not None:
        sections.append(failures)
    sections.append(_provenance(manifest))
    with store.writing("report.html") as tmp:
        write_report(tmp, title=f"Study {study['name']}", subtitle=study.get("description", ""), sections=sections)
    return store.location("report.html")
