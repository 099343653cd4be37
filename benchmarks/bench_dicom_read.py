"""Reading DICOM series into volumes: medimg vs SimpleITK, dcm2niix and a plain pydicom loop.

Data: 20 synthetic CT series x 100 slices of 256 x 256 int16 (2,000 files, Explicit VR Little
Endian), written once by medimg's writer into .bench/ and reused. Each tool turns every series
into a 3-D volume; times are the median of 5 interleaved runs after one warm-up (files in the page cache),
threads pinned to 1 in every tool.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from _common import CACHE, cold, load_average, machine, medians, pin_threads, write_section

N_SERIES, N_SLICES, SIZE = 20, 100, 256
DATA = CACHE / "dicom-2000"


def make_data() -> Path:
    from medimg import Image
    from medimg.io.dicom.writer import write_series

    done = DATA / ".complete"
    if done.exists():
        return DATA
    shutil.rmtree(DATA, ignore_errors=True)
    rng = np.random.default_rng(0)
    for s in range(N_SERIES):
        hu = rng.integers(-1000, 2000, size=(N_SLICES, SIZE, SIZE)).astype(np.float32)
        image = Image.from_geometry(hu, spacing=(0.7, 0.7, 1.5), origin=(-90.0, -90.0, 10.0 * s))
        write_series(image, DATA / f"series{s:02d}", seed=s, shuffle_seed=s)
    done.write_text("ok\n")
    return DATA


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


def main() -> None:
    threads = pin_threads()
    root = make_data()
    n_files = N_SERIES * N_SLICES
    images = run_medimg(root)
    assert len(images) == N_SERIES and all(im.spatial_shape == (N_SLICES, SIZE, SIZE) for im in images)
    tools = [("medimg (`medimg.io.dicom.scan` + `read_series`)", lambda: run_medimg(root), 3)]
    if shutil.which("dcm2niix"):
        tools.append(("dcm2niix (uncompressed NIfTI out, `-z n`)", lambda: run_dcm2niix(root), 3))
    tools.append(("SimpleITK `ImageSeriesReader` (GDCM)", lambda: run_sitk(root), 3))
    tools.append(("plain pydicom loop (`dcmread` + `pixel_array`, sort, stack)", lambda: run_pydicom(root), 1))
    load_before = load_average()
    warm = medians({name: func for name, func, _rep in tools}, repeats=5)
    rows = [(name, warm[name], cold(func)) for name, func, _rep in tools]
    load_after = load_average()
    medimg_rate = n_files / rows[0][1]
    medimg_cold = n_files / rows[0][2] if rows[0][2] else None
    lines = [
        "## Reading DICOM series into volumes",
        "",
        f"Machine: {machine()}; {threads}; {load_before} before, {load_after} after. Data: {N_SERIES} synthetic CT series x {N_SLICES} slices of "
        f"{SIZE}x{SIZE} int16 ({n_files} files, 256 MB, Explicit VR LE, file names shuffled). "
        "*Warm*: files in the page cache, median of 5 interleaved runs after a warm-up. Not the same "
        "computation for every tool: medimg, SimpleITK and pydicom read in this process (no output), "
        "dcm2niix is a whole process that also writes NIfTI files; the like-for-like end-to-end "
        "comparison (both converting to NIfTI as processes) is the DICOM-to-NIfTI section. "
        "*Cold*: page cache dropped before each run (`/proc/sys/vm/drop_caches`), median of 2 runs. "
        "One process each (medimg and pydicom single-threaded). `python benchmarks/run.py bench_dicom_read`.",
        "",
        "| tool | warm time (s) | warm files/s | medimg speed-up (warm) | cold time (s) | cold files/s | medimg speed-up (cold) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, seconds, cold_s in rows:
        rate = n_files / seconds
        cold_txt = (f"{cold_s:.3f} | {n_files / cold_s:,.0f} | {medimg_cold / (n_files / cold_s):.2f}x"
                    if cold_s and medimg_cold else "n/a | n/a | n/a")
        lines.append(f"| {name} | {seconds:.3f} | {rate:,.0f} | {medimg_rate / rate:.2f}x | {cold_txt} |")
    write_section("dicom_read", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
