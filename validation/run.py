"""Run every validation check (validation/check_*.py); each updates its section of VALIDATION.md.

Exit status 1 when a check reports a failure (it raises SystemExit(1) or AssertionError).
"""

from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem for p in HERE.glob("check_*.py"))
    sys.path.insert(0, str(HERE))
    status = 0
    for name in names:
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            runpy.run_path(str(HERE / f"{name}.py"), run_name="__main__")
        except (SystemExit, AssertionError) as exc:
            if getattr(exc, "code", 1):
                print(f"== {name} FAILED: {exc}", flush=True)
                status = 1
        print(f"== {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
