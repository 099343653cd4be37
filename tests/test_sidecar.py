"""Provenance sidecars: one beside every image a command writes, history restored on read, no PHI.

Known answers: the SHA-256 of the files (hashlib), the parameters the registry resolves
(``Entry.validate``), the history the operations record, and PHI planted in DICOM headers that
must not come out in any sidecar.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from medimg import Image, io
from medimg.cli.main import main
from medimg.core.provenance import Manifest, jsonable
from medimg.core.registry import registry
from medimg.errors import UserInputError
from medimg.io.dicom.writer import write_series
from medimg.io.sidecar import SIDECAR_META_KEYS, build_sidecar, read_sidecar, sidecar_path

#: Identifying values planted in the DICOM headers; none may appear in a sidecar.
PHI = {
    "PatientName": "Zyxwvut^Quinella",
    "PatientID": "PID-8675309",
    "PatientBirthDate": "19470203",
    "StudyDate": "20191107",
    "AccessionNumber": "ACC-424242",
    "InstitutionName": "Saint Nowhere Clinic",
    "StudyDescription": "CT chest for Quinella",
    "SeriesDescription": "Zyxwvut follow-up",
    "ReferringPhysicianName": "Drzzz^Hoo",
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _phantom() -> Image:
    z, y, x = np.indices((6, 20, 22))
    blob = ((x - 11) ** 2 + (y - 10) ** 2 <= 20) & (z >= 1) & (z <= 4)
    values = np.where(blob, 120, 20) + (np.random.default_rng(1).integers(-4, 5, blob.shape))
    return Image.from_geometry(values.astype(np.int16), spacing=(0.9, 0.8, 2.0), origin=(-5.0, 3.0, 11.0))


@pytest.fixture
def phi_series(tmp_path: Path) -> Path:
    """A CT series whose headers carry planted PHI."""
    folder = tmp_path / "phi_ct"
    write_series(
        _phantom(), folder, seed=3,
        patient={k: PHI[k] for k in ("PatientName", "PatientID", "PatientBirthDate")},
        study={k: PHI[k] for k in ("StudyDate", "AccessionNumber", "StudyDescription", "ReferringPhysicianName")},
        series={"SeriesDescription": PHI["SeriesDescription"], "InstitutionName": PHI["InstitutionName"]},
    )
    return folder


def _no_phi(text: str) -> None:
    for key, value in PHI.items():
        for part in {value, *value.split("^")}:
            assert part not in text, f"{key} ({part!r}) leaked into the sidecar"


# --------------------------------------------------------------------------- naming rule
@pytest.mark.parametrize(("name", "side"), [
    ("out.nii.gz", "out.json"), ("out.nii", "out.json"), ("out.nrrd", "out.json"), ("out.mha", "out.json"),
    ("out.png", "out.json"), ("lesion.dcm", "lesion.json"), ("sub-01_T1w.NII.GZ", "sub-01_T1w.json"),
])
def test_sidecar_naming_rule(tmp_path: Path, name: str, side: str) -> None:
    assert sidecar_path(tmp_path / name) == tmp_path / side


# --------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_history_round_trip(tmp_path: Path, suffix: str) -> None:
    from medimg.filters import apply

    smooth = apply(_phantom(), "gaussian", sigma_mm=1.2)
    sharp = apply(smooth, "unsharp_mask", amount=0.5)
    assert [h["op"] for h in sharp.meta["history"]] == ["filters.gaussian", "filters.unsharp_mask"]
    path = tmp_path / f"sharp{suffix}"
    io.write(sharp, path)
    record = json.loads(sidecar_path(path).read_text())
    assert record["file"] == {"name": path.name, "format": suffix.lstrip("."), "size_bytes": path.stat().st_size,
                              "sha256": _sha(path)}
    assert record["history"] == jsonable(sharp.meta["history"])
    back = io.read(path)
    assert back.meta["history"] == jsonable(sharp.meta["history"])
    assert back.meta["sidecar"] == str(sidecar_path(path))
    # The history goes on: one more step, written and read again, keeps all three.
    again = apply(back, "gaussian", sigma_mm=0.5)
    io.write(again, tmp_path / f"again{suffix}")
    assert [h["op"] for h in io.read(tmp_path / f"again{suffix}").meta["history"]] == [
        "filters.gaussian", "filters.unsharp_mask", "filters.gaussian"]


def test_png_has_a_sidecar_and_a_plain_write_can_skip_it(tmp_path: Path) -> None:
    image = Image(np.arange(20, dtype=np.uint8).reshape(4, 5), has_patient_geometry=False,
                  meta={"history": [{"op": "test.made", "n": 20}]})
    io.write(image, tmp_path / "a.png")
    assert io.read(tmp_path / "a.png").meta["history"] == [{"op": "test.made", "n": 20}]
    io.write(image, tmp_path / "b.png", sidecar=False)
    assert not (tmp_path / "b.json").exists()
    assert "history" not in io.read(tmp_path / "b.png").meta


def test_a_sidecar_that_no_longer_matches_is_not_used(tmp_path: Path) -> None:
    from medimg.filters import apply

    path = tmp_path / "g.nii.gz"
    io.write(apply(_phantom(), "gaussian", sigma_mm=1.0), path)
    io.write(_phantom(), tmp_path / "other.nii.gz", sidecar=False)
    (tmp_path / "other.nii.gz").replace(path)  # another tool replaced the image, not the sidecar
    back = io.read(path)
    assert "history" not in back.meta
    assert any("does not match" in w for w in back.meta["warnings"])
    with pytest.raises(Exception, match="does not match"):
        read_sidecar(path)
    assert read_sidecar(path, verify=False)["file"]["name"] == "g.nii.gz"


def test_someone_elses_json_is_ignored_and_another_images_sidecar_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"RepetitionTime": 2.0}')  # e.g. a dcm2niix sidecar of a.nii.gz
    io.write(_phantom(), tmp_path / "b.nii.gz", sidecar=False)
    (tmp_path / "b.json").write_text('{"RepetitionTime": 2.0}')
    io.write(_phantom(), tmp_path / "b.nii.gz")  # b.nii.gz exists: its BIDS sidecar is replaced
    assert read_sidecar(tmp_path / "b.nii.gz") is not None
    with pytest.raises(UserInputError, match="did not write"):
        io.write(_phantom(), tmp_path / "a.nii.gz")  # a.json is not ours and a.nii.gz is new
    io.write(_phantom(), tmp_path / "c.nii.gz")
    with pytest.raises(UserInputError, match="sidecar of c.nii.gz"):
        io.write(_phantom(), tmp_path / "c.nrrd")
    assert not (tmp_path / "c.nrrd").exists()


def test_a_failed_write_leaves_neither_image_nor_sidecar(tmp_path: Path) -> None:
    from medimg.errors import UnsupportedFormatError

    with pytest.raises(UnsupportedFormatError):
        io.write(_phantom(), tmp_path / "x.png")  # 3-D int16: PNG cannot hold it
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_jsonable_handles_parameters_of_every_kind() -> None:
    mask = Image(np.ones((2, 3, 4), np.uint8))
    out = jsonable({"mask": mask, "t": (1, 2.5), "inf": float("inf"), "n": np.float32(0.5), "p": Path("a/b")})
    assert out["mask"]["dtype"] == "uint8" and len(out["mask"]["array_sha256"]) == 64
    assert out["t"] == [1, 2.5] and out["inf"] == "inf" and out["n"] == 0.5 and out["p"] == "a/b"
    json.dumps(out, allow_nan=False)


# --------------------------------------------------------------------------- every writing command
def test_every_image_writing_command_writes_a_sidecar(tmp_path: Path, capsys) -> None:
    pytest.importorskip("highdicom")
    ct = _phantom()
    folder = tmp_path / "ct"
    write_series(ct, folder, seed=0)
    truth = tmp_path / "truth.nii.gz"
    io.write(ct.with_array((ct.array > 70).astype(np.uint8)), truth)
    runs = {
        "convert": ["convert", str(folder), str(tmp_path / "ct.nii.gz")],
        "convert-nrrd": ["convert", str(folder), str(tmp_path / "ct2.nrrd")],
        "filter": ["filter", str(tmp_path / "ct.nii.gz"), str(tmp_path / "smooth.mha"), "-m", "gaussian",
                   "-p", "sigma_mm=1.5"],
        "segment": ["segment", str(tmp_path / "smooth.mha"), str(tmp_path / "seg.nii.gz"), "-m", "threshold",
                    "-p", "lower=70", "--mask", str(truth)],
        "seg-convert-seg": ["seg-convert", str(truth), str(tmp_path / "lesion.dcm"), "--source", str(folder),
                            "--name", "1=lesion"],
        "seg-convert-back": ["seg-convert", str(tmp_path / "lesion.dcm"), str(tmp_path / "back.nii"),
                             "--reference", str(folder)],
    }
    for name, args in runs.items():
        assert main(args) == 0, (name, capsys.readouterr().err)
    capsys.readouterr()
    outputs = {name: Path(args[2]) for name, args in runs.items()}
    for name, out in outputs.items():
        record = read_sidecar(out)  # verifies size and SHA-256 against the file
        assert record is not None, name
        assert record["command"] == f"medimg {runs[name][0]}"
        assert record["command_line"].split()[1:] == runs[name], name
        assert record["reproduce"] == record["command_line"]
        assert record["medimg_version"] and record["software"]["numpy"]
        for row in record["inputs"]:
            path = Path(row["path"])
            if path.is_file():
                assert row["sha256"] == _sha(path), (name, row)
            else:
                assert len(row["sha256_tree"]) == 64 and row["n_files"] == 6
    # Every resolved parameter, defaults included, is what the registry resolves.
    filt = read_sidecar(outputs["filter"])
    assert filt["parameters"] == {"kind": "filters", "method": "gaussian",
                                  "params": jsonable(registry("filters").get("gaussian").validate({"sigma_mm": 1.5}))}
    seg = read_sidecar(outputs["segment"])
    params = seg["parameters"]["params"]
    assert set(params) == set(registry("segmentation").get("threshold").params.model_fields)
    assert params["lower"] == 70 and params["mask"]["dtype"] == "uint8"
    assert [r["role"] for r in seg["inputs"]] == ["image", "mask"]
    # The chain: the filter's input was made by convert, the segmentation's by the filter.
    assert filt["inputs"][0]["produced_by"] == read_sidecar(outputs["convert"])["command_line"]
    assert seg["inputs"][0]["produced_by"] == filt["command_line"]
    assert [h["op"] for h in seg["history"]] == ["filters.gaussian", "segmentation.threshold"]
    assert read_sidecar(outputs["seg-convert-back"])["meta"]["Modality"] == "SEG"


# --------------------------------------------------------------------------- privacy
def test_no_planted_phi_reaches_a_sidecar(phi_series: Path, tmp_path: Path, capsys) -> None:
    image = io.read(phi_series)
    assert image.meta["PatientName"] == PHI["PatientName"] and image.meta["PatientID"] == PHI["PatientID"]
    assert image.meta["StudyDescription"] == PHI["StudyDescription"]  # the PHI is there to leak
    out = tmp_path / "ct.nii.gz"
    assert main(["convert", str(phi_series), str(out)]) == 0
    assert PHI["PatientID"].encode() not in out.read_bytes()  # the NIfTI carries none ...
    text = sidecar_path(out).read_text()
    _no_phi(text)  # ... and neither does its sidecar
    record = json.loads(text)
    assert set(record["meta"]) <= set(SIDECAR_META_KEYS)
    assert record["meta"]["Modality"] == "CT"
    for uid_key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert image.meta[uid_key] not in text
    # The same through a filter on the DICOM folder and from Python with PHI in a warning.
    assert main(["filter", str(phi_series), str(tmp_path / "f.nii.gz"), "-m", "median"]) == 0
    _no_phi(sidecar_path(tmp_path / "f.nii.gz").read_text())
    noisy = image.with_array(image.array, meta={**image.meta, "warnings": [
        f"slice 3 of {PHI['PatientName']} ({PHI['PatientID']}) was re-ordered"]})
    built = json.dumps(build_sidecar(noisy, tmp_path / "x.nii.gz", sha256="0" * 64, size_bytes=1,
                                     provenance=Manifest(command="test")))
    _no_phi(built)
    assert "re-ordered" in built


def test_phi_in_a_third_party_warning_is_withheld(tmp_path: Path, capsys) -> None:
    """highdicom warns about a one-component Patient's Name, quoting it; the SEG's sidecar and the
    terminal get one scrubbed line, not a raw UserWarning."""
    pytest.importorskip("highdicom")
    folder = tmp_path / "ct"
    write_series(_phantom(), folder, seed=1, patient={"PatientName": "Quinella", "PatientID": "PID-8675309"})
    labels = tmp_path / "labels.nii.gz"
    io.write(_phantom().with_array((_phantom().array > 70).astype(np.uint8)), labels)
    seg = tmp_path / "lesion.dcm"
    assert main(["seg-convert", str(labels), str(seg), "--source", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "Quinella" not in err and "UserWarning" not in err and "check_person_name" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"warning: {seg.name}: highdicom: The string \"<withheld>\" is unlikely to represent the "
                     "intended person name since it contains only a single component."]
    record = read_sidecar(seg)
    assert record["warnings"] == [lines[0].split(": ", 2)[2]]
    assert "Quinella" not in sidecar_path(seg).read_text()
    assert b"Quinella" in seg.read_bytes()  # the SEG itself copies the name (that is DICOM's rule)


def test_patient_derived_values_in_history_are_withheld(tmp_path: Path) -> None:
    image = _phantom().with_array(_phantom().array.astype(np.float32), meta={"history": [
        {"op": "filters.suv", "weight_kg": 71.5, "dose_bq": 3.7e8, "factor": 0.0002}]})
    io.write(image, tmp_path / "suv.nii.gz")
    step = read_sidecar(tmp_path / "suv.nii.gz")["history"][0]
    assert step == {"op": "filters.suv", "weight_kg": "withheld", "dose_bq": 3.7e8, "factor": 0.0002}


# --------------------------------------------------------------------------- window presets
def test_window_presets_is_always_a_list(tmp_path: Path) -> None:
    """A series without Window Center/Width (here MR) gives [] instead of a missing key."""
    write_series(_phantom(), tmp_path / "mr", modality="MR", seed=0)
    write_series(_phantom(), tmp_path / "ct", modality="CT", seed=0)
    assert io.read(tmp_path / "mr").meta["window_presets"] == []
    assert io.read(tmp_path / "ct").meta["window_presets"] == [{"center": 40.0, "width": 400.0}]


def test_array_sha256_is_the_digest_of_dtype_shape_and_c_order_bytes() -> None:
    """The digest recorded in manifests and cache records: SHA-256 of the dtype string, the shape
    and the C-order bytes (strided, big-endian, empty and 0-d arrays too); hashing without a copy
    must not change it."""
    import hashlib

    from medimg.core.provenance import array_sha256

    r = np.random.default_rng(0)
    arrays = [r.random((3, 4, 5)).astype(np.float32), r.random((4, 6))[:, ::2], np.zeros((0, 3)), np.array(5),
              r.integers(0, 9, 7).astype(">i4"), np.array([True, False]), np.asfortranarray(r.random((3, 2)))]
    for a in arrays:
        want = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()).hexdigest()
        assert array_sha256(a) == want


def test_dumps_indented_is_the_same_json() -> None:
    """The manifest writer's JSON: the same data as json.dumps, indented for its first levels,
    deeper values on one line; strict (NaN refused)."""
    import json

    from medimg.core.provenance import dumps_indented

    value = {"a": 1, "b": [1, 2, {"c": [3.5, "x", None, True]}], "d": {}, "e": [], "f": {"g": {"h": {"i": [1]}}},
             "é": "ü"}
    text = dumps_indented(value)
    assert json.loads(text) == value
    assert text.splitlines()[:2] == ["{", '  "a": 1,']
    assert '"h": {"i": [1]}' in text  # the fourth level on one line
    assert json.loads(dumps_indented([[]])) == [[]] and dumps_indented(5) == "5"
    with pytest.raises(ValueError):
        dumps_indented({"x": float("nan")})
