"""Cold start: the fixed cost of every `medimg` command, and `medimg features` vs PyRadiomics's CLI.

Every time here is a whole fresh process (interpreter, imports, set-up, the work, files out),
the way a shell loop over cases runs it. Fixed cost of a command = `medimg CMD --help` (the
interpreter, the CLI, building that command; no work). `medimg features` and PyRadiomics's
`pyradiomics` CLI run on brain1 (PyRadiomics's test MR and tumour label) with each tool's
default settings (they compute different feature sets: medimg's default IBSI families, 215
values; PyRadiomics's default original-image classes), CSV out. medimg runs from this
checkout's sources (PYTHONPATH=src). Medians of 5 interleaved runs after a warm-up; threads
pinned to 1 for every process. `python -X importtime` shows where the remaining start-up goes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, load_average, machine, medians, pin_threads, run_process, write_section

REPEATS = 5


def reference_data() -> Path | None:
    env = os.environ.get("MEDIMG_REFERENCE_DATA")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data", Path("/work/shared/data")]:
        if (candidate / "mri-brain1" / "brain1_image.nrrd").exists():
            return candidate
    return None


def medimg_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from medimg.cli.main import main; sys.exit(main())", *args]


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


def main() -> None:
    threads = pin_threads()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
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
    e2e: dict[str, float] = {}
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

            e2e = medians({"medimg features (default settings)": ours,
                           "pyradiomics CLI (default settings)": theirs_fresh}, repeats=REPEATS)
        else:
            notes_e2e = "brain1 or the `pyradiomics` command not found: the end-to-end comparison was skipped."
    load_after = load_average()
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
        (m_name, m_t), (p_name, p_t) = list(e2e.items())
        lines += ["### `medimg features` vs PyRadiomics's CLI on brain1, fresh process each",
                  "", "Each tool with its default settings (different feature sets: medimg 215 IBSI values, "
                  "PyRadiomics its default original-image classes); image and mask read from NRRD, CSV written.", "",
                  "| process | median (s) |", "|---|---:|", f"| {m_name} | {m_t:.3f} |", f"| {p_name} | {p_t:.3f} |", "",
                  f"medimg / PyRadiomics time: **{m_t / p_t:.2f}** ({'medimg faster' if m_t < p_t else 'PyRadiomics faster'}).", ""]
    elif notes_e2e:
        lines += [notes_e2e, ""]
    lines += ["### Where the start-up goes (`python -X importtime`, top-level imports, cumulative ms)", ""]
    lines += ["`medimg features --help`: " + ", ".join(f"{n} {ms:.0f}" for n, ms in imp_help)]
    if imp_feat:
        lines += ["", "`medimg features` on brain1: " + ", ".join(f"{n} {ms:.0f}" for n, ms in imp_feat)]
    lines += ["", "A run builds only the command it names (typer builds a pydantic adapter for every "
              "parameter of every command an app holds); NumPy, SciPy, pandas, SimpleITK, pydicom load only "
              "inside the commands that use them (docs/development.md). What remains in a features run is "
              "SciPy (ndimage; spatial for the convex hull), scikit-image's marching cubes and typer/pydantic."]
    md = "\n".join(lines)
    write_section("cold-start", md)
    print(md)


if __name__ == "__main__":
    main()
