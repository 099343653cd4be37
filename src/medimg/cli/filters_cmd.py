"""``medimg filter``, ``medimg quality`` and ``medimg denoise-compare``: filters and image quality.

Thin commands over :mod:`medimg.filters` and :mod:`medimg.quality`; heavy modules are imported
inside the commands so that ``medimg --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from medimg.cli.params import check_output, parse_params

__all__ = ["register"]


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _write_spectra(before: Any, after: Any, path: Path) -> None:
    from medimg.core.files import atomic_path
    from medimg.core.optional import require
    from medimg.filters import spectrum

    matplotlib = require("matplotlib", extra="report")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax, (title, img) in zip(axes, (("input", before), ("output", after)), strict=True):
        spec = spectrum(img)
        arr = spec.array[spec.array.shape[0] // 2] if spec.spatial_ndim == 3 else spec.array
        sp, org = spec.spacing, spec.origin
        extent = (org[0] - sp[0] / 2, org[0] + sp[0] * (arr.shape[1] - 0.5),
                  org[1] + sp[1] * (arr.shape[0] - 0.5), org[1] - sp[1] / 2)
        ax.imshow(arr, cmap="magma", extent=extent, aspect="auto")
        ax.set_title(f"{title}: log(1+|F|), middle slice" if spec.spatial_ndim == 3 else f"{title}: log(1+|F|)")
        ax.set_xlabel("fx (cycles/mm)")
        ax.set_ylabel("fy (cycles/mm)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def register(app: typer.Typer) -> None:
    """Add the ``filter``, ``quality`` and ``denoise-compare`` commands to ``app``."""

    @app.command("filter")
    def filter_command(
        src: Annotated[Path, typer.Argument(metavar="IN", help="Input image (any format medimg reads, or a DICOM folder).")],
        dst: Annotated[Path, typer.Argument(metavar="OUT", help="Output file (.nii.gz, .nii, .nrrd, .mha).")],
        method: Annotated[str, typer.Option("--method", "-m", help="Registered filter (see `medimg list filters`).")],
        param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Filter parameter NAME=VALUE (repeatable); sizes in mm, images as file paths.")] = None,  # noqa: UP045
        spectrum_png: Annotated[Optional[Path], typer.Option("--spectrum", help="Also save the input and output Fourier spectra to this PNG.")] = None,  # noqa: UP045
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    ) -> None:
        """Apply one registered filter to IN and write OUT (geometry kept; parameters recorded in the
        history and in OUT's provenance sidecar, out.nii.gz -> out.json)."""
        from medimg import io
        from medimg.cli.params import image_param_files
        from medimg.cli.runtime import command_manifest
        from medimg.core.registry import registry
        from medimg.filters import apply

        entry = registry("filters").get(method)
        check_output(dst, overwrite)
        params = parse_params(param or [], entry)
        image = io.read(src)
        out = apply(image, method, **params)
        manifest = command_manifest("medimg filter", {"kind": "filters", "method": entry.name,
                                                      "params": entry.validate(params)})
        manifest.add_input(src, role="image")
        for name, path in image_param_files(param or [], entry).items():
            manifest.add_input(path, role=name)
        io.write(out, dst, provenance=manifest)
        if spectrum_png is not None:
            _write_spectra(image, out, spectrum_png)
        typer.echo(f"wrote {dst}: {method} -> {out.grid_summary()} {out.dtype}")

    @app.command("quality")
    def quality_command(
        ref: Annotated[Path, typer.Argument(metavar="REF", help="Reference (clean) image.")],
        img: Annotated[Path, typer.Argument(metavar="IMG", help="Image to score, on REF's grid.")],
        mask: Annotated[Optional[Path], typer.Option("--mask", help="Region (label map, non-zero inside) where the metrics are computed.")] = None,  # noqa: UP045
        roi: Annotated[Optional[Path], typer.Option("--roi", help="Label map: 1 = signal/region A, 2 = background/region B; adds cnr and snr.")] = None,  # noqa: UP045
        data_range: Annotated[str, typer.Option("--data-range", help="Data range L for PSNR/SSIM in image units, or 'reference' (REF's max - min in the mask).")] = "reference",
        rician: Annotated[bool, typer.Option("--rician", help="Magnitude MR: Rician noise estimate, Rayleigh background for SNR.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object metric -> value.")] = False,
    ) -> None:
        """Compare IMG with REF: MSE, RMSE, PSNR, SSIM; entropy and noise sigma of IMG; CNR/SNR with --roi."""
        import numpy as np

        from medimg import io
        from medimg.quality import compare_images

        reference, image = io.read(ref), io.read(img)
        reference.check_same_grid(image, names=(str(ref), str(img)))
        mask_img = io.read(mask) if mask is not None else None
        roi_img = io.read(roi) if roi is not None else None
        dr: float | str = data_range if data_range == "reference" else _float(data_range, "--data-range")
        results = compare_images(reference, image, mask=mask_img, rois=roi_img, data_range=dr,  # type: ignore[arg-type]
                                 rician=rician, names=(str(ref), str(img)))
        if as_json:
            # Strict JSON has no Infinity/NaN: a non-finite value (PSNR of identical images) is
            # written as null and named under "non_finite" with its value as text.
            non_finite = {k: str(v) for k, v in results.items() if isinstance(v, float) and not np.isfinite(v)}
            clean = {k: (None if k in non_finite else v) for k, v in results.items()}
            if non_finite:
                clean["non_finite"] = non_finite
            typer.echo(json.dumps(clean, indent=2, allow_nan=False))
            return
        from rich.table import Table

        table = Table("metric", "value")
        for name, value in results.items():
            table.add_row(name, f"{value:.6g}")
        _console().print(table)

    @app.command("denoise-compare")
    def denoise_compare_command(
        clean: Annotated[Path, typer.Argument(metavar="CLEAN", help="The clean reference image.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (new or empty).")],
        noise: Annotated[Optional[str], typer.Option("--noise", help="Noise to add: gaussian:S | rician:S (S = sigma / intensity range), poisson:PEAK, saltpepper:FRACTION. Default gaussian:0.05 unless --noisy.")] = None,  # noqa: UP045
        noisy: Annotated[Optional[Path], typer.Option("--noisy", help="A noisy image on CLEAN's grid, instead of adding noise.")] = None,  # noqa: UP045
        methods: Annotated[Optional[str], typer.Option("--methods", help="Comma-separated noise-reduction filters; default: every one without required parameters.")] = None,  # noqa: UP045
        search: Annotated[bool, typer.Option("--search", help="Try each filter's small parameter grid; keep the best PSNR.")] = False,
        param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Fixed parameter METHOD.NAME=VALUE (repeatable).")] = None,  # noqa: UP045
        mask: Annotated[Optional[Path], typer.Option("--mask", help="Region where PSNR and SSIM are computed.")] = None,  # noqa: UP045
        roi: Annotated[Optional[Path], typer.Option("--roi", help="Label map with regions 1 and 2 for the CNR (default: Otsu classes of CLEAN).")] = None,  # noqa: UP045
        data_range: Annotated[str, typer.Option("--data-range", help="Data range for PSNR/SSIM (image units) or 'reference'.")] = "reference",
        seed: Annotated[int, typer.Option("--seed", help="Seed of the added noise.")] = 0,
        save_images: Annotated[bool, typer.Option("--save-images", help="Also write the noisy and denoised images.")] = False,
    ) -> None:
        """Add noise to CLEAN (or take --noisy), run denoising filters, and write a table of PSNR,
        SSIM, CNR and time, a side-by-side figure and the best method per metric."""
        from medimg import io
        from medimg.core.registry import registry
        from medimg.errors import ParameterError, UserInputError
        from medimg.pipeline.denoise_compare import write_comparison
        from medimg.quality import add_noise, compare_denoisers, parse_noise
        from medimg.quality.compare import comparison_table

        if noisy is not None and noise is not None:
            raise UserInputError("give either --noise (to add noise to CLEAN) or --noisy (a noisy image), not both")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UserInputError(f"{out}: exists and is not an empty folder; choose a new output folder")
        spec = None if noisy is not None else parse_noise(noise or "gaussian:0.05")
        method_list = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
        fixed: dict[str, dict[str, Any]] = {}
        for item in param or []:
            head, sep, _rest = item.partition("=")
            name, dot, key = head.partition(".")
            if not sep or not dot or not key:
                raise ParameterError(f"--param {item!r}: expected METHOD.NAME=VALUE, e.g. nlm.h=20")
            entry = registry("filters").get(name.strip())
            fixed.setdefault(entry.name, {}).update(parse_params([f"{key}={item.partition('=')[2]}"], entry))
        dr: float | str = data_range if data_range == "reference" else _float(data_range, "--data-range")
        clean_img = io.read(clean)
        noisy_img = io.read(noisy) if noisy is not None else add_noise(clean_img, spec, seed=seed)
        mask_img = io.read(mask) if mask is not None else None
        roi_img = io.read(roi) if roi is not None else None
        from medimg.core.progress import report

        result = compare_denoisers(clean_img, noisy_img, method_list, search=search, data_range=dr,
                                   mask=mask_img, rois=roi_img, fixed=fixed,
                                   progress=lambda done, total, label: report(done, total, "denoising"))
        result.settings["seed"] = seed if noisy is None else None
        if noisy is not None:
            result.settings["noise"] = f"given: {noisy}"
        write_comparison(result, out, save_images=save_images)
        from rich.table import Table

        table = Table("method", "params", "PSNR (dB)", "SSIM", "CNR", "time (s)")
        for row in comparison_table(result):
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["params"].items())
            table.add_row(row["method"], params, f"{row['psnr_db']:.2f}", f"{row['ssim']:.4f}",
                          f"{row['cnr']:.3f}", f"{row['time_s']:.3f}")
        console = _console()
        console.print(table)
        for metric, name in result.best.items():
            console.print(f"best {metric}: {name}")
        typer.echo(f"wrote {out}")


def _float(text: str, option: str) -> float:
    from medimg.errors import ParameterError

    try:
        return float(text)
    except ValueError:
        raise ParameterError(f"{option} must be a number (image units) or 'reference', got {text!r}") from None
