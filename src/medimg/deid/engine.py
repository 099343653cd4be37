"""De-identifying one DICOM data set: Table E.1-1 applied to every element, sequences included.

For each element, at the top level and inside every sequence item, the action is the table's
(Basic Profile, overridden by the options in force). Compound actions (X/Z, X/D, Z/D, X/Z/D,
X/Z/U*) resolve by the attribute's Type in the object's IOD (:mod:`medimg.deid.iod`), except
X/Z/U*: reference sequences are always kept with their UIDs replaced, so that references stay
valid (the replaced UIDs identify nobody). As the
standard's Note 4 (E.1.1) invites, elements the table does not list are handled by their VR too:
dates, date-times and times like the table's dates, person names as X/Z/D, and every UID that is
not a registered DICOM UID (``1.2.840.10008.*``: SOP classes, transfer syntaxes...) is replaced
like the table's UIDs, so no instance UID survives and references stay consistent. Private
elements are removed unless safe-listed; group lengths are dropped (they would be wrong).

Replacement values come from :class:`~medimg.deid.keys.Key`: Patient ID and Patient's Name
become the patient's keyed pseudonym, UIDs ``2.25.<HMAC>``, dates move by the patient's keyed
shift (with the Modified Dates option). The same key always gives the same result.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from medimg.deid.iod import UNKNOWN, attribute_type
from medimg.deid.keys import Key
from medimg.deid.profile import Options, Profile, load_profile

__all__ = ["Deidentifier", "DatasetResult", "DUMMY_VALUES", "quarantine_reason"]

#: Dummy values (action D) by VR.
DUMMY_VALUES: dict[str, Any] = {
    "PN": "ANONYMIZED", "LO": "ANONYMIZED", "SH": "ANONYMIZED", "ST": "ANONYMIZED",
    "LT": "ANONYMIZED", "UT": "ANONYMIZED", "UC": "ANONYMIZED", "CS": "ANONYMIZED",
    "AE": "ANONYMIZED", "UR": "urn:x-anonymized", "AS": "000Y", "DA": "19000101",
    "DT": "19000101000000", "TM": "000000", "IS": "0", "DS": "0", "US": 0, "SS": 0, "UL": 0,
    "SL": 0, "UV": 0, "SV": 0, "FL": 0.0, "FD": 0.0, "AT": 0, "OB": b"\0\0", "OW": b"\0\0",
    "OD": b"\0" * 8, "OF": b"\0" * 4, "OL": b"\0" * 4, "OV": b"\0" * 8, "UN": b"\0\0",
}
_BYTES_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
_TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "UC", "CS", "AE"}
_FREE_TEXT_VRS = {"ST", "LT", "UT"}
#: Fallback of compound actions when the IOD's Types are unknown: always conformant.
_FALLBACK = {"Z/D": "D", "X/Z": "Z", "X/D": "D", "X/Z/D": "D", "X/Z/U*": "K"}
_PATIENT_ID, _PATIENT_NAME = 0x00100020, 0x00100010
_STANDARD_UID_ROOT = "1.2.840.10008."
#: UID attributes (not in the table) that name a class, syntax or scheme, never an instance.
_CLASS_UID_SUFFIXES = ("ClassUID", "SyntaxUID", "SchemeUID", "ResourceUID", "CreatorUID")
_SC_CLASS_ROOT = "1.2.840.10008.5.1.4.1.1.7"
_US_CLASS_ROOTS = ("1.2.840.10008.5.1.4.1.1.6.", "1.2.840.10008.5.1.4.1.1.3.")
_DATE_TEXT = re.compile(
    r"\b(?:\d{8}|\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})\b"
)
_LONG_DIGITS = re.compile(r"\d{5,}")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_VR_CACHE: dict[int, str] = {}
_KEYWORD_CACHE: dict[int, str] = {}


@dataclass
class DatasetResult:
    """What :meth:`Deidentifier.deidentify_dataset` did.

    ``patient_key`` and ``original`` hold identifying values: they feed the optional mapping
    file and are never written to the audit trail.
    """

    counts: Counter[str] = field(default_factory=Counter)
    pseudonym: str = ""
    date_shift_days: int | None = None
    patient_key: str = ""
    quarantine_reason: str | None = None
    uids: dict[str, str] = field(default_factory=dict)


@dataclass
class _Context:
    sop_class: str
    shift: int | None
    counts: Counter[str]
    collect: bool
    phi: list[tuple[str, str]] = field(default_factory=list)  # (vr, value) removed or replaced
    pending: list[tuple[Any, int, str]] = field(default_factory=list)  # descriptors to clean


def _vr_of(tag: int, elem: Any) -> str:
    vr = getattr(elem, "VR", None)
    if vr:
        return str(vr)
    cached = _VR_CACHE.get(tag)
    if cached is None:
        from pydicom.datadict import dictionary_VR

        try:
            cached = str(dictionary_VR(tag)).split(" or ")[0]
        except KeyError:
            cached = "UN"
        _VR_CACHE[tag] = cached
    return cached


def _keyword(tag: int) -> str:
    kw = _KEYWORD_CACHE.get(tag)
    if kw is None:
        from pydicom.datadict import keyword_for_tag

        kw = keyword_for_tag(tag) or ""
        _KEYWORD_CACHE[tag] = kw
    return kw


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray)):
        return [bytes(value).decode("latin-1")]
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return [str(value)]


def _text(ds: Any, tag: int) -> str:
    """The value of element ``tag`` as stripped text ("" when absent or empty)."""
    elem = ds.get(tag)
    if elem is None:
        return ""
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    return str(value or "").strip(" \0")


def quarantine_reason(ds: Any) -> str | None:
    """Why ``ds`` may carry identity burned into its pixels, or ``None``.

    Burned In Annotation (0028,0301) YES, or absent from an image of a modality that usually
    burns text in (US, SC, XC; Secondary Capture and Ultrasound SOP classes).
    """
    has_pixels = any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009))
    bia = _text(ds, 0x00280301).upper()
    if bia == "YES":
        return "BurnedInAnnotation is YES"
    if bia or not has_pixels:
        return None
    modality = _text(ds, 0x00080060).upper()
    sop_class = _text(ds, 0x00080016)
    if modality in ("US", "SC", "XC"):
        return f"BurnedInAnnotation absent for modality {modality}"
    if sop_class.startswith(_SC_CLASS_ROOT) or sop_class.startswith(_US_CLASS_ROOTS):
        return "BurnedInAnnotation absent for a Secondary Capture or Ultrasound object"
    return None


class Deidentifier:
    """Applies the profile and options with one key; reusable for any number of data sets.

    Parameters
    ----------
    key
        The secret that makes replacements deterministic (:func:`~medimg.deid.keys.load_key`).
    options
        Annex E options in force (default: the Basic Profile alone).
    profile
        Table E.1-1 (default: the shipped one).
    """

    def __init__(self, key: Key, options: Options | None = None, *, profile: Profile | None = None) -> None:
        self.key = key
        self.options = options or Options()
        self.profile = profile or load_profile()
        self._safe_private = {(p.group, p.creator, p.element) for p in self.options.safe_private}
        self._actions: dict[int, str | None] = {}  # tag -> table action under the options
        self._method: Any = None  # the De-identification Method attributes, built once

    # ------------------------------------------------------------------ public
    def patient_key(self, ds: Any) -> str:
        """The original identity a pseudonym and a date shift are derived from."""
        pid = _text(ds, 0x00100020)
        if pid:
            issuer = _text(ds, 0x00100021)
            return f"id:{issuer}:{pid}" if issuer else f"id:{pid}"
        return f"study:{_text(ds, 0x0020000D)}"

    def deidentify_dataset(self, ds: Any) -> DatasetResult:
        """De-identify ``ds`` (a pydicom Dataset) **in place**; return what was done.

        The caller owns ``ds`` (read it from the input file; the file is never touched). The
        File Meta Information is replaced (PS3.15 E.1.1 step 7).
        """
        from pydicom.config import disable_value_validation
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

        result = DatasetResult(quarantine_reason=quarantine_reason(ds))
        patient_key = self.patient_key(ds)
        result.patient_key = patient_key
        result.pseudonym = self.key.pseudonym(patient_key)
        shift = self.key.date_shift_days(patient_key) if self.options.retain_long_modified_dates else None
        result.date_shift_days = shift
        old_sop = _text(ds, 0x00080018)
        old_study = _text(ds, 0x0020000D)
        old_series = _text(ds, 0x0020000E)
        sop_class = _text(ds, 0x00080016)
        meta = getattr(ds, "file_meta", None)
        syntax = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
        ctx = _Context(sop_class=sop_class, shift=shift, counts=result.counts,
                       collect=self.options.clean_descriptors)
        self._walk(ds, (), ctx, strict=False)
        if ctx.pending:
            self._clean_descriptors(ctx)
        for old in (old_study, old_series, old_sop):
            if old:
                result.uids[old] = self.key.uid(old)
        with disable_value_validation():  # every value set below is built valid
            self._mark(ds, result)
            new_meta = FileMetaDataset()
            for tag, vr, value in (
                (0x00020002, "UI", sop_class or "1.2.840.10008.5.1.4.1.1.7"),
                (0x00020003, "UI", _text(ds, 0x00080018) or self.key.uid("none")),
                (0x00020010, "UI", syntax or "1.2.840.10008.1.2.1"),
                (0x00020012, "UI", PYDICOM_IMPLEMENTATION_UID),
                (0x00020013, "SH", "MEDIMG_DEID"),
            ):
                new_meta.add_new(tag, vr, value)
            ds.file_meta = new_meta
        ds.preamble = b"\0" * 128
        return result

    # ------------------------------------------------------------------ walking
    def _walk(self, ds: Any, path: tuple[str, ...], ctx: _Context, *, strict: bool) -> None:
        profile = self.profile
        options = self.options
        actions = self._actions
        kept_private = self._kept_private(ds) if self._safe_private else frozenset()
        overlay_groups: set[int] = set()
        for tag in list(ds.keys()):
            t = int(tag)
            group, element = t >> 16, t & 0xFFFF
            elem = ds.get_item(tag)
            if element == 0:  # group length: would be wrong after the changes
                del ds[tag]
                ctx.counts["X"] += 1
                continue
            vr = _vr_of(t, elem)
            if group & 1:
                if t in kept_private:
                    ctx.counts["K"] += 1
                    ctx.counts["private_kept"] += 1
                    if vr == "SQ":
                        self._recurse(ds, tag, path + (f"{group:04X}:private",), ctx, strict)
                else:
                    del ds[tag]
                    ctx.counts["X"] += 1
                    ctx.counts["private_removed"] += 1
                continue
            if not path and t in (_PATIENT_ID, _PATIENT_NAME):
                if ctx.collect:
                    ctx.phi.extend((vr, v) for v in _values(ds[tag].value))
                ctx.counts["D"] += 1
                continue  # set to the pseudonym in _mark
            action = actions.get(t, "")
            if action == "":
                rule = profile.rule_for(t)
                action = actions[t] = rule.action(options) if rule is not None else None
            if action is None:
                action = self._extension(t, vr, ds, tag, strict)
            if "/" in action:
                action = self._resolve(action, path, t, ctx)
            self._apply(ds, tag, t, vr, action, path, ctx, strict)
            if action == "X" and 0x6000 <= group <= 0x60FF and element == 0x3000:
                overlay_groups.add(group)
        for group in overlay_groups:  # an overlay without its data is invalid: drop its group
            for tag in [k for k in ds.keys() if int(k) >> 16 == group]:
                del ds[tag]
                ctx.counts["X"] += 1

    def _extension(self, t: int, vr: str, ds: Any, tag: Any, strict: bool) -> str:
        """Action for an element the table does not list (by VR; see the module docstring)."""
        options = self.options
        if vr in ("DA", "DT"):
            return "C" if options.retain_long_modified_dates else "X/Z/D"
        if vr == "TM":
            return "K" if options.retain_long_modified_dates else "X/Z/D"
        if vr == "PN":
            return "D" if strict else "X/Z/D"
        if vr == "UI":
            if _keyword(t).endswith(_CLASS_UID_SUFFIXES):
                return "K"
            values = _values(ds[tag].value)
            if all(v.startswith(_STANDARD_UID_ROOT) or not v for v in values):
                return "K"
            return "U"
        if strict and vr in _FREE_TEXT_VRS:
            return "D"
        return "K"

    def _resolve(self, action: str, path: tuple[str, ...], t: int, ctx: _Context) -> str:
        keyword = _keyword(t)
        kind = attribute_type(ctx.sop_class, path, keyword) if keyword else UNKNOWN
        if kind == UNKNOWN:
            return _FALLBACK[action]
        type1 = kind in ("1", "1C")
        type2 = kind in ("2", "2C")
        if action == "Z/D":
            return "D" if type1 else "Z"
        if action == "X/Z/U*":
            # Reference sequences (Referenced Image, Source Image) are kept whatever their Type,
            # with every UID inside replaced: the replaced UIDs identify nobody, and derived
            # objects (SEG, RTSTRUCT, presentation states) stay linked to their sources.
            return "K"
        # X/Z, X/D, X/Z/D: a required attribute stays, with a dummy (Type 1) or empty (Type 2)
        return "D" if type1 else "Z" if type2 else "X"

    def _apply(self, ds: Any, tag: Any, t: int, vr: str, action: str, path: tuple[str, ...],
               ctx: _Context, strict: bool) -> None:
        from pydicom.dataelem import DataElement
        from pydicom.sequence import Sequence

        counts = ctx.counts
        if action == "K":
            counts["K"] += 1
            if vr == "SQ":
                self._recurse(ds, tag, path + (_keyword(t),), ctx, strict)
            return
        if action == "X":
            if ctx.collect and vr != "SQ":
                ctx.phi.extend((vr, v) for v in _values(ds[tag].value))
            del ds[tag]
            counts["X"] += 1
            return
        if action == "Z":
            if ctx.collect and vr != "SQ":
                ctx.phi.extend((vr, v) for v in _values(ds[tag].value))
            if vr == "SQ":
                value: Any = Sequence([])
            elif vr in _BYTES_VRS:
                value = b""
            else:
                value = None
            ds[tag] = DataElement(t, vr, value)
            counts["Z"] += 1
            return
        if action == "U":
            if vr == "SQ":
                self._recurse(ds, tag, path + (_keyword(t),), ctx, strict)
            else:
                elem = ds[tag]
                olds = _values(elem.value)
                news = [self.key.uid(v.strip()) if v.strip() else v for v in olds]
                elem.value = news if len(news) > 1 else (news[0] if news else elem.value)
            counts["U"] += 1
            return
        if action == "D":
            counts["D"] += 1
            if vr == "SQ":
                self._recurse(ds, tag, path + (_keyword(t),), ctx, True)
                return
            if vr == "UI":
                elem = ds[tag]
                news = [self.key.uid(v.strip()) for v in _values(elem.value) if v.strip()]
                elem.value = news if len(news) > 1 else (news[0] if news else self.key.uid(str(t)))
                return
            if ctx.collect:
                ctx.phi.extend((vr, v) for v in _values(ds[tag].value))
            if vr in ("DA", "DT") and ctx.shift is not None:
                if self._shift(ds, tag, vr, ctx.shift):
                    counts["shifted"] += 1
                    return
            ds[tag] = DataElement(t, vr, DUMMY_VALUES.get(vr, "ANONYMIZED"))
            return
        if action == "C":
            counts["C"] += 1
            if vr == "SQ":
                self._recurse(ds, tag, path + (_keyword(t),), ctx, strict)
            elif vr in ("DA", "DT"):
                if ctx.shift is not None and self._shift(ds, tag, vr, ctx.shift):
                    counts["shifted"] += 1
                else:  # not a readable date: nothing of meaning to keep
                    if ctx.collect:
                        ctx.phi.extend((vr, v) for v in _values(ds[tag].value))
                    del ds[tag]
            elif vr in _TEXT_VRS:
                ctx.pending.append((ds, tag, vr))
            return
        raise ValueError(f"unknown action {action!r}")  # pragma: no cover

    def _recurse(self, ds: Any, tag: Any, path: tuple[str, ...], ctx: _Context, strict: bool) -> None:
        for item in ds[tag].value or ():
            self._walk(item, path, ctx, strict=strict)

    def _kept_private(self, ds: Any) -> frozenset[int]:
        """Tags of safe-listed private elements in ``ds`` and of their creators."""
        kept: set[int] = set()
        creators: dict[int, str] = {}
        for tag in ds.keys():
            t = int(tag)
            group, element = t >> 16, t & 0xFFFF
            if group & 1 and 0x10 <= element <= 0xFF:
                creators[t] = str(ds[tag].value or "").strip()
        for tag in ds.keys():
            t = int(tag)
            group, element = t >> 16, t & 0xFFFF
            if not group & 1 or element < 0x1000:
                continue
            creator_tag = (group << 16) | (element >> 8)
            creator = creators.get(creator_tag)
            if creator is not None and (group, creator, element & 0xFF) in self._safe_private:
                kept.add(t)
                kept.add(creator_tag)
        return frozenset(kept)

    # ------------------------------------------------------------------ values
    @staticmethod
    def _shift(ds: Any, tag: Any, vr: str, days: int) -> bool:
        elem = ds[tag]
        olds = _values(elem.value)
        news = []
        for old in olds:
            new = _shift_date(old.strip(), days) if vr == "DA" else _shift_datetime(old.strip(), days)
            if new is None:
                return False
            news.append(new)
        elem.value = news if len(news) > 1 else (news[0] if news else "")
        return True

    def _clean_descriptors(self, ctx: _Context) -> None:
        values: set[str] = set()
        tokens: set[str] = set()
        for vr, value in ctx.phi:
            value = value.strip()
            if len(value) >= 3:
                values.add(value.upper())
            if vr == "PN":
                tokens.update(p.upper() for p in re.split(r"[\^=\s,]+", value) if len(p) >= 2)
        ordered = sorted(values, key=len, reverse=True)
        for ds, tag, _vr in ctx.pending:
            elem = ds[tag]
            olds = _values(elem.value)
            news = [_scrub(v, ordered, tokens) for v in olds]
            if news != olds:
                ctx.counts["cleaned"] += 1
            elem.value = news if len(news) > 1 else (news[0] if news else elem.value)

    def _mark(self, ds: Any, result: DatasetResult) -> None:
        """Pseudonyms, Patient Identity Removed and the De-identification Method attributes."""
        from pydicom.dataelem import DataElement

        if self._method is None:
            self._method = self._method_elements()
        ds[_PATIENT_ID] = DataElement(_PATIENT_ID, "LO", result.pseudonym)
        # family^given: a name without components is the retired PN form
        ds[_PATIENT_NAME] = DataElement(_PATIENT_NAME, "PN", "ANON^" + result.pseudonym[4:])
        for tag, vr, value in self._method:
            if vr == "SQ":  # a fresh sequence for each output: nothing shared between data sets
                value = _code_sequence(value)
            ds[tag] = DataElement(tag, vr, value)

    def _method_elements(self) -> list[tuple[int, str, Any]]:
        """(tag, VR, value) of Patient Identity Removed and the De-identification Method
        attributes for the options in force (CID 7050 codes); built once, shared by all outputs."""
        from medimg import __version__

        options = self.options
        names = ["Basic Profile"] + [meaning.replace(" Option", "") for _, meaning in options.method_codes()[1:]]
        return [
            (0x00120062, "CS", "YES"),
            (0x00120063, "LO", [f"medimg {__version__} PS3.15 E.1"] + [n[:64] for n in names]),
            (0x00120064, "SQ", options.method_codes()),
            (0x00280303, "CS", "MODIFIED" if options.retain_long_modified_dates else "REMOVED"),
        ]


# ---------------------------------------------------------------------------------- helpers
def _code_sequence(codes: list[tuple[str, str]]) -> Any:
    """De-identification Method Code Sequence items (DCM codes) for (value, meaning) pairs."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    items = []
    for value, meaning in codes:
        item = Dataset()
        item.add_new(0x00080100, "SH", value)
        item.add_new(0x00080102, "SH", "DCM")
        item.add_new(0x00080104, "LO", meaning)
        items.append(item)
    return Sequence(items)


def _scrub(text: str, values: list[str], tokens: set[str]) -> str:
    """Remove identifying values, name parts, dates, long numbers and e-mail addresses from text."""
    out = text
    upper = out.upper()
    for value in values:
        start = upper.find(value)
        while start >= 0:
            out = out[:start] + out[start + len(value):]
            upper = out.upper()
            start = upper.find(value)
    if tokens:
        out = re.sub(r"[A-Za-z][A-Za-z'-]+", lambda m: "" if m.group(0).upper() in tokens else m.group(0), out)
    out = _EMAIL.sub("", out)
    out = _DATE_TEXT.sub("", out)
    out = _LONG_DIGITS.sub("", out)
    return re.sub(r"\s{2,}", " ", out).strip()


def _parse_date(text: str) -> dt.date | None:
    text = text.replace(".", "")  # ACR-NEMA style YYYY.MM.DD
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _shift_date(text: str, days: int) -> str | None:
    if not text:
        return ""
    date = _parse_date(text)
    if date is None:
        return None
    try:
        return (date + dt.timedelta(days=days)).strftime("%Y%m%d")
    except OverflowError:
        return None


_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(.*)$")


def _shift_datetime(text: str, days: int) -> str | None:
    if not text:
        return ""
    m = _DT.match(text)
    if m is None:
        return None
    year, month, day, rest = m.group(1), m.group(2), m.group(3), m.group(4)
    try:
        date = dt.date(int(year), int(month or 1), int(day or 1)) + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    full = date.strftime("%Y%m%d")
    width = 4 + (2 if month else 0) + (2 if day else 0)
    return full[:width] + (rest if day else "")
