"""Shared helpers for `make validate`: where the reference data are, and VALIDATION.md sections."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VALIDATION_MD = ROOT / "VALIDATION.md"

_HEADER = """# Validation

Checks of medimg against outside references, run by `make validate` (each section is rewritten
by its check). The reference data are read from `$MEDIMG_REFERENCE_DATA` (default
`../shared/data` beside the repository); a check whose data are absent says so instead of
reporting a number.
"""


def reference_data() -> Path | None:
    """The reference-data folder, or None when it is absent."""
    env = os.environ.get("MEDIMG_REFERENCE_DATA")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of VALIDATION.md."""
    text = VALIDATION_MD.read_text() if VALIDATION_MD.exists() else _HEADER
    start, end = f"<!-- check:{name} -->", f"<!-- /check:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = VALIDATION_MD.with_suffix(".md.part")
    tmp.write_text(text)
    tmp.replace(VALIDATION_MD)
