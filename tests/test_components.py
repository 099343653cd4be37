"""medimg.core.components against scikit-image's label and SciPy's chamfer distance (exact
equality), and the FFT helpers of the morphology family against scipy.fft (bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import fft, ndimage
from skimage.measure import label

from medimg.core.components import label_equal, taxicab_distance
from medimg.features.morphology import _dct1, _next_fast_len_real


@pytest.mark.parametrize("seed", range(4))
def test_label_equal_is_scikit_image_label(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for k in range(60):
        shape = tuple(int(v) for v in rng.integers(1, 12, size=3))
        if k % 5 == 0:
            shape = (*shape[:2], 1)  # scikit-image numbers these in Fortran order
        values = rng.integers(0, int(rng.integers(2, 6)), size=shape)
        ref, n = label(values, background=0, connectivity=3, return_num=True)
        ours, m = label_equal(values)
        assert m == n and np.array_equal(ours, ref), shape
        # per slice (8-neighbourhood), as the zones code asked scikit-image with empty slices between
        spaced = np.zeros((2 * shape[0] - 1, *shape[1:]), dtype=values.dtype)
        spaced[::2] = values
        ref2, n2 = label(spaced, background=0, connectivity=3, return_num=True)
        ours2, m2 = label_equal(values, in_plane=True)
        assert m2 == n2 and np.array_equal(ours2, ref2[::2]), shape


def test_label_equal_large_and_snaking_zones() -> None:
    rng = np.random.default_rng(9)
    z, y, x = np.ogrid[:30, :40, :50]
    values = (((z - 15) ** 2 + (y - 20) ** 2 + (x - 25) ** 2) < 14**2) * (1 + (x // 7 + y // 5 + z // 3) % 6)
    values = values * (rng.random(values.shape) < 0.9)
    ref, n = label(values, background=0, connectivity=3, return_num=True)
    ours, m = label_equal(values)
    assert m == n and np.array_equal(ours, ref)
    spiral = np.zeros((1, 21, 21), dtype=int)  # one zone that winds around: many union rounds
    spiral[0, ::2, :] = 1
    spiral[0, 1::4, -1] = 1
    spiral[0, 3::4, 0] = 1
    ours, m = label_equal(spiral)
    assert m == 1 and np.array_equal(ours, label(spiral, background=0, connectivity=3))


def test_taxicab_distance_is_scipy_chamfer() -> None:
    rng = np.random.default_rng(2)
    s3 = ndimage.generate_binary_structure(3, 1)
    s2 = np.zeros((3, 3, 3), dtype=bool)
    s2[1] = ndimage.generate_binary_structure(2, 1)
    for k in range(100):
        shape = tuple(int(v) for v in rng.integers(1, 12, size=3))
        mask = rng.random(shape) < rng.uniform(0.3, 1.0)
        if k % 3:
            mask = np.pad(mask, 1)
        for structure, in_plane in ((s3, False), (s2, True)):
            ref = ndimage.distance_transform_cdt(mask, metric=structure)
            ours = taxicab_distance(mask, in_plane=in_plane)
            assert ours.dtype == ref.dtype and np.array_equal(ours, ref), (shape, in_plane)


def test_fft_helpers_are_scipy_fft_bit_for_bit() -> None:
    assert all(_next_fast_len_real(n) == fft.next_fast_len(n, real=True) for n in range(1, 5000))
    rng = np.random.default_rng(4)
    for shape in [(5, 9, 17), (3, 2, 2), (8, 33, 41), (2, 13, 26), (12, 61, 5)]:
        a = rng.normal(size=shape)
        for axes in [(0, 1, 2), (1, 2)]:
            assert np.array_equal(_dct1(a, axes), fft.dctn(a, type=1, axes=axes))
        x = rng.normal(size=shape)
        assert np.array_equal(np.fft.rfft(x, axis=2), fft.rfft(x, axis=2))
        c = fft.rfft(x, axis=2)
        assert np.array_equal(np.fft.fft(c, axis=0), fft.fft(c, axis=0))
