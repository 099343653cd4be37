"""A real Orthanc (in its own network namespace): DIMSE and DICOMweb echo, send, find, retrieve, SEG back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medimg import pacs
from medimg.catalog import Catalog, query
from medimg.cli.main import main
from medimg.datasets import make_cohort
from medimg.errors import ParameterError
from medimg.pacs import PacsError, matching_keys, parse_server
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
        back = pacs.send(server.dimse, [seg])  # C-STORE of the SEG too (same instance: accepted again)
        assert back.sent == 1


@pytest.mark.tools
def test_cli_and_errors(cohort, in_orthanc_netns, tmp_path: Path, capsys) -> None:  # noqa: F811
    server = in_orthanc_netns
    row = cohort.rows[0]
    assert main(["pacs", "send", server.dimse, str(cohort.root / row.ct_dir)]) == 0
    assert "sent 6 of 6" in capsys.readouterr().out
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
