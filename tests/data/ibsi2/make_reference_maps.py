"""Regenerate ``reference_maps.npz``: MIRP's response maps of the IBSI chapter 2 phase 1
configurations that the tests check, sampled at every third voxel (``[1::3, 1::3, 1::3]``),
with the full map's range (``range_<id>``: the IBSI tolerance is 1 % of it).

Run from the repository root with MIRP installed (``pip install mirp``, the ``bench`` extra) and
the IBSI chapter 2 digital phantoms in ``$MEDIMG_REFERENCE_DATA/ibsi2-digital-phantom``:
``python tests/data/ibsi2/make_reference_maps.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "validation"))

IDS = ("2a", "3a1", "3c1", "3c2", "4a1", "5a1", "6a1", "6a2", "7a1", "7a2", "8a1", "8a2", "8a3")


def main() -> None:
    from _ibsi2_mirp import mirp_response

    from _common import reference_data
    from medimg.features.ibsi2 import PHASE1

    root = reference_data()
    assert root is not None, "reference data absent"
    out: dict[str, np.ndarray] = {}
    for cid in IDS:
        c = PHASE1[cid]
        folder = root / "ibsi2-digital-phantom" / c.phantom
        ref, _ = mirp_response(folder / "image" / f"{c.phantom}.nii.gz", folder / "mask" / "mask.nii.gz",
                               c.filter, c.params)
        out[cid] = ref[1::3, 1::3, 1::3].astype(np.float32)
        out[f"range_{cid}"] = np.float64(np.ptp(ref))
        print(cid, ref.shape, float(np.ptp(ref)))
    np.savez_compressed(HERE / "reference_maps.npz", **out)


if __name__ == "__main__":
    main()
