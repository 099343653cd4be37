"""Cross-validated AUC: known answers, agreement with scikit-learn, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.core.registry import registry
from medimg.errors import ParameterError, UnknownNameError
from medimg.ml import CVResult, cross_validated_auc, roc_auc
from medimg.ml.classify import _bootstrap_ci


def _separable(n: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    x = np.column_stack([y * 4.0 + rng.normal(0, 0.5, n), rng.normal(0, 1, n)])
    return x, y


def test_separable_data_gives_auc_one():
    x, y = _separable()
    res = cross_validated_auc(x, y, seed=1, n_bootstrap=200)
    assert isinstance(res, CVResult)
    assert res.auc > 0.99
    assert res.ci[0] > 0.95
    assert all(a > 0.95 for a in res.fold_aucs)
    assert len(res.fold_aucs) == 5


def test_noise_labels_ci_covers_chance():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(150, 4))
    y = rng.integers(0, 2, 150)
    res = cross_validated_auc(x, y, seed=3, n_bootstrap=500)
    assert res.ci[0] < 0.5 < res.ci[1]
    assert res.n_bootstrap_used == 500


def test_agrees_with_scikit_learn_and_folds_partition_samples():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    x = rng.normal(size=(90, 3))
    y = (x[:, 0] + rng.normal(0, 1.0, 90) > 0.3).astype(int)
    res = cross_validated_auc(x, y, seed=2, n_splits=4, n_bootstrap=0)
    assert res.auc == pytest.approx(roc_auc_score(y, res.probability))
    for k in range(4):
        test = res.fold == k
        assert res.fold_aucs[k] == pytest.approx(roc_auc_score(y[test], res.probability[test]))
        # Stratified: each fold's positive fraction is close to the whole set's.
        assert abs(y[test].mean() - y.mean()) < 0.06
    assert sorted(np.bincount(res.fold).tolist()) == [22, 22, 23, 23]
    assert np.all((res.probability >= 0) & (res.probability <= 1))
    assert res.fpr[0] == 0 and res.tpr[-1] == 1
    assert np.isnan(res.ci).all() and res.n_bootstrap_used == 0


def test_mann_whitney_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 300)
    score = rng.integers(0, 5, 300).astype(float)  # many ties
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score))


def test_bootstrap_matches_a_plain_loop():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 60).astype(bool)
    p = rng.random(60)
    (lo, hi), used = _bootstrap_ci(y, p, n_bootstrap=300, confidence=0.9, seed=9)
    idx = np.random.default_rng(9).integers(0, 60, size=(300, 60))
    ref = [roc_auc_score(y[i], p[i]) for i in idx if 0 < y[i].sum() < 60]
    assert used == len(ref)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(ref, [0.05, 0.95])))


def test_deterministic_given_seed():
    x, y = _separable(seed=2)
    x = x + np.random.default_rng(0).normal(0, 2.0, x.shape)  # make it imperfect
    a = cross_validated_auc(x, y, seed=7, n_bootstrap=100)
    b = cross_validated_auc(x, y, seed=7, n_bootstrap=100)
    c = cross_validated_auc(x, y, seed=8, n_bootstrap=100)
    np.testing.assert_array_equal(a.probability, b.probability)
    np.testing.assert_array_equal(a.fold, b.fold)
    assert a.ci == b.ci and a.auc == b.auc
    assert not np.array_equal(a.fold, c.fold)


def test_dataframe_series_and_positive_label():
    pd = pytest.importorskip("pandas")
    x, y = _separable()
    frame = pd.DataFrame(x, columns=["volume_mm3", "noise"])
    labels = pd.Series(np.where(y == 1, "malignant", "benign"))
    res = cross_validated_auc(frame, labels, seed=0, n_bootstrap=50)
    assert res.feature_names == ("volume_mm3", "noise")
    assert res.positive_label == "malignant" and res.classes == ("benign", "malignant")
    flipped = cross_validated_auc(frame, labels, seed=0, n_bootstrap=50, positive_label="benign")
    assert flipped.auc == pytest.approx(res.auc, abs=1e-9)
    np.testing.assert_array_equal(flipped.y, 1 - res.y)
    summary = res.to_dict()
    assert summary["positive_label"] == "malignant" and summary["n_samples"] == 80
    with pytest.raises(ParameterError, match="different indexes"):
        cross_validated_auc(frame, labels.set_axis(range(1, 81)), seed=0)


def test_models_from_registry():
    assert {"logistic", "random_forest"} <= set(registry("classifiers").names())
    x, y = _separable()
    rf = cross_validated_auc(
        x, y, seed=0, model="random_forest", model_params={"n_estimators": 25}, n_bootstrap=50
    )
    assert rf.auc > 0.95 and rf.model_params["n_estimators"] == 25
    imbalanced = np.r_[0:40, 40:50]  # 40 negatives, 10 positives
    bal = cross_validated_auc(
        x[imbalanced],
        y[imbalanced],
        seed=0,
        model_params={"class_weight": "balanced"},
        n_bootstrap=0,
    )
    assert bal.model_params == {"C": 1.0, "class_weight": "balanced", "max_iter": 1000}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"labels": np.zeros(80)}, ParameterError, "exactly two classes"),
        (
            {"labels": np.r_[np.zeros(40), np.ones(39)]},
            ParameterError,
            "79 values but features has 80",
        ),
        ({"n_splits": 50}, ParameterError, "n_splits"),
        ({"n_splits": 1}, ParameterError, "n_splits"),
        ({"model": "logistc"}, UnknownNameError, "did you mean 'logistic'"),
        ({"model_params": {"C": -1.0}}, ParameterError, "C must be > 0"),
        ({"model_params": {"class_weight": "heavy"}}, ParameterError, "class_weight"),
        ({"model_params": {"penalty": "l1"}}, ParameterError, "no parameter 'penalty'"),
        ({"features": np.zeros(80)}, ParameterError, "2-D"),
        ({"features": np.full((80, 2), np.nan)}, ParameterError, "NaN"),
        ({"confidence": 1.5}, ParameterError, "confidence"),
    ],
)
def test_bad_input(kwargs, error, match):
    x, y = _separable()
    args = {"features": x, "labels": y, "seed": 0, "n_bootstrap": 0, **kwargs}
    with pytest.raises(error, match=match):
        cross_validated_auc(args.pop("features"), args.pop("labels"), **args)
