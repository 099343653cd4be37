"""``medimg features`` and ``medimg features-batch``: IBSI radiomics tables from the command line.

Thin layer over :mod:`medimg.features`: the same config keys, presets and tables a Python user
gets. Heavy modules are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

__all__ = ["register"]


def _config(config: Path | None, preset: str | None, pyradiomics_params: Path | None = None) -> Any:
    from medimg.errors import UserInputError
    from medimg.features import RadiomicsConfig, load_config
    from medimg.features import preset as get_preset

    if sum(v is not None for v in (config, preset, pyradiomics_params)) > 1:
        raise UserInputError("give either --config FILE, --preset NAME or --pyradiomics-params FILE, only one")
    if pyradiomics_params is not None:
        from medimg.features.pyradiomics_compat import load_params

        return RadiomicsConfig(pyradiomics=load_params(pyradiomics_params))
    if config is not None:
        return load_config(config)
    if preset is not None:
        return get_preset(preset)
    return RadiomicsConfig()


def _check_out(out: Path, overwrite: bool) -> None:
    from medimg.cli.params import check_output
    from medimg.io.tables import TABLE_SUFFIXES

    check_output(out, overwrite, suffixes=TABLE_SUFFIXES)


def _families(families: str | None) -> list[str] | None:
    if families is None:
        return None
    return [f.strip() for f in families.split(",") if f.strip()]


def _write(rows: list[dict[str, Any]], out: Path, long: bool) -> None:
    from medimg.features.table import LONG_COLUMNS, TAIL_COLUMNS, to_long
    from medimg.io.tables import write_table

    if long:
        write_table(to_long(rows), out, columns=LONG_COLUMNS)
    else:
        write_table(rows, out, last=TAIL_COLUMNS)


def _manifest(command: str, cfg: Any, out: Path, inputs: list[Path], failures: list[dict[str, Any]]) -> Path:
    from medimg.cli.runtime import command_manifest

    manifest = command_manifest(command, {"config": cfg.to_dict()})
    for path in inputs:
        manifest.add_input(path, hash_file=Path(path).is_file())
    for row in failures:
        manifest.add_failure(str(row.get("case")), str(row.get("error")))
    manifest.add_output(out)
    return manifest.write(out.with_name(out.name + ".manifest.json"))


def register(app: typer.Typer) -> None:
    """Add the ``features`` and ``features-batch`` commands to ``app``."""

    @app.command("features")
    def features(
        image: Annotated[Path, typer.Argument(help="Image file or DICOM folder (any format medimg reads).")],
        mask: Annotated[Path, typer.Argument(help="Label map on the image's grid.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output table: .csv or .parquet.")],
        label: Annotated[int, typer.Option("--label", help="Mask value of the region of interest.")] = 1,
        config: Annotated[Optional[Path], typer.Option("--config", help="Settings file (YAML or JSON).")] = None,  # noqa: UP045
        preset: Annotated[Optional[str], typer.Option("--preset", help="Named settings: default, ibsi-dig, ibsi-ct-a ... ibsi-ct-e, ibsi2-ph1-<id>, ibsi2-ph2-<id>, pyradiomics.")] = None,  # noqa: UP045
        pyradiomics_params: Annotated[Optional[Path], typer.Option("--pyradiomics-params", help="A PyRadiomics parameter file (YAML/JSON): PyRadiomics's extraction, value for value, with its feature names.")] = None,  # noqa: UP045
        families: Annotated[Optional[str], typer.Option("--families", help="Comma-separated families (default: the config's).")] = None,  # noqa: UP045
        long: Annotated[bool, typer.Option("--long", help="One row per value: image, feature, ibsi_code, aggregation_code, value.")] = False,
        case: Annotated[Optional[str], typer.Option("--case", help="Case name in the table (default: the image file name).")] = None,  # noqa: UP045
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    ) -> None:
        """Compute IBSI radiomics features of one region and write a table (wide, or --long), with a
        provenance manifest beside it (OUT.manifest.json); progress per family on a terminal."""
        from medimg.pipeline import Case, feature_row

        _check_out(out, overwrite)
        cfg = _config(config, preset, pyradiomics_params)
        row = feature_row(Case(case or image.name, image, mask, label), cfg, families=_families(families))
        del row["status"], row["error"]
        _write([row], out, long)
        _manifest("medimg features", cfg, out, [image, mask], [])
        n = sum(1 for k in row if not k.startswith("prov.") and k not in ("case", "label"))
        typer.echo(f"wrote {out}: {n} features of {row['case']} (label {label})")

    @app.command("features-batch")
    def features_batch(
        cases: Annotated[Path, typer.Argument(help="CSV with columns image, mask (and case, label).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output table: .csv or .parquet.")],
        config: Annotated[Optional[Path], typer.Option("--config", help="Settings file (YAML or JSON).")] = None,  # noqa: UP045
        preset: Annotated[Optional[str], typer.Option("--preset", help="Named settings (see `medimg features --help`).")] = None,  # noqa: UP045
        families: Annotated[Optional[str], typer.Option("--families", help="Comma-separated families.")] = None,  # noqa: UP045
        long: Annotated[bool, typer.Option("--long", help="One row per value with IBSI codes.")] = False,
        workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Local workers (default: all cores).")] = None,  # noqa: UP045
        scheduler: Annotated[str, typer.Option("--scheduler", help="processes, threads, serial, dask (a local cluster), or a Dask scheduler address tcp://HOST:PORT.")] = "processes",
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    ) -> None:
        """Compute features for every case of a CSV list in parallel (Dask); failed cases are recorded."""
        from medimg.core.progress import Steps
        from medimg.pipeline import extract_features, read_cases

        _check_out(out, overwrite)
        cfg = _config(config, preset)
        case_list = read_cases(cases)
        steps = Steps(len(case_list), "cases")  # captures the CLI's reporter: callbacks may come from any thread
        rows = extract_features(case_list, cfg, families=_families(families), scheduler=scheduler,
                                workers=workers, progress=lambda done, total: steps.update(done))
        _write(rows, out, long)
        failed = [r for r in rows if r.get("status") == "error"]
        _manifest("medimg features-batch", cfg, out, [cases], failed)
        for row in failed:
            typer.echo(f"failed: {row['case']}: {row['error']}", err=True)
        typer.echo(f"wrote {out}: {len(rows) - len(failed)} of {len(rows)} cases")
        if failed:
            raise typer.Exit(1)
