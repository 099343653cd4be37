"""DICOM reading against outside references.

1. The full DICOM corpus (157 files, 16 transfer syntaxes): every file that pydicom 3.0.2 with
   its pixel plugins decoded (reference table) must decode in medimg to the same pixels
   (shape, dtype, sum from the table; and element by element against pydicom run here);
   every other file must raise a medimg UserInputError that names the file.
2. The IBSI CT phantom series vs the NIfTI that dcm2niix v1.0.20220720 made of it (shipped
   beside the data): same voxels and geometry after reorienting both to LPS. When dcm2niix is
   installed here, the series is also converted afresh and compared.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from _common import reference_data, write_section


def check_corpus(root: Path) -> tuple[list[str], bool]:
    import pydicom

    from medimg import io
    from medimg.errors import UserInputError
    from medimg.io.dicom import decode_pixels

    corpus = root / "dicom-corpus"
    rows = list(csv.DictReader(open(corpus / "decode_coverage_reference.csv")))
    n_ref = sum(r["pydicom_auto"] == "yes" for r in rows)
    same = clear_errors = 0
    better: list[str] = []
    problems: list[str] = []
    for row in rows:
        path = corpus / ("pydicom-data" if row["source"] == "pydicom-data" else "pydicom-bundled") / row["file"]
        try:
            pixels = decode_pixels(path)
            io.read(path)
        except UserInputError as err:
            if row["pydicom_auto"] == "yes":
                problems.append(f"{row['file']}: pydicom decodes it, medimg raised {err}")
            elif row["file"] in str(err):
                clear_errors += 1
            else:
                problems.append(f"{row['file']}: error does not name the file: {err}")
            continue
        if row["pydicom_auto"] != "yes":
            better.append(row["file"])  # medimg decodes a file that pydicom alone does not
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = pydicom.dcmread(path, force=True).pixel_array
        if pixels.reshape(ref.shape).tobytes() == np.ascontiguousarray(ref.astype(pixels.dtype)).tobytes() and \
                np.isclose(float(pixels.astype(float).sum()), float(row["pydicom_sum"])):
            same += 1
        else:
            problems.append(f"{row['file']}: pixels differ from pydicom")
    ok = same == n_ref and not problems
    lines = [
        "## DICOM decoding: the 157-file corpus",
        "",
        f"Files: {len(rows)} in {len({r['ts_name'] for r in rows})} transfer syntaxes "
        "(`shared/data/dicom-corpus`, reference table `decode_coverage_reference.csv`: pydicom 3.0.2 "
        "with pylibjpeg, GDCM, Pillow, pyjpegls).",
        "",
        "| result | files |",
        "|---|---:|",
        f"| decoded by the reference, and by medimg to identical pixels | {same} of {n_ref} |",
        f"| not decoded by the reference, decoded by medimg | {len(better)} {'(' + ', '.join(better) + ')' if better else ''} |",
        f"| not decoded by either: medimg raises a clear error naming the file | {clear_errors} |",
        f"| problems | {len(problems)} |",
    ]
    if better:
        lines += ["", "medimg reads a File Meta Information without Transfer Syntax UID by using the "
                  "encoding the data set was parsed with, where pydicom stops."]
    lines += [f"- {p}" for p in problems]
    return lines, ok


def _compare(got, ref) -> tuple[bool, float, float]:
    from medimg.core.orient import reorient

    a, b = reorient(got, "LPS"), reorient(ref, "LPS")
    if a.spatial_shape != b.spatial_shape:
        return False, float("inf"), float("inf")
    max_value = float(np.max(np.abs(a.array.astype(np.float64) - b.array.astype(np.float64))))
    max_affine = float(np.max(np.abs(a.affine - b.affine)))
    return max_value == 0.0 and max_affine < 1e-3, max_value, max_affine


def check_dcm2niix(root: Path) -> tuple[list[str], bool]:
    from medimg import io

    phantom = root / "ibsi1-ct-phantom"
    series = phantom / "dicom" / "image"
    got = io.read(series)
    lines = [
        "## DICOM series to volume vs dcm2niix: the IBSI CT phantom",
        "",
        f"Series: `ibsi1-ct-phantom/dicom/image` ({got.meta.get('n_files')} files). medimg: size {got.size}, "
        f"spacing {tuple(round(s, 4) for s in got.spacing)} mm, orientation {got.orientation}, dtype {got.dtype}.",
        "",
        "| reference | same shape and voxels | max voxel difference | max affine difference (mm) |",
        "|---|---|---:|---:|",
    ]
    ok = True
    (shipped,) = sorted((phantom / "dcm2niix").glob("*.nii.gz"))
    same, dv, da = _compare(got, io.read(shipped))
    ok &= same
    lines.append(f"| dcm2niix v1.0.20220720 output shipped with the data | {'yes' if same else 'NO'} | {dv:g} | {da:.2e} |")
    if shutil.which("dcm2niix"):
        version = subprocess.run(["dcm2niix", "-v"], capture_output=True, text=True).stdout.strip().splitlines()
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "vol", "-o", tmp, str(series)],
                           check=True, capture_output=True)
            (fresh,) = sorted(Path(tmp).glob("*.nii"))
            same, dv, da = _compare(got, io.read(fresh))
        ok &= same
        lines.append(f"| dcm2niix run here ({version[-1] if version else '?'}) | {'yes' if same else 'NO'} | {dv:g} | {da:.2e} |")
    else:
        lines.append("| dcm2niix run here | not installed | | |")
    return lines, ok


def main() -> None:
    root = reference_data()
    if root is None:
        write_section("dicom", "## DICOM\n\nReference data not found (set MEDIMG_REFERENCE_DATA); nothing checked.")
        print("reference data absent: DICOM checks skipped")
        return
    corpus_lines, ok1 = check_corpus(root)
    d2n_lines, ok2 = check_dcm2niix(root)
    body = "\n".join(corpus_lines + [""] + d2n_lines)
    write_section("dicom", body)
    print(body)
    if not (ok1 and ok2):
        sys.exit(1)


if __name__ == "__main__":
    main()
