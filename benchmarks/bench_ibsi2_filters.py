"""IBSI chapter 2 filters: medimg vs MIRP (the IBSI reference implementation), same run.

Phantoms: every phase 1 configuration on its IBSI digital phantom (64^3 voxels, 2 mm). CT: the
2-D (``a``) phase 2 filters on the whole IBSI CT phantom (204 x 201 x 60 voxels, by slice).
Same computation: each configuration's filter with the same parameters (MIRP's settings are the
IBSI equivalents, ``validation/_ibsi2_mirp.py``; the maps agree, VALIDATION.md's IBSI chapter 2
section). Not the same I/O: medimg's registered filter (``FILTERS.get(name).func``) runs on an
array in memory; MIRP's ``extract_images`` reads the NIfTI image and mask and runs its pipeline
around the filter. So each configuration is timed three ways, interleaved (medians of 5 runs
after a warm-up): medimg on the array; medimg reading the same two files first (``medimg.io.read``)
then filtering; MIRP. Two ratios: MIRP / (medimg with the reads) compares the same input and
output; (MIRP - MIRP's time for the same image with no filter) / medimg on the array estimates the
filter alone. One thread for both (``pin_threads``); the load average is given.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import numpy as np

from _common import ROOT, comparison, load_average, medians, pin_threads, protocol, write_section

REPEATS = 5


def main() -> None:
    sys.path.insert(0, str(ROOT / "validation"))
    from _ibsi2_mirp import mirp_available, mirp_response

    from medimg.features.filters import FILTERS
    from medimg.features.ibsi2 import PHASE1, PHASE2
    from medimg.io import read

    env = os.environ.get("MEDIMG_REFERENCE_DATA")
    data = Path(env) if env else ROOT.parent / "shared" / "data"
    if not (data / "ibsi2-digital-phantom").is_dir() or not mirp_available():
        write_section("ibsi2_filters", "## IBSI chapter 2 filters\n\nData or MIRP absent: not run.")
        return
    threads = pin_threads()
    load0 = load_average()
    rows = []
    base_cache: dict[Path, float] = {}

    def timings(img_path: Path, msk_path: Path, arr: np.ndarray, sp: tuple, name: str, params: dict) -> tuple:
        func = FILTERS.get(name).func
        t = medians({
            "ours": lambda: func(arr, sp, **params),
            "ours_io": lambda: (read(msk_path), func(np.asarray(read(img_path).array, dtype=np.float64), sp, **params)),
            "mirp": lambda: mirp_response(img_path, msk_path, name, params),
        }, repeats=REPEATS)
        return t["ours"], t["ours_io"], t["mirp"]

    def baseline(img_path: Path, msk_path: Path, dims: int) -> float:
        """MIRP's time for the same image and mask with a 1-voxel mean filter (no filtering)."""
        if img_path not in base_cache:
            base_cache[img_path] = medians({"mirp": lambda: mirp_response(img_path, msk_path, "mean",
                                                                          {"support": 1, "dims": dims})},
                                           repeats=REPEATS)["mirp"]
        return base_cache[img_path]

    for c in PHASE1.values():
        folder = data / "ibsi2-digital-phantom" / c.phantom
        img_path, msk_path = folder / "image" / f"{c.phantom}.nii.gz", folder / "mask" / "mask.nii.gz"
        img = read(img_path)
        arr, sp = np.asarray(img.array, dtype=np.float64), tuple(float(v) for v in np.asarray(img.spacing)[::-1])
        ours, ours_io, theirs = timings(img_path, msk_path, arr, sp, c.filter, c.params)
        rows.append(("phantom", c.id, c.filter, ours, ours_io, theirs, baseline(img_path, msk_path, 3)))
        print(rows[-1], flush=True)
    ct = data / "ibsi1-ct-phantom" / "nifti"
    if ct.is_dir():
        img_path, msk_path = ct / "image" / "phantom.nii.gz", ct / "mask" / "mask.nii.gz"
        img = read(img_path)
        arr, sp = np.asarray(img.array, dtype=np.float64), tuple(float(v) for v in np.asarray(img.spacing)[::-1])
        for fid, (name, params) in PHASE2.items():
            if name is None or not fid.endswith("a"):
                continue
            ours, ours_io, theirs = timings(img_path, msk_path, arr, sp, name, params)
            rows.append(("CT", fid, name, ours, ours_io, theirs, baseline(img_path, msk_path, 2)))
            print(rows[-1], flush=True)
    load1 = load_average()

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.1f}x" if b > 0 and a > 0 else "—"

    lines = ["## IBSI chapter 2 filters: medimg vs MIRP", "",
             protocol(threads, load0, load1, f"medians of {REPEATS} runs interleaved between the three timings of a "
                      "configuration after a warm-up"), "",
             __doc__.split("\n\n", 1)[1].strip(), "",
             comparison("same", "the same filter and parameters on the same image (maps checked against MIRP's in "
                        "VALIDATION.md); the I/O differs (medimg on an array, MIRP reading files through its "
                        "pipeline), hence the two columns: medimg with the file reads (same input and output) and "
                        "MIRP less its no-filter time (the filter alone, an estimate)"), "",
             "| image | configuration | filter | medimg, array (s) | medimg, files read (s) | MIRP `extract_images` (s) "
             "| MIRP, no filter (s) | MIRP / medimg, same I/O | (MIRP - no filter) / medimg, filter alone |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for where, cid, name, ours, ours_io, theirs, base in rows:
        lines.append(f"| {where} | {cid} | {name} | {ours:.3f} | {ours_io:.3f} | {theirs:.3f} | {base:.3f} | "
                     f"{ratio(theirs, ours_io)} | {ratio(theirs - base, ours)} |")
    per = {}
    for where, *_rest, ours, ours_io, theirs, base in rows:
        per.setdefault(where, []).append((theirs / ours_io, (theirs - base) / ours if theirs > base else float("nan")))
    summary = []
    for where, vals in per.items():
        same_io = statistics.median(v[0] for v in vals)
        alone = [v[1] for v in vals if not np.isnan(v[1])]
        summary.append(f"{where}: median MIRP / medimg {same_io:.1f}x with the same I/O"
                       + (f", {statistics.median(alone):.1f}x for the filter alone" if alone else ""))
    lines += ["", "; ".join(summary) + " (over the configurations above). The filter-alone ratio is an estimate: "
              "MIRP's no-filter time is the median of its own 5 runs per image, not interleaved with each row, so "
              "where the filter is small next to MIRP's fixed cost the difference is mostly noise (\"—\" where "
              "MIRP's total was below its no-filter time)."]
    write_section("ibsi2_filters", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
