"""IBSI chapter 2 compliance of the convolutional filters: one test per cause found in issue 15,
against the IBSI reference implementation's response maps (MIRP, sampled at every third voxel,
``tests/data/ibsi2``) and against analytic impulse responses (the impulse response of a linear
filter with zero padding is its kernel); boundary conditions for every filter in 2-D and 3-D."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from medimg.errors import ParameterError, UnknownNameError
from medimg.features.filters import BOUNDARIES, FILTERS, LAWS_KERNELS, rotations
from medimg.features.ibsi2 import PHASE1, PHASE2, image_label, phase2_filter

DATA = Path(__file__).parent / "data" / "ibsi2"
REF = np.load(DATA / "reference_maps.npz")


def _phantom(name: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    from medimg.io import read

    img = read(DATA / f"{name}.nii.gz")
    return np.asarray(img.array, dtype=np.float64), tuple(float(v) for v in np.asarray(img.spacing)[::-1])


def _run(config_id: str) -> np.ndarray:
    c = PHASE1[config_id]
    arr, sp = _phantom(c.phantom)
    return FILTERS.get(c.filter).func(arr, sp, **c.params)


def _assert_matches_reference(config_id: str, got: np.ndarray) -> None:
    """IBSI phase 1 rule: every voxel within 1 % of the reference map's range."""
    ref = REF[config_id].astype(np.float64)
    tol = 0.01 * float(REF[f"range_{config_id}"])
    err = np.abs(got[1::3, 1::3, 1::3] - ref)
    assert err.max() <= tol, f"{config_id}: max error {err.max():.4g} > {tol:.4g} ({int((err > tol).sum())} voxels)"


def _impulse() -> tuple[np.ndarray, tuple[float, float, float], tuple[int, int, int]]:
    arr, sp = _phantom("impulse")
    centre = tuple(int(v) for v in np.unravel_index(np.argmax(arr), arr.shape))
    assert arr[centre] == 255 and np.count_nonzero(arr) == 1
    return arr, sp, centre


# --- cause 1: LoG normalisation -------------------------------------------------------------

def test_log_is_the_ibsi_kernel_on_the_voxel_grid():
    arr, sp, c = _impulse()
    got = _run("2a")  # sigma 3 mm on 2 mm voxels, zero padding: the impulse response is the kernel
    _assert_matches_reference("2a", got)
    ref = REF["2a"].astype(float)
    sub = got[1::3, 1::3, 1::3]
    ratio = float((sub * ref).sum() / (sub * sub).sum())
    assert ratio == pytest.approx(1.0, abs=1e-3)  # was exactly 4.00 (per mm^2 on 2 mm voxels)
    # the manual's kernel: -1/s^2 (2 pi s^2)^(-3/2) (3 - r^2/s^2) exp(-r^2 / 2 s^2), s and r in voxels
    s = 3.0 / sp[0]
    z, y, x = np.indices(arr.shape)
    r2 = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2
    kernel = -1 / s**2 * (2 * np.pi * s**2) ** -1.5 * (3 - r2 / s**2) * np.exp(-r2 / (2 * s**2))
    radius = math.floor(4 * s + 0.5)
    inside = (np.abs(z - c[0]) <= radius) & (np.abs(y - c[1]) <= radius) & (np.abs(x - c[2]) <= radius)
    np.testing.assert_allclose(got[inside], 255 * kernel[inside], atol=1e-3 * np.ptp(got))
    assert np.all(got[~inside] == 0)
    # per mm^2 is available, and is exactly the IBSI response / spacing^2
    mm = FILTERS.get("log").func(arr, sp, sigma_mm=3.0, boundary="zero", units="mm")
    np.testing.assert_allclose(mm * sp[0] ** 2, got, atol=1e-12)


# --- cause 2: Laws response and energy ------------------------------------------------------

def test_laws_signed_response_and_energy():
    arr, sp, c = _impulse()
    resp = _run("3a1")
    assert resp.min() < 0  # the signed response, not an energy
    # convolution with an impulse is the kernel E5 (x) L5 (y) S5 (z) itself (correlation would
    # mirror it, flipping the sign of the odd E5)
    k = np.einsum("i,j,k->ijk", LAWS_KERNELS["S5"], LAWS_KERNELS["L5"], LAWS_KERNELS["E5"])
    np.testing.assert_allclose(resp[c[0] - 2:c[0] + 3, c[1] - 2:c[1] + 3, c[2] - 2:c[2] + 3], 255 * k, atol=1e-10)
    assert np.count_nonzero(resp) == np.count_nonzero(k)
    _assert_matches_reference("3a1", resp)
    _assert_matches_reference("3c1", _run("3c1"))
    # energy: the mean absolute (pooled) response over 2 delta + 1 voxels
    f = FILTERS.get("laws").func
    e = f(arr, sp, kernel="E5L5S5", rotation_invariant=False, energy=True, energy_distance=2, boundary="zero")
    assert e[c] == pytest.approx(np.abs(255 * k).sum() / 125)
    with pytest.raises(ParameterError, match="energy_distance"):
        f(arr, sp, kernel="E5L5S5", energy_distance=-1)


# --- cause 3: separable wavelets convolve ---------------------------------------------------

def test_wavelets_convolve():
    import pywt

    arr, sp, c = _impulse()
    got = _run("5a1")  # db2 LHL: x low, y high, z low
    w = pywt.Wavelet("db2")
    lo, hi = np.append(w.dec_lo, 0.0), np.append(w.dec_hi, 0.0)  # odd length: centre index 2
    k = np.einsum("i,j,k->ijk", lo, hi, lo)  # (z, y, x); correlation would mirror it
    np.testing.assert_allclose(got[c[0] - 2:c[0] + 3, c[1] - 2:c[1] + 3, c[2] - 2:c[2] + 3], 255 * k, atol=1e-10)
    _assert_matches_reference("5a1", got)
    _assert_matches_reference("6a1", _run("6a1"))


# --- cause 4: rotation sets -----------------------------------------------------------------

def test_rotation_sets_are_the_proper_rotations():
    for dims, n in ((2, 4), (3, 24)):
        rots = rotations(dims)
        assert len(rots) == n
        mats = set()
        for perm, flips in rots:
            m = np.eye(3)[list(perm)] * np.where(flips, -1, 1)[:, None]
            assert np.linalg.det(m) == pytest.approx(1.0)
            mats.add(m.tobytes())
        assert len(mats) == n
    assert all(perm[0] == 0 and not flips[0] for perm, flips in rotations(2))  # in-plane only
    _assert_matches_reference("3c2", _run("3c2"))  # 2-D Laws, max pooling over 4 rotations
    _assert_matches_reference("6a2", _run("6a2"))  # 3-D wavelet, average over 24 rotations
    # pooled responses rotate with the image, but a reflection is not in the set
    a = np.random.default_rng(0).normal(size=(3, 16, 16))
    f = FILTERS.get("wavelet").func
    kw = {"wavelet": "db3", "response": "LH", "dims": 2, "rotation_invariant": True, "boundary": "periodic"}
    out = f(a, (1.0, 1.0, 1.0), **kw)
    np.testing.assert_allclose(f(np.rot90(a, 1, (1, 2)).copy(), (1.0, 1.0, 1.0), **kw), np.rot90(out, 1, (1, 2)),
                               atol=1e-10)
    mirrored = f(a[:, :, ::-1].copy(), (1.0, 1.0, 1.0), **kw)[:, :, ::-1]
    assert np.abs(mirrored - out).max() > 1e-3


# --- cause 5: level-2 undecimated wavelets --------------------------------------------------

def test_level_two_wavelets_as_the_manual_builds_them():
    lll, hhh = _run("7a1"), _run("7a2")
    _assert_matches_reference("7a1", lll)
    _assert_matches_reference("7a2", hhh)
    assert hhh.max() == pytest.approx(127.5) and hhh.min() == pytest.approx(-127.5)  # was +-15.9
    # level 2 = level-1 low-pass image filtered with the upsampled odd-length kernels
    a = np.random.default_rng(1).normal(size=(8, 9, 10))
    f = FILTERS.get("wavelet").func
    s = 1 / math.sqrt(2)
    low1 = f(a, (1.0, 1.0, 1.0), wavelet="haar", response="LLL", level=1, boundary="periodic")
    got = f(a, (1.0, 1.0, 1.0), wavelet="haar", response="HHH", level=2, boundary="periodic")
    expect = low1
    for ax in (0, 1, 2):  # [-s, 0, s, 0, 0] centred at index 2: (k * v)[i] = -s v[i + 2] + s v[i]
        expect = -s * np.roll(expect, -2, ax) + s * expect
    np.testing.assert_allclose(got, expect, atol=1e-12)


# --- cause 6: the Simoncelli wavelet --------------------------------------------------------

def test_simoncelli_wavelet():
    for cid in ("8a1", "8a2", "8a3"):
        _assert_matches_reference(cid, _run(cid))
    f = FILTERS.get("simoncelli").func
    const = np.full((8, 12, 12), 7.0)
    for boundary in ("periodic", "mirror", "nearest"):  # zero padding makes edges
        np.testing.assert_allclose(f(const, (1.0, 1.0, 1.0), boundary=boundary), 0.0, atol=1e-10)  # band-pass
    # a pure frequency inside the level-1 band passes with the transfer function's gain
    x = np.arange(32)
    wave = np.cos(2 * np.pi * 12 * x / 32)[None, None, :].repeat(4, 0).repeat(32, 1)
    out = f(wave, (1.0, 1.0, 1.0), level=1, dims=2)
    gain = out[0, 0, 0] / wave[0, 0, 0]
    assert 0.5 < gain <= 1.0
    np.testing.assert_allclose(out, gain * wave, atol=1e-9)
    assert np.abs(f(wave, (1.0, 1.0, 1.0), level=3, dims=2)).max() < 1e-9  # outside the level-3 band
    with pytest.raises(ParameterError, match="level"):
        f(wave, (1.0, 1.0, 1.0), level=0)


# --- cause 7: Gabor by FFT ------------------------------------------------------------------

def test_gabor_impulse_response_and_speed():
    arr, sp, c = _impulse()
    t0 = time.perf_counter()
    got = _run("4a1")
    assert time.perf_counter() - t0 < 5.0
    _assert_matches_reference("4a1", got)
    # the modulus of the kernel (sigma 10 mm, lambda 4 mm, gamma 1/2, theta 60 deg) around the impulse
    th = math.radians(60.0)
    y = (np.arange(64) - c[1])[:, None] * sp[1]
    x = (np.arange(64) - c[2])[None, :] * sp[2]
    xt, yt = np.sin(th) * y + np.cos(th) * x, -np.cos(th) * y + np.sin(th) * x
    envelope = 255 * np.exp(-(xt**2 + 0.25 * yt**2) / (2 * 10.0**2))
    np.testing.assert_allclose(got[c[0]], envelope, atol=1e-9 * 255)
    assert np.all(got[np.arange(64) != c[0]] < 1e-9)  # per slice
    t0 = time.perf_counter()
    _run("4b2")  # the slowest phase 1 configuration: 8 orientations x 3 planes
    assert time.perf_counter() - t0 < 5.0


# --- boundary conditions, 2-D and 3-D, every filter ------------------------------------------

_EVERY = [
    ("mean", {"support": 5}),
    ("log", {"sigma_mm": 1.0}),
    ("laws", {"kernel": "L5E5E5", "energy_distance": 1}),
    ("laws", {"kernel": "L5E5", "dims": 2, "energy": False}),
    ("gabor", {"sigma_mm": 1.5, "wavelength_mm": 3.0, "gamma": 1.5, "theta_deg": 30.0}),
    ("gabor", {"sigma_mm": 1.5, "wavelength_mm": 3.0, "rotation_invariant": True, "planes": "orthogonal"}),
    ("wavelet", {"wavelet": "coif1", "response": "HLH", "level": 2}),
    ("wavelet", {"wavelet": "coif1", "response": "HLH", "level": 1, "rotation_invariant": True}),
    ("wavelet", {"wavelet": "db2", "response": "HL", "dims": 2, "rotation_invariant": True}),
    ("simoncelli", {"level": 1}),
    ("simoncelli", {"level": 2, "dims": 2}),
]


@pytest.mark.parametrize(("name", "params"), _EVERY, ids=lambda v: v if isinstance(v, str) else "")
def test_every_boundary_condition(name, params):
    rng = np.random.default_rng(2)
    a = rng.normal(size=(12, 14, 16))
    f = FILTERS.get(name).func
    sp = (1.0, 1.0, 1.0)
    outs = {b: f(a, sp, boundary=b, **params) for b in BOUNDARIES}
    # periodic: translation equivariant, the shift wraps around
    shift = (3, -4, 5) if params.get("dims", 3) == 3 else (0, -4, 5)
    np.testing.assert_allclose(f(np.roll(a, shift, (0, 1, 2)), sp, boundary="periodic", **params),
                               np.roll(outs["periodic"], shift, (0, 1, 2)), atol=1e-9)
    # zero: the same as padding the image with zeros; mirror and nearest likewise with their padding
    # (for one-stage filters; a Laws energy map or a level-2 wavelet pads again at its second stage,
    # as the IBSI reference implementation does)
    staged = (name == "laws" and params.get("energy", True)) or params.get("level", 1) > 1 and name == "wavelet"
    pad = 16
    for b, mode in (("zero", "constant"), ("mirror", "symmetric"), ("nearest", "edge")):
        widths = [(pad, pad)] * 3 if params.get("dims", 3) == 3 else [(0, 0), (pad, pad), (pad, pad)]
        big = f(np.pad(a, widths, mode=mode), sp, boundary="periodic", **params)
        inner = tuple(slice(w[0], w[0] + n) for w, n in zip(widths, a.shape, strict=True))
        if name == "simoncelli" or staged:  # simoncelli: the padded grid changes its frequency sampling
            assert outs[b].shape == a.shape and np.isfinite(outs[b]).all()
        else:
            np.testing.assert_allclose(outs[b], big[inner], atol=1e-9, err_msg=b)
    assert len({round(float(v[0, 0, 0]), 9) for v in outs.values()}) >= 3  # the condition matters
    with pytest.raises(ParameterError, match="boundary"):
        f(a, sp, boundary="reflect", **params)


# --- configuration tables -------------------------------------------------------------------

def test_configuration_tables():
    ids = set(PHASE1)
    assert {"1a1", "1a4", "1b1", "2a", "2b", "2c", "3c3", "4b2", "6a2", "7a2", "8a3"} <= ids
    assert len(ids) == 30
    assert set(PHASE2) == {f"{n}{d}" for n in range(1, 10) for d in "ab"}
    assert phase2_filter("3.A") == PHASE2["3a"]
    with pytest.raises(UnknownNameError):
        phase2_filter("10a")
    assert image_label(*PHASE2["3a"]) == "log-sigma-1.5mm-2d"
    assert image_label(*PHASE2["1b"]) == "original"
    for c in PHASE1.values():
        FILTERS.get(c.filter).validate(c.params)


# --- command line ---------------------------------------------------------------------------

def test_response_map_command_and_long_table(tmp_path):
    import csv

    from medimg import io
    from medimg.cli.main import main

    out = tmp_path / "log.nii.gz"
    assert main(["response-map", str(DATA / "impulse.nii.gz"), str(out), "--preset", "ibsi2-ph1-2a"]) == 0
    got = np.asarray(io.read(out).array, dtype=np.float64)
    _assert_matches_reference("2a", got)
    out2 = tmp_path / "log2.nii.gz"
    assert main(["response-map", str(DATA / "impulse.nii.gz"), str(out2), "--filter", "log",
                 "-p", "sigma_mm=3", "-p", "boundary=zero"]) == 0
    np.testing.assert_allclose(np.asarray(io.read(out2).array), got, atol=1e-9)
    assert main(["response-map", str(DATA / "impulse.nii.gz"), str(tmp_path / "x.nii.gz"),
                 "--preset", "ibsi2-ph1-9z"]) == 2
    assert main(["response-map", str(DATA / "impulse.nii.gz"), str(tmp_path / "x.nii.gz")]) == 2
    # features of the response map: the long table names the image each value was computed on
    img = io.read(DATA / "sphere.nii.gz")
    mask = img.with_array((np.asarray(img.array) > 0).astype(np.uint8))
    io.write(mask, tmp_path / "mask.nii.gz")
    table = tmp_path / "f.csv"
    assert main(["features", str(DATA / "sphere.nii.gz"), str(tmp_path / "mask.nii.gz"), "--preset", "ibsi2-ph1-3c3",
                 "--long", "-o", str(table)]) == 0
    rows = list(csv.DictReader(table.open()))
    images = {r["image"] for r in rows}
    assert images == {"original", "laws-l5s5-energy-7-invariant"}
    mean = next(r for r in rows if r["image"] != "original" and r["feature"].endswith("stat.mean"))
    inside = np.asarray(mask.array) > 0
    c = PHASE1["3c3"]
    arr, sp = _phantom("sphere")
    expect = FILTERS.get(c.filter).func(arr, sp, **c.params)[inside].mean()
    assert float(mean["value"]) == pytest.approx(expect, rel=1e-9)


# ------------------------------------------------------------------ rotation invariance, fast path
def _rotate_then_filter(arr, apply, dims, pooling):
    """The rotation-invariance definition, literally: rotate the image, filter, rotate back, pool."""
    from medimg.features.filters import rotations

    out = None
    rots = rotations(dims)
    for perm, flips in rots:
        r = np.transpose(arr, perm)
        for axis, f in enumerate(flips):
            r = np.flip(r, axis) if f else r
        r = apply(np.ascontiguousarray(r))
        for axis, f in enumerate(flips):
            r = np.flip(r, axis) if f else r
        r = np.transpose(r, np.argsort(perm))
        out = r.copy() if out is None else (np.maximum(out, r) if pooling == "max" else out + r)
    return out if pooling == "max" else out / len(rots)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("pooling", ["max", "average"])
@pytest.mark.parametrize("boundary", ["zero", "nearest", "periodic", "mirror"])
def test_separable_rotation_pooling_equals_rotating_the_image(dims, pooling, boundary):
    """Laws and wavelet responses (levels 1 and 2, asymmetric db3 kernels) pooled over the IBSI
    rotations without rotating the image equal the rotate-filter-rotate-back definition."""
    from scipy import ndimage

    from medimg.features.filters import (
        _a_trous,
        _mode,
        _odd,
        _wavelet_filters,
        laws_filter,
        wavelet_filter,
    )

    rng = np.random.default_rng(3)
    arr = rng.normal(size=(9, 11, 10))
    mode = _mode(boundary)
    axes = (2, 1, 0)[:dims]
    lo, hi = (_odd(k) for k in _wavelet_filters("db3"))
    for level, response in ((1, "LHH"[:dims] if dims == 3 else "LH"), (2, "HHH"[:dims])):
        def apply(a, level=level, response=response):
            pre, kernels = lo, [lo if c == "L" else hi for c in response]
            for _ in range(1, level):
                for axis in axes:
                    a = ndimage.convolve1d(a, pre, axis=axis, mode=mode)
                pre, kernels = _a_trous(pre), [_a_trous(k) for k in kernels]
            for k, axis in zip(kernels, axes, strict=True):
                a = ndimage.convolve1d(a, k, axis=axis, mode=mode)
            return a

        want = _rotate_then_filter(arr, apply, dims, pooling)
        got = wavelet_filter(arr, (1.0, 1.0, 1.0), wavelet="db3", response=response, level=level, dims=dims,
                             rotation_invariant=True, pooling=pooling, boundary=boundary)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    from medimg.features.filters import LAWS_KERNELS

    kernel = "E5L5S5"[: 2 * dims]
    names = [kernel[i:i + 2] for i in range(0, 2 * dims, 2)]

    def laws(a):
        for n, axis in zip(names, (2, 1, 0), strict=False):
            a = ndimage.convolve1d(a, LAWS_KERNELS[n], axis=axis, mode=mode)
        return a

    want = _rotate_then_filter(arr, laws, dims, pooling)
    got = laws_filter(arr, (1.0, 1.0, 1.0), kernel=kernel, dims=dims, rotation_invariant=True, pooling=pooling,
                      energy=False, boundary=boundary)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("boundary", ["periodic", "mirror", "zero"])
def test_simoncelli_real_ffts_equal_the_complex_definition(dims, boundary):
    """The Simoncelli response by real FFTs (Hermitian part of the transfer function) equals
    the real part of the complex FFT convolution, on odd and even grid sizes."""
    from scipy import fft

    from medimg.features.filters import _pad, _simoncelli_response, simoncelli_filter

    rng = np.random.default_rng(5)
    for shape in ((9, 11, 10), (8, 12, 7)):
        a = rng.normal(size=shape)
        axes = (1, 2) if dims == 2 else (0, 1, 2)
        widths = [(0, 0)] * 3
        if boundary != "periodic":
            widths = [((n // 2, n // 2) if ax in axes else (0, 0)) for ax, n in enumerate(shape)]
        padded = _pad(a, widths, boundary) if boundary != "periodic" else a
        for level in (1, 2):
            h = _simoncelli_response(tuple(padded.shape[ax] for ax in axes), level)
            h = h[None] if dims == 2 else h
            want = fft.ifftn(fft.fftn(padded, axes=axes) * h, axes=axes).real
            want = want[tuple(slice(w[0], w[0] + n) for w, n in zip(widths, shape, strict=True))]
            got = simoncelli_filter(a, (1.0, 1.0, 1.0), level=level, dims=dims, boundary=boundary)
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------ Riesz transform
def _plane_wave(shape, spacing_zyx, k_zyx):
    """cos(w.x) on a periodic grid (w on the FFT grid, rad/mm) and w."""
    idx = np.indices(shape).astype(float)
    w = 2 * np.pi * np.asarray(k_zyx) / (np.asarray(shape) * np.asarray(spacing_zyx))
    theta = sum(w[a] * idx[a] * spacing_zyx[a] for a in range(3))
    return np.cos(theta), np.sin(theta), w


@pytest.mark.parametrize("orders", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (2, 0, 0), (1, 1, 0), (1, 1, 1), (0, 2, 1)])
def test_riesz_of_a_plane_wave_is_known(orders):
    """R^l cos(w.x) = Re(c_l (-i)^L prod(u_j^l_j) e^{i w.x}), u = w/|w|: for L = 1, 2, 3 that
    is c P sin, -c P cos, -c P sin (anisotropic voxels: the direction is physical)."""
    from medimg.features.filters import riesz_filter

    spacing = (2.0, 0.8, 1.0)
    cos, sin, w = _plane_wave((9, 15, 17), spacing, (1, 2, -3))
    ox, oy, oz = orders
    u = w / np.linalg.norm(w)  # (z, y, x)
    total = ox + oy + oz
    c = np.sqrt(math.factorial(total) / (math.factorial(ox) * math.factorial(oy) * math.factorial(oz)))
    p = u[2] ** ox * u[1] ** oy * u[0] ** oz
    want = {0: c * p * cos, 1: c * p * sin, 2: -c * p * cos, 3: -c * p * sin}[total % 4]
    got = riesz_filter(cos, spacing, order_x=ox, order_y=oy, order_z=oz)
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("total", [1, 2])
def test_riesz_components_of_one_order_keep_the_energy(total):
    """sum over |l| = L of ||R^l f||^2 = ||f - mean(f)||^2 (odd grid sizes: no Nyquist term)."""
    from itertools import product as cartesian

    from medimg.features.filters import riesz_filter

    rng = np.random.default_rng(2)
    f = rng.normal(size=(7, 9, 11))
    energy = 0.0
    for ox, oy, oz in cartesian(range(total + 1), repeat=3):
        if ox + oy + oz == total:
            energy += float(np.sum(riesz_filter(f, (1.0, 0.7, 0.7), order_x=ox, order_y=oy, order_z=oz) ** 2))
    assert energy == pytest.approx(float(np.sum((f - f.mean()) ** 2)), rel=1e-10)


def test_riesz_in_2d_by_slice_and_of_a_log_response():
    from medimg.features.filters import log_filter, riesz_filter

    spacing = (3.0, 1.0, 1.0)
    cos, sin, w = _plane_wave((4, 15, 17), spacing, (0, 2, -3))
    got = riesz_filter(cos, spacing, order_x=1, dims=2)
    np.testing.assert_allclose(got, (w[2] / np.linalg.norm(w)) * sin, atol=1e-12)
    with pytest.raises(ParameterError, match="order_z must be 0"):
        riesz_filter(cos, spacing, order_z=1, dims=2)
    with pytest.raises(ParameterError, match="sum >= 1"):
        riesz_filter(cos, spacing, order_x=0)
    # Riesz of the LoG response: the transform of the base filter's response (they commute)
    rng = np.random.default_rng(4)
    f = rng.normal(size=(8, 12, 10))
    np.testing.assert_allclose(
        riesz_filter(f, (1.0, 1.0, 1.0), order_y=1, base="log", sigma_mm=1.5, boundary="mirror"),
        riesz_filter(log_filter(f, (1.0, 1.0, 1.0), sigma_mm=1.5, boundary="mirror"), (1.0, 1.0, 1.0),
                     order_y=1, boundary="mirror"))
