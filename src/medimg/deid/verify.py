"""Checking a de-identified folder against its input: no identifying value of the input may remain.

From every input file, the values of every element the profile removes or replaces (names,
IDs, dates, UIDs, free text, private elements; inside sequences too) are collected. Then every
element of every output file (top level, nested and private, binary values included) is
searched for them:

* UIDs: an output UID equal to an input instance UID, or one quoted in text;
* names: a component of an input person name (3+ letters) as a word of an output text;
* identifiers and free text: an input value (3+ characters) equal to an output value, or one
  of 6+ characters inside an output text; an input digit run (4+) as a number in output text;
* dates: an input date as an output DA/DT value or written in output text (YYYYMMDD,
  YYYY-MM-DD, DD/MM/YYYY...); dates are compared with the output made from the same input
  (paired through the audit trail's content hashes), because a shifted date of one patient
  may fall on a real date of another;
* same attribute, same value: an output attribute holding the value the same input attribute
  held although the profile removes or replaces it.

Values that the input also holds in attributes the profile keeps (a manufacturer's name...) are
not searched for. Findings name the file, the element and the input attribute, never the value.

The audit trail is checked too (:func:`~medimg.deid.audit.check_chain`: chain, head and, given
the key, every HMAC), and the output folder against it: every output the trail records must be
there with the SHA-256 recorded, and every output file there must be recorded.
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimg.deid.audit import check_chain, head_path, read_records
from medimg.deid.engine import _CLASS_UID_SUFFIXES, _keyword, _values, _vr_of
from medimg.deid.keys import Key
from medimg.deid.profile import Options, Profile, load_profile
from medimg.deid.run import AUDIT_NAME, HEAD_NAME
from medimg.errors import FileFormatError

__all__ = ["verify", "VerifyReport", "Finding"]

_TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "UC", "CS", "AE", "UR", "AS"}
_BYTES_VRS = {"OB", "OW", "UN", "OD", "OF", "OL", "OV"}
_WORD = re.compile(r"[A-Z]{3,}")
_DIGITS = re.compile(r"\d{4,}")
_UID_IN_TEXT = re.compile(r"\d+(?:\.\d+){3,}")
_PRINTABLE = re.compile(rb"[\x20-\x7e]{6,}")
_DATE_FORMS = (
    (re.compile(r"\b(\d{4})[-./](\d{1,2})[-./](\d{1,2})\b"), (1, 2, 3)),
    (re.compile(r"\b(\d{1,2})[-./](\d{1,2})[-./](\d{4})\b"), (3, 2, 1)),
    (re.compile(r"\b(\d{1,2})[-./](\d{1,2})[-./](\d{4})\b"), (3, 1, 2)),
    (re.compile(r"\b(\d{8})\b"), None),
)


@dataclass(frozen=True)
class Finding:
    """An identifying input value found in an output file (the value itself is not repeated)."""

    output: str
    location: str
    kind: str
    source: str
    hint: str

    def __str__(self) -> str:
        return f"{self.output}: {self.location}: {self.kind} of input {self.source} ({self.hint})"


@dataclass
class VerifyReport:
    """Result of :func:`verify`.

    ``ok`` when nothing identifying was found, every output was read, the audit trail checks
    and the outputs are exactly those it records. ``audit_authenticated``: the trail's HMACs
    were checked with the key (without it, only its chain and head: see ``docs/deid.md``).
    ``output_problems``: outputs missing, changed since written, or not recorded.
    """

    n_inputs: int = 0
    n_outputs: int = 0
    n_paired: int = 0
    findings: list[Finding] = field(default_factory=list)
    audit_ok: bool = True
    audit_problem: str = ""
    audit_records: int = 0
    audit_authenticated: bool = False
    unreadable_outputs: list[str] = field(default_factory=list)
    output_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there are no findings, every output was read, the audit trail is intact and
        the outputs match it."""
        return not self.findings and self.audit_ok and not self.unreadable_outputs and not self.output_problems


class _Identifying:
    """Identifying values of one input file, by kind, with the attribute they came from."""

    def __init__(self) -> None:
        self.uids: dict[str, str] = {}
        self.dates: dict[str, str] = {}
        self.values: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.digits: dict[str, str] = {}
        self.same: dict[str, set[str]] = defaultdict(set)
        self.retained: set[str] = set()

    def drop_retained(self) -> None:
        for bucket in (self.values, self.names, self.digits):
            for value in list(bucket):
                if value in self.retained:
                    del bucket[value]


def _tag_name(tag: int) -> str:
    kw = _keyword(tag) if not (tag >> 16) & 1 else "private"
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {kw}".strip()


def _read(path: Path) -> Any:
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


def _identifying_action(profile: Profile, options: Options, tag: int, vr: str, values: list[str]) -> bool:
    """True when the profile removes or replaces this element (its input value identifies)."""
    group = tag >> 16
    if group & 1:
        return True  # safe-listed private elements are checked by the caller
    rule = profile.rule_for(tag)
    if rule is None:
        if vr in ("DA", "DT", "PN"):
            return True
        if vr == "TM":
            return not options.retain_long_modified_dates
        if vr == "UI":
            return not _keyword(tag).endswith(_CLASS_UID_SUFFIXES) and any(
                v and not v.startswith("1.2.840.10008.") for v in values)
        return False
    action = rule.action(options)
    if action == "K":
        return False
    if action == "C":
        return vr in ("DA", "DT")  # shifted dates: the original must not remain
    return True


def _removes_sequence(profile: Profile, options: Options, tag: int) -> bool:
    """True when the profile removes or empties a sequence whole (all its content then identifies).

    Compound actions count as removal (a Type 1 sequence kept with a dummy value may still
    carry its items' values, which verification then reports). Other sequences (kept, cleaned,
    dummy, X/Z/U* reference sequences) are walked: each nested element is judged by its own row.
    """
    if (tag >> 16) & 1:
        return True
    rule = profile.rule_for(tag)
    return rule is not None and rule.action(options) in ("X", "Z", "X/Z", "X/D", "Z/D", "X/Z/D")


def _collect(ds: Any, profile: Profile, options: Options, out: _Identifying, safe: set[tuple[int, str, int]],
             path: str = "", inherited: bool = False) -> None:
    creators: dict[int, str] = {}
    for elem in ds:
        tag = int(elem.tag)
        group, element = tag >> 16, tag & 0xFFFF
        if group & 1 and 0x10 <= element <= 0xFF:
            creators[tag] = str(elem.value or "").strip()
    for elem in ds:
        tag = int(elem.tag)
        if tag & 0xFFFF == 0:
            continue
        vr = _vr_of(tag, elem)
        group, element = tag >> 16, tag & 0xFFFF
        here = f"{path}({group:04X},{element:04X})"
        if vr == "SQ":
            identifying = inherited or _removes_sequence(profile, options, tag)
            if group & 1 and element >= 0x1000:
                creator = creators.get((group << 16) | (element >> 8), "")
                identifying = identifying and (group, creator, element & 0xFF) not in safe
            for i, item in enumerate(elem.value or ()):
                _collect(item, profile, options, out, safe, f"{here}[{i}]/", identifying)
            continue
        raw = elem.value
        if vr in _BYTES_VRS or isinstance(raw, (bytes, bytearray)):
            if not group & 1 or tag in (0x7FE00010,):
                continue  # standard binary data (pixels, LUTs) is not text
            values = [m.decode("latin-1") for m in _PRINTABLE.findall(bytes(raw or b""))]
        else:
            values = [v.strip() for v in _values(raw) if str(v).strip()]
        if not values:
            continue
        identifying = inherited or _identifying_action(profile, options, tag, vr, values)
        if group & 1 and element >= 0x1000:
            creator = creators.get((group << 16) | (element >> 8), "")
            if (group, creator, element & 0xFF) in safe:
                identifying = False
        if group & 1 and 0x10 <= element <= 0xFF:
            identifying = False  # a private creator names a vendor, not a person
        source = _tag_name(tag)
        if not identifying:
            for v in values:
                up = v.upper()
                out.retained.add(up)
                out.retained.update(_WORD.findall(up))
                out.retained.update(_DIGITS.findall(up))
            continue
        same_key = re.sub(r"\[\d+\]", "", here)
        for v in values:
            up = v.upper()
            out.same[same_key].add(up)
            if vr == "UI":
                if not up.startswith("1.2.840.10008."):
                    out.uids[up] = source
            elif vr == "DA":
                if len(up) >= 8:
                    out.dates[up.replace(".", "")[:8]] = source
            elif vr == "DT":
                if len(up) >= 8:
                    out.dates[up[:8]] = source
            elif vr == "TM" or vr in ("IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "AT", "UV", "SV"):
                continue  # short numbers: only the same-attribute check
            else:
                if len(up) >= 3:
                    out.values[up] = source
                if vr == "PN":
                    for part in re.split(r"[\^=\s,]+", up):
                        if len(part) >= 3 and part.isalpha():
                            out.names[part] = source
                for digits in _DIGITS.findall(up):
                    out.digits[digits] = source
                for date in _dates_in_text(up):
                    out.dates[date] = source


def _dates_in_text(text: str) -> set[str]:
    found: set[str] = set()
    for pattern, order in _DATE_FORMS:
        for m in pattern.finditer(text):
            if order is None:
                value = m.group(1)
            else:
                y, mo, d = (m.group(i) for i in order)
                value = f"{int(y):04d}{int(mo):02d}{int(d):02d}"
            if 1800 <= int(value[:4]) <= 2200 and 1 <= int(value[4:6]) <= 12 and 1 <= int(value[6:]) <= 31:
                found.add(value)
    return found


def _hint(value: str) -> str:
    return f"{len(value)} characters" if len(value) < 4 else f"{value[0]}...{value[-1]}, {len(value)} characters"


class _Matcher:
    def __init__(self, glob: _Identifying) -> None:
        self.glob = glob
        self.long_values = sorted((v for v in glob.values if len(v) >= 6), key=len, reverse=True)

    def check(self, ds: Any, rel: str, pair: _Identifying | None, findings: list[Finding],
              path: str = "") -> None:
        glob = self.glob
        dates = pair.dates if pair is not None else glob.dates
        for elem in ds:
            tag = int(elem.tag)
            vr = _vr_of(tag, elem)
            here = f"{path}({tag >> 16:04X},{tag & 0xFFFF:04X})"
            if vr == "SQ":
                for i, item in enumerate(elem.value or ()):
                    self.check(item, rel, pair, findings, f"{here}[{i}]/")
                continue
            raw = elem.value
            if isinstance(raw, (bytes, bytearray)):
                if tag == 0x7FE00010 or not (tag >> 16) & 1:
                    continue
                values = [m.decode("latin-1").upper() for m in _PRINTABLE.findall(bytes(raw))]
            else:
                values = [str(v).strip().upper() for v in _values(raw) if str(v).strip()]

            def add(kind: str, source: str, value: str, here: str = here) -> None:
                findings.append(Finding(rel, here, kind, source, _hint(value)))

            same = pair.same.get(re.sub(r"\[\d+\]", "", here)) if pair is not None else None
            for v in values:
                if same and v in same:
                    add("same value", _tag_name(tag), v)
                    continue
                if vr == "UI":
                    if v in glob.uids:
                        add("UID", glob.uids[v], v)
                    continue
                if vr == "DA":
                    if v.replace(".", "")[:8] in dates:
                        add("date", dates[v.replace(".", "")[:8]], v)
                    continue
                if vr == "DT":
                    if v[:8] in dates:
                        add("date", dates[v[:8]], v)
                    continue
                if vr not in _TEXT_VRS and not isinstance(raw, (bytes, bytearray)):
                    continue
                self._text(v, glob, dates, add)

    def _text(self, v: str, glob: _Identifying, dates: dict[str, str], add: Callable[[str, str, str], None]) -> None:
        if v in glob.values:
            add("value", glob.values[v], v)
            return
        for long in self.long_values:
            if long in v:
                add("value inside text", glob.values[long], long)
                return
        for word in _WORD.findall(v):
            if word in glob.names:
                add("name", glob.names[word], word)
                return
        for digits in _DIGITS.findall(v):
            if digits in glob.digits:
                add("number", glob.digits[digits], digits)
                return
        for uid in _UID_IN_TEXT.findall(v):
            if uid in glob.uids:
                add("UID in text", glob.uids[uid], uid)
                return
        for date in _dates_in_text(v):
            if date in dates:
                add("date in text", dates[date], date)
                return


def _output_files(out_dir: Path) -> list[Path]:
    files = []
    for path in sorted(out_dir.rglob("*")):
        if path.is_file() and path.name not in (AUDIT_NAME, HEAD_NAME) and not path.name.startswith("."):
            files.append(path)
    return files


def verify(
    out_dir: str | Path,
    against: str | Path,
    *,
    options: Options | None = None,
    key: Key | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Search every output file under ``out_dir`` for identifying values of the inputs under ``against``.

    Parameters
    ----------
    out_dir
        The de-identified folder (with its ``deid-audit.jsonl`` when made by :func:`deidentify`).
    against
        The original input folder (or file).
    options
        The options the output was made with; default: those recorded in the audit trail
        (Basic Profile when there is none).
    key
        The de-identification key: with it the audit trail's HMACs are checked too (a trail
        recomputed after an edit is then detected); without it only its chain and head.
    progress
        ``progress(done, total)`` over inputs then outputs.
    """
    from medimg.core.files import sha256_file
    from medimg.io.dicom.scan import list_files

    out_dir, against = Path(out_dir), Path(against)
    if not out_dir.is_dir():
        raise FileFormatError(out_dir, "no such folder")
    if not against.exists():
        raise FileFormatError(against, "no such file or folder")
    report = VerifyReport()
    audit = out_dir / AUDIT_NAME
    pairs: dict[str, list[str]] = defaultdict(list)  # input sha256 -> outputs
    recorded: dict[str, str] = {}  # output -> its SHA-256 when written
    outputs = _output_files(out_dir)
    if audit.exists() or head_path(audit).exists() or outputs:
        chain = check_chain(audit, key=key)
        report.audit_ok, report.audit_problem = chain.ok, chain.problem
        report.audit_records, report.audit_authenticated = chain.n_records, chain.ok and chain.authenticated
    renamed: dict[str, str] = {}
    if audit.exists():
        for record in read_records(audit):
            if record.get("event") == "run" and options is None:
                options = Options.from_dict(record.get("options") or {})
            if record.get("event") == "file" and record.get("status") in ("ok", "duplicate"):
                pairs[record["input_sha256"]].append(record["output"])
                if record.get("output_sha256"):
                    recorded[record["output"]] = record["output_sha256"]
            if record.get("event") == "renamed":
                renamed[record["from"]] = record["to"]
                recorded.pop(record["from"], None)
                recorded[record["to"]] = record["output_sha256"]
    for sha, outs in pairs.items():
        pairs[sha] = [renamed.get(o, o) for o in outs]
    if report.audit_ok:
        on_disk = {p.relative_to(out_dir).as_posix(): p for p in outputs}
        for rel, digest in sorted(recorded.items()):
            if rel not in on_disk:
                report.output_problems.append(f"{rel}: recorded in the audit trail but missing")
            elif sha256_file(on_disk[rel]) != digest:
                report.output_problems.append(f"{rel}: changed since it was written (SHA-256 differs from the trail)")
        for rel in sorted(set(on_disk) - set(recorded)):
            report.output_problems.append(f"{rel}: not recorded in the audit trail")
    options = options or Options()
    safe = {(p.group, p.creator, p.element) for p in options.safe_private}
    profile = load_profile()

    inputs = list_files(against)
    total = len(inputs) + len(outputs)
    report.n_inputs, report.n_outputs = len(inputs), len(outputs)
    glob = _Identifying()
    by_output: dict[str, _Identifying] = {}
    done = 0
    for path in inputs:
        done += 1
        try:
            ds = _read(path)
        except Exception:  # noqa: BLE001 - an unreadable input has nothing to find
            continue
        ident = _Identifying()
        _collect(ds, profile, options, ident, safe)
        ident.drop_retained()
        glob.retained |= ident.retained
        for name in ("uids", "dates", "values", "names", "digits"):
            getattr(glob, name).update(getattr(ident, name))
        outs = pairs.get(sha256_file(path), [])
        for rel in outs:
            by_output[rel] = ident
        if progress is not None:
            progress(done, total)
    glob.drop_retained()
    matcher = _Matcher(glob)
    for path in outputs:
        done += 1
        rel = path.relative_to(out_dir).as_posix()
        try:
            ds = _read(path)
        except Exception:  # noqa: BLE001
            report.unreadable_outputs.append(rel)
            continue
        pair = by_output.get(rel)
        if pair is not None:
            report.n_paired += 1
        matcher.check(ds, rel, pair, report.findings)
        if hasattr(ds, "file_meta"):
            matcher.check(ds.file_meta, rel, None, report.findings)
        if progress is not None:
            progress(done, total)
    return report
