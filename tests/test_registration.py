"""Intensity registration recovers known transforms of a synthetic phantom (mono- and
multi-modal); its transform files are read by SimpleITK with the same point mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimg.core.image import Image
from medimg.core.resample import resample_like
from medimg.registration import Transform, register


def _phantom() -> Image:
    z, y, x = np.indices((40, 64, 64)).astype(float)
    arr = (100 * np.exp(-(((x - 30) / 12) ** 2 + ((y - 34) / 9) ** 2 + ((z - 18) / 7) ** 2))
           + 60 * np.exp(-(((x - 40) / 5) ** 2 + ((y - 24) / 6) ** 2 + ((z - 22) / 4) ** 2))
           + 50 * np.exp(-(((x - 18) / 4) ** 2 + ((y - 46) / 5) ** 2 + ((z - 12) / 3) ** 2))
           + 40 * np.exp(-(((x - 46) / 4) ** 2 + ((y - 48) / 3) ** 2 + ((z - 28) / 3) ** 2)))
    return Image.from_geometry(arr.astype(np.float32), spacing=(1.5, 1.5, 2.0))


def _rotation_z(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


POINTS = np.array([[45.0, 51.0, 36.0], [60.0, 36.0, 44.0], [30.0, 40.0, 30.0], [50.0, 60.0, 40.0]])


@pytest.fixture(scope="module")
def fixed() -> Image:
    return _phantom()


def _moved(fixed: Image, true: Transform) -> Image:
    # moving(true(x)) == fixed(x): the moving image is the fixed one seen through true's inverse
    return resample_like(fixed, fixed, transform=true.inverse())


@pytest.mark.parametrize(("kind", "metric"), [("rigid", "ms"), ("rigid", "ncc"), ("affine", "ms")])
def test_a_known_linear_transform_is_recovered(fixed: Image, kind: str, metric: str) -> None:
    centre = fixed.affine[:3, :3] @ (np.array(fixed.size) / 2.0) + fixed.affine[:3, 3]
    true = Transform.from_matrix(_rotation_z(4.0), translation=[3.0, -2.0, 2.5], center=centre)
    result = register(fixed, _moved(fixed, true), transform=kind, metric=metric)
    error = np.linalg.norm(result.transform.transform_points(POINTS) - true.transform_points(POINTS), axis=1)
    assert error.max() < 0.3, error
    assert result.quality["metric_trace"] and np.isfinite(result.quality["final_metric"])


def test_multi_modal_needs_mutual_information(fixed: Image) -> None:
    true = Transform.from_matrix(np.eye(3), translation=[4.0, -3.0, 2.0])
    moving = _moved(fixed, true)
    v = moving.array
    remapped = moving.with_array((np.sin(v / 20.0) * 100 + 0.002 * v**2).astype(np.float32))  # non-monotonic
    mi = register(fixed, remapped, transform="rigid", metric="mi", task="multi-modal")
    ms = register(fixed, remapped, transform="rigid", metric="ms")
    err = lambda r: np.linalg.norm(r.transform.transform_points(POINTS) - true.transform_points(POINTS), axis=1).max()  # noqa: E731
    assert err(mi) < 0.5
    assert err(ms) > 2 * err(mi)


def test_a_saved_transform_maps_points_like_simpleitk(fixed: Image, tmp_path: Path) -> None:
    import SimpleITK as sitk

    true = Transform.from_matrix(_rotation_z(3.0), translation=[2.0, 1.0, -1.5])
    result = register(fixed, _moved(fixed, true), transform="rigid", metric="ms")
    for name in ("t.tfm", "t.h5"):
        result.transform.save(tmp_path / name)
        read = sitk.ReadTransform(str(tmp_path / name))
        ours = result.transform.transform_points(POINTS)
        theirs = np.array([read.TransformPoint(tuple(p)) for p in POINTS])
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_register_and_warp_commands(fixed: Image, tmp_path: Path, capsys) -> None:
    import json

    from medimg import io
    from medimg.cli.main import main

    true = Transform.from_matrix(np.eye(3), translation=[3.0, -2.0, 1.0])
    io.write(fixed, tmp_path / "fixed.nii.gz")
    io.write(_moved(fixed, true), tmp_path / "moving.nii.gz")
    rc = main(["register", str(tmp_path / "fixed.nii.gz"), str(tmp_path / "moving.nii.gz"), "--transform", "rigid",
               "--metric", "ms", "-o", str(tmp_path / "t.tfm"), "--resampled", str(tmp_path / "r.nii.gz"), "--json"])
    assert rc == 0
    record = json.loads(capsys.readouterr().out)
    assert record["transform"] == "rigid" and record["iterations"] > 0
    tfm = Transform.load(tmp_path / "t.tfm")
    assert np.abs(tfm.transform_points(POINTS) - true.transform_points(POINTS)).max() < 0.3
    labels = fixed.with_array((fixed.array > 40).astype(np.uint8) * 3)
    io.write(labels, tmp_path / "labels.nii.gz")
    assert main(["warp", str(tmp_path / "labels.nii.gz"), str(tmp_path / "t.tfm"), "--reference",
                 str(tmp_path / "fixed.nii.gz"), "-o", str(tmp_path / "w.nii.gz"), "--label"]) == 0
    warped = io.read(tmp_path / "w.nii.gz")
    assert set(np.unique(warped.array)) <= {0, 3}
    capsys.readouterr()
    assert main(["register", str(tmp_path / "fixed.nii.gz"), str(tmp_path / "moving.nii.gz"), "--transform",
                 "rigidd", "-o", str(tmp_path / "x.tfm")]) == 2
    assert main(["warp", str(tmp_path / "labels.nii.gz"), str(tmp_path / "fixed.nii.gz"), "--reference",
                 str(tmp_path / "fixed.nii.gz"), "-o", str(tmp_path / "y.nii.gz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error:") for line in err)
