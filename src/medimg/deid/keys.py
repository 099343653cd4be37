"""The secret key and what is derived from it: UIDs, pseudonyms, date shifts, file references.

Everything that replaces an identifier is a keyed HMAC-SHA256 of the original, so a run is
deterministic for a given key (the same input always gives the same output, across runs and
machines) and nobody without the key can recompute or reverse the mapping.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from medimg.core.files import atomic_path
from medimg.errors import FileFormatError, ParameterError

__all__ = ["Key", "load_key", "generate_key_file", "MIN_KEY_BYTES"]

#: A key file must hold at least this many bytes of secret (after stripping white space).
MIN_KEY_BYTES = 16


class Key:
    """A de-identification secret and the keyed derivations medimg uses.

    Parameters
    ----------
    secret
        The key material (at least :data:`MIN_KEY_BYTES` bytes).
    """

    __slots__ = ("_secret", "_uid_cache")

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_KEY_BYTES:
            msg = f"the de-identification key must have at least {MIN_KEY_BYTES} bytes, got {len(secret)}"
            raise ParameterError(msg)
        self._secret = bytes(secret)
        self._uid_cache: dict[str, str] = {}

    def digest(self, purpose: str, value: str) -> bytes:
        """HMAC-SHA256 of ``value`` under this key, separated by ``purpose``."""
        return hmac.new(self._secret, purpose.encode() + b"\0" + value.encode("utf-8", "surrogateescape"),
                        hashlib.sha256).digest()

    @property
    def key_id(self) -> str:
        """A public fingerprint of the key (16 hex digits): tells two keys apart, reveals nothing."""
        return self.digest("key-id", "medimg").hex()[:16]

    def uid(self, old: str) -> str:
        """The replacement for UID ``old``: ``2.25.<128-bit integer>`` (PS3.5 B.2), consistent everywhere."""
        new = self._uid_cache.get(old)
        if new is None:
            new = "2.25." + str(int.from_bytes(self.digest("uid", old)[:16], "big"))
            if len(self._uid_cache) < 1_000_000:
                self._uid_cache[old] = new
        return new

    def pseudonym(self, patient_key: str) -> str:
        """The patient's pseudonym (``ANON`` + 16 hex digits) used for Patient ID and Patient's Name."""
        return "ANON" + self.digest("patient", patient_key).hex()[:16].upper()

    def date_shift_days(self, patient_key: str) -> int:
        """Whole days (negative, 365 to 3649 days into the past) by which this patient's dates move."""
        n = int.from_bytes(self.digest("date-shift", patient_key)[:4], "big")
        return -(365 + n % 3285)

    def file_ref(self, relative_path: str) -> str:
        """A keyed reference to an input file's relative path (the path itself may hold PHI)."""
        return self.digest("file", relative_path).hex()[:32]


def load_key(path: str | Path) -> Key:
    """Read a key file (raw bytes; surrounding white space ignored).

    Raises
    ------
    FileFormatError
        The file does not exist or is too short; the message says how to make one.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"no key file here; create one with `medimg deid keygen {path}` and keep it secret"
        raise FileFormatError(path, msg)
    secret = path.read_bytes().strip()
    if len(secret) < MIN_KEY_BYTES:
        msg = (f"the key file holds {len(secret)} bytes; it needs at least {MIN_KEY_BYTES} "
               f"(create one with `medimg deid keygen NEWFILE`)")
        raise FileFormatError(path, msg)
    return Key(secret)


def generate_key_file(path: str | Path) -> Path:
    """Write a new random key (32 bytes as 64 hex digits) to ``path``, readable by its owner only.

    Refuses to overwrite an existing file: replacing a key breaks the link to earlier runs.
    """
    path = Path(path)
    if path.exists():
        raise ParameterError(f"{path}: exists already; a key is never overwritten")
    with atomic_path(path) as tmp:
        tmp.write_text(secrets.token_hex(32) + "\n")
    os.chmod(path, 0o600)
    return path
