"""The compiled filters of the PyRadiomics mode (medimg.features._prad_filter_kernels) against the
libraries PyRadiomics takes them from: SimpleITK's recursive Gaussian (bit for bit) and PyWavelets's
stationary wavelet transform; and the compiled vs the NumPy/SimpleITK path of extract_pyradiomics."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from medimg import Image  # noqa: E402
from medimg.features import _prad_filter_kernels as K  # noqa: E402
from medimg.features import pyradiomics_compat as pc  # noqa: E402
from medimg.io import read  # noqa: E402

DATA = Path(__file__).parent / "data" / "mri-brain1"
NUMBA = find_spec("numba") is not None
needs_numba = pytest.mark.skipif(not NUMBA, reason="the compiled kernels need numba")


def _textured(shape: tuple[int, ...], seed: int, dtype: type = np.int16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = rng.normal(0, 1, shape)
    for axis in range(len(shape)):
        arr = arr + np.roll(arr, 1, axis) + np.roll(arr, -1, axis)
    arr = arr * 60 + 400
    return arr.round().astype(dtype) if np.dtype(dtype).kind in "iu" else arr.astype(dtype)


@needs_numba
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape", [(4, 5, 6), (9, 31, 40)])
def test_recursive_gaussian_pass_is_simpleitk_to_the_bit(dtype, shape):
    """Every axis, order 0 and 2, small and large sigma (0.08 to 8 voxels), lines as short as ITK
    allows (4 samples): the float32 response equals SimpleITK's RecursiveGaussianImageFilter's."""
    arr = _textured(shape, 3, dtype) if dtype is not np.uint8 else (_textured(shape, 3) % 256).astype(np.uint8)
    spacing = (0.78, 1.3, 5.0)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    gauss = sitk.RecursiveGaussianImageFilter()
    gauss.SetNormalizeAcrossScale(True)
    for sigma in (0.4, 1.0, 6.0):
        gauss.SetSigma(sigma)
        for order in (0, 2):
            gauss.SetOrder(order)
            for d in range(3):
                gauss.SetDirection(d)
                ref = sitk.GetArrayFromImage(gauss.Execute(img)).astype(np.float32)
                axis = 2 - d
                coef = K.recursive_gaussian_coefficients(sigma, spacing[d], order)
                got = K.recursive_gaussian_pass(arr, axis, (0, 0, 0), arr.shape, (0, arr.shape[axis]), coef)
                assert got.dtype == np.float32
                np.testing.assert_array_equal(got, ref, err_msg=f"sigma {sigma} order {order} axis {axis}")


@needs_numba
def test_recursive_gaussian_pass_on_a_region_keeps_the_asked_samples():
    """On a region of a larger array, keeping a sub-range: SimpleITK's response of the cropped
    region, cut to that range."""
    arr = _textured((12, 40, 33), 5, np.float32)
    lo, hi = (2, 5, 3), (11, 37, 30)
    region = arr[2:11, 5:37, 3:30]
    img = sitk.GetImageFromArray(region)
    img.SetSpacing((0.9, 0.8, 3.0))
    gauss = sitk.RecursiveGaussianImageFilter()
    gauss.SetSigma(2.0)
    gauss.SetNormalizeAcrossScale(True)
    for axis, keep in ((0, (3, 7)), (1, (0, 5)), (2, (20, 27))):
        gauss.SetDirection(2 - axis)
        ref = sitk.GetArrayFromImage(gauss.Execute(img))
        sl = [slice(None)] * 3
        sl[axis] = slice(*keep)
        coef = K.recursive_gaussian_coefficients(2.0, (0.9, 0.8, 3.0)[2 - axis], 0)
        got = K.recursive_gaussian_pass(arr, axis, lo, hi, keep, coef)
        np.testing.assert_array_equal(got, ref[tuple(sl)])


def test_recursive_gaussian_pass_refuses_bad_regions():
    arr = np.zeros((5, 6, 7), np.float32)
    coef = K.recursive_gaussian_coefficients(1.0, 1.0, 0)
    with pytest.raises(ValueError):
        K.recursive_gaussian_pass(arr, 0, (0, 0, 0), (6, 6, 7), (0, 5), coef)  # outside the array
    with pytest.raises(ValueError):
        K.recursive_gaussian_pass(arr, 0, (2, 0, 0), (5, 6, 7), (0, 3), coef)  # 3 samples < 4
    with pytest.raises(ValueError):
        K.recursive_gaussian_pass(arr, 1, (0, 0, 0), (5, 6, 7), (2, 7), coef)  # kept range too long
    with pytest.raises(ValueError):
        K.recursive_gaussian_coefficients(1.0, 1.0, 1)


def _sitk_pass(region: np.ndarray, spacing: tuple[float, float, float], sigma: float, order: int, axis: int) -> np.ndarray:
    """SimpleITK's RecursiveGaussianImageFilter (normalised across scale) of ``region`` along NumPy ``axis``."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(region))
    img.SetSpacing(spacing)
    gauss = sitk.RecursiveGaussianImageFilter()
    gauss.SetNormalizeAcrossScale(True)
    gauss.SetSigma(sigma)
    gauss.SetOrder(order)
    gauss.SetDirection(2 - axis)
    return sitk.GetArrayFromImage(gauss.Execute(img)).astype(np.float32)


@needs_numba
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_recursive_gaussian_pass_odd_shapes_faces_and_kept_ends(dtype):
    """Lines of 4 and 5 samples, 1-wide volumes, rows of lines narrower than, equal to and past a
    tile (16 / 64..512 lines; 31..33, 65, 270 lines, planes of 1200 lines along axis 0: partial last
    tiles), regions touching the array's faces
    or inside it, kept ranges at the very ends (the first / last sample alone, the last 4): each
    equals SimpleITK's response of the region, cut to the range, bit for bit."""
    rng = np.random.default_rng(21)
    spacing = (0.7, 1.1, 2.5)
    shapes = [(4, 5, 6), (5, 4, 33), (1, 5, 40), (6, 1, 65), (7, 32, 1), (4, 31, 33), (9, 65, 5), (5, 17, 64),
              (5, 3, 270), (6, 40, 30)]
    for shape in shapes:
        arr = _textured(shape, int(rng.integers(1000)), dtype)
        for axis in range(3):
            if shape[axis] < 4:
                continue
            for face in ("whole", "low", "high", "inner"):
                lo = [0, 0, 0]
                hi = list(shape)
                for ax in range(3):  # shrink the other axes (and this one, keeping 4+ samples)
                    n = shape[ax]
                    cut = int(rng.integers(0, max(1, (n - 4) // 2 + 1))) if n > 4 else 0
                    if face in ("low", "inner") and n - cut >= (4 if ax == axis else 1):
                        hi[ax] = n - cut
                    if face in ("high", "inner") and hi[ax] - lo[ax] - cut >= (4 if ax == axis else 1):
                        lo[ax] = cut
                region = arr[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
                n = region.shape[axis]
                for sigma, order in ((0.6, 2), (3.0, 0)):
                    ref = _sitk_pass(region, spacing, sigma, order, axis)
                    coef = K.recursive_gaussian_coefficients(sigma, spacing[2 - axis], order)
                    for keep in ((0, n), (0, 1), (n - 1, n), (max(0, n - 4), n), (1, n - 1)):
                        if keep[0] >= keep[1]:
                            continue
                        got = K.recursive_gaussian_pass(arr, axis, lo, hi, keep, coef)
                        sl = [slice(None)] * 3
                        sl[axis] = slice(*keep)
                        np.testing.assert_array_equal(got, ref[tuple(sl)], err_msg=f"{shape} axis {axis} {face} "
                                                      f"{lo}..{hi} keep {keep} sigma {sigma}")


@needs_numba
def test_scale_add_is_numpy_to_the_bit():
    """log_box's sum of terms: ``float32(float64(term) * s)``, then ``float32(float64(total) +
    float64(term) * s)``, the NumPy expressions to the bit (values over many magnitudes)."""
    rng = np.random.default_rng(5)
    for shape in [(6, 7, 70), (1, 1, 1), (3, 5, 9)]:
        term = (rng.normal(0, 1, shape) * 10.0 ** rng.integers(-6, 6, shape)).astype(np.float32)
        scale = 1.0 / (0.93 * 0.93)
        total = K.scale_add(np.empty(shape, np.float32), term, scale, True)
        np.testing.assert_array_equal(total, (term.astype(np.float64) * scale).astype(np.float32))
        base = rng.normal(0, 50, shape).astype(np.float32)
        want = (base.astype(np.float64) + term.astype(np.float64) * scale).astype(np.float32)
        np.testing.assert_array_equal(K.scale_add(base, term, scale, False), want)
    with pytest.raises(ValueError):
        K.scale_add(np.empty((2, 3, 4), np.float32), np.empty((2, 3, 5), np.float32), 1.0, True)


def _vol(arr: np.ndarray, spacing: tuple[float, float, float]) -> pc._Vol:
    return pc._Vol(arr, spacing, (0.0, 0.0, 0.0), np.eye(3))


@needs_numba
@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_log_box_compiled_equals_simpleitk_path_on_brain1(sigma):
    """The LoG of brain1's ROI box (tests/data), compiled and through SimpleITK: the same float32s."""
    image = read(DATA / "brain1_roi_image.nrrd")
    roi = np.asarray(read(DATA / "brain1_roi_label.nrrd").array) == 1
    vol = pc._Vol.from_image(image)
    lo, hi = pc._bbox(roi)
    margin = np.ceil(pc.LOG_REACH_SIGMAS * sigma / vol.spacing[::-1]).astype(int) + 2
    clo, chi = pc._crop_bounds(lo, hi, margin, vol.array.shape)
    with pc.use_compiled(False):
        ref = pc._log_box(vol, sigma, lo, hi, clo, chi)
    with pc.use_compiled(True):
        got = pc._log_box(vol, sigma, lo, hi, clo, chi)
    np.testing.assert_array_equal(got, ref)


@needs_numba
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_box_compiled_equals_simpleitk_path_random_boxes(seed):
    """Random images (int16, float64), spacings and boxes, some touching the borders, regions
    cropped or whole: compiled == SimpleITK to the bit."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(5, 30, 3))
    arr = _textured(shape, seed, np.int16 if seed % 2 == 0 else np.float64)
    vol = _vol(arr, tuple(float(v) for v in rng.uniform(0.5, 3.0, 3)))
    for _ in range(3):
        lo = np.array([int(rng.integers(0, n)) for n in shape])
        hi = np.array([int(rng.integers(a, n)) for a, n in zip(lo, shape, strict=True)])
        sigma = float(rng.uniform(0.5, 4.0))
        margin = np.array([int(rng.integers(2, 9)) for _ in range(3)])
        clo, chi = pc._crop_bounds(lo, hi, margin, shape)
        if np.any(chi - clo + 1 < 4):
            continue
        with pc.use_compiled(False):
            ref = pc._log_box(vol, sigma, lo, hi, clo, chi)
        with pc.use_compiled(True):
            got = pc._log_box(vol, sigma, lo, hi, clo, chi)
        np.testing.assert_array_equal(got, ref)


@needs_numba
@pytest.mark.parametrize("seed", [3, 4])
def test_log_box_compiled_equals_simpleitk_path_wide_boxes(seed):
    """Rows of lines wider than a tile (30..80 along x and y, boxes ending in partial tiles),
    int16 / float32 images: compiled == SimpleITK to the bit."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(5, 12)), int(rng.integers(30, 80)), int(rng.integers(30, 80)))
    arr = _textured(shape, seed, np.int16 if seed % 2 == 0 else np.float32)
    vol = _vol(arr, tuple(float(v) for v in rng.uniform(0.5, 3.0, 3)))
    for _ in range(2):
        lo = np.array([int(rng.integers(0, n // 3)) for n in shape])
        hi = np.array([int(rng.integers(n // 2, n)) for n in shape])
        sigma = float(rng.uniform(0.8, 3.0))
        clo, chi = pc._crop_bounds(lo, hi, np.array([3, 9, 9]), shape)
        with pc.use_compiled(False):
            ref = pc._log_box(vol, sigma, lo, hi, clo, chi)
        with pc.use_compiled(True):
            got = pc._log_box(vol, sigma, lo, hi, clo, chi)
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("wavelet", ["coif1", "haar", "db3", "bior1.3"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_swt1_box_is_pywavelets_swtn_to_the_bit(wavelet, dtype):
    """Every sub-band of PyRadiomics's level-1 transform (swtn of the image padded to even sizes by
    wrapping) inside random boxes (some at the borders, odd and even sizes, axes shorter than the
    filter), 3-D and each force2D pair of axes: the same numbers and precision as PyWavelets."""
    pywt = pytest.importorskip("pywt")
    rng = np.random.default_rng(11)
    w = pywt.Wavelet(wavelet)
    lo_f, hi_f = K.swt_filters(wavelet, np.float32 if dtype is np.float32 else np.float64)
    for shape in [(4, 5, 7), (9, 16, 13), (3, 24, 21), (1, 9, 8), (2, 3, 1)]:
        arr = _textured(shape, int(rng.integers(100)), dtype)
        data = np.pad(arr, [(0, n % 2) for n in shape], "wrap")
        for axes in ((2, 1, 0), (2, 1), (2, 0), (1, 0)):
            dec = pywt.swtn(data, w, level=1, start_level=0, axes=axes)[0]
            for _ in range(2):
                lo = np.array([int(rng.integers(0, n)) for n in shape])
                hi = np.array([int(rng.integers(a, n)) for a, n in zip(lo, shape, strict=True)])
                sl = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
                for compiled in (True, False) if NUMBA else (False,):
                    keys, bands = K.swt1_box(arr, lo_f, hi_f, axes, lo, hi, compiled=compiled)
                    assert keys == list(dec)
                    for key, band in zip(keys, bands, strict=True):
                        assert band.dtype == dec[key].dtype
                        np.testing.assert_array_equal(band, dec[key][sl], err_msg=f"{shape} {axes} {key} {compiled}")


def _swt3(arr: np.ndarray, wavelet: str, axes: tuple[int, ...], start: int, level: int):
    """PyRadiomics's ``_swt3`` (imageoperations): swtn level 1 repeated on the approximation."""
    import pywt

    data = np.pad(arr, [(0, n % 2) for n in arr.shape], "wrap")
    approx = "a" * len(axes)
    for _ in range(start):
        data = pywt.swtn(data, wavelet, level=1, start_level=0, axes=axes)[0][approx].copy()
    levels = []
    for _ in range(start, start + level):
        dec = pywt.swtn(data, wavelet, level=1, start_level=0, axes=axes)[0]
        data = dec[approx].copy()
        levels.append(dec)
    return levels, data


@pytest.mark.parametrize("start_level", [(1, 1), (0, 2), (1, 2), (0, 0), (2, 0)])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_swt_box_repeated_levels_are_pyradiomics_swt3(start_level, dtype):
    """start_level / level > 1: every level's sub-bands and the last approximation inside random
    boxes, compiled and in NumPy, equal PyRadiomics's _swt3 on the whole image (the padded sample
    of an odd axis is a sample of its own after the first repetition)."""
    pytest.importorskip("pywt")
    start, level = start_level
    rng = np.random.default_rng(start * 10 + level)
    for wavelet in ("coif1", "db2"):
        lo_f, hi_f = K.swt_filters(wavelet, np.float32 if dtype is np.float32 else np.float64)
        for shape in [(5, 9, 16), (1, 13, 10)]:
            arr = _textured(shape, int(rng.integers(100)), dtype)
            for axes in ((2, 1, 0), (2, 1)):
                levels, approx = _swt3(arr, wavelet, axes, start, level)
                lo = np.array([int(rng.integers(0, n)) for n in shape])
                hi = np.array([int(rng.integers(a, n)) for a, n in zip(lo, shape, strict=True)])
                sl = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
                for compiled in (True, False) if NUMBA else (False,):
                    keys, got, got_approx = K.swt_box(arr, lo_f, hi_f, axes, lo, hi, start, level, compiled=compiled)
                    assert len(got) == level
                    assert got_approx.dtype == approx.dtype
                    np.testing.assert_array_equal(got_approx, approx[sl])
                    for bands, dec in zip(got, levels, strict=True):
                        assert keys == list(dec)
                        for key, band in zip(keys, bands, strict=True):
                            np.testing.assert_array_equal(band, dec[key][sl], err_msg=f"{wavelet} {shape} {key}")


def test_swt1_box_refuses_bad_input():
    arr = np.zeros((4, 5, 6))
    with pytest.raises(ValueError):
        K.swt1_box(arr, [0.5, 0.5], [0.5], (2, 1, 0), np.zeros(3, int), np.ones(3, int))
    with pytest.raises(ValueError):
        K.swt1_box(arr, [0.5, 0.5], [0.5, -0.5], (2, 1, 0), np.zeros(3, int), np.array([1, 1, 6]))


def test_swt_filters_are_pywavelets_own_float32_table():
    """PyWavelets's float32 coif1 table is not the float64 one rounded (one coefficient an ulp off):
    the filters used are the ones it applies."""
    pywt = pytest.importorskip("pywt")
    lo32, _ = K.swt_filters("coif1", np.float32)
    lo64, _ = K.swt_filters("coif1", np.float64)
    np.testing.assert_array_equal(lo64, np.asarray(pywt.Wavelet("coif1").dec_lo))
    assert lo32.dtype == np.float32 and np.abs(lo32.astype(np.float64) - lo64).max() < 1e-7


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_simple_filters_on_the_box_equal_the_whole_image_formulas(seed):
    """Square, SquareRoot, Logarithm, Exponential on the box only (the whole image's largest
    magnitude from its extremes, the logarithm's scale from the largest-magnitude voxel): the same
    numbers as PyRadiomics's formulas applied to the whole image, then cropped."""
    arr = _textured((6, 20, 17), seed, np.int16 if seed < 2 else np.float64) - (300 if seed % 2 else 0)
    if seed == 3:
        arr[0, 0, 0] = -5000.0  # the largest magnitude negative
    lo, hi = np.array([1, 3, 2]), np.array([4, 15, 9])
    sl = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
    whole = arr.astype("float64")
    mx = np.max(np.abs(whole))
    pos, neg = whole > 0, whole < 0
    log = whole.copy()
    log[pos] = np.log(log[pos] + 1)
    log[neg] = -np.log(-(log[neg] - 1))
    sqrt = whole.copy()
    sqrt[pos] = np.sqrt(sqrt[pos] * mx)
    sqrt[neg] = -np.sqrt(-sqrt[neg] * mx)
    expected = {"square": (1 / np.sqrt(mx) * whole) ** 2, "squareroot": sqrt,
                "logarithm": log * (mx / np.max(np.abs(log))), "exponential": np.exp(np.log(mx) / mx * whole)}
    vol = _vol(arr, (1.0, 1.0, 1.0))
    for name in ("Square", "SquareRoot", "Logarithm", "Exponential"):
        ((got, tname, _),) = list(pc._image_types(vol, name, {}, lo, hi))
        np.testing.assert_array_equal(got, expected[tname][sl], err_msg=name)


def _extract_both(img: Image, msk: Image, params: dict) -> tuple[dict[str, float], dict[str, float]]:
    ref = pc.extract_pyradiomics(img, msk, params, compiled=False)
    got = pc.extract_pyradiomics(img, msk, params, compiled=True)
    assert set(ref) == set(got)
    return ref, got


def _worst(ref: dict[str, float], got: dict[str, float], prefix: str = "") -> float:
    worst = 0.0
    for k, v in ref.items():
        if not k.startswith(prefix) or (np.isnan(v) and np.isnan(got[k])):
            continue
        worst = max(worst, abs(got[k] - v) / max(abs(v), 1e-12))
    return worst


@pytest.mark.parametrize("where", ["inside", "border"])
def test_wavelet_compiled_equals_pywavelets_path(where):
    """_wavelet (level 1) compiled, in NumPy, and through pywt.swtn (the region path PyRadiomics's
    levels > 1 take): the same sub-bands, names and order, for a box inside the image and one
    touching three borders (wrap-around), 3-D and force2D."""
    pywt = pytest.importorskip("pywt")
    arr = _textured((11, 40, 37), 4)
    if where == "inside":
        lo, hi = np.array([3, 10, 12]), np.array([6, 25, 20])
    else:
        lo, hi = np.array([7, 0, 30]), np.array([10, 9, 36])
    for s in ({}, {"force2D": True, "force2Ddimension": 0}, {"wavelet": "db2"}):
        axes = (2, 1, 0) if not s.get("force2D") else (2, 1)
        data = np.pad(arr, [(0, n % 2) for n in arr.shape], "wrap")  # PyRadiomics's _swt3
        dec = pywt.swtn(data, s.get("wavelet", "coif1"), level=1, start_level=0, axes=axes)[0]
        sl = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
        approx = "a" * len(axes)
        ref = [(v[sl], "wavelet-" + k.replace("a", "L").replace("d", "H")) for k, v in dec.items() if k != approx]
        ref.append((dec[approx][sl], "wavelet-" + "L" * len(axes)))
        for compiled in (False, True) if NUMBA else (False,):
            with pc.use_compiled(compiled):
                got = list(pc._wavelet(arr, s, lo, hi))
            assert [name for _, name, _ in got] == [name for _, name in ref]
            for (g, _, _), (r, _) in zip(got, ref, strict=True):
                assert g.dtype == r.dtype
                np.testing.assert_array_equal(g, r)


@needs_numba
def test_extract_compiled_equals_numpy_path_filters_brain1():
    """brain1 with LoG, wavelet and the other filters: every feature of the compiled run within
    1e-12 relative of the NumPy/SimpleITK run (the filter responses are the same numbers)."""
    img, msk = read(DATA / "brain1_roi_image.nrrd"), read(DATA / "brain1_roi_label.nrrd")
    params = {"setting": {"binWidth": 25},
              "imageType": {"LoG": {"sigma": [1.0, 3.0]}, "Wavelet": {}, "Square": {}, "Logarithm": {},
                            "Gradient": {}},
              "featureClass": {"firstorder": None, "glcm": None, "glszm": None}}
    ref, got = _extract_both(img, msk, params)
    assert _worst(ref, got) <= 1e-12


@needs_numba
@pytest.mark.parametrize("case", ["plate-at-border", "fragments-force2D", "single-slice-image"])
def test_filtered_extraction_compiled_vs_numpy_vs_pyradiomics(case):
    """Adversarial ROIs through every filter: compiled == NumPy/SimpleITK path (1e-12) and both
    within 1e-6 of PyRadiomics itself."""
    radiomics = pytest.importorskip("radiomics")
    import logging

    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    shape = (1, 30, 28) if case == "single-slice-image" else (9, 30, 28)
    arr = _textured(shape, 9)
    mask = np.zeros(shape, np.uint8)
    setting: dict = {"binCount": 12}
    types: dict = {"LoG": {"sigma": [0.8, 2.0]}, "Wavelet": {}, "Logarithm": {}, "Gradient": {}}
    if case == "plate-at-border":
        mask[0, 0:12, 20:28] = 1  # one voxel thick, touching three borders
        mask[1, 3:5, 22:24] = 1
    elif case == "fragments-force2D":
        rng = np.random.default_rng(4)
        for _ in range(15):
            z, y, x = (int(rng.integers(0, n - 2)) for n in shape)
            mask[z, y, x:x + 2] = 1
        setting.update({"force2D": True, "force2Ddimension": 0})
    else:
        mask[0, 5:20, 4:15] = 1
        mask[0, 8:12, 15:27] = 1
        setting.update({"force2D": True, "force2Ddimension": 0})
        types = {"Wavelet": {}, "Square": {}, "Exponential": {}}
    params = {"setting": setting, "imageType": types, "featureClass": {"firstorder": None, "glcm": None}}
    img, msk = sitk.GetImageFromArray(arr), sitk.GetImageFromArray(mask)
    for x in (img, msk):
        x.SetSpacing((0.7, 0.9, 2.5))
    ref, got = _extract_both(Image.from_sitk(img), Image.from_sitk(msk), params)
    assert _worst(ref, got) <= 1e-12
    ex = featureextractor.RadiomicsFeatureExtractor(params)
    prad = {k: float(v) for k, v in ex.execute(img, msk).items() if not k.startswith("diagnostics")}
    assert set(prad) == set(got)
    assert _worst(prad, got) <= 1e-6


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_gradient_box_is_simpleitk_gradient_magnitude(dtype):
    """The NumPy gradient magnitude inside boxes (inside, at every border, one voxel thick, a
    single-slice image), with and without spacing: SimpleITK's whole-image float32s to the bit."""
    rng = np.random.default_rng(5)
    for shape in [(7, 20, 18), (1, 12, 9)]:
        arr = (rng.standard_cauchy(shape) * 800).clip(-30000, 30000).astype(dtype)
        spacing = tuple(float(v) for v in rng.uniform(0.4, 6.0, 3))
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing)
        vol = _vol(arr, spacing)
        for use in (True, False):
            f = sitk.GradientMagnitudeImageFilter()
            f.SetUseImageSpacing(use)
            ref = sitk.GetArrayFromImage(f.Execute(img))
            n = np.asarray(shape) - 1
            boxes = [(np.zeros(3, int), n), (n // 3, n - n // 3), (np.array([0, 2, 3]), np.array([0, 2, 8]) % (n + 1)),
                     (np.minimum(n, [1, 0, 0]), n)]
            for lo, hi in boxes:
                hi = np.maximum(hi, lo)
                sl = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
                got = pc._gradient_box(vol, lo, hi, use)
                assert got.dtype == np.float32
                np.testing.assert_array_equal(got, ref[sl])
