"""Seeded mutation fuzzing of medimg's DICOM header parser and reader.

Run it for a while::

    make fuzz                                   # FUZZ_SECONDS=300 FUZZ_SEED=<time> by default
    python tests/fuzzing.py --seconds 600 --seed 7 --out fuzz-findings

Each case is a real file of ``tests/data/dicom-corpus`` (and a few synthetic slices) changed by
one to three mutations chosen from the seed: truncation, byte flips, a huge or wrong length
field, a swapped transfer syntax, pixel-length games (the pixel data's length field, Rows,
Columns, Bits, Samples, Number of Frames), hostile values in the attributes the reader uses, and
inserted or deleted bytes. The case is written to disk and read by a *worker process* through
``read_header``, ``decode_pixels`` and ``medimg.io.read``. A case fails when

* any of them raises an exception that is not medimg's own (:class:`~medimg.errors.MedimgError`),
  or medimg's :class:`~medimg.io.dicom.scan.UnexpectedReadError` (a reader bug caught by ``scan``);
* the worker runs out of memory: its address space is limited (``RLIMIT_AS``, ``--memory-mb``
  above what it uses after start-up), so a claim that makes the reader allocate gigabytes fails
  with ``MemoryError`` instead of taking the machine;
* it takes longer than ``--timeout`` seconds (a hang), or the worker dies (a native abort or
  segmentation fault): the worker is restarted and the run goes on.

Each failing case is saved as ``<out>/<id>.dcm`` with ``<id>.txt`` (what failed, the traceback,
the seed and mutations that made it); ``docs/development.md`` says how to turn one into a
regression test. The same seed gives the same cases.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "data" / "dicom-corpus"
SRC = HERE.parent / "src"

#: Seed files: small real files covering the transfer syntaxes and object kinds the reader meets.
SEED_NAMES = (
    "CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "JPEG2000.dcm", "JPEG-lossy.dcm",
    "SC_jpeg_no_color_transform.dcm", "SC_rgb.dcm", "SC_rgb_jls_lossy_line.dcm", "JLSL_08_07_0_1F.dcm",
    "image_dfl.dcm", "no_meta.dcm", "nested_priv_SQ.dcm", "rtdose_1frame.dcm", "emri_small_jpeg_2k_lossless.dcm",
    "emri_small_RLE.dcm", "liver_1frame.dcm", "ExplVR_BigEndNoMeta.dcm", "OBXXXX1A_rle.dcm",
    "parametric_map_float.dcm", "693_J2KI.dcm", "emri_small_jpeg_ls_lossless.dcm",
)
#: Transfer syntaxes swapped in.
SYNTAXES = (
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.8.1",
    "1.2.3.4", "",
)
#: Attributes the reader uses, and values that test its assumptions.
HOSTILE = {
    0x00280008: [b"999999999", b"0", b"-1", b"2", b"1e9", b"NaN", b"3\\4"],  # Number of Frames
    0x00280010: [b"\xff\xff", b"\x00\x00", b"\x01\x00"],  # Rows (US, little endian)
    0x00280011: [b"\xff\xff", b"\x00\x00", b"\x01\x00"],  # Columns
    0x00280100: [b"\x01\x00", b"\x20\x00", b"\x40\x00", b"\x00\x00", b"\x0c\x00"],  # Bits Allocated
    0x00280101: [b"\x20\x00", b"\x00\x00"],  # Bits Stored
    0x00280002: [b"\x03\x00", b"\x00\x00", b"\x04\x00"],  # Samples per Pixel
    0x00280103: [b"\x01\x00", b"\x02\x00"],  # Pixel Representation
    0x00280004: [b"RGB", b"YBR_FULL_422", b"PALETTE COLOR", b"MONOCHROME1", b"XYZ"],
    0x00281053: [b"NaN", b"inf", b"1e308", b"0", b"abc"],  # Rescale Slope
    0x00281052: [b"-inf", b"1e308", b"x"],  # Rescale Intercept
    0x00200032: [b"abc\\1\\x", b"1\\2", b"NaN\\0\\0", b"1e308\\1e308\\1e308", b""],  # Image Position
    0x00200037: [b"0\\0\\0\\0\\0\\0", b"1\\0\\0\\1\\0\\0", b"1\\0", b"NaN\\0\\0\\0\\1\\0"],  # Orientation
    0x00280030: [b"0\\0", b"-1\\1", b"NaN\\1", b"1"],  # Pixel Spacing
    0x00080005: [b"ISO 2022 IR 87", b"XYZ", b"ISO_IR 192\\ISO_IR 100"],  # Specific Character Set
}
_HUGE = (0xFFFFFFF0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x10000000)
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


@dataclass
class Seed:
    """A seed file and where its top-level elements lie (found once, with pydicom)."""

    name: str
    data: bytes
    elements: dict[int, tuple[int, int, str, int, int]] = field(default_factory=dict)  # tag -> span
    meta_ts: tuple[int, int] | None = None  # (offset, length) of the Transfer Syntax UID value


def _spans(data: bytes) -> dict[int, tuple[int, int, str, int, int]]:
    import io

    import pydicom

    long_vrs = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
    out: dict[int, tuple[int, int, str, int, int]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True, defer_size=256)
            implicit, little = ds.original_encoding
            if ds.file_meta.get("TransferSyntaxUID") == "1.2.840.10008.1.2.1.99":
                return out  # offsets of the inflated stream
            for tag in list(ds.keys()):
                raw = ds.get_item(tag, keep_deferred=True)
                tell = getattr(raw, "value_tell", None)
                length = getattr(raw, "length", None)
                if tell is None or length is None:
                    continue
                vr = str(getattr(raw, "VR", "") or "")
                size = 4 if implicit or vr in long_vrs else 2
                out[int(tag)] = (tell - size, size, "<" if little is not False else ">", tell, length)
        except Exception:  # noqa: BLE001 - a seed pydicom cannot walk: byte-level mutations only
            pass
    return out


def _meta_ts(data: bytes) -> tuple[int, int] | None:
    if data[128:132] != b"DICM":
        return None
    pos = 132
    while pos + 8 <= len(data):
        group, elem, vr, l16 = struct.unpack_from("<HH2sH", data, pos)
        if group != 2:
            return None
        if vr in (b"OB", b"UN", b"UT", b"SQ", b"OW"):
            length, head = struct.unpack_from("<I", data, pos + 8)[0], 12
        else:
            length, head = l16, 8
        if elem == 0x10:
            return pos + head, length
        pos += head + length
    return None


def load_seeds() -> list[Seed]:
    """The seed files with their element spans."""
    seeds = []
    for name in SEED_NAMES:
        path = CORPUS / name
        if path.exists():
            data = path.read_bytes()
            seeds.append(Seed(name, data, _spans(data), _meta_ts(data)))
    return seeds


# ------------------------------------------------------------------------------ mutations
def _replace_value(seed: Seed, data: bytes, tag: int, value: bytes) -> bytes | None:
    span = seed.elements.get(tag)
    if span is None or len(data) != len(seed.data):
        return None
    lpos, size, endian, vpos, length = span
    if size == 2 and len(value) > 0xFFFF:
        return None
    if tag in (0x00280010, 0x00280011, 0x00280100, 0x00280101, 0x00280002, 0x00280103) and endian == ">":
        value = value[::-1]
    fmt = endian + ("H" if size == 2 else "I")
    return data[:lpos] + struct.pack(fmt, len(value)) + value + data[vpos + length :]


def m_truncate(seed: Seed, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    cut = rng.choice([rng.randrange(len(data)), rng.randrange(min(len(data), 2048)), len(data) - rng.randrange(1, 64)])
    cut = max(0, min(len(data) - 1, cut))
    return data[:cut], f"truncate at {cut}"


def m_flip(seed: Seed, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    n = rng.choice((1, 1, 2, 4, 16))
    where = []
    for _ in range(n):
        pos = rng.randrange(min(len(out), 4096)) if rng.random() < 0.8 else rng.randrange(len(out))
        out[pos] = rng.choice((out[pos] ^ (1 << rng.randrange(8)), rng.randrange(256), 0xFF, 0x00))
        where.append(pos)
    return bytes(out), f"flip bytes {where}"


def m_length(seed: Seed, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if seed.elements and len(data) == len(seed.data):
        tag = rng.choice(list(seed.elements))
        lpos, size, endian, _vpos, length = seed.elements[tag]
        if size == 4:
            new = rng.choice(_HUGE + (length + 2, max(0, length - 2), length * 2, 0)) & 0xFFFFFFFF
            fmt = endian + "I"
        else:
            new = rng.choice((0xFFFF, 0xFFFE, max(0, length - 2), length + 2, 0)) & 0xFFFF
            fmt = endian + "H"
        return data[:lpos] + struct.pack(fmt, new) + data[lpos + size :], f"length of {tag:08X} = {new:#x}"
    pos = rng.randrange(128, max(129, min(len(data) - 4, 4096)))
    new = rng.choice(_HUGE)
    return data[:pos] + struct.pack("<I", new) + data[pos + 4 :], f"4 bytes at {pos} = {new:#x}"


def m_syntax(seed: Seed, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if seed.meta_ts is None or len(data) != len(seed.data):
        return m_flip(seed, data, rng)
    vpos, length = seed.meta_ts
    uid = rng.choice(SYNTAXES).encode()
    uid = (uid + b"\0" * length)[:length] if len(uid) <= length else uid[:length]  # keep the meta's length
    return data[:vpos] + uid + data[vpos + length :], f"transfer syntax -> {uid.rstrip(bytes(1))!r}"


def m_pixels(seed: Seed, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Pixel-length games: the pixel data's length field, or the size attributes around it."""
    tags = [t for t in PIXEL_TAGS if t in seed.elements]
    if tags and rng.random() < 0.5 and len(data) == len(seed.data):
        lpos, size, endian, _vpos, length = seed.elements[tags[0]]
        if size == 4:
            new = rng.choice((length // 2, length + 1, length - 1, length * 4, 0, 0xFFFFFFFF, 1)) & 0xFFFFFFFF
            return data[:lpos] + struct.pack(endian + "I", new) + data[lpos + 4 :], f"pixel length = {new:#x}"
    return m_value(seed, data, rng, only=(0x00280008, 0x00280010, 0x00280011, 0x00280100, 0x00280002))


def m_value(seed: Seed, data: bytes, rng: random.Random, only: tuple[int, ...] | None = None) -> tuple[bytes, str]:
    choices = [t for t in (only or tuple(HOSTILE)) if t in seed.elements]
    if not choices:
        return m_flip(seed, data, rng)
    tag = rng.choice(choices)
    value = rng.choice(HOSTILE[tag])
    if len(value) % 2 and tag not in (0x00280010, 0x00280011):
        value += b" "
    out = _replace_value(seed, data, tag, value)
    if out is None:
        return m_flip(seed, data, rng)
    return out, f"value of {tag:08X} = {value!r}"


def m_splice(seed: Seed, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    pos = rng.randrange(len(data))
    if rng.random() < 0.5:
        n = rng.randrange(1, 64)
        return data[:pos] + data[pos + n :], f"delete {n} bytes at {pos}"
    blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
    return data[:pos] + blob + data[pos:], f"insert {blob.hex()} at {pos}"


MUTATORS = (m_truncate, m_flip, m_flip, m_length, m_length, m_syntax, m_pixels, m_pixels, m_value, m_value, m_splice)
#: Mutations that keep every offset of the seed: others run last, so offsets found once stay right.
_KEEPS_OFFSETS = (m_flip, m_syntax)


def make_case(seeds: list[Seed], rng: random.Random) -> tuple[str, bytes, list[str]]:
    """One mutant: (seed name, bytes, the mutations applied)."""
    seed = rng.choice(seeds)
    data = seed.data
    steps = []
    chosen = [rng.choice(MUTATORS) for _ in range(rng.choice((1, 1, 2, 3)))]
    chosen.sort(key=lambda m: m not in _KEEPS_OFFSETS and m not in (m_value, m_length, m_pixels))
    for mutate in chosen:
        data, what = mutate(seed, data, rng)
        steps.append(what)
        if not data:
            data = seed.data[:1]
    return seed.name, data, steps


# ------------------------------------------------------------------------------ the worker
def _worker(memory_mb: int) -> None:  # pragma: no cover - runs in the child process
    """Read paths on stdin, run the reader on each, answer one JSON line per path."""
    import resource
    import traceback

    import numpy as np  # noqa: F401 - imported before the limit is set

    from medimg import io as mio
    from medimg.errors import MedimgError
    from medimg.io.dicom import decode_pixels, read_header
    from medimg.io.dicom.scan import UnexpectedReadError

    with open("/proc/self/statm") as fh:
        vsize = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = vsize + memory_mb * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")
    out = sys.stdout
    sys.stdout = sys.stderr  # anything printed by a library must not break the protocol
    def selftest(path: str) -> None:  # proves that the harness catches each kind of failure
        what = Path(path).stem.split("-", 1)[1]
        if what == "raise":
            raise ValueError("planted")
        if what == "abort":
            os.abort()
        if what == "hang":
            time.sleep(3600)
        if what == "memory":
            bytearray(8 << 30)

    for line in sys.stdin:
        path = line.strip()
        results = {}
        steps = (("read_header", read_header), ("decode_pixels", decode_pixels), ("read", mio.read))
        if Path(path).name.startswith("selftest-"):
            steps = (("selftest", selftest),)
        for name, step in steps:
            try:
                step(path)
                results[name] = "ok"
            except UnexpectedReadError as err:
                cause = err.__cause__
                results[name] = "BUG " + "".join(traceback.format_exception(cause or err)).strip()[-3000:]
            except MedimgError as err:
                results[name] = type(err).__name__
            except BaseException as err:  # noqa: BLE001 - what the fuzzer looks for
                if isinstance(err, KeyboardInterrupt):
                    raise
                results[name] = "BUG " + "".join(traceback.format_exception(err)).strip()[-3000:]
        out.write(json.dumps(results) + "\n")
        out.flush()


class Worker:
    """A worker process, restarted after a crash or a hang."""

    def __init__(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
                   OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", "--memory-mb", str(self.memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)

    def run(self, path: Path, timeout: float) -> dict[str, str]:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        proc = self.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(f"{path}\n")
            proc.stdin.flush()
        except BrokenPipeError:
            return self._died()
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            self.stop()
            return {"worker": f"HANG: no answer within {timeout:.0f} s"}
        line = proc.stdout.readline()
        if not line:
            return self._died()
        return json.loads(line)

    def _died(self) -> dict[str, str]:
        assert self.proc is not None
        code = self.proc.wait()
        self.proc = None
        return {"worker": f"CRASH: the worker process ended with status {code} (negative: signal)"}

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def _failed(results: dict[str, str]) -> list[str]:
    return [f"{k}: {v}" for k, v in results.items() if v.startswith(("BUG", "HANG", "CRASH"))]


def fuzz(seconds: float, seed: int, out: Path | None, *, timeout: float = 20.0, memory_mb: int = 1024,
         max_cases: int | None = None, log: Any = None) -> dict[str, Any]:
    """Run mutants for ``seconds``; return ``{"cases", "failures": [...], "outcomes": {...}}``.

    Failing cases are saved under ``out`` (when given) as ``<id>.dcm`` and ``<id>.txt``.
    """
    rng = random.Random(seed)
    seeds = load_seeds()
    worker = Worker(memory_mb)
    failures: list[dict[str, Any]] = []
    outcomes: dict[str, int] = {}
    cases = 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="medimg-fuzz-") as tmp:
        case_path = Path(tmp) / "case.dcm"
        try:
            worker.start()
            while time.monotonic() - start < seconds and (max_cases is None or cases < max_cases):
                name, data, steps = make_case(seeds, rng)
                case_path.write_bytes(data)
                results = worker.run(case_path, timeout)
                cases += 1
                for value in results.values():
                    key = value.split(":")[0].split("\n")[0][:40]
                    outcomes[key] = outcomes.get(key, 0) + 1
                problems = _failed(results)
                if problems:
                    record = {"seed": seed, "case": cases, "file": name, "mutations": steps, "problems": problems}
                    failures.append(record)
                    if out is not None:
                        out.mkdir(parents=True, exist_ok=True)
                        stem = f"{Path(name).stem}-s{seed}-c{cases}"
                        (out / f"{stem}.dcm").write_bytes(data)
                        (out / f"{stem}.txt").write_text(json.dumps(record, indent=2) + "\n")
                    if log is not None:
                        log(f"case {cases} ({name}: {'; '.join(steps)}): {problems[0].splitlines()[0][:200]}")
        finally:
            worker.stop()
    return {"cases": cases, "seconds": round(time.monotonic() - start, 1), "seed": seed,
            "failures": failures, "outcomes": outcomes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 300)))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", 0) or time.time()))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("FUZZ_OUT", "fuzz-findings")))
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds one case may take")
    parser.add_argument("--memory-mb", type=int, default=1024, help="address space above the worker's start-up size")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.memory_mb)
        return 0
    print(f"fuzzing the DICOM reader for {args.seconds:.0f} s, seed {args.seed}; findings go to {args.out}/")
    report = fuzz(args.seconds, args.seed, args.out, timeout=args.timeout, memory_mb=args.memory_mb, log=print)
    print(f"{report['cases']} cases in {report['seconds']} s, {len(report['failures'])} failing; "
          f"outcomes: {json.dumps(report['outcomes'], sort_keys=True)}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
