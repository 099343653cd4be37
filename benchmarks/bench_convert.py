"""DICOM folder to NIfTI, end to end: `medimg convert DIR OUTDIR` vs `dcm2niix`, whole processes.

Data: the 20 synthetic CT series x 100 slices of 256 x 256 int16 of bench_dicom_read (2,000
files, Explicit VR Little Endian, random values: they compress poorly, the worst case for
gzip). Each tool converts the whole folder, one NIfTI per series plus its JSON sidecar (each
tool's default: dcm2niix's BIDS JSON, medimg's provenance sidecar with the SHA-256 of the
output and of each series' input files), into an empty folder; a fresh process per run
(start-up included), page cache warm. `.nii.gz`: medimg compresses at level 1 (ISA-L) and
dcm2niix at its default (`-z y`, level 6) and at level 1 (`-z y -1`, the same level).
Medians of 5 interleaved runs after a warm-up; threads pinned to 1 in every process; medimg
uses its default worker processes (one per CPU), dcm2niix one process, whose `-z y` hands the
compression to pigz (its own threads, one per CPU). medimg runs with its bytecode cached (as an
installed package; the sandbox shell's PYTHONDONTWRITEBYTECODE=1 is dropped for it). Besides the wall time, the CPU time of each
whole process tree (user + system, from the children's rusage: medimg's workers and dcm2niix's
pigz included) is recorded: on this shared 2-core machine it shows the work done, whatever the
other processes' load does to the wall time.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _common import (
    CACHE,
    ROOT,
    load_average,
    machine,
    medians,
    pin_threads,
    run_process,
    write_section,
)

REPEATS = 5


def stage_cpu(src: Path, work: Path, env: dict[str, str], medimg: list[str]) -> dict[str, float]:
    """Where medimg's CPU time goes: each stage of the conversion run in this process (one
    thread), CPU seconds (``time.process_time``), median of 3; the start-up is a whole process
    (``medimg convert`` of an empty folder: interpreter, imports, argument parsing)."""
    import hashlib
    import subprocess
    import time

    from medimg import io
    from medimg.core.provenance import Manifest
    from medimg.io.dicom import read_series, scan
    from medimg.io.dicom.scan import list_files

    empty, out = work / "empty", work / "stages"
    empty.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)

    def startup() -> None:
        subprocess.run([*medimg, "convert", str(empty), str(out / "x")], env=env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    state: dict[str, object] = {}

    def do_scan() -> None:
        state["series"] = scan(list_files(src)).series

    def do_read() -> None:
        state["images"] = [read_series(s, hashes={}) for s in state["series"]]  # type: ignore[union-attr]

    def do_read_no_hash() -> None:
        [read_series(s) for s in state["series"]]  # type: ignore[union-attr]

    def do_write() -> None:
        for i, image in enumerate(state["images"]):  # type: ignore[union-attr,arg-type]
            io.write(image, out / f"s{i}.nii", provenance=Manifest(command="medimg convert"))

    def sha_inputs() -> None:
        for f in list_files(src):
            hashlib.sha256(f.read_bytes()).hexdigest()

    def sha_outputs() -> None:
        for image in state["images"]:  # type: ignore[union-attr]
            hashlib.sha256(image.array).hexdigest()

    stages = {"start-up (process: interpreter, imports, arguments)": startup,
              "headers: list + scan + group (2,000 files)": do_scan,
              "read 20 volumes, inputs hashed in the same read": do_read,
              "read 20 volumes, no hashing": do_read_no_hash,
              "write 20 .nii + sidecars, hashed as written": do_write,
              "of which SHA-256 of the inputs (262 MB) alone": sha_inputs,
              "of which SHA-256 of the outputs (262 MB) alone": sha_outputs}
    result = {}
    for name, fn in stages.items():
        times = []
        for _ in range(3):
            if name.startswith("start-up"):
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                fn()
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                times.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
            else:
                t0 = time.process_time()
                fn()
                times.append(time.process_time() - t0)
        result[name] = statistics.median(times)
    state.clear()
    return result


def main() -> None:
    threads = pin_threads()
    if shutil.which("dcm2niix") is None:
        write_section("convert", "## DICOM to NIfTI end to end\n\ndcm2niix not installed: skipped.")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_dicom_read import make_data

    src = make_data()
    # medimg's bytecode cached, as an installed package has it: this sandbox's shell sets
    # PYTHONDONTWRITEBYTECODE=1, which would recompile every medimg module at every start (~0.1 s
    # of CPU here); the cache goes to .bench/pycache, not into the source tree
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONPYCACHEPREFIX=str(CACHE / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    work = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    medimg = [sys.executable, "-c", "from medimg.cli.main import run; run()"]

    cpu: dict[str, list[float]] = {}

    def fresh(name: str, argv_of) -> object:
        def call() -> None:
            out = work / name
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            run_process(argv_of(out), env=env)()
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.setdefault(name, []).append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        return call

    tools = {
        "medimg convert --ext .nii": fresh("m_nii", lambda o: [*medimg, "convert", str(src), str(o), "--ext", ".nii", "--overwrite"]),
        "dcm2niix -z n": fresh("d_nii", lambda o: ["dcm2niix", "-z", "n", "-f", "%s_%j", "-o", str(o), str(src)]),
        "medimg convert --ext .nii --no-input-hashes": fresh("m_nii_nh", lambda o: [*medimg, "convert", str(src), str(o), "--ext", ".nii", "--overwrite", "--no-input-hashes"]),
        "medimg convert --ext .nii.gz (level 1)": fresh("m_gz", lambda o: [*medimg, "convert", str(src), str(o), "--ext", ".nii.gz", "--overwrite"]),
        "dcm2niix -z y -1 (level 1)": fresh("d_gz1", lambda o: ["dcm2niix", "-z", "y", "-1", "-f", "%s_%j", "-o", str(o), str(src)]),
        "dcm2niix -z y (default level 6)": fresh("d_gz", lambda o: ["dcm2niix", "-z", "y", "-f", "%s_%j", "-o", str(o), str(src)]),
    }
    folders = dict(zip(tools, ("m_nii", "d_nii", "m_nii_nh", "m_gz", "d_gz1", "d_gz"), strict=True))
    before = load_average()
    times = medians(tools, repeats=REPEATS)
    after = load_average()
    cpu_s = {k: statistics.median(cpu[folders[k]][-REPEATS:]) for k in tools}
    stages = stage_cpu(src, work, env, medimg)
    sizes = {}
    for name, folder in (("medimg .nii", "m_nii"), ("dcm2niix .nii", "d_nii"), ("medimg .nii.gz", "m_gz"),
                         ("dcm2niix .nii.gz level 1", "d_gz1"), ("dcm2niix .nii.gz level 6", "d_gz")):
        files = [p for p in (work / folder).iterdir() if p.name.endswith((".nii", ".nii.gz"))]
        sizes[name] = (len(files), sum(p.stat().st_size for p in files) / 1e6)
    shutil.rmtree(work, ignore_errors=True)

    t = times
    lines = ["## DICOM folder to NIfTI, end to end (whole processes)", "",
             f"Machine: {machine()}; {threads}. {before} before, {after} after. Data: 20 CT series x 100 "
             "slices 256 x 256 int16 (2,000 files, random values: poorly compressible). The same computation "
             "(every series to one NIfTI + a JSON sidecar, into an empty folder, start-up included); medians of "
             f"{REPEATS} interleaved runs after a warm-up. medimg: one worker process per CPU (2); dcm2niix: "
             "one process (gzip by pigz, one thread per CPU). medimg's sidecars also hold SHA-256 hashes of every input and output file. "
             "medimg's bytecode is cached as in an installed package (this sandbox's shell sets PYTHONDONTWRITEBYTECODE=1, "
             "which would recompile every module at each start; dropped for the medimg processes).", "",
             "| process | median wall (s) | median CPU, user + sys (s) |", "|---|---:|---:|"]
    lines += [f"| `{k}` | {v:.2f} | {cpu_s[k]:.2f} |" for k, v in t.items()]
    lines += ["", "| output | files | MB |", "|---|---:|---:|"]
    lines += [f"| {k} | {n} | {mb:.0f} |" for k, (n, mb) in sizes.items()]
    r_n = t["dcm2niix -z n"] / t["medimg convert --ext .nii"]
    r_nh = t["dcm2niix -z n"] / t["medimg convert --ext .nii --no-input-hashes"]
    r_gz1 = t["dcm2niix -z y -1 (level 1)"] / t["medimg convert --ext .nii.gz (level 1)"]
    r_gz = t["dcm2niix -z y (default level 6)"] / t["medimg convert --ext .nii.gz (level 1)"]
    lines += ["", f"dcm2niix time / medimg time: uncompressed **{r_n:.2f}**, gzip at the same level 1 "
              f"**{r_gz1:.2f}**, gzip each at its default (dcm2niix level 6, medimg level 1) **{r_gz:.2f}** "
              "(> 1: medimg faster). CPU time, dcm2niix / medimg: uncompressed "
              f"**{cpu_s['dcm2niix -z n'] / cpu_s['medimg convert --ext .nii']:.2f}**, gzip level 1 "
              f"**{cpu_s['dcm2niix -z y -1 (level 1)'] / cpu_s['medimg convert --ext .nii.gz (level 1)']:.2f}**. "
              "medimg reads every input byte once (one `preadv` per file: pixels into the volume, the "
              "file's SHA-256 from the same buffers) and writes the NIfTI in one pass hashed as written; "
              "headers are read in the main process (2 workers), series converted by the 2 workers.",
              "", f"Without the input hashes (`--no-input-hashes`: the sidecars name the input files by count "
              f"and series UID; the outputs are still hashed), the closest to dcm2niix's computation, which "
              f"hashes nothing: dcm2niix time / medimg time **{r_nh:.2f}**, CPU "
              f"**{cpu_s['dcm2niix -z n'] / cpu_s['medimg convert --ext .nii --no-input-hashes']:.2f}**."]
    lines += ["", "Where medimg's CPU time goes (each stage alone in one process, one thread; CPU seconds, "
              "median of 3; `stage_cpu` in this script):", "", "| stage | CPU (s) |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in stages.items()]
    md = "\n".join(lines)
    write_section("convert", md)
    print(md)


if __name__ == "__main__":
    main()
