"""IBSI chapter 2 filters: medimg vs MIRP (the IBSI reference implementation), same run.

Phantoms: every phase 1 configuration on its IBSI digital phantom (64^3 voxels, 2 mm). CT: the
2-D (``a``) phase 2 filters on the whole IBSI CT phantom (204 x 201 x 60 voxels, by slice).
medimg: the registered filter on the array (``FILTERS.get(name).func``). MIRP:
``mirp.extract_images`` with the equivalent settings; its time includes reading the NIfTI files
and its pipeline, so the MIRP time of the same call without a filter ("MIRP, no filter") is
reported too. One run each (the 2 cores are shared: timings wander); the load average is given.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from _common import ROOT, machine, write_section


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
    load0 = os.getloadavg()
    rows = []
    for c in PHASE1.values():
        folder = data / "ibsi2-digital-phantom" / c.phantom
        img_path, msk_path = folder / "image" / f"{c.phantom}.nii.gz", folder / "mask" / "mask.nii.gz"
        img = read(img_path)
        arr, sp = np.asarray(img.array, dtype=np.float64), tuple(float(v) for v in np.asarray(img.spacing)[::-1])
        t0 = time.perf_counter()
        FILTERS.get(c.filter).func(arr, sp, **c.params)
        ours = time.perf_counter() - t0
        _, theirs = mirp_response(img_path, msk_path, c.filter, c.params)
        rows.append(("phantom", c.id, c.filter, ours, theirs))
        print(rows[-1], flush=True)
    ct = data / "ibsi1-ct-phantom" / "nifti"
    if ct.is_dir():
        img_path, msk_path = ct / "image" / "phantom.nii.gz", ct / "mask" / "mask.nii.gz"
        img = read(img_path)
        arr, sp = np.asarray(img.array, dtype=np.float64), tuple(float(v) for v in np.asarray(img.spacing)[::-1])
        _, base = mirp_response(img_path, msk_path, "mean", {"support": 1, "dims": 2})
        rows.append(("CT", "MIRP, no filter (mean of 1 voxel)", "", float("nan"), base))
        for fid, (name, params) in PHASE2.items():
            if name is None or not fid.endswith("a"):
                continue
            t0 = time.perf_counter()
            FILTERS.get(name).func(arr, sp, **params)
            ours = time.perf_counter() - t0
            _, theirs = mirp_response(img_path, msk_path, name, params)
            rows.append(("CT", fid, name, ours, theirs))
            print(rows[-1], flush=True)
    load1 = os.getloadavg()
    lines = ["## IBSI chapter 2 filters: medimg vs MIRP", "", __doc__.split("\n\n", 1)[1].strip(), "",
             f"Machine: {machine()}. Load average (1, 5, 15 min) before: {load0[0]:.2f}, {load0[1]:.2f}, "
             f"{load0[2]:.2f}; after: {load1[0]:.2f}, {load1[1]:.2f}, {load1[2]:.2f}.", "",
             "| image | configuration | filter | medimg (s) | MIRP (s) |", "|---|---|---|---:|---:|"]
    for where, cid, name, ours, theirs in rows:
        o = "" if np.isnan(ours) else f"{ours:.2f}"
        lines.append(f"| {where} | {cid} | {name} | {o} | {theirs:.2f} |")
    write_section("ibsi2_filters", "\n".join(lines))


if __name__ == "__main__":
    main()
