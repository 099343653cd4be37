"""Cold start of the CLI: a run builds only its own command; help needs no NumPy; CSV without pandas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medimg.cli.main import _app_for, _command_name, app, main


def _imports_after(args: list[str]) -> set[str]:
    code = (f"import sys; from medimg.cli.main import main; main({args!r}); "
            "print('MODULES:' + ','.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False).stdout
    return set(out.strip().splitlines()[-1].removeprefix("MODULES:").split(","))


def test_help_and_a_command_help_import_no_numpy_and_no_other_command_module() -> None:
    for args in (["--help"], ["features", "--help"], ["convert", "--help"]):
        mods = _imports_after(args)
        heavy = {"numpy", "scipy", "pandas", "SimpleITK", "pydicom", "nibabel", "torch", "dask", "rich.markdown",
                 "pydantic"}
        assert not heavy & mods, (args, heavy & mods)


def test_features_run_imports_no_scipy_scikit_image_pandas_nor_unused_medimg_modules(tmp_path: Path) -> None:
    """The import budget of `medimg features` (a shell loop over cases pays it per case): checked
    on which modules a real run loads, not on time, so a loaded machine cannot make it flake.
    SciPy alone costs a run ~0.2 s (scipy.spatial for the hull, scipy.fft and scipy.ndimage
    pull in scipy.special and the array-API layer); docs/development.md, start-up section."""
    data = Path(__file__).parent / "data" / "mri-brain1"
    out = tmp_path / "f.csv"
    mods = _imports_after(["features", str(data / "brain1_roi_image.nrrd"), str(data / "brain1_roi_label.nrrd"),
                           "-o", str(out)])
    assert out.exists() and len(out.read_text().splitlines()) == 2
    assert "numpy" in mods and "medimg.features.morphology" in mods  # the run did the work
    tops = {m.split(".")[0] for m in mods}
    assert not tops & {"scipy", "skimage", "pandas", "SimpleITK", "pydicom", "nibabel", "torch", "dask", "pyarrow"}, \
        tops & {"scipy", "skimage", "pandas", "SimpleITK", "pydicom", "nibabel", "torch", "dask", "pyarrow"}
    assert not mods & {"medimg.io.dicom", "medimg.features.filters", "medimg.features.pyradiomics_compat"}


def test_one_pyradiomics_case_does_not_load_numba(tmp_path: Path) -> None:
    """One case from a fresh process stays on the NumPy path (medimg.core.jit's automatic rule):
    numba's import and the kernels' cache would cost more than they save on one region."""
    pytest.importorskip("numba")
    data = Path(__file__).parent / "data" / "mri-brain1"
    out = tmp_path / "p.csv"
    mods = _imports_after(["features", str(data / "brain1_roi_image.nrrd"), str(data / "brain1_roi_label.nrrd"),
                           "--preset", "pyradiomics", "-o", str(out)])
    assert out.exists() and "original_glcm_Contrast" in out.read_text().splitlines()[0]
    assert "medimg.features.pyradiomics_compat" in mods  # the PyRadiomics mode ran
    assert "numba" not in mods


def test_every_command_and_group_answers_help_through_its_own_small_app(capsys) -> None:
    names = [_command_name(c) for c in app.registered_commands] + [g.name for g in app.registered_groups]
    assert len(names) == len(set(names)) > 10
    for name in names:
        small = _app_for([name, "--help"])
        assert len(small.registered_commands) + len(small.registered_groups) == 1
        assert main([name, "--help"]) == 0, name
        assert "Usage" in capsys.readouterr().out
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in names)
    assert main(["no-such-command"]) == 2
    assert "no-such-command" in capsys.readouterr().err


def test_plain_csv_is_written_as_pandas_writes_it(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    from medimg.io.tables import _plain_cells, write_table

    rows = [{"case": "a,b", "n": 1, "x": 0.1, "ok": True, "nan": float("nan"), "big": 1e20, "q": 'say "hi"',
             "np": np.float64(1 / 3), "i64": np.int64(-4)},
            {"case": "c", "n": 2, "x": 2.5e-7, "ok": False, "nan": 3.0, "big": -0.0, "q": "x",
             "np": np.float64(2.0), "i64": np.int64(5)}]
    write_table(rows, tmp_path / "ours.csv")
    pd.DataFrame(rows).to_csv(tmp_path / "pandas.csv", index=False)
    assert (tmp_path / "ours.csv").read_text() == (tmp_path / "pandas.csv").read_text()
    # tables pandas would write differently go through pandas
    assert _plain_cells([{"a": 1}, {"a": 2.0}], ["a"]) is None
    assert _plain_cells([{"a": np.float32(0.1)}], ["a"]) is None
    assert _plain_cells([{"a": 1}, {"b": 2}], ["a", "b"]) is None
    assert _plain_cells([{"a": None}], ["a"]) is None
