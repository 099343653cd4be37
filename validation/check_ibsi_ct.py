"""IBSI chapter 1 CT phantom: configurations A to E against the IBSI reference values.

Reads the phantom (NIfTI image and mask) from the reference data (CC BY-NC: used here only, never
copied into the repository), extracts every feature with the presets ``ibsi-ct-a``/``-b``/``-c``
(and ``-d``/``-e``: their tables are in ``validation/data``, see its README) and counts the
reference values matched by the IBSI rule (rounded to 3 significant digits, within
the tolerance). Diagnostic rows of the reference tables (image sizes, voxel counts) have no IBSI
feature code and are not counted.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from _common import reference_data, write_section

HERE = Path(__file__).resolve().parent


def main() -> int:
    from medimg.features import extract
    from medimg.features.compliance import compare_with_reference, long_rows
    from medimg.io import read

    root = reference_data()
    folder = root / "ibsi1-ct-phantom" if root else None
    if folder is None or not folder.is_dir():
        write_section("ibsi_ct", "## IBSI CT phantom (configurations A-E)\n\nReference data absent: not run.")
        print("IBSI CT phantom data absent: skipped")
        return 0
    image = read(folder / "nifti" / "image" / "phantom.nii.gz")
    mask = read(folder / "nifti" / "mask" / "mask.nii.gz")
    lines = [
        "## IBSI CT phantom (configurations A-E)",
        "",
        "`medimg.features.extract(image, mask, config='ibsi-ct-X')` on the IBSI CT radiomics phantom "
        "(NIfTI image and mask); a value matches when, rounded to 3 significant digits, it is within the "
        "IBSI tolerance of the reference.",
        "",
        "| configuration | matched | reference values | time (s) |",
        "|---|---:|---:|---:|",
    ]
    failed = False
    details = []
    tables = {c: folder / f"reference_values_config_{c}.csv" for c in "ABC"}
    tables.update({c: HERE / "data" / f"ibsi1_ct_reference_values_config_{c}.csv" for c in "DE"})
    for config, table in tables.items():
        t0 = time.perf_counter()
        values = extract(image, mask, config=f"ibsi-ct-{config.lower()}")
        seconds = time.perf_counter() - t0
        report = compare_with_reference(long_rows(values), table)
        lines.append(f"| {config} | {report.matched} | {report.total} | {seconds:.2f} |")
        print(f"config {config}: {report.matched}/{report.total} in {seconds:.2f} s")
        for fam, name, agg, ref, tol, got in report.mismatches:
            details.append(f"| {config} | {fam} | {name} | {agg} | {ref} ± {tol} | {got} |")
        failed |= not report.all_matched
    if details:
        lines += ["", "Mismatches:", "", "| config | family | feature | aggregation | reference | medimg |",
                  "|---|---|---|---|---|---|", *details]
    write_section("ibsi_ct", "\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
