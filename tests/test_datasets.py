"""Tests of medimg.datasets: phantom helpers and the synthetic CT cohort."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage as ndi

from medimg.datasets import (
    SCANNERS,
    Ellipsoid,
    LobulatedShape,
    RandomField,
    correlated_noise,
    ellipsoid_mask,
    grid_points_mm,
    load_cohort,
    lobulated_mask,
    make_cohort,
)
from medimg.errors import FileFormatError, ParameterError
from medimg.io import read

# A tiny cohort: 4 patients, 2 with follow-up, (12, 48, 48) voxels of 1.5 x 1.5 x 3 mm.
SMALL = {"n_patients": 4, "shape_zyx": (12, 48, 48), "spacing_mm": (1.5, 1.5, 3.0),
         "followup_fraction": 0.5, "malignant_fraction": 0.5}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort") / "c", seed=3, **SMALL)


def _series(folder: Path) -> tuple[list[pydicom.Dataset], np.ndarray]:
    """Datasets sorted along the slice normal, and the HU volume (z, y, x)."""
    ds = [pydicom.dcmread(p) for p in folder.glob("*.dcm")]
    ds.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in ds])
    return ds, hu


def _digest(cohort_obj) -> dict[str, str]:
    out = {}
    for row in cohort_obj.rows:
        for path in sorted(cohort_obj.ct_dir(row).glob("*.dcm")):
            ds = pydicom.dcmread(path)
            out[ds.SOPInstanceUID] = hashlib.sha256(ds.PixelData).hexdigest()
    return out


def _resampling_error(base_hu, follow_hu, affine, matrix) -> float:
    """Mean |follow-up - baseline sampled at (affine^-1 matrix affine) index| inside the grid (HU)."""
    nz, ny, nx = follow_hu.shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    idx = np.stack([i, j, k, np.ones_like(i)], axis=-1).reshape(-1, 4).T.astype(float)
    src = np.linalg.inv(affine) @ matrix @ affine @ idx  # follow-up index -> baseline index
    sampled = ndi.map_coordinates(base_hu, src[2::-1], order=1, mode="nearest")
    inner = ((src[0] > 2) & (src[0] < nx - 3) & (src[1] > 2) & (src[1] < ny - 3)
             & (src[2] >= 0) & (src[2] <= nz - 1))
    return float(np.mean(np.abs(sampled - follow_hu.ravel())[inner]))


# --------------------------------------------------------------------------------- phantoms
def test_ellipsoid_mask_volume_and_position():
    spacing = (0.5, 0.6, 0.8)
    mask = ellipsoid_mask((60, 80, 80), (20.0, 24.0, 24.0), (8.0, 6.0, 10.0), spacing)
    volume = mask.sum() * np.prod(spacing)
    assert volume == pytest.approx(4 / 3 * np.pi * 8 * 6 * 10, rel=0.02)
    points = grid_points_mm((60, 80, 80), spacing)
    np.testing.assert_allclose(points[mask].mean(axis=0), [20.0, 24.0, 24.0], atol=0.05)
    assert points[0, 0, 1].tolist() == [0.5, 0.0, 0.0]  # x varies along the last array axis


def test_lobulated_shape_volume_matches_its_mask():
    spacing = (0.4, 0.4, 0.4)
    shape = LobulatedShape.random(np.random.default_rng(1), (12.0, 12.0, 12.0), 7.0, amplitude=0.3)
    mask = shape.contains(grid_points_mm((60, 60, 60), spacing))
    assert mask.sum() * 0.4**3 == pytest.approx(shape.volume_mm3, rel=0.02)
    assert shape.scaled(1.5).volume_mm3 == pytest.approx(shape.volume_mm3 * 1.5**3, rel=1e-9)
    # the public helper draws the same shape from the same seed
    again = lobulated_mask((60, 60, 60), (12.0, 12.0, 12.0), 7.0, spacing, amplitude=0.3,
                           seed=np.random.default_rng(1))
    np.testing.assert_array_equal(again, mask)
    # lobulated: the radius varies with direction, unlike a sphere
    sphere = lobulated_mask((60, 60, 60), (12.0, 12.0, 12.0), 7.0, spacing, amplitude=0.0)
    assert sphere.sum() * 0.4**3 == pytest.approx(4 / 3 * np.pi * 343, rel=0.02)
    assert (mask ^ sphere).sum() > 0.05 * sphere.sum()
    directions = np.random.default_rng(2).normal(size=(2000, 3))
    radii = shape.radius_at(directions / np.linalg.norm(directions, axis=1, keepdims=True))
    assert radii.max() / radii.min() > 1.2
    assert radii.max() <= shape.max_radius_mm


def test_ellipsoid_scaled_volume():
    shape = Ellipsoid((0, 0, 0), (1.0, 2.0, 3.0))
    assert shape.scaled(2.0).volume_mm3 == pytest.approx(8 * 4 / 3 * np.pi * 6)


def test_correlated_noise_statistics():
    noise = correlated_noise((40, 64, 64), (1.0, 1.0, 2.0), correlation_mm=2.0, seed=0)
    assert noise.mean() == pytest.approx(0.0, abs=1e-9)
    assert noise.std() == pytest.approx(1.0, rel=1e-9)
    neighbour = np.corrcoef(noise[:, :, 1:].ravel(), noise[:, :, :-1].ravel())[0, 1]
    assert neighbour > 0.8  # correlated over ~2 mm at 1 mm voxels
    white = correlated_noise((40, 64, 64), (1.0, 1.0, 2.0), correlation_mm=0.0, seed=0)
    assert abs(np.corrcoef(white[:, :, 1:].ravel(), white[:, :, :-1].ravel())[0, 1]) < 0.02
    np.testing.assert_array_equal(noise, correlated_noise((40, 64, 64), (1.0, 1.0, 2.0),
                                                          correlation_mm=2.0, seed=0))


def test_random_field_has_unit_variance():
    field = RandomField.random(np.random.default_rng(0), wavelength_mm=(4.0, 8.0), n_waves=64)
    points = np.random.default_rng(1).uniform(-500, 500, (20000, 3))
    values = field(points)
    assert values.std() == pytest.approx(1.0, abs=0.1)
    assert abs(values.mean()) < 0.1


def test_phantom_errors():
    with pytest.raises(ParameterError, match="spacing_mm_xyz"):
        ellipsoid_mask((4, 4, 4), (0, 0, 0), (1, 1, 1), (1, 0, 1))
    with pytest.raises(ParameterError, match="amplitude"):
        lobulated_mask((4, 4, 4), (0, 0, 0), 1.0, (1, 1, 1), amplitude=1.2)


# ----------------------------------------------------------------------------------- cohort
def test_layout_and_csv(cohort):
    root = cohort.root
    assert (root / "cohort.csv").is_file() and (root / "ground_truth.json").is_file()
    assert len(cohort.patient_ids) == 4
    assert len(cohort.rows) == 6  # 2 follow-ups
    assert sum(r.label for r in cohort.rows if r.timepoint == 0) == 2
    assert load_cohort(root) == cohort
    assert not [p for p in root.parent.iterdir() if p.name != root.name]  # no temporary left
    for row in cohort.rows:
        assert cohort.ct_dir(row) == root / row.patient_id / row.study_label / "ct"
        assert len(list(cohort.ct_dir(row).glob("*.dcm"))) == 12
        assert row.scanner_model in {s.model for s in SCANNERS}


def test_masks_match_csv_and_ct_grid(cohort):
    for row in cohort.rows:
        datasets, hu = _series(cohort.ct_dir(row))
        mask = read(cohort.mask_path(row))
        assert mask.dtype == np.uint8 and set(np.unique(mask.array)) == {0, 1}
        assert int(mask.array.sum()) == row.lesion_voxels
        assert row.lesion_volume_mm3 == pytest.approx(row.lesion_voxels * mask.voxel_volume_mm3)
        assert row.lesion_volume_mm3 == pytest.approx(row.lesion_volume_true_mm3, rel=0.06)
        # the mask lies on the CT grid: same origin, spacing and shape
        assert mask.shape == hu.shape
        np.testing.assert_allclose(mask.origin, [float(v) for v in datasets[0].ImagePositionPatient],
                                   atol=1e-6)
        np.testing.assert_allclose(mask.spacing, (1.5, 1.5, 3.0), atol=1e-6)
        # and on the lesion: brighter than the surrounding soft tissue
        ring = ndi.binary_dilation(mask.array, iterations=3) & ~ndi.binary_dilation(mask.array)
        assert hu[mask.array == 1].mean() > hu[ring].mean() + 30


def test_demographics_are_consistent_phi(cohort):
    for pid in cohort.patient_ids:
        rows = [r for r in cohort.rows if r.patient_id == pid]
        first = None
        for row in rows:
            ds = pydicom.dcmread(next(cohort.ct_dir(row).glob("*.dcm")))
            assert ds.PatientID == pid and "^" in str(ds.PatientName)
            assert ds.PatientSex == row.sex and ds.InstitutionName == row.institution
            assert ds.ManufacturerModelName == row.scanner_model
            assert ds.StudyDate == row.study_date and ds.AccessionNumber and ds.ReferringPhysicianName
            birth = dt.datetime.strptime(ds.PatientBirthDate, "%Y%m%d").date()
            study = dt.datetime.strptime(ds.StudyDate, "%Y%m%d").date()
            age = study.year - birth.year - ((study.month, study.day) < (birth.month, birth.day))
            assert ds.PatientAge == f"{age:03d}Y" and row.age_years == age
            assert ds.StudyInstanceUID == row.study_uid and ds.SeriesInstanceUID == row.series_uid
            if first is None:
                first = ds
            else:  # follow-up: same patient, later date, new study and frame of reference
                assert (first.PatientName, first.PatientBirthDate) == (ds.PatientName, ds.PatientBirthDate)
                assert ds.StudyDate > first.StudyDate
                assert ds.StudyInstanceUID != first.StudyInstanceUID
                assert ds.FrameOfReferenceUID != first.FrameOfReferenceUID


def test_determinism(cohort, tmp_path):
    again = make_cohort(tmp_path / "again", seed=3, **SMALL)
    assert again.rows == cohort.rows
    assert _digest(again) == _digest(cohort)
    assert (again.root / "cohort.csv").read_bytes() == (cohort.root / "cohort.csv").read_bytes()
    assert again.ground_truth() == cohort.ground_truth()
    other = make_cohort(tmp_path / "other", seed=4, **SMALL)
    assert not set(_digest(other)) & set(_digest(cohort))  # no UID in common
    assert not set(_digest(other).values()) & set(_digest(cohort).values())
    assert [r.patient_id for r in other.rows] != [r.patient_id for r in cohort.rows]


def test_malignant_lesions_are_more_heterogeneous(tmp_path):
    small = make_cohort(tmp_path / "c", seed=11, n_patients=8, shape_zyx=(12, 48, 48),
                        spacing_mm=(1.5, 1.5, 3.0), followup_fraction=0.0, noise_hu=6.0)
    stds = {0: [], 1: []}
    for row in small.rows:
        _, hu = _series(small.ct_dir(row))
        mask = read(small.mask_path(row)).array.astype(bool)
        stds[row.label].append(hu[mask].std())
    assert len(stds[0]) == len(stds[1]) == 4
    assert np.mean(stds[1]) > np.mean(stds[0]) + 3.0
    truth = small.ground_truth()["patients"]
    kinds = {p["label"]: p["lesion_type"] for p in truth.values()}
    assert kinds == {0: "ellipsoid", 1: "lobulated"}


def test_followup_transform_and_growth(cohort):
    truth = cohort.ground_truth()
    followed = [r for r in cohort.rows if r.timepoint == 1]
    assert len(followed) == 2
    for row in followed:
        base = next(r for r in cohort.rows if r.patient_id == row.patient_id and r.timepoint == 0)
        studies = truth["patients"][row.patient_id]["studies"]
        assert studies[0]["transform_from_baseline"] == np.eye(4).tolist()
        transform = np.array(studies[1]["transform_from_baseline"])
        growth = studies[1]["growth_factor"]
        label = truth["patients"][row.patient_id]["label"]
        assert (1.2 <= growth <= 2.0) if label == 1 else (1.0 <= growth <= 1.1)
        np.testing.assert_allclose(transform[:3, :3].T @ transform[:3, :3], np.eye(3), atol=1e-12)
        assert abs(studies[1]["rotation_deg_about_z"]) <= 5.0
        assert np.all(np.abs(studies[1]["translation_mm"]) <= 5.0)
        assert row.lesion_volume_mm3 == pytest.approx(base.lesion_volume_mm3 * growth, rel=0.04)
        assert row.lesion_volume_true_mm3 == pytest.approx(base.lesion_volume_true_mm3 * growth)

        # direction of the transform: follow-up(p) ~ baseline(inv(T) p), better than identity or T
        base_ds, base_hu = _series(cohort.ct_dir(base))
        _, follow_hu = _series(cohort.ct_dir(row))
        mask = read(cohort.mask_path(base))
        affine = mask.affine  # the CT grid (checked in test_masks_match_csv_and_ct_grid)

        def error(matrix, base_hu=base_hu, follow_hu=follow_hu, affine=affine):
            return _resampling_error(base_hu, follow_hu, affine, matrix)

        right = error(np.linalg.inv(transform))
        assert right < 0.8 * error(np.eye(4)) or np.allclose(transform, np.eye(4), atol=0.05)
        assert right < error(transform)

        # the lesion centre recorded for the follow-up is where the follow-up mask is
        follow_mask = read(cohort.mask_path(row))
        centroid = follow_mask.index_to_physical(np.argwhere(follow_mask.array)[:, ::-1].mean(0))
        assert np.linalg.norm(centroid - studies[1]["lesion_centre_mm"]) < 2.5


def test_threshold_segmentation_reaches_dice_08(cohort):
    """HU > 70 inside the body, largest connected component, finds the lesion (default noise)."""
    dices = []
    for row in cohort.rows:
        _, hu = _series(cohort.ct_dir(row))
        truth = read(cohort.mask_path(row)).array.astype(bool)
        body = ndi.binary_fill_holes(hu > -400)
        labels, n = ndi.label((hu > 70) & body)
        sizes = ndi.sum(np.ones_like(hu), labels, range(1, n + 1))
        seg = labels == (int(np.argmax(sizes)) + 1)
        dices.append(2 * (seg & truth).sum() / (seg.sum() + truth.sum()))
    assert np.mean(dices) >= 0.8 and min(dices) >= 0.7, dices


def test_scanners_differ_in_noise_and_sharpness():
    assert SCANNERS[0].noise_factor != SCANNERS[1].noise_factor
    assert SCANNERS[0].blur_mm != SCANNERS[1].blur_mm


def test_progress_errors_and_atomicity(tmp_path):
    calls = []
    make_cohort(tmp_path / "p", n_patients=2, shape_zyx=(8, 40, 40), spacing_mm=(1.5, 1.5, 3.0),
                progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    with pytest.raises(ParameterError, match="must not exist or be empty"):
        make_cohort(tmp_path / "p", n_patients=1)
    with pytest.raises(ParameterError, match="too small"):
        make_cohort(tmp_path / "tiny", n_patients=1, shape_zyx=(4, 8, 8), spacing_mm=(0.5, 0.5, 0.5))
    with pytest.raises(ParameterError, match="followup_fraction"):
        make_cohort(tmp_path / "f", followup_fraction=1.5)

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_cohort(tmp_path / "stopped", n_patients=2, shape_zyx=(8, 40, 40),
                    spacing_mm=(1.5, 1.5, 3.0), progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]
    with pytest.raises(FileFormatError, match="cohort.csv"):
        load_cohort(tmp_path)


@pytest.mark.tools
def test_dciodvfy_accepts_cohort_files(cohort):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not on PATH")
    for row in cohort.rows[:2]:
        path = sorted(cohort.ct_dir(row).glob("*.dcm"))[0]
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
        assert not [ln for ln in lines if ln.startswith(("Error", "Warning"))], lines
