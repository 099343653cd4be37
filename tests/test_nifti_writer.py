"""The one-pass NIfTI writer: the same header bytes and voxels as nibabel's writer, .nii and .nii.gz."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from medimg import io
from medimg.core.image import Image
from medimg.io.nifti import write_nifti

nib = pytest.importorskip("nibabel")


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


CASES = [
    ("int16", np.arange(60, dtype=np.int16).reshape(3, 4, 5), np.eye(3)),
    ("float32 oblique", np.random.default_rng(0).normal(size=(4, 6, 5)).astype(np.float32), _rotation(0.3, -0.2, 1.1)),
    ("uint8 flipped", np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.diag([1.0, -1.0, 1.0])),
    ("float64 left-handed", np.linspace(0, 1, 30).reshape(2, 3, 5), _rotation(0.1, 0.5, -0.7) @ np.diag([1.0, 1.0, -1.0])),
    ("bool", np.arange(24).reshape(2, 3, 4) % 3 == 0, np.eye(3)),
]


@pytest.mark.parametrize(("name", "array", "direction"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_same_bytes_as_nibabel(tmp_path: Path, name: str, array: np.ndarray, direction: np.ndarray,
                               suffix: str) -> None:
    img = Image.from_geometry(array, spacing=(0.7, 0.8, 2.5), origin=(-10.0, 20.5, 3.25), direction=direction)
    ours, theirs = tmp_path / f"ours{suffix}", tmp_path / f"nib{suffix}"
    sha, size = write_nifti(img, ours)
    nib.save(img.to_nibabel(), theirs)
    raw_ours, raw_theirs = ours.read_bytes(), theirs.read_bytes()
    assert sha == hashlib.sha256(raw_ours).hexdigest() and size == len(raw_ours)
    if suffix == ".nii.gz":
        raw_ours, raw_theirs = gzip.decompress(raw_ours), gzip.decompress(raw_theirs)
    head_ours, head_theirs = np.frombuffer(raw_ours[:352], np.uint8), np.frombuffer(raw_theirs[:352], np.uint8)
    hdr_ours = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(raw_ours[:352]))
    hdr_theirs = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(raw_theirs[:352]))
    for key in hdr_theirs:  # field by field: the quaternion may differ in its last float32 bit
        a, b = np.asarray(hdr_ours[key]), np.asarray(hdr_theirs[key])
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=0, atol=2e-7, err_msg=key)
        else:
            np.testing.assert_array_equal(a, b, err_msg=key)
    assert np.count_nonzero(head_ours != head_theirs) <= 8
    assert raw_ours[352:] == raw_theirs[352:]
    back = io.read(ours)
    assert back.same_grid(img) if hasattr(back, "same_grid") else True
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-5)
    np.testing.assert_array_equal(back.array, img.array.astype(back.array.dtype))


def test_io_write_uses_it_and_the_sidecar_hash_matches(tmp_path: Path) -> None:
    from medimg.io.sidecar import read_sidecar

    img = Image.from_geometry(np.arange(120, dtype=np.int16).reshape(4, 5, 6), spacing=(1.0, 1.0, 3.0))
    out = io.write(img, tmp_path / "a.nii.gz")
    side = read_sidecar(out)
    assert side is not None
    assert hashlib.sha256(out.read_bytes()).hexdigest() in str(side)


def test_gzip_without_isal_uses_zlib(tmp_path: Path, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "isal", None)  # "not installed"
    img = Image.from_geometry(np.arange(300, dtype=np.int16).reshape(3, 10, 10), spacing=(1.0, 1.0, 2.0))
    write_nifti(img, tmp_path / "z.nii.gz")
    nib.save(img.to_nibabel(), tmp_path / "n.nii.gz")
    assert gzip.decompress((tmp_path / "z.nii.gz").read_bytes()) == gzip.decompress((tmp_path / "n.nii.gz").read_bytes())
