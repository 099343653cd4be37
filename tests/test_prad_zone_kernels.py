"""The compiled GLSZM / GLDM / NGTDM kernels of the PyRadiomics mode (features/_prad_zone_kernels.py):
the same values as the NumPy path (1e-12 relative) on brain1 and on random and adversarial ROIs
under PyRadiomics's settings, exact zone / dependence counts on synthetic boxes, PyRadiomics itself
on a fragmented ROI, and no neighbour table built when compiled."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")

from medimg.core.jit import use_compiled  # noqa: E402
from medimg.features import _prad_zone_kernels as zk  # noqa: E402
from medimg.features import _pyradiomics_calc as calc  # noqa: E402

DATA = Path(__file__).parent / "data" / "mri-brain1"
CLASSES = ("glszm", "gldm", "ngtdm")
SETTINGS = [
    {"binWidth": 25},
    {"binCount": 16},
    {"binWidth": 10, "distances": [1, 2], "gldm_a": 1},
    {"binWidth": 25, "distances": [3], "gldm_a": 2},
    {"binWidth": 25, "force2D": True, "force2Ddimension": 0},
    {"binWidth": 25, "force2D": True, "force2Ddimension": 1},
    {"binWidth": 25, "force2D": True, "force2Ddimension": 2, "gldm_a": 1},
]


def _values(q: np.ndarray, settings: dict, compiled: bool) -> dict[str, float]:
    out = {}
    with use_compiled(compiled):
        d = calc.Discretised(q)  # one prepared box shared by the three classes, as extraction does
        for cls in CLASSES:
            vals = getattr(calc, cls)(d, (1.0, 1.0, 1.0), settings, calc.FEATURE_NAMES[cls])
            out.update({f"{cls}_{k}": v for k, v in vals.items()})
    return out


def _assert_close(a: dict[str, float], b: dict[str, float], rel: float = 1e-12) -> None:
    assert a.keys() == b.keys()
    bad = {k: (a[k], b[k]) for k in a
           if not (np.isnan(a[k]) and np.isnan(b[k])) and abs(a[k] - b[k]) > rel * max(abs(a[k]), 1e-300)}
    assert not bad, bad


def _discretised(image: np.ndarray, roi: np.ndarray, settings: dict) -> np.ndarray:
    """The ROI's bounding box discretised as the PyRadiomics mode does it."""
    idx = np.argwhere(roi)
    sl = tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(idx.min(0), idx.max(0), strict=True))
    return calc.discretise(image[sl].astype(float), roi[sl], settings)


def _brain1() -> tuple[np.ndarray, np.ndarray]:
    from medimg.io import read

    img = np.asarray(read(DATA / "brain1_roi_image.nrrd").array, dtype=float)
    roi = np.asarray(read(DATA / "brain1_roi_label.nrrd").array) == 1
    return img, roi


@pytest.mark.parametrize("settings", SETTINGS)
def test_compiled_equals_numpy_on_brain1(settings: dict) -> None:
    img, roi = _brain1()
    q = _discretised(img, roi, settings)
    _assert_close(_values(q, settings, False), _values(q, settings, True))


def _adversarial(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(image, roi) pairs: random blobs, fragments, 1-voxel-thick boxes in each axis, a line, a
    single grey level, two voxels, a full box (ROI touching every face)."""
    out = {}
    img = rng.normal(100, 40, (9, 12, 11))
    out["random"] = (img, rng.random(img.shape) < 0.45)
    frag = np.zeros((7, 20, 20), bool)
    frag[::3, ::4, ::3] = True
    frag[1, 5:8, 6] = True
    out["fragments"] = (rng.normal(100, 40, frag.shape), frag)
    for ax in range(3):
        shape = [6, 8, 7]
        shape[ax] = 1
        out[f"thin{ax}"] = (rng.normal(100, 40, shape), rng.random(shape) < 0.7)
    line = np.zeros((1, 1, 15), bool)
    line[0, 0, ::2] = True
    line[0, 0, 5:9] = True
    out["line"] = (rng.normal(100, 40, line.shape), line)
    flat = np.zeros((5, 6, 7), bool)
    flat[1:4, 2:5, 1:6] = True
    out["one_level"] = (np.full(flat.shape, 42.0), flat)
    two = np.zeros((3, 3, 3), bool)
    two[0, 0, 0] = two[2, 2, 2] = True
    out["two_voxels"] = (rng.normal(100, 40, two.shape), two)
    out["full_box"] = (np.round(rng.normal(100, 30, (4, 5, 6))), np.ones((4, 5, 6), bool))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_equals_numpy_on_adversarial_rois(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name, (img, roi) in _adversarial(rng).items():
        for settings in SETTINGS:
            q = _discretised(img, roi, settings)
            try:
                _assert_close(_values(q, settings, False), _values(q, settings, True))
            except AssertionError as err:  # pragma: no cover - the message names the case
                raise AssertionError(f"{name} {settings}: {err}") from None


def test_int32_box_and_plain_array_input() -> None:
    img, roi = _brain1()
    s = {"binWidth": 25}
    q = _discretised(img, roi, s)
    ref = _values(q, s, False)
    with use_compiled(True):
        for cls in CLASSES:
            got = getattr(calc, cls)(q.astype(np.int32), (1.0, 1.0, 1.0), s, calc.FEATURE_NAMES[cls])
            _assert_close({f"{cls}_{k}": v for k, v in got.items()},
                          {k: v for k, v in ref.items() if k.startswith(cls + "_")})


def _zone_sizes_brute(q: np.ndarray, offs: np.ndarray) -> list[tuple[int, int]]:
    """(grey level, zone size) of every zone, by a plain recursive-free search on coordinates."""
    seen = np.zeros(q.shape, bool)
    out = []
    for start in zip(*np.nonzero(q > 0), strict=True):
        if seen[start]:
            continue
        g, todo, size = q[start], [start], 0
        seen[start] = True
        while todo:
            c = todo.pop()
            size += 1
            for o in offs:
                t = tuple(int(v) for v in np.asarray(c) + o)
                if all(0 <= t[k] < q.shape[k] for k in range(3)) and not seen[t] and q[t] == g:
                    seen[t] = True
                    todo.append(t)
        out.append((int(g), size))
    return sorted(out)


def test_zone_sizes_exact_26_connectivity_and_force2d() -> None:
    # two 2x2x2 cubes of level 3 touching only at a corner, a level-1 bar and a lone level-2 voxel
    q = np.zeros((4, 5, 6), np.int64)
    q[0:2, 0:2, 0:2] = 3
    q[2:4, 2:4, 2:4] = 3
    q[0, 4, 0:6] = 1
    q[3, 0, 5] = 2
    both = calc._zone_args(q, (1,), {})[1]
    assert _zone_sizes_brute(q, both) == [(1, 6), (2, 1), (3, 16)]  # corner contact joins in 3-D
    in_plane = calc._zone_args(q, (1,), {"force2D": True, "force2Ddimension": 0})[1]
    assert not in_plane[:, 0].any()
    assert _zone_sizes_brute(q, in_plane) == [(1, 6), (2, 1), (3, 4), (3, 4), (3, 4), (3, 4)]
    # GLSZM features from those zones: ZonePercentage = zones / voxels; GLN = sum over levels of zones^2 / zones
    for settings, zones, per_level in (({}, 3, [1, 1, 1]), ({"force2D": True, "force2Ddimension": 0}, 6, [1, 1, 4])):
        for compiled in (False, True):
            with use_compiled(compiled):
                v = calc.glszm(q, (1.0, 1.0, 1.0), settings, ["ZonePercentage", "GrayLevelNonUniformity"])
            assert v["ZonePercentage"] == pytest.approx(zones / 23, rel=1e-14)
            assert v["GrayLevelNonUniformity"] == pytest.approx(sum(n * n for n in per_level) / zones, rel=1e-14)


def test_random_zone_sizes_against_brute_force() -> None:
    rng = np.random.default_rng(5)
    for _ in range(4):
        q = rng.integers(0, 4, (5, 7, 6))
        for settings in ({}, {"force2D": True, "force2Ddimension": 2}):
            box, offs = calc._zone_args(q, (1,), settings)
            zones = _zone_sizes_brute(q, offs)
            # the brute-force zones' GLSZM, through the NumPy feature formulas
            ns = max(s for _, s in zones)
            P = np.zeros((3, ns))
            for g, s in zones:
                P[g - 1, s - 1] += 1
            levels = np.arange(1, 4)
            want = calc._zone_features(P, levels, zk.ZONE_KEYS, zone=True)
            got = dict(zip(zk.ZONE_KEYS, zk.glszm_values(box, offs), strict=True))
            _assert_close(want, got)


def test_dependence_and_ngtdm_counts_exact() -> None:
    # a 1 x 3 x 3 box: centre level 2, ring of levels; alpha 0 and 1, the in-plane 8-neighbourhood
    q = np.asarray([[[1, 2, 3], [2, 2, 0], [1, 1, 2]]])
    box, offs = calc._zone_args(q, (1,), {})
    assert len(offs) == 8
    alpha0 = dict(zip(zk.ZONE_KEYS, zk.gldm_values(box, offs, 0), strict=True))
    # dependence counts (neighbours of equal level, +1 for the voxel): level-1 voxels at (0,0), (2,0),
    # (2,1): 1, 2, 2; level-2 voxels at (0,1), (1,0), (1,1), (2,2): 3, 3, 4, 2; level 3: 1
    deps = [1, 2, 2, 3, 3, 4, 2, 1]
    assert alpha0["LargeAreaEmphasis"] == pytest.approx(np.mean(np.square(deps)), rel=1e-14)
    assert alpha0["ZonePercentage"] == pytest.approx(len(deps) / sum(deps), rel=1e-14)
    ng = dict(zip(zk.NGTDM_KEYS, zk.ngtdm_values(box, offs), strict=True))
    # s_i = sum over level-i voxels of |i - mean of its ROI neighbours|
    means = {(0, 0): 2, (2, 0): 5 / 3, (2, 1): 7 / 4, (0, 1): 8 / 4, (1, 0): 7 / 5, (1, 1): 12 / 7,
             (2, 2): 3 / 2, (0, 2): 4 / 2}
    s = {1: 0.0, 2: 0.0, 3: 0.0}
    for (y, x), m in means.items():
        s[int(q[0, y, x])] += abs(q[0, y, x] - m)
    p = {1: 3 / 8, 2: 4 / 8, 3: 1 / 8}
    assert ng["Coarseness"] == pytest.approx(1 / sum(p[i] * s[i] for i in s), rel=1e-13)


def test_voxel_without_neighbours_and_single_level() -> None:
    # isolated voxels: NGTDM s = 0 everywhere -> Coarseness 1e6, Strength 0 (PyRadiomics's guards)
    q = np.zeros((3, 3, 3), np.int64)
    q[0, 0, 0], q[2, 2, 2] = 1, 2
    with use_compiled(True):
        v = calc.ngtdm(q, (1.0, 1.0, 1.0), {}, calc.FEATURE_NAMES["ngtdm"])
    assert v["Coarseness"] == 1e6 and v["Strength"] == 0.0
    with use_compiled(False):
        assert calc.ngtdm(q, (1.0, 1.0, 1.0), {}, calc.FEATURE_NAMES["ngtdm"]) == v


def test_box_checks_its_border_and_shape() -> None:
    q = np.ones((2, 3, 4), np.int64)
    box = zk.ZoneBox(q, 1)
    with pytest.raises(ValueError, match="border"):
        box.steps(np.asarray([[0, 0, 2]]))
    with pytest.raises(ValueError, match="3-D"):
        zk.ZoneBox(np.ones((3, 4), np.int64), 1)
    # a wider distance later re-borders the box kept on the Discretised
    d = calc.Discretised(q)
    assert calc._zone_args(d, (1,), {})[0].pad == 1
    assert calc._zone_args(d, (1, 3), {})[0].pad == 3


def test_compiled_builds_no_neighbour_table() -> None:
    img, roi = _brain1()
    s = {"binWidth": 25}
    d = calc.Discretised(_discretised(img, roi, s))
    with use_compiled(True):
        for cls in CLASSES:
            getattr(calc, cls)(d, (1.0, 1.0, 1.0), s, calc.FEATURE_NAMES[cls])
    assert not any(isinstance(k, tuple) and k[0] == "both" for k in d._cache)
    assert not d._grids  # not even the padded grid of the NumPy path


def test_fragmented_roi_against_pyradiomics() -> None:
    radiomics = pytest.importorskip("radiomics")
    sitk = pytest.importorskip("SimpleITK")
    from radiomics import featureextractor

    from medimg import Image
    from medimg.features.pyradiomics_compat import extract_pyradiomics

    radiomics.setVerbosity(logging.ERROR)
    rng = np.random.default_rng(3)
    arr = rng.normal(300, 120, (6, 24, 24)).round()
    lab = np.zeros(arr.shape, np.uint8)
    lab[1:5:2, 2:22:3, 2:22:4] = 1
    lab[2:4, 8:14, 8:12] = 1
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.8, 2.5))
    msk = sitk.GetImageFromArray(lab)
    msk.CopyInformation(img)
    for setting in ({"binWidth": 25}, {"binCount": 12, "distances": [1, 2], "gldm_a": 1},
                    {"binWidth": 20, "force2D": True, "force2Ddimension": 0}):
        params = {"setting": setting, "imageType": {"Original": {}},
                  "featureClass": {c: None for c in CLASSES}}
        ex = featureextractor.RadiomicsFeatureExtractor(params)
        ref = {k: float(v) for k, v in ex.execute(img, msk).items() if not k.startswith("diagnostics")}
        got = extract_pyradiomics(Image.from_sitk(img), Image.from_sitk(msk), params, compiled=True)
        assert set(got) == set(ref)
        _assert_close(ref, got, rel=1e-6)


def test_box_refuses_non_integer_levels() -> None:
    with pytest.raises(ValueError, match="integer"):
        zk.ZoneBox(np.ones((2, 3, 4)), 1)
    with pytest.raises(ValueError, match="integer"):
        zk.ZoneBox(np.full((2, 3, 4), 2**40, np.uint64), 1)
    with pytest.raises(ValueError, match="int32"):
        zk.ZoneBox(np.full((2, 3, 4), 2**40, np.int64), 1)
    # small unsigned and boolean boxes are taken as they are
    q = np.asarray([[[1, 2, 2], [0, 1, 3]]])
    assert zk.ZoneBox(q.astype(np.uint8), 1).ng == 3
    assert zk.ZoneBox(q > 0, 1).ng == 1


# IBSI 1 digital phantom, 3-D consensus values (tests/data/ibsi1-digital-phantom/reference_values.csv,
# given to 3 significant digits): with binWidth 1 PyRadiomics's grey levels are the phantom's own, its
# GLSZM is the IBSI's (26-connected zones), its GLDM the IBSI's NGLDM (alpha 0, Chebyshev distance 1,
# the centre voxel counted) and, every ROI voxel having a neighbour, its NGTDM the IBSI's.
IBSI_DIG_3D = {
    "glszm": {"SmallAreaEmphasis": 0.255, "LargeAreaEmphasis": 550.0, "LowGrayLevelZoneEmphasis": 0.253,
              "HighGrayLevelZoneEmphasis": 15.6, "SmallAreaLowGrayLevelEmphasis": 0.0256,
              "SmallAreaHighGrayLevelEmphasis": 2.76, "LargeAreaLowGrayLevelEmphasis": 503.0,
              "LargeAreaHighGrayLevelEmphasis": 1490.0, "GrayLevelNonUniformity": 1.4,
              "GrayLevelNonUniformityNormalized": 0.28, "SizeZoneNonUniformity": 1.0,
              "SizeZoneNonUniformityNormalized": 0.2, "ZonePercentage": 0.0676, "GrayLevelVariance": 2.64,
              "ZoneVariance": 331.0, "ZoneEntropy": 2.32},
    "gldm": {"SmallDependenceEmphasis": 0.045, "LargeDependenceEmphasis": 109.0, "LowGrayLevelEmphasis": 0.693,
             "HighGrayLevelEmphasis": 7.66, "SmallDependenceLowGrayLevelEmphasis": 0.00963,
             "SmallDependenceHighGrayLevelEmphasis": 0.736, "LargeDependenceLowGrayLevelEmphasis": 102.0,
             "LargeDependenceHighGrayLevelEmphasis": 235.0, "GrayLevelNonUniformity": 37.9,
             "DependenceNonUniformity": 4.86, "DependenceNonUniformityNormalized": 0.0657,
             "GrayLevelVariance": 3.05, "DependenceVariance": 22.1, "DependenceEntropy": 4.4},
    "ngtdm": {"Coarseness": 0.0296, "Contrast": 0.584, "Busyness": 6.54, "Complexity": 13.5, "Strength": 0.763},
}


@pytest.mark.parametrize("compiled", [False, True])
def test_ibsi_digital_phantom_3d_reference_values(compiled: bool) -> None:
    from medimg.io import read

    phantom = Path(__file__).parent / "data" / "ibsi1-digital-phantom"
    img = np.asarray(read(phantom / "image.nii.gz").array, dtype=float)
    roi = np.asarray(read(phantom / "mask.nii.gz").array) > 0
    s = {"binWidth": 1}
    q = _discretised(img, roi, s)
    with use_compiled(compiled):
        d = calc.Discretised(q)
        for cls, ref in IBSI_DIG_3D.items():
            got = getattr(calc, cls)(d, (2.0, 2.0, 2.0), s, tuple(ref))
            for name, want in ref.items():
                assert got[name] == pytest.approx(want, rel=5e-3, abs=5e-5), (cls, name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_row_neighbourhood_kernel_equals_voxel_kernel(seed: int) -> None:
    """The GLDM/NGTDM pass a row at a time (``_neighbourhood_rows``, what the wrappers run) against the
    voxel-by-voxel pass, bit for bit: alpha 0 and 1.5, distances 1 and (1, 2) (border 2), force2D,
    a one-voxel-thick box, many levels, the ROI touching the box's faces."""
    rng = np.random.default_rng(seed)
    shapes = [(4, 7, 9), (1, 6, 11), (3, 1, 5), (3, 4, 40)]
    for shape in shapes:
        fill = (0.75, 0.08, 0.3)[seed]  # dense rows; sparse rows (voxel by voxel); both
        q = np.where(rng.random(shape) < fill, rng.integers(1, 300 if seed else 4, shape), 0)
        q.ravel()[0] = q.ravel()[-1] = 1
        for distances, settings in (((1,), {}), ((1, 2), {}), ((1,), {"force2D": True, "force2Ddimension": 0})):
            box, offs = calc._zone_args(q, distances, settings)
            steps = box.steps(offs)
            for alpha in (0.0, 1.5):
                rows = zk._compiled(zk._neighbourhood_rows)(box.flat, box.dims, box.pad, steps, box.ng, alpha,
                                                           zk._EPS)
                vox = zk._compiled(zk._neighbourhood_values)(box.flat, box.vox, steps, box.ng, alpha, zk._EPS)
                assert np.array_equal(rows, vox, equal_nan=True), (shape, distances, settings, alpha)


# ------------------------------------------------------------- GLSZM zones: union-find against references

def _zone_cells(zone_g: np.ndarray, zone_s: np.ndarray) -> dict[tuple[int, int], int]:
    """{(grey level, size): number of zones}."""
    out: dict[tuple[int, int], int] = {}
    for g, s in zip(zone_g.tolist(), zone_s.tolist(), strict=True):
        out[(g, s)] = out.get((g, s), 0) + 1
    return out


def _numpy_cells(q: np.ndarray, settings: dict) -> dict[tuple[int, int], int]:
    """The NumPy path's zone matrix (``glszm_matrix``) as {(grey level, size): count}."""
    P = calc.glszm_matrix(calc.Discretised(q), settings)
    return {(int(i) + 1, int(j) + 1): int(P[i, j]) for i, j in zip(*np.nonzero(P), strict=True)}


def _fill_cells(box: zk.ZoneBox, offs: np.ndarray) -> dict[tuple[int, int], int]:
    """The breadth-first fill's zones (what small and sparse ROIs and wider offsets take)."""
    return _zone_cells(*zk.glszm_zones(box, offs, fill=True))


def _check_zones(q: np.ndarray, settings: dict, brute: bool = False, pad: int = 1) -> None:
    """The union-find's zone matrix equals the NumPy path's and the fill's (and the brute force's),
    exactly; the features equal the NumPy path's to 1e-13."""
    _, offs = calc._zone_args(q, (1,), settings)
    box = zk.ZoneBox(q, pad)
    got = _zone_cells(*zk.glszm_zones(box, offs, fill=False))
    assert sum(g * 0 + s * c for (g, s), c in got.items()) == int((q > 0).sum())
    assert got == _numpy_cells(q, settings), (q.shape, settings)
    assert got == _fill_cells(box, offs)
    if brute:
        want: dict[tuple[int, int], int] = {}
        for g, s in _zone_sizes_brute(q, offs):
            want[(g, s)] = want.get((g, s), 0) + 1
        assert got == want
    with use_compiled(False):
        ref = calc.glszm(q, (1.0, 1.0, 1.0), settings, calc.FEATURE_NAMES["glszm"])
    for fill in (False, True):
        vals = dict(zip(zk.ZONE_KEYS, zk.glszm_values(box, offs, fill=fill).tolist(), strict=True))
        _assert_close({k: ref[k] for k in ref}, {k: vals[k] for k in ref}, rel=1e-13)


ZONE_SETTINGS = [{}, {"force2D": True, "force2Ddimension": 0}, {"force2D": True, "force2Ddimension": 1},
                 {"force2D": True, "force2Ddimension": 2}]


@pytest.mark.parametrize("seed", range(6))
def test_union_find_zones_equal_numpy_and_fill_on_random_boxes(seed: int) -> None:
    """Random boxes: few levels (large winding zones, many joins) and many (small zones), ROIs from
    sparse to full (touching every face), 1-voxel-thick boxes in each axis and a line."""
    rng = np.random.default_rng(seed)
    shapes = [(6, 7, 8), (1, 9, 11), (7, 1, 6), (5, 8, 1), (1, 1, 13), (3, 4, 40)]
    for shape in shapes:
        for nlev, fill in ((2, 1.0), (3, 0.8), (5, 0.5), (300, 0.9), (1, 0.6)):
            q = np.where(rng.random(shape) < fill, rng.integers(1, nlev + 1, shape), 0)
            if not q.any():
                continue
            for settings in ZONE_SETTINGS:
                _check_zones(q, settings, brute=q.size <= 400)


def _snake(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Level 1 on a random walk (steps of the 26-neighbourhood, so many contacts are diagonal only)
    over a level-2 background, a ring of the ROI left out at random."""
    q = np.full(shape, 2, np.int64)
    pos = np.asarray([s // 2 for s in shape])
    for _ in range(3 * int(np.prod(shape)) // 4):
        pos = np.clip(pos + rng.integers(-1, 2, 3), 0, np.asarray(shape) - 1)
        q[tuple(pos)] = 1
    q[rng.random(shape) < 0.05] = 0
    return q


def test_union_find_zones_on_combs_spirals_snakes_and_checkerboards() -> None:
    """Shapes whose zones meet late in C order (many provisional zones joined at once): a comb whose
    teeth meet in the last row and plane, a spiral in each plane, random walks, and a 3-D
    checkerboard (each colour one zone through corner contacts alone in 3-D; in-plane, edges)."""
    rng = np.random.default_rng(11)
    comb = np.full((5, 9, 12), 2, np.int64)
    comb[:, :, ::2] = 1
    comb[:, -1, :] = 1
    comb[-1] = 1
    comb[2, 3, :] = 3  # a level-3 bar cutting the teeth
    spiral = np.full((3, 11, 11), 2, np.int64)
    y, x, dy, dx = 0, 0, 0, 1
    seen = np.zeros((11, 11), bool)
    for _ in range(121):  # a square spiral of level 1, one voxel apart from its own next turn
        seen[y, x] = True
        spiral[:, y, x] = 1
        ny, nx = y + dy, x + dx
        if not (0 <= ny < 11 and 0 <= nx < 11) or seen[min(max(ny + dy, 0), 10), min(max(nx + dx, 0), 10)] \
                or seen[ny % 11, nx % 11]:
            dy, dx = dx, -dy
            ny, nx = y + dy, x + dx
            if not (0 <= ny < 11 and 0 <= nx < 11) or seen[ny, nx]:
                break
        y, x = ny, nx
    spiral[1, ::2, ::3] = 0  # holes in the middle plane
    zz, yy, xx = np.indices((6, 7, 8))
    checker = 1 + (zz + yy + xx) % 2
    boxes = [comb, spiral, checker, comb[::-1, ::-1, ::-1].copy(), spiral.transpose(1, 2, 0).copy()]
    boxes += [_snake(shape, rng) for shape in ((6, 8, 9), (1, 12, 14), (9, 9, 1), (4, 5, 30))]
    for q in boxes:
        for settings in ZONE_SETTINGS:
            _check_zones(q, settings, brute=q.size <= 600)
    # the checkerboard: one zone per colour in 3-D (corner contacts); in-plane, one per colour and plane
    _, offs = calc._zone_args(checker, (1,), {})
    assert _zone_cells(*zk.glszm_zones(zk.ZoneBox(checker, 1), offs, fill=False)) == {(1, 168): 1, (2, 168): 1}
    _, offs = calc._zone_args(checker, (1,), {"force2D": True, "force2Ddimension": 0})
    assert _zone_cells(*zk.glszm_zones(zk.ZoneBox(checker, 1), offs, fill=False)) == {(1, 28): 6, (2, 28): 6}


def test_union_find_zones_one_level_wide_border_and_empty() -> None:
    q = np.full((4, 5, 6), 7, np.int64)  # one level filling the box: one zone touching every face
    for settings in ZONE_SETTINGS:
        _check_zones(q, settings, brute=True)
    _, offs = calc._zone_args(q, (1,), {})
    assert _zone_cells(*zk.glszm_zones(zk.ZoneBox(q, 1), offs, fill=False)) == {(7, 120): 1}
    # a box bordered for a wider GLDM distance (as a Discretised shared with the GLDM keeps it)
    rng = np.random.default_rng(2)
    q = np.where(rng.random((5, 6, 7)) < 0.7, rng.integers(1, 4, (5, 6, 7)), 0)
    for settings in ZONE_SETTINGS:
        _check_zones(q, settings, brute=True, pad=3)
    # ROI voxels only late in each plane (the union-find skips the 1,024-voxel chunks without any)
    q = np.zeros((4, 50, 50), np.int64)
    q[:, 38:, 10:40] = rng.integers(1, 3, (4, 12, 30))
    q[2, 45:, :] = 0
    for settings in ZONE_SETTINGS[:2]:
        _check_zones(q, settings)
    # no ROI voxel: no zone
    for fill in (False, True):
        g, s = zk.glszm_zones(zk.ZoneBox(np.zeros((2, 3, 4), np.int64), 1), offs, fill=fill)
        assert g.size == s.size == 0


def test_union_find_merge_table_against_components() -> None:
    """The table of components among a voxel's equal earlier neighbours, for every set of the 13
    (checked by a search over the set) and for the in-plane 4."""
    for settings in ({}, {"force2D": True, "force2Ddimension": 0}):
        _, offs = calc._zone_args(np.ones((3, 3, 3), np.int64), (1,), settings)
        back, first, more = zk._merge_plan(np.asarray(offs, np.int64).tobytes())
        nb = len(back)
        assert nb == len(offs) // 2 and first.size == 1 << nb
        assert tuple(back[0]) == (0, 0, -1)  # the voxel before along x first
        both = {tuple(o) for o in offs}
        rng = np.random.default_rng(0)
        for m in [0, (1 << nb) - 1, *rng.integers(0, 1 << nb, 300).tolist()]:
            members = [a for a in range(nb) if m >> a & 1]
            comps: list[set[int]] = []
            for a in members:
                joined = [c for c in comps if any(tuple(back[a] - back[b]) in both for b in c)]
                merged = {a}.union(*joined)
                comps = [c for c in comps if c not in joined] + [merged]
            k = int(first[m]) >> 4
            assert k == len(comps)
            reps = [int(first[m]) & 15] + [int(v) for v in more[m, :max(k - 1, 0)]]
            if k == 0:
                assert reps == [nb]
            else:  # one representative per component, each its component's lowest bit
                assert sorted(reps) == sorted(min(c) for c in comps)


def test_union_find_zones_wider_offsets_and_threads() -> None:
    """More than 13 offsets each way take the fill, 13 two voxels long the union-find (the same zones
    as a brute-force search);
    the union-find in threads at once (the kernels release the GIL) gives the fill's zones."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(4)
    q = np.where(rng.random((5, 6, 7)) < 0.6, rng.integers(1, 3, (5, 6, 7)), 0)
    box, offs = calc._zone_args(q, (1, 2), {})
    assert zk._merge_plan(np.asarray(offs, np.int64).tobytes()) is None
    want: dict[tuple[int, int], int] = {}
    for g, s in _zone_sizes_brute(q, offs):
        want[(g, s)] = want.get((g, s), 0) + 1
    assert _zone_cells(*zk.glszm_zones(box, offs, fill=False)) == want
    # the 26 unit offsets doubled: 13 each way, the union-find (a 2-voxel border)
    offs = 2 * calc._zone_args(q, (1,), {})[1]
    box = zk.ZoneBox(q, 2)
    assert zk._merge_plan(np.asarray(offs, np.int64).tobytes()) is not None
    want = {}
    for g, s in _zone_sizes_brute(q, offs):
        want[(g, s)] = want.get((g, s), 0) + 1
    assert _zone_cells(*zk.glszm_zones(box, offs, fill=False)) == want == _fill_cells(box, offs)
    boxes = [np.where(rng.random((8, 20, 30)) < 0.8, rng.integers(1, 5, (8, 20, 30)), 0) for _ in range(8)]
    offs = calc._zone_args(boxes[0], (1,), {})[1]
    alone = [_zone_cells(*zk.glszm_zones(zk.ZoneBox(b, 1), offs, fill=True)) for b in boxes]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            together = list(pool.map(lambda b: _zone_cells(*zk.glszm_zones(zk.ZoneBox(b, 1), offs, fill=False)), boxes))
            assert together == alone


def test_box_voxel_list_dense_and_sparse() -> None:
    """The ROI voxels' flat indices: kept from the copy where the ROI is small or sparse (every 4th
    row's estimate; the voxel-wise passes read them), listed on first use where it is large and
    dense; both C order."""
    rng = np.random.default_rng(8)
    kept = []
    for shape, fill in (((4, 6, 9), 0.9), ((12, 16, 12), 0.1), ((12, 16, 12), 0.95)):
        q = np.where(rng.random(shape) < fill, rng.integers(-3, 6, shape), 0)
        for pad in (1, 2):
            box = zk.ZoneBox(q, pad)
            kept.append(box._vox is not None)
            want = np.flatnonzero(np.pad(np.where(q > 0, q, 0), pad) > 0)
            assert box.vox.dtype == np.int32 and np.array_equal(box.vox, want)
            assert box.nv == want.size and box.ng == int(q.max())
            assert np.array_equal(box.flat, np.pad(np.where(q > 0, q, 0), pad).ravel())
    assert kept == [True, True, True, True, False, False]


def test_glszm_picks_union_find_for_large_dense_rois_and_fill_otherwise() -> None:
    """The default: the union-find where the ROI has >= 1024 voxels filling >= 1/8 of the box (brain1's
    tumour, the IBSI CT phantom), the fill for small or sparse ROIs; the same zones either way."""
    img, roi = _brain1()
    s = {"binWidth": 25}
    tumour = _discretised(img, roi, s)
    rng = np.random.default_rng(9)
    sparse = np.where(rng.random((10, 40, 40)) < 0.1, rng.integers(1, 4, (10, 40, 40)), 0)
    for q, union_find in ((tumour, True), (tumour[:, :8, :8], False), (sparse, False)):
        box, offs = calc._zone_args(q, (1,), s)
        assert (zk._union_find_plan(box, offs, None) is not None) == union_find
        assert _zone_cells(*zk.glszm_zones(box, offs)) == _fill_cells(box, offs)
        assert _zone_cells(*zk.glszm_zones(box, offs, fill=False)) == _numpy_cells(q, s)
