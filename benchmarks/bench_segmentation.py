"""Segmentation metrics: medimg vs surface-distance (DeepMind), MONAI and MedPy.

Data:
* a synthetic pair of 256 x 256 x 256 masks, 0.8 x 0.8 x 2.5 mm voxels: two lobulated solids
  (radius about 70 mm, different lobulation, the second shifted by a few mm), written once into
  .bench/ and reused;
* brain1 (a real brain MRI tumour label, 256 x 256 x 25, 0.78 x 0.78 x 6.5 mm, from the
  workplace's reference data) against a copy dilated by two 6-connected steps.

Each tool computes what a user would call to get HD, HD95 and ASSD (and NSD at 1 mm where the
tool has it); medimg computes every metric (Dice, IoU, sensitivity, precision, volumes, HD, HD95,
ASSD, NSD) in one call, once per convention. Times are medians of 5 runs interleaved between
all the calls of a data set (medimg x 3 conventions, surface-distance, MONAI, MedPy; A B C ...,
A B C ...) after a warm-up round, in process (arrays in memory), threads pinned to 1 for every
tool (``pin_threads``; torch too), the load average recorded before and after. MedPy takes
about 25 s a call on the 256^3 pair, so the script runs about 4 minutes. The ratios depend on
the data (MedPy's cost follows the volume, medimg's the surface): hence two shapes, a large
smooth pair and a small real label. The values columns show that each medimg convention gives
the library's numbers. `BENCH_REPEATS=1` for a quick smoke test.
"""

from __future__ import annotations

import os
import statistics
import warnings
from pathlib import Path

import numpy as np

from _common import (
    CACHE,
    ROOT,
    bench_repeats,
    comparison,
    interleaved_times,
    load_average,
    pin_threads,
    protocol,
    write_section,
)

PAIR = CACHE / "seg-256-pair.npz"
SPACING_XYZ = (0.8, 0.8, 2.5)


def reference_data() -> Path | None:
    env = os.environ.get("MEDIMG_REFERENCE_DATA")
    for path in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"]:
        if (path / "mri-brain1").is_dir():
            return path
    return None


def make_pair() -> tuple[np.ndarray, np.ndarray]:
    if PAIR.exists():
        data = np.load(PAIR)
        shape = tuple(data["shape"])
        unpack = lambda k: np.unpackbits(data[k])[: np.prod(shape)].reshape(shape).astype(bool)  # noqa: E731
        return unpack("ref"), unpack("pred")
    from medimg.datasets import lobulated_mask

    shape = (256, 256, 256)
    centre = np.array([256 * 0.8 / 2, 256 * 0.8 / 2, 256 * 2.5 / 2])
    ref = lobulated_mask(shape, centre, 70.0, SPACING_XYZ, amplitude=0.25, seed=1)
    pred = lobulated_mask(shape, centre + np.array([2.0, -1.5, 3.0]), 72.0, SPACING_XYZ, amplitude=0.25, seed=2)
    PAIR.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(PAIR, shape=np.array(shape), ref=np.packbits(ref), pred=np.packbits(pred))
    return ref, pred


def brain1_pair() -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]] | None:
    data = reference_data()
    if data is None or not (data / "mri-brain1" / "brain1_label.nrrd").is_file():
        return None
    from scipy import ndimage as ndi

    from medimg import io

    label = io.read(data / "mri-brain1" / "brain1_label.nrrd")
    ref = label.array != 0
    pred = ndi.binary_dilation(ref, iterations=2)
    return ref, pred, label.spacing


def run_medimg(ref: np.ndarray, pred: np.ndarray, spacing_xyz, convention: str) -> dict:
    from medimg import Image
    from medimg.evaluation import segmentation_metrics

    r = Image.from_geometry(ref.view(np.uint8), spacing=spacing_xyz)
    p = Image.from_geometry(pred.view(np.uint8), spacing=spacing_xyz)
    return segmentation_metrics(p, r, convention=convention, tolerance_mm=1.0)


def run_surface_distance(ref, pred, spacing_xyz) -> dict:
    import surface_distance as sd

    d = sd.compute_surface_distances(ref, pred, tuple(spacing_xyz[::-1]))
    return {"hd": sd.compute_robust_hausdorff(d, 100), "hd95": sd.compute_robust_hausdorff(d, 95),
            "assd": float(np.mean(sd.compute_average_surface_distance(d))),
            "nsd": sd.compute_surface_dice_at_tolerance(d, 1.0)}


def run_monai(ref, pred, spacing_xyz) -> dict:
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    torch.set_num_threads(1)
    r = torch.from_numpy(ref)[None, None]
    p = torch.from_numpy(pred)[None, None]
    kw = {"include_background": True, "spacing": list(spacing_xyz[::-1])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"hd": float(compute_hausdorff_distance(p, r, **kw)),
                "hd95": float(compute_hausdorff_distance(p, r, percentile=95, **kw)),
                "assd": float(compute_average_surface_distance(p, r, symmetric=True, **kw))}


def run_medpy(ref, pred, spacing_xyz) -> dict:
    from medpy.metric import binary as mb

    sp = spacing_xyz[::-1]
    return {"hd": mb.hd(pred, ref, voxelspacing=sp), "hd95": mb.hd95(pred, ref, voxelspacing=sp),
            "assd": mb.assd(pred, ref, voxelspacing=sp)}


def bench_case(name: str, ref, pred, spacing_xyz, *, repeats: int) -> list[str]:
    """Table rows: medimg under each convention, then each library against its convention; every
    call of the data set timed in the same interleaved rounds."""
    values: dict[str, dict] = {}
    calls: dict[str, object] = {}

    def keep(key: str, func) -> None:
        def call() -> None:
            values[key] = func()

        calls[key] = call

    for conv in ("surface-distance", "monai", "medpy"):
        keep(f"medimg:{conv}", lambda c=conv: run_medimg(ref, pred, spacing_xyz, c))
    anchors = [("surface-distance", run_surface_distance, "surface-distance"),
               ("MONAI", run_monai, "monai"), ("MedPy", run_medpy, "medpy")]
    missing = {}
    for label, func, _conv in anchors:
        try:
            func(ref[:4, :4, :4], pred[:4, :4, :4], spacing_xyz)  # imports the library
        except ImportError as err:
            missing[label] = err.name
            continue
        except Exception:  # noqa: BLE001 - a tiny crop may be degenerate; only the import matters here
            pass
        keep(label, lambda f=func: f(ref, pred, spacing_xyz))
    times = interleaved_times(calls, repeats=repeats)
    med = {key: statistics.median(ts) for key, ts in times.items()}
    rows = [
        f"| {name} | **medimg**, {conv} convention, all metrics | {med[f'medimg:{conv}']:.3f} | | "
        f"{values[f'medimg:{conv}']['hd']:.4f} | {values[f'medimg:{conv}']['hd95']:.4f} | "
        f"{values[f'medimg:{conv}']['assd']:.4f} | |"
        for conv in ("surface-distance", "monai", "medpy")
    ]
    for label, _func, conv in anchors:
        if label in missing:
            rows.append(f"| {name} | {label} | not installed ({missing[label]}) | | | | | |")
            continue
        vals, mvals = values[label], values[f"medimg:{conv}"]
        t, mt = med[label], med[f"medimg:{conv}"]
        diff = max(abs(float(vals[k]) - float(mvals[k])) for k in vals)
        rows.append(
            f"| {name} | {label} | {t:.3f} | {t / mt:.1f}x | {vals['hd']:.4f} | {vals['hd95']:.4f} | "
            f"{vals['assd']:.4f} | {diff:.1e} |"
        )
    return rows


def main() -> None:
    threads = pin_threads()
    import torch

    torch.set_num_threads(1)
    threads += "; torch.set_num_threads(1)"
    n = bench_repeats()
    load_before = load_average()
    ref, pred = make_pair()
    rows = bench_case("256³ pair", ref, pred, SPACING_XYZ, repeats=n)
    brain = brain1_pair()
    if brain is None:
        note = ("brain1 not measured: the reference data folder (`$MEDIMG_REFERENCE_DATA` or "
                "`../shared/data`) with `mri-brain1/` is absent.")
    else:
        b_ref, b_pred, b_sp = brain
        rows += bench_case("brain1 vs dilated", b_ref, b_pred, b_sp, repeats=n)
        note = (f"brain1: label {int(b_ref.sum())} voxels vs a copy dilated twice (6-connected), "
                f"spacing {tuple(round(v, 4) for v in b_sp)} mm.")
    load_after = load_average()
    body = "\n".join([
        "## Segmentation metrics (HD, HD95, ASSD, NSD)",
        "",
        protocol(threads, load_before, load_after,
                 f"medians of {n} runs interleaved between all the calls of a data set (medimg x 3 conventions, "
                 "surface-distance, MONAI, MedPy) after a warm-up round; in process (masks in memory)"),
        f"256³ pair: {int(ref.sum())} and {int(pred.sum())} voxels, spacing {SPACING_XYZ} mm (x, y, z). {note} "
        "The ratios depend on the data (MedPy's cost follows the volume, medimg's and surface-distance's the "
        "surface), hence the two shapes.",
        "",
        comparison("same", "for HD, HD95 and ASSD each library is set against medimg with that library's "
                   "convention (its own boundary and percentile definitions; values equal, last column), same "
                   "masks and spacing, in process; medimg's call also computes Dice, IoU, sensitivity, precision, "
                   "volumes and NSD at 1 mm (more work than MONAI's and MedPy's calls; surface-distance's includes "
                   "NSD). There is no end-to-end counterpart: the libraries have no command line (medimg's is "
                   "`medimg seg-metrics`)"),
        "",
        "Time: seconds for HD + HD95 + ASSD (+ NSD where available) as a user of each library calls "
        "them; medimg: every metric (overlap, volumes, HD, HD95, ASSD, NSD) in one call. Ratio: the "
        "library's median time over medimg's median time with the same convention, in the same interleaved "
        "rounds. Max diff: largest difference (mm) between the library's values and medimg's with that "
        "library's convention (MONAI computes in float32).",
        "",
        "| data | tool | time (s) | ratio | HD (mm) | HD95 (mm) | ASSD (mm) | max diff vs medimg (mm) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    write_section("segmentation", body)
    print(body)


if __name__ == "__main__":
    main()
