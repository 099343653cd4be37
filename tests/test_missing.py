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
    for est, (train, test) in zip(res["estimator"], cv.split(x), strict=True):
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
