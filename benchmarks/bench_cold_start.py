"""Cold start: the fixed cost of every `medimg` command, and `medimg features` vs PyRadiomics's CLI.

Every time here is a whole fresh process (interpreter, imports, set-up, the work, files out),
the way a shell loop over cases runs it. Fixed cost of a command = `medimg CMD --help` (the
interpreter, the CLI, building that command; no work). `medimg features` and PyRadiomics's
`pyradiomics` CLI run on two data shapes (the ratio depends on the region's size): brain1
(PyRadiomics's test MR, a 4,137-voxel tumour label, NRRD) and the IBSI CT phantom (125,256-voxel
ROI, NIfTI), CSV out, in two comparisons: the same computation (`medimg features --preset
pyradiomics`: PyRadiomics's default extraction, 107 values with its names; the largest relative
difference to PyRadiomics's CSV is shown) and each tool's default settings (medimg's default IBSI
families, 215 values, against PyRadiomics's default original-image classes). medimg runs from
this checkout's sources (PYTHONPATH=src), their bytecode compiled first (``compileall``, as ``pip
install`` does; PyRadiomics runs from site-packages with its bytecode): where
PYTHONDONTWRITEBYTECODE is set, as on the development machine, every run would otherwise compile
medimg's modules again (~0.1 s). Medians of 5 (features: 7) runs interleaved between the
processes after a warm-up round, wall and CPU time (user + system of the process: less disturbed
by a loaded machine); threads pinned to 1 for every process (``pin_threads``); the load average
recorded before and after. `python -X importtime` shows where the remaining start-up goes. The
in-process counterpart (files read inside a call, no process start) is the PyRadiomics-mode
section (`bench_pyradiomics`). ``BENCH_REPEATS=1`` for a quick smoke test.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import (
    ROOT,
    bench_repeats,
    comparison,
    load_average,
    medians,
    pin_threads,
    protocol,
    run_process,
    write_section,
)

REPEATS = bench_repeats(5)
E2E_REPEATS = bench_repeats(7)


def wall_and_cpu(funcs: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU time (s; user + system of the child processes) of each function over
    ``repeats`` interleaved rounds after one warm-up round."""
    for func in funcs.values():
        func()
    wall: dict[str, list[float]] = {name: [] for name in funcs}
    cpu: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(repeats):
        for name, func in funcs.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            func()
            wall[name].append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in funcs}


def reference_data() -> Path | None:
    env = os.environ.get("MEDIMG_REFERENCE_DATA")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data", Path("/work/shared/data")]:
        if (candidate / "mri-brain1" / "brain1_image.nrrd").exists():
            return candidate
    return None


def cases(data: Path) -> dict[str, tuple[Path, Path]]:
    """The two data shapes of the end-to-end comparison: image and mask files."""
    ct = data / "ibsi1-ct-phantom" / "nifti"
    out = {"brain1 (MRI, 4,137-voxel ROI, NRRD)": (data / "mri-brain1" / "brain1_image.nrrd",
                                                    data / "mri-brain1" / "brain1_label.nrrd")}
    if (ct / "image" / "phantom.nii.gz").exists():
        out["IBSI CT phantom (125,256-voxel ROI, NIfTI)"] = (ct / "image" / "phantom.nii.gz", ct / "mask" / "mask.nii.gz")
    return out


def largest_relative_difference(ours: Path, theirs: Path) -> tuple[float, int]:
    """Largest relative difference between the ``original_*`` values of medimg's PyRadiomics-mode
    CSV and PyRadiomics's CSV, and how many values were compared."""
    import csv

    with open(ours, newline="") as f:
        a = next(csv.DictReader(f))
    with open(theirs, newline="") as f:
        b = next(csv.DictReader(f))
    worst, n = 0.0, 0
    for key, value in b.items():
        if key.startswith("original_") and key in a:
            x, y = float(a[key]), float(value)
            worst = max(worst, abs(x - y) / max(abs(y), 1e-12))
            n += 1
    return worst, n


def medimg_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", "from medimg.cli.main import run; run()", *args]


def importtime(args: list[str], env: dict[str, str], top: int = 8) -> list[tuple[str, float]]:
    """The ``top`` top-level imports (cumulative ms) of a run, from ``python -X importtime``."""
    code = f"import sys; from medimg.cli.main import main; main({args!r})"
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True,
                         text=True, check=False).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _self, cum, name = line.removeprefix("import time:").split("|")
        if name.startswith(" ") and not name.startswith("  "):  # top level: one leading space
            try:
                rows.append((name.strip(), int(cum) / 1000.0))
            except ValueError:
                continue
    return sorted(rows, key=lambda r: -r[1])[:top]


def work_time(env: dict[str, str], data: Path) -> float:
    """Seconds to read brain1 and extract its default features in a process that has already
    imported what that needs (the part of a cold run that is not start-up); median of 5."""
    img, mask = data / "mri-brain1" / "brain1_image.nrrd", data / "mri-brain1" / "brain1_label.nrrd"
    code = ("import statistics, time; from medimg.io import read; from medimg.features import extract; "
            f"extract(read({str(img)!r}), read({str(mask)!r})); ts = []\n"
            "for _ in range(5):\n"
            f"    t = time.perf_counter(); extract(read({str(img)!r}), read({str(mask)!r})); "
            "ts.append(time.perf_counter() - t)\n"
            "print(statistics.median(ts))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    threads = pin_threads()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "medimg")], check=True)
    sys.path.insert(0, str(ROOT / "src"))
    from medimg.cli.main import _command_name, app

    names = [_command_name(c) for c in app.registered_commands] + [g.name for g in app.registered_groups]
    calls = {"python -c pass (interpreter only)": run_process([sys.executable, "-c", "pass"], env=env),
             "medimg --version": run_process(medimg_argv("--version"), env=env),
             "medimg --help": run_process(medimg_argv("--help"), env=env)}
    for name in names:
        calls[f"medimg {name} --help"] = run_process(medimg_argv(name, "--help"), env=env)
    load_before = load_average()
    fixed = medians(calls, repeats=REPEATS)
    worst = max((v, k) for k, v in fixed.items() if k.startswith("medimg"))

    data = reference_data()
    e2e: dict[str, dict[str, tuple[float, float]]] = {}
    agreement: dict[str, tuple[float, int]] = {}
    pyrad = shutil.which("pyradiomics") or str(Path(sys.executable).parent / "pyradiomics")
    notes_e2e = ""
    with tempfile.TemporaryDirectory() as tmp:
        if data is not None and Path(pyrad).exists():
            for k, (case, (img, mask)) in enumerate(cases(data).items()):
                ours = run_process(medimg_argv("features", str(img), str(mask), "-o", f"{tmp}/m{k}.csv",
                                               "--overwrite"), env=env)
                ours_pr = run_process(medimg_argv("features", str(img), str(mask), "-o", f"{tmp}/mp{k}.csv",
                                                  "--preset", "pyradiomics", "--overwrite"), env=env)
                theirs = run_process([pyrad, str(img), str(mask), "-o", f"{tmp}/p{k}.csv", "-f", "csv"], env=env)

                def theirs_fresh(theirs=theirs, k=k) -> None:
                    Path(f"{tmp}/p{k}.csv").unlink(missing_ok=True)  # PyRadiomics appends to an existing file
                    theirs()

                e2e[case] = wall_and_cpu({"medimg features --preset pyradiomics": ours_pr,
                                          "pyradiomics CLI (default settings)": theirs_fresh,
                                          "medimg features (default settings)": ours}, repeats=E2E_REPEATS)
                agreement[case] = largest_relative_difference(Path(f"{tmp}/mp{k}.csv"), Path(f"{tmp}/p{k}.csv"))
        else:
            notes_e2e = "brain1 or the `pyradiomics` command not found: the end-to-end comparison was skipped."
    load_after = load_average()
    work = work_time(env, data) if data is not None else None
    imp_help = importtime(["features", "--help"], env)
    imp_feat = []
    if data is not None:
        with tempfile.TemporaryDirectory() as tmp:
            imp_feat = importtime(["features", str(data / "mri-brain1" / "brain1_image.nrrd"),
                                   str(data / "mri-brain1" / "brain1_label.nrrd"), "-o", f"{tmp}/m.csv"], env)

    lines = ["## Cold start (whole processes)", "",
             protocol(threads, load_before, load_after,
                      f"medians of {REPEATS} (features: {E2E_REPEATS}) runs interleaved between the processes after a "
                      "warm-up round; every time is a fresh process (end to end)"),
             "Fixed cost of a command = `medimg CMD --help`: interpreter, imports, building that command, no work.",
             "", "| process | median (s) |", "|---|---:|"]
    lines += [f"| `{k}` | {v:.3f} |" for k, v in fixed.items()]
    lines += ["", f"Largest fixed cost of a medimg command: {worst[0]:.3f} s (`{worst[1]}`); "
              f"target 0.25 s: {'met' if worst[0] <= 0.25 else 'NOT met'} on this run.", ""]
    if e2e:
        lines += ["### `medimg features` vs PyRadiomics's CLI, fresh process each", "",
                  comparison("per-row", "the same computation (`medimg features --preset pyradiomics`: PyRadiomics's "
                             "default extraction, Original image, bin width 25, 107 values under PyRadiomics's names; "
                             "largest relative difference to PyRadiomics's values in the last column) and each tool's "
                             "default settings (`medimg features` without options: the IBSI preset, 215 values, its "
                             "own discretisation; not the same computation); every process reads the same image and "
                             "mask files and writes a CSV (end to end). The in-process counterpart is the "
                             "PyRadiomics-mode section"),
                  "", f"Wall and CPU (user + system) time of the whole process, medians of {E2E_REPEATS} runs "
                  "interleaved between the three processes of a case after a warm-up round.", "",
                  "| case | process | computation | wall median (s) | CPU median (s) | PyRadiomics / medimg (wall) | "
                  "PyRadiomics / medimg (CPU) | largest relative difference |",
                  "|---|---|---|---:|---:|---:|---:|---:|"]
        for case, res in e2e.items():
            p_t, p_c = res["pyradiomics CLI (default settings)"]
            for name, (t, c) in res.items():
                same = "--preset" in name or name.startswith("pyradiomics")
                what = ("the reference: its default" if name.startswith("pyradiomics") else
                        "same (PyRadiomics default)" if same else "each its default")
                ratio = "" if name.startswith("pyradiomics") else f"{p_t / t:.2f}x | {p_c / c:.2f}x"
                ratio = ratio or " | "
                diff = (f"{agreement[case][0]:.1e} ({agreement[case][1]} values)" if "--preset" in name else "")
                lines.append(f"| {case} | {name} | {what} | {t:.3f} | {c:.3f} | {ratio} | {diff} |")
        lines += [""]
    elif notes_e2e:
        lines += [notes_e2e, ""]
    lines += ["### Where the start-up goes (`python -X importtime`, top-level imports, cumulative ms)", ""]
    lines += ["`medimg features --help`: " + ", ".join(f"{n} {ms:.0f}" for n, ms in imp_help)]
    if imp_feat:
        lines += ["", "`medimg features` on brain1: " + ", ".join(f"{n} {ms:.0f}" for n, ms in imp_feat)]
    lines += ["", "A run builds only the command it names (typer builds a pydantic adapter for every "
              "parameter of every command an app holds); NumPy, SciPy, pandas, SimpleITK, pydicom load only "
              "inside the commands that use them (docs/development.md). A features run on brain1 imports no SciPy "
              "and no scikit-image (convex hulls, zone labels, border distances and Moran's I FFTs in NumPy, "
              "identical values: `medimg.core.hull`, `medimg.core.components`; large regions still use Qhull "
              "and scikit-image's labelling, faster there than their import), no pandas (CSV), no DICOM "
              "reader for NRRD/NIfTI input and no filter module without filters "
              "(tests/test_cold_start.py checks the modules a run loads). What remains: NumPy, "
              "typer/pydantic (the CLI), medimg's own modules and the work itself"
              + (f" (reading brain1 and its features, once everything is imported: {work:.3f} s)." if work else ".")]
    md = "\n".join(lines)
    write_section("cold-start", md)
    print(md)


if __name__ == "__main__":
    main()
