"""Provenance manifests: what went in, with which settings and software, and what came out.

Every run that writes results writes a manifest beside them so that a result can be traced and
reproduced from its own folder: ``manifest.json`` (or ``<table>.manifest.json``) for runs and
tables, and for each image a JSON *sidecar* (``out.nii.gz`` -> ``out.json``, see
:mod:`medimg.io.sidecar`) built from the same :class:`Manifest`.

The software record (:func:`package_versions`, :func:`git_commit`) is computed once per process
and cached: it does not change while a process runs, and a batch that writes thousands of
sidecars should not start thousands of ``git`` processes.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.files import atomic_path, sha256_file

__all__ = ["Manifest", "package_versions", "git_commit", "array_sha256", "tree_sha256", "jsonable",
           "platform_info"]

_TRACKED_PACKAGES = (
    "medimg", "numpy", "scipy", "pydicom", "SimpleITK", "nibabel", "scikit-learn",
    "scikit-image", "pandas", "torch", "monai", "dask", "highdicom",
)


def package_versions(names: Iterable[str] = _TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (missing packages are left out); cached per process."""
    return dict(_package_versions(tuple(names)))


@functools.lru_cache(maxsize=8)
def _package_versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for name in names:
        try:
            out.append((name, _installed_version(name)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(out)


def _installed_version(name: str) -> str:
    """``importlib.metadata.version(name)``, read from the ``Version:`` line of the package's
    metadata headers instead of parsing them all with the e-mail parser (half the time: ~1 ms a
    package, paid by every command that writes a sidecar); the full parse where no such line is."""
    dist = importlib.metadata.distribution(name)
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    for line in text.splitlines():
        if line.startswith("Version:"):
            return line[len("Version:"):].strip()
        if not line:  # the end of the headers
            break
    return dist.version


def git_commit(path: str | Path | None = None) -> str | None:
    """The git commit of the working tree that holds medimg (or ``path``), if any; cached per
    process."""
    where = Path(path) if path else Path(__file__).resolve().parent
    return _git_commit(str(where))


@functools.lru_cache(maxsize=8)
def _git_commit(where: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def platform_info() -> dict[str, str]:
    """Python version, operating system and machine."""
    return {"python": sys.version.split()[0], "system": platform.platform(), "machine": platform.machine()}


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    digest = hashlib.sha256()
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    data = np.ascontiguousarray(array)
    digest.update(memoryview(data.reshape(-1).view(np.uint8)) if data.size else b"")  # the bytes, not a copy
    return digest.hexdigest()


def tree_sha256(folder: str | Path) -> tuple[str, int]:
    """SHA-256 of a folder's regular files (names relative to ``folder`` and contents), and
    their number.

    The digest covers, in sorted order of the relative POSIX path, each path and the SHA-256
    of its bytes; hidden files and folders (``.name``) are left out. Two folders with the same
    files under the same relative names have the same digest, wherever they are.
    """
    root = Path(folder)
    digest = hashlib.sha256()
    count = 0
    rows: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = Path(dirpath) / name
            if name.startswith(".") or not path.is_file():
                continue
            rows.append(path.relative_to(root).as_posix())
    for rel in sorted(rows):
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(sha256_file(root / rel).encode() + b"\n")
        count += 1
    return digest.hexdigest(), count


@dataclass
class Manifest:
    """A run's provenance record; fill it as the run goes, then :meth:`write` it (or hand it to
    :func:`medimg.io.write` to become an image's sidecar).

    Parameters
    ----------
    command
        What ran, e.g. ``"medimg filter"`` or ``"medimg.filters.apply"``.
    parameters
        Every resolved parameter (defaults included: :meth:`medimg.core.registry.Entry.validate`).
    seed
        The random seed, if the run used randomness.
    argv
        The command-line arguments after the program name, when the run came from the CLI;
        ``to_dict`` then gives ``command_line``, the shell line that reproduces the run.
    """

    command: str
    parameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    argv: list[str] | None = None

    def add_input(self, path: str | Path, *, hash_file: bool = True, **extra: Any) -> None:
        """Record an input file (and its SHA-256) or folder (the :func:`tree_sha256` of its
        files, and their number)."""
        row: dict[str, Any] = {"path": str(path), **extra}
        p = Path(path)
        if hash_file and p.is_file():
            row["sha256"] = sha256_file(p)
        elif hash_file and p.is_dir():
            row["sha256_tree"], row["n_files"] = tree_sha256(p)
        self.inputs.append(row)

    def add_output(self, path: str | Path, **extra: Any) -> None:
        """Record an output file (and its SHA-256)."""
        row: dict[str, Any] = {"path": str(path), **extra}
        if Path(path).is_file():
            row["sha256"] = sha256_file(path)
        self.outputs.append(row)

    def add_failure(self, item: str, error: BaseException | str) -> None:
        """Record a failed case of a batch (the batch goes on)."""
        self.failures.append({"item": item, "error": str(error)})

    @property
    def command_line(self) -> str | None:
        """The shell command line that reproduces the run (``None`` without ``argv``)."""
        if self.argv is None:
            return None
        program = self.command.split()[0] if self.command else "medimg"
        return shlex.join([program, *self.argv])

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-ready data, with software and platform filled in."""
        from medimg import __version__

        return {
            "command": self.command,
            "command_line": self.command_line,
            "medimg_version": __version__,
            "started_at": self.started_at,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "parameters": self.parameters,
            "seed": self.seed,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "failures": self.failures,
            "software": package_versions(),
            "git_commit": git_commit(),
            "platform": platform_info(),
        }

    def write(self, path: str | Path) -> Path:
        """Write the manifest as JSON (atomically) and return its path."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(dumps_indented(jsonable(self.to_dict())) + "\n")
        return path


def dumps_indented(value: Any, *, depth: int = 3, indent: int = 2, _level: int = 0) -> str:
    """Strict JSON of ``value`` indented like ``json.dumps(indent=indent)`` for its first ``depth``
    levels of objects and arrays, each deeper value on one line (the same data; the C encoder does
    those lines, where ``indent`` alone falls back to Python's encoder for the whole document: a
    200-case manifest is written several times faster, and each case's record stays one line)."""
    if _level >= depth or not isinstance(value, (dict, list)) or not value:
        return json.dumps(value, allow_nan=False)
    pad = " " * (indent * (_level + 1))
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(str(k))}: {dumps_indented(v, depth=depth, indent=indent, _level=_level + 1)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * (indent * _level) + "}"
    items = [pad + dumps_indented(v, depth=depth, indent=indent, _level=_level + 1) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * (indent * _level) + "]"


def jsonable(value: Any) -> Any:
    """``value`` as strict-JSON data: mappings, sequences, numbers, strings, booleans and null.

    NumPy scalars and arrays become numbers and lists; paths strings; an
    :class:`~medimg.Image` (an image-valued parameter such as a mask) the summary
    ``{"image": grid, "dtype": ..., "array_sha256": ...}`` (never its metadata); a non-finite
    float the string ``"nan"``, ``"inf"`` or ``"-inf"`` (strict JSON has no such numbers);
    objects with ``to_dict()`` that dict; anything else its ``repr``.
    """
    from medimg.core.image import Image

    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in items]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, Image):
        return {"image": value.grid_summary(), "dtype": str(value.dtype), "array_sha256": array_sha256(value.array)}
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return jsonable(to_dict())
    return repr(value)
