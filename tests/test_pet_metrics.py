"""Lesion metrics and the PERCIST liver reference on synthetic spheres of known activity."""

from __future__ import annotations

import numpy as np
import pytest

from medimg import Image
from medimg.errors import GeometryMismatchError, ParameterError
from medimg.pet import lesion_metrics, liver_reference, suv_peak

PEAK_RADIUS = (3 / (4 * np.pi)) ** (1 / 3) * 10  # mm: a 1 cm^3 sphere


def _grid(shape=(40, 40, 40), spacing=(2.0, 2.0, 2.0), origin=(-40.0, -40.0, -40.0)):
    """(z, y, x) LPS coordinates (mm) of the voxel centres."""
    z, y, x = np.indices(shape, dtype=float)
    return (origin[2] + z * spacing[2], origin[1] + y * spacing[1], origin[0] + x * spacing[0])


def _image(values, spacing=(2.0, 2.0, 2.0), origin=(-40.0, -40.0, -40.0), units="g/ml"):
    return Image.from_geometry(np.asarray(values, dtype=np.float32), spacing=spacing, origin=origin,
                               meta={"units": units})


def test_uniform_hot_sphere() -> None:
    z, y, x = _grid()
    r = np.sqrt(x**2 + y**2 + z**2)
    lesion = r <= 15.0
    suv = _image(np.where(lesion, 8.0, 1.0))
    mask = suv.with_array(lesion.astype(np.uint8), meta={})
    m = lesion_metrics(suv, mask)
    v_ml = 8.0 / 1000  # 2 mm voxels
    assert m["suv_max"] == 8.0 and m["suv_mean"] == 8.0 and m["suv_sd"] == 0.0
    assert m["suv_peak"] == pytest.approx(8.0) and m["suv_peak_local"] == pytest.approx(8.0)
    assert m["n_voxels"] == int(lesion.sum())
    assert m["volume_ml"] == pytest.approx(lesion.sum() * v_ml)
    assert m["volume_ml"] == pytest.approx(4 / 3 * np.pi * 15**3 / 1000, rel=0.03)  # 14.14 ml sphere
    for key in ("fixed", "41", "50"):
        assert m[f"mtv_{key}_ml"] == pytest.approx(lesion.sum() * v_ml)
        assert m[f"tlg_{key}_g"] == pytest.approx(8.0 * lesion.sum() * v_ml)
    assert m["threshold_41"] == pytest.approx(0.41 * 8.0) and m["threshold_fixed"] == 2.5


def test_two_level_lesion_mtv_and_tlg() -> None:
    # core SUV 10 (r <= 6 mm), shell SUV 4.5 (6 < r <= 14 mm), background 1, in a 20 mm VOI
    z, y, x = _grid()
    r = np.sqrt(x**2 + y**2 + z**2)
    core, shell, voi = r <= 6.0, (r > 6.0) & (r <= 14.0), r <= 20.0
    suv = _image(np.select([core, shell], [10.0, 4.5], 1.0))
    m = lesion_metrics(suv, suv.with_array(voi.astype(np.uint8), meta={}))
    v = 8.0 / 1000
    n_core, n_shell = int(core.sum()), int(shell.sum())
    # SUV >= 2.5 and >= 41 % of 10 = 4.1: core and shell; >= 50 % = 5: the core only
    assert m["mtv_fixed_ml"] == pytest.approx((n_core + n_shell) * v)
    assert m["mtv_41_ml"] == pytest.approx((n_core + n_shell) * v)
    assert m["mtv_50_ml"] == pytest.approx(n_core * v)
    assert m["tlg_fixed_g"] == pytest.approx((10.0 * n_core + 4.5 * n_shell) * v)
    assert m["tlg_50_g"] == pytest.approx(10.0 * n_core * v)
    assert m["suv_mean"] == pytest.approx((10.0 * n_core + 4.5 * n_shell + 1.0 * (voi.sum() - n_core - n_shell)) / voi.sum())
    custom = lesion_metrics(suv, suv.with_array(voi.astype(np.uint8), meta={}), fixed_threshold=5.0, fractions=(0.4,))
    assert custom["mtv_fixed_ml"] == pytest.approx(n_core * v) and custom["mtv_40_ml"] == pytest.approx((n_core + n_shell) * v)


def _brute_force_peaks(values: np.ndarray, region: np.ndarray, spacing_zyx) -> tuple[float, float]:
    """Mean of the voxels whose centres lie within 6.2035 mm, for every region voxel (explicit loop)."""
    sp = np.asarray(spacing_zyx)
    reach = np.floor(PEAK_RADIUS / sp).astype(int)
    offs = np.array([(a, b, c) for a in range(-reach[0], reach[0] + 1) for b in range(-reach[1], reach[1] + 1)
                     for c in range(-reach[2], reach[2] + 1)])
    offs = offs[np.sum((offs * sp) ** 2, axis=1) <= PEAK_RADIUS**2]
    means = {}
    for p in map(tuple, np.argwhere(region)):
        pts = offs + p
        means[p] = float(values[pts[:, 0], pts[:, 1], pts[:, 2]].mean())
    hottest = values[region].max()
    local = max(m for p, m in means.items() if values[p] == hottest)
    return max(means.values()), local


def test_suv_peak_matches_a_brute_force_sphere_on_an_anisotropic_grid(rng) -> None:
    from scipy import ndimage

    spacing_xyz = (2.0, 2.5, 3.0)
    shape = (24, 28, 30)
    noise = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    z, y, x = np.indices(shape, dtype=float)
    blob = 6.0 * np.exp(-(((x - 14) * 2.0) ** 2 + ((y - 13) * 2.5) ** 2 + ((z - 11) * 3.0) ** 2) / (2 * 8.0**2))
    values = (1.0 + blob + 3.0 * noise).astype(np.float32)
    region = np.zeros(shape, bool)
    region[6:17, 6:21, 6:23] = True
    suv = Image.from_geometry(values, spacing=spacing_xyz, meta={"units": "g/ml"})
    peak = suv_peak(suv, suv.with_array(region.astype(np.uint8), meta={}))
    expected_global, expected_local = _brute_force_peaks(values.astype(np.float64), region, spacing_xyz[::-1])
    assert peak["suv_peak"] == pytest.approx(expected_global, rel=1e-10)
    assert peak["suv_peak_local"] == pytest.approx(expected_local, rel=1e-10)
    assert peak["suv_peak"] >= peak["suv_peak_local"]
    assert peak["sphere_radius_mm"] == pytest.approx(PEAK_RADIUS)


def test_metrics_refuse_bad_input() -> None:
    z, y, x = _grid((10, 10, 10))
    suv = _image(np.ones((10, 10, 10)))
    mask = suv.with_array(np.ones((10, 10, 10), np.uint8), meta={})
    with pytest.raises(ParameterError, match="--assume-suv"):
        lesion_metrics(_image(np.ones((10, 10, 10)), units=None), mask)
    assert lesion_metrics(_image(np.ones((10, 10, 10)), units=None), mask, require_suv=False)["suv_max"] == 1.0
    with pytest.raises(ParameterError, match="label 2"):
        lesion_metrics(suv, mask, label=2)
    with pytest.raises(GeometryMismatchError):
        lesion_metrics(suv, Image.from_geometry(np.ones((10, 10, 10), np.uint8), spacing=(3, 3, 3)))
    with pytest.raises(ParameterError, match="fractions"):
        lesion_metrics(suv, mask, fractions=(1.5,))


def test_liver_reference_user_centre(rng) -> None:
    z, y, x = _grid((30, 30, 30), spacing=(3.0, 3.0, 3.0), origin=(-45.0, -45.0, -45.0))
    values = (2.0 + 0.3 * rng.normal(size=(30, 30, 30))).astype(np.float32)
    sul = _image(values, spacing=(3.0, 3.0, 3.0), origin=(-45.0, -45.0, -45.0))
    centre = (-4.0, 2.5, 1.0)  # not on a voxel centre
    ref = liver_reference(sul, centre_mm=centre)
    inside = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= 15.0**2
    assert ref["n_voxels"] == int(inside.sum())
    assert ref["liver_mean"] == pytest.approx(values[inside].astype(float).mean())
    assert ref["liver_sd"] == pytest.approx(values[inside].astype(float).std())
    assert ref["percist_threshold"] == pytest.approx(1.5 * ref["liver_mean"] + 2 * ref["liver_sd"])
    assert ref["placement"] == "user" and ref["diameter_mm"] == 30.0
    with pytest.raises(ParameterError, match="outside the image"):
        liver_reference(sul, centre_mm=(40.0, 0.0, 0.0))
    with pytest.raises(ParameterError, match="exactly one"):
        liver_reference(sul)


def test_liver_reference_from_a_liver_mask(rng) -> None:
    # an ellipsoidal "liver" 160 x 100 x 90 mm; the patient's right is -x (LPS)
    shape, sp, org = (40, 50, 60), (3.0, 3.0, 3.0), (-90.0, -75.0, -60.0)
    z, y, x = _grid(shape, spacing=sp, origin=org)
    liver = (x / 80.0) ** 2 + (y / 50.0) ** 2 + (z / 45.0) ** 2 <= 1.0
    values = np.where(liver, 2.2 + 0.2 * rng.normal(size=shape), 0.5).astype(np.float32)
    sul = _image(values, spacing=sp, origin=org)
    mask = sul.with_array(liver.astype(np.uint8), meta={})
    ref = liver_reference(sul, liver_mask=mask)
    cx, cy, cz = ref["centre_mm"]
    assert cx <= np.median(x[liver])  # right half
    inside = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= 15.0**2
    assert liver[inside].all()  # the sphere lies in the liver
    assert ref["liver_mean"] == pytest.approx(values[inside].astype(float).mean())
    assert ref["liver_mean"] == pytest.approx(2.2, abs=0.03)
    small = x**2 + y**2 + z**2 <= 14.0**2  # a 28 mm ball cannot hold a 30 mm sphere
    with pytest.raises(ParameterError, match="does not fit"):
        liver_reference(sul, liver_mask=sul.with_array(small.astype(np.uint8), meta={}))
