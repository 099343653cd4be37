"""PACS: a real Orthanc (DIMSE and DICOMweb round trip, re-send) and misbehaving ones (hostile UIDs, aborts, timeouts)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medimg import pacs
from medimg.catalog import Catalog, query
from medimg.cli.main import main
from medimg.core.files import UnsafePathError, confined_path
from medimg.datasets import make_cohort
from medimg.errors import ParameterError
from medimg.pacs import PacsError, matching_keys, parse_server
from medimg.pacs.nodes import received_path
from servers.fake_pacs import FlakyStoreSCP, HostileRetrieveSCP, ct_instance, hostile_dicomweb
from servers.fixtures import in_orthanc_netns, orthanc  # noqa: F401 - pytest fixtures


def test_server_names() -> None:
    node = parse_server("dicom://ORTHANC@127.0.0.1:4242", calling_aet="ME")
    assert (node.aet, node.host, node.port, node.calling_aet) == ("ORTHANC", "127.0.0.1", 4242, "ME")
    assert parse_server("http://127.0.0.1:8042/dicom-web/").url == "http://127.0.0.1:8042/dicom-web"
    for bad in ("orthanc", "dicom://@h:1", "dicom://A@h:99999", "dicom://THIS-AE-TITLE-IS-TOO-LONG@h:1"):
        with pytest.raises(ParameterError):
            parse_server(bad)
    assert matching_keys("study", modality="ct", study_date="2020-01-01..2020-12-31") == {
        "ModalitiesInStudy": "CT", "StudyDate": "20200101-20201231"}
    assert matching_keys("series", modality="CT", description="AX*") == {"Modality": "CT", "SeriesDescription": "AX*"}
    with pytest.raises(ParameterError):
        matching_keys("study", study_date="2020-02-30")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pacs") / "cohort"
    return make_cohort(root, n_patients=2, seed=11, shape_zyx=(6, 48, 48), spacing_mm=(2.0, 2.0, 6.0),
                       followup_fraction=0.5)


def _files(cohort, i: int) -> list[Path]:
    return sorted((cohort.root / cohort.rows[i].ct_dir).glob("*.dcm"))


def _pixels(path: Path) -> tuple[str, bytes]:
    ds = pydicom.dcmread(path)
    return str(ds.SOPInstanceUID), bytes(ds.PixelData)


def _seg_for(files: list[Path], out: Path) -> Path:
    import highdicom as hd

    sources = sorted((pydicom.dcmread(f) for f in files), key=lambda d: int(d.InstanceNumber))
    mask = np.zeros((len(sources), int(sources[0].Rows), int(sources[0].Columns)), dtype=bool)
    mask[:, 12:30, 12:30] = True
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lesion",
        segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure"),
        segmented_property_type=hd.sr.CodedConcept("4147007", "SCT", "Mass"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence("threshold", hd.sr.CodedConcept(
            "123109", "DCM", "Manual Processing"), "1"),
    )
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc], series_instance_uid=hd.UID(), series_number=50, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="medimg", manufacturer_model_name="medimg", software_versions="0.1",
        device_serial_number="1",
    )
    seg.save_as(out)
    return out


@pytest.mark.tools
def test_dimse_and_dicomweb_round_trip(cohort, in_orthanc_netns, tmp_path: Path) -> None:  # noqa: F811
    server = in_orthanc_netns
    assert pacs.echo(server.dimse) < 5 and pacs.echo(server.dicomweb) < 5

    first, second = _files(cohort, 0), _files(cohort, 1)
    sent = pacs.send(server.dimse, first)  # C-STORE
    assert sent.sent == len(first) and not sent.failures
    sent = pacs.send(server.dicomweb, second)  # STOW-RS
    assert sent.sent == len(second) and not sent.failures

    row0, row1 = cohort.rows[0], cohort.rows[1]
    for url in (server.dimse, server.dicomweb):
        studies = pacs.find(url, level="study", patient_id=row0.patient_id)
        assert [s["StudyInstanceUID"] for s in studies] == [row0.study_uid]
        assert studies[0]["NumberOfStudyRelatedInstances"] == str(len(first))
        series = pacs.find(url, level="series", study_uid=row1.study_uid)
        assert [s["SeriesInstanceUID"] for s in series] == [row1.series_uid]
        assert series[0]["Modality"] == "CT"
        images = pacs.find(url, level="image", study_uid=row0.study_uid, series_uid=row0.series_uid)
        assert len(images) == len(first)
        dated = pacs.find(url, level="study", study_date=f"{row0.study_date}..{row0.study_date}")
        assert row0.study_uid in {s["StudyInstanceUID"] for s in dated}
    patients = pacs.find(server.dimse, level="patient", patient_name="*")
    assert row0.patient_id in {p["PatientID"] for p in patients}

    originals = dict(_pixels(f) for f in first)
    with Catalog(tmp_path / "cat.sqlite") as catalog:
        for method in ("get", "move"):  # C-GET, and C-MOVE to our own storage SCP
            report = pacs.retrieve(server.dimse, study_uid=row0.study_uid, dest=tmp_path / method,
                                   method=method, catalog=catalog)
            assert report.failed == 0 and dict(_pixels(f) for f in report.files) == originals
        report = pacs.retrieve(server.dicomweb, study_uid=row1.study_uid, series_uid=row1.series_uid,
                               dest=tmp_path / "wado", catalog=catalog)  # WADO-RS
        assert dict(_pixels(f) for f in report.files) == dict(_pixels(f) for f in second)
        one = pacs.retrieve(server.dicomweb, study_uid=row0.study_uid, series_uid=row0.series_uid,
                            sop_uid=_pixels(first[0])[0], dest=tmp_path / "one")
        assert len(one.files) == 1
        # retrieved instances landed in the catalog
        in_catalog = {r["series_uid"]: r["n_instances"] for r in query(catalog)}
        assert in_catalog == {row0.series_uid: len(first), row1.series_uid: len(second)}

        # a derived result goes back to the PACS and into the catalog, linked to its source
        seg = _seg_for(report.files, tmp_path / "seg.dcm")
        back = pacs.send(server.dicomweb, [seg], catalog=catalog, derived=True)
        assert back.sent == 1
        segs = pacs.find(server.dimse, level="series", study_uid=row1.study_uid, modality="SEG")
        assert len(segs) == 1
        (derived,) = catalog.derived_from(series_uid=row1.series_uid)
        assert derived["kind"] == "segmentation" and derived["sop_uid"] == pydicom.dcmread(seg).SOPInstanceUID
        assert ("series", row1.series_uid) in catalog.sources_of(derived["id"])
        back = pacs.send(server.dimse, [seg])  # the PACS holds it already: skipped
        assert (back.sent, back.skipped, back.failures) == (0, [str(seg)], [])
        back = pacs.send(server.dimse, [seg], skip_existing=False)  # C-STORE again on purpose: accepted
        assert back.sent == 1 and back.stored == [str(seg)]


@pytest.mark.tools
def test_cli_and_errors(cohort, in_orthanc_netns, tmp_path: Path, capsys) -> None:  # noqa: F811
    server = in_orthanc_netns
    row = cohort.rows[0]
    assert main(["pacs", "send", server.dimse, str(cohort.root / row.ct_dir)]) == 0
    m = re.search(r"sent (\d+) of 6 files to .*: (\d+) already held \(skipped\), 0 not stored", capsys.readouterr().out)
    assert m and int(m[1]) + int(m[2]) == 6  # the other test may have stored them already
    assert main(["pacs", "echo", server.dimse]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["pacs", "find", server.dicomweb, "--level", "series", "--patient-id", row.patient_id,
                 "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert row.series_uid in {f["SeriesInstanceUID"] for f in found}
    db = tmp_path / "cli.sqlite"
    assert main(["pacs", "get", server.dimse, "--study", row.study_uid, "--series", row.series_uid,
                 "--dest", str(tmp_path / "got"), "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["query", "--db", str(db), "--format", "csv"]) == 0
    assert row.series_uid in capsys.readouterr().out
    for bad in (["pacs", "echo", "dicom://ORTHANC@127.0.0.1:1"], ["pacs", "echo", "http://127.0.0.1:1/dicom-web"],
                ["pacs", "find", server.dimse, "--level", "frame"], ["pacs", "echo", "nonsense"]):
        assert main(bad) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
    with pytest.raises(PacsError):
        pacs.retrieve(server.dimse, study_uid=row.study_uid, sop_uid="1.2.3", dest=tmp_path / "x")


# ------------------------------------------------------------------------------ hostile and broken PACS
def _good_and_hostile() -> list:
    good = ct_instance("1.2.3", "1.2.3.4", "1.2.3.4.5", value=7)
    hostile = [
        ct_instance("..", "..", "1.2.3.4.6"),                   # two folders above dest
        ct_instance("1.2.3", "..", "..%2F..%2Fevil"),           # not UIDs at all
        ct_instance("1.2.3", "1.2.3.4", "../../../../tmp/evil"),
        ct_instance("/etc", "1.2.3.4", "1.2.3.4.7"),             # absolute
    ]
    return [good, *hostile]


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_received_paths_are_checked_and_confined(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    assert received_path(dest, "1.2.3", "1.2.3.4", "1.2.3.4.5") == dest / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"
    for uids in (("..", "1.2", "1.3"), ("1.2", "..", "1.3"), ("1.2", "1.3", "../x"), ("1.02", "1.2", "1.3"),
                 ("1.2", "1.3", "1.2/3"), ("", "1.2", "1.3"), ("1.2", "1.3", "1." + "1" * 63)):
        with pytest.raises(PacsError, match="not a valid UID"):
            received_path(dest, *uids)
    # a symbolic link planted inside dest cannot lead outside it either
    (dest / "1.2.3").mkdir(parents=True)
    (dest / "1.2.3" / "1.2.3.4").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError, match="outside the output folder"):
        received_path(dest, "1.2.3", "1.2.3.4", "1.2.3.4.5")
    with pytest.raises(UnsafePathError, match="'..'"):
        confined_path(dest, "a", "..", "b")


@pytest.mark.parametrize("method", ["get", "move"])
def test_hostile_dimse_pacs_cannot_write_outside_dest(tmp_path: Path, method: str) -> None:
    instances = _good_and_hostile()
    dest = tmp_path / "a" / "b" / "dest"
    with HostileRetrieveSCP(instances, abort_first=True).running() as scp:
        scp.move_port = _free_port()
        report = pacs.retrieve(scp.url, study_uid="1.2.3", dest=dest, method=method, move_aet="MEDIMG",
                               move_port=scp.move_port, timeout=5)
        assert scp.retrieves == 2  # the first was aborted: tried again
    assert _tree(tmp_path) == {"a/b/dest/1.2.3/1.2.3.4/1.2.3.4.5.dcm"}  # nothing else, anywhere
    assert report.files == [dest / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"]
    assert report.failed == len(instances) - 1
    assert len(report.problems) == report.failed and all("not a valid UID" in p for p in report.problems)
    assert any("'..'" in p for p in report.problems)


def test_hostile_dicomweb_pacs_cannot_write_outside_dest(tmp_path: Path, capsys) -> None:
    instances = _good_and_hostile()
    with hostile_dicomweb(instances) as url:
        report = pacs.retrieve(url, study_uid="1.2.3", dest=tmp_path / "dest")
        assert main(["pacs", "get", url, "--study", "1.2.3", "--dest", str(tmp_path / "cli"), "--no-catalog"]) == 1
    assert _tree(tmp_path) == {"dest/1.2.3/1.2.3.4/1.2.3.4.5.dcm", "cli/1.2.3/1.2.3.4/1.2.3.4.5.dcm"}
    assert report.failed == len(instances) - 1 and len(report.files) == 1
    err = capsys.readouterr().err
    assert err.count("not stored: received") == len(instances) - 1 and "'..'" in err


@pytest.mark.parametrize("server", ["dicom://X@nonexistent.invalid:104", "http://nonexistent.invalid:104/dicom-web"])
def test_unresolvable_host_is_one_line(server: str, tmp_path: Path, capsys) -> None:
    dcm = tmp_path / "one.dcm"
    ct_instance("1.2.3", "1.2.3.4", "1.2.3.4.5").save_as(dcm, enforce_file_format=True)
    for argv in (["pacs", "echo", server], ["pacs", "find", server, "--level", "series"],
                 ["pacs", "get", server, "--study", "1.2.3", "--dest", str(tmp_path / "d"), "--no-catalog"],
                 ["pacs", "send", server, str(dcm)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: {server}: cannot resolve host 'nonexistent.invalid' "
                       f"({err[0].rsplit('(', 1)[1]}"], (argv, err)
    assert not (tmp_path / "d").exists()


def _instances(folder: Path, n: int, study: str = "1.2.826.0.1.3680043.9.7", series: str = "") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    series = series or f"{study}.1"
    out = []
    for i in range(n):
        path = folder / f"{i:04d}.dcm"
        ct_instance(study, series, f"{series}.{i + 1}", value=i).save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def test_send_survives_aborts_timeouts_and_busy_answers(tmp_path: Path) -> None:
    """pynetdicom answers an abort or a timeout with an empty Dataset: medimg retries, never crashes."""
    files = _instances(tmp_path / "in", 12)
    scp = FlakyStoreSCP(abort_at={3}, silent_at={6}, busy_at={9, 10}, silence_s=2.5)
    with scp.running():
        report = pacs.send(scp.url, files, timeout=1.0, backoff_s=0.05, skip_existing=False)
    assert report.failures == [] and report.stored == [str(f) for f in files] and report.sent == 12
    assert report.retries == 4 and scp.associations == 3  # a new association after the abort and the timeout
    assert sorted(scp.stored) == sorted(str(pydicom.dcmread(f).SOPInstanceUID) for f in files)
    for f in files:  # the pixels that arrived are the file's
        assert scp.stored[str(pydicom.dcmread(f).SOPInstanceUID)] == pydicom.dcmread(f).PixelData


def test_send_reports_what_was_stored_when_the_pacs_goes_away(tmp_path: Path, capsys) -> None:
    files = _instances(tmp_path / "in", 8)
    scp = FlakyStoreSCP(abort_at={5}, down_after=5)
    with scp.running():
        report = pacs.send(scp.url, files, timeout=1.0, retries=2, backoff_s=0.05, skip_existing=False)
        assert report.stored == [str(f) for f in files[:4]]
        assert [f for f, _ in report.failures] == [str(f) for f in files[4:]]
        assert all("not sent" in why or "aborted" in why for _, why in report.failures)
        # sending again skips the four the PACS holds and tries only the rest
        scp.down_after = None
        again = pacs.send(scp.url, files, timeout=2.0, backoff_s=0.05)
        assert again.skipped == [str(f) for f in files[:4]] and again.stored == [str(f) for f in files[4:]]
        assert len(scp.stored) == 8
        assert main(["pacs", "send", scp.url, str(tmp_path / "in")]) == 0
        assert "sent 0 of 8 files" in capsys.readouterr().out


def test_send_to_a_pacs_that_is_down_is_one_line(tmp_path: Path, capsys) -> None:
    files = _instances(tmp_path / "in", 2)
    port = _free_port()  # nobody listens there
    assert main(["pacs", "send", f"dicom://X@127.0.0.1:{port}", str(tmp_path / "in"), "--retries", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "is the PACS running" in err[0], err
    with pytest.raises(PacsError):
        pacs.send(f"dicom://X@127.0.0.1:{port}", files, retries=1, backoff_s=0.01, skip_existing=False)


def test_send_to_a_pacs_that_cannot_say_what_it_holds(tmp_path: Path, capsys) -> None:
    files = _instances(tmp_path / "in", 3)
    scp = FlakyStoreSCP(find=False)
    with scp.running():
        with pytest.raises(PacsError, match="accepts none of the services asked for .*FIND"):
            pacs.find(scp.url, level="image", study_uid="1.2.826.0.1.3680043.9.7")
        report = pacs.send(scp.url, files, timeout=2.0)
        assert report.stored == [str(f) for f in files] and len(scp.stored) == 3
        assert len(report.notes) == 1 and "sending all" in report.notes[0]
        assert main(["pacs", "send", scp.url, str(tmp_path / "in")]) == 0
    captured = capsys.readouterr()
    assert "note: could not ask" in captured.err and "sent 3 of 3 files" in captured.out


def test_find_is_retried_after_an_abort(tmp_path: Path) -> None:
    files = _instances(tmp_path / "in", 3)
    scp = FlakyStoreSCP()
    with scp.running():
        pacs.send(scp.url, files, skip_existing=False)
        from medimg.pacs import dimse

        calls = {"n": 0}
        real = dimse.status_code

        def first_lost(status):  # the first response is lost on the way, as on an abort
            calls["n"] += 1
            return None if calls["n"] == 1 else real(status)

        dimse.status_code = first_lost
        try:
            rows = pacs.find(scp.url, level="image", study_uid="1.2.826.0.1.3680043.9.7")
        finally:
            dimse.status_code = real
    assert len(rows) == 3 and calls["n"] > 3


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _orthanc_instances(server) -> int:  # noqa: ANN001
    import urllib.request

    with urllib.request.urlopen(f"{server.rest}/statistics", timeout=10) as response:
        return int(json.loads(response.read())["CountInstances"])


@pytest.mark.tools
def test_resend_to_orthanc_skips_what_it_holds(in_orthanc_netns, tmp_path: Path) -> None:  # noqa: F811
    server = in_orthanc_netns
    files = _instances(tmp_path / "in", 30, study="1.2.826.0.1.3680043.9.8")
    before = _orthanc_instances(server)
    first = pacs.send(server.dimse, files[:12])  # an interrupted send, say
    assert first.sent == 12 and not first.skipped
    again = pacs.send(server.dimse, files)  # C-FIND tells what Orthanc holds: only the rest is sent
    assert again.skipped == [str(f) for f in files[:12]] and again.stored == [str(f) for f in files[12:]]
    assert again.failures == [] and _orthanc_instances(server) == before + 30
    last = pacs.send(server.dicomweb, files)  # QIDO-RS likewise
    assert (last.sent, last.skipped, last.failures) == (0, [str(f) for f in files], [])


@pytest.mark.slow
@pytest.mark.tools
def test_send_1000_instances_to_a_fresh_orthanc(tmp_path: Path) -> None:
    """The case of the issue: 1,000 C-STOREs into a freshly started Orthanc, then a re-send."""
    from servers import orthanc as orthanc_mod
    from servers.netns import entered

    reason = orthanc_mod.why_unavailable()
    if reason:
        pytest.skip(reason)
    files = _instances(tmp_path / "in", 1000, study="1.2.826.0.1.3680043.9.9")
    server = orthanc_mod.start()
    try:
        with entered(server.pid):
            report = pacs.send(server.dimse, files)
            assert report.failures == [] and report.sent == 1000
            assert _orthanc_instances(server) == 1000
            again = pacs.send(server.dimse, files)
            assert (again.sent, len(again.skipped), again.failures) == (0, 1000, [])
    finally:
        orthanc_mod.stop(server)
