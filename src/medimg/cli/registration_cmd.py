"""Registration subcommands: ``register`` (two images -> a transform file) and ``warp`` (an
image or label map through a transform onto a reference grid).

Thin commands over :func:`medimg.registration.register` and the package's one resampler
(:mod:`medimg.core.resample`). Transforms map fixed-image points (LPS mm) to moving-image points,
as ITK does, and are written as ``.tfm`` / ``.h5`` files that SimpleITK, ITK-SNAP and Slicer read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["register"]

_TRANSFORMS = ("rigid", "similarity", "affine", "bspline", "syn")
_METRICS = ("mi", "ncc", "ms")


def register(app: typer.Typer) -> None:
    """Add ``register`` and ``warp`` to ``app``."""

    @app.command("register")
    def register_cmd(
        fixed: Annotated[Path, typer.Argument(metavar="FIXED", help="Fixed image (its grid is the reference).")],
        moving: Annotated[Path, typer.Argument(metavar="MOVING", help="Moving image, registered to FIXED.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Transform file (.tfm, .txt or .h5): fixed-image points (LPS mm) -> moving-image points.")],
        transform: Annotated[Optional[str], typer.Option("--transform", help="rigid, similarity, affine, bspline or syn (default: the task's).")] = None,  # noqa: UP045
        metric: Annotated[Optional[str], typer.Option("--metric", help="mi (Mattes mutual information), ncc or ms (default: the task's).")] = None,  # noqa: UP045
        task: Annotated[str, typer.Option("--task", help="mono-modal, multi-modal or longitudinal: the defaults.")] = "mono-modal",
        fixed_mask: Annotated[Optional[Path], typer.Option("--fixed-mask", help="Only voxels inside this mask (on FIXED's grid) count.")] = None,  # noqa: UP045
        moving_mask: Annotated[Optional[Path], typer.Option("--moving-mask", help="Mask on MOVING's grid.")] = None,  # noqa: UP045
        resampled: Annotated[Optional[Path], typer.Option("--resampled", help="Also write MOVING resampled onto FIXED's grid.")] = None,  # noqa: UP045
        grid_spacing: Annotated[float, typer.Option("--grid-spacing", help="B-spline control-point spacing on the finest level (mm; bspline and syn).")] = 30.0,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the metric sampling.")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="Print the quality record as JSON.")] = False,
    ) -> None:
        """Register MOVING to FIXED and write the transform (and optionally the resampled image)."""
        from medimg import io
        from medimg.cli.params import read_input
        from medimg.cli.runtime import command_manifest
        from medimg.core.provenance import jsonable
        from medimg.errors import ParameterError
        from medimg.registration import register as run_register

        if transform is not None and transform not in _TRANSFORMS:
            raise ParameterError(f"--transform: one of {', '.join(_TRANSFORMS)}; got {transform!r}")
        if metric is not None and metric not in _METRICS:
            raise ParameterError(f"--metric: one of {', '.join(_METRICS)}; got {metric!r}")
        if not grid_spacing > 0:
            raise ParameterError(f"--grid-spacing: a positive spacing in mm; got {grid_spacing!r}")
        if out.suffix.lower() not in (".tfm", ".txt", ".h5", ".hdf5"):
            raise ParameterError(f"{out}: a transform file ends in .tfm, .txt or .h5")
        fixed_img, moving_img = read_input(fixed, "FIXED"), read_input(moving, "MOVING")
        masks = {name: read_input(path, name) if path is not None else None
                 for name, path in (("--fixed-mask", fixed_mask), ("--moving-mask", moving_mask))}
        result = run_register(fixed_img, moving_img, transform=transform, metric=metric, task=task,
                              fixed_mask=masks["--fixed-mask"], moving_mask=masks["--moving-mask"], seed=seed,
                              grid_spacing_mm=grid_spacing)
        result.transform.save(out)
        if resampled is not None:
            manifest = command_manifest("medimg register", {"transform": transform, "metric": metric, "task": task,
                                                                "grid_spacing_mm": grid_spacing},
                                        seed=seed)
            io.write(result.resampled, resampled, provenance=manifest)
        record = {k: v for k, v in result.quality.items() if k != "metric_trace"}
        record["iterations"] = len(result.quality.get("metric_trace", []))
        if as_json:
            typer.echo(json.dumps(jsonable({"transform_file": str(out), **record}), indent=2))
        else:
            typer.echo(f"wrote {out}: {record.get('transform')} ({record.get('metric')}), final metric "
                       f"{record.get('final_metric'):.6g}, {record['iterations']} iterations, "
                       f"{record.get('time_s', 0):.1f} s")

    @app.command("warp")
    def warp_cmd(
        image: Annotated[Path, typer.Argument(metavar="IMAGE", help="Image or label map to warp (lives in the moving space).")],
        transform_file: Annotated[Path, typer.Argument(metavar="TRANSFORM", help="Transform file from medimg register (or ITK).")],
        reference: Annotated[Path, typer.Option("--reference", help="The grid of the output (the fixed image).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output image.")],
        label: Annotated[bool, typer.Option("--label", help="IMAGE is a label map: label-wise linear interpolation, never a new label value.")] = False,
        interpolator: Annotated[Optional[str], typer.Option("--interpolator", help="nearest, linear, bspline (images) or label_linear, nearest (labels).")] = None,  # noqa: UP045
    ) -> None:
        """Resample IMAGE onto REFERENCE's grid through TRANSFORM (out(x) = IMAGE(T(x)))."""
        from medimg import io
        from medimg.cli.params import read_input, read_transform_input
        from medimg.cli.runtime import command_manifest
        from medimg.core.resample import resample_like
        from medimg.errors import UserInputError

        tfm = read_transform_input(transform_file)
        img, ref = read_input(image, "IMAGE"), read_input(reference, "--reference")
        if label and not img.is_label:
            import numpy as np

            values = img.array
            if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
                raise UserInputError(f"{image}: --label, but the image holds non-integer values")
            img = img.with_array(values.astype(np.int32))
        chosen = interpolator or ("label_linear" if label else "linear")
        if img.spatial_ndim != ref.spatial_ndim:
            raise UserInputError(f"{image} is {img.spatial_ndim}-D and {reference} is {ref.spatial_ndim}-D")
        warped = resample_like(img, ref, transform=tfm, interpolator=chosen)
        io.write(warped, out, provenance=command_manifest("medimg warp", {"interpolator": chosen}))
        typer.echo(f"wrote {out}")
