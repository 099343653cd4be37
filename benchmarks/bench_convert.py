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

#: ``medimg convert`` with each process's CPU time logged (JSON lines in $MEDIMG_BENCH_CPU_LOG):
#: the main process ("parent": start-up, file list, headers and grouping, set-up), each worker by
#: what it ran ("headers": reading headers, with 3 workers or more; "convert": reading, hashing
#: and writing series).
_CPU_DRIVER = """
import json, os, resource, sys
import medimg.io.convert as cv
import medimg.pipeline.executor as ex
LOG = os.environ["MEDIMG_BENCH_CPU_LOG"]
ROLE = {}
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
def log(kind, value):
    with open(LOG, "a") as fh:
        fh.write(json.dumps([kind, value]) + "\\n")
_start = ex._worker_start
def start(*args):
    import multiprocessing.util as util
    base = cpu()
    util.Finalize(None, lambda: log(ROLE.get("r", "idle"), cpu() - base), exitpriority=100)
    _start(*args)
ex._worker_start = start
_scan, _convert = cv._scan_packed, cv._convert_forked
def scan_w(ref):
    ROLE["r"] = "headers"
    return _scan(ref)
def convert_w(ref):
    ROLE["r"] = "convert"
    return _convert(ref)
cv._scan_packed, cv._convert_forked = scan_w, convert_w
from medimg.cli.main import main
rc = main(sys.argv[1:])
log("parent", cpu())
os._exit(rc)
"""


def sha256_speeds() -> tuple[float, float | None]:
    """SHA-256 throughput (GB per CPU second) on 128 kB buffers: Python's ``hashlib`` (best of 5
    passes over 64 MB) and ``openssl speed -evp sha256`` (which divides by CPU time too; None
    without openssl). Per CPU second: on a loaded machine the wall-clock rate is lower for both."""
    import hashlib
    import subprocess
    import time

    block = os.urandom(1 << 17)
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(512):
            hashlib.sha256(block).digest()
        best = min(best, time.process_time() - t0)
    ours = 512 * len(block) / best / 1e9
    if shutil.which("openssl") is None:
        return ours, None
    out = subprocess.run(["openssl", "speed", "-seconds", "1", "-bytes", str(len(block)), "-evp", "sha256"],
                         capture_output=True, text=True, check=False).stdout
    row = [line.split() for line in out.splitlines() if line.startswith("sha256")]
    try:
        return ours, float(row[-1][-1].rstrip("k")) * 1e3 / 1e9
    except (IndexError, ValueError):
        return ours, None


def process_cpu(src: Path, work: Path, env: dict[str, str], repeats: int = 3) -> dict[str, float]:
    """CPU seconds of each kind of process of one ``medimg convert --ext .nii`` (medians of
    ``repeats`` runs): this process, the header workers together, the conversion workers together."""
    import json
    import subprocess

    runs: list[dict[str, float]] = []
    for i in range(repeats):
        out, log = work / f"cpu{i}", work / f"cpu{i}.log"
        out.mkdir()
        subprocess.run([sys.executable, "-c", _CPU_DRIVER, "convert", str(src), str(out), "--ext", ".nii"],
                       env=dict(env, MEDIMG_BENCH_CPU_LOG=str(log)), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        totals: dict[str, float] = {}
        for line in log.read_text().splitlines():
            kind, value = json.loads(line)
            totals[kind] = totals.get(kind, 0.0) + value
        runs.append(totals)
        shutil.rmtree(out, ignore_errors=True)
    kinds = ("parent", "headers", "convert")
    return {k: statistics.median(r.get(k, 0.0) for r in runs) for k in kinds}


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
    per_process = process_cpu(src, work, env)
    sha_py, sha_openssl = sha256_speeds()
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    autogroup_on = autogroup.exists() and autogroup.read_text().strip() == "1"
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
             f"{REPEATS} interleaved runs after a warm-up (the machine may be shared: the load average above "
             "says how much). medimg: one worker process per CPU (2); dcm2niix: "
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
              "medimg reads every input byte once for its pixels and its SHA-256 (one `preadv` per file: "
              "pixels into the volume, the file's SHA-256 from the same buffers) and writes the NIfTI in one "
              "pass hashed as written. The headers are read in the main process (the files of a series "
              "mostly from the previous file's header template: only the elements that vary are decoded), "
              "then the series are converted by 2 workers forked after the grouping (they inherit the "
              "series; with 3 workers or more the headers are read by the workers too).",
              "", f"Without the input hashes (`--no-input-hashes`: the sidecars name the input files by count "
              f"and series UID; the outputs are still hashed), the closest to dcm2niix's computation, which "
              f"hashes nothing: dcm2niix time / medimg time **{r_nh:.2f}**, CPU "
              f"**{cpu_s['dcm2niix -z n'] / cpu_s['medimg convert --ext .nii --no-input-hashes']:.2f}**."]
    lines += ["", "Where medimg's CPU time goes (each stage alone in one process, one thread; CPU seconds, "
              "median of 3; `stage_cpu` in this script):", "", "| stage | CPU (s) |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in stages.items()]
    total = sum(per_process.values())
    lines += ["", "CPU seconds by process in one `medimg convert --ext .nii` (median of 3 runs; `process_cpu` "
              "in this script):", "", "| process | CPU (s) |", "|---|---:|",
              "| main process: start-up, file list, headers (2,000) + grouping, worker set-up | "
              f"{per_process['parent']:.3f} |"]
    if per_process["headers"]:
        lines += [f"| header workers together | {per_process['headers']:.3f} |"]
    lines += ["| 2 conversion workers together (read + SHA-256 in, write + SHA-256 out) | "
              f"{per_process['convert']:.3f} |", f"| all | {total:.3f} |"]
    sha_cpu = stages["of which SHA-256 of the inputs (262 MB) alone"] + stages["of which SHA-256 of the outputs (262 MB) alone"]
    lines += ["", "Reading the ratios: the wall time of medimg's 2 workers beats a one-process tool only while a "
              "second core is free. "
              + ("This kernel schedules by autogroup (`/proc/sys/kernel/sched_autogroup_enabled` = 1): every "
                 "session gets an equal share of the CPUs, however many processes it runs, so on a machine "
                 "busy with other sessions (the load above) each tool gets the same share and the wall times "
                 "follow the CPU times. " if autogroup_on else "")
              + f"medimg's CPU time holds the SHA-256 of 524 MB (262 MB in, 262 MB out: {sha_cpu:.2f} s here "
              "alone), which dcm2niix does not compute. The two hashes cannot share work: the pixel bytes sit "
              "behind different headers in the DICOM files and in the NIfTI file (and differ from them after "
              "the rescale here), and SHA-256 chains its state through every byte before them. SHA-256 on "
              f"128 kB buffers, GB per CPU second: Python's `hashlib` {sha_py:.2f}, `openssl speed -evp sha256` "
              + (f"{sha_openssl:.2f}" if sha_openssl else "not measured (no openssl)")
              + " (hashlib is OpenSSL's)."]
    md = "\n".join(lines)
    write_section("convert", md)
    print(md)


if __name__ == "__main__":
    main()
