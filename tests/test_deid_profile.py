"""The shipped PS3.15 Table E.1-1: complete, transcribed right, and read into the actions the standard gives."""

from __future__ import annotations

import re

import pytest

from medimg.deid import Options, PrivateTag, load_profile
from medimg.deid.profile import ACTIONS, COMPOUND_ACTIONS
from medimg.errors import ParameterError

# Rows checked against the text of PS3.15 Table E.1-1 (tag: basic action, {option column: action}).
STANDARD_SAMPLE = {
    0x00100010: ("Z", {}),  # Patient's Name
    0x00100020: ("Z", {}),  # Patient ID
    0x00100030: ("Z", {}),  # Patient's Birth Date
    0x00100040: ("Z", {"retain_patient_characteristics": "K"}),  # Patient's Sex
    0x00101010: ("X", {"retain_patient_characteristics": "K"}),  # Patient's Age
    0x00101030: ("X", {"retain_patient_characteristics": "K"}),  # Patient's Weight
    0x00080050: ("Z", {}),  # Accession Number
    0x00080080: ("X/Z/D", {}),  # Institution Name (Retain Institution Identity: K, not implemented)
    0x00080090: ("Z", {}),  # Referring Physician's Name
    0x00081010: ("X/Z/D", {"retain_device_identity": "K"}),  # Station Name
    0x00181000: ("X/Z/D", {"retain_device_identity": "K"}),  # Device Serial Number
    0x00080018: ("U", {}),  # SOP Instance UID
    0x0020000D: ("U", {}),  # Study Instance UID
    0x00200052: ("U", {}),  # Frame of Reference UID
    0x00081155: ("U", {}),  # Referenced SOP Instance UID
    0x00080020: ("Z", {"retain_long_modified_dates": "C"}),  # Study Date
    0x00080023: ("Z/D", {"retain_long_modified_dates": "C"}),  # Content Date
    0x00080030: ("Z", {"retain_long_modified_dates": "C"}),  # Study Time
    0x00080021: ("X/D", {"retain_long_modified_dates": "C"}),  # Series Date
    0x0008002A: ("X/Z/D", {"retain_long_modified_dates": "C"}),  # Acquisition DateTime
    0x0008103E: ("X", {"clean_descriptors": "C"}),  # Series Description
    0x00081030: ("X", {"clean_descriptors": "C"}),  # Study Description
    0x00204000: ("X", {"clean_descriptors": "C"}),  # Image Comments
    0x00081140: ("X/Z/U*", {}),  # Referenced Image Sequence
    0x00082112: ("X/Z/U*", {}),  # Source Image Sequence
    0x00081110: ("X/Z", {}),  # Referenced Study Sequence
    0x00101000: ("X", {}),  # Other Patient IDs
    0x0040A730: ("D", {}),  # Content Sequence
    0x0040A124: ("U", {}),  # UID
    0x00200010: ("Z", {}),  # Study ID
    0x00081070: ("X/Z/D", {}),  # Operators' Name
    0x00880200: ("X", {}),  # Icon Image Sequence
    0xFFFAFFFA: ("X", {}),  # Digital Signatures Sequence
    0x00102110: ("X", {"retain_patient_characteristics": "C", "clean_descriptors": "C"}),  # Allergies
}


def test_table_is_complete_and_every_action_occurs() -> None:
    profile = load_profile()
    assert len(profile) >= 450  # the standard's table has several hundred rows
    basics = {r.basic for r in profile.rules}
    assert set(ACTIONS) - {"K", "C"} <= basics  # K and C appear only as option actions
    assert set(COMPOUND_ACTIONS) <= basics
    option_actions = {a for r in profile.rules for a in r.options.values()}
    assert {"K", "C"} <= option_actions
    assert all(re.fullmatch(r"\((?:[0-9A-F]{4},[0-9A-F]{4}|50xx,xxxx|60xx,[0-9a-f]{4}|gggg,eeee)\)", r.tag)
               for r in profile.rules)


def test_rows_match_the_standard_sample() -> None:
    profile = load_profile()
    for tag, (basic, options) in STANDARD_SAMPLE.items():
        rule = profile.rule_for(tag)
        assert rule is not None, hex(tag)
        assert rule.basic == basic, (rule.name, rule.basic, basic)
        for column, action in options.items():
            assert rule.options.get(column) == action, (rule.name, column)


def test_names_match_the_data_dictionary() -> None:
    """Every exact tag of the table names the attribute pydicom's dictionary gives for it."""
    from pydicom.datadict import dictionary_description

    def norm(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower().replace("(trial)", "").replace("(retired)", ""))

    for rule in load_profile().rules:
        if "x" in rule.tag or "g" in rule.tag:
            continue
        tag = int(rule.tag[1:5] + rule.tag[6:10], 16)
        assert norm(dictionary_description(tag)) == norm(rule.name), rule.tag


def test_repeating_groups_and_private_rows() -> None:
    profile = load_profile()
    assert profile.rule_for(0x50020010).name == "Curve Data"
    assert profile.rule_for(0x60023000).name == "Overlay Data"
    assert profile.rule_for(0x60204000).name == "Overlay Comments"
    assert profile.rule_for(0x60000010) is None  # Overlay Rows: not in the table
    assert profile.rule_for(0x00091001).name == "Private attributes"
    assert profile.rule_for(0x00280010) is None  # Rows: kept


def test_options_override_the_basic_profile() -> None:
    profile = load_profile()
    age = profile.rule_for(0x00101010)
    assert age.action(Options()) == "X"
    assert age.action(Options(retain_patient_characteristics=True)) == "K"
    date = profile.rule_for(0x00080020)
    assert date.action(Options(retain_long_modified_dates=True)) == "C"
    allergies = profile.rule_for(0x00102110)
    assert allergies.action(Options(retain_patient_characteristics=True, clean_descriptors=True)) == "C"
    private = profile.rule_for(0x00091001)
    assert private.action(Options()) == "X"
    assert private.action(Options(safe_private=frozenset({PrivateTag(9, "A", 1)}))) == "C"


def test_private_tag_syntax() -> None:
    tag = PrivateTag.parse("0019:GEMS_ACQU_01:0B")
    assert (tag.group, tag.creator, tag.element) == (0x19, "GEMS_ACQU_01", 0x0B)
    assert str(tag) == "0019:GEMS_ACQU_01:0B"
    assert PrivateTag.parse("0029:SIEMENS CSA: HEADER:10").creator == "SIEMENS CSA: HEADER"
    for bad in ("0018:X:01", "0019:X", "zz19:X:01", "0019::01", "0019:X:100"):
        with pytest.raises(ParameterError):
            PrivateTag.parse(bad)
