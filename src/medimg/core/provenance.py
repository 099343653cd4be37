"""Provenance manifests: what went in, with which settings and software, and what came out.

Every run that writes results writes a manifest beside them (``manifest.json``) so that a
result can be traced and reproduced from its own folder.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.files import atomic_path, sha256_file

__all__ = ["Manifest", "package_versions", "git_commit", "array_sha256"]

_TRACKED_PACKAGES = (
    "medimg", "numpy", "scipy", "pydicom", "SimpleITK", "nibabel", "scikit-learn",
    "scikit-image", "pandas", "torch", "monai", "dask", "highdicom",
)


def package_versions(names: Iterable[str] = _TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (missing packages are left out)."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_commit(path: str | Path | None = None) -> str | None:
    """The git commit of the working tree that holds medimg (or ``path``), if any."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@dataclass
class Manifest:
    """A run's provenance record; fill it as the run goes, then :meth:`write` it."""

    command: str
    parameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def add_input(self, path: str | Path, *, hash_file: bool = True, **extra: Any) -> None:
        """Record an input file (and its SHA-256)."""
        row: dict[str, Any] = {"path": str(path), **extra}
        if hash_file and Path(path).is_file():
            row["sha256"] = sha256_file(path)
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

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-ready data, with software and platform filled in."""
        return {
            "command": self.command,
            "started_at": self.started_at,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "parameters": self.parameters,
            "seed": self.seed,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "failures": self.failures,
            "software": package_versions(),
            "git_commit": git_commit(),
            "platform": {
                "python": sys.version.split()[0],
                "system": platform.platform(),
                "machine": platform.machine(),
            },
        }

    def write(self, path: str | Path) -> Path:
        """Write the manifest as JSON (atomically) and return its path."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(_jsonable(self.to_dict()), indent=2) + "\n")
        return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value
