"""Missing data: imputers fitted inside folds (no leakage), sensitivity table, inpainting and
slice interpolation against known truth."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.missing import IMPUTERS, imputation_pipeline, imputation_sensitivity, make_imputer

pytest.importorskip("sklearn")


def _table(seed: int = 0, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1))
    x = np.hstack([z + 0.3 * rng.normal(size=(n, 1)) for _ in range(4)])
    y = (z[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    full = x.copy()
    x[rng.random(x.shape) < 0.2] = np.nan
    return x, y, full


@pytest.mark.parametrize("method", IMPUTERS)
def test_imputers_fill_every_nan_and_match_sklearn(method: str) -> None:
    x, _, full = _table()
    out = make_imputer(method).fit_transform(x)
    assert np.isfinite(out).all() and np.array_equal(out[~np.isnan(x)], x[~np.isnan(x)])
    if method in ("mean", "median"):
        stat = np.nanmean if method == "mean" else np.nanmedian
        col = stat(x, axis=0)
        rows, cols = np.nonzero(np.isnan(x))
        assert np.allclose(out[rows, cols], col[cols])
    if method in ("knn", "iterative"):  # correlated columns: better than the column mean
        mean_err = np.abs(make_imputer("mean").fit_transform(x) - full)[np.isnan(x)].mean()
        assert np.abs(out - full)[np.isnan(x)].mean() < 0.8 * mean_err


def test_imputer_in_a_pipeline_is_fitted_on_training_folds_only() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, cross_validate

    x, y, _ = _table(1)
    cv = KFold(4, shuffle=True, random_state=0)
    res = cross_validate(imputation_pipeline("mean", LogisticRegression()), x, y, cv=cv, return_estimator=True)
    for est, (train, _test) in zip(res["estimator"], cv.split(x), strict=True):
        stats = est.named_steps["impute"].statistics_
        assert np.allclose(stats, np.nanmean(x[train], axis=0))
        assert not np.allclose(stats, np.nanmean(x, axis=0))  # the validation fold did not leak


def test_sensitivity_table_has_one_row_per_method_and_a_range() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    from medimg.evaluation import binary_metrics

    x, y, _ = _table(2)

    def analysis(imputer):
        from sklearn.pipeline import make_pipeline

        p = cross_val_predict(make_pipeline(imputer, LogisticRegression()), x, y, cv=5, method="predict_proba")[:, 1]
        return binary_metrics(y, p, metrics=["auc"], n_bootstrap=200)

    keep = ~np.isnan(x).any(axis=1)

    def complete_case():
        p = cross_val_predict(LogisticRegression(), x[keep], y[keep], cv=5, method="predict_proba")[:, 1]
        return binary_metrics(y[keep], p, metrics=["auc"], n_bootstrap=200)

    table = imputation_sensitivity(analysis, complete_case=complete_case)
    assert list(table["method"]) == [*IMPUTERS, "complete-case", "range"]
    assert {"auc", "auc_ci_low", "auc_ci_high"} <= set(table.columns)
    aucs = table["auc"].to_numpy()[:-1]
    assert table["auc"].iloc[-1] == pytest.approx(aucs.max() - aucs.min())
    assert (aucs > 0.7).all()


def test_unknown_imputer_is_a_user_error() -> None:
    from medimg.errors import UserInputError

    with pytest.raises(UserInputError):
        make_imputer("bogus")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- images
def _img(a: np.ndarray):
    from medimg.core.image import Image

    return Image(a)


def test_inpainting_known_answers() -> None:
    pytest.importorskip("skimage")
    from medimg.missing.images import inpaint

    yy, xx = np.mgrid[0:40, 0:40].astype(float)
    hole = np.zeros((40, 40), np.uint8)
    hole[15:25, 12:22] = 1
    ramp = 2.0 * yy + 3.0 * xx  # harmonic and biharmonic: recovered exactly by the smooth fills
    for method in ("biharmonic", "tv"):
        out = np.asarray(inpaint(_img(ramp), _img(hole), method=method).array)
        assert np.abs(out - ramp)[hole > 0].max() < (1e-6 if method == "biharmonic" else 1.0)
        assert np.array_equal(out[hole == 0], ramp[hole == 0])
    stripes = np.where((xx // 4) % 2 == 0, 100.0, 0.0)  # a texture: the exemplar fill copies it
    ex = np.asarray(inpaint(_img(stripes), _img(hole), method="exemplar", patch=9).array)
    bh = np.asarray(inpaint(_img(stripes), _img(hole), method="biharmonic").array)
    assert np.abs(ex - stripes)[hole > 0].max() == 0.0
    assert np.abs(bh - stripes)[hole > 0].mean() > 10


def test_inpainting_brain_beats_mean_fill() -> None:
    pytest.importorskip("skimage")
    from pathlib import Path

    from medimg import io
    from medimg.missing.images import inpaint

    im = io.read(Path(__file__).parent / "data" / "mri-brain1" / "brain1_roi_image.nrrd")
    a = np.asarray(im.array[4], float)
    hole = np.zeros(a.shape, np.uint8)
    hole[40:50, 30:40] = 1
    mean_rmse = np.sqrt(np.mean((a[hole == 0].mean() - a[hole > 0]) ** 2))
    for method in ("biharmonic", "tv"):
        out = np.asarray(inpaint(_img(a), _img(hole), method=method).array)
        assert np.sqrt(np.mean((out - a)[hole > 0] ** 2)) < 0.7 * mean_rmse


def test_slice_interpolation_on_brain1_reports_psnr_ssim() -> None:
    """brain1 (6.5 mm slices): remove slices 1, 3, 5, 7 and rebuild them from their neighbours."""
    pytest.importorskip("skimage")
    from pathlib import Path

    from medimg import io
    from medimg.missing.images import evaluate_slice_interpolation, interpolate_slices

    im = io.read(Path(__file__).parent / "data" / "mri-brain1" / "brain1_roi_image.nrrd")
    rows = {r["method"]: r for r in evaluate_slice_interpolation(im)}
    assert rows["linear"]["slices"] == [1, 3, 5, 7]
    assert rows["linear"]["psnr_db"] > 20 and rows["flow"]["psnr_db"] > rows["linear"]["psnr_db"]
    assert rows["flow"]["ssim"] > rows["linear"]["ssim"] > 0.5
    # linear interpolation of a linear-in-z volume is exact; known slices untouched
    z = np.arange(6.0)[:, None, None] * np.ones((6, 8, 8))
    out = np.asarray(interpolate_slices(_img(z), [2, 3]).array)
    assert np.allclose(out, z)


def test_shape_based_interpolation_of_a_growing_disc() -> None:
    from medimg.missing.images import interpolate_slices

    yy, xx = np.mgrid[0:41, 0:41]
    radii = [6, 8, 10, 12, 14]
    labels = np.stack([((yy - 20) ** 2 + (xx - 20) ** 2 <= r * r).astype(np.uint8) for r in radii])
    shape = np.asarray(interpolate_slices(_img(labels), [2], method="shape").array)[2]
    linear = np.asarray(interpolate_slices(_img(labels.astype(float)), [2]).array)[2] >= 0.5
    truth = labels[2] > 0
    dice = lambda a, b: 2 * (a & b).sum() / (a.sum() + b.sum())  # noqa: E731
    assert dice(shape > 0, truth) > 0.95 and dice(shape > 0, truth) >= dice(linear, truth)
