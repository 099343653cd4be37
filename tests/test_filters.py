"""Filters: known answers (transfer functions, impulse noise, quadratic Laplacian, SUV, N4, label
resampling) and agreement with scikit-image / SciPy where the definitions match."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from medimg import Image, filters
from medimg.core.registry import registry
from medimg.errors import GeometryMismatchError, ParameterError, UnknownNameError
from medimg.filters.frequency import frequency_grid, transfer_function
from medimg.filters.nlm import nlm_array
from medimg.quality import add_noise, psnr

#: Required parameters of the filters that have some (for the generic contract tests).
REQUIRED = {
    "lowpass": {"cutoff": 0.2},
    "highpass": {"cutoff": 0.2},
    "bandpass": {"low_cutoff": 0.05, "high_cutoff": 0.3},
    "nyul": {"standard": [0.0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]},
    "resample": {"spacing_mm": 1.5},
    "window": {"level": 100.0, "width": 200.0},
}


def _phantom(shape=(12, 32, 32), spacing=(1.0, 1.0, 2.0)) -> Image:
    """A bright sphere (200) in a dark background (50), float32."""
    z, y, x = np.indices(shape)
    c = [(n - 1) / 2 for n in shape]
    r2 = ((x - c[2]) * spacing[0]) ** 2 + ((y - c[1]) * spacing[1]) ** 2 + ((z - c[0]) * spacing[2]) ** 2
    values = np.where(r2 < (0.3 * shape[2] * spacing[0]) ** 2, 200.0, 50.0).astype(np.float32)
    return Image.from_geometry(values, spacing=spacing, origin=(-5.0, 3.0, 7.0), meta={"Modality": "MR"})


# ---------------------------------------------------------------------------------- registry
def test_each_filter_registered_once_with_documented_keyword_parameters() -> None:
    reg = registry("filters")
    assert len(reg) >= 25
    for entry in reg:
        sig = inspect.signature(entry.func)
        params = list(sig.parameters.values())
        assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD  # the image
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:]), entry.name
        doc = inspect.getdoc(entry.func) or ""
        assert "Returns" in doc and "Parameters" in doc, entry.name
        for name in sig.parameters:
            if name.endswith("_mm"):
                assert "mm" in doc, (entry.name, name)
    assert set(filters.denoising_methods()) >= {
        "gaussian", "median", "bilateral", "curvature_diffusion", "gradient_diffusion", "wavelet",
        "nlm", "tv", "lowpass", "highpass", "bandpass", "wiener", "adaptive_median"}


def test_denoise_dispatches_and_rejects_other_filters() -> None:
    img = _phantom()
    out = filters.denoise(img, "gaussian", sigma_mm=1.0)
    assert out.meta["history"][-1]["op"] == "filters.gaussian"
    with pytest.raises(ParameterError, match="not a noise-reduction"):
        filters.denoise(img, "window", preset="lung")
    with pytest.raises(UnknownNameError, match="did you mean 'median'"):
        filters.denoise(img, "medain")
    with pytest.raises(ParameterError, match="no parameter 'sigma'"):
        filters.denoise(img, "gaussian", sigma=1.0)


@pytest.mark.parametrize("name", sorted(set(registry("filters").names()) - {"suv", "n4", "resample", "resample_to"}))
def test_filters_keep_geometry_and_leave_input_untouched(name: str) -> None:
    img = _phantom(shape=(8, 20, 20))
    noisy = add_noise(img, "gaussian:0.05", seed=3)
    before = noisy.array.copy()
    out = filters.apply(noisy, name, **REQUIRED.get(name, {}))
    assert out.same_grid(noisy)
    assert out.dtype == np.float32
    assert out.meta["Modality"] == "MR"
    assert out.meta["history"][-1]["op"] == f"filters.{name}"
    np.testing.assert_array_equal(noisy.array, before)


def test_two_dimensional_images_work() -> None:
    img2 = Image.from_geometry(_phantom(shape=(1, 24, 24)).array[0], spacing=(0.5, 0.5))
    for name in ("gaussian", "median", "bilateral", "nlm", "wiener", "clahe", "lowpass"):
        out = filters.apply(add_noise(img2, "gaussian:0.05", seed=0), name, **REQUIRED.get(name, {}))
        assert out.shape == (24, 24) and out.same_grid(img2)


# ---------------------------------------------------------------------------------- smoothing
def test_gaussian_sigma_is_in_mm() -> None:
    from scipy import ndimage as ndi

    delta = np.zeros((21, 41, 41), np.float32)
    delta[10, 20, 20] = 1.0
    img = Image.from_geometry(delta, spacing=(0.5, 0.5, 1.0))
    out = filters.gaussian(img, sigma_mm=2.0).array
    # recursive Gaussian ~ sampled Gaussian of sigma 4, 4, 2 voxels (x, y, z)
    ref = ndi.gaussian_filter(delta.astype(float), sigma=(2.0, 4.0, 4.0))
    assert np.abs(out - ref).max() < 0.02 * ref.max()
    prof_x = out[10, 20]
    var_x = np.sum(prof_x * (np.arange(41) - 20) ** 2) / prof_x.sum() * 0.5**2
    assert np.sqrt(var_x) == pytest.approx(2.0, rel=0.03)


def test_median_removes_salt_and_pepper_exactly_in_flat_regions() -> None:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(7)
    clean = np.full((10, 30, 30), 100.0, np.float32)
    clean[:, :, 15:] = 300.0
    img = Image.from_geometry(clean, spacing=(0.8, 0.8, 0.8))
    noisy = add_noise(img, "saltpepper:0.1", seed=rng)
    hit = noisy.array != clean
    out = filters.median(noisy, radius_mm=0.8).array  # 3x3x3 window
    # flat: the 3x3x3 window lies in one half; exact where impulses are a minority of the window
    flat = ndi.uniform_filter(clean, 3, mode="nearest") == clean
    minority = ndi.uniform_filter(hit.astype(float), 3, mode="nearest") * 27 < 13.5
    region = flat & minority
    region[[0, -1]] = region[:, [0, -1]] = region[:, :, [0, -1]] = False  # border windows repeat voxels
    assert region.sum() > 0.5 * clean.size and hit[region].sum() > 100
    np.testing.assert_array_equal(out[region], clean[region])


def test_adaptive_median_removes_dense_impulses_and_keeps_clean_voxels() -> None:
    clean = np.full((40, 40), 120.0, np.float32)
    clean[:, 20:] = 40.0
    img = Image.from_geometry(clean, spacing=(1.0, 1.0))
    noisy = add_noise(img, "saltpepper:0.3", seed=2)  # a 3x3 median fails at this density
    out = filters.adaptive_median(noisy, max_radius_mm=3.0).array
    plain = filters.median(noisy, radius_mm=1.0).array
    inner = np.zeros_like(clean, bool)
    inner[3:-3, 3:17] = inner[3:-3, 23:-3] = True
    assert np.array_equal(out[inner], clean[inner])
    assert not np.array_equal(plain[inner], clean[inner])
    untouched = noisy.array == clean  # voxels that are not impulses keep their value
    assert np.array_equal(out[untouched & inner], clean[untouched & inner])


def test_bilateral_keeps_an_edge_that_gaussian_blurs() -> None:
    img = _phantom(shape=(10, 32, 32), spacing=(1.0, 1.0, 1.0))
    noisy = add_noise(img, "gaussian:0.03", seed=1)
    bil = filters.bilateral(noisy, domain_sigma_mm=1.5, range_sigma=30.0)
    gau = filters.gaussian(noisy, sigma_mm=1.5)
    assert psnr(img, bil, data_range=150.0) > psnr(img, gau, data_range=150.0) + 3
    assert psnr(img, bil, data_range=150.0) > psnr(img, noisy, data_range=150.0) + 3
    assert bil.meta["history"][-1]["range_sigma"] == 30.0


def test_diffusion_smooths_flat_regions_and_checks_time_step() -> None:
    img = _phantom(shape=(10, 32, 32), spacing=(1.0, 1.0, 1.0))
    noisy = add_noise(img, "gaussian:0.04", seed=4)
    for name in ("curvature_diffusion", "gradient_diffusion"):
        out = filters.apply(noisy, name, iterations=10)
        assert out.meta["history"][-1]["time_step"] == pytest.approx(1.0 / 16)
        assert psnr(img, out, data_range=150.0) > psnr(img, noisy, data_range=150.0) + 4
    with pytest.raises(ParameterError, match="stable limit"):
        filters.curvature_diffusion(noisy, time_step=0.2)


def test_tv_and_wavelet_denoise_and_wavelet_matches_scikit_image() -> None:
    from skimage.restoration import denoise_wavelet

    img = _phantom(shape=(8, 32, 32), spacing=(1.0, 1.0, 1.0))
    noisy = add_noise(img, "gaussian:0.05", seed=5)
    base = psnr(img, noisy, data_range=150.0)
    assert psnr(img, filters.tv(noisy), data_range=150.0) > base + 4
    wav = filters.wavelet(noisy, method="BayesShrink", wavelet_name="db2")
    assert psnr(img, wav, data_range=150.0) > base + 2
    ref = denoise_wavelet(noisy.array, wavelet="db2", method="BayesShrink", mode="soft", rescale_sigma=True)
    np.testing.assert_allclose(wav.array, ref, rtol=1e-5, atol=1e-3)
    with pytest.raises(UnknownNameError):
        filters.wavelet(noisy, wavelet_name="db99")


# ---------------------------------------------------------------------------------- NLM
def _naive_nlm(u: np.ndarray, p: int, s: int, h: float, sigma: float) -> np.ndarray:
    pad = np.pad(u.astype(float), p + s, mode="symmetric")
    out = np.zeros(u.shape)
    for i in range(u.shape[0]):
        for j in range(u.shape[1]):
            ci, cj = i + p + s, j + p + s
            ref = pad[ci - p:ci + p + 1, cj - p:cj + p + 1]
            num = den = 0.0
            for di in range(-s, s + 1):
                for dj in range(-s, s + 1):
                    cand = pad[ci + di - p:ci + di + p + 1, cj + dj - p:cj + dj + p + 1]
                    d2 = np.mean((ref - cand) ** 2)
                    w = np.exp(-max(d2 - 2 * sigma**2, 0.0) / h**2)
                    num += w * pad[ci + di, cj + dj]
                    den += w
            out[i, j] = num / den
    return out


def test_nlm_equals_the_brute_force_definition() -> None:
    rng = np.random.default_rng(0)
    u = (np.add.outer(np.arange(13), np.arange(11)) * 3.0 + rng.normal(0, 4, (13, 11))).astype(np.float32)
    ours = nlm_array(u, patch_radius=np.array([1, 1]), search_radius=np.array([2, 2]), h=5.0, sigma=4.0, workers=2)
    np.testing.assert_allclose(ours, _naive_nlm(u, 1, 2, 5.0, 4.0), rtol=1e-4, atol=1e-3)


def test_nlm_3d_beats_gaussian_and_windows_follow_spacing() -> None:
    img = _phantom(shape=(12, 32, 32), spacing=(1.0, 1.0, 1.0))
    noisy = add_noise(img, "gaussian:0.05", seed=6)
    out = filters.nlm(noisy, patch_radius_mm=1.0, search_radius_mm=3.0)
    gain = psnr(img, out, data_range=150.0) - psnr(img, noisy, data_range=150.0)
    assert gain > 8
    assert psnr(img, out, data_range=150.0) > psnr(img, filters.gaussian(noisy, sigma_mm=1.0), data_range=150.0)
    aniso = Image.from_geometry(noisy.array, spacing=(0.8, 0.8, 4.0))
    step = filters.nlm(aniso, search_radius_mm=3.0).meta["history"][-1]
    assert step["search_radius_voxels_zyx"] == [1, 4, 4] and step["patch_radius_voxels_zyx"] == [0, 1, 1]


def test_nlm_rician_bias_correction() -> None:
    rng = np.random.default_rng(3)
    truth, sigma = 20.0, 10.0  # SNR 2: magnitude data are biased upwards
    mag = np.hypot(truth + rng.normal(0, sigma, (6, 40, 40)), rng.normal(0, sigma, (6, 40, 40)))
    img = Image.from_geometry(mag.astype(np.float32), spacing=(1.0, 1.0, 1.0))
    plain = filters.nlm(img, sigma=sigma, h=1.2 * sigma).array.mean()
    corrected = filters.nlm(img, sigma=sigma, h=1.2 * sigma, rician=True).array.mean()
    assert abs(corrected - truth) < 0.4 * abs(plain - truth)


# ---------------------------------------------------------------------------------- frequency
@pytest.mark.parametrize("shape", ["ideal", "butterworth", "gaussian"])
@pytest.mark.parametrize("band", ["lowpass", "highpass", "bandpass"])
def test_frequency_filter_transfer_function(shape: str, band: str) -> None:
    from scipy import fft

    spacing_xyz = (0.5, 0.8, 2.0)
    delta = np.zeros((8, 16, 20), np.float64)
    delta[0, 0, 0] = 1.0
    img = Image.from_geometry(delta, spacing=spacing_xyz)
    params = {"cutoff": 0.3} if band != "bandpass" else {"low_cutoff": 0.15, "high_cutoff": 0.4}
    out = filters.apply(img, band, shape=shape, order=2.0, padding="periodic", **params)
    measured = fft.fftn(out.array.astype(np.float64))
    d = frequency_grid(delta.shape, spacing_xyz[::-1])
    expected = transfer_function(d, band=band, shape=shape, order=2.0, **params)
    np.testing.assert_allclose(measured.real, expected, atol=2e-6)
    np.testing.assert_allclose(measured.imag, 0, atol=2e-6)


def test_transfer_function_values_at_the_cutoff() -> None:
    d = np.array([0.0, 0.2, 0.4])
    lp = {s: transfer_function(d, band="lowpass", shape=s, cutoff=0.2, order=3) for s in ("ideal", "butterworth", "gaussian")}
    np.testing.assert_allclose(lp["ideal"], [1, 1, 0])
    np.testing.assert_allclose(lp["butterworth"], [1, 0.5, 1 / (1 + 2**6)])
    np.testing.assert_allclose(lp["gaussian"], [1, np.exp(-0.5), np.exp(-2)])
    hp = transfer_function(d, band="highpass", shape="butterworth", cutoff=0.2, order=3)
    np.testing.assert_allclose(hp, 1 - lp["butterworth"])
    with pytest.raises(ParameterError, match="below high_cutoff"):
        transfer_function(d, band="bandpass", low_cutoff=0.3, high_cutoff=0.2)


def test_lowpass_cutoff_is_in_cycles_per_mm_and_spectrum_is_viewable() -> None:
    n, dx = 64, 0.5  # 32 mm field: bins every 1/32 cycles/mm
    x = np.arange(n) * dx
    slow, fast = np.cos(2 * np.pi * 0.125 * x), np.cos(2 * np.pi * 0.5 * x)
    img = Image.from_geometry(np.tile(slow + fast, (n, 1)).astype(np.float32), spacing=(dx, dx))
    out = filters.lowpass(img, cutoff=0.3, shape="ideal", padding="periodic").array
    np.testing.assert_allclose(out, np.tile(slow, (n, 1)), atol=1e-5)
    spec = filters.spectrum(img)
    assert spec.spacing[0] == pytest.approx(1 / 32) and spec.meta["axes"] == "cycles/mm"
    row = spec.array[n // 2]
    peaks = np.sort(np.argsort(row)[-4:])
    freqs = spec.index_to_physical(np.column_stack([peaks, np.full(4, n // 2)]))[:, 0]
    np.testing.assert_allclose(np.sort(np.abs(freqs)), [0.125, 0.125, 0.5, 0.5])


# ---------------------------------------------------------------------------------- adaptive
def test_wiener_matches_scipy_in_the_interior() -> None:
    from scipy.signal import wiener as scipy_wiener

    rng = np.random.default_rng(1)
    u = rng.normal(100, 10, (30, 30)) + np.add.outer(np.arange(30), np.zeros(30)) * 4
    img = Image.from_geometry(u.astype(np.float32), spacing=(0.5, 0.5))
    ours = filters.wiener(img, radius_mm=1.0, noise_sigma=8.0).array  # 2 voxels: 5x5
    ref = scipy_wiener(u, mysize=5, noise=64.0)
    np.testing.assert_allclose(ours[2:-2, 2:-2], ref[2:-2, 2:-2], rtol=1e-5)


# ---------------------------------------------------------------------------------- enhancement
def test_clahe_and_histogram_equalization_agree_with_scikit_image() -> None:
    from skimage.exposure import equalize_adapthist, equalize_hist

    rng = np.random.default_rng(2)
    vol = (rng.gamma(2.0, 200.0, (16, 32, 32)) - 300).astype(np.float32)
    img = Image.from_geometry(vol, spacing=(0.5, 0.5, 2.0))
    ours = filters.clahe(img, kernel_size_mm=4.0, clip_limit=0.02).array  # 8 x 8 x 2 voxels
    unit = (vol - vol.min()) / (vol.max() - vol.min())
    ref = equalize_adapthist(unit.astype(np.float64), kernel_size=(2, 8, 8), clip_limit=0.02)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    eq = filters.histogram_equalization(img, nbins=256).array
    np.testing.assert_allclose(eq, equalize_hist(vol.astype(np.float64), nbins=256), atol=1e-6)


def test_unsharp_and_laplacian_sharpening_known_answers() -> None:
    z, y, x = np.indices((6, 10, 12)).astype(float)
    spacing = (0.5, 2.0, 1.5)
    xm, ym, zm = x * spacing[0], y * spacing[1], z * spacing[2]
    quad = Image.from_geometry((xm**2 + 2 * ym**2 - zm**2).astype(np.float32), spacing=spacing)
    # Laplacian of x^2 + 2 y^2 - z^2 is 2 + 4 - 2 = 4 per mm^2, exact for central differences
    lap = filters.laplacian(quad).array
    np.testing.assert_allclose(lap[1:-1, 1:-1, 1:-1], 4.0, atol=1e-3)
    sharp = filters.laplacian_sharpen(quad, weight_mm2=0.25).array
    np.testing.assert_allclose(sharp[1:-1, 1:-1, 1:-1], quad.array[1:-1, 1:-1, 1:-1] - 1.0, atol=1e-3)
    ramp = Image.from_geometry((3 * xm + ym).astype(np.float32), spacing=spacing)
    np.testing.assert_allclose(filters.unsharp_mask(ramp, amount=0.0).array, ramp.array)


# ---------------------------------------------------------------------------------- intensity
def test_ct_window_presets_and_dicom_linear_function() -> None:
    hu = Image(np.array([[[-1000.0, 0.0, 40.0, 79.0, 80.0, 3000.0]]], np.float32), meta={"Modality": "CT"})
    brain = filters.window(hu, preset="brain").array.ravel()  # level 40, width 80
    np.testing.assert_allclose(brain, [0, 0, (40 - 39.5) / 79 + 0.5, (79 - 39.5) / 79 + 0.5, 1, 1], atol=1e-6)
    assert filters.CT_WINDOWS["lung"] == (-600.0, 1500.0)
    clipped = filters.window(hu, level=50, width=350, output="clip").array.ravel()
    np.testing.assert_allclose(clipped, [-125, 0, 40, 79, 80, 225])
    stored = Image(hu.array, meta={"Modality": "CT", "window_presets": [{"center": 40.0, "width": 80.0}]})
    np.testing.assert_allclose(filters.window(stored, preset="dicom").array.ravel(), brain)
    with pytest.raises(ParameterError, match="modality is MR"):
        filters.window(_phantom(), preset="lung")
    with pytest.raises(ParameterError, match="not both"):
        filters.window(hu, preset="lung", level=1.0)


def test_zscore_percentile_and_nyul() -> None:
    img = _phantom()
    mask = Image.from_geometry((img.array > 100).astype(np.uint8), spacing=img.spacing, origin=img.origin)
    rng = np.random.default_rng(0)
    noisy = add_noise(img, "gaussian:0.1", seed=rng)
    z = filters.zscore(noisy, mask=mask).array[mask.array > 0]
    assert z.mean() == pytest.approx(0, abs=1e-5) and z.std() == pytest.approx(1, abs=1e-5)
    p = filters.percentile_scale(noisy, lower=2, upper=98)
    assert np.percentile(p.array, [2, 98]) == pytest.approx([0, 1], abs=1e-5)
    # Nyul: a monotone (here affine) change of the intensity scale is undone exactly
    a = Image.from_geometry(rng.gamma(3.0, 100.0, (8, 16, 16)).astype(np.float32))
    fg = Image.from_geometry((a.array > a.array.mean()).astype(np.uint8))
    std = filters.nyul_fit([a], [fg], standard_range=(0, 100))
    warp = a.with_array((3.0 * a.array + 100.0).astype(np.float32))
    na = filters.nyul(a, **std.to_dict(), mask=fg).array
    nw = filters.nyul(warp, **std.to_dict(), mask=fg).array
    np.testing.assert_allclose(nw, na, atol=1e-3)
    marks = np.percentile(na[fg.array > 0], [1, 99])
    np.testing.assert_allclose(marks, [0, 100], atol=1e-3)
    with pytest.raises(ParameterError, match="increasing"):
        filters.nyul(a, standard=[3.0, 2.0, 1.0], percentiles=[1.0, 50.0, 99.0])


def _pet(**pet_overrides) -> Image:
    pet = {
        "Units": "BQML", "DecayCorrection": "START", "PatientWeight": 70.0,
        "SeriesDate": "20240102", "SeriesTime": "110000", "AcquisitionDate": "20240102",
        "AcquisitionTime": "111500.000",
        "Radiopharmaceutical": {"RadiopharmaceuticalStartTime": "100000.00",
                                "RadionuclideTotalDose": 370e6, "RadionuclideHalfLife": 6586.2},
    }
    pet.update(pet_overrides)
    return Image(np.full((2, 3, 3), 10000.0, np.float32), meta={"Modality": "PT", "pet": pet})


def test_suv_body_weight_decay_corrected_known_answer() -> None:
    # 1 h between injection (10:00) and series start (11:00), F-18 half-life 6586.2 s:
    # decay factor 2^(-3600/6586.2) = 0.68463292 (by hand); SUV = 10000 * 70000 / (370e6 * 0.68463292)
    out = filters.suv(_pet())
    assert out.meta["suv"]["decay_factor"] == pytest.approx(0.68463292, rel=1e-7)
    np.testing.assert_allclose(out.array, 2.7633668, rtol=1e-6)
    assert out.meta["units"] == "g/ml"
    admin = filters.suv(_pet(DecayCorrection="ADMIN")).array  # no decay: 10000 * 70000 / 370e6
    np.testing.assert_allclose(admin, 10000 * 70000 / 370e6, rtol=1e-6)
    none = filters.suv(_pet(DecayCorrection="NONE"))  # to acquisition time 11:15 -> 4500 s
    assert none.meta["suv"]["elapsed_s"] == pytest.approx(4500.0)
    rp = {"RadiopharmaceuticalStartDateTime": "20240101235000", "RadionuclideTotalDose": 370e6,
          "RadionuclideHalfLife": 6586.2}
    midnight = filters.suv(_pet(SeriesTime="004000", Radiopharmaceutical=rp))  # 23:50 -> 00:40 next day
    assert midnight.meta["suv"]["elapsed_s"] == pytest.approx(3000.0)
    assert midnight.meta["suv"]["decay_factor"] == pytest.approx(0.72925847, rel=1e-7)
    np.testing.assert_allclose(filters.suv(_pet(), weight_kg=35.0).array, 2.7633668 / 2, rtol=1e-6)
    with pytest.raises(ParameterError, match="BQML"):
        filters.suv(_pet(Units="CNTS"))
    with pytest.raises(ParameterError, match="Weight"):
        filters.suv(_pet(PatientWeight=None))
    with pytest.raises(ParameterError, match="no PET tags"):
        filters.suv(_phantom())


def test_n4_recovers_a_known_multiplicative_bias_field() -> None:
    rng = np.random.default_rng(0)
    shape, sp = (20, 40, 40), 4.0
    z, y, x = [(i - (n - 1) / 2) * sp for i, n in zip(np.indices(shape), shape, strict=True)]
    r = np.sqrt((x / 70) ** 2 + (y / 75) ** 2 + (z / 35) ** 2)
    tissue = np.select([r < 0.45, r < 0.75, r < 1.0], [700.0, 500.0, 300.0], 0.0)
    tissue[(r < 0.7) & (np.sin(x / 7) * np.cos(y / 9) > 0.4)] = 150.0
    white = tissue == 700.0
    tissue = tissue + rng.normal(0, 10, shape) * (r < 1)
    log_b = 0.3 * x / 80 - 0.2 * (y / 80) ** 2 + 0.15 * z / 40
    field_true = np.exp(log_b)
    img = Image.from_geometry((tissue * field_true).astype(np.float32), spacing=(sp, sp, sp))
    corrected, field = filters.n4_bias_field(img, iterations=40, convergence_threshold=1e-4)
    inside = r < 0.95
    corr = np.corrcoef(field.array[inside], field_true[inside])[0, 1]
    assert corr >= 0.9
    # within one tissue the corrected intensity is flat again (the field's spread is gone)
    def cv(values: np.ndarray) -> float:
        return float(np.std(values[white]) / np.mean(values[white]))

    assert cv(corrected.array) < 0.5 * cv(tissue * field_true)


# ---------------------------------------------------------------------------------- resampling
def test_label_maps_never_get_interpolated_values() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([0, 3, 7], np.int16), size=(6, 12, 10))
    lab = Image.from_geometry(labels, spacing=(1.0, 1.2, 2.5), origin=(1, 2, 3))
    for out in (filters.resample(lab, spacing_mm=[0.7, 0.45, 1.1]),
                filters.resample_to(lab, reference=Image.from_geometry(np.zeros((9, 9, 9), np.float32), spacing=(0.9, 0.9, 0.9)))):
        assert out.dtype == np.int16
        assert set(np.unique(out.array)) <= {0, 3, 7}
    with pytest.raises(ParameterError, match="nearest"):
        filters.resample(lab, spacing_mm=1.0, interpolator="linear")
    boolean = Image.from_geometry(labels > 0, spacing=(1.0, 1.2, 2.5))
    assert filters.resample(boolean, spacing_mm=0.5).dtype == np.bool_


def test_resample_linear_and_bspline_keep_physical_positions() -> None:
    z, y, x = np.indices((10, 12, 14)).astype(float)
    sp, org = (1.5, 1.0, 2.0), (-3.0, 4.0, 10.0)
    ramp = Image.from_geometry((2 * x * sp[0] + y * sp[1] - 0.5 * z * sp[2]).astype(np.float32), spacing=sp, origin=org)
    out = filters.resample(ramp, spacing_mm=[0.75, 0.5, 1.0])
    assert out.shape == (20, 24, 28) and out.spacing == pytest.approx((0.75, 0.5, 1.0)) and out.origin == ramp.origin
    zz, yy, xx = np.indices(out.shape).astype(float)
    expected = 2 * xx * 0.75 + yy * 0.5 - 0.5 * zz * 1.0
    inner = (slice(0, 18), slice(0, 22), slice(0, 26))  # inside the input's extent
    np.testing.assert_allclose(out.array[inner], expected[inner], atol=1e-3)
    spline = filters.resample(ramp, spacing_mm=[0.75, 0.5, 1.0], interpolator="bspline")
    deep = (slice(6, 12), slice(6, 18), slice(6, 20))  # B-spline borders are mirrored: stay 3 input voxels in
    np.testing.assert_allclose(spline.array[deep], expected[deep], atol=0.05)
    ref = Image.from_geometry(np.zeros((5, 6, 7), np.float32), spacing=(2.0, 2.0, 2.0), origin=(-1.0, 5.0, 12.0))
    onto = filters.resample_to(ramp, reference=ref)
    assert onto.same_grid(ref)


def test_parameter_errors_name_the_parameter() -> None:
    img = _phantom()
    with pytest.raises(ParameterError, match="sigma_mm"):
        filters.gaussian(img, sigma_mm=-1.0)
    with pytest.raises(ParameterError, match="radius_mm"):
        filters.median(img, radius_mm=0.1)
    other = Image.from_geometry(np.zeros((12, 32, 32), np.uint8), spacing=(1.0, 1.0, 3.0))
    with pytest.raises(GeometryMismatchError):
        filters.zscore(img, mask=other)
