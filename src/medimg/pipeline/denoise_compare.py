"""Writing a denoiser comparison (:func:`medimg.quality.compare_denoisers`) to a folder:
tables, a summary, a figure and, optionally, the filtered images. The folder appears complete or
not at all."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.image import Image
from medimg.quality.compare import METRICS, Comparison, _fmt, _json_default, comparison_table

__all__ = ["write_comparison"]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "params", "psnr_db", "ssim", "cnr", "time_s"])
        for r in rows:
            writer.writerow([r["method"], json.dumps(r["params"], sort_keys=True), _fmt(r["psnr_db"], 4),
                             _fmt(r["ssim"], 5), _fmt(r["cnr"], 4), f"{r['time_s']:.4f}"])


def _middle_slice(image: Image) -> np.ndarray:
    a = np.asarray(image.array, np.float64)
    return a[a.shape[0] // 2] if a.ndim == 3 else a


def _figure(result: Comparison, path: Path) -> None:
    from medimg.core.optional import require

    matplotlib = require("matplotlib", extra="report")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = [("clean", result.clean, None), ("noisy", result.noisy_image, result.noisy)]
    panels += [(r.candidate.method, r.image, r) for r in result.results if r.image is not None]
    ref = _middle_slice(result.clean)
    lo, hi = np.percentile(ref, [0.5, 99.5])
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.9 * rows), squeeze=False)
    sp = result.clean.spacing
    aspect = sp[1] / sp[0]
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, img, res) in zip(axes.ravel(), panels, strict=False):
        ax.imshow(_middle_slice(img), cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        sub = "" if res is None else f"\n{_fmt(res.psnr_db, 2)} dB, SSIM {res.ssim:.3f}"
        ax.set_title(f"{title}{sub}", fontsize=9)
    fig.suptitle(f"noise {result.settings.get('noise', 'given')}  "
                 f"(middle slice; PSNR/SSIM with data range {result.data_range:.4g})", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96), h_pad=1.5)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_comparison(result: Comparison, out_dir: str | Path, *, save_images: bool = False) -> list[Path]:
    """Write ``results.csv``, ``search.csv`` (every candidate), ``summary.json`` (table, best
    method per metric, settings), ``figure.png`` (middle slices side by side) and, with
    ``save_images``, ``noisy.nii.gz`` and one ``<method>.nii.gz`` per method into ``out_dir``.

    ``out_dir`` must not exist or be empty; it appears complete or not at all.
    """
    from medimg.core.files import atomic_dir
    from medimg.errors import UserInputError

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserInputError(f"{out_dir}: exists and is not an empty folder; choose a new output folder")
    names = ["results.csv", "search.csv", "summary.json", "figure.png"]
    with atomic_dir(out_dir) as tmp:
        table = comparison_table(result)
        _write_csv(tmp / "results.csv", table)
        _write_csv(tmp / "search.csv", [r.row() for r in result.tried])
        summary = {
            "table": table,
            "best": {metric: {"method": name, "larger_is_better": METRICS[metric]}
                     for metric, name in result.best.items()},
            "data_range": result.data_range,
            "settings": result.settings,
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
        _figure(result, tmp / "figure.png")
        if save_images:
            from medimg import io

            io.write(result.noisy_image, tmp / "noisy.nii.gz")
            names.append("noisy.nii.gz")
            for r in result.results:
                if r.image is not None:
                    io.write(r.image, tmp / f"{r.candidate.method}.nii.gz")
                    names.append(f"{r.candidate.method}.nii.gz")
    return [out_dir / n for n in names]
