"""``medimg response-map``: the response map of an IBSI chapter 2 filter, on the image's grid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from medimg.cli.params import check_output, parse_params

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``response-map`` command to ``app``."""

    @app.command("response-map")
    def response_map(
        image: Annotated[Path, typer.Argument(metavar="IMAGE", help="Input image (any format medimg reads).")],
        out: Annotated[Path, typer.Argument(metavar="OUT", help="Output response map (.nii.gz, .nrrd, ...).")],
        preset: Annotated[Optional[str], typer.Option("--preset", help="An IBSI phase 1 configuration: ibsi2-ph1-<id> (1a1 ... 8a3).")] = None,  # noqa: UP045
        filter_name: Annotated[Optional[str], typer.Option("--filter", help="Registered filter: mean, log, laws, gabor, wavelet, simoncelli.")] = None,  # noqa: UP045
        param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Filter parameter NAME=VALUE (repeatable); overrides the preset's.")] = None,  # noqa: UP045
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    ) -> None:
        """Filter IMAGE with an IBSI chapter 2 filter (a preset ibsi2-ph1-<id>, or --filter with -p
        parameters) and write the float response map on IMAGE's grid, with its sidecar."""
        from medimg import io
        from medimg.cli.runtime import command_manifest
        from medimg.errors import ParameterError, UnknownNameError
        from medimg.features.filters import FILTERS, filter_image
        from medimg.features.ibsi2 import PHASE1

        if (preset is None) == (filter_name is None):
            raise ParameterError("give exactly one of --preset ibsi2-ph1-<id> or --filter NAME")
        params: dict = {}
        if preset is not None:
            cid = preset.lower().removeprefix("ibsi2-ph1-")
            if not preset.lower().startswith("ibsi2-ph1-") or cid not in PHASE1:
                raise UnknownNameError("response-map preset", preset, [f"ibsi2-ph1-{k}" for k in PHASE1])
            filter_name, params = PHASE1[cid].filter, dict(PHASE1[cid].params)
        entry = FILTERS.get(str(filter_name))
        params.update(parse_params(param or [], entry))
        params = entry.validate(params)
        check_output(out, overwrite)
        img = io.read(image)
        result = filter_image(img, entry.name, **params)
        manifest = command_manifest("medimg response-map", {"kind": "feature_filters", "filter": entry.name,
                                                            "preset": preset, "params": params})
        manifest.add_input(image, role="image")
        io.write(result, out, provenance=manifest)
        typer.echo(f"wrote {out}: {entry.name} response map -> {result.grid_summary()} {result.dtype}")
