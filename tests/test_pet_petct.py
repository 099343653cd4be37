"""PET and CT of one patient: read together, resample either way, metrics in a CT-drawn mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimg import Image
from medimg.errors import ParameterError
from medimg.io.dicom.writer import write_series
from medimg.pet import metrics_with_mask, onto_grid, read_pet_ct, to_suv, write_pet_series

FOR_UID = "1.2.826.0.1.3680043.8.498.4242"
SUV_FACTOR = 70000 / (370e6 * 2 ** (-3600 / 6586.2))  # the writer's default header, by hand
HOT, BACKGROUND = 20000.0, 2000.0  # Bq/ml


def _centres(image: Image) -> np.ndarray:
    zyx = np.indices(image.spatial_shape).reshape(3, -1).T
    return image.index_to_physical(zyx[:, ::-1].astype(float)).reshape(*image.spatial_shape, 3)


def _study(tmp_path: Path, *, ct_patient: str = "P1", ct_frame: str = FOR_UID) -> tuple[Path, Path, Image]:
    ct = Image.from_geometry(np.zeros((40, 64, 64), np.float32), spacing=(1.0, 1.0, 2.0), origin=(-32.0, -32.0, -40.0))
    r_ct = np.linalg.norm(_centres(ct), axis=-1)
    ct = ct.with_array(np.where(r_ct <= 10, 60.0, 0.0).astype(np.float32))
    write_series(ct, tmp_path / "ct", seed=1, patient={"PatientID": ct_patient},
                 series={"FrameOfReferenceUID": ct_frame})
    pet = Image.from_geometry(np.zeros((22, 18, 18)), spacing=(4.0, 4.0, 4.0), origin=(-36.0, -36.0, -44.0))
    r_pet = np.linalg.norm(_centres(pet), axis=-1)
    pet = pet.with_array(np.where(r_pet <= 25, HOT, BACKGROUND))
    write_pet_series(pet, tmp_path / "pet", seed=2, patient={"PatientID": "P1"},
                     series={"FrameOfReferenceUID": FOR_UID})
    mask = ct.with_array((r_ct <= 10).astype(np.uint8), meta={})
    return tmp_path / "pet", tmp_path / "ct", mask


def test_ct_mask_on_pet_metrics_both_ways(tmp_path: Path) -> None:
    pet_dir, ct_dir, mask = _study(tmp_path)
    pet, ct = read_pet_ct(pet_dir, ct_dir)
    assert mask.same_grid(ct) and not mask.same_grid(pet)
    suv = to_suv(pet)
    expected = HOT * SUV_FACTOR  # the mask lies well inside the uniform 25 mm sphere
    on_pet = metrics_with_mask(suv, mask, grid="pet")
    on_ct = metrics_with_mask(suv, mask, grid="mask")
    for m in (on_pet, on_ct):
        assert m["suv_mean"] == pytest.approx(expected, rel=1e-4)
        assert m["suv_max"] == pytest.approx(expected, rel=1e-4)
    assert "nearest" in on_pet["grid"] and "linear" in on_ct["grid"]
    # on the CT grid the volume is the CT mask's: 4/3 pi 10^3 mm^3 = 4.19 ml, voxelised
    assert on_ct["volume_ml"] == pytest.approx(int(mask.array.sum()) * 0.002)
    assert on_ct["volume_ml"] == pytest.approx(4 / 3 * np.pi, rel=0.03)
    # the PET resampled onto the CT grid keeps SUV units and values
    pet_on_ct = onto_grid(suv, ct)
    assert pet_on_ct.same_grid(ct) and pet_on_ct.meta["units"] == "g/ml"
    r = np.linalg.norm(_centres(ct), axis=-1)
    np.testing.assert_allclose(pet_on_ct.array[r <= 15], expected, rtol=1e-4)
    mask_on_pet = onto_grid(mask, pet)
    assert mask_on_pet.dtype == np.uint8 and mask_on_pet.same_grid(pet)


def test_pet_ct_of_different_patients_or_frames(tmp_path: Path) -> None:
    pet_dir, ct_dir, _ = _study(tmp_path, ct_patient="P2")
    with pytest.raises(ParameterError, match=r"patient 'P1'.*'P2'"):
        read_pet_ct(pet_dir, ct_dir)
    other = tmp_path / "other"
    other.mkdir()
    pet_dir, ct_dir, _ = _study(other, ct_frame="1.2.826.0.1.3680043.8.498.99")
    with pytest.raises(ParameterError, match="Frame of Reference"):
        read_pet_ct(pet_dir, ct_dir)
    pet, ct = read_pet_ct(pet_dir, ct_dir, allow_other_frame=True)
    assert any("allow_other_frame" in w for w in pet.meta["warnings"])
    with pytest.raises(ParameterError, match="not PT"):
        read_pet_ct(ct_dir, pet_dir)
