"""The `medimg` command: help, version, info, convert, and one clear line for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, DIRECTIONS
from medimg import Image, __version__, io
from medimg.cli.main import main
from medimg.io.dicom.writer import write_series


def _series(tmp_path: Path, name: str = "ct", direction: str = "oblique", seed: int = 0) -> tuple[Path, Image]:
    z, y, x = np.indices((6, 16, 12))
    img = Image.from_geometry((x * 10 + y * 3 + z * 100 - 500).astype(np.float32), spacing=(0.9, 0.8, 3.0),
                              origin=(10.0, -20.0, 30.0), direction=DIRECTIONS[direction])
    write_series(img, tmp_path / name, seed=seed, patient={"PatientID": "P001", "PatientName": "DOE^JANE"})
    return tmp_path / name, img


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_help_and_version(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("info", "convert", "list", "synth", "demo"):
        assert command in out
    for command in ("info", "convert", "list", "synth", "demo"):
        assert main([command, "--help"]) == 0
        assert "Usage" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"medimg {__version__}"


def test_python_dash_m_medimg_runs_the_cli(tmp_path: Path) -> None:
    """``python -m medimg`` is the same CLI: version, and one error line with exit 2."""
    ok = subprocess.run([sys.executable, "-m", "medimg", "--version"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == f"medimg {__version__}"
    bad = subprocess.run([sys.executable, "-m", "medimg", "info", str(tmp_path / "absent")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_program_exit_flushes_output_and_runs_atexit_handlers(tmp_path: Path) -> None:
    """``run`` (the console script) ends by ``os._exit`` when only the main thread is left:
    stdout is flushed, atexit handlers run, the status is kept, outputs are complete; with
    another thread alive it exits the ordinary way (which waits for the thread)."""
    code = ("import atexit, sys; atexit.register(lambda: print('atexit ran', flush=True)); "
            "from medimg.cli.main import run; sys.argv = ['medimg', *sys.argv[1:]]; run()")
    out = subprocess.run([sys.executable, "-c", code, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.splitlines() == [f"medimg {__version__}", "atexit ran"]
    bad = subprocess.run([sys.executable, "-c", code, "info", str(tmp_path / "absent")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout.strip() == "atexit ran"
    image = Image.from_geometry(np.arange(24, dtype=np.int16).reshape(2, 3, 4), spacing=(2.0, 1.0, 1.0))
    io.write(image, tmp_path / "in.nrrd")
    done = subprocess.run([sys.executable, "-c", code, "convert", str(tmp_path / "in.nrrd"), str(tmp_path / "out.nii")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(io.read(tmp_path / "out.nii").array, image.array)
    assert json.loads((tmp_path / "out.json").read_text())
    threaded = ("import sys, threading, time; from medimg.cli.main import run; "
                "t = threading.Thread(target=lambda: (time.sleep(0.3), print('thread done', flush=True))); t.start(); "
                "sys.argv = ['medimg', '--version']; run()")
    out = subprocess.run([sys.executable, "-c", threaded], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.splitlines() == [f"medimg {__version__}", "thread done"]


def test_help_does_not_import_heavy_modules() -> None:
    code = ("import sys; from medimg.cli.main import main; main(['--help']); "
            "heavy = [m for m in ('torch', 'monai', 'sklearn', 'matplotlib', 'pydicom', 'SimpleITK', 'scipy') if m in sys.modules]; "
            "print('HEAVY:' + ','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY:"


def test_info_reports_patient_series_geometry(tmp_path: Path, capsys) -> None:
    folder, img = _series(tmp_path)
    assert main(["info", str(folder), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    (patient,) = summary["patients"]
    assert patient["patient_id"] == "P001" and patient["patient_name"] == "DOE^JANE"
    (series,) = patient["studies"][0]["series"]
    assert series["size"] == [12, 16, 6]
    assert series["spacing_mm"] == pytest.approx([0.9, 0.8, 3.0])
    assert series["orientation"] == img.orientation
    assert series["value_range"] == [float(img.array.min()), float(img.array.max())]
    assert main(["info", str(folder)]) == 0
    table = capsys.readouterr().out
    assert "P001" in table and "CT" in table and img.orientation in table


def test_info_on_a_nifti_file(tmp_path: Path, capsys) -> None:
    img = Image.from_geometry(np.arange(24, dtype=np.int16).reshape(2, 3, 4), spacing=(1, 2, 3))
    io.write(img, tmp_path / "a.nii.gz")
    assert main(["info", str(tmp_path / "a.nii.gz"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"][0]["size"] == [4, 3, 2]
    assert summary["images"][0]["value_range"] == [0.0, 23.0]


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_convert_dicom_to_each_format(tmp_path: Path, suffix: str, capsys) -> None:
    folder, img = _series(tmp_path)
    out = tmp_path / f"vol{suffix}"
    assert main(["convert", str(folder), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    back = io.read(out)
    np.testing.assert_array_equal(back.array, img.array)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-4)
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_convert_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    folder, _ = _series(tmp_path)
    out = tmp_path / "vol.nii.gz"
    out.write_bytes(b"keep me")
    assert main(["convert", str(folder), str(out)]) == 2
    assert "exists already" in _one_error_line(capsys)
    assert out.read_bytes() == b"keep me"


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    text = tmp_path / "notes.dcm"
    text.write_text("this is not DICOM\n" * 20)
    empty = tmp_path / "empty"
    empty.mkdir()
    folder, _ = _series(tmp_path, "good")
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(sorted(folder.glob("*.dcm"))[0].read_bytes()[:-300])
    # an inconsistent series: one slice moved onto its neighbour
    import pydicom

    bad_folder, _ = _series(tmp_path, "bad", direction="axial", seed=1)
    files = sorted(bad_folder.glob("*.dcm"))
    ds = pydicom.dcmread(files[2])
    ds.ImagePositionPatient = pydicom.dcmread(files[1]).ImagePositionPatient
    ds.save_as(files[2])
    return {
        "non-DICOM file": (text, "not a DICOM file"),
        "truncated file": (truncated, "cut short"),
        "missing pixel data": (DATA / "dicom-corpus" / "rtstruct.dcm", "no Pixel Data"),
        "empty folder": (empty, "holds no files"),
        "inconsistent series": (bad_folder, "same position"),
        "missing path": (tmp_path / "nope", "no such file"),
    }


@pytest.mark.parametrize("case", ["non-DICOM file", "truncated file", "missing pixel data", "empty folder",
                                  "inconsistent series", "missing path"])
def test_bad_input_prints_one_line_and_writes_nothing(tmp_path: Path, case: str, capsys) -> None:
    path, expected = _bad_inputs(tmp_path)[case]
    capsys.readouterr()
    out = tmp_path / "out" / "x.nii.gz"
    assert main(["convert", str(path), str(out)]) == 2
    line = _one_error_line(capsys)
    assert expected in line
    assert path.name in line
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no such file"):
        main(["--debug", "convert", str(tmp_path / "nope"), str(tmp_path / "x.nii")])


def test_unknown_command_and_bad_extension(tmp_path: Path, capsys) -> None:
    assert main(["frobnicate"]) == 2
    assert "No such command" in capsys.readouterr().err
    folder, _ = _series(tmp_path)
    assert main(["convert", str(folder), str(tmp_path / "x.xyz")]) == 2
    assert "cannot write" in _one_error_line(capsys)


def test_list_shows_registered_operations(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("threshold", "otsu", "firstorder", "logistic"):
        assert name in out
    assert main(["list", "segmentaton"]) == 2
    assert "did you mean 'segmentation'" in _one_error_line(capsys)


def test_console_script_runs() -> None:
    exe = Path(sys.executable).with_name("medimg")
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and __version__ in result.stdout


def test_info_exits_non_zero_when_a_file_in_the_folder_is_broken(tmp_path: Path, capsys) -> None:
    folder, _ = _series(tmp_path)
    (folder / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00")
    assert main(["info", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "unreadable" in out and "broken.dcm" in out and "1 problem(s)" in out
