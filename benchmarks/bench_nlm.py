"""Non-local means: medimg vs scikit-image's fast mode, at identical windows and at each default.

Data: a 25 x 64 x 64 crop (0.78 x 0.78 x 6.5 mm) of brain1 (PyRadiomics test MR, BSD-3) with
Gaussian noise of sigma = 5 % of its range (seed 0), float64, h = 0.8 sigma, sigma given.

* Same computation: `nlm_array(..., scheme="skimage")` (medimg's compiled kernel computing
  scikit-image's fast-mode weights) vs `skimage.restoration.denoise_nl_means(fast_mode=True)`
  with the same patch size and distance in voxels; max |difference| of the outputs shown.
* Each its default: medimg's `filters.nlm` (windows in mm: patch 1 mm, search 4 mm, i.e.
  3 x 3 x 1 and 11 x 11 x 3 voxels here; its own weights) vs scikit-image at its usual 3-D
  setting (patch 5, distance 6) -- a different computation, shown apart.

One thread for both (threads pinned; medimg `workers=1`); medians of 5 interleaved runs after
a warm-up (medimg's warm-up also loads its compiled kernel).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from _common import ROOT, load_average, machine, medians, pin_threads, write_section

REPEATS = 5


def reference_data() -> Path | None:
    env = os.environ.get("MEDIMG_REFERENCE_DATA")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data", Path("/work/shared/data")]:
        if (candidate / "mri-brain1" / "brain1_image.nrrd").exists():
            return candidate
    return None


def main() -> None:
    threads = pin_threads()
    data = reference_data()
    if data is None:
        write_section("nlm", "## Non-local means kernel\n\nbrain1 not found: skipped.")
        return
    from skimage.restoration import denoise_nl_means

    from medimg import filters, io
    from medimg.filters._nlm_kernel import load
    from medimg.filters.nlm import nlm_array

    compiled = load() is not None
    threads = pin_threads()  # numba is loaded now: pin it too
    raw = io.read(data / "mri-brain1" / "brain1_image.nrrd")
    crop = raw.array[:, 96:160, 96:160].astype(np.float64)
    rng = float(crop.max() - crop.min())
    sigma = 0.05 * float(raw.array.max() - raw.array.min())
    noisy = crop + np.random.default_rng(0).normal(0, sigma, crop.shape)
    h = 0.8 * sigma
    img = type(raw).from_geometry(noisy.astype(np.float32), spacing=raw.spacing, origin=raw.origin)

    rows = []
    before = load_average()
    for size, dist in ((3, 3), (5, 6)):
        outs: dict[str, np.ndarray] = {}

        def ours(size=size, dist=dist, outs=outs) -> None:
            outs["m"] = nlm_array(noisy, patch_radius=np.full(3, size // 2), search_radius=np.full(3, dist),
                                  h=h, sigma=sigma, scheme="skimage", workers=1)

        def theirs(size=size, dist=dist, outs=outs) -> None:
            outs["s"] = denoise_nl_means(noisy, patch_size=size, patch_distance=dist, h=h, sigma=sigma, fast_mode=True)

        t = medians({"medimg": ours, "skimage": theirs}, repeats=REPEATS)
        delta = float(np.max(np.abs(outs["m"] - outs["s"])))
        rows.append(("same computation", f"patch {size}, distance {dist} (voxels, both)", t["medimg"], t["skimage"], delta))
        print(rows[-1], flush=True)
    outs2: dict[str, np.ndarray] = {}

    def ours_default() -> None:
        outs2["m"] = filters.nlm(img, sigma=sigma, h=h, workers=1).array

    def theirs_default() -> None:
        outs2["s"] = denoise_nl_means(noisy, patch_size=5, patch_distance=6, h=h, sigma=sigma, fast_mode=True)

    t = medians({"medimg": ours_default, "skimage": theirs_default}, repeats=REPEATS)
    rows.append(("each its default", "medimg: patch 1 mm / search 4 mm (3x3x1 / 11x11x3 voxels); skimage: patch 5, distance 6",
                 t["medimg"], t["skimage"], None))
    after = load_average()

    def psnr(a: np.ndarray) -> float:
        return float(10 * np.log10(rng**2 / np.mean((a.astype(np.float64) - crop) ** 2)))

    lines = ["## Non-local means kernel (medimg vs scikit-image fast mode)", "",
             f"Machine: {machine()}; {threads}; medimg's compiled kernel {'loaded' if compiled else 'NOT available (NumPy path)'}. "
             f"{before} before, {after} after. Data: 25 x 64 x 64 crop of brain1 + Gaussian noise sigma "
             f"{sigma:.1f} (5 % of the range), float64, h = 0.8 sigma, sigma given; one thread each; medians of "
             f"{REPEATS} interleaved runs after a warm-up (in process, array in, array out).", "",
             "| comparison | windows | medimg (s) | scikit-image (s) | skimage / medimg time | max abs difference |",
             "|---|---|---:|---:|---:|---:|"]
    for kind, windows, tm, ts, delta in rows:
        d = "—" if delta is None else f"{delta:.1e}"
        lines.append(f"| {kind} | {windows} | {tm:.3f} | {ts:.3f} | **{ts / tm:.1f}x** | {d} |")
    lines += ["", f"Each its default, PSNR vs the clean crop: medimg {psnr(outs2['m']):.2f} dB, scikit-image "
              f"{psnr(outs2['s']):.2f} dB (noisy {psnr(noisy):.2f} dB). The default comparison mixes the kernel's "
              "speed with the windows' size (millimetre windows on 6.5 mm slices search 3 planes, not 13); the "
              "same-computation rows are the kernel alone (same windows, same weights, outputs equal to rounding)."]
    md = "\n".join(lines)
    write_section("nlm", md)
    print(md)


if __name__ == "__main__":
    main()
