"""Atomic output: write to a temporary name beside the target, then rename.

A crash or Ctrl-C never leaves a half-written file under the final name. The temporary name
says who writes it (``.<name>.<host>-<pid>-<random>.part<ext>``): a process that was killed
(``kill -9``, power loss) leaves its partial file behind, and the next write of the same target
into the same folder on the same host removes the partials whose writer no longer runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medimg.errors import UnsafePathError

__all__ = ["atomic_path", "atomic_dir", "full_suffix", "sha256_file", "remove_stale_partials", "confined_path",
           "read_torch_file",
           "UnsafePathError"]


def full_suffix(path: str | Path) -> str:
    """The file's complete extension, lower case: ``".nii.gz"`` for ``a.nii.gz``, ``""`` for none."""
    name = Path(path).name.lower()
    for double in (".nii.gz", ".tar.gz"):
        if name.endswith(double):
            return double
    return Path(name).suffix


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same extension); rename it to ``path`` on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path`` is
    left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = full_suffix(target)
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    remove_stale_partials(target.parent)
    tmp = _new_partial(target.parent, stem, suffix)
    try:  # from the moment the file exists: an exception anywhere (a signal's included) removes it
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _new_partial(folder: Path, stem: str, suffix: str) -> Path:
    """Create an empty partial file ``.<stem>.<host>-<pid>-<random>.part<suffix>`` (mode 0600) in
    ``folder`` and return its path. Its name is known before it exists (unlike ``mkstemp``, which
    can be interrupted by a signal between creating the file and returning its name), so a caller
    whose ``try`` starts on return can always remove it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = folder / f".{stem}.{_writer_tag()}-{os.urandom(6).hex()}.part{suffix}"
        try:
            fd = os.open(tmp, flags, 0o600)  # a signal that interrupts it raises before the file exists
        except FileExistsError:
            continue
        try:
            os.close(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp
    raise FileExistsError(f"no free partial-file name in {folder}")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (which must not exist
    or be an empty folder). On failure the temporary folder is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_writer_tag()}-", suffix=".part", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual mode
        if target.exists():
            target.rmdir()  # only an empty folder may be replaced
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _host_tag() -> str:
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def _writer_tag() -> str:
    """``<host>-<pid>``: who writes a partial file (the host as a short hash)."""
    return f"{_host_tag()}-{os.getpid()}"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


#: Folders whose stale partials this process has already removed (a listing per folder, not per write).
_CLEANED: set[str] = set()


def remove_stale_partials(folder: str | Path, *, again: bool = False) -> list[Path]:
    """Remove, in ``folder``, the partial files and folders (``.<name>.<host>-<pid>-<random>.part*``)
    left by writers on this host that no longer run; return what was removed.

    Partials of running writers and of other hosts are left alone. A process lists each folder
    once (``again=True`` lists it again); :func:`atomic_path` and :func:`atomic_dir` call this
    before their first write into a folder."""
    folder = Path(folder)
    key = str(folder.resolve())
    if (key in _CLEANED and not again) or not folder.is_dir():
        return []
    _CLEANED.add(key)
    host = _host_tag()
    removed = []
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if not name.startswith(".") or ".part" not in name:
                continue
            middle = name[1:name.rindex(".part")].rsplit(".", 1)
            tag = middle[-1].split("-") if len(middle) == 2 else []
            if len(tag) < 3 or tag[0] != host or not tag[1].isdigit() or _running(int(tag[1])):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | Path, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


_BAD_CHARS = frozenset("/\\\0")


def confined_path(root: str | Path, *parts: str) -> Path:
    """``root / part / part ...`` for parts that come from received or header values, checked.

    Every part must be one plain file or folder name: not empty, not ``.`` or ``..``, without
    ``/``, ``\\`` or NUL, and not absolute. The joined path, resolved (symbolic links followed),
    must lie inside ``root`` resolved. Nothing is created.

    Parameters
    ----------
    root
        The output folder every result must stay in.
    *parts
        Path components built from untrusted values (UIDs, pseudonyms, names from headers).

    Returns
    -------
    Path
        ``Path(root).joinpath(*parts)`` (not resolved).

    Raises
    ------
    UnsafePathError
        A part is not a plain name, or the path would resolve outside ``root``; the message
        names the offending value.
    """
    base = Path(root)
    for part in parts:
        text = str(part)
        if (not text or text in (".", "..") or any(c in _BAD_CHARS for c in text)
                or text != text.strip() or Path(text).is_absolute()):
            raise UnsafePathError(f"unsafe path component {text!r} (from a received or header value): "
                                  f"not written under {base}")
    target = base.joinpath(*parts)
    resolved_root = base.resolve()
    resolved = target.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise UnsafePathError(f"{'/'.join(map(str, parts))!r} resolves to {resolved}, outside the output folder "
                              f"{resolved_root}: not written")
    return target


def read_torch_file(path: str | Path, *, what: str) -> Any:
    """The mapping saved in a local ``torch.save`` file (a checkpoint or a state dict), read
    with ``weights_only=True`` so that the file cannot run code. ``what`` names it in errors
    ("checkpoint", "weights"). URLs are refused (nothing is downloaded)."""
    from collections.abc import Mapping

    from medimg.core.optional import require
    from medimg.errors import FileFormatError, ParameterError

    torch = require("torch", extra="dl")
    if "://" in str(path):
        raise ParameterError(f"{what} must be a local file path, got the URL {str(path)!r} (download it first)")
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, f"no such {what} file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        raise FileFormatError(path, f"not a readable torch file ({type(err).__name__}: {err})") from err
    if not isinstance(payload, Mapping):
        raise FileFormatError(path, f"not a {what} file: not a checkpoint or state dict (a mapping)")
    return payload
