"""De-identification of a synthetic cohort with PHI everywhere: actions, UIDs, options, audit, verify, resume."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medimg.cli.main import main
from medimg.datasets import make_cohort
from medimg.deid import (
    AUDIT_NAME,
    HEAD_NAME,
    Deidentifier,
    Key,
    Options,
    PrivateTag,
    check_chain,
    load_key,
    read_records,
    verify,
)
from medimg.pipeline.deid import deidentify

KEY = Key(b"medimg-test-key-0123456789abcdef")
CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"
RTSTRUCT_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


def _read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def _series_files(root: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for f in sorted(root.rglob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if ds.SOPClassUID == CT_CLASS and "BurnedInAnnotation" not in ds and "PRIVATE" not in str(ds.get("ImageComments", "")):
            out.setdefault(ds.SeriesInstanceUID, []).append(f)
    return out


def _rich(ct: Path, out: Path) -> Dataset:
    """A CT slice with PHI in nested sequences, private elements, free text, overlays and dates."""
    ds = _read(ct)
    family = str(ds.PatientName).split("^")[0]
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["rich", str(ds.SOPInstanceUID)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = 99
    ds.ImageComments = f"PRIVATE NOTE: {family} seen {ds.StudyDate}, MRN {ds.PatientID}"
    ds.PatientWeight = "71.5"
    ds.PatientSize = "1.68"
    ds.OperatorsName = "TECHNICIAN^TOM"
    ds.PerformingPhysicianName = "SURGEON^SALLY"
    ds.InstanceCreationDate = ds.StudyDate
    ds.InstanceCreationTime = "101010"
    ds.AcquisitionDateTime = ds.StudyDate + "101500"
    other = Dataset()
    other.PatientID = "OTHER-4455667"
    other.IssuerOfPatientID = "MERCY"
    ds.OtherPatientIDsSequence = Sequence([other])
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref.ReferencedSOPInstanceUID = ds.StudyInstanceUID
    ds.ReferencedStudySequence = Sequence([ref])
    inst = Dataset()
    inst.ReferencedSOPClassUID = CT_CLASS
    inst.ReferencedSOPInstanceUID = _read(ct).SOPInstanceUID
    ds.ReferencedInstanceSequence = Sequence([inst])  # not in the table: kept, UIDs inside replaced
    request = Dataset()
    request.RequestedProcedureID = "RP-778899"
    request.ScheduledProcedureStepID = "SPS-112233"
    request.ReasonForTheRequestedProcedure = f"cough; referred by {str(ds.ReferringPhysicianName).split('^')[0]}"
    ds.RequestAttributesSequence = Sequence([request])
    block = ds.private_block(0x0009, "ACME_PRIVATE", create=True)
    block.add_new(0x01, "LO", str(ds.PatientName))
    block.add_new(0x02, "DS", "3.5")
    block.add_new(0x03, "UN", f"MRN={ds.PatientID}".encode())
    ds.add_new(0x60000010, "US", 4)
    ds.add_new(0x60000011, "US", 4)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", b"\xff\x00")
    ds.save_as(out, enforce_file_format=True)
    return ds


def _rtstruct(cts: list[Path], out: Path) -> Dataset:
    first = _read(cts[0])
    ds = Dataset()
    ds.SOPClassUID = RTSTRUCT_CLASS
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["rtstruct", str(first.SeriesInstanceUID)])
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
               "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        setattr(ds, kw, first.get(kw, ""))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["rtseries", str(first.SeriesInstanceUID)])
    ds.SeriesNumber = 10
    ds.Manufacturer = "ACME"
    ds.OperatorsName = "DOSIMETRIST^DAN"
    ds.StructureSetLabel = "LESION"
    ds.StructureSetDate = first.StudyDate
    ds.StructureSetTime = "120000"
    contour_images = []
    for f in cts:
        item = Dataset()
        item.ReferencedSOPClassUID = CT_CLASS
        item.ReferencedSOPInstanceUID = _read(f).SOPInstanceUID
        contour_images.append(item)
    series_item = Dataset()
    series_item.SeriesInstanceUID = first.SeriesInstanceUID
    series_item.ContourImageSequence = Sequence(contour_images)
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_item.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_item.RTReferencedSeriesSequence = Sequence([series_item])
    for_item = Dataset()
    for_item.FrameOfReferenceUID = first.FrameOfReferenceUID
    for_item.RTReferencedStudySequence = Sequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = Sequence([for_item])
    roi = Dataset()
    roi.ROINumber = 1
    roi.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
    roi.ROIName = "lesion"
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = Sequence([roi])
    image_ref = Dataset()
    image_ref.ReferencedSOPClassUID = CT_CLASS
    image_ref.ReferencedSOPInstanceUID = first.SOPInstanceUID
    contour = Dataset()
    contour.ContourImageSequence = Sequence([image_ref])
    contour.ContourGeometricType = "CLOSED_PLANAR"
    z = float(first.ImagePositionPatient[2])
    contour.NumberOfContourPoints = 3
    contour.ContourData = [0.0, 0.0, z, 10.0, 0.0, z, 0.0, 10.0, z]
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber = 1
    roi_contour.ROIDisplayColor = [255, 0, 0]
    roi_contour.ContourSequence = Sequence([contour])
    ds.ROIContourSequence = Sequence([roi_contour])
    obs = Dataset()
    obs.ObservationNumber = 1
    obs.ReferencedROINumber = 1
    obs.RTROIInterpretedType = "GTV"
    obs.ROIInterpreter = "ONCOLOGIST^OLGA"
    ds.RTROIObservationsSequence = Sequence([obs])
    ds.ApprovalStatus = "UNAPPROVED"
    ds.InstanceNumber = 1
    ds.ensure_file_meta()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(out, enforce_file_format=True)
    return ds


def _seg(cts: list[Path], out: Path) -> Dataset:
    import highdicom as hd

    sources = sorted((_read(f) for f in cts), key=lambda d: int(d.InstanceNumber))
    mask = np.zeros((len(sources), int(sources[0].Rows), int(sources[0].Columns)), dtype=bool)
    mask[:, 10:20, 10:20] = True
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lesion",
        segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure"),
        segmented_property_type=hd.sr.CodedConcept("4147007", "SCT", "Mass"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc], series_instance_uid=hd.UID(), series_number=20, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="medimg", manufacturer_model_name="test", software_versions="0",
        device_serial_number="SEG-SERIAL-99",
    )
    seg.save_as(out)
    return seg


@pytest.fixture(scope="module")
def cohort_in(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deid") / "in"
    make_cohort(root, n_patients=2, seed=3, shape_zyx=(6, 48, 48), spacing_mm=(2.0, 2.0, 6.0),
                followup_fraction=1.0)
    series = _series_files(root)
    first = sorted(series.values(), key=lambda fs: str(fs[0]))[0]
    extra = root / "extra"
    extra.mkdir()
    _rich(first[0], extra / "rich.dcm")
    _rtstruct(first, extra / "rtstruct.dcm")
    _seg(first, extra / "seg.dcm")
    burned = _read(first[1])
    burned.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["burned"])
    burned.file_meta.MediaStorageSOPInstanceUID = burned.SOPInstanceUID
    burned.BurnedInAnnotation = "YES"
    burned.save_as(extra / "burned.dcm", enforce_file_format=True)
    us = _read(first[2])
    us.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["us"])
    us.file_meta.MediaStorageSOPInstanceUID = us.SOPInstanceUID
    us.Modality = "US"
    us.save_as(extra / "us.dcm", enforce_file_format=True)
    data = first[3].read_bytes()
    (extra / "broken.dcm").write_bytes(data[: len(data) // 3])
    return root


@pytest.fixture(scope="module")
def basic_run(cohort_in: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("basic") / "out"
    report = deidentify(cohort_in, out, key=KEY, workers=1)
    return out, report


def _outputs(out: Path) -> dict[str, Dataset]:
    return {p.relative_to(out).as_posix(): _read(p) for p in sorted(out.rglob("*.dcm"))}


def _by_class(out: Path) -> dict[str, list[Dataset]]:
    found: dict[str, list[Dataset]] = {}
    for ds in _outputs(out).values():
        found.setdefault(str(ds.SOPClassUID), []).append(ds)
    return found


def _hash_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------ the run
def test_run_counts_quarantine_and_failures(cohort_in: Path, basic_run) -> None:
    out, report = basic_run
    n_ct = len(list(cohort_in.glob("*/*/ct/*.dcm")))
    assert report.n_done == n_ct + 3  # CT slices + rich CT + RTSTRUCT + SEG
    assert report.n_quarantined == 2  # BurnedInAnnotation YES; US without it
    assert report.n_failed == 1  # the truncated file; the run went on
    quarantine = report.quarantine_dir
    assert quarantine.is_dir() and not str(quarantine).startswith(str(out) + "/")
    records = [json.loads(line) for line in (quarantine / "quarantine.jsonl").read_text().splitlines()]
    reasons = [r["reason"] for r in records if not r["failed"]]
    assert sorted(reasons) == ["BurnedInAnnotation absent for modality US", "BurnedInAnnotation is YES"]
    # the input that failed is quarantined too, with its reason, and still counts as failed
    (failed,) = [r for r in records if r["failed"]]
    assert failed["reason"].startswith("could not be read") and (quarantine / failed["copy"]).is_file()
    assert len(list(quarantine.glob("*.dcm"))) == 3  # the two quarantined for identity and the failed one
    for action in ("D", "Z", "X", "K", "U"):  # every action type of the Basic Profile was applied
        assert report.counts[action] > 0, action
    assert report.counts["private_removed"] >= 4


def test_every_action_on_the_rich_object(basic_run) -> None:
    out, _ = basic_run
    rich = next(ds for ds in _outputs(out).values() if ds.get("InstanceNumber") == 99)
    assert rich.PatientID == KEY.pseudonym(f"id:{rich.PatientID}") or rich.PatientID.startswith("ANON")
    assert rich.PatientIdentityRemoved == "YES"
    assert [i.CodeValue for i in rich.DeidentificationMethodCodeSequence] == ["113100"]
    assert rich.LongitudinalTemporalInformationModified == "REMOVED"
    for kw in ("PatientBirthDate", "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName",
               "StudyID", "PatientSex"):
        assert kw in rich and rich.data_element(kw).is_empty, kw  # Z (Type 2 kept empty)
    for kw in ("PatientAge", "PatientWeight", "PatientSize", "InstitutionName", "StationName",
               "DeviceSerialNumber", "OperatorsName", "PerformingPhysicianName", "ImageComments",
               "SeriesDescription", "StudyDescription", "OtherPatientIDsSequence", "RequestAttributesSequence",
               "SeriesDate", "AcquisitionDate", "AcquisitionDateTime", "InstanceCreationDate",
               "InstanceCreationTime"):
        assert kw not in rich, kw  # X (Type 3, or the VR rule for dates not in the table)
    assert not any(elem.tag.is_private for elem in rich)
    assert not any(elem.tag.group == 0x6000 for elem in rich)  # overlay data removed with its group
    assert rich.SOPClassUID == CT_CLASS and rich.Modality == "CT" and rich.Manufacturer == "ACME"
    assert rich.SOPInstanceUID.startswith("2.25.") and rich.file_meta.MediaStorageSOPInstanceUID == rich.SOPInstanceUID
    assert "ReferencedStudySequence" not in rich  # X/Z resolved to X: Type 3 in the CT Image IOD
    ref = rich.ReferencedInstanceSequence[0]
    assert ref.ReferencedSOPClassUID == CT_CLASS
    assert any(d.SOPInstanceUID == ref.ReferencedSOPInstanceUID and d.get("InstanceNumber") == 1
               for d in _outputs(out).values())  # U inside a sequence, consistent with the target
    assert rich.ContentDate == ""  # Z/D resolved to Z: Type 2C in the CT Image IOD
    assert rich.file_meta.ImplementationVersionName == "MEDIMG_DEID"


def test_uids_consistent_references_valid(cohort_in: Path, basic_run) -> None:
    out, _ = basic_run
    classes = _by_class(out)
    cts = classes[CT_CLASS]
    ct_sops = {str(d.SOPInstanceUID) for d in cts}
    (rt,) = classes[RTSTRUCT_CLASS]
    (seg,) = classes["1.2.840.10008.5.1.4.1.1.66.4"]
    refs = [i.ReferencedSOPInstanceUID for i in
            rt.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
              .RTReferencedSeriesSequence[0].ContourImageSequence]
    assert refs and set(refs) <= ct_sops  # RTSTRUCT -> CT references still resolve
    ref_series = rt.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0].SeriesInstanceUID
    target = [d for d in cts if d.SeriesInstanceUID == ref_series]
    assert len(target) >= 4
    assert rt.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == target[0].FrameOfReferenceUID
    assert rt.StructureSetROISequence[0].ReferencedFrameOfReferenceUID == target[0].FrameOfReferenceUID
    assert rt.ROIContourSequence[0].ContourSequence[0].ContourImageSequence[0].ReferencedSOPInstanceUID in ct_sops
    assert rt.StudyInstanceUID == target[0].StudyInstanceUID and rt.PatientID == target[0].PatientID
    seg_refs = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert seg_refs and seg_refs <= ct_sops  # SEG -> source references still resolve
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ref_series
    src = {i.ReferencedSOPInstanceUID for f in seg.PerFrameFunctionalGroupsSequence
           for d in f.DerivationImageSequence for i in d.SourceImageSequence}
    assert src and src <= ct_sops
    assert all(len(d.SourceImageSequence) == 1 for f in seg.PerFrameFunctionalGroupsSequence
               for d in f.DerivationImageSequence)
    # and no input UID survives anywhere
    input_uids = {str(_read(f).SOPInstanceUID) for f in cohort_in.rglob("*.dcm") if f.name != "broken.dcm"}
    assert not (input_uids & ct_sops)


def test_deterministic_for_a_key(cohort_in: Path, basic_run, tmp_path: Path) -> None:
    out, _ = basic_run
    again = tmp_path / "again"
    deidentify(cohort_in, again, key=KEY, workers=2)
    first, second = _hash_tree(out), _hash_tree(again)
    for name in (AUDIT_NAME, HEAD_NAME):
        first.pop(name)
        second.pop(name)
    assert first == second  # byte-identical outputs under the same names, serial or parallel
    other = tmp_path / "other-key"
    deidentify(cohort_in, other, key=Key(b"another-secret-key-of-32-bytes!!"), workers=1)
    assert not set(_outputs(other)) & set(_outputs(out))


def test_inputs_never_modified(cohort_in: Path, tmp_path: Path) -> None:
    before = _hash_tree(cohort_in)
    deidentify(cohort_in, tmp_path / "o", key=KEY, workers=1)
    assert _hash_tree(cohort_in) == before


def test_audit_trail_chained_and_free_of_phi(cohort_in: Path, basic_run) -> None:
    out, _ = basic_run
    audit = out / AUDIT_NAME
    assert check_chain(audit).ok
    records = list(read_records(audit))
    assert records[0]["event"] == "run" and records[-1]["event"] == "end"
    files = [r for r in records if r["event"] == "file"]
    assert {r["status"] for r in files} == {"ok", "quarantined", "failed"}
    assert all("actions" in r for r in files if r["status"] == "ok")
    text = audit.read_text()
    phi: set[str] = set()
    for f in cohort_in.rglob("*.dcm"):
        try:
            ds = _read(f)
        except Exception:  # noqa: BLE001
            continue
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "AccessionNumber",
                   "InstitutionName", "StationName", "DeviceSerialNumber", "SOPInstanceUID", "StudyInstanceUID"):
            if ds.get(kw):
                phi.add(str(ds.get(kw)))
        phi.update(p for p in f.relative_to(cohort_in).parts if p.isdigit())  # patient IDs in folder names
    leaked = [v for v in phi if v in text]
    assert not leaked, leaked


def test_audit_tampering_detected(basic_run, tmp_path: Path, cohort_in: Path) -> None:
    out, _ = basic_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    lines = (copy / AUDIT_NAME).read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace('"status":"ok"', '"status":"failed"')
    (copy / AUDIT_NAME).write_text("".join(lines))
    check = check_chain(copy / AUDIT_NAME)
    assert not check.ok and "record 5" in check.problem
    report = verify(copy, cohort_in)
    assert not report.ok and not report.audit_ok


def test_verify_passes_on_our_output_and_finds_leaks(cohort_in: Path, basic_run, tmp_path: Path) -> None:
    out, _ = basic_run
    report = verify(out, cohort_in)
    assert report.ok, [str(f) for f in report.findings[:5]]
    assert report.n_paired == report.n_outputs > 0

    leaky = tmp_path / "leaky"
    shutil.copytree(out, leaky)
    victim = sorted(leaky.rglob("*.dcm"))[0]
    ds = _read(victim)
    source = next(_read(f) for f in sorted(cohort_in.rglob("*.dcm"))
                  if f.name != "broken.dcm" and str(_read(f).PatientName) != "")
    block = ds.private_block(0x0011, "LEAKY", create=True)
    block.add_new(0x01, "UN", f"note for {str(source.PatientName).split('^')[0]}".encode())  # private, binary
    item = Dataset()
    item.ReferencedSOPClassUID = CT_CLASS
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID  # an original UID inside a sequence
    ds.ReferencedImageSequence = Sequence([item])
    ds.DerivationDescription = f"made {source.StudyDate[:4]}-{source.StudyDate[4:6]}-{source.StudyDate[6:]}"
    ds.save_as(victim, enforce_file_format=True)
    report = verify(leaky, cohort_in)
    kinds = {f.kind for f in report.findings}
    assert not report.ok
    assert {"name", "UID"} <= kinds, kinds
    assert all(str(source.PatientName).split("^")[0] not in str(f) for f in report.findings)  # no PHI echoed


def test_verify_catches_what_naive_tools_leave(cohort_in: Path, tmp_path: Path) -> None:
    """Outputs like dicom-anonymizer's (UIDs in sequences kept) or deid's default (InstitutionName kept) fail."""
    out = tmp_path / "naive"
    for f in sorted(cohort_in.rglob("rtstruct.dcm")):
        ds = _read(f)
        ds.PatientName, ds.PatientID = "X", "X"
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.StudyInstanceUID = pydicom.uid.generate_uid()
        ds.SeriesInstanceUID = pydicom.uid.generate_uid()
        out.mkdir()
        ds.save_as(out / "rt.dcm", enforce_file_format=True)
    report = verify(out, cohort_in)
    assert any(f.kind == "UID" and "ReferencedSOPInstanceUID" in f.source for f in report.findings)
    ct = sorted(cohort_in.rglob("0001.dcm"))[0]
    ds = _read(ct)
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "AccessionNumber"):
        setattr(ds, kw, "")
    for kw in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        setattr(ds, kw, pydicom.uid.generate_uid())
    ds.save_as(out / "ct.dcm", enforce_file_format=True)
    report = verify(out, cohort_in)
    assert any("InstitutionName" in f.source for f in report.findings)


# ------------------------------------------------------------------------------ options
def test_options(cohort_in: Path, tmp_path: Path) -> None:
    options = Options(retain_long_modified_dates=True, retain_patient_characteristics=True,
                      retain_device_identity=True, clean_descriptors=True,
                      safe_private=frozenset({PrivateTag.parse("0009:ACME_PRIVATE:02")}))
    out = tmp_path / "opt"
    report = deidentify(cohort_in, out, key=KEY, options=options, workers=1)
    assert report.counts["shifted"] > 0 and report.counts["C"] > 0
    inputs = {}
    for f in cohort_in.rglob("*.dcm"):
        if f.name in ("broken.dcm",):
            continue
        ds = _read(f)
        if ds.SOPClassUID == CT_CLASS and ds.get("InstanceNumber") == 1 and "BurnedInAnnotation" not in ds and ds.Modality == "CT":
            inputs[KEY.uid(str(ds.SeriesInstanceUID))] = ds
    outs = [ds for ds in _outputs(out).values() if ds.SOPClassUID == CT_CLASS and ds.get("InstanceNumber") == 1]
    by_patient: dict[str, list[tuple[Dataset, Dataset]]] = {}
    for o in outs:
        i = inputs[str(o.SeriesInstanceUID)]
        by_patient.setdefault(str(o.PatientID), []).append((i, o))
        assert o.StudyDate != i.StudyDate and len(o.StudyDate) == 8
        assert o.StudyTime == i.StudyTime  # times of day kept with modified dates
        assert o.PatientAge == i.PatientAge and o.PatientSex == i.PatientSex  # patient characteristics
        assert o.StationName == i.StationName and o.DeviceSerialNumber == i.DeviceSerialNumber  # device identity
        assert o.SeriesDescription == i.SeriesDescription  # clean descriptors: nothing identifying in it
        assert o.LongitudinalTemporalInformationModified == "MODIFIED"
        codes = [c.CodeValue for c in o.DeidentificationMethodCodeSequence]
        assert codes == ["113100", "113105", "113107", "113108", "113109", "113111"]
    import datetime as dt

    def day(text: str) -> dt.date:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))

    for pairs in by_patient.values():  # one shift per patient: intervals kept
        assert len(pairs) == 2
        (i1, o1), (i2, o2) = pairs
        assert (day(o2.StudyDate) - day(o1.StudyDate)) == (day(i2.StudyDate) - day(i1.StudyDate))
    rich = next(ds for ds in _outputs(out).values() if ds.get("InstanceNumber") == 99)
    comment = str(rich.ImageComments)
    assert comment.startswith("PRIVATE NOTE:")  # cleaned, not removed
    source = next(_read(f) for f in cohort_in.rglob("rich.dcm"))
    assert str(source.PatientName).split("^")[0] not in comment and source.PatientID not in comment
    assert source.StudyDate not in comment
    private = [e for e in rich if e.tag.is_private]
    assert [e.value for e in private if e.tag.element & 0xFF == 0x02] == ["3.5"]  # the safe-listed one
    assert all("ACME" in str(e.value) or e.value == "3.5" for e in private)  # its creator kept, nothing else
    assert verify(out, cohort_in).ok


# ------------------------------------------------------------------------------ resume
def test_interrupted_run_resumes(cohort_in: Path, tmp_path: Path) -> None:
    out = tmp_path / "resume"

    def stop_after_five(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        deidentify(cohort_in, out, key=KEY, workers=1, progress=stop_after_five)
    assert not list(out.rglob("*.part*"))  # no half-written file
    assert check_chain(out / AUDIT_NAME).ok
    report = deidentify(cohort_in, out, key=KEY, workers=1)
    assert report.n_skipped == 5
    full = tmp_path / "full"
    deidentify(cohort_in, full, key=KEY, workers=1)
    a, b = _hash_tree(out), _hash_tree(full)
    for name in (AUDIT_NAME, HEAD_NAME):
        a.pop(name), b.pop(name)
    assert a == b
    with pytest.raises(Exception, match="another key"):
        deidentify(cohort_in, out, key=Key(b"x" * 32), workers=1)


def test_cut_short_audit_line_is_closed_and_chain_holds(cohort_in: Path, tmp_path: Path) -> None:
    out = tmp_path / "cut"
    deidentify(cohort_in, out, key=KEY, workers=1)
    audit = out / AUDIT_NAME
    audit.write_bytes(audit.read_bytes() + b'{"seq": 999, "event": "fi')  # a crash mid-write
    report = deidentify(cohort_in, out, key=KEY, workers=1)
    assert report.n_done == 0 and report.n_skipped > 0
    assert check_chain(audit).ok
    assert any(r.get("partial_previous") for r in read_records(audit))


# ------------------------------------------------------------------------------ validity
@pytest.mark.tools
def test_outputs_stay_valid_dicom(cohort_in: Path, basic_run) -> None:
    """dciodvfy reports no error on an output that it did not report on the input."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not found (apt-get install dicom3tools)")
    out, _ = basic_run

    def errors(path: Path) -> set[str]:
        done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        lines = (done.stdout + done.stderr).splitlines()
        return {line.split(" - ", 1)[-1] for line in lines if line.startswith("Error")}

    pairs = {"rich.dcm": 99, "rtstruct.dcm": RTSTRUCT_CLASS, "seg.dcm": "1.2.840.10008.5.1.4.1.1.66.4"}
    outputs = _outputs(out)
    for name, marker in pairs.items():
        src = next(cohort_in.rglob(name))
        if marker == 99:
            rel = next(r for r, d in outputs.items() if d.get("InstanceNumber") == 99)
        else:
            rel = next(r for r, d in outputs.items() if d.SOPClassUID == marker)
        new = errors(out / rel) - errors(src)
        assert not new, (name, new)
    plain = next(r for r, d in outputs.items() if d.SOPClassUID == CT_CLASS and d.get("InstanceNumber") == 1)
    assert not errors(out / plain)


# ------------------------------------------------------------------------------ CLI
def test_cli(cohort_in: Path, tmp_path: Path, capsys) -> None:
    key = tmp_path / "key.txt"
    assert main(["deid", "keygen", str(key)]) == 0
    assert len(load_key(key)._secret) == 64 and (key.stat().st_mode & 0o777) == 0o600
    assert main(["deid", "keygen", str(key)]) == 2  # never overwritten
    capsys.readouterr()
    out = tmp_path / "out"
    mapping = tmp_path / "mapping.jsonl"
    code = main(["deid", str(cohort_in), str(out), "--key", str(key), "--modified-dates", "--mapping", str(mapping),
                 "--workers", "1"])
    assert code == 1  # the truncated input failed (and was reported); the rest was done
    captured = capsys.readouterr()
    assert "de-identified" in captured.out and "failed" in captured.err
    rows = [json.loads(line) for line in mapping.read_text().splitlines()]
    assert {r["status"] for r in rows} == {"ok", "quarantined"}
    assert all(r["date_shift_days"] < 0 for r in rows)
    assert main(["deid", "verify", str(out), "--against", str(cohort_in)]) == 0
    assert "OK:" in capsys.readouterr().out
    assert main(["deid", str(cohort_in), str(tmp_path / "o2"), "--key", str(tmp_path / "nokey")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "keygen" in err[0]
    assert main(["deid", str(cohort_in), str(cohort_in / "inside"), "--key", str(key)]) == 2
    assert main(["deid", str(cohort_in), str(tmp_path / "o3"), "--key", str(key), "--keep-private", "bad"]) == 2
    assert main(["deid", str(cohort_in), str(tmp_path / "o4"), "--key", str(key), "--mapping", str(tmp_path / "o4" / "m.jsonl")]) == 2


def test_single_dataset_api() -> None:
    ds = Dataset()
    ds.SOPClassUID = CT_CLASS
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "123456"
    ds.StudyInstanceUID = "1.2.3.4"
    result = Deidentifier(KEY).deidentify_dataset(ds)
    assert ds.PatientID == KEY.pseudonym("id:123456") == result.pseudonym
    assert ds.SOPInstanceUID == KEY.uid("1.2.3.4.5") and len(ds.SOPInstanceUID) <= 64
    assert result.uids["1.2.3.4.5"] == ds.SOPInstanceUID
    assert result.quarantine_reason is None


def test_fast_encoder_matches_pydicom(basic_run) -> None:
    """encode_part10 writes the same bytes as pydicom's save_as, for every kind of output here."""
    import io

    from medimg.deid.encode import encode_part10

    out, _ = basic_run
    for path in sorted(out.rglob("*.dcm")):
        ds = _read(path)
        ds.file_meta.ImplementationVersionName = "MEDIMG_DEID"
        expected = io.BytesIO()
        ds.save_as(expected, enforce_file_format=True)
        assert encode_part10(ds) == expected.getvalue(), path.name
    implicit = _read(sorted(out.rglob("*.dcm"))[0])
    implicit.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    expected = io.BytesIO()
    implicit.save_as(expected, enforce_file_format=True)
    assert encode_part10(implicit) == expected.getvalue()
    implicit.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
    assert encode_part10(implicit) is None  # big endian: pydicom's writer is used


def test_compound_actions_follow_the_iod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """X/Z/D resolves by Type: Type 1 (Enhanced General Equipment's serial number in a SEG) -> dummy,
    Type 3 (the same attribute in a CT) -> removed; without IOD tables, kept with a dummy value."""
    from medimg.deid import iod

    assert iod.attribute_type("1.2.840.10008.5.1.4.1.1.66.4", (), "DeviceSerialNumber") == "1"
    assert iod.attribute_type("1.2.840.10008.5.1.4.1.1.2", (), "DeviceSerialNumber") == "3"
    assert iod.attribute_type("1.2.840.10008.5.1.4.1.1.2", (), "ContentDate") == "2C"
    assert iod.attribute_type("1.2.3.4", (), "ContentDate") == iod.UNKNOWN

    def one(sop_class: str) -> Dataset:
        ds = Dataset()
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = "1.2.3.9"
        ds.DeviceSerialNumber = "SN-12345"
        ds.ContentDate = "20200101"
        Deidentifier(KEY).deidentify_dataset(ds)
        return ds

    seg = one("1.2.840.10008.5.1.4.1.1.66.4")
    assert seg.DeviceSerialNumber == "ANONYMIZED"  # D
    ct = one(CT_CLASS)
    assert "DeviceSerialNumber" not in ct and ct["ContentDate"].is_empty  # X, Z
    monkeypatch.setattr(iod, "_compact", lambda: None)
    unknown = one(CT_CLASS)
    assert unknown.DeviceSerialNumber == "ANONYMIZED" and unknown.ContentDate == "19000101"  # fallback: D
