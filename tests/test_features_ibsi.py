"""IBSI chapter 1 compliance on the digital phantom (all 482 reference values), and the feature
families checked against brute-force implementations of their definitions."""

from __future__ import annotations

import math
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from medimg import Image
from medimg.features import AGGREGATION_CODES, extract, feature_specs, prepare_roi, preset
from medimg.features.compliance import compare_with_reference, ibsi_match, long_rows
from medimg.features.config import RadiomicsConfig, config_from_mapping
from medimg.features.roi import roi_from_arrays

PHANTOM = Path(__file__).parent / "data" / "ibsi1-digital-phantom"
BRAIN = Path(__file__).parent / "data" / "mri-brain1"


@pytest.fixture(scope="module")
def phantom() -> tuple[Image, Image]:
    from medimg.io import read

    return read(PHANTOM / "image.nii.gz"), read(PHANTOM / "mask.nii.gz")


@pytest.fixture(scope="module")
def dig_values(phantom) -> dict[str, float]:
    return extract(*phantom, config="ibsi-dig")


FAMILY_PREFIXES = {
    "morph": "Morphology", "li": "Local intensity", "stat": "Statistics", "ih": "Intensity histogram",
    "ivh": "Intensity volume histogram", "glcm": "Co-occurrence", "glrlm": "Run length",
    "glszm": "Size zone", "gldzm": "Distance zone", "ngtdm": "Neighbourhood grey tone",
    "ngldm": "Neighbouring grey level",
}


def test_every_digital_phantom_reference_value_matches(dig_values):
    report = compare_with_reference(long_rows(dig_values), PHANTOM / "reference_values.csv")
    assert report.total == 482
    assert report.mismatches == []
    assert report.matched == 482


@pytest.mark.parametrize("family", sorted(FAMILY_PREFIXES))
def test_each_family_matches_its_reference_values(family, dig_values):
    values = {k: v for k, v in dig_values.items() if k.startswith(family + ".")}
    report = compare_with_reference(long_rows(values), PHANTOM / "reference_values.csv",
                                    families=[FAMILY_PREFIXES[family]])
    assert report.total > 0
    assert report.mismatches == [], report.mismatches


def test_long_rows_carry_ibsi_codes(dig_values):
    rows = {r.feature: r for r in long_rows(dig_values)}
    assert rows["glcm.3d_comb.joint_maximum"].ibsi_code == "GYBY"
    assert rows["glcm.3d_comb.joint_maximum"].aggregation_code == "IAZD"
    assert rows["morph.volume"].aggregation_code == ""
    assert rows["gldzm.2_5d.zone_percentage"].aggregation_code == "62GR"
    assert set(AGGREGATION_CODES.values()) == {r.aggregation_code for r in rows.values()} - {""}
    # the phantom run covers every IBSI feature row (482 with reference values + 5 non-standard)
    assert len(dig_values) == 487


def test_ibsi_match_rule():
    assert ibsi_match(0.51949, 0.519, 0.0)  # rounds to 0.519
    assert not ibsi_match(0.5196, 0.519, 0.0)
    assert ibsi_match(556.4, 556.0, 4.0)
    assert not ibsi_match(float("nan"), 1.0, 1.0)


# --------------------------------------------------------------------------- brute force
def _random_case(seed: int, shape=(4, 7, 8), levels=5, fill=0.75):
    rng = np.random.default_rng(seed)
    img = rng.integers(1, levels + 1, size=shape).astype(float)
    mask = rng.random(shape) < fill
    mask[shape[0] // 2, shape[1] // 2, shape[2] // 2] = True
    return img, mask


NONE = config_from_mapping({"discretisation": {"method": "none"},
                            "aggregations": ["2d_avg", "2d_comb", "2_5d_avg", "2_5d_comb", "3d_avg",
                                             "3d_comb", "2d", "2_5d", "3d"]})
DIRS3 = [(0, 0, 1), (0, 1, -1), (0, 1, 0), (0, 1, 1), (1, -1, -1), (1, -1, 0), (1, -1, 1), (1, 0, -1),
         (1, 0, 0), (1, 0, 1), (1, 1, -1), (1, 1, 0), (1, 1, 1)]


def _inside(shape, p):
    return all(0 <= c < n for c, n in zip(p, shape, strict=True))


def _glcm_brute(img, mask, d, z=None):
    g = int(img.max())
    m = np.zeros((g, g))
    for p in zip(*np.nonzero(mask), strict=True):
        if z is not None and p[0] != z:
            continue
        q = tuple(a + b for a, b in zip(p, d, strict=True))
        if _inside(mask.shape, q) and mask[q]:
            i, j = int(img[p]) - 1, int(img[q]) - 1
            m[i, j] += 1
            m[j, i] += 1
    return m


def _glcm_feats(m):
    from medimg.features.directional import GLCM_SPECS, glcm_matrix_features

    g = m.shape[0]
    return dict(zip([s.name for s in GLCM_SPECS], glcm_matrix_features(m[None], np.arange(1.0, g + 1), g)[0],
                    strict=True))


@pytest.mark.parametrize("seed", [0, 1])
def test_glcm_matches_brute_force_for_every_aggregation(seed):
    img, mask = _random_case(seed)
    roi = roi_from_arrays(img, mask, config=NONE)
    got = extract(Image(img), Image(mask.astype(np.uint8)), families=["glcm"], config=NONE)
    assert roi.n_levels == int(img[mask].max())
    # pad levels so that brute-force matrices have N_g rows
    mats3 = [_glcm_brute(img, mask, d) for d in DIRS3]
    feats = [_glcm_feats(m) for m in mats3 if m.sum()]
    want = {k: np.mean([f[k] for f in feats]) for k in feats[0]}
    merged = _glcm_feats(sum(mats3))
    planes = [[_glcm_brute(img, mask, d, z) for d in DIRS3[:4]] for z in range(img.shape[0])]
    avg2d = [_glcm_feats(m) for row in planes for m in row if m.sum()]
    comb2d = [_glcm_feats(sum(row)) for row in planes if sum(row).sum()]
    dirm = [_glcm_feats(sum(planes[z][k] for z in range(img.shape[0]))) for k in range(4)]
    allm = _glcm_feats(sum(sum(row) for row in planes))
    cases = {"3d_avg": want, "3d_comb": merged,
             "2d_avg": {k: np.mean([f[k] for f in avg2d]) for k in avg2d[0]},
             "2d_comb": {k: np.mean([f[k] for f in comb2d]) for k in comb2d[0]},
             "2_5d_avg": {k: np.mean([f[k] for f in dirm]) for k in dirm[0]}, "2_5d_comb": allm}
    for agg, ref in cases.items():
        for name, value in ref.items():
            assert got[f"glcm.{agg}.{name}"] == pytest.approx(value, rel=1e-9, abs=1e-12), (agg, name)


def test_glcm_counts_match_scikit_image_per_slice():
    from skimage.feature import graycomatrix

    from medimg.features._texture import texture

    img, _ = _random_case(5, shape=(1, 9, 11), levels=4, fill=1.0)
    mask = np.ones(img.shape, dtype=bool)
    roi = roi_from_arrays(img, mask, config=NONE)
    tex = texture(roi)
    assert tex.n_levels_present == 4
    ref = graycomatrix(img[0].astype(np.uint8) - 1, [1], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=4,
                       symmetric=True)
    ours = [_glcm_brute(img, mask, d) for d in [(0, 0, 1), (0, 1, -1), (0, 1, 0), (0, 1, 1)]]
    # skimage angles: 0 = +x, pi/4 = (-y, +x), pi/2 = -y, 3pi/4 = (-y, -x); symmetric counts agree
    for k, m in enumerate(ours):
        np.testing.assert_array_equal(m, ref[:, :, 0, [0, 3, 2, 1][k]])


def _runs_brute(img, mask, d):
    runs = []
    for p in zip(*np.nonzero(mask), strict=True):
        prev = tuple(a - b for a, b in zip(p, d, strict=True))
        if _inside(mask.shape, prev) and mask[prev] and img[prev] == img[p]:
            continue
        n, q = 1, tuple(a + b for a, b in zip(p, d, strict=True))
        while _inside(mask.shape, q) and mask[q] and img[q] == img[p]:
            n += 1
            q = tuple(a + b for a, b in zip(q, d, strict=True))
        runs.append((int(img[p]), n))
    return runs


def test_glrlm_matches_brute_force_runs():
    from medimg.features._texture import DIRECTIONS_3D, line_runs, texture

    img, mask = _random_case(3, shape=(5, 6, 7), levels=3, fill=0.8)
    roi = roi_from_arrays(img, mask, config=NONE)
    tex = texture(roi)
    direction, lev, length, _z = line_runs(tex, DIRECTIONS_3D)
    for k, d in enumerate(DIRECTIONS_3D):
        ours = sorted(zip((tex.gv[lev[direction == k]]).astype(int), length[direction == k], strict=True))
        assert ours == sorted(_runs_brute(img, mask, tuple(d))), d


def test_glszm_and_gldzm_match_scipy_labelling_and_distance():
    from scipy import ndimage

    img, mask = _random_case(7, shape=(3, 8, 9), levels=3, fill=0.85)
    got = extract(Image(img), Image(mask.astype(np.uint8)), families=["glszm", "gldzm"], config=NONE)
    zones = []
    dist = ndimage.distance_transform_cdt(np.pad(mask, 1), metric="taxicab")[1:-1, 1:-1, 1:-1]
    for level in range(1, 4):
        lab, n = ndimage.label((img == level) & mask, structure=np.ones((3, 3, 3)))
        for z in range(1, n + 1):
            zones.append((level, int((lab == z).sum()), int(dist[lab == z].min())))
    ns = len(zones)
    nv = int(mask.sum())
    assert got["glszm.3d.zone_percentage"] == pytest.approx(ns / nv)
    assert got["glszm.3d.small_zone_emphasis"] == pytest.approx(np.mean([1 / s**2 for _, s, _ in zones]))
    assert got["glszm.3d.large_zone_high_grey_level_emphasis"] == pytest.approx(
        np.mean([s**2 * g**2 for g, s, _ in zones]))
    assert got["gldzm.3d.large_distance_emphasis"] == pytest.approx(np.mean([d**2 for _, _, d in zones]))
    assert got["gldzm.3d.small_distance_low_grey_level_emphasis"] == pytest.approx(
        np.mean([1 / (d**2 * g**2) for g, _, d in zones]))


def test_ngtdm_and_ngldm_match_brute_force():
    img, mask = _random_case(11, shape=(4, 6, 6), levels=4, fill=0.8)
    got = extract(Image(img), Image(mask.astype(np.uint8)), families=["ngtdm", "ngldm"], config=NONE)
    g = int(img[mask].max())
    n = np.zeros(g)
    s = np.zeros(g)
    dep = []
    for p in zip(*np.nonzero(mask), strict=True):
        nb = []
        for d in product((-1, 0, 1), repeat=3):
            q = tuple(a + b for a, b in zip(p, d, strict=True))
            if d != (0, 0, 0) and _inside(mask.shape, q) and mask[q]:
                nb.append(img[q])
        i = int(img[p])
        dep.append((i, 1 + sum(v == i for v in nb)))
        if nb:
            n[i - 1] += 1
            s[i - 1] += abs(i - np.mean(nb))
    p_i = n / n.sum()
    assert got["ngtdm.3d.coarseness"] == pytest.approx(1 / np.dot(p_i, s))
    lv = np.arange(1, g + 1)
    keep = p_i > 0
    strength = sum((p_i[a] + p_i[b]) * (lv[a] - lv[b]) ** 2 for a in np.flatnonzero(keep)
                   for b in np.flatnonzero(keep)) / s.sum()
    assert got["ngtdm.3d.strength"] == pytest.approx(strength)
    assert got["ngldm.3d.high_dependence_emphasis"] == pytest.approx(np.mean([k**2 for _, k in dep]))
    assert got["ngldm.3d.low_dependence_low_grey_level_emphasis"] == pytest.approx(
        np.mean([1 / (k**2 * i**2) for i, k in dep]))


def test_morans_i_and_gearys_c_match_the_pairwise_definition():
    from medimg.features.morphology import spatial_autocorrelation

    rng = np.random.default_rng(2)
    for shape in [(3, 5, 6), (14, 4, 5)]:  # few slices (2-D FFT slabs) and many (3-D FFT)
        x = rng.normal(size=shape)
        mask = rng.random(shape) < 0.7
        sp = (2.5, 0.8, 1.1)
        pts = np.argwhere(mask) * np.array(sp)
        v = x[mask]
        d = np.linalg.norm(pts[:, None] - pts[None], axis=2)
        np.fill_diagonal(d, np.inf)
        w = 1 / d
        dev = v - v.mean()
        n = v.size
        moran = n / w.sum() * (dev @ w @ dev) / (dev @ dev)
        geary = (n - 1) / (2 * w.sum()) * np.sum(w * (v[:, None] - v[None]) ** 2) / (dev @ dev)
        got = spatial_autocorrelation(x, mask, sp)
        assert got[0] == pytest.approx(moran, rel=1e-9)
        assert got[1] == pytest.approx(geary, rel=1e-9)


def test_local_intensity_peaks_match_direct_sphere_means():
    from medimg.features.processing import SPHERE_RADIUS_MM

    rng = np.random.default_rng(4)
    img = rng.normal(100, 20, size=(9, 16, 17))
    mask = np.zeros(img.shape, dtype=bool)
    mask[3:6, 4:12, 5:13] = True
    sp = (3.0, 1.2, 0.9)
    got = extract(Image.from_geometry(img, spacing=sp[::-1]), Image.from_geometry(mask.astype(np.uint8), spacing=sp[::-1]),
                  families=["li"])
    grid = np.argwhere(np.ones(img.shape, dtype=bool))

    def mean_at(p):
        d = np.linalg.norm((grid - p) * np.array(sp), axis=1)
        return img.reshape(-1)[d <= SPHERE_RADIUS_MM].mean()

    roi_pts = np.argwhere(mask)
    means = np.array([mean_at(p) for p in roi_pts])
    assert got["li.global_intensity_peak"] == pytest.approx(means.max())
    at_max = img[mask] == img[mask].max()
    assert got["li.local_intensity_peak"] == pytest.approx(means[at_max].max())


def test_morphology_of_a_voxelised_ball():
    z, y, x = np.mgrid[-12:13, -12:13, -12:13]
    ball = (x**2 + y**2 + z**2) <= 10.5**2
    img = Image(np.ones(ball.shape) * 5.0)
    got = extract(img, img.with_array(ball.astype(np.uint8)), families=["morph"], config=config_from_mapping(
        {"family_params": {"morph": {"non_standard": True}}}))
    r = 10.5
    assert got["morph.volume"] == pytest.approx(4 / 3 * np.pi * r**3, rel=0.02)
    assert got["morph.surface_area"] == pytest.approx(4 * np.pi * r**2, rel=0.12)  # staircase
    assert got["morph.sphericity"] == pytest.approx(1.0, abs=0.1)
    assert got["morph.maximum_3d_diameter"] == pytest.approx(2 * r, abs=1.2)
    assert got["morph.elongation"] == pytest.approx(1.0, abs=1e-6)
    assert got["morph.volume_density_convex_hull"] == pytest.approx(1.0, abs=0.05)
    assert 0.85 < got["morph.volume_density_mvee"] <= 1.0  # the MVEE reaches the outermost vertices
    assert got["morph.volume_density_aabb"] == pytest.approx(np.pi / 6, rel=0.05)
    assert got["morph.volume_density_ombb"] >= got["morph.volume_density_aabb"] - 1e-12  # OMBB <= AABB
    assert got["morph.integrated_intensity"] == pytest.approx(5.0 * got["morph.volume"])
    assert math.isnan(got["morph.morans_i"])  # constant intensities


def test_ellipsoid_area_series_is_exact_for_spheres():
    from medimg.features.morphology import _ellipsoid_area

    # The IBSI Legendre series (which the AEE reference values use) is exact for a sphere.
    assert _ellipsoid_area(3.0, 3.0, 3.0) == pytest.approx(4 * np.pi * 9)
    assert _ellipsoid_area(5.0, 4.0, 3.0) < _ellipsoid_area(5.0, 5.0, 5.0)


# --------------------------------------------------------------------------- processing
def test_interpolation_grid_follows_the_ibsi_ct_configuration_b():
    from medimg.features.processing import aligned_grid

    shape, start, step = aligned_grid((60, 201, 204), (3.0, 0.977, 0.977), (3.0, 2.0, 2.0))
    assert shape == (60, 99, 100)
    assert start[0] == 0 and step[0] == 1
    # grid centres coincide: centre of input = centre of output
    for n, s, n2, s2, st in zip((201, 204), (0.977, 0.977), (99, 100), (2.0, 2.0), start[1:], strict=True):
        assert (st * s + s2 * (n2 - 1) / 2) == pytest.approx(s * (n - 1) / 2)


def test_linear_interpolation_reproduces_a_linear_ramp_and_rounding():
    from medimg.features.processing import interpolate_image, interpolate_mask

    z, y, x = np.mgrid[0:6, 0:10, 0:12].astype(float)
    ramp = Image.from_geometry(3 * x + 2 * y + z, spacing=(1.0, 1.0, 2.0))
    out = interpolate_image(ramp, (0.5, 0.5, 1.0), method="linear")
    assert out.spatial_shape == (12, 20, 24)
    assert out.spacing == pytest.approx((0.5, 0.5, 1.0))
    idx = np.argwhere(np.ones(out.spatial_shape))[:, ::-1]
    pts = out.index_to_physical(idx)  # mm; input index = mm / spacing
    expect = 3 * pts[:, 0] + 2 * pts[:, 1] + pts[:, 2] / 2
    inner = (pts[:, 0] >= 0) & (pts[:, 0] <= 11) & (pts[:, 1] >= 0) & (pts[:, 1] <= 9) & (pts[:, 2] >= 0) & (pts[:, 2] <= 10)
    np.testing.assert_allclose(out.array.reshape(-1)[inner], expect[inner], atol=1e-9)
    assert np.all(interpolate_image(ramp, (0.7, 0.7, 1.3), round_intensities=True).array % 1 == 0)
    mask = ramp.with_array((x > 5).astype(np.uint8))
    m2 = interpolate_mask(mask, (0.5, 0.5, 1.0))
    assert m2.spatial_shape == out.spatial_shape and set(np.unique(m2.array)) == {0, 1}


def test_resegmentation_and_discretisation():
    from medimg.features.processing import discretise, resegment

    x = np.array([-600.0, -500.0, -10.0, 0.0, 399.0, 400.0, 401.0])
    np.testing.assert_array_equal(resegment(x, value_range=(-500, 400)), [0, 1, 1, 1, 1, 1, 0])
    y = np.concatenate([np.zeros(100), [1000.0]])
    assert not resegment(y, outlier_sigma=3.0)[-1]
    lv, ng = discretise(np.array([-500.0, -475.0, -476.0, 400.0]), method="fixed_bin_size", bin_width=25,
                        lower_bound=-500)
    np.testing.assert_array_equal(lv, [1, 2, 1, 37])
    assert ng == 37
    lv, ng = discretise(np.array([0.0, 5.0, 10.0]), method="fixed_bin_number", n_bins=4)
    np.testing.assert_array_equal(lv, [1, 3, 4])
    assert ng == 4
    with pytest.raises(Exception, match="integer grey levels"):
        discretise(np.array([0.5, 2.0]), method="none")


def test_prepare_roi_crops_and_keeps_masks_separate():
    img, mask = _random_case(1, shape=(10, 30, 30))
    mask[:] = False
    mask[4:6, 10:14, 12:20] = True
    arr = img * 100
    cfg = config_from_mapping({"resegmentation": {"range": [0, 300]}})
    roi = prepare_roi(Image(arr), Image(mask.astype(np.uint8)), cfg)
    assert roi.morph_mask.sum() == 64
    assert roi.int_mask.sum() == int(((arr <= 300) & mask).sum())
    assert roi.intensity.shape[0] < 10 or roi.intensity.shape[1] < 30
    assert roi.diagnostics["initial_roi_voxels"] == 64


# --------------------------------------------------------------------------- real MRI
def test_brain_mri_all_families_finite_and_cropping_invariant():
    from medimg.io import read

    image = read(BRAIN / "brain1_roi_image.nrrd")
    mask = read(BRAIN / "brain1_roi_label.nrrd")
    cfg = config_from_mapping({"discretisation": {"method": "fixed_bin_size", "bin_width": 25.0},
                               "aggregations": ["3d_avg", "3d_comb", "3d", "2d", "2d_avg"]})
    values = extract(image, mask, config=cfg)
    assert values["morph.volume_voxel_counting"] == pytest.approx(4137 * 0.78125**2 * 6.5)
    bad = [k for k, v in values.items() if not math.isfinite(v) and "ombb" not in k and "mvee" not in k]
    assert bad == []
    # the same region inside a bigger zero-padded image gives the same features
    arr = np.pad(image.array, ((2, 3), (5, 4), (6, 7)))
    msk = np.pad(mask.array, ((2, 3), (5, 4), (6, 7)))
    shifted = Image(arr, image.affine), Image(msk, image.affine)
    again = extract(*shifted, config=cfg)
    for key in ("glcm.3d_avg.contrast", "morph.morans_i", "ngtdm.3d.busyness", "gldzm.2d.zone_percentage"):
        assert again[key] == pytest.approx(values[key], rel=1e-9)


def test_feature_table_lists_every_family():
    specs = feature_specs()
    fams = {s.family for s in specs}
    assert set(FAMILY_PREFIXES) | {"firstorder", "shape2d"} <= fams
    ibsi = [s for s in specs if s.family in FAMILY_PREFIXES]
    assert len({(s.family, s.ibsi_code) for s in ibsi}) == len(ibsi)
    assert all(s.ibsi_code for s in ibsi)
    assert isinstance(preset("ibsi-ct-c"), RadiomicsConfig)


@pytest.mark.parametrize("order", [1, 3])
def test_separable_resample_equals_scipy_affine_transform(order):
    """The axis-by-axis resampler gives scipy's ``affine_transform`` (mode nearest, cubic with
    its prefilter) for grid-aligned scalings, also where the output grid overhangs the input."""
    from scipy import ndimage

    from medimg.features.processing import separable_resample

    rng = np.random.default_rng(11)
    a = rng.normal(size=(13, 17, 16)) * 100
    for step, offset, out in (((0.5, 1 / 0.977, 1 / 0.977), (0.2, 0.1, 0.1), (25, 16, 15)),
                              ((2.0, 0.8, 1.25), (-1.3, -0.6, 0.0), (8, 23, 14)),
                              ((1.0, 1.0, 1.0), (0.5, 0.25, 0.75), (13, 17, 16))):
        want = ndimage.affine_transform(a, np.asarray(step), offset=offset, output_shape=out, order=order,
                                        mode="nearest", prefilter=order > 1)
        got = separable_resample(a, np.asarray(step), np.asarray(offset), out, order)
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-9)
