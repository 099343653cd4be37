"""Evaluation subcommands: ``evaluate`` (metrics with CIs) and ``audit`` (subgroup gaps).

Both read a predictions CSV: ``y_true`` (0/1), ``y_score`` (higher = positive), optionally
``y_pred`` (0/1), a case id column and subgroup columns. Thin commands over
:func:`medimg.evaluation.binary_metrics`, :func:`~medimg.evaluation.calibration.calibration`,
:func:`~medimg.evaluation.delong.delong_auc` and :func:`~medimg.evaluation.audit.subgroup_audit`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from medimg.cli.params import check_choice, json_value

__all__ = ["register"]


def _read_predictions(path: Path, required: list[str]) -> Any:
    from medimg.errors import ParameterError
    from medimg.io.tables import read_csv

    frame = read_csv(path)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ParameterError(
            f"{path}: column(s) {missing} not found; columns are {[str(c) for c in frame.columns][:20]}"
        )
    if len(frame) == 0:
        raise ParameterError(f"{path}: no rows")
    return frame


def _check_level(ci: float) -> None:
    from medimg.errors import ParameterError

    if not 0 < ci < 1:
        raise ParameterError(f"--ci must be in (0, 1), got {ci}")


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` and ``audit`` commands to ``app``."""

    @app.command("evaluate")
    def evaluate(
        predictions: Annotated[Path, typer.Argument(help="CSV with y_true (0/1), y_score, optional y_pred and case id.")],
        bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples (0: no intervals).")] = 2000,
        seed: Annotated[int, typer.Option("--seed", help="Resampling seed.")] = 0,
        ci: Annotated[float, typer.Option("--ci", help="Confidence level.")] = 0.95,
        method: Annotated[str, typer.Option("--method", help="Interval: percentile or bca.")] = "percentile",
        threshold: Annotated[float, typer.Option("--threshold", help="Call positive when y_score >= this (without y_pred).")] = 0.5,
        case_id: Annotated[Optional[str], typer.Option("--id", help="Case/patient id column: resample whole cases.")] = None,  # noqa: UP045
        y_true: Annotated[str, typer.Option("--y-true", help="Outcome column (0/1).")] = "y_true",
        y_score: Annotated[str, typer.Option("--y-score", help="Score column (higher = positive).")] = "y_score",
        y_pred: Annotated[Optional[str], typer.Option("--y-pred", help="Predicted class column (default: y_pred if present, else the threshold).")] = None,  # noqa: UP045
        plots: Annotated[Optional[Path], typer.Option("--plots", help="Folder for roc.png, pr.png, confusion.png, calibration.png.")] = None,  # noqa: UP045
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON: metric -> {value, ci: [low, high]}.")] = False,
    ) -> None:
        """Classification metrics with bootstrap confidence intervals (stratified; clustered by --id):
        AUC, AUC-PR, accuracy, balanced accuracy, sensitivity, specificity, precision, NPV, F1, and for
        probabilities Brier score, calibration slope and intercept; DeLong's AUC interval; Youden threshold."""
        from medimg.evaluation.calibration import calibration, youden_threshold
        from medimg.evaluation.classification import binary_metrics
        from medimg.evaluation.delong import delong_auc

        check_choice(method, ("percentile", "bca"), "--method")
        _check_level(ci)
        frame = _read_predictions(predictions, [y_true, y_score] + ([case_id] if case_id else []) + ([y_pred] if y_pred else []))
        pred_col = y_pred or ("y_pred" if "y_pred" in frame.columns else None)
        yt = frame[y_true].to_numpy()
        ys = frame[y_score].to_numpy()
        cluster = frame[case_id].to_numpy() if case_id else None
        res = binary_metrics(
            yt, ys, frame[pred_col].to_numpy() if pred_col else None, threshold=threshold, cluster=cluster,
            n_bootstrap=bootstrap, ci=ci, method=method, seed=seed,  # type: ignore[arg-type]
        )
        out: dict[str, Any] = {k: v.to_dict() for k, v in res.items()}
        extra: dict[str, Any] = {}
        y_bool = yt.astype(bool) if yt.dtype != object else yt
        if 0 < int(y_bool.sum()) < len(y_bool):
            dl = delong_auc(yt, ys, confidence=ci)
            out["auc_delong"] = dl.to_dict()
            extra["youden"] = youden_threshold(yt, ys).to_dict()
            if "brier" in res:
                cal = calibration(yt, ys, n_bootstrap=bootstrap and min(bootstrap, 500), confidence=ci,
                                  cluster=cluster, seed=seed).to_dict()
                for key in ("calibration_slope", "calibration_intercept"):
                    out[key] = dict(cal[key], confidence=ci, method="percentile" if bootstrap else "none")
        if plots is not None:
            from medimg.evaluation.plots import plot_calibration, plot_confusion, plot_pr, plot_roc

            plots.mkdir(parents=True, exist_ok=True)
            plot_roc(yt, ys, plots / "roc.png")
            plot_pr(yt, ys, plots / "pr.png")
            pred = frame[pred_col].to_numpy() if pred_col else (ys >= threshold).astype(int)
            plot_confusion(yt, pred, plots / "confusion.png")
            if "brier" in res:
                plot_calibration(yt, ys, plots / "calibration.png")
        if as_json:
            typer.echo(json.dumps(json_value(out), indent=2))
            return
        n_pos = int(y_bool.sum())
        typer.echo(f"{predictions}: {len(frame)} predictions, {n_pos} positive"
                   + (f", {frame[case_id].nunique()} cases ({case_id})" if case_id else ""))
        level = f"{ci:.0%} CI" + (f" ({method} bootstrap, {bootstrap} resamples)" if bootstrap else "")
        typer.echo(f"{'metric':<24}{'value':>8}   {level}")
        for name, item in out.items():
            v = item["value"]
            lo, hi = item["ci"]
            vs = "n/a" if v is None else f"{v:.3f}"
            cs = "" if lo is None or hi is None else f"{lo:.3f} - {hi:.3f}"
            if name == "auc_delong":
                cs += "  (DeLong)"
            typer.echo(f"{name:<24}{vs:>8}   {cs}")
        if "youden" in extra:
            yj = extra["youden"]
            typer.echo(f"Youden threshold {yj['threshold']:.4g}: sensitivity {yj['sensitivity']:.3f}, "
                       f"specificity {yj['specificity']:.3f}")
        if plots is not None:
            typer.echo(f"plots in {plots}")

    @app.command("audit")
    def audit(
        predictions: Annotated[Path, typer.Argument(help="CSV with y_true, y_score, optional y_pred, case id and subgroup columns.")],
        by: Annotated[str, typer.Option("--by", help="Subgroup column(s), comma-separated; each audited separately.")],
        reference: Annotated[Optional[str], typer.Option("--reference", help="COLUMN=VALUE: compare with this group instead of the rest.")] = None,  # noqa: UP045
        metrics: Annotated[str, typer.Option("--metrics", help="Comma-separated metrics.")] = "auc,sensitivity,specificity",
        correction: Annotated[str, typer.Option("--correction", help="Multiple comparisons: holm, bonferroni or none.")] = "holm",
        bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples.")] = 2000,
        seed: Annotated[int, typer.Option("--seed", help="Resampling seed.")] = 0,
        ci: Annotated[float, typer.Option("--ci", help="Confidence level (family-wise for the flags).")] = 0.95,
        threshold: Annotated[float, typer.Option("--threshold", help="Call positive when y_score >= this (without y_pred).")] = 0.5,
        case_id: Annotated[Optional[str], typer.Option("--id", help="Case/patient id column: resample whole cases.")] = None,  # noqa: UP045
        y_true: Annotated[str, typer.Option("--y-true", help="Outcome column (0/1).")] = "y_true",
        y_score: Annotated[str, typer.Option("--y-score", help="Score column.")] = "y_score",
        y_pred: Annotated[Optional[str], typer.Option("--y-pred", help="Predicted class column (default: y_pred if present).")] = None,  # noqa: UP045
        table: Annotated[Optional[Path], typer.Option("--table", help="Write the gap table here (.csv).")] = None,  # noqa: UP045
        plot: Annotated[Optional[Path], typer.Option("--plot", help="Write a forest plot of the gaps here (.png).")] = None,  # noqa: UP045
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON: groups, gaps, flags and settings.")] = False,
    ) -> None:
        """Subgroup audit: the metrics per value of each --by column with CIs, each group's gap to the
        rest (or to --reference) with a CI, flagged when the CI corrected for multiple comparisons
        (Holm by default) excludes zero."""
        from medimg.errors import ParameterError
        from medimg.evaluation.audit import subgroup_audit

        check_choice(correction, ("holm", "bonferroni", "none"), "--correction")
        _check_level(ci)
        columns = [c.strip() for c in by.split(",") if c.strip()]
        if not columns:
            raise ParameterError("--by needs at least one column name")
        versus: Any = "rest"
        if reference:
            if "=" not in reference:
                raise ParameterError(f"--reference must be COLUMN=VALUE, got {reference!r}")
            col, val = reference.split("=", 1)
            versus = {col.strip(): val.strip()}
        frame = _read_predictions(
            predictions, [y_true, y_score, *columns] + ([case_id] if case_id else []) + ([y_pred] if y_pred else [])
        )
        pred_col = y_pred or ("y_pred" if "y_pred" in frame.columns else None)
        res = subgroup_audit(
            frame, columns, y_true=y_true, y_score=y_score, y_pred=pred_col, case_id=case_id,
            metrics=[m.strip() for m in metrics.split(",") if m.strip()], threshold=threshold, versus=versus,
            n_bootstrap=bootstrap, ci=ci, correction=correction, seed=seed,  # type: ignore[arg-type]
        )
        if table is not None:
            from medimg.core.files import atomic_path

            with atomic_path(table) as tmp:
                res.gap_table().to_csv(tmp, index=False)
        if plot is not None and res.gaps:
            res.plot(plot)
        if as_json:
            typer.echo(json.dumps(json_value(res.to_dict()), indent=2))
            return
        s = res.settings
        typer.echo(f"{predictions}: {len(frame)} predictions; {s['n_comparisons']} gaps tested, "
                   f"{s['correction']} correction, family-wise {1 - s['family_wise_alpha']:.0%}; {s['resampling']}")
        for row in res.groups:
            lo, hi = row["ci_low"], row["ci_high"]
            cs = "" if not math.isfinite(lo) else f"({lo:.3f} - {hi:.3f})"
            typer.echo(f"  {row['column']}={row['group']!s:<12} n={row['n']:<6} {row['metric']:<12} {row['value']:.3f} {cs}")
        typer.echo("gaps (group - comparator), adjusted CI:")
        for g in res.gaps:
            mark = "FLAGGED" if g["flagged"] else ""
            cs = "" if not math.isfinite(g["ci_low"]) else f"({g['ci_low']:+.3f} to {g['ci_high']:+.3f} at {g['ci_level']:.4f})"
            typer.echo(f"  {g['column']}={g['group']!s} vs {g['versus']!s}: {g['metric']:<12} {g['gap']:+.3f} {cs} {mark}")
        typer.echo(f"{len(res.flagged)} flagged")
