"""Explanation subcommands: ``explain`` (a Grad-CAM or occlusion map of one image for a CNN
from ``medimg train``) and ``importance`` (permutation importance and per-case Shapley
contributions for a feature model from ``medimg model``). Thin layer over
:mod:`medimg.ml.explain`; heavy modules are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``explain`` and ``importance`` to ``app``."""

    @app.command("explain")
    def explain_cmd(
        model: Annotated[Path, typer.Argument(metavar="MODEL.pt", help="A model written by `medimg train` (one image per case).")],
        image: Annotated[Path, typer.Argument(metavar="IMAGE", help="The image to explain (any file medimg reads).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="The map, on IMAGE's grid (.nii.gz, .nrrd, .mha).")],
        method: Annotated[str, typer.Option("--method", help="grad-cam or occlusion.")] = "occlusion",
        target: Annotated[Optional[int], typer.Option("--target", help="The class explained (default: 1 for two classes).")] = None,  # noqa: UP045
        patch_mm: Annotated[Optional[float], typer.Option("--patch-mm", help="Occlusion patch edge in mm (default: 1/8 of the field of view).")] = None,  # noqa: UP045
        layer: Annotated[Optional[str], typer.Option("--layer", help="Grad-CAM layer (default: the last convolutional stage).")] = None,  # noqa: UP045
        png: Annotated[Optional[Path], typer.Option("--png", help="Also write an overlay PNG here.")] = None,  # noqa: UP045
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    ) -> None:
        """Where a trained CNN looks: a Grad-CAM or occlusion-sensitivity map of IMAGE, on IMAGE's
        grid (with a provenance sidecar), and optionally an overlay PNG."""
        from medimg import io
        from medimg.cli.params import check_output
        from medimg.cli.runtime import command_manifest
        from medimg.errors import UnknownNameError
        from medimg.ml.deep.model import load_model
        from medimg.ml.explain import grad_cam, occlusion_sensitivity, save_overlay

        if method not in ("grad-cam", "occlusion"):
            raise UnknownNameError("--method", method, ("grad-cam", "occlusion"))
        check_output(out, overwrite)
        cnn = load_model(model)
        picture = io.read(image)
        heat = (grad_cam(cnn, picture, target=target, layer=layer) if method == "grad-cam"
                else occlusion_sensitivity(cnn, picture, target=target, patch_mm=patch_mm))
        probability = cnn.predict_proba([picture])[0]
        manifest = command_manifest("medimg explain", {"method": method, "target": target, "patch_mm": patch_mm,
                                                       "layer": layer})
        manifest.add_input(model, role="model")
        manifest.add_input(image, role="image")
        io.write(heat, out, provenance=manifest)
        if png is not None:
            save_overlay(picture, heat, png, title=f"{method}, p = {', '.join(f'{p:.3f}' for p in probability)}")
        typer.echo(f"wrote {out}{' and ' + str(png) if png else ''}: {method} map; class probabilities "
                   + ", ".join(f"{k}: {p:.3f}" for k, p in enumerate(probability)))


    @app.command("importance")
    def importance_cmd(
        model: Annotated[Path, typer.Argument(metavar="MODEL", help="A model folder written by `medimg model` (DIR/model).")],
        features: Annotated[Path, typer.Argument(metavar="FEATURES", help="Cases to explain (.csv/.parquet) with the model's feature columns; held-out cases for importance.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (importance.csv, contributions.csv).")],
        label: Annotated[Optional[str], typer.Option("--label", help="The class column: adds permutation importance (AUC drop).")] = None,  # noqa: UP045
        case_id: Annotated[Optional[str], typer.Option("--id", help="Case id column carried to contributions.csv (default: 'case' if present).")] = None,  # noqa: UP045
        background: Annotated[Optional[Path], typer.Option("--background", help="Rows standing in for an absent feature (e.g. the training table; default: the mean of FEATURES).")] = None,  # noqa: UP045
        repeats: Annotated[int, typer.Option("--repeats", min=1, help="Permutation-importance shuffles per feature.")] = 10,
        permutations: Annotated[int, typer.Option("--permutations", min=2, help="Feature orderings per case for the Shapley contributions.")] = 32,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the shuffles, orderings and background sample.")] = 0,
    ) -> None:
        """What a feature model uses: permutation importance (with --label) and per-case Shapley
        contributions to the log-odds (exact for linear models), written to OUT."""
        from medimg.core.provenance import jsonable
        from medimg.io.tables import write_table
        from medimg.ml.explain import permutation_importance, shapley_contributions
        from medimg.ml.models import load_pipeline
        from medimg.ml.study import read_feature_table

        trained = load_pipeline(model)
        frame = read_feature_table(features)
        columns = [str(c) for c in frame.columns]
        for option, column in (("--label", label), ("--id", case_id)):
            if column is not None and column not in columns:
                from medimg.errors import ParameterError, did_you_mean

                raise ParameterError(f"{option}: no column {column!r} in {features}{did_you_mean(column, columns)}")
        bg = read_feature_table(background) if background is not None else None
        contrib = shapley_contributions(trained, frame, background=bg, n_permutations=permutations, seed=seed)
        mean_abs = contrib.mean_abs()
        rows = [{"feature": f, "mean_abs_contribution": v} for f, v in mean_abs.items()]
        if label is not None:
            ranking = {r["feature"]: r for r in permutation_importance(trained, frame, frame[label], n_repeats=repeats,
                                                                       seed=seed)}
            for row in rows:
                row.update(permutation_auc_drop=ranking[row["feature"]]["importance"],
                           permutation_std=ranking[row["feature"]]["std"])
            rows.sort(key=lambda r: -r["permutation_auc_drop"])
        out.mkdir(parents=True, exist_ok=True)
        write_table(jsonable(rows), out / "importance.csv")
        key = case_id or ("case" if "case" in columns else None)
        ids = frame[key].astype(str).tolist() if key else [str(i) for i in range(len(frame))]
        cases = [{"case": ids[i], **{f: float(contrib.values[i, j]) for j, f in enumerate(contrib.features)},
                  "base": contrib.base, "log_odds": float(contrib.log_odds[i])} for i in range(len(ids))]
        write_table(cases, out / "contributions.csv")
        top = ", ".join(f"{r['feature']} ({r.get('permutation_auc_drop', r['mean_abs_contribution']):.3g})" for r in rows[:5])
        typer.echo(f"wrote {out}: importance.csv ({len(rows)} features), contributions.csv ({len(ids)} cases); "
                   f"top: {top}")
