"""Learning subcommand ``model`` (feature tables): it calls the public API
(:func:`medimg.ml.study.model_study`); heavy modules are imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["register"]


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def register(app: typer.Typer) -> None:
    """Add ``model`` to ``app``."""

    @app.command("model")
    def model_cmd(
        features: Annotated[Path, typer.Argument(metavar="FEATURES", help="Wide feature table (.csv/.parquet): one row per case.")],
        label: Annotated[str, typer.Option("--label", help="The class column (two values).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (must not exist or be empty).")],
        group: Annotated[Optional[str], typer.Option("--group", help="Patient column: a patient's rows never straddle training and validation.")] = None,  # noqa: UP045
        case_id: Annotated[Optional[str], typer.Option("--id", help="Case id column carried to the predictions (default: 'case' if present).")] = None,  # noqa: UP045
        keep: Annotated[Optional[str], typer.Option("--keep", help="Comma-separated columns carried to the predictions (subgroups for `medimg audit`).")] = None,  # noqa: UP045
        exclude: Annotated[Optional[str], typer.Option("--exclude", help="Comma-separated numeric columns that are not features.")] = None,  # noqa: UP045
        model: Annotated[str, typer.Option("--model", help="logistic, svm, rf, gb, balanced_random_forest, easy_ensemble or rusboost.")] = "logistic",
        imbalance: Annotated[str, typer.Option("--imbalance", help="none, smote, adasyn, undersample or weights (inside the training folds only).")] = "none",
        tune: Annotated[str, typer.Option("--tune", help="none, grid, random or bayes (Optuna): nested, grouped.")] = "none",
        select: Annotated[Optional[str], typer.Option("--select", help="Comma-separated feature selection: variance, correlation, mrmr, lasso.")] = None,  # noqa: UP045
        impute: Annotated[str, typer.Option("--impute", help="Missing values: none (an error), mean, median or knn (fitted in the folds).")] = "none",
        folds: Annotated[int, typer.Option("--folds", help="Outer cross-validation folds.")] = 5,
        inner_folds: Annotated[int, typer.Option("--inner-folds", help="Inner folds for tuning.")] = 3,
        trials: Annotated[int, typer.Option("--trials", help="Random / Bayesian search trials.")] = 20,
        positive: Annotated[Optional[str], typer.Option("--positive", help="The positive label value (default: the larger).")] = None,  # noqa: UP045
        bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples for the CIs.")] = 2000,
        seed: Annotated[int, typer.Option("--seed", help="Seed of splits, resampling, models and search.")] = 0,
    ) -> None:
        """Cross-validate a classifier on a feature table (grouped by patient, nested when tuning) and
        write out-of-fold predictions.csv, metrics.json (with CIs), roc.png and the model refitted on
        all rows (model/model.joblib + model.json) into OUT."""
        from medimg.cli.runtime import command_manifest
        from medimg.errors import ParameterError
        from medimg.ml.pipelines import IMBALANCE, IMPUTERS, SELECTIONS, resolve_model
        from medimg.ml.study import model_study, read_feature_table, split_table
        from medimg.ml.validation import TUNERS

        resolve_model(model)  # names checked before any data is read
        for option, value, allowed in (("--imbalance", [imbalance], IMBALANCE), ("--tune", [tune], TUNERS),
                                       ("--impute", [impute], IMPUTERS), ("--select", _csv(select), SELECTIONS)):
            bad = [v for v in value if v not in allowed]
            if bad:
                raise ParameterError(f"{option}: unknown {bad[0]!r}; choose from {', '.join(allowed)}")
        frame = read_feature_table(features)
        table = split_table(frame, label=label, group=group, case_id=case_id, keep=_csv(keep), exclude=_csv(exclude))
        manifest = command_manifest("medimg model", {})
        manifest.add_input(features, role="features")
        record = model_study(table, out, model=model, imbalance=imbalance, tune_method=tune, selection=_csv(select),
                             impute=impute, folds=folds, inner_folds=inner_folds, n_trials=trials, seed=seed,
                             n_bootstrap=bootstrap, positive_label=positive, manifest=manifest)
        auc = record["metrics"].get("auc", {})
        ci = auc.get("ci") or [None, None]
        text = f"AUC {auc.get('value'):.3f}" if auc.get("value") is not None else "AUC n/a"
        if ci[0] is not None:
            text += f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})"
        typer.echo(f"wrote {out}: {len(frame)} rows, {table.features.shape[1]} features, "
                   f"{record['cross_validation']['settings']['model']}, {text}")
