"""Cold start: the fixed cost of every `medimg` command, and `medimg features` vs PyRadiomics's CLI.

Every time here is a whole fresh process (interpreter, imports, set-up, the work, files out),
the way a shell loop over cases runs it. Fixed cost of a command = `medimg CMD --help` (the
interpreter, the CLI, building that command; no work). `medimg features` and PyRadiomics's
`pyradiomics` CLI run on brain1 (PyRadiomics's test MR and tumour label) with each tool's
default settings (they compute different feature sets: medimg's default IBSI families, 215
values; PyRadiomics's default original-image classes), CSV out. medimg runs from this
checkout's sources (PYTHONPATH=src), their bytecode compiled first (``compileall``, as ``pip
install`` does; PyRadiomics runs from site-packages with its bytecode): where
PYTHONDONTWRITEBYTECODE is set, as on the development machine, every run would otherwise compile
medimg's modules again (~0.1 s). Medians of 5 (features: 7) interleaved runs after a warm-up,
wall and CPU time (user + system of the process: less disturbed by a loaded machine); threads
pinned to 1 for every process. `python -X importtime` shows where the remaining start-up goes.
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

from _common import ROOT, load_average, machine, medians, pin_threads, run_process, write_section

REPEATS = 5
E2E_REPEATS = 7


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
    e2e: dict[str, tuple[float, float]] = {}
    pyrad = shutil.which("pyradiomics") or str(Path(sys.executable).parent / "pyradiomics")
    notes_e2e = ""
    with tempfile.TemporaryDirectory() as tmp:
        if data is not None and Path(pyrad).exists():
            img, mask = data / "mri-brain1" / "brain1_image.nrrd", data / "mri-brain1" / "brain1_label.nrrd"
            ours = run_process(medimg_argv("features", str(img), str(mask), "-o", f"{tmp}/m.csv", "--overwrite"), env=env)
            theirs = run_process([pyrad, str(img), str(mask), "-o", f"{tmp}/p.csv", "-f", "csv"], env=env)

            def theirs_fresh() -> None:
                Path(f"{tmp}/p.csv").unlink(missing_ok=True)  # PyRadiomics appends to an existing file
                theirs()

            e2e = wall_and_cpu({"medimg features (default settings)": ours,
                                "pyradiomics CLI (default settings)": theirs_fresh}, repeats=E2E_REPEATS)
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
             f"Machine: {machine()}; {threads}. {load_before} before, {load_after} after. "
             f"Medians of {REPEATS} interleaved runs after a warm-up; every time is a fresh process "
             "(end to end). Fixed cost of a command = `medimg CMD --help`: interpreter, imports, "
             "building that command, no work.", "",
             "| process | median (s) |", "|---|---:|"]
    lines += [f"| `{k}` | {v:.3f} |" for k, v in fixed.items()]
    lines += ["", f"Largest fixed cost of a medimg command: {worst[0]:.3f} s (`{worst[1]}`); "
              f"target 0.25 s: {'met' if worst[0] <= 0.25 else 'NOT met'} on this run.", ""]
    if e2e:
        (m_name, (m_t, m_c)), (p_name, (p_t, p_c)) = list(e2e.items())
        lines += ["### `medimg features` vs PyRadiomics's CLI on brain1, fresh process each",
                  "", "Each tool with its default settings (different feature sets: medimg 215 IBSI values, "
                  "PyRadiomics its default original-image classes); image and mask read from NRRD, CSV written. "
                  f"Medians of {E2E_REPEATS} interleaved runs.", "",
                  "| process | wall median (s) | CPU median (s) |", "|---|---:|---:|",
                  f"| {m_name} | {m_t:.3f} | {m_c:.3f} |", f"| {p_name} | {p_t:.3f} | {p_c:.3f} |", "",
                  f"medimg / PyRadiomics wall time: **{m_t / p_t:.2f}** "
                  f"({'medimg faster' if m_t < p_t else 'PyRadiomics faster'}); CPU time: **{m_c / p_c:.2f}**.", ""]
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
