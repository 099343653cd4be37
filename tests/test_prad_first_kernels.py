"""The compiled (numba) discretisation and first-order kernels of the PyRadiomics mode
(``features/_prad_first_kernels.py``) against NumPy: every sum the very float ``numpy.sum`` gives
(its pairwise order), the order statistics those of a full sort, and the features and grey levels of
the compiled path those of the NumPy path (which ``tests/test_pyradiomics_compat.py`` compares with
PyRadiomics itself) on random, constant, one-voxel, negative, huge-range, float32, int16 and uint8
inputs under binWidth, binCount and voxelArrayShift settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("numba")

from medimg.core.jit import use_compiled  # noqa: E402
from medimg.features import _prad_first_kernels as kernels  # noqa: E402
from medimg.features import _pyradiomics_calc as calc  # noqa: E402

NAMES = calc.FEATURE_NAMES["firstorder"] + calc.DEPRECATED["firstorder"]
SIZES = [*range(0, 140), 255, 256, 257, 1000, 1023, 1024, 4137, 8191, 8192, 8193, 20011, 125256]


def _compiled(name: str):
    with use_compiled(True):
        return kernels._kernel(name)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_pairwise_sums_are_numpys():
    """Each of the kernels' sums equals numpy.sum of the same terms bit for bit (sizes around the
    8-value unrolling, the 128-value blocks and NumPy's 8192-value buffer)."""
    pairwise = _compiled("_pairwise")
    r = np.random.default_rng(0)
    for n in SIZES:
        x = r.normal(0, 1, n) * 10.0 ** r.uniform(-3, 3, n) + r.uniform(-5, 5)
        c = float(r.normal(0, 3))
        d = x - c
        d2 = d * d
        assert 0.0 + pairwise(x, 0, 0.0)[0] == np.sum(x), n
        assert 0.0 + pairwise(x, 1, c)[0] == np.sum(np.abs(x - c)), n
        assert 0.0 + pairwise(x, 2, c)[0] == np.sum((x + c) ** 2), n
        both = pairwise(x, 4, c)
        assert (0.0 + both[0], 0.0 + both[1]) == (np.sum(x), np.sum((x + c) ** 2)), n
        got = pairwise(x, 3, c)
        want = (np.sum(d2), np.sum(np.abs(d)), np.sum(d2 * d), np.sum(d2 * d2))
        assert all(0.0 + g == w for g, w in zip(got, want, strict=True)), n


def _order_cases():
    r = np.random.default_rng(1)
    yield "normal", r.normal(0, 1, 125256)
    yield "ties", r.integers(-3, 4, 5000).astype(float)
    yield "heavy-tail", r.standard_cauchy(40000)  # most values in a few bins: selected twice
    yield "spike", np.concatenate([np.full(30000, 7.0), r.normal(7, 1e-9, 3000), [-1e6, 1e6]])
    yield "huge-range", np.concatenate([r.normal(0, 1, 3000), [-1.7e308, 1.7e308]])  # max - min overflows
    yield "tiny-range", 1.0 + r.integers(0, 3, 2000) * np.spacing(1.0)
    yield "subnormal", r.integers(0, 1000, 3000) * 5e-324
    yield "constant", np.full(777, -3.25)
    for n in (1, 2, 3, 8, 63, 64, 65, 300):
        yield f"n={n}", r.normal(0, 1, n)


@pytest.mark.parametrize("case", list(_order_cases()), ids=lambda c: c[0])
def test_order_statistics_are_a_sorts(case):
    """The histogram selection picks the very values a full sort has at the wanted ranks."""
    _, x = case
    select = _compiled("_select")
    n = x.size
    r = np.random.default_rng(n)
    ranks = np.unique(np.concatenate([[0, n - 1, n // 2], r.integers(0, n, 9)])).astype(np.int64)
    out = np.empty(ranks.size)
    select(x, ranks, out, x.min(), x.max())
    assert np.array_equal(out, np.sort(x)[ranks])
    if n > 1 and x.min() < x.max():  # a wrong extent: values clamped to the end bins, no access out of bounds
        third = x.max() / 3 - x.min() / 3
        select(x, ranks, out, x.min() + third, x.max() - third)
        assert np.array_equal(out, np.sort(x)[ranks])


@pytest.mark.parametrize("case", list(_order_cases()), ids=lambda c: c[0])
def test_moments_equal_numpy(case):
    """moments: the order statistics numpy.percentile / median give, and the NumPy path's sums."""
    _, x = case
    with use_compiled(True):
        got = kernels.moments(x, 0.0)
        assert np.array_equal(kernels.moments(x, 0.0, extent=(x.min(), x.max())), got, equal_nan=True)
    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = x.mean()
        dev = x - mean
        dev2 = dev * dev
        p10, p25, p75, p90 = np.percentile(x, [10, 25, 75, 90])
        sub = x[(x >= p10) & (x <= p90)]
        robust = np.mean(np.abs(sub - sub.mean())) if sub.size else np.nan
        want = [mean, np.sum(x ** 2), np.sum(dev2), np.sum(np.abs(dev)), np.sum(dev2 * dev), np.sum(dev2 * dev2),
                x.min(), x.max(), np.median(x), sub.size, robust, p10, p25, p75, p90]
    assert all(_same(float(g), float(w)) for g, w in zip(got, want, strict=True)), (got, want)


def test_moments_empty_and_bad_quantiles():
    with use_compiled(True):
        assert np.isnan(kernels.moments(np.empty(0), 0.0)).all()
        x = np.random.default_rng(3).normal(0, 1, 5000)
        x[::7] = np.nan  # not what it is for (finite values), but no access out of bounds
        kernels.moments(x, 0.0)
        kernels.moments(x, 0.0, extent=(np.nan, np.inf))
        with pytest.raises(ValueError):
            kernels.moments(np.ones(5), 0.0, np.asarray([0.1, 2.0, 0.5, 0.9]))


def test_gather_and_levels_equal_numpy():
    """gather: image[roi] as float64 with its range and finiteness; levels: numpy.digitize's bins
    in the box (0 outside) and their counts, for width and count edges, edge values included."""
    for seed in range(40):
        r = np.random.default_rng(seed)
        shape = tuple(int(v) for v in r.integers(1, 12, 3))
        x = r.normal(0, 10 ** r.uniform(0, 3), shape)
        image = (x.round().astype(np.int16), x.astype(np.float32), x)[seed % 3]
        roi = r.random(shape) < r.uniform(0.05, 1.0)
        roi.flat[int(r.integers(0, roi.size))] = True
        with use_compiled(True):
            values, lo, hi, finite = kernels.gather(image, roi)
        want = image[roi].astype(float)
        assert np.array_equal(values, want) and finite
        assert lo == want.min() and hi == want.max()
        edges = calc.bin_edges(image[roi], bin_width=float(r.choice([25, 0.5, 7.3])),
                               bin_count=None if seed % 4 else int(r.integers(1, 40)))
        if seed % 5 == 0:  # values on the edges
            values = edges[r.integers(0, edges.size, values.size)]
        if seed % 7 == 0:  # and beyond them, infinite, NaN
            extra = np.asarray([np.inf, -np.inf, np.nan, edges[0] - 1e9, edges[-1] + 1e9, edges[-1]])
            values = values.copy()
            values[r.integers(0, values.size, 6)] = extra
        with use_compiled(True):
            q, counts = kernels.levels(roi, values, edges)
        q0 = np.zeros(shape, dtype=np.intp)
        q0[roi] = np.digitize(values, edges)
        assert np.array_equal(q, q0) and q.dtype == q0.dtype
        assert np.array_equal(counts, np.bincount(q0[roi], minlength=edges.size + 1))


def test_hostile_inputs_rejected():
    roi = np.ones((2, 3, 4), bool)
    with use_compiled(True):
        with pytest.raises(ValueError):
            kernels.gather(np.zeros((2, 3, 5)), roi)
        with pytest.raises(ValueError):
            kernels.levels(roi, np.zeros(23), np.arange(3.0))
    with use_compiled(True):
        q, counts = kernels.levels(roi, np.zeros(24), np.asarray([-1.0, 1.0]))
    assert (q == 1).all() and counts.tolist() == [0, 24, 0]


def _images():
    r = np.random.default_rng(11)
    shape = (9, 23, 21)
    z, y, x = np.ogrid[:9, :23, :21]
    blob = ((z - 4) * 2.0) ** 2 + (y - 11) ** 2 + (x - 10) ** 2 <= 70
    yield "int16-ct", r.normal(40, 300, shape).round().astype(np.int16), blob
    yield "float32-log", r.standard_cauchy(shape).astype(np.float32) * 30, blob
    yield "float64-negative", r.normal(-900, 50, shape), blob
    yield "uint8", r.integers(0, 256, shape).astype(np.uint8), blob
    yield "huge-range", r.normal(0, 1, shape) * 1e150, blob
    yield "constant", np.full(shape, 17.5), blob
    one = np.zeros(shape, bool)
    one[0, 22, 20] = True
    yield "one-voxel", r.normal(0, 100, shape), one
    two = np.zeros(shape, bool)
    two[3, 4, 5:7] = True
    yield "two-voxels", r.normal(0, 100, shape), two
    scattered = r.random(shape) < 0.3
    yield "scattered", r.normal(1000, 1, shape).astype(np.float32), scattered
    nan = r.normal(0, 100, shape)
    nan[blob] = np.where(r.random(int(blob.sum())) < 0.01, np.nan, nan[blob])
    yield "nan", nan, blob
    inf = r.normal(0, 100, shape)
    inf[4, 11, 10] = np.inf
    yield "inf", inf, blob


SETTINGS = [{"binWidth": 25}, {"binWidth": 0.7}, {"binCount": 16}, {"binCount": 1},
            {"binWidth": 5, "voxelArrayShift": 300}, {"binCount": 32, "voxelArrayShift": 2000}]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(f"{k}{v}" for k, v in s.items()))
@pytest.mark.parametrize("case", list(_images()), ids=lambda c: c[0])
def test_compiled_path_equals_numpy_path(case, setting):
    """discretise / binned and firstorder, compiled vs NumPy path: the same grey levels, and the
    same 19 features to 1e-12 relative (they are equal bit for bit; NaN where NumPy gives NaN)."""
    _, image, roi = case
    spacing = (2.0, 0.7, 0.8)
    try:
        with use_compiled(False), np.errstate(all="ignore"):
            calc.discretise(image, roi, setting)
    except ValueError:  # edges NumPy cannot make (NaN, infinite or huge ranges): the compiled path fails alike
        with use_compiled(True), pytest.raises(ValueError):
            calc.binned(image, roi, setting)
        return
    with np.errstate(all="ignore"), _nowarn():
        with use_compiled(False):
            q0 = calc.discretise(image, roi, setting)
            f0 = calc.firstorder(image, roi, spacing, setting, NAMES, q0)
        with use_compiled(True):
            b = calc.binned(image, roi, setting)
            f1 = calc.firstorder(image, roi, spacing, setting, NAMES, b)
            f2 = calc.firstorder(image, roi, spacing, setting, NAMES, calc.discretise(image, roi, setting))
            f3 = calc.firstorder(image, roi, spacing, setting, NAMES)
    assert np.array_equal(b.q, q0) and b.q.dtype == q0.dtype
    finite = bool(np.isfinite(image[roi]).all())
    assert (b.values is not None) == finite
    if finite:
        assert np.array_equal(b.counts, np.bincount(q0[roi], minlength=b.counts.size))
    for got in (f1, f2, f3):
        assert list(got) == list(f0)
        for k, v in f0.items():
            assert _same(got[k], v) or abs(got[k] - v) <= 1e-12 * abs(v), (k, got[k], v)


class _nowarn:
    """Warnings as NumPy gives them on both paths (empty robust subsets); none raised as errors."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


@pytest.mark.parametrize("seed", range(12))
def test_random_rois_many_seeds(seed):
    """Random boxes, ROIs, dtypes and settings: compiled and NumPy paths give the same features."""
    r = np.random.default_rng(100 + seed)
    shape = tuple(int(v) for v in r.integers(1, 30, 3))
    x = r.normal(r.uniform(-2000, 2000), 10 ** r.uniform(-2, 4), shape)
    image = (x.round().clip(-32768, 32767).astype(np.int16), x.astype(np.float32), x)[seed % 3]
    roi = r.random(shape) < r.uniform(0.01, 1.0)
    roi.flat[int(r.integers(0, roi.size))] = True
    setting = {"binWidth": float(r.choice([25, 1, 0.3]))} if seed % 2 else {"binCount": int(r.integers(1, 64))}
    setting["voxelArrayShift"] = int(r.choice([0, 0, 1000]))
    with _nowarn():
        with use_compiled(False):
            f0 = calc.firstorder(image, roi, (1.0, 1.0, 1.0), setting, NAMES)
        with use_compiled(True):
            f1 = calc.firstorder(image, roi, (1.0, 1.0, 1.0), setting, NAMES, calc.binned(image, roi, setting))
    for k, v in f0.items():
        assert _same(f1[k], v) or abs(f1[k] - v) <= 1e-12 * abs(v), (k, f1[k], v)
    with use_compiled(True):
        b = calc.binned(image, roi, setting)
    # the grey levels present, from the binning's counts, are the box's own
    assert np.array_equal(calc.Discretised(b.q, b.counts).levels, calc.Discretised(b.q).levels)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_take_the_numpy_path(bad):
    """With the grey levels given, values not all finite: the compiled call falls back to NumPy's
    arithmetic (NaN / infinite features as NumPy gives them)."""
    r = np.random.default_rng(2)
    image = r.normal(0, 100, (5, 6, 7))
    roi = r.random(image.shape) < 0.5
    setting = {"binWidth": 25}
    with use_compiled(False):
        q = calc.discretise(image, roi, setting)
    image[roi.nonzero()[0][3], roi.nonzero()[1][3], roi.nonzero()[2][3]] = bad
    with _nowarn(), np.errstate(all="ignore"):
        with use_compiled(False):
            f0 = calc.firstorder(image, roi, (1.0, 1.0, 1.0), setting, NAMES, q)
        with use_compiled(True):
            f1 = calc.firstorder(image, roi, (1.0, 1.0, 1.0), setting, NAMES, q)
    assert all(_same(f1[k], v) for k, v in f0.items())
    assert any(not math.isfinite(v) for v in f0.values())


_RELOAD = """
import numpy as np
from medimg.core.jit import use_compiled
from medimg.features import _pyradiomics_calc as calc
x = np.random.default_rng(9).standard_cauchy((9, 20, 20)).astype(np.float32)
roi = np.random.default_rng(10).random(x.shape) < 0.6
with use_compiled(True):
    b = calc.binned(x, roi, {"binWidth": 5})
    f = calc.firstorder(x, roi, (1.0, 1.0, 1.0), {"binWidth": 5}, calc.FEATURE_NAMES["firstorder"], b)
print(" ".join(float(v).hex() for v in f.values()), int(b.q.sum()))
"""


def test_kernels_reload_from_the_cache_in_a_new_process():
    """A fresh process loads the kernels from numba's cache (written by this one) and gives the
    same values (numba reloads cached recursive functions unsafely, a crash: the kernels use loops)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    runs = [subprocess.run([sys.executable, "-c", _RELOAD], capture_output=True, text=True, env=env, timeout=600)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), [r.stderr[-2000:] for r in runs]
    x = np.random.default_rng(9).standard_cauchy((9, 20, 20)).astype(np.float32)
    roi = np.random.default_rng(10).random(x.shape) < 0.6
    with use_compiled(False):
        q = calc.discretise(x, roi, {"binWidth": 5})
        f = calc.firstorder(x, roi, (1.0, 1.0, 1.0), {"binWidth": 5}, calc.FEATURE_NAMES["firstorder"], q)
    want = " ".join(float(v).hex() for v in f.values()) + f" {int(q.sum())}"
    assert [r.stdout.strip() for r in runs] == [want, want]
