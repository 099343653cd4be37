"""IBSI chapter 2 filters (known answers and invariances), their response-map features, and the
2-D shape descriptors (against scikit-image and by invariance)."""

from __future__ import annotations

import numpy as np
import pytest

from medimg import Image
from medimg.errors import ParameterError, UnknownNameError
from medimg.features import extract
from medimg.features.filters import FILTERS, LAWS_KERNELS, filter_image
from medimg.features.shape2d import fourier_descriptors, hu_moments

SP = (2.0, 1.0, 1.0)  # (z, y, x) mm


def _noise(shape=(10, 14, 16), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def test_registry_holds_the_ibsi_filters():
    assert set(FILTERS.names()) >= {"mean", "log", "laws", "gabor", "wavelet"}
    with pytest.raises(UnknownNameError):
        FILTERS.get("sobel")


def test_mean_filter_matches_a_direct_average():
    a = _noise()
    out = FILTERS.get("mean").func(a, SP, support=3, boundary="zero")
    direct = sum(np.roll(np.roll(np.roll(np.pad(a, 1), dz, 0), dy, 1), dx, 2)
                 for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1))[1:-1, 1:-1, 1:-1] / 27
    np.testing.assert_allclose(out, direct, atol=1e-12)
    out2d = FILTERS.get("mean").func(a, SP, support=3, dims=2)
    assert np.allclose(out2d.mean(axis=(1, 2)), a.mean(axis=(1, 2)), atol=0.05)
    with pytest.raises(ParameterError, match="odd"):
        FILTERS.get("mean").func(a, SP, support=4)


def test_log_of_a_quadratic_is_its_laplacian():
    z, y, x = np.mgrid[0:24, 0:30, 0:30].astype(float)
    sp = (1.5, 0.8, 1.2)
    zz, yy, xx = z * sp[0], y * sp[1], x * sp[2]
    f = xx**2 + 2 * yy**2 + 3 * zz**2  # Laplacian = 2 + 4 + 6 per mm^2
    log = FILTERS.get("log").func
    # a Gaussian wide enough (in voxels) and truncated far enough reproduces the exact Laplacian
    out = log(f, sp, sigma_mm=2.0, truncate=6.0, boundary="nearest", units="mm")
    assert out[12, 15, 15] == pytest.approx(12.0, rel=1e-4)
    out2 = log(f, sp, sigma_mm=2.0, truncate=6.0, dims=2, units="mm")
    assert out2[12, 15, 15] == pytest.approx(6.0, rel=1e-4)
    # the IBSI kernel is on the voxel grid: second derivatives per voxel^2
    vox = log(f, sp, sigma_mm=2.0, truncate=6.0, boundary="nearest")
    assert vox[12, 15, 15] == pytest.approx(2 * sp[2] ** 2 + 4 * sp[1] ** 2 + 6 * sp[0] ** 2, rel=1e-4)
    # the IBSI default truncation (4 sigma) loses a little of the kernel's second moment
    assert log(f, sp, sigma_mm=2.0, units="mm")[12, 15, 15] == pytest.approx(12.0, rel=0.05)


def test_laws_kernels_and_rotation_invariance():
    for name, k in LAWS_KERNELS.items():
        assert np.linalg.norm(k) == pytest.approx(1.0), name
    a = _noise((12, 12, 12), 1)
    f = FILTERS.get("laws").func
    out = f(a, (1.0, 1.0, 1.0), kernel="L5E5S5", rotation_invariant=True, energy_distance=1, boundary="periodic")
    rotated = f(np.rot90(a, 1, axes=(1, 2)).copy(), (1.0, 1.0, 1.0), kernel="L5E5S5", rotation_invariant=True,
                energy_distance=1, boundary="periodic")
    np.testing.assert_allclose(np.rot90(out, 1, axes=(1, 2)), rotated, atol=1e-10)
    with pytest.raises(ParameterError, match="laws kernel"):
        f(a, SP, kernel="L5X5E5")


def test_gabor_responds_to_matching_stripes_and_pools_orientations():
    y, x = np.mgrid[0:40, 0:40].astype(float)
    stripes_x = np.cos(2 * np.pi * x / 8.0)[None].repeat(3, axis=0)  # varies along x
    stripes_y = np.cos(2 * np.pi * y / 8.0)[None].repeat(3, axis=0)
    f = FILTERS.get("gabor").func
    sp = (1.0, 1.0, 1.0)
    along = f(stripes_x, sp, sigma_mm=4.0, wavelength_mm=8.0, theta_deg=0.0)[1, 20, 20]
    across = f(stripes_x, sp, sigma_mm=4.0, wavelength_mm=8.0, theta_deg=90.0)[1, 20, 20]
    assert along > 10 * across
    inv_x = f(stripes_x, sp, sigma_mm=4.0, wavelength_mm=8.0, rotation_invariant=True, theta_step_deg=45.0)
    inv_y = f(stripes_y, sp, sigma_mm=4.0, wavelength_mm=8.0, rotation_invariant=True, theta_step_deg=45.0)
    assert inv_x[1, 20, 20] == pytest.approx(inv_y[1, 20, 20], rel=1e-6)
    ortho = f(stripes_x, sp, sigma_mm=2.0, wavelength_mm=8.0, planes="orthogonal")
    assert ortho.shape == stripes_x.shape


def test_wavelet_haar_matches_the_definition():
    a = _noise((6, 8, 10), 2)
    f = FILTERS.get("wavelet").func
    out = f(a, SP, wavelet="haar", response="HLL", level=1, boundary="periodic")
    s = 1 / np.sqrt(2)
    # IBSI: convolution with dec_lo = [s, s] and dec_hi = [-s, s], made odd ([s, s, 0]) so the
    # centre is the first tap: (k * v)[i] = k[0] v[i + 1] + k[1] v[i]
    lo = lambda v, ax: s * np.roll(v, -1, ax) + s * v  # noqa: E731
    hi = lambda v, ax: -s * np.roll(v, -1, ax) + s * v  # noqa: E731
    np.testing.assert_allclose(out, lo(lo(hi(a, 2), 1), 0), atol=1e-12)
    lvl2 = f(a, SP, wavelet="db2", response="LLH", level=2, rotation_invariant=True)
    assert lvl2.shape == a.shape and np.isfinite(lvl2).all()
    with pytest.raises(ParameterError, match="L/H"):
        f(a, SP, response="LXH")
    with pytest.raises(ParameterError, match="wavelet"):
        f(a, SP, wavelet="morlet")


def test_filtered_features_are_cropping_exact():
    a = _noise((16, 30, 30), 3) * 10 + 100
    mask = np.zeros(a.shape, dtype=np.uint8)
    mask[6:10, 10:20, 11:19] = 1
    img = Image.from_geometry(a, spacing=SP[::-1])
    m = img.with_array(mask)
    cfg = {"families": ["stat"], "filters": [{"name": "log", "params": {"sigma_mm": 1.5}, "label": "log15"},
                                             {"name": "laws", "params": {"kernel": "E5E5E5", "energy_distance": 2}}]}
    got = extract(img, m, config=cfg)
    full = filter_image(img, "log", sigma_mm=1.5).array[mask == 1]
    assert got["log15.stat.mean"] == pytest.approx(full.mean(), rel=1e-10)
    assert got["log15.stat.maximum"] == pytest.approx(full.max(), rel=1e-10)
    laws_full = filter_image(img, "laws", kernel="E5E5E5", energy_distance=2).array[mask == 1]
    key = [k for k in got if k.startswith("laws") and k.endswith("stat.variance")][0]
    assert got[key] == pytest.approx(laws_full.var(), rel=1e-9)


def test_hu_moments_match_scikit_image_and_are_invariant():
    from skimage.measure import moments_central, moments_hu, moments_normalized

    m = np.zeros((64, 64), dtype=bool)
    m[10:40, 15:30] = True
    m[30:50, 20:45] = True
    ours = hu_moments(m)
    ref = moments_hu(moments_normalized(moments_central(m.T.astype(float)), 3))  # skimage: axis 0 first
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(hu_moments(np.rot90(m))[:6], ours[:6], rtol=1e-10)
    big = np.kron(m, np.ones((2, 2), dtype=bool))
    np.testing.assert_allclose(hu_moments(big)[:3], ours[:3], rtol=0.05)
    np.testing.assert_allclose(hu_moments(m, (0.5, 0.5)), ours, rtol=1e-10)


def test_fourier_descriptors_of_circle_and_invariances():
    yy, xx = np.mgrid[:90, :90]
    circle = (yy - 45) ** 2 + (xx - 45) ** 2 < 30**2
    assert np.all(fourier_descriptors(circle) < 0.01)
    shape = np.zeros((90, 90), dtype=bool)
    shape[20:60, 25:45] = True
    shape[40:70, 30:75] = True
    fd = fourier_descriptors(shape)
    np.testing.assert_allclose(fourier_descriptors(np.rot90(shape)), fd, atol=2e-3)
    np.testing.assert_allclose(fourier_descriptors(np.roll(shape, 7, axis=1)), fd, atol=1e-9)
    np.testing.assert_allclose(fourier_descriptors(shape, (3.0, 3.0)), fd, atol=1e-9)


def test_shape2d_family_on_the_largest_slice():
    a = np.zeros((3, 40, 40), dtype=np.uint8)
    a[1, 5:35, 10:20] = 1
    a[0, 10:12, 10:12] = 1
    img = Image(a.astype(float))
    got = extract(img, img.with_array(a), families=["shape2d"])
    assert got["shape2d.hu_1"] == pytest.approx(hu_moments(a[1].astype(bool))[0])
    assert len([k for k in got if k.startswith("shape2d.fourier_")]) == 10
