"""Where a study's results live: a local folder or an fsspec URL (``s3://bucket/prefix``).

A :class:`Store` holds files by relative key (``cache/ab/abcd....npz``, ``tables/radiomics.csv``).
Writes are atomic in both kinds: a local file is written to a temporary name and renamed; an
object store receives the whole object in one put. So an interrupted run leaves either a
complete result or none, and a re-run finds exactly the results that were finished.

Inputs may be URLs too: :func:`fetch` copies a remote file (or folder) to a local cache folder
once, keyed by its URL and size, so that the readers work on local paths.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from medimg.errors import FileFormatError, UserInputError

__all__ = ["Store", "open_store", "is_url", "fetch"]


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a remote location (``s3://``, ``gs://``, ``memory://``, ...); a
    ``file://`` URL and a plain path are local."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def _local(path: str | os.PathLike[str]) -> Path:
    text = str(path)
    return Path(text[len("file://"):]) if text.startswith("file://") else Path(text)


class Store:
    """A folder of results, local or behind an fsspec URL."""

    def __init__(self, root: str | os.PathLike[str], *, storage_options: dict | None = None) -> None:
        self.url = str(root)
        self.remote = is_url(root)
        if self.remote:
            try:
                import fsspec
            except ImportError as err:  # pragma: no cover - fsspec comes with dask
                raise UserInputError(f"{root}: URLs need fsspec (pip install medimg[parallel])") from err
            try:
                self._fs, self._root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
            except (ImportError, ValueError) as err:
                raise UserInputError(f"{root}: cannot open this location: {err}") from err
            self._root = self._root.rstrip("/")
        else:
            self._fs = None
            self._root = str(_local(root))
            Path(self._root).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def __reduce__(self) -> tuple[type[Store], tuple[str]]:
        return (Store, (self.url,))

    def location(self, key: str) -> str:
        """The full path or URL of ``key``."""
        return f"{self._root}/{key}" if self.remote else str(Path(self._root) / key)

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        if self.remote:
            return bool(self._fs.exists(self.location(key)))
        return Path(self.location(key)).is_file()

    @contextlib.contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        """Yield a local temporary path; on success its content becomes ``key`` in one step."""
        if not self.remote:
            from medimg.core.files import atomic_path

            with atomic_path(self.location(key)) as tmp:
                yield tmp
            return
        suffix = "".join(Path(key).suffixes[-2:])
        fd, name = tempfile.mkstemp(suffix=suffix)
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            self._fs.put_file(str(tmp), self.location(key))
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def write_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` as ``key``."""
        with self.writing(key) as tmp:
            tmp.write_bytes(data)

    def read_bytes(self, key: str) -> bytes:
        """The bytes of ``key``."""
        if self.remote:
            return bytes(self._fs.cat_file(self.location(key)))
        return Path(self.location(key)).read_bytes()

    @contextlib.contextmanager
    def reading(self, key: str) -> Iterator[Path]:
        """Yield a local path holding ``key``'s content (the file itself when local)."""
        if not self.remote:
            yield Path(self.location(key))
            return
        suffix = "".join(Path(key).suffixes[-2:])
        fd, name = tempfile.mkstemp(suffix=suffix)
        os.close(fd)
        tmp = Path(name)
        try:
            self._fs.get_file(self.location(key), str(tmp))
            yield tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def put(self, local: str | Path, key: str) -> None:
        """Copy the local file ``local`` to ``key``."""
        with self.writing(key) as tmp:
            shutil.copyfile(local, tmp)


def open_store(root: str | os.PathLike[str]) -> Store:
    """The store at ``root`` (a folder, created if needed, or an fsspec URL)."""
    return Store(root)


def fetch(path: str | os.PathLike[str], cache_dir: str | Path) -> Path:
    """A local path for the input ``path``: itself when local; else a copy of the remote file or
    folder under ``cache_dir`` (fetched once: keyed by the URL and the remote size)."""
    if not is_url(path):
        return _local(path)
    import fsspec

    url = str(path)
    try:
        fs, remote = fsspec.core.url_to_fs(url)
        info = fs.info(remote)
    except FileNotFoundError as err:
        raise FileFormatError(url, "no such remote file or folder") from err
    except (OSError, ValueError, ImportError) as err:
        raise FileFormatError(url, f"cannot be read: {err}") from err
    is_dir = info.get("type") == "directory"
    token = hashlib.sha256(f"{url}|{info.get('size')}|{is_dir}".encode()).hexdigest()[:24]
    name = Path(remote.rstrip("/")).name
    target = Path(cache_dir) / token / name
    if target.exists():
        return target
    from medimg.core.files import atomic_dir, atomic_path

    if is_dir:
        with atomic_dir(target) as tmp:
            fs.get(remote.rstrip("/") + "/", str(tmp), recursive=True)
    else:
        with atomic_path(target) as tmp:
            fs.get_file(remote, str(tmp))
    return target
