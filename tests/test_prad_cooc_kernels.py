"""Compiled GLCM / GLRLM of PyRadiomics mode (``features._prad_cooc_kernels``): the compiled path
against the NumPy path (1e-12 relative) on brain1, random and adversarial ROIs under several
settings; the kernels against brute-force counts and LAPACK; both paths against PyRadiomics on
adversarial ROIs (1e-6)."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")

pytest.importorskip("numba")

from medimg.core.jit import use_compiled  # noqa: E402
from medimg.features import _prad_cooc_kernels as K  # noqa: E402
from medimg.features import _pyradiomics_calc as calc  # noqa: E402

DATA = Path(__file__).parent / "data" / "mri-brain1"
SPACING = (2.0, 0.9, 0.7)

SETTINGS = [
    {"binWidth": 25},
    {"binCount": 16},
    {"binWidth": 5},
    {"binWidth": 25, "symmetricalGLCM": False},
    {"binWidth": 25, "distances": [1, 2]},
    {"binWidth": 25, "force2D": True, "force2Ddimension": 0},
    {"binCount": 8, "force2D": True, "force2Ddimension": 2},
    {"binWidth": 25, "weightingNorm": "euclidean"},
    {"binCount": 10, "weightingNorm": "manhattan", "symmetricalGLCM": False},
]


def _both(image: np.ndarray, roi: np.ndarray, settings: dict) -> tuple[dict, dict]:
    q = calc.discretise(image, roi, settings)
    out = []
    for compiled in (False, True):
        with use_compiled(compiled):
            d = calc.Discretised(q)
            vals = {}
            for cls in ("glcm", "glrlm"):
                vals.update({f"{cls}_{k}": v for k, v in
                             getattr(calc, cls)(d, SPACING, settings, calc.FEATURE_NAMES[cls]).items()})
            out.append(vals)
    return out[0], out[1]


def _assert_close(ref: dict, got: dict, rel: float = 1e-12) -> None:
    """Within ``rel`` relative; a value that is zero but for rounding (a variance of one level:
    1e-31) within 1e-20; Imc1 / Imc2 (differences of entropies of order 1, which cancel where the
    levels are nearly independent) within 1e-12 absolute."""
    assert set(ref) == set(got)
    bad = {k: (ref[k], got[k]) for k in ref
           if not (np.isnan(ref[k]) and np.isnan(got[k]))
           and not abs(ref[k] - got[k]) <= max(rel * abs(ref[k]), 1e-12 if "Imc" in k else 1e-20)}
    assert not bad, bad


def _box(mask: np.ndarray) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    return tuple(slice(a, b + 1) for a, b in zip(idx.min(0), idx.max(0), strict=True))


def _brain1() -> tuple[np.ndarray, np.ndarray]:
    from medimg.io import read

    img = np.asarray(read(DATA / "brain1_roi_image.nrrd").array, dtype=float)
    roi = np.asarray(read(DATA / "brain1_roi_label.nrrd").array) == 1
    sl = _box(roi)
    return img[sl], roi[sl]


def _rois(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    img = rng.normal(100, 40, (9, 14, 12)).cumsum(2)  # some texture: runs longer than one voxel
    out = {}
    out["random"] = (img, rng.random(img.shape) < 0.6)
    thin = np.zeros(img.shape, bool)
    thin[4, 2:12, 3:10] = True  # one voxel thick
    out["thin"] = (img, thin)
    line = np.zeros(img.shape, bool)
    line[2:7, 5, 6] = True  # a line along z
    out["line"] = (img, line)
    frag = np.zeros(img.shape, bool)
    frag[::3, ::4, ::3] = True  # isolated voxels: every run one voxel
    out["fragments"] = (img, frag)
    pairs = frag.copy()
    pairs[0, 0, 1] = True  # one pair along x
    out["fragments-pair"] = (img, pairs)
    border = np.zeros(img.shape, bool)
    border[0, :, :5] = True
    border[:, 0, :] = True  # touching the box's faces
    out["border"] = (img, border)
    out["one-level"] = (np.full(img.shape, 7.0), rng.random(img.shape) < 0.5)
    two = np.where(rng.random(img.shape) < 0.97, 10.0, 90.0)  # a rare second level
    out["rare-level"] = (two, np.ones(img.shape, bool))
    return out


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(f"{k}{v}" for k, v in s.items()))
def test_brain1_compiled_equals_numpy(settings):
    image, roi = _brain1()
    _assert_close(*_both(image, roi, settings))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adversarial_rois_compiled_equals_numpy(seed):
    for name, (image, roi) in _rois(seed).items():
        for settings in SETTINGS[:1] + SETTINGS[3:]:
            try:
                _assert_close(*_both(image, roi, settings))
            except AssertionError as err:  # pragma: no cover - the message names the case
                raise AssertionError(f"{name} {settings}: {err}") from None


def test_2d_image_force2d():
    rng = np.random.default_rng(5)
    image = rng.normal(0, 30, (1, 20, 17)).cumsum(1)
    roi = rng.random(image.shape) < 0.7
    for settings in ({"binWidth": 10}, {"binCount": 6, "force2D": True}):
        _assert_close(*_both(image, roi, settings))


def _brute_glcm(q: np.ndarray, offs: np.ndarray, rank: np.ndarray, nl: int) -> np.ndarray:
    P = np.zeros((len(offs), nl, nl))
    for a, off in enumerate(offs):
        for c in itertools.product(*(range(n) for n in q.shape)):
            d = tuple(int(v) for v in np.add(c, off))
            if q[c] > 0 and all(0 <= v < n for v, n in zip(d, q.shape, strict=True)) and q[d] > 0:
                P[a, rank[q[c]], rank[q[d]]] += 1
    return P


def _brute_glrlm(q: np.ndarray, offs: np.ndarray, rank: np.ndarray, nl: int, nr: int) -> np.ndarray:
    """Runs along every line of the box (walked from each line's first voxel), PyRadiomics's rule for
    angles with one-voxel runs only and no line holding two ROI voxels."""
    P = np.zeros((len(offs), nl, nr))
    for a, off in enumerate(offs):
        multi = False
        for c in itertools.product(*(range(n) for n in q.shape)):
            if all(0 <= v < n for v, n in zip(np.subtract(c, off), q.shape, strict=True)):
                continue  # not the first voxel of its line
            line = []
            p = np.asarray(c)
            while all(0 <= v < n for v, n in zip(p, q.shape, strict=True)):
                line.append(int(q[tuple(p)]))
                p = p + off
            multi |= sum(v > 0 for v in line) > 1
            for level, group in itertools.groupby(line):
                if level > 0:
                    P[a, rank[level], len(list(group)) - 1] += 1
        if P[a, :, 1:].sum() == 0 and not multi:
            P[a, :, 0] = 0
    return P


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_kernels_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(1, 6, 3))
    q = np.where(rng.random(shape) < 0.7, rng.integers(1, 4, shape), 0).astype(np.int64)
    if seed == 3:
        q[:] = 0
        q.ravel()[:: max(1, q.size // 3)] = 2  # sparse: one-voxel runs only
    levels = np.unique(q[q > 0])
    if levels.size == 0:
        q.ravel()[0] = 1
        levels = np.asarray([1])
    rank = np.zeros(int(levels[-1]) + 1, np.int64)
    rank[levels] = np.arange(levels.size)
    offs = calc.angles(q.shape, (1, 2)).astype(np.int64)
    got = K.kernel(K.glcm_counts)(q, offs, rank, levels.size, False)
    assert np.array_equal(got, _brute_glcm(q, offs, rank, levels.size))
    sym = K.kernel(K.glcm_counts)(q, offs, rank, levels.size, True)
    assert np.array_equal(sym, got + got.transpose(0, 2, 1))
    offs1 = calc.angles(q.shape, (1,)).astype(np.int64)
    nr = max(q.shape)
    runs = K.kernel(K.glrlm_counts)(q, offs1, rank, levels.size, nr)
    expected = _brute_glrlm(q, offs1, rank, levels.size, nr)
    longest = int(np.flatnonzero(expected.any((0, 1)))[-1]) + 1 if expected.any() else runs.shape[2]
    assert runs.shape[2] >= longest and not expected[:, :, runs.shape[2]:].any()
    assert np.array_equal(runs[:, :, :longest], expected[:, :, :longest])


def test_glcm_counts_many_sparse_levels():
    """Many grey levels, most rare (as on filtered images), ROI touching every face, distances 1
    and 3 (voxels near the faces take the bounds-checked branch): the counts against brute force."""
    rng = np.random.default_rng(7)
    shape = (5, 9, 11)
    q = np.where(rng.random(shape) < 0.8, rng.integers(1, 400, shape), 0).astype(np.int64)
    q[0, 0, 0] = q[-1, -1, -1] = 399
    levels = np.unique(q[q > 0])
    rank = np.zeros(int(levels[-1]) + 1, np.int64)
    rank[levels] = np.arange(levels.size)
    offs = calc.angles(q.shape, (1, 3)).astype(np.int64)
    got = K.kernel(K.glcm_counts)(q, offs, rank, levels.size, False)
    assert levels.size > 150 and np.array_equal(got, _brute_glcm(q, offs, rank, levels.size))


def test_glcm_counts_rank_outside_matrix_raises():
    q = np.ones((2, 3, 4), np.int64)
    offs = np.asarray([[0, 0, 1]], np.int64)
    for rank in (np.asarray([0, 2], np.int64), np.asarray([0, -1], np.int64)):  # row 2 of 2, row -1
        with pytest.raises(ValueError):
            K.kernel(K.glcm_counts)(q, offs, rank, 2, True)


def test_tridiagonal_bisection_against_lapack():
    K.kernel(K.mcc_parts)  # binds the compiled helpers
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 17, 40):
        x = rng.random((n, n))
        a = x + x.T
        d, e = np.empty(n), np.empty(max(n - 1, 1))
        K._tridiagonal(a.copy(), d, e)
        ev = np.linalg.eigvalsh(a)
        for k in range(n):
            lo, hi = K._two(d, e, k, n - 1 - k)
            assert lo == pytest.approx(ev[k], abs=1e-13 * n)
            assert hi == pytest.approx(ev[n - 1 - k], abs=1e-13 * n)


@pytest.mark.parametrize("rare", [False, True], ids=["common-levels", "rare-levels"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_mcc_compiled_equals_numpy(rare, symmetric):
    rng = np.random.default_rng(4)
    counts = rng.integers(0, 50, (13, 12, 12)).astype(float)
    if rare:  # PyRadiomics's eps matters: the exact path (Q's own eigenvalues) on both sides
        counts[:, 10:, :] = 0
        counts[:, :, 10:] = 0
        counts *= 1e3
        counts[:, 10, 11] = 1
    if symmetric:
        counts = counts + counts.transpose(0, 2, 1)
    P = counts / counts.sum((1, 2), keepdims=True)
    ref = calc._mcc(P.transpose(1, 2, 0), P.sum(2).T, P.sum(1).T)
    assert calc._mcc_compiled(P, symmetric) == pytest.approx(ref, rel=1e-12)


def test_hostile_input_raises():
    q = np.ones((2, 3, 4), np.int64)
    q[1, 2, 3] = 5
    rank = np.zeros(3, np.int64)
    offs = np.asarray([[0, 0, 1]], np.int64)
    with pytest.raises(ValueError):
        K.kernel(K.glcm_counts)(q, offs, rank, 2, True)
    with pytest.raises(ValueError):
        K.kernel(K.glrlm_counts)(q, offs, rank, 2, 4)
    q[1, 2, 3] = 1
    with pytest.raises(ValueError):  # backward offsets
        K.kernel(K.glrlm_counts)(q, -offs, rank, 2, 4)
    with pytest.raises(ValueError):  # not a unit step
        K.kernel(K.glrlm_counts)(q, 2 * offs, rank, 2, 4)
    with pytest.raises(ValueError):  # runs longer than the matrix
        K.kernel(K.glrlm_counts)(q, offs, rank, 2, 2)


def test_against_pyradiomics_adversarial():
    """Compiled and NumPy paths within 1e-6 of PyRadiomics itself on ROIs with one-voxel runs,
    thin plates and a rare level."""
    radiomics = pytest.importorskip("radiomics")
    sitk = pytest.importorskip("SimpleITK")
    from radiomics import featureextractor

    from medimg import Image
    from medimg.features.pyradiomics_compat import extract_pyradiomics

    radiomics.setVerbosity(logging.ERROR)
    rois = _rois(1)
    for name in ("fragments", "fragments-pair", "thin", "rare-level", "border"):
        image, roi = rois[name]
        img = sitk.GetImageFromArray(image)
        msk = sitk.GetImageFromArray(roi.astype(np.uint8))
        for x in (img, msk):
            x.SetSpacing(SPACING[::-1])
        params = {"setting": {"binWidth": 25}, "featureClass": {"glcm": None, "glrlm": None}}
        ex = featureextractor.RadiomicsFeatureExtractor(params)
        ref = {k: float(v) for k, v in ex.execute(img, msk).items() if not k.startswith("diagnostics")}
        for compiled in (False, True):
            got = extract_pyradiomics(Image.from_sitk(img), Image.from_sitk(msk), params, compiled=compiled)
            assert set(got) == set(ref)
            bad = {k: (got[k], v) for k, v in ref.items()
                   if not (np.isnan(v) and np.isnan(got[k])) and abs(got[k] - v) > 1e-6 * max(abs(v), 1e-12)}
            assert not bad, (name, compiled, bad)


def test_column_tables_agree():
    assert set(K.GLRLM_COLUMNS) == set(calc.FEATURE_NAMES["glrlm"])
    assert set(K.GLCM_COLUMNS) | {"MCC"} == set(calc.FEATURE_NAMES["glcm"])


def test_mcc_refine_matches_general_eigensolver():
    """Where PyRadiomics's eps matters, Q's second eigenvalue by inverse iteration from S's equals
    NumPy's general eigensolver's (and the Bauer-Fike isolation holds, so the compiled path takes it)."""
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 50, (12, 12)).astype(float) * 10
    counts[10:, :] = 0
    counts[:, 10:] = 0
    counts[10, 11] = counts[11, 3] = 1  # rare levels: p_x p_y ~ 1e-9
    counts = counts + counts.T
    P = (counts / counts.sum())[None]
    px, py = P.sum(2), P.sum(1)
    lam, bound, third = K.kernel(K.mcc_parts)(P, px, py, True)
    assert bound[0] > 1e-8 * lam[0]  # the exact path
    assert lam[0] - third[0] > 3 * bound[0] and 1 - lam[0] > 3 * bound[0]  # isolated
    q = (P[0] / (np.outer(px[0], py[0]) + np.spacing(1))) @ P[0].T
    expected = np.sort(np.linalg.eigvals(q))[-2]
    assert abs(expected.imag) < 1e-14
    rho = K.kernel(K.mcc_refine)(P[0], px[0], py[0], lam[0])
    assert rho == pytest.approx(expected.real, rel=1e-13)
    assert rho != pytest.approx(lam[0], rel=1e-13)  # the eps moved it: a different value from S's


def _rare_level_glcm(nl: int, seed: int) -> np.ndarray:
    """13 symmetric normalised GLCMs over ``nl`` levels, sparse, with two rare levels (PyRadiomics's
    eps matters: the MCC's exact path)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 50, (13, nl, nl)) * (rng.random((13, nl, nl)) < 0.05) * 10.0
    counts[:, nl - 2:, :] = 0
    counts[:, :, nl - 2:] = 0
    counts[:, nl - 2, nl - 1] = counts[:, nl - 1, 3] = 1
    counts = counts + counts.transpose(0, 2, 1)
    return counts / counts.sum((1, 2), keepdims=True)


@pytest.mark.parametrize("symmetric", [True, False])
def test_mcc_many_levels_lapack_refinement(symmetric, monkeypatch):
    """From ``_MCC_LAPACK_LEVELS`` levels the exact MCC's inverse iteration runs on LAPACK: the same
    eigenvalue as the compiled loops (1e-13) and the whole MCC as the NumPy path's (1e-12)."""
    P = _rare_level_glcm(calc._MCC_LAPACK_LEVELS + 16, 3)
    if not symmetric:
        P = P * np.linspace(1, 2, P.shape[1])[None, :, None]
        P = P / P.sum((1, 2), keepdims=True)
    px, py = P.sum(2), P.sum(1)
    lam, bound, third = K.kernel(K.mcc_parts)(P, px, py, symmetric)
    taken = []
    real = calc._mcc_refine_lapack
    monkeypatch.setattr(calc, "_mcc_refine_lapack", lambda *a: taken.append(1) or real(*a))
    for a in range(13):
        if lam[a] > 1e-3 and bound[a] > 1e-8 * lam[a]:
            rho = real(P[a], px[a], py[a], lam[a])
            want = K.kernel(K.mcc_refine)(P[a], px[a], py[a], lam[a])
            assert np.isnan(rho) == np.isnan(want)
            if np.isfinite(want):
                assert rho == pytest.approx(want, rel=1e-13)
    ref = calc._mcc(P.transpose(1, 2, 0), px.T, py.T)
    assert calc._mcc_compiled(P, symmetric) == pytest.approx(ref, rel=1e-12)
    assert taken  # the LAPACK refinement ran


def test_mcc_lapack_singular_falls_back(monkeypatch):
    """An exactly singular Q - mu I (LAPACK's info > 0) goes to the compiled loops' pivot rule."""
    import scipy.linalg.lapack as lapack

    P = _rare_level_glcm(calc._MCC_LAPACK_LEVELS + 2, 4)[0]
    px, py = P.sum(1), P.sum(0)
    lam = K.kernel(K.mcc_parts)(P[None], px[None], py[None], True)[0][0]
    want = K.kernel(K.mcc_refine)(P, px, py, lam)
    real = lapack.dgetrf
    monkeypatch.setattr(lapack, "dgetrf", lambda m: (*real(m)[:2], 1))
    got = calc._mcc_refine_lapack(P, px, py, lam)
    assert got == want or (np.isnan(got) and np.isnan(want))


def test_glcm_features_exact_independence():
    """P = p_x p_y exactly: HXY1 = HXY2 = HXY, so Imc1 and Imc2 are exactly 0 (as the NumPy path
    gives them) despite the faster logarithms."""
    px = np.asarray([0.25, 0.5, 0.25])
    P = np.outer(px, px)[None]
    table = K.kernel(K.glcm_features)(P, np.asarray([1.0, 2.0, 4.0]), 4)
    assert table[0, K.GLCM_INDEX["Imc1"]] == 0.0
    assert table[0, K.GLCM_INDEX["Imc2"]] == 0.0


def _glrlm_both_paths(q: np.ndarray, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    """The run-length counts of the discretised box ``q`` from the compiled kernel (Na, Nl, L) and
    from the NumPy path (``_glrlm_matrix``, its rows of the levels present, as (Na, Nl, L))."""
    d = calc.Discretised(q)
    box, rank = calc._level_ranks(d)
    offs = calc.angles(q.shape, (1,), force2d=settings.get("force2D", False),
                       force2d_dim=settings.get("force2Ddimension", 0)).astype(np.int64)
    got = K.kernel(K.glrlm_counts)(box, offs, rank, d.levels.size, int(max(q.shape)))
    ref, _ = calc._glrlm_matrix(d, settings)
    ref = ref[d.levels - 1].transpose(2, 0, 1)  # (Na, Nl, Nr)
    return got, ref


def _random_box(rng: np.random.Generator) -> np.ndarray:
    """A discretised box (levels >= 1 in the ROI, 0 outside): random shapes with 1-voxel
    dimensions, densities from isolated voxels to full boxes (the ROI on every face), one to many
    levels, runs from one voxel to the whole line."""
    shape = tuple(int(v) for v in rng.choice([1, 1, 2, 3, 5, 8, 13], 3))
    nlev = int(rng.choice([1, 2, 3, 6, 40, 300]))
    roi = rng.random(shape) < rng.choice([0.1, 0.5, 0.9, 1.0])
    if rng.random() < 0.4:  # smooth: long runs along some direction
        idx = np.indices(shape).sum(0) if rng.random() < 0.5 else np.indices(shape)[int(rng.integers(0, 3))]
        levels = 1 + (idx // int(rng.integers(1, 6))) % nlev
    else:
        levels = rng.integers(1, nlev + 1, shape)
    q = np.where(roi, levels, 0).astype(np.int64)
    if not q.any():
        q.ravel()[int(rng.integers(0, q.size))] = 1
    return q


@pytest.mark.parametrize("chunk", range(4))
def test_glrlm_counts_equal_numpy_path_exactly(chunk):
    """The compiled run-length counts equal the NumPy path's, cell for cell (integers), on random
    boxes under 3-D and force2D angles (every force2Ddimension)."""
    checked = 0
    for seed in range(100 * chunk, 100 * chunk + 100):
        rng = np.random.default_rng(seed)
        q = _random_box(rng)
        for settings in ({}, {"force2D": True, "force2Ddimension": int(rng.integers(0, 3))}):
            if not calc.angles(q.shape, (1,), force2d=settings.get("force2D", False),
                               force2d_dim=settings.get("force2Ddimension", 0)).size:
                continue  # no angle (a single voxel box)
            got, ref = _glrlm_both_paths(q, settings)
            n = got.shape[2]
            assert n >= 1 and not ref[:, :, n:].any(), (seed, settings)
            assert np.array_equal(got, ref[:, :, :n]), (seed, q.shape, settings)
            checked += 1
    assert checked > 150


def test_glrlm_counts_adversarial_boxes_exactly():
    """Named cases: the ROI filling the box (runs the whole line), one level, a 1-voxel-thick plate
    in each orientation, a line along each axis, isolated voxels (PyRadiomics's one-voxel rule),
    a checkerboard (every run one voxel, lines holding two ROI voxels), many levels, 1-voxel
    dimensions: compiled = NumPy path = brute force."""
    rng = np.random.default_rng(11)
    cases = {"full-one-level": np.ones((4, 6, 5), np.int64),
             "full-many": rng.integers(1, 500, (5, 7, 9)),
             "checker": (np.indices((4, 5, 6)).sum(0) % 2 + 1),
             "isolated": np.zeros((5, 6, 7), np.int64),
             "row": np.full((1, 1, 9), 3, np.int64),
             "column": np.full((7, 1, 1), 2, np.int64)}
    cases["isolated"][::2, ::3, ::2] = 4
    for axis in range(3):
        plate = np.zeros((4, 5, 6), np.int64)
        plate[(slice(None),) * axis + (2,)] = rng.integers(1, 3, plate[(slice(None),) * axis + (2,)].shape)
        cases[f"plate{axis}"] = plate
        line = np.zeros((6, 6, 6), np.int64)
        sl = [3, 3, 3]
        sl[axis] = slice(None)
        line[tuple(sl)] = 5
        cases[f"line{axis}"] = line
    for name, q in cases.items():
        q = np.asarray(q, np.int64)
        got, ref = _glrlm_both_paths(q, {})
        n = got.shape[2]
        assert not ref[:, :, n:].any() and np.array_equal(got, ref[:, :, :n]), name
        d = calc.Discretised(q)
        _, rank = calc._level_ranks(d)
        offs = calc.angles(q.shape, (1,)).astype(np.int64)
        brute = _brute_glrlm(q, offs, rank, d.levels.size, int(max(q.shape)))
        assert np.array_equal(got, brute[:, :, :n]) and not brute[:, :, n:].any(), name
    full = _glrlm_both_paths(cases["full-one-level"], {})[0]
    assert full.shape[2] == 6 and full[12, 0, 4] == 24  # along x: 4 x 6 runs of 5 voxels


def test_glrlm_counts_hostile_levels_and_lengths():
    """Levels beyond ``rank`` or mapped outside the matrix, and runs longer than ``nr``, raise
    (checked before anything is written out of bounds)."""
    q = np.ones((3, 4, 5), np.int64)
    offs = calc.angles(q.shape, (1,)).astype(np.int64)
    run = K.kernel(K.glrlm_counts)
    assert run(q, offs, np.asarray([0, 0]), 1, 5).shape == (13, 1, 5)
    for nr in (1, 2, 4):  # the longest run is 5 (along x)
        with pytest.raises(ValueError):
            run(q, offs, np.asarray([0, 0]), 1, nr)
    q[2, 3, 4] = 2 ** 40  # a level far beyond the ranks
    with pytest.raises(ValueError):
        run(q, offs, np.asarray([0, 0]), 1, 5)
    q[2, 3, 4] = 1
    with pytest.raises(ValueError):  # level 1's row outside the matrix
        run(q, offs, np.asarray([0, 3]), 1, 5)
    with pytest.raises(ValueError):
        run(q, offs, np.asarray([0, -1]), 1, 5)
