"""Quality metrics with known answers, agreement with scikit-image, noise estimation, the filter
comparison, and the `filter`, `quality` and `denoise-compare` commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medimg import Image, io, quality
from medimg.cli.main import main
from medimg.errors import GeometryMismatchError, ParameterError
from medimg.pipeline.denoise_compare import write_comparison
from medimg.quality import (
    add_noise,
    cnr,
    entropy,
    estimate_noise_sigma,
    mse,
    psnr,
    radial_psd,
    rmse,
    snr,
    ssim,
)


def _img(array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Image:
    return Image.from_geometry(np.asarray(array, np.float32), spacing=spacing[: np.ndim(array)] if np.ndim(array) == 2 else spacing)


def _phantom(shape=(10, 40, 40)) -> Image:
    z, y, x = np.indices(shape)
    c = [(n - 1) / 2 for n in shape]
    r2 = (x - c[2]) ** 2 + (y - c[1]) ** 2 + (2 * (z - c[0])) ** 2
    return _img(np.where(r2 < (0.3 * shape[2]) ** 2, 200.0, 50.0))


# ---------------------------------------------------------------------------------- metrics
def test_psnr_of_a_known_additive_noise() -> None:
    ref = _phantom()
    d = 3.0
    signs = np.where(np.indices(ref.shape).sum(axis=0) % 2 == 0, d, -d)  # |error| = d everywhere
    noisy = ref.with_array(ref.array + signs.astype(np.float32))
    assert mse(ref, noisy) == pytest.approx(d**2)
    assert rmse(ref, noisy) == pytest.approx(d)
    assert psnr(ref, noisy, data_range=150.0) == pytest.approx(20 * np.log10(150.0 / d))
    assert psnr(ref, noisy, data_range="reference") == pytest.approx(20 * np.log10(150.0 / d))
    assert psnr(ref, ref, data_range=1.0) == float("inf")
    gauss = add_noise(ref, "gaussian:0.02", seed=0)  # sigma = 0.02 * 150 = 3
    assert psnr(ref, gauss, data_range=150.0) == pytest.approx(20 * np.log10(150.0 / 3.0), abs=0.05)


def test_data_range_is_stated_never_guessed() -> None:
    ref = _phantom()
    with pytest.raises(TypeError):
        psnr(ref, ref)  # type: ignore[call-arg]
    with pytest.raises(ParameterError, match="data_range"):
        ssim(ref, ref, data_range=-1.0)
    with pytest.raises(ParameterError, match="data_range"):
        psnr(ref, ref, data_range="dtype")  # type: ignore[arg-type]
    from medimg.core.registry import registry

    with pytest.raises(ParameterError, match="data_range"):
        registry("quality").get("psnr")(ref, ref)


def test_ssim_of_identical_images_is_one_and_mismatched_grids_fail() -> None:
    img = add_noise(_phantom(), "gaussian:0.05", seed=1)
    assert ssim(img, img, data_range="reference") == pytest.approx(1.0, abs=1e-12)
    moved = Image.from_geometry(img.array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 5.0))
    with pytest.raises(GeometryMismatchError, match="reference"):
        ssim(img, moved, data_range=1.0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_ssim_agrees_with_scikit_image(ndim: int) -> None:
    from skimage.metrics import structural_similarity

    ref = _phantom(shape=(14, 40, 36))
    noisy = add_noise(ref, "gaussian:0.08", seed=2)
    a, b = (ref.array, noisy.array) if ndim == 3 else (ref.array[7], noisy.array[7])
    ours = ssim(_img(a), _img(b), data_range=150.0)
    theirs = structural_similarity(a.astype(np.float64), b.astype(np.float64), data_range=150.0,
                                   gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ours == pytest.approx(theirs, abs=1e-6)
    mask = _img((a > 100).astype(np.uint8))
    masked = ssim(_img(a), _img(b), data_range=150.0, mask=Image.from_geometry(mask.array.astype(np.uint8)))
    full = quality.ssim_map(_img(a), _img(b), data_range=150.0).array
    assert masked == pytest.approx(full[a > 100].mean(), rel=1e-6)


def test_cnr_snr_entropy_known_answers() -> None:
    values = np.zeros((4, 20, 20))
    alternate = np.where(np.arange(20) % 2 == 0, 5.0, -5.0)[:, None]
    values[:, :, :10] = 100 + alternate  # region A (x < 10): mean 100, sd 5
    values[:, :, 10:] = 60 + alternate   # region B: mean 60, sd 5
    img = _img(values)
    a = Image.from_geometry((np.indices(values.shape)[2] < 10).astype(np.uint8))
    b = Image.from_geometry((np.indices(values.shape)[2] >= 10).astype(np.uint8))
    assert cnr(img, a, b) == pytest.approx(40 / 5)
    assert snr(img, a) == pytest.approx(100 / 5)
    assert snr(img, a, noise=b) == pytest.approx(100 / 5)
    four = Image(np.repeat(np.arange(4, dtype=np.int16), 25).reshape(4, 5, 5))
    assert entropy(four) == pytest.approx(2.0)
    assert entropy(Image(np.zeros((2, 3, 3)))) == 0.0


def test_snr_rayleigh_background_recovers_gaussian_sigma() -> None:
    rng = np.random.default_rng(4)
    sigma = 8.0
    bg = np.hypot(rng.normal(0, sigma, (4, 60, 60)), rng.normal(0, sigma, (4, 60, 60)))
    values = bg.copy()
    values[:, :, :30] = 400.0
    img = _img(values)
    sig = Image.from_geometry((np.indices(values.shape)[2] < 30).astype(np.uint8))
    noise = Image.from_geometry((np.indices(values.shape)[2] >= 30).astype(np.uint8))
    assert snr(img, sig, noise=noise, noise_model="rayleigh") == pytest.approx(400 / sigma, rel=0.03)
    assert snr(img, sig, noise=noise) > 1.4 * 400 / sigma  # the Gaussian reading overstates SNR


def test_radial_psd_of_white_noise_is_flat_at_variance_times_voxel_area() -> None:
    rng = np.random.default_rng(5)
    img = _img(rng.normal(0, 3.0, (128, 128)), spacing=(0.5, 0.5))
    psd = radial_psd(img)
    assert psd.frequency[-1] == pytest.approx(1.0, abs=1 / 64)  # Nyquist of 0.5 mm voxels
    flat = 9.0 * 0.25
    assert np.average(psd.power[1:], weights=psd.counts[1:]) == pytest.approx(flat, rel=0.03)
    many = psd.counts >= 200  # a bin averaging many periodogram samples is close to the flat level
    assert many.sum() > 20 and np.all(np.abs(psd.power[many] / flat - 1) < 0.3)


@pytest.mark.parametrize("snr_true", [1.5, 3.0, 20.0])
def test_noise_sigma_estimate_gaussian_and_rician(snr_true: float) -> None:
    rng = np.random.default_rng(6)
    sigma = 10.0
    g = _img(100 + rng.normal(0, sigma, (16, 64, 64)))
    assert estimate_noise_sigma(g) == pytest.approx(sigma, rel=0.05)
    mag = np.hypot(snr_true * sigma + rng.normal(0, sigma, (16, 64, 64)), rng.normal(0, sigma, (16, 64, 64)))
    mask = Image.from_geometry(np.ones(mag.shape, np.uint8))
    rician = estimate_noise_sigma(_img(mag), distribution="rician", mask=mask)
    assert rician == pytest.approx(sigma, rel=0.1)
    if snr_true < 2:
        assert estimate_noise_sigma(_img(mag)) < 0.85 * sigma  # the Gaussian reading is biased


def test_add_noise_is_seeded_and_recorded() -> None:
    ref = _phantom()
    a, b = add_noise(ref, "rician:0.05", seed=3), add_noise(ref, "rician:0.05", seed=3)
    np.testing.assert_array_equal(a.array, b.array)
    assert a.meta["noise"] == {"kind": "rician", "level": 0.05, "sigma": pytest.approx(7.5)}
    p = add_noise(ref, "poisson:50", seed=1)
    assert p.array.min() >= 50.0 - 1e-4 and abs(p.array.mean() - ref.array.mean()) < 2
    for bad in ("gausian:0.1", "gaussian", "gaussian:x", "saltpepper:1.5"):
        with pytest.raises(ParameterError):
            quality.parse_noise(bad)


# ---------------------------------------------------------------------------------- comparison
def test_compare_denoisers_with_search_and_outputs(tmp_path: Path) -> None:
    clean = _phantom(shape=(8, 32, 32))
    noisy = add_noise(clean, "gaussian:0.06", seed=0)
    result = quality.compare_denoisers(clean, noisy, ["gaussian", "median", "nlm"], search=True)
    assert [r.candidate.method for r in result.results] == ["gaussian", "median", "nlm"]
    assert len(result.tried) == 4 + 2 + 4
    for r in result.results:  # each kept candidate is the best PSNR of its method
        same = [t.psnr_db for t in result.tried if t.candidate.method == r.candidate.method]
        assert r.psnr_db == max(same)
    assert result.best["psnr_db"] == "nlm" and result.results[2].psnr_db > result.noisy.psnr_db + 5
    files = write_comparison(result, tmp_path / "cmp")
    assert {f.name for f in files} >= {"results.csv", "summary.json", "figure.png", "search.csv"}
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert summary["best"]["psnr_db"]["method"] == "nlm" and summary["data_range"] == pytest.approx(150.0)
    with pytest.raises(ParameterError, match="not a noise-reduction"):
        quality.compare_denoisers(clean, noisy, ["window"])


# ---------------------------------------------------------------------------------- CLI
def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and "Traceback" not in captured.err
    return lines[0]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    clean = Image.from_geometry(_phantom(shape=(6, 24, 24)).array, spacing=(0.8, 0.8, 2.0), origin=(1.0, 2.0, 3.0))
    noisy = add_noise(clean, "gaussian:0.05", seed=1)
    roi = np.where(clean.array > 100, 1, 2).astype(np.uint8)
    out = {"clean": tmp_path / "clean.nii.gz", "noisy": tmp_path / "noisy.nii.gz", "roi": tmp_path / "roi.nii.gz"}
    io.write(clean, out["clean"])
    io.write(noisy, out["noisy"])
    io.write(clean.with_array(roi), out["roi"])
    return out


def test_cli_filter_writes_filtered_image(files, tmp_path: Path, capsys) -> None:
    dst = tmp_path / "out.nii.gz"
    spec = tmp_path / "spectrum.png"
    rc = main(["filter", str(files["noisy"]), str(dst), "--method", "median", "--param", "radius_mm=0.8",
               "--spectrum", str(spec)])
    assert rc == 0, capsys.readouterr().err
    out, noisy = io.read(dst), io.read(files["noisy"])
    assert out.same_grid(noisy, tol_mm=1e-3)
    from medimg.filters import median

    np.testing.assert_allclose(out.array, median(noisy, radius_mm=0.8).array)
    assert spec.stat().st_size > 1000
    rc = main(["filter", str(files["noisy"]), str(tmp_path / "z.nii.gz"), "-m", "zscore", "-p", f"mask={files['roi']}"])
    assert rc == 0
    assert main(["filter", str(files["noisy"]), str(dst), "--method", "gausian"]) == 2
    assert "did you mean 'gaussian'" in _one_error_line(capsys)
    assert main(["filter", str(files["noisy"]), str(tmp_path / "b.nii.gz"), "-m", "gaussian", "-p", "sigma_mm=-2"]) == 2
    assert "sigma_mm" in _one_error_line(capsys)
    assert main(["filter", str(files["noisy"]), str(tmp_path / "c.nii.gz"), "-m", "gaussian", "-p", "nonsense"]) == 2
    assert "NAME=VALUE" in _one_error_line(capsys)


def test_cli_quality_json(files, capsys) -> None:
    rc = main(["quality", str(files["clean"]), str(files["noisy"]), "--roi", str(files["roi"]), "--json"])
    assert rc == 0
    got = json.loads(capsys.readouterr().out)
    assert {"mse", "rmse", "psnr", "ssim", "entropy", "noise_sigma", "cnr", "snr", "data_range"} <= set(got)
    clean, noisy = io.read(files["clean"]), io.read(files["noisy"])
    assert got["psnr"] == pytest.approx(psnr(clean, noisy, data_range="reference"))
    assert got["data_range"] == pytest.approx(150.0)
    rc = main(["quality", str(files["clean"]), str(files["noisy"]), "--data-range", "300", "--mask", str(files["roi"]), "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["data_range"] == 300.0
    assert main(["quality", str(files["clean"]), str(files["noisy"]), "--data-range", "abc"]) == 2
    assert "--data-range" in _one_error_line(capsys)


def test_cli_denoise_compare(files, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp"
    rc = main(["denoise-compare", str(files["clean"]), "--noise", "rician:0.05", "--methods", "gaussian,wiener,nlm",
               "--param", "nlm.search_radius_mm=2", "--roi", str(files["roi"]), "--seed", "3", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "best psnr_db" in printed
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == ["noisy (no filter)", "gaussian", "wiener", "nlm"]
    assert json.loads(rows[3]["params"]) == {"search_radius_mm": 2}
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["best"]) == {"psnr_db", "ssim", "cnr", "time_s"}
    assert summary["settings"]["noise"] == "rician:0.05" and summary["settings"]["seed"] == 3
    assert (out / "figure.png").stat().st_size > 1000
    assert main(["denoise-compare", str(files["clean"]), "--noise", "speckle:0.1", "-o", str(tmp_path / "x")]) == 2
    assert "unknown kind" in _one_error_line(capsys)
    assert main(["denoise-compare", str(files["clean"]), "--methods", "gaussian", "-o", str(out)]) == 2
    assert "not an empty folder" in _one_error_line(capsys)
    rc = main(["denoise-compare", str(files["clean"]), "--noisy", str(files["noisy"]), "--methods", "median",
               "-o", str(tmp_path / "pair")])
    assert rc == 0


def test_cli_quality_json_is_strict_for_identical_images(files, capsys) -> None:
    import json

    assert main(["quality", str(files["clean"]), str(files["clean"]), "--json", "--data-range", "reference"]) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert out["mse"] == 0.0 and out["psnr"] is None and out["non_finite"] == {"psnr": "inf"}
    assert out["ssim"] == pytest.approx(1.0)


def test_compare_images_is_what_the_quality_command_prints(files, capsys) -> None:
    """The library call behind `medimg quality`: each value is the registered metric's own, the
    CLI prints the same row."""
    from medimg.errors import UnknownNameError
    from medimg.quality import compare_images, noise_sigma

    clean, noisy, roi = io.read(files["clean"]), io.read(files["noisy"]), io.read(files["roi"])
    row = compare_images(clean, noisy, rois=roi, rician=False)
    assert list(row) == [*quality.full_reference_metrics(), *quality.no_reference_metrics(), "cnr", "snr", "data_range"]
    assert row["mse"] == mse(clean, noisy)
    assert row["ssim"] == ssim(clean, noisy, data_range="reference")
    assert row["entropy"] == entropy(noisy) and row["noise_sigma"] == noise_sigma(noisy)
    a = clean.with_array((roi.array == 1).astype(np.uint8), meta={})
    b = clean.with_array((roi.array == 2).astype(np.uint8), meta={})
    assert row["cnr"] == cnr(noisy, a, b) and row["snr"] == snr(noisy, a, noise=b)
    assert main(["quality", str(files["clean"]), str(files["noisy"]), "--roi", str(files["roi"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(row)
    only = compare_images(clean, noisy, metrics=["psnr", "cnr"], rois=roi, data_range=300.0)
    assert list(only) == ["psnr", "cnr", "data_range"] and only["psnr"] == psnr(clean, noisy, data_range=300.0)
    with pytest.raises(UnknownNameError, match="did you mean 'ssim'"):
        compare_images(clean, noisy, metrics=["ssmi"])
    with pytest.raises(ParameterError, match="cnr and snr need"):
        compare_images(clean, noisy, metrics=["snr"])
    with pytest.raises(ParameterError, match="label 1"):
        compare_images(clean, noisy, rois=roi.with_array(np.ones(roi.shape, np.uint8)))
