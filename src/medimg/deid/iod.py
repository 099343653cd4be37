"""Attribute Types (1, 1C, 2, 2C, 3) per IOD, to resolve the compound actions of Table E.1-1.

``X/Z`` means "remove, unless the IOD needs the attribute present (Type 2): then empty it";
``X/D``, ``Z/D`` and ``X/Z/D`` bring in Type 1 (a dummy value). Which applies depends on the
IOD of the object and on where the attribute sits (top level or inside a sequence). The module
tables of PS3.3 come from the JSON data that highdicom ships (``highdicom/_standard``), read
directly from its package folder without importing highdicom. When they are not installed, or
the SOP Class is not known, :func:`attribute_type` returns :data:`UNKNOWN` and the caller keeps
the attribute with an empty or dummy value (always conformant, never identifying). The part of
the tables that matters here is cached as a small JSON file in the user's cache folder.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path

__all__ = ["attribute_type", "UNKNOWN", "iod_name", "tables_available"]

#: Returned when no IOD information is available for the object.
UNKNOWN = "unknown"
_STRENGTH = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4}


@lru_cache(maxsize=1)
def _standard_dir() -> Path | None:
    spec = importlib.util.find_spec("highdicom")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "_standard"
    needed = ("sop_class_iod_map.json", "iod_module_map.json", "module_attribute_map.json")
    return folder if all((folder / n).is_file() for n in needed) else None


def tables_available() -> bool:
    """True when the PS3.3 module tables can be read."""
    return _standard_dir() is not None


@lru_cache(maxsize=1)
def _load() -> tuple[dict, dict, dict] | None:
    folder = _standard_dir()
    if folder is None:
        return None
    try:
        sop = json.loads((folder / "sop_class_iod_map.json").read_text())
        iods = json.loads((folder / "iod_module_map.json").read_text())
        modules = json.loads((folder / "module_attribute_map.json").read_text())
    except (OSError, ValueError):
        return None
    return sop, iods, modules


def iod_name(sop_class_uid: str) -> str | None:
    """The IOD name of a SOP Class (e.g. ``"ct-image"``), or ``None`` when unknown."""
    maps = _compact()
    if maps is None:
        return None
    return maps[0].get(str(sop_class_uid))


def _wanted_keywords() -> set[str]:
    """Keywords whose Type can matter: compound-action rows, every DA/DT/TM/PN attribute, and
    what tells an image IOD (Rows, Columns, Pixel Data: :mod:`medimg.deid.integrity`)."""
    from pydicom.datadict import DicomDictionary, keyword_for_tag

    from medimg.deid.profile import load_profile

    wanted = {entry[4] for entry in DicomDictionary.values() if entry[0] in ("DA", "DT", "TM", "PN") and entry[4]}
    wanted.update(("Rows", "Columns", "PixelData"))
    for rule in load_profile().rules:
        if "/" in rule.basic and rule.tag[1:5].isalnum() and "x" not in rule.tag and "g" not in rule.tag:
            kw = keyword_for_tag(int(rule.tag[1:5] + rule.tag[6:10], 16))
            if kw:
                wanted.add(kw)
    return wanted


def _cache_file(wanted: set[str]) -> Path | None:
    import hashlib
    import os

    try:
        from importlib.metadata import version

        hd_version = version("highdicom")
    except Exception:  # noqa: BLE001
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256("\n".join(sorted(wanted)).encode()).hexdigest()[:12]
    return base / "medimg" / f"iod-types-highdicom-{hd_version}-{digest}.json"


@lru_cache(maxsize=1)
def _compact() -> tuple[dict[str, str], dict[str, dict[str, str]]] | None:
    """(SOP class -> IOD, IOD -> {"path/keyword": strictest type}), from a small cache file.

    Built once from highdicom's 22 MB tables (about half a second) and cached in the user's
    cache folder (``$XDG_CACHE_HOME/medimg``), so later processes start at once.
    """
    if _standard_dir() is None:
        return None
    wanted = _wanted_keywords()
    cache = _cache_file(wanted)
    if cache is not None and cache.is_file():
        try:
            data = json.loads(cache.read_text())
            return data["sop"], data["iods"]
        except (OSError, ValueError, KeyError):
            pass
    maps = _load()
    if maps is None:
        return None
    sop, iods, modules = maps
    compact: dict[str, dict[str, str]] = {}
    for iod, module_list in iods.items():
        out: dict[str, str] = {}
        for module in module_list:
            for attr in modules.get(module["key"], ()):
                if attr["keyword"] not in wanted:
                    continue
                key = "/".join([*attr["path"], attr["keyword"]])
                kind = attr["type"]
                old = out.get(key)
                if old is None or _STRENGTH.get(kind, 9) < _STRENGTH.get(old, 9):
                    out[key] = kind
        compact[iod] = out
    if cache is not None:
        try:
            from medimg.core.files import atomic_path

            with atomic_path(cache) as tmp:
                tmp.write_text(json.dumps({"sop": sop, "iods": compact}, separators=(",", ":")))
        except OSError:
            pass
    return sop, compact


def attribute_type(sop_class_uid: str | None, path: tuple[str, ...], keyword: str) -> str | None:
    """The strictest Type of ``keyword`` at ``path`` (enclosing sequence keywords) in the IOD.

    Returns ``"1"``, ``"1C"``, ``"2"``, ``"2C"`` or ``"3"``; ``None`` when the IOD does not
    contain the attribute there; :data:`UNKNOWN` when the SOP Class or the tables are unknown.
    """
    if not sop_class_uid:
        return UNKNOWN
    maps = _compact()
    iod = maps[0].get(str(sop_class_uid)) if maps is not None else None
    if iod is None:
        return UNKNOWN
    return maps[1].get(iod, {}).get("/".join([*path, keyword]))
