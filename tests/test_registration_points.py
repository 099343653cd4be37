"""Point-based registration (landmarks, ICP), longitudinal change and fusion views.

Every check is against an exact synthetic ground truth: known rigid / similarity / affine
transforms, a surface point cloud moved by a known pose, lesions of analytic volume.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from medimg.core.image import Image
from medimg.errors import GeometryMismatchError, ParameterError
from medimg.registration.points import (
    apply_matrix,
    estimate_normals,
    icp,
    register_landmarks,
    register_surfaces,
    surface_points,
    target_registration_error,
)


def _rigid(angles_deg: tuple[float, float, float], translation: tuple[float, float, float],
           scale: float = 1.0) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = scale * Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    m[:3, 3] = translation
    return m


def _ellipsoid_mask(shape=(48, 72, 88), spacing=(0.6, 0.7, 1.2), centre=(26.0, 25.0, 28.0),
                    radii=(20.0, 12.0, 9.0), direction=None, origin=(-12.0, 30.0, 4.0)) -> Image:
    zz, yy, xx = np.indices(shape, dtype=np.float64)
    x, y, z = xx * spacing[0], yy * spacing[1], zz * spacing[2]
    inside = ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 \
        + ((z - centre[2]) / radii[2]) ** 2 <= 1.0
    # a bump breaks the ellipsoid's symmetries, so that the pose is unique
    inside |= ((x - centre[0] - 14) ** 2 + (y - centre[1] - 6) ** 2 + (z - centre[2]) ** 2) <= 36
    return Image.from_geometry(inside.astype(np.uint8), spacing=spacing, origin=origin,
                               direction=direction)


# --------------------------------------------------------------------------- landmarks
@pytest.mark.parametrize("kind", ["rigid", "similarity", "affine"])
def test_landmarks_exact_on_noise_free_data(kind):
    rng = np.random.default_rng(1)
    fixed = rng.uniform(-80, 80, size=(8, 3))
    truth = _rigid((12.0, -7.0, 25.0), (4.0, -11.0, 7.5), scale=1.0 if kind == "rigid" else 1.08)
    if kind == "affine":
        truth[:3, :3] = truth[:3, :3] @ np.array([[1.1, 0.05, 0.0], [0.0, 0.95, 0.08], [0.03, 0.0, 1.02]])
    moving = apply_matrix(truth, fixed)
    res = register_landmarks(fixed, moving, kind=kind)
    np.testing.assert_allclose(res.matrix, truth, atol=1e-9)
    assert res.fre_rms_mm < 1e-9 and res.fre_mm.shape == (8,)
    if kind == "similarity":
        assert res.scale == pytest.approx(1.08, abs=1e-12)


def test_landmark_tre_on_known_transform():
    """Noisy fiducials (0.5 mm), held-out targets: TRE of the fit against the true map, and
    the expected-TRE formula of Fitzpatrick et al. (1998) as the reference for its size."""
    rng = np.random.default_rng(2)
    truth = _rigid((5.0, 10.0, -20.0), (15.0, 3.0, -6.0))
    fixed = rng.uniform(-60, 60, size=(12, 3))
    sigma = 0.5
    moving = apply_matrix(truth, fixed) + rng.normal(0, sigma, size=fixed.shape)
    res = register_landmarks(fixed, moving, kind="rigid")
    targets = rng.uniform(-50, 50, size=(200, 3))
    tre = target_registration_error(res, targets, apply_matrix(truth, targets))
    # the fit is close but not exact; FRE ~ sigma sqrt(1 - 2*3/N) for rigid
    assert 0.1 < tre.rms_mm < 1.0 and tre.max_mm >= tre.mean_mm
    assert res.fre_rms_mm == pytest.approx(sigma * np.sqrt(3 * (1 - 2 / 12)), rel=0.35)
    # expected TRE^2 at r: FLE^2/N (1 + 1/3 sum_k d_k^2 / f_k^2) (Fitzpatrick, West, Maurer)
    f0 = fixed - fixed.mean(axis=0)
    _evals, axes = np.linalg.eigh(f0.T @ f0)
    f_k2 = np.array([np.mean(np.sum(np.cross(f0, axes[:, k]) ** 2, axis=1)) for k in range(3)])
    t0 = targets - fixed.mean(axis=0)
    d_k2 = np.stack([np.sum(np.cross(t0, axes[:, k]) ** 2, axis=1) for k in range(3)], axis=1)
    expected = np.sqrt(np.mean(3 * sigma**2 / 12 * (1 + np.sum(d_k2 / f_k2, axis=1) / 3)))
    assert tre.rms_mm == pytest.approx(expected, rel=0.6)
    # a perfect transform has TRE 0; the truth given as a matrix
    assert target_registration_error(truth, targets, apply_matrix(truth, targets)).max_mm < 1e-9


def test_landmark_reflection_guard():
    """Mirrored landmarks: the rigid fit stays a proper rotation (det +1), never a reflection."""
    rng = np.random.default_rng(3)
    fixed = rng.uniform(-30, 30, size=(6, 3))
    moving = fixed * np.array([-1.0, 1.0, 1.0])
    res = register_landmarks(fixed, moving, kind="rigid")
    assert np.linalg.det(res.matrix[:3, :3]) == pytest.approx(1.0, abs=1e-9)
    assert res.fre_rms_mm > 1.0


def test_landmark_bad_input():
    with pytest.raises(ParameterError, match="pair up"):
        register_landmarks(np.zeros((4, 3)), np.zeros((5, 3)))
    with pytest.raises(ParameterError, match="one line"):
        line = np.outer(np.arange(5.0), [1.0, 2.0, 3.0])
        register_landmarks(line, line)
    with pytest.raises(ParameterError, match=r"\(N, 3\)"):
        register_landmarks(np.zeros((4, 2)), np.zeros((4, 2)))


# --------------------------------------------------------------------------- surfaces and ICP
def test_surface_points_lie_on_the_surface_with_outward_normals():
    """Marching-cubes points of an oblique ellipsoid mask are within a voxel of the analytic
    surface, and their normals agree with the analytic gradient."""
    direction = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    spacing, centre, radii = (0.6, 0.7, 1.2), np.array([26.0, 25.0, 28.0]), np.array([20.0, 12.0, 9.0])
    zz, yy, xx = np.indices((48, 72, 88), dtype=np.float64)
    inside = sum(((c * s - m) / r) ** 2 for c, s, m, r in zip((xx, yy, zz), spacing, centre, radii, strict=True)) <= 1
    mask = Image.from_geometry(inside.astype(np.uint8), spacing=spacing, origin=(5, -3, 2), direction=direction)
    pts, nrm = surface_points(mask)
    local = (pts - np.array([5, -3, 2])) @ direction - centre  # back to the grid's axes, centred
    level = np.sqrt(np.sum((local / radii) ** 2, axis=1))
    assert np.all(np.abs(level - 1) < 1.3 / radii.min())
    grad = local / radii**2
    grad = grad @ direction.T
    cos = np.sum(nrm * grad / np.linalg.norm(grad, axis=1, keepdims=True), axis=1)
    assert np.median(cos) > 0.97
    bpts, bnrm = surface_points(mask, method="boundary")
    blocal = (bpts - np.array([5, -3, 2])) @ direction - centre
    assert np.all(np.abs(np.sqrt(np.sum((blocal / radii) ** 2, axis=1)) - 1) < 1.5 / radii.min())
    assert np.allclose(np.linalg.norm(bnrm, axis=1), 1.0)


@pytest.mark.parametrize("method", ["point-to-plane", "point-to-point"])
def test_icp_recovers_known_pose_with_noise_and_outliers(method):
    """A surface point cloud, moved by a known pose, 0.1 mm noise and 10 % outliers: ICP (with
    its default robust rejection) finds the pose within 0.05 mm over the surface."""
    rng = np.random.default_rng(4)
    moving, _ = surface_points(_ellipsoid_mask())
    truth = _rigid((8.0, -6.0, 12.0), (4.0, -3.0, 6.0))
    inv = np.linalg.inv(truth)
    sel = rng.choice(len(moving), size=3000, replace=False)
    clean = apply_matrix(inv, moving[sel])
    fixed = clean + rng.normal(0, 0.1, size=clean.shape)
    lo, hi = fixed.min(axis=0) - 10, fixed.max(axis=0) + 10
    fixed = np.vstack([fixed, rng.uniform(lo, hi, size=(333, 3))])  # 10 % of all points
    res = icp(fixed, moving, method=method, max_iterations=100)
    err = np.linalg.norm(apply_matrix(res.matrix, clean) - moving[sel], axis=1)
    assert res.converged
    assert err.max() < 0.05, (err.mean(), err.max())
    assert 0.85 < res.inlier_fraction <= 0.92
    assert res.rms_mm < 0.25
    # without outlier rejection the outliers pull the fit away
    bad = icp(fixed, moving, method=method, max_distance_mm=None, max_iterations=30)
    assert np.linalg.norm(apply_matrix(bad.matrix, clean) - moving[sel], axis=1).mean() > 0.2


def test_icp_trimmed_and_threshold_options():
    rng = np.random.default_rng(5)
    moving, nrm = surface_points(_ellipsoid_mask())
    truth = _rigid((-5.0, 4.0, 9.0), (2.0, 1.0, -3.0))
    fixed = apply_matrix(np.linalg.inv(truth), moving)
    fixed = np.vstack([fixed, rng.uniform(fixed.min(0) - 8, fixed.max(0) + 8, size=(len(fixed) // 9, 3))])
    # exact points: trimming (15 % > the 11 % outliers) and the automatic threshold drop every
    # outlier, so the fit is exact; a fixed 2 mm threshold keeps the few outliers that fall
    # within 2 mm of the surface, a small bias
    for opts, atol in (({"trim_fraction": 0.85, "max_distance_mm": None}, 1e-9), ({}, 1e-9),
                       ({"max_distance_mm": 2.0}, 0.02)):
        res = icp(fixed, moving, moving_normals=nrm, **opts)
        np.testing.assert_allclose(res.matrix, truth, atol=atol)
    with pytest.raises(ParameterError, match="trim_fraction"):
        icp(fixed, moving, trim_fraction=0.0)
    with pytest.raises(ParameterError, match="do not overlap"):
        icp(fixed + 500.0, moving, init="identity", max_distance_mm=1.0)


def test_register_surfaces_of_two_masks():
    """The same ellipsoid on two grids (different spacing, origin, direction): ICP between the
    mask surfaces recovers the known rigid map between the two placements."""
    mask_a = _ellipsoid_mask()
    truth = _rigid((0.0, 0.0, 10.0), (3.0, -2.0, 1.5))
    # place the object of mask_a in the moving space: grid B = truth applied to grid A
    aff_b = truth @ mask_a.affine
    mask_b = Image(mask_a.array.copy(), aff_b)
    res = register_surfaces(mask_a, mask_b)
    probe = mask_a.index_to_physical(np.array([[10.0, 20.0, 10.0], [60.0, 40.0, 30.0], [40, 60, 5]]))
    err = np.linalg.norm(res.transform_points(probe) - apply_matrix(truth, probe), axis=1)
    assert err.max() < 0.05


def test_estimate_normals_of_a_plane():
    rng = np.random.default_rng(6)
    pts = np.column_stack([rng.uniform(-10, 10, 500), rng.uniform(-10, 10, 500), np.zeros(500)])
    rot = Rotation.from_euler("xy", [30, 20], degrees=True).as_matrix()
    nrm = estimate_normals(pts @ rot.T)
    assert np.all(np.abs(nrm @ (rot @ [0, 0, 1.0])) > 0.999)


def test_landmark_transform_saves_and_maps_like_simpleitk(tmp_path):
    """The fit as a Transform: written as .tfm, read back by SimpleITK, maps points as the
    matrix does (fixed -> moving, 1e-6 mm)."""
    import SimpleITK as sitk

    rng = np.random.default_rng(7)
    fixed = rng.uniform(-50, 50, size=(6, 3))
    truth = _rigid((3.0, -14.0, 6.0), (-8.0, 2.0, 11.0), scale=0.93)
    res = register_landmarks(fixed, apply_matrix(truth, fixed), kind="similarity")
    path = res.transform.save(tmp_path / "landmarks.tfm")
    back = sitk.ReadTransform(str(path))
    probe = rng.uniform(-100, 100, size=(20, 3))
    mapped = np.array([back.TransformPoint(tuple(p)) for p in probe])
    np.testing.assert_allclose(mapped, apply_matrix(truth, probe), atol=1e-6)
    # an ICP initialised by a Transform starts from its matrix
    res2 = icp(fixed, apply_matrix(truth, fixed), method="point-to-point", kind="similarity",
               init=res.transform, max_iterations=2)
    np.testing.assert_allclose(res2.matrix, truth, atol=1e-8)


# --------------------------------------------------------------------------- fusion
def _grid_image(values: np.ndarray, spacing=(0.5, 1.0, 2.5), origin=(0.0, 0.0, 0.0)) -> Image:
    return Image.from_geometry(values.astype(np.float32), spacing=spacing, origin=origin)


def test_fusion_pngs_decode_with_physical_aspect(tmp_path):
    from PIL import Image as PILImage

    from medimg.registration.fusion import FUSION_MODES, write_fusion_png

    rng = np.random.default_rng(8)
    a = _grid_image(rng.normal(0, 1, size=(20, 40, 50)))
    b = _grid_image(rng.normal(0, 1, size=(20, 40, 50)))
    # axial: rows = 40 voxels x 1.0 mm, columns 50 x 0.5 mm; pixel = 0.5 mm -> 80 x 50
    # coronal: rows = 20 x 2.5 mm = 100 px, columns 50; sagittal (pixel = its finest spacing,
    # 1 mm): rows 20 x 2.5 = 50, columns 40
    expected = {"axial": (80, 50), "coronal": (100, 50), "sagittal": (50, 40)}
    for mode in FUSION_MODES:
        for axis, (rows, cols) in expected.items():
            path = write_fusion_png(a, b, tmp_path / f"{mode}-{axis}.png", mode=mode, axis=axis)
            with PILImage.open(path) as png:
                assert png.format == "PNG" and png.mode == "RGB"
                assert png.size == (cols, rows)
            assert path.with_suffix(".json").exists()  # provenance sidecar


def test_fusion_modes_known_pixels():
    from medimg.registration.fusion import fusion_view, hot_colormap

    zeros = _grid_image(np.zeros((4, 40, 40)), spacing=(1.0, 1.0, 1.0))
    ones = _grid_image(np.ones((4, 40, 40)), spacing=(1.0, 1.0, 1.0))
    win = {"window_a": (0, 1), "window_b": (0, 1)}
    cb = fusion_view(zeros, ones, mode="checkerboard", checker_mm=10, **win)[..., 0]
    assert cb.shape == (40, 40)
    assert cb[0, 0] == 0 and cb[0, 10] == 255 and cb[10, 0] == 255 and cb[10, 10] == 0 and cb[9, 9] == 0
    blend = fusion_view(zeros, ones, mode="blend", alpha=0.25, **win)
    assert np.all(blend == 64)  # round(0.25 * 255)
    same = fusion_view(ones, ones, mode="difference")
    assert np.all(same == 128)
    diff = fusion_view(ones, zeros, mode="difference", diff_window=2.0)
    assert np.all(diff == 191)  # 0.5 + 0.5 * 1/2 -> 0.75 * 255
    # colour: a grey at 0, b = SUV 2.5 in the 0-5 window -> hot(0.5) blended with alpha 0.6
    suv = Image(np.full((4, 40, 40), 2.5, np.float32), zeros.affine, meta={"units": "g/ml"})
    col = fusion_view(zeros, suv, mode="colour", alpha=0.6, window_a=(0, 1))
    np.testing.assert_array_equal(col[5, 5], np.round(0.6 * hot_colormap(0.5) * 255).astype(np.uint8))
    assert tuple(np.round(hot_colormap(np.array([0.0, 1.0])) * 255).astype(int).ravel()) == (0, 0, 0, 255, 255, 255)


def test_fusion_resamples_b_and_refuses_bad_pairs():
    from medimg.errors import GeometryMismatchError
    from medimg.registration.fusion import fusion_view

    zz, yy, xx = np.indices((10, 40, 40), dtype=np.float64)
    a = _grid_image(xx + 2 * yy, spacing=(1.0, 1.0, 2.0))
    # the same linear ramp sampled on a grid twice as coarse, shifted: b on a's grid == a
    zz2, yy2, xx2 = np.indices((12, 22, 22), dtype=np.float64)
    b = Image.from_geometry((2 * xx2 - 1 + 2 * (2 * yy2 - 1)).astype(np.float32), spacing=(2.0, 2.0, 2.0),
                            origin=(-1.0, -1.0, 0.0))
    d = fusion_view(a, b, mode="difference", diff_window=1.0)
    assert np.abs(d[2:-2, 2:-2].astype(int) - 128).max() <= 1
    with pytest.raises(GeometryMismatchError, match="3-D"):
        fusion_view(a, Image(np.zeros((40, 40), np.float32)), mode="blend")
    far = Image.from_geometry(np.zeros((5, 5, 5), np.float32), origin=(1000.0, 0.0, 0.0))
    with pytest.raises(GeometryMismatchError, match="does not overlap"):
        fusion_view(a, far)
    with pytest.raises(ParameterError, match="unknown fusion mode"):
        fusion_view(a, a, mode="overlay")


def test_fusion_view_independent_of_storage_order():
    """An image stored RAS (flipped x and y) gives the same picture as its LPS copy."""
    from medimg.core.orient import reorient
    from medimg.registration.fusion import fusion_view

    rng = np.random.default_rng(9)
    a = _grid_image(rng.uniform(0, 1, size=(6, 12, 16)), spacing=(1.0, 1.0, 2.0))
    b = _grid_image(rng.uniform(0, 1, size=(6, 12, 16)), spacing=(1.0, 1.0, 2.0))
    for axis in ("axial", "coronal", "sagittal"):
        ref = fusion_view(a, b, mode="blend", axis=axis, window_a=(0, 1), window_b=(0, 1))
        got = fusion_view(reorient(a, "RAS"), reorient(b, "RAS"), mode="blend", axis=axis,
                          window_a=(0, 1), window_b=(0, 1))
        np.testing.assert_array_equal(got, ref)


# --------------------------------------------------------------------------- longitudinal
#: Anatomy around the lesions (centre in baseline mm, radii mm, value): gives the registration
#: something to align; not lesions.
_ANATOMY = (((0.0, 0.0, 0.0), (24.0, 20.0, 15.0), 40.0), ((10.0, -12.0, -6.0), (7.0, 5.0, 4.0), 70.0))


def _sphere_scan(shape, spacing, origin, to_baseline, spheres, rng, noise=5.0):
    """A scan whose voxel at physical x shows the spheres (centre in baseline mm, radius mm,
    value) at to_baseline(x); returns the image and the label map of the spheres."""
    zz, yy, xx = np.indices(shape, dtype=np.float64)
    idx = np.stack([xx, yy, zz], axis=-1).reshape(-1, 3)
    pts = apply_matrix(to_baseline, idx * np.asarray(spacing) + np.asarray(origin))
    values = np.zeros(len(pts))
    labels = np.zeros(len(pts), dtype=np.uint8)
    for centre, radii, value in _ANATOMY:
        values[np.sum(((pts - np.asarray(centre)) / np.asarray(radii)) ** 2, axis=1) <= 1] = value
    for k, (centre, radius, value) in enumerate(spheres, start=1):
        inside = np.sum((pts - np.asarray(centre)) ** 2, axis=1) <= radius**2
        values[inside] = value
        labels[inside] = k
    values = values.reshape(shape) + rng.normal(0, noise, size=shape)
    img = Image.from_geometry(values.astype(np.float32), spacing=spacing, origin=origin)
    return img, Image.from_geometry(labels.reshape(shape), spacing=spacing, origin=origin)


def _ball(radius: float) -> float:
    return 4.0 / 3.0 * np.pi * radius**3


@pytest.fixture(scope="module")
def lesion_pair():
    """Baseline: lesion A (r 6 mm) and B (r 4 mm). Follow-up, scanned in another pose: A grown
    to r 8 mm, B gone, a new lesion C (r 5 mm)."""
    rng = np.random.default_rng(10)
    spacing, origin = (0.8, 0.8, 1.0), (-30.0, -28.0, -20.0)
    a, b, c = (-8.0, 0.0, 0.0), (14.0, 10.0, 4.0), (-4.0, -14.0, 8.0)
    ident = np.eye(4)
    baseline, base_mask = _sphere_scan((40, 70, 76), spacing, origin, ident,
                                       [(a, 6.0, 100.0), (b, 4.0, 100.0)], rng)
    to_baseline = _rigid((0.0, 0.0, 7.0), (3.1, -2.3, 1.7))  # follow-up point -> baseline point
    followup, fu_mask = _sphere_scan((42, 72, 76), (0.75, 0.75, 1.0), (-30.0, -28.0, -22.0),
                                     to_baseline, [(a, 8.0, 100.0), (c, 5.0, 100.0)], rng)
    return baseline, (base_mask.array > 0).astype(np.uint8), followup, fu_mask, to_baseline


@pytest.mark.parametrize("with_followup_mask", [True, False])
def test_longitudinal_growth_and_flags(lesion_pair, with_followup_mask):
    from medimg.registration.longitudinal import longitudinal_change
    from medimg.registration.transform import Transform

    baseline, base_arr, followup, fu_mask, to_baseline = lesion_pair
    mask = baseline.with_array(base_arr)
    res = longitudinal_change(baseline, followup, mask, transform=Transform.from_matrix(to_baseline),
                              followup_mask=(fu_mask if with_followup_mask else None))
    rows = {(r.status, r.lesion): r for r in res.lesions}
    grown = [r for r in res.lesions if r.status == "grown"]
    vanished = res.vanished_lesions
    assert len(grown) == 1 and len(vanished) == 1
    g = grown[0]
    # voxelised spheres: within 3 % of the analytic ball volumes
    assert g.baseline_volume_mm3 == pytest.approx(_ball(6.0), rel=0.03)
    assert g.followup_volume_mm3 == pytest.approx(_ball(8.0), rel=0.03)
    assert g.carried_volume_mm3 == pytest.approx(_ball(6.0), rel=0.05)
    assert g.change_percent == pytest.approx(100 * (8**3 / 6**3 - 1), abs=6.0)
    assert g.change_mm3 == pytest.approx(_ball(8.0) - _ball(6.0), rel=0.05)
    np.testing.assert_allclose(g.baseline_centroid_mm, (-8.0, 0.0, 0.0), atol=0.1)
    # the follow-up centroid, mapped to baseline space, is lesion A's centre
    np.testing.assert_allclose(apply_matrix(to_baseline, np.array([g.followup_centroid_mm]))[0],
                               (-8.0, 0.0, 0.0), atol=0.1)
    assert vanished[0].baseline_volume_mm3 == pytest.approx(_ball(4.0), rel=0.05)
    assert vanished[0].followup_volume_mm3 == 0.0 and vanished[0].change_percent == -100.0
    if with_followup_mask:
        (new,) = res.new_lesions
        assert new.followup_volume_mm3 == pytest.approx(_ball(5.0), rel=0.04)
        np.testing.assert_allclose(apply_matrix(to_baseline, np.array([new.followup_centroid_mm]))[0],
                                   (-4.0, -14.0, 8.0), atol=0.1)
    else:
        assert res.new_lesions == []
    record = res.as_dict()
    assert record["summary"]["vanished_lesions"] == 1 and rows
    assert set(np.unique(res.carried_mask.array)) <= {0, 1, 2}  # never a new label value


def test_longitudinal_bad_input(lesion_pair):
    from medimg.registration.longitudinal import longitudinal_change
    from medimg.registration.transform import Transform

    baseline, base_arr, followup, _fu, _t = lesion_pair
    wrong_grid = Image(base_arr, followup.affine)
    with pytest.raises(GeometryMismatchError):
        longitudinal_change(baseline, followup, wrong_grid, transform=Transform.identity())
    with pytest.raises(ParameterError, match="no lesion"):
        longitudinal_change(baseline, followup, baseline.with_array(np.zeros_like(base_arr)),
                            transform=Transform.identity())


# --------------------------------------------------------------------------- CLI
def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and "Traceback" not in captured.err + captured.out
    return lines[0]


def test_cli_longitudinal_json_and_outputs(lesion_pair, tmp_path, capsys):
    import json

    from medimg import io
    from medimg.cli.main import main
    from medimg.registration.transform import Transform

    baseline, base_arr, followup, fu_mask, to_baseline = lesion_pair
    paths = {name: tmp_path / f"{name}.nii.gz" for name in ("base", "fu", "mask", "fumask")}
    io.write(baseline, paths["base"])
    io.write(followup, paths["fu"])
    io.write(baseline.with_array(base_arr), paths["mask"])
    io.write(fu_mask, paths["fumask"])
    given = Transform.from_matrix(to_baseline).save(tmp_path / "given.tfm")
    args = ["longitudinal", str(paths["base"]), str(paths["fu"]), "--mask", str(paths["mask"]),
            "--followup-mask", str(paths["fumask"]), "--transform-file", str(given), "--json",
            "--carried-mask", str(tmp_path / "carried.nii.gz"), "--transform-out", str(tmp_path / "out.tfm")]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out)
    statuses = sorted(les["status"] for les in record["lesions"])
    assert statuses == ["grown", "new", "vanished"]
    assert record["summary"]["new_lesions"] == 1 and record["summary"]["vanished_lesions"] == 1
    carried = io.read(tmp_path / "carried.nii.gz")
    assert carried.same_grid(followup) and set(np.unique(carried.array)) <= {0, 1, 2}
    np.testing.assert_allclose(Transform.load(tmp_path / "out.tfm").homogeneous, to_baseline, atol=1e-9)
    # table output
    assert main(args[:-5] + []) == 0 and "grown" in capsys.readouterr().out
    # bad input: a mask on another grid, a file that is not a transform, an unknown choice
    io.write(fu_mask, tmp_path / "wrong.nii.gz")
    assert main(["longitudinal", str(paths["base"]), str(paths["fu"]), "--mask", str(tmp_path / "wrong.nii.gz"),
                 "--transform-file", str(given)]) == 2
    assert "grid" in _one_error_line(capsys)
    (tmp_path / "bad.tfm").write_text("not a transform\n")
    assert main(["longitudinal", str(paths["base"]), str(paths["fu"]), "--mask", str(paths["mask"]),
                 "--transform-file", str(tmp_path / "bad.tfm")]) == 2
    _one_error_line(capsys)
    assert main(["longitudinal", str(paths["base"]), str(paths["fu"]), "--mask", str(paths["mask"]),
                 "--transform", "bspline"]) == 2
    assert "rigid" in _one_error_line(capsys)


def test_cli_fuse(tmp_path, capsys):
    from PIL import Image as PILImage

    from medimg import io
    from medimg.cli.main import main

    rng = np.random.default_rng(11)
    a = _grid_image(rng.normal(0, 1, size=(20, 40, 50)))
    b = Image.from_geometry(rng.uniform(0, 6, size=(10, 20, 25)).astype(np.float32), spacing=(1.0, 2.0, 5.0))
    io.write(a, tmp_path / "a.nii.gz")
    io.write(b, tmp_path / "b.nii.gz")
    for mode in ("checkerboard", "blend", "colour", "difference"):
        out = tmp_path / f"{mode}.png"
        assert main(["fuse", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"), "-o", str(out),
                     "--mode", mode, "--window-b", "0,5", "--axis", "coronal"]) == 0
        with PILImage.open(out) as png:
            assert png.size == (50, 100)
    capsys.readouterr()
    assert main(["fuse", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"), "-o", str(tmp_path / "x.png"),
                 "--mode", "overlay"]) == 2
    assert "unknown fusion mode" in _one_error_line(capsys)
    assert main(["fuse", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"), "-o", str(tmp_path / "x.png"),
                 "--window-a", "5,1"]) == 2
    assert "--window-a" in _one_error_line(capsys)
    io.write(Image(np.zeros((30, 30), np.float32)), tmp_path / "flat.nii.gz")
    assert main(["fuse", str(tmp_path / "a.nii.gz"), str(tmp_path / "flat.nii.gz"), "-o", str(tmp_path / "y.png")]) == 2
    assert "2-D" in _one_error_line(capsys)


def test_longitudinal_registers_the_followup(lesion_pair):
    """No transform given: the follow-up is registered to the baseline (rigid) and the growth
    of lesion A is still measured."""
    from medimg.registration.longitudinal import longitudinal_change

    baseline, base_arr, followup, fu_mask, to_baseline = lesion_pair
    res = longitudinal_change(baseline, followup, baseline.with_array(base_arr), followup_mask=fu_mask)
    probe = followup.index_to_physical(np.array([[10.0, 20.0, 10.0], [60.0, 50.0, 30.0], [38.0, 36.0, 21.0]]))
    err = np.linalg.norm(res.transform.transform_points(probe) - apply_matrix(to_baseline, probe), axis=1)
    assert err.max() < 0.5, err
    (grown,) = [r for r in res.lesions if r.status == "grown"]
    assert grown.change_percent == pytest.approx(100 * (8**3 / 6**3 - 1), abs=8.0)
    assert sorted(r.status for r in res.lesions) == ["grown", "new", "vanished"]


# --------------------------------------------------------------------------- ICP internals: exact shortcuts
def test_closed_form_normals_match_eigh():
    """The closed-form smallest eigenvector (trigonometric cubic + cross products) equals
    numpy.linalg.eigh's up to sign, to 1e-10, on local covariances of a noisy surface and on
    random symmetric matrices; repeated smallest eigenvalues fall back to eigh."""
    from scipy.spatial import cKDTree

    from medimg.registration.points import _knn, _normals_from_neighbours, _smallest_eigenvectors

    rng = np.random.default_rng(11)
    pts, _ = surface_points(_ellipsoid_mask())
    pts = pts + rng.normal(0, 0.05, size=pts.shape)
    _d, idx = _knn(pts, 10, cKDTree(pts))
    nb = pts[idx]
    centred = nb - nb.mean(axis=1, keepdims=True)
    ref = np.linalg.eigh(np.einsum("nki,nkj->nij", centred, centred))[1][:, :, 0]
    for got in (_normals_from_neighbours(pts, idx), estimate_normals(pts)):
        err = np.minimum(np.linalg.norm(got - ref, axis=1), np.linalg.norm(got + ref, axis=1))
        assert err.max() < 1e-10
    a = rng.normal(size=(5000, 3, 3))
    a = a @ a.transpose(0, 2, 1)
    a[:3] = [np.eye(3), np.diag([1.0, 1.0, 2.0]), np.zeros((3, 3))]  # degenerate: eigh decides
    got = _smallest_eigenvectors(a[:, 0, 0], a[:, 1, 1], a[:, 2, 2], a[:, 0, 1], a[:, 0, 2], a[:, 1, 2])
    w, v = np.linalg.eigh(a)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", a, got), w[:, :1] * got, atol=1e-9)
    gap = (w[:, 1] - w[:, 0]) / (w[:, 2] - w[:, 0] + 1e-300)
    ok = gap > 1e-3
    err = np.minimum(np.linalg.norm(got - v[:, :, 0], axis=1), np.linalg.norm(got + v[:, :, 0], axis=1))
    assert err[ok].max() < 1e-10
    assert np.abs(got[1] @ [0.0, 0.0, 1.0]) < 1e-12  # the repeated smallest eigenvalue's plane


def test_warm_started_closest_points_are_exact():
    """The warm-started search (kept nearest point, neighbour-graph walk, bound by motion)
    returns the KD-tree's exact closest points over a sequence of moves, small and large,
    with and without a search bound."""
    from scipy.spatial import cKDTree

    from medimg.registration.points import _knn, _Nearest

    rng = np.random.default_rng(12)
    moving, _ = surface_points(_ellipsoid_mask())
    tree = cKDTree(moving)
    dist_k, idx_k = _knn(moving, 10, tree)
    q = moving[rng.choice(len(moving), 1500)] + rng.normal(0, 0.5, size=(1500, 3))
    q = np.vstack([q, rng.uniform(moving.min(0) - 15, moving.max(0) + 15, size=(300, 3))])
    for graph in ((idx_k, dist_k[:, -1]), None):
        nearest = _Nearest(tree, moving, graph)
        motion = None
        for step, (scale, bound) in enumerate([(0, np.inf), (2.0, np.inf), (0.3, 6.0), (0.01, 4.0),
                                               (0.0, 4.0), (1e-4, 3.0), (3.0, 5.0), (0.02, np.inf)]):
            if step:
                move = rng.normal(0, scale, size=q.shape)
                q = q + move
                motion = np.linalg.norm(move, axis=1)
            dist, idx = nearest.query(q, bound, motion)
            true_d, true_i = tree.query(q)
            found = np.isfinite(dist)
            assert np.all(found | (true_d > bound))
            np.testing.assert_allclose(dist[found], true_d[found], rtol=0, atol=1e-12)
            assert np.array_equal(idx[found], true_i[found])
            assert np.all(idx[~found] == len(moving))


@pytest.mark.parametrize("opts", [{}, {"max_distance_mm": 3.0}, {"trim_fraction": 0.8, "max_distance_mm": None},
                                  {"trim_fraction": 0.9}])
def test_icp_fast_paths_match_a_plain_icp(opts):
    """icp (warm-started closest points, search bounds) gives the transform of a plain
    point-to-plane ICP that queries the KD-tree afresh every iteration, to 1e-9 mm."""
    from scipy.spatial import cKDTree

    from medimg.registration.points import _plane_step, _select

    rng = np.random.default_rng(13)
    moving, _ = surface_points(_ellipsoid_mask())
    moving = moving[rng.choice(len(moving), 2000, replace=False)]
    truth = _rigid((5.0, -4.0, 7.0), (2.0, -3.0, 1.0))
    fixed = apply_matrix(np.linalg.inv(truth), moving[rng.permutation(len(moving))[:1500]])
    fixed = fixed + rng.normal(0, 0.2, size=fixed.shape)
    fixed = np.vstack([fixed, rng.uniform(fixed.min(0) - 10, fixed.max(0) + 10, size=(170, 3))])
    res = icp(fixed, moving, init="identity", **opts)
    # the plain loop
    normals = estimate_normals(moving)
    tree = cKDTree(moving)
    matrix = np.eye(4)
    max_d, trim = opts.get("max_distance_mm", "auto"), opts.get("trim_fraction", 1.0)
    for _ in range(50):
        current = apply_matrix(matrix, fixed)
        dist, idx = tree.query(current)
        keep, _limit = _select(dist, max_d, trim)
        step = _plane_step(current[keep], moving[idx[keep]], normals[idx[keep]])
        matrix = step @ matrix
        if np.linalg.norm(apply_matrix(step, current) - current, axis=1).max() < 1e-4:
            break
    assert res.converged
    probe = fixed[:1500]
    assert np.abs(apply_matrix(res.matrix, probe) - apply_matrix(matrix, probe)).max() < 1e-9
