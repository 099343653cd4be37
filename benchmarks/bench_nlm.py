"""Non-local means: medimg vs scikit-image's fast mode, at identical windows and at each default.

Data, two shapes (the each-its-default ratio depends on the voxel spacing, as medimg's windows
are in mm): a 25 x 64 x 64 crop (0.78 x 0.78 x 6.5 mm) of brain1 (PyRadiomics test MR, BSD-3)
and a synthetic 40 x 64 x 64 phantom at 1 mm isotropic (spheres of different intensities), each
with Gaussian noise of sigma = 5 % of its range (seed 0), float64, h = 0.8 sigma, sigma given.

* Same computation: `nlm_array(..., scheme="skimage")` (medimg's compiled kernel computing
  scikit-image's fast-mode weights) vs `skimage.restoration.denoise_nl_means(fast_mode=True)`
  with the same patch size and distance in voxels; max |difference| of the outputs shown.
* Each its default: medimg's `filters.nlm` (windows in mm: patch 1 mm, search 4 mm, i.e.
  3 x 3 x 1 and 11 x 11 x 3 voxels on brain1, 3 x 3 x 3 and 9 x 9 x 9 on the 1 mm phantom; its
  own weights) vs scikit-image at its usual 3-D
  setting (patch 5, distance 6) -- a different computation, shown apart.

One thread for both (threads pinned; medimg `workers=1`); medians of 5 interleaved runs after
a warm-up (medimg's warm-up also loads its compiled kernel); in process (array in, array out).
``BENCH_REPEATS=1`` for a quick smoke test.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from _common import ROOT, bench_repeats, load_average, machine, medians, pin_threads, write_section

REPEATS = bench_repeats()


def reference_data() -> Path | None:
    env = os.environ.get("MEDIMG_REFERENCE_DATA")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data", Path("/work/shared/data")]:
        if (candidate / "mri-brain1" / "brain1_image.nrrd").exists():
            return candidate
    return None


def phantom() -> tuple[np.ndarray, tuple[float, float, float]]:
    """A 40 x 64 x 64 synthetic volume at 1 mm isotropic: a background, spheres of four
    intensities and a smooth ramp (seed 0)."""
    rng = np.random.default_rng(0)
    z, y, x = np.indices((40, 64, 64), dtype=np.float64)
    out = 100.0 + 0.5 * x
    for value in (400.0, 800.0, 1200.0, 1600.0):
        c = rng.uniform([8, 12, 12], [32, 52, 52])
        r = rng.uniform(5, 10)
        out[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r] = value
    return out, (1.0, 1.0, 1.0)


def measure(label: str, clean: np.ndarray, spacing_xyz, origin, noise_range: float) -> tuple[list, dict]:
    """The same-computation rows and the each-its-default row of one data set; noise sigma = 5 %
    of ``noise_range`` (brain1: the whole image's range, as before)."""
    from skimage.restoration import denoise_nl_means

    from medimg import Image, filters
    from medimg.filters.nlm import nlm_array

    rng = float(clean.max() - clean.min())
    sigma = 0.05 * noise_range
    noisy = clean + np.random.default_rng(0).normal(0, sigma, clean.shape)
    h = 0.8 * sigma
    img = Image.from_geometry(noisy.astype(np.float32), spacing=spacing_xyz, origin=origin)
    rows = []
    for size, dist in ((3, 3), (5, 6)):
        outs: dict[str, np.ndarray] = {}

        def ours(size=size, dist=dist, outs=outs) -> None:
            outs["m"] = nlm_array(noisy, patch_radius=np.full(3, size // 2), search_radius=np.full(3, dist),
                                  h=h, sigma=sigma, scheme="skimage", workers=1)

        def theirs(size=size, dist=dist, outs=outs) -> None:
            outs["s"] = denoise_nl_means(noisy, patch_size=size, patch_distance=dist, h=h, sigma=sigma, fast_mode=True)

        t = medians({"medimg": ours, "skimage": theirs}, repeats=REPEATS)
        delta = float(np.max(np.abs(outs["m"] - outs["s"])))
        rows.append((label, "same computation", f"patch {size}, distance {dist} (voxels, both)", t["medimg"],
                     t["skimage"], delta))
        print(rows[-1], flush=True)
    outs2: dict[str, object] = {}

    def ours_default() -> None:
        outs2["m"] = filters.nlm(img, sigma=sigma, h=h, workers=1)

    def theirs_default() -> None:
        outs2["s"] = denoise_nl_means(noisy, patch_size=5, patch_distance=6, h=h, sigma=sigma, fast_mode=True)

    t = medians({"medimg": ours_default, "skimage": theirs_default}, repeats=REPEATS)
    step = outs2["m"].meta["history"][-1]
    pv = "x".join(str(2 * r + 1) for r in step["patch_radius_voxels_zyx"][::-1])
    sv = "x".join(str(2 * r + 1) for r in step["search_radius_voxels_zyx"][::-1])
    rows.append((label, "each its default", f"medimg: patch 1 mm / search 4 mm ({pv} / {sv} voxels, x y z); skimage: "
                 "patch 5, distance 6", t["medimg"], t["skimage"], None))
    print(rows[-1], flush=True)

    def psnr(a: np.ndarray) -> float:
        return float(10 * np.log10(rng**2 / np.mean((a.astype(np.float64) - clean) ** 2)))

    quality = {"medimg": psnr(outs2["m"].array), "skimage": psnr(outs2["s"]), "noisy": psnr(noisy)}
    return rows, quality


def main() -> None:
    threads = pin_threads()
    data = reference_data()
    if data is None:
        write_section("nlm", "## Non-local means kernel\n\nbrain1 not found: skipped.")
        return
    from medimg import io
    from medimg.filters._nlm_kernel import load

    compiled = load() is not None
    threads = pin_threads()  # numba is loaded now: pin it too
    raw = io.read(data / "mri-brain1" / "brain1_image.nrrd")
    crop = raw.array[:, 96:160, 96:160].astype(np.float64)
    before = load_average()
    rows, quality = [], {}
    ph, ph_spacing = phantom()
    sets = {"brain1 crop, 25 x 64 x 64, 0.78 x 0.78 x 6.5 mm": (crop, raw.spacing, raw.origin,
                                                                float(raw.array.max() - raw.array.min())),
            "synthetic phantom, 40 x 64 x 64, 1 mm isotropic": (ph, ph_spacing, (0.0, 0.0, 0.0),
                                                                float(ph.max() - ph.min()))}
    for label, (clean, spacing, origin, noise_range) in sets.items():
        r, q = measure(label, clean, spacing, origin, noise_range)
        rows += r
        quality[label] = q
    after = load_average()
    lines = ["## Non-local means kernel (medimg vs scikit-image fast mode)", "",
             f"Machine: {machine()}; {threads}; medimg's compiled kernel {'loaded' if compiled else 'NOT available (NumPy path)'}. "
             f"{before} before, {after} after. Data, two shapes (the each-its-default ratio depends on the voxel "
             "spacing, as medimg's windows are in mm): a crop of brain1 and a synthetic phantom at 1 mm isotropic, "
             "each + Gaussian noise of sigma 5 % of its range (brain1: of the whole image's), float64, h = 0.8 sigma, sigma given; one thread each; "
             f"medians of {REPEATS} runs interleaved between the tools after a warm-up (in process, array in, array out).",
             "",
             "Comparison: per row (first column): the same computation (same windows in voxels, scikit-image's "
             "fast-mode weights, outputs equal to rounding: last column) and each its default (medimg's millimetre "
             "windows and own weights against scikit-image's usual 3-D windows: the kernel's speed mixed with the "
             "windows' size). There is no end-to-end counterpart (scikit-image has no command line).", "",
             "| data | comparison | windows | medimg (s) | scikit-image (s) | skimage / medimg time | max abs difference |",
             "|---|---|---|---:|---:|---:|---:|"]
    for label, kind, windows, tm, ts, delta in rows:
        d = "—" if delta is None else f"{delta:.1e}"
        lines.append(f"| {label} | {kind} | {windows} | {tm:.3f} | {ts:.3f} | **{ts / tm:.1f}x** | {d} |")
    lines += ["", "Each its default, PSNR vs the clean volume: " + "; ".join(
        f"{label.split(',')[0]}: medimg {q['medimg']:.2f} dB, scikit-image {q['skimage']:.2f} dB (noisy "
        f"{q['noisy']:.2f} dB)" for label, q in quality.items()) + ". The default comparison mixes the kernel's "
        "speed with the windows' size (millimetre windows on 6.5 mm slices search 3 planes, not 13); the "
        "same-computation rows are the kernel alone (same windows, same weights, outputs equal to rounding)."]
    md = "\n".join(lines)
    write_section("nlm", md)
    print(md)


if __name__ == "__main__":
    main()
