"""IBSI chapter 2: every phase 1 configuration against the reference response maps, every
phase 2 filter id on the IBSI CT phantom against the consensus values.

Phase 1: each ``ibsi2-ph1-<id>`` filter on its digital phantom (reference data
``ibsi2-digital-phantom``, CC BY 4.0) compared voxel-wise with MIRP's map (MIRP's own tests check
its maps against the IBSI reference response maps); a configuration passes when every voxel is
within 1 % of the reference map's range. Phase 2: ``medimg.features.extract(image, mask,
config='ibsi2-ph2-<id>')`` on the CT phantom; the 18 intensity statistics of the response map
(``ibsi2-ph2-1x``: of the original image) match when, rounded to 3 significant digits, they lie
within the consensus tolerance (``validation/data/ibsi2_phase2_reference_values.csv``).
Usage: ``python validation/check_ibsi2.py [phase1] [phase2] [id ...]``.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

from _common import reference_data, write_section

HERE = Path(__file__).resolve().parent


def _round3(v: float) -> float:
    if v == 0 or not math.isfinite(v):
        return v
    return round(v, 2 - int(math.floor(math.log10(abs(v)))))


def phase1(root: Path, ids: list[str]) -> tuple[list[str], bool]:
    from _ibsi2_mirp import cached_phase1, mirp_available

    from medimg.features.filters import FILTERS
    from medimg.features.ibsi2 import PHASE1
    from medimg.io import read

    lines = ["### Phase 1: response maps of the digital phantoms", ""]
    if not mirp_available() and not any((HERE.parent / ".bench" / "ibsi2_mirp").glob("*.npy")):
        return lines + ["MIRP (the reference maps) is not installed: not run."], False
    lines += ["| config | phantom | filter | max error / map range | voxels > 1 % | medimg time (s) | result |",
              "|---|---|---|---:|---:|---:|---|"]
    passed = 0
    todo = [c for c in PHASE1.values() if not ids or c.id in ids]
    for c in todo:
        folder = root / "ibsi2-digital-phantom" / c.phantom
        img_path = folder / "image" / f"{c.phantom}.nii.gz"
        ref = cached_phase1(c.id, img_path, folder / "mask" / "mask.nii.gz", c.filter, c.params).astype(np.float64)
        img = read(img_path)
        arr = np.asarray(img.array, dtype=np.float64)
        sp = tuple(float(v) for v in np.asarray(img.spacing)[::-1])
        t0 = time.perf_counter()
        got = FILTERS.get(c.filter).func(arr, sp, **c.params)
        seconds = time.perf_counter() - t0
        rng = float(np.ptp(ref))
        err = np.abs(got - ref)
        bad = int(np.count_nonzero(err > 0.01 * rng))
        ok = bad == 0
        passed += ok
        lines.append(f"| {c.id} | {c.phantom} | {c.filter} | {err.max() / rng:.2e} | {bad} | {seconds:.2f} | "
                     f"{'pass' if ok else 'FAIL'} |")
        print(f"phase 1 {c.id}: {'pass' if ok else 'FAIL'} ({err.max() / rng:.1e} of range, {seconds:.2f} s)")
    lines.insert(2, f"**{passed} / {len(todo)} configurations pass** (all voxels within 1 % of the map's range).\n")
    return lines, passed == len(todo)


def phase2(root: Path, ids: list[str]) -> tuple[list[str], bool]:
    from medimg.features import extract
    from medimg.features.ibsi2 import PHASE2
    from medimg.io import read

    folder = root / "ibsi1-ct-phantom" / "nifti"
    lines = ["### Phase 2: intensity statistics of the filtered CT phantom", ""]
    if not folder.is_dir():
        return lines + ["IBSI CT phantom absent: not run."], False
    image = read(folder / "image" / "phantom.nii.gz")
    mask = read(folder / "mask" / "mask.nii.gz")
    refs: dict[str, list[tuple[str, str, str]]] = {}
    with open(HERE / "data" / "ibsi2_phase2_reference_values.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            refs.setdefault(row["filter_id"].replace(".", "").lower(), []).append(
                (row["feature"], row["consensus_value"], row["tolerance"]))
    lines += ["| filter id | image | matched | with a consensus | time (s) | mismatches (medimg vs ref ± tol) |",
              "|---|---|---:|---:|---:|---|"]
    all_ok, full = True, 0
    todo = [fid for fid in PHASE2 if not ids or fid in ids]
    for fid in todo:
        from medimg.features.ibsi2 import image_label

        t0 = time.perf_counter()
        values = extract(image, mask, config=f"ibsi2-ph2-{fid}")
        seconds = time.perf_counter() - t0
        label = image_label(*PHASE2[fid])
        prefix = "" if label == "original" else label + "."
        matched, total, miss = 0, 0, []
        for feature, value, tol in refs[fid]:
            if value == "":
                continue
            total += 1
            got = values[prefix + feature]
            if abs(_round3(got) - float(value)) <= float(tol) + 1e-12 * abs(float(value)):
                matched += 1
            else:
                miss.append(f"{feature.split('.')[1]} {got:.4g} vs {value} ± {tol}")
        full += matched == total
        all_ok &= matched == total
        lines.append(f"| {fid} | {label} | {matched} | {total} | {seconds:.1f} | {'; '.join(miss)} |")
        print(f"phase 2 {fid}: {matched}/{total} in {seconds:.1f} s {'; '.join(miss)}", flush=True)
    lines.insert(2, f"**{full} / {len(todo)} filter ids match on every feature.**\n")
    return lines, all_ok


def main(argv: list[str]) -> int:
    root = reference_data()
    head = ["## IBSI chapter 2 (convolutional filters)", ""]
    if root is None:
        write_section("ibsi2", "\n".join(head + ["Reference data absent: not run."]))
        print("reference data absent: skipped")
        return 0
    parts = [a for a in argv if a in ("phase1", "phase2")] or ["phase1", "phase2"]
    ids = [a.lower().replace(".", "") for a in argv if a not in ("phase1", "phase2")]
    body, ok = list(head), True
    head.append(__doc__.split("\n\n")[1].replace("\n", " ") + "\n")
    body = list(head)
    if "phase1" in parts:
        lines, good = phase1(root, ids)
        body += lines + [""]
        ok &= good
    if "phase2" in parts:
        lines, good = phase2(root, ids)
        body += lines + [""]
        ok &= good
    if not ids:
        write_section("ibsi2", "\n".join(body))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
