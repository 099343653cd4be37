"""RTSTRUCT rasterisation against the IBSI CT phantom's own NIfTI mask.

The IBSI chapter 1 CT phantom ships a CT series, an RTSTRUCT with the GTV contours and the same
ROI as a NIfTI mask (CC BY-NC: read from the reference data here, never copied into the
repository). medimg reads the series, rasterises the RTSTRUCT on its grid
(`medimg.io.dicom.rtstruct.read_rtstruct`, centre-in-polygon) and compares voxel by voxel with the
NIfTI mask. It also writes the result as a DICOM SEG referencing the series and reads it back.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from _common import reference_data, write_section

TITLE = "## RTSTRUCT rasterisation and DICOM SEG round trip (IBSI CT phantom)"


def main() -> int:
    import numpy as np

    from medimg.evaluation import dice
    from medimg.io import read
    from medimg.io.dicom.rtstruct import read_rtstruct

    root = reference_data()
    folder = root / "ibsi1-ct-phantom" if root else None
    if folder is None or not folder.is_dir():
        write_section("rtstruct", f"{TITLE}\n\nReference data absent: not run.")
        print("IBSI CT phantom data absent: skipped")
        return 0
    ct = read(folder / "dicom" / "image")
    rtstruct = next((folder / "dicom" / "mask").glob("*.dcm"))
    t0 = time.perf_counter()
    label = read_rtstruct(rtstruct, ct)
    seconds = time.perf_counter() - t0
    mask = read(folder / "nifti" / "mask" / "mask.nii.gz")
    same_grid = mask.same_grid(ct, tol_mm=1e-2)
    reference = ct.with_array((mask.array != 0).astype(np.uint8), meta={}) if same_grid else mask
    disagree = int(np.count_nonzero((label.array != 0) != (reference.array != 0))) if same_grid else -1
    d = dice(label, reference) if same_grid else float("nan")

    seg_exact = "not run (highdicom missing)"
    try:
        from medimg.io.dicom.seg import read_seg, write_seg

        with tempfile.TemporaryDirectory() as tmp:
            out = write_seg(label, folder / "dicom" / "image", Path(tmp) / "seg.dcm", segment_names={1: "GTV-1"})
            back = read_seg(out, reference=ct)
            seg_exact = "exact" if np.array_equal(back.array, label.array) else "DIFFERS"
    except ImportError:
        pass
    roi = label.meta["rois"][0]
    body = "\n".join([
        TITLE,
        "",
        f"RTSTRUCT `{rtstruct.name}` ROI `{roi['name']}` ({roi['n_contours']} contours) rasterised on the CT grid "
        f"{ct.grid_summary()} in {seconds:.2f} s.",
        "",
        "| check | result |",
        "|---|---|",
        f"| NIfTI mask on the CT grid | {'yes' if same_grid else 'no'} |",
        f"| voxels in the rasterised ROI / in the NIfTI mask | {int(label.array.astype(bool).sum())} / "
        f"{int((mask.array != 0).sum())} |",
        f"| voxels that disagree | {disagree} |",
        f"| Dice | {d:.6f} |",
        f"| label map -> DICOM SEG -> label map | {seg_exact} |",
    ])
    write_section("rtstruct", body)
    print(body)
    return 0 if same_grid and disagree == 0 and seg_exact == "exact" else 1


if __name__ == "__main__":
    sys.exit(main())
