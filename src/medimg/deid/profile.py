"""The PS3.15 Annex E confidentiality profile as data: Table E.1-1 and its options.

The table ships as ``profile_annex_e.csv`` beside this module (source and edition in its
header). :func:`load_profile` reads it once; :meth:`Profile.rule_for` finds the row for a tag
(exact tags, the repeating groups 50xx and 60xx, and private attributes);
:meth:`Rule.action` gives the action a row asks for under a set of :class:`Options`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from medimg.errors import ParameterError

__all__ = [
    "Options", "Rule", "Profile", "load_profile", "ACTIONS", "COMPOUND_ACTIONS", "OPTION_COLUMNS",
    "PROFILE_SOURCE", "PrivateTag",
]

#: Single actions of Table E.1-1 (PS3.15 E.1.1).
ACTIONS = ("D", "Z", "X", "K", "C", "U")
#: Compound actions, resolved by the attribute's Type in the IOD (see :mod:`medimg.deid.iod`).
COMPOUND_ACTIONS = ("Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*")

#: Option name -> column of the table; the options medimg implements.
OPTION_COLUMNS = {
    "retain_safe_private": "retain_safe_private",
    "retain_long_modified_dates": "retain_long_modified_dates",
    "retain_patient_characteristics": "retain_patient_characteristics",
    "retain_device_identity": "retain_device_identity",
    "clean_descriptors": "clean_descriptors",
}

PROFILE_SOURCE = (
    "DICOM PS3.15 Table E.1-1 via innolitics/dicom-standard "
    "confidentiality_profile_attributes.json @ 0d01bf11"
)


@dataclass(frozen=True, order=True)
class PrivateTag:
    """A private attribute named independently of where its block sits: group, creator, element offset.

    ``element`` is the low byte of the element number (the ``xx`` of ``(gggg,ooxx)``), so the
    same private attribute matches whichever block ``oo`` its creator was given in a file.
    """

    group: int
    creator: str
    element: int

    @classmethod
    def parse(cls, text: str) -> PrivateTag:
        """Parse ``"GGGG:CREATOR:EE"`` (hex group, creator string, hex element offset)."""
        parts = text.split(":")
        if len(parts) < 3:
            msg = (
                f"private tag {text!r} must be GGGG:CREATOR:EE, e.g. '0019:GEMS_ACQU_01:0B' "
                "(odd hex group, private creator, element offset 00-FF in hex)"
            )
            raise ParameterError(msg)
        group_s, element_s, creator = parts[0], parts[-1], ":".join(parts[1:-1])
        try:
            group, element = int(group_s, 16), int(element_s, 16)
        except ValueError:
            raise ParameterError(f"private tag {text!r}: group and element must be hex numbers") from None
        if group % 2 == 0 or not 0x0009 <= group <= 0xFFFF or not 0 <= element <= 0xFF or not creator:
            msg = f"private tag {text!r}: needs an odd group > 0008, a creator and an element offset 00-FF"
            raise ParameterError(msg)
        return cls(group, creator.strip(), element)

    def __str__(self) -> str:
        return f"{self.group:04X}:{self.creator}:{self.element:02X}"


@dataclass(frozen=True)
class Options:
    """The Annex E options applied on top of the Basic Profile.

    Attributes
    ----------
    retain_long_modified_dates
        Retain Longitudinal Temporal Information with Modified Dates: dates and date-times are
        shifted by one whole number of days per patient (intervals kept); times of day kept.
    retain_patient_characteristics
        Retain Patient Characteristics: age, sex, size, weight, ethnic group, smoking and
        pregnancy status are kept (allergies, pre-medication, special needs are cleaned).
    retain_device_identity
        Retain Device Identity: station name, serial numbers, detector and device IDs kept.
    clean_descriptors
        Clean Descriptors: descriptions and comments are kept with identifying text removed
        (known identifying values of the same object, dates, long digit runs, e-mail addresses).
    safe_private
        Retain Safe Private: private attributes in this list are kept, every other one removed.
    """

    retain_long_modified_dates: bool = False
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    clean_descriptors: bool = False
    safe_private: frozenset[PrivateTag] = field(default_factory=frozenset)

    @property
    def enabled_columns(self) -> tuple[str, ...]:
        """The table columns of the options in force, in table order."""
        cols = []
        if self.safe_private:
            cols.append("retain_safe_private")
        for name in ("retain_device_identity", "retain_patient_characteristics",
                     "retain_long_modified_dates", "clean_descriptors"):
            if getattr(self, name):
                cols.append(OPTION_COLUMNS[name])
        return tuple(cols)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (recorded in the audit trail; no secret, no PHI)."""
        return {
            "retain_long_modified_dates": self.retain_long_modified_dates,
            "retain_patient_characteristics": self.retain_patient_characteristics,
            "retain_device_identity": self.retain_device_identity,
            "clean_descriptors": self.clean_descriptors,
            "safe_private": sorted(str(p) for p in self.safe_private),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Options:
        """Inverse of :meth:`to_dict`."""
        return cls(
            retain_long_modified_dates=bool(data.get("retain_long_modified_dates")),
            retain_patient_characteristics=bool(data.get("retain_patient_characteristics")),
            retain_device_identity=bool(data.get("retain_device_identity")),
            clean_descriptors=bool(data.get("clean_descriptors")),
            safe_private=frozenset(PrivateTag.parse(str(p)) for p in data.get("safe_private") or ()),  # type: ignore[union-attr]
        )

    def method_codes(self) -> list[tuple[str, str]]:
        """(code value, code meaning) of CID 7050 for the profile and each option in force."""
        codes = [("113100", "Basic Application Confidentiality Profile")]
        if self.clean_descriptors:
            codes.append(("113105", "Clean Descriptors Option"))
        if self.retain_long_modified_dates:
            codes.append(("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
        if self.retain_patient_characteristics:
            codes.append(("113108", "Retain Patient Characteristics Option"))
        if self.retain_device_identity:
            codes.append(("113109", "Retain Device Identity Option"))
        if self.safe_private:
            codes.append(("113111", "Retain Safe Private Option"))
        return codes


@dataclass(frozen=True)
class Rule:
    """One row of Table E.1-1."""

    tag: str
    name: str
    basic: str
    options: dict[str, str]

    def action(self, options: Options) -> str:
        """The action under ``options``: an option's entry overrides the Basic Profile's.

        When several options in force have an entry, the most retaining wins (K over C over
        the rest), so that each option keeps what it promises to keep.
        """
        found = [self.options[c] for c in options.enabled_columns if self.options.get(c)]
        if not found:
            return self.basic
        for preferred in ("K", "C"):
            if preferred in found:
                return preferred
        return found[0]


class Profile:
    """Table E.1-1 indexed by tag."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: list[Rule] = list(rules)
        self._exact: dict[int, Rule] = {}
        self.curve: Rule | None = None
        self.overlay: dict[int, Rule] = {}
        self.private: Rule | None = None
        for rule in self.rules:
            t = rule.tag.strip("()").lower()
            if t == "gggg,eeee":
                self.private = rule
            elif t.startswith("50xx"):
                self.curve = rule
            elif t.startswith("60xx"):
                self.overlay[int(t[5:], 16)] = rule
            else:
                self._exact[int(t.replace(",", ""), 16)] = rule

    def rule_for(self, tag: int) -> Rule | None:
        """The row for ``tag`` (an int ``0xggggeeee``), or ``None`` when the table has none.

        Private tags (odd group) map to the "Private attributes" row; (50xx,eeee) to Curve
        Data; (60xx,3000) and (60xx,4000) to Overlay Data and Overlay Comments.
        """
        rule = self._exact.get(tag)
        if rule is not None:
            return rule
        group = tag >> 16
        if group & 1:
            return self.private
        if 0x5000 <= group <= 0x50FF and not group & 1:
            return self.curve
        if 0x6000 <= group <= 0x60FF and not group & 1:
            return self.overlay.get(tag & 0xFFFF)
        return None

    def __len__(self) -> int:
        return len(self.rules)


@lru_cache(maxsize=1)
def load_profile() -> Profile:
    """Read ``profile_annex_e.csv`` (cached)."""
    text = resources.files("medimg.deid").joinpath("profile_annex_e.csv").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    rules = []
    for row in csv.DictReader(lines):
        basic = row["basic"].strip()
        if basic not in ACTIONS + COMPOUND_ACTIONS:  # pragma: no cover - guarded by a test
            raise ValueError(f"profile_annex_e.csv: unknown action {basic!r} for {row['tag']}")
        opts = {c: row[c].strip() for c in OPTION_COLUMNS.values() if row.get(c, "").strip()}
        rules.append(Rule(row["tag"], row["name"], basic, opts))
    return Profile(rules)
