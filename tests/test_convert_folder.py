"""`medimg convert DICOMDIR OUTDIR`: every series to its own NIfTI, in parallel, same voxels and
geometry as reading each series alone; sidecars with the series' input hash; failures per series."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from medimg import Image, io
from medimg.cli.main import main
from medimg.core.provenance import sha256_file
from medimg.io.convert import convert_folder, series_file_name
from medimg.io.dicom import read_series, scan
from medimg.io.dicom.writer import write_series


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    rng = np.random.default_rng(0)
    for k, (shape, spacing) in enumerate([((5, 12, 10), (0.8, 0.8, 2.0)), ((4, 9, 11), (1.0, 0.7, 3.0)),
                                          ((6, 8, 8), (0.5, 0.5, 1.0))]):
        arr = rng.integers(-500, 1500, size=shape).astype(np.float32)
        img = Image.from_geometry(arr, spacing=spacing, origin=(-20.0, 10.0 * k, 5.0))
        write_series(img, root / f"s{k}", seed=k, shuffle_seed=k)
    return root


@pytest.mark.parametrize(("ext", "workers"), [(".nii.gz", 2), (".nii", 1)])
def test_every_series_converted_like_reading_it_alone(tmp_path: Path, ext: str, workers: int) -> None:
    root = _folder(tmp_path)
    expected = {series_file_name(s): read_series(s) for s in scan(root).series}
    outs = list(convert_folder(root, tmp_path / "out", suffix=ext, workers=workers))
    assert len(outs) == 3 and all(o.path is not None for o in outs)
    for out in outs:
        assert out.path is not None and out.path.name.endswith(ext)
        ref = expected[out.path.name.removesuffix(ext)]
        back = io.read(out.path)
        np.testing.assert_array_equal(back.array, ref.array)
        np.testing.assert_allclose(back.affine, ref.affine, atol=1e-5)
        side = json.loads(out.path.with_name(out.path.name.removesuffix(ext) + ".json").read_text())
        assert side["file"]["sha256"] == sha256_file(out.path)
        # the input record: the series' own files, hashed as tree_sha256 hashes a folder
        series = next(s for s in scan(root).series if series_file_name(s) == out.path.name.removesuffix(ext))
        digest = hashlib.sha256()
        for f in sorted(series.files, key=lambda p: p.relative_to(root).as_posix()):
            digest.update(f.relative_to(root).as_posix().encode() + b"\0" + sha256_file(f).encode() + b"\n")
        assert digest.hexdigest() in json.dumps(side)


def test_cli_folder_mode_and_failures(tmp_path: Path, capsys) -> None:
    root = _folder(tmp_path)
    assert main(["convert", str(root), str(tmp_path / "out"), "--ext", ".nii", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "3 series written" in out and len(list((tmp_path / "out").glob("*.nii"))) == 3
    assert main(["convert", str(root), str(tmp_path / "out"), "--ext", ".nii"]) == 2  # exists: refuse
    assert "--overwrite" in capsys.readouterr().err
    # a series with a missing slice fails alone; the others are written
    victim = sorted((root / "s1").iterdir())[2]
    victim.unlink()
    rc = main(["convert", str(root), str(tmp_path / "out2"), "--ext", ".nii.gz"])
    captured = capsys.readouterr()
    assert rc == 1 and "2 series written" in captured.out and "1 failed" in captured.out
    assert "error: series" in captured.err
