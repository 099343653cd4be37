"""Reading DICOM series into volumes: medimg vs SimpleITK, dcm2niix and a plain pydicom loop.

Data, two shapes (the ratios depend on the files' size and on the slices per series): 20
synthetic CT series x 100 slices of 256 x 256 int16 (2,000 files, 256 MB, Explicit VR Little
Endian) and 200 series x 10 slices of 128 x 128 (2,000 smaller files, 64 MB: per-file and
per-series costs weigh more), written once by medimg's writer into .bench/ and reused. Each tool turns every series
into a 3-D volume. Warm: files in the page cache, medians of 5 runs interleaved between the tools
(A B C D, A B C D, ...) after one warm-up round. Cold: the page cache dropped before every run
(root only), medians of 5 runs interleaved between the tools the same way. Threads pinned to 1
in every tool (``pin_threads``), the load average recorded before and after.
`BENCH_REPEATS=1` for a quick smoke test.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from _common import (
    CACHE,
    bench_repeats,
    cold_medians,
    comparison,
    load_average,
    medians,
    pin_threads,
    protocol,
    write_section,
)

N_SERIES, N_SLICES, SIZE = 20, 100, 256
DATA = CACHE / "dicom-2000"
#: The second data shape: many short series of small slices.
SMALL = (200, 10, 128)
DATA_SMALL = CACHE / "dicom-200x10"


def make_data(folder: Path = DATA, n_series: int = N_SERIES, n_slices: int = N_SLICES, size: int = SIZE) -> Path:
    """The synthetic CT series (default: the 2,000-file corpus other benchmarks reuse)."""
    from medimg import Image
    from medimg.io.dicom.writer import write_series

    done = folder / ".complete"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(0)
    for s in range(n_series):
        hu = rng.integers(-1000, 2000, size=(n_slices, size, size)).astype(np.float32)
        image = Image.from_geometry(hu, spacing=(0.7, 0.7, 1.5), origin=(-90.0, -90.0, 10.0 * s))
        write_series(image, folder / f"series{s:03d}" if n_series > 100 else folder / f"series{s:02d}",
                     seed=s, shuffle_seed=s)
    done.write_text("ok\n")
    return folder


def run_medimg(root: Path) -> list:
    from medimg.io import dicom

    result = dicom.scan(root)
    return [dicom.read_series(s) for s in result.series]


def run_sitk(root: Path) -> list:
    import SimpleITK as sitk

    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
        out.append(sitk.GetArrayFromImage(reader.Execute()))
    return out


def run_pydicom(root: Path) -> list:
    import pydicom

    by_series: dict[str, list] = {}
    for path in sorted(root.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        by_series.setdefault(ds.SeriesInstanceUID, []).append(ds)
    out = []
    for slices in by_series.values():
        row, col = np.array(slices[0].ImageOrientationPatient[:3], float), np.array(slices[0].ImageOrientationPatient[3:], float)
        normal = np.cross(row, col)
        slices.sort(key=lambda d: float(np.array(d.ImagePositionPatient, float) @ normal))
        vol = np.stack([d.pixel_array for d in slices]).astype(np.int16)
        out.append(vol * int(slices[0].RescaleSlope) + int(slices[0].RescaleIntercept))
    return out


def run_dcm2niix(root: Path) -> None:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "%s_%j", "-o", out, str(root)],
                       check=True, capture_output=True)


def measure(root: Path, n_series: int, n_slices: int, size: int, n: int) -> tuple[dict, dict | None]:
    """Warm and cold medians of every tool on one corpus."""
    images = run_medimg(root)
    assert len(images) == n_series and all(im.spatial_shape == (n_slices, size, size) for im in images)
    tools = {"medimg (`medimg.io.dicom.scan` + `read_series`)": lambda: run_medimg(root)}
    if shutil.which("dcm2niix"):
        tools["dcm2niix (uncompressed NIfTI out, `-z n`)"] = lambda: run_dcm2niix(root)
    tools["SimpleITK `ImageSeriesReader` (GDCM)"] = lambda: run_sitk(root)
    tools["plain pydicom loop (`dcmread` + `pixel_array`, sort, stack)"] = lambda: run_pydicom(root)
    return medians(tools, repeats=n), cold_medians(tools, repeats=n)


def main() -> None:
    threads = pin_threads()
    corpora = [(f"{N_SERIES} series x {N_SLICES} slices of {SIZE}x{SIZE} (256 MB)", make_data(),
                N_SERIES, N_SLICES, SIZE),
               (f"{SMALL[0]} series x {SMALL[1]} slices of {SMALL[2]}x{SMALL[2]} (64 MB)",
                make_data(DATA_SMALL, *SMALL), *SMALL)]
    n = bench_repeats()
    load_before = load_average()
    results = [(label, ns * nz, *measure(root, ns, nz, size, n)) for label, root, ns, nz, size in corpora]
    load_after = load_average()
    any_cold = all(cold for _l, _f, _w, cold in results)
    cold_note = (f"*Cold*: page cache dropped before every run (`/proc/sys/vm/drop_caches`), medians of {n} runs "
                 "interleaved between the tools (no warm-up)." if any_cold else
                 "*Cold*: not measured (dropping the page cache needs root).")
    lines = [
        "## Reading DICOM series into volumes",
        "",
        protocol(threads, load_before, load_after, f"warm: medians of {n} runs interleaved between the tools after "
                 "a warm-up round; cold: see below"),
        "Data, two shapes (the ratios depend on the files' size and the slices per series): synthetic CT series of "
        "int16 slices, 2,000 files each, Explicit VR LE, file names shuffled. "
        f"*Warm*: files in the page cache. {cold_note} "
        "One process each (medimg and pydicom single-threaded). `python benchmarks/run.py bench_dicom_read`.",
        "",
        comparison("different", "medimg, SimpleITK and pydicom read every series into an array in this process "
                   "(in process, files in, no output); dcm2niix is a whole process (end to end) that also writes NIfTI "
                   "files. The same computation end to end (both converting to NIfTI as whole processes, files in "
                   "and out) is the DICOM-to-NIfTI section (`bench_convert`)"),
        "",
        "| data | tool | time is | warm time (s) | warm files/s | medimg speed-up (warm) | cold time (s) | cold files/s "
        "| medimg speed-up (cold) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, n_files, warm, cold in results:
        first = next(iter(warm))
        medimg_rate = n_files / warm[first]
        medimg_cold = n_files / cold[first] if cold else None
        for name, seconds in warm.items():
            cold_s = (cold or {}).get(name)
            rate = n_files / seconds
            kind = "end to end (process, NIfTI out)" if name.startswith("dcm2niix") else "in process (read only)"
            cold_txt = (f"{cold_s:.3f} | {n_files / cold_s:,.0f} | {medimg_cold / (n_files / cold_s):.2f}x"
                        if cold_s and medimg_cold else "n/a | n/a | n/a")
            lines.append(f"| {label} | {name} | {kind} | {seconds:.3f} | {rate:,.0f} | {medimg_rate / rate:.2f}x "
                         f"| {cold_txt} |")
    write_section("dicom_read", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
