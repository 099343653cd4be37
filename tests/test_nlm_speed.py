"""NLM kernel: scikit-image's fast mode reproduced at equal windows; compiled kernel = NumPy path."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.core.image import Image
from medimg.errors import ParameterError
from medimg.filters import nlm
from medimg.filters._nlm_kernel import load
from medimg.filters.nlm import nlm_array

skimage_restoration = pytest.importorskip("skimage.restoration")
COMPILED = [False] + ([True] if load() is not None else [])


def _volume(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.indices(shape).sum(axis=0) * 3.0
    return ramp + rng.normal(0, 10, shape)


@pytest.mark.parametrize("compiled", COMPILED)
@pytest.mark.parametrize(("shape", "patch_size", "distance"),
                         [((10, 18, 20), 3, 2), ((8, 16, 17), 5, 3), ((37, 40), 5, 4), ((31, 33), 3, 6)])
def test_skimage_scheme_equals_scikit_image_fast_mode(compiled: bool, shape: tuple[int, ...],
                                                      patch_size: int, distance: int) -> None:
    u = _volume(shape, seed=len(shape) + patch_size)
    sigma, h = 10.0, 8.0
    ref = skimage_restoration.denoise_nl_means(u, patch_size=patch_size, patch_distance=distance, h=h,
                                               sigma=sigma, fast_mode=True)
    ours = nlm_array(u, patch_radius=np.full(u.ndim, patch_size // 2), search_radius=np.full(u.ndim, distance),
                     h=h, sigma=sigma, scheme="skimage", compiled=compiled)
    assert ours.dtype == np.float64 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    assert np.abs(ours - u).mean() > 1.0  # it did denoise (not an identity that happens to agree)


def test_skimage_scheme_float32_and_sigma_zero() -> None:
    u = _volume((6, 14, 15), seed=3).astype(np.float32)
    ref = skimage_restoration.denoise_nl_means(u, patch_size=3, patch_distance=2, h=6.0, sigma=0.0, fast_mode=True)
    ours = nlm_array(u, patch_radius=np.ones(3), search_radius=np.full(3, 2), h=6.0, sigma=0.0, scheme="skimage")
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-4)  # float32 output of values ~50


@pytest.mark.skipif(len(COMPILED) < 2, reason="numba not installed")
@pytest.mark.parametrize("rician", [False, True])
def test_compiled_kernel_equals_numpy_path_medimg_scheme(rician: bool) -> None:
    u = np.abs(_volume((9, 15, 16), seed=5))
    kw = {"patch_radius": np.array([1, 2, 1]), "search_radius": np.array([2, 1, 3]), "h": 8.0, "sigma": 6.0,
          "rician": rician}
    a = nlm_array(u, compiled=True, workers=2, **kw)
    b = nlm_array(u, compiled=False, **kw)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5)


def test_public_filter_scheme_and_checks() -> None:
    img = Image.from_geometry(_volume((6, 12, 12), seed=1).astype(np.float32), spacing=(1.0, 1.0, 1.0))
    out = nlm(img, patch_radius_mm=1.0, search_radius_mm=2.0, sigma=10.0, h=8.0, scheme="skimage")
    ref = skimage_restoration.denoise_nl_means(img.array, patch_size=3, patch_distance=2, h=8.0, sigma=10.0,
                                               fast_mode=True)
    np.testing.assert_allclose(out.array, ref, rtol=0, atol=2e-4)
    assert out.meta["history"][-1]["scheme"] == "skimage"
    with pytest.raises(ParameterError, match="scheme"):
        nlm(img, sigma=10.0, scheme="fast")
    thick = Image.from_geometry(img.array, spacing=(1.0, 1.0, 5.0))  # 0 patch voxels across slices
    with pytest.raises(ParameterError, match="patch radius >= 1"):
        nlm(thick, sigma=10.0, scheme="skimage")
