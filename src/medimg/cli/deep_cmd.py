"""Deep-learning subcommands: ``train`` (a CNN from a YAML file) and ``predict`` (a saved CNN
over a case table). Thin layer over :mod:`medimg.ml.deep.run`; heavy modules (torch, MONAI,
pandas, pydantic) are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``predict`` to ``app``."""

    @app.command("train")
    def train_cmd(
        config: Annotated[Path, typer.Argument(metavar="CONFIG.yaml", help="The training run: data table, model settings, seed, output (docs/learning.md).")],
        out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (must not exist or be empty); default: `output:` of the file.")] = None,  # noqa: UP045
        check: Annotated[bool, typer.Option("--check", help="Validate the file and exit; train nothing.")] = False,
    ) -> None:
        """Train a CNN image classifier (ResNet, DenseNet, EfficientNet; 2-D/3-D; LSTM/GRU over
        time points; transfer learning from local weights) as CONFIG.yaml describes, and write
        model.pt, metrics.json, history.csv, validation_predictions.csv, manifest.json and
        Grad-CAM/occlusion overlays into OUT."""
        from medimg.cli.runtime import command_manifest
        from medimg.ml.deep.run import load_train_spec, run_training

        spec, cfg, _ = load_train_spec(config)
        if check:
            typer.echo(f"{config}: valid; {cfg.architecture} ({cfg.spatial_dims}-D, {'x'.join(map(str, cfg.image_size))}"
                       f"{', ' + cfg.sequence if cfg.sequence != 'none' else ''}), {cfg.epochs} epochs, seed {spec.seed}")
            return
        record = run_training(config, out, log=lambda line: typer.echo(line, err=True),
                              manifest=command_manifest("medimg train", {}, seed=spec.seed))
        m = record["metrics"]
        text = ", ".join(f"{k.removeprefix('val_')} {m[k]:.3f}" for k in ("val_auc", "val_accuracy", "val_loss") if k in m)
        typer.echo(f"wrote {record['out']}: {record['n_train']} training / {record['n_validation']} validation cases, "
                   f"{record['epochs_run']} epochs{' (stopped early)' if record['stopped_early'] else ''}, "
                   f"best epoch {m['best_epoch']}{': validation ' + text if text else ''}; "
                   f"{record['images_per_second']:.0f} images/s")

    @app.command("predict")
    def predict_cmd(
        model: Annotated[Path, typer.Argument(metavar="MODEL.pt", help="A model written by `medimg train`.")],
        table: Annotated[Path, typer.Argument(metavar="CASES.csv", help="One row per image (paths relative to the CSV).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Predictions CSV to write (case, y_true, y_score, y_pred).")],
        image_column: Annotated[str, typer.Option("--image-column", help="Column of image paths (comma-separated columns: the channels of one image).")] = "image",
        label_column: Annotated[Optional[str], typer.Option("--label-column", help="Column of true labels (copied as y_true).")] = None,  # noqa: UP045
        patient_column: Annotated[Optional[str], typer.Option("--patient-column", help="Column of patient ids (copied).")] = None,  # noqa: UP045
        time_column: Annotated[Optional[str], typer.Option("--time-column", help="Sequence models: orders each case's rows.")] = None,  # noqa: UP045
        id_column: Annotated[Optional[str], typer.Option("--id-column", help="Column of case ids.")] = None,  # noqa: UP045
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    ) -> None:
        """Predict every case of CASES.csv with a trained CNN; the CSV is ready for `medimg evaluate`."""
        from medimg.cli.params import check_output
        from medimg.ml.deep.run import predict_table

        check_output(out, overwrite, suffixes=(".csv",))
        columns = [c.strip() for c in image_column.split(",") if c.strip()]
        path, n = predict_table(model, table, out, image_column=columns if len(columns) > 1 else image_column,
                                label_column=label_column,
                                patient_column=patient_column, time_column=time_column, id_column=id_column)
        typer.echo(f"wrote {path}: {n} cases")
