"""Feature-table models: leakage (resampling, patients, nested tuning), reproducibility, known
answers for the selectors, agreement with hand-written scikit-learn, and `medimg model`."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("imblearn")

from medimg.errors import ParameterError  # noqa: E402
from medimg.ml.pipelines import build_pipeline  # noqa: E402
from medimg.ml.validation import cross_validate  # noqa: E402


def _patients(n_patients: int = 30, per: int = 3, seed: int = 0, prevalence: float = 0.3):
    """Rows = lesions, several per patient; the label is the patient's; feature 0 carries signal."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n_patients), per)
    y = (rng.random(n_patients) < prevalence).astype(int)[pid]
    patient_effect = rng.normal(0, 1, (n_patients, 4))[pid]
    x = rng.normal(size=(pid.size, 4)) + patient_effect
    x[:, 0] += 1.5 * y
    return x, y, pid


def _row_index(x: np.ndarray):
    lookup = {row.tobytes(): i for i, row in enumerate(np.ascontiguousarray(x))}

    def rows_of(sub: np.ndarray) -> np.ndarray:
        return np.array([lookup.get(np.ascontiguousarray(r).tobytes(), -1) for r in sub])

    return rows_of


class _Spy:
    """Records the raw rows every StandardScaler fit sees and the rows every SMOTE call gets
    (recovered from the scaled values with the preceding scaler fit's mean and scale)."""

    def __init__(self, monkeypatch, x):
        from imblearn.over_sampling import SMOTE
        from sklearn.preprocessing import StandardScaler

        self.rows_of = _row_index(x)
        self.scaler_fits: list[np.ndarray] = []
        self.sampler_calls: list[np.ndarray] = []
        spy = self
        fit, resample = StandardScaler.fit, SMOTE.fit_resample

        def scaler_fit(est, X, y=None, sample_weight=None):
            out = fit(est, X, y, sample_weight)
            spy.scaler_fits.append(spy.rows_of(np.asarray(X, dtype=np.float64)))
            spy._last = est
            return out

        def sampler_fit_resample(est, X, y, **kw):
            raw = np.asarray(X) * spy._last.scale_ + spy._last.mean_
            idx = np.array([_nearest(x, r) for r in raw])
            spy.sampler_calls.append(idx)
            return resample(est, X, y, **kw)

        monkeypatch.setattr(StandardScaler, "fit", scaler_fit)
        monkeypatch.setattr(SMOTE, "fit_resample", sampler_fit_resample)


def _nearest(x: np.ndarray, row: np.ndarray) -> int:
    d = np.abs(x - row).max(axis=1)
    i = int(np.argmin(d))
    return i if d[i] < 1e-8 else -1


def _within_some_training_set(rows: np.ndarray, splits) -> bool:
    """True when ``rows`` are all rows of one outer fold's training set (none of its test rows)."""
    return (rows >= 0).all() and any(np.isin(rows, train).all() and not np.isin(rows, test).any()
                                     for train, test in splits)


def _whole_groups(rows: np.ndarray, groups: np.ndarray, universe: np.ndarray) -> bool:
    """True when, within ``universe`` rows, every group is either wholly in ``rows`` or wholly out."""
    inside = np.isin(universe, rows)
    for g in np.unique(groups[universe]):
        member = inside[groups[universe] == g]
        if member.any() and not member.all():
            return False
    return True


# --------------------------------------------------------------------------- leakage
def test_smote_sees_only_training_rows_of_each_fold(monkeypatch):
    x, y, pid = _patients()
    spy = _Spy(monkeypatch, x)
    cv = cross_validate(x, y, groups=pid, model="logistic", imbalance="smote", folds=4, seed=3)
    assert len(spy.sampler_calls) == 4
    for rows in spy.sampler_calls:
        assert _within_some_training_set(rows, cv.splits)
        # SMOTE got exactly one fold's training rows: its validation rows never reach it.
        assert any(set(rows) == set(train) for train, _ in cv.splits)


def test_leakage_check_catches_smote_before_the_split(monkeypatch):
    """The check above fails for the classic mistake: oversampling the whole table, then CV."""
    from imblearn.over_sampling import SMOTE
    from sklearn.preprocessing import StandardScaler

    x, y, pid = _patients()
    spy = _Spy(monkeypatch, x)
    cv = cross_validate(x, y, groups=pid, folds=4, seed=3)  # only for its splits
    spy._last = StandardScaler().fit(x)
    spy.sampler_calls.clear()
    SMOTE(random_state=0).fit_resample(spy._last.transform(x), y)  # leaky: before splitting
    assert not _within_some_training_set(spy.sampler_calls[0], cv.splits)


@pytest.mark.parametrize("tune", ["grid", "bayes"])
def test_nested_tuning_never_sees_the_outer_test_fold_and_keeps_patients_whole(monkeypatch, tune):
    x, y, pid = _patients()
    spy = _Spy(monkeypatch, x)
    cv = cross_validate(x, y, groups=pid, model="logistic", imbalance="smote", tune_method=tune, folds=3,
                        inner_folds=3, n_trials=3, grid_points=2, seed=1)
    everything = np.arange(y.size)
    for train, test in cv.splits:  # outer: no patient on both sides
        assert not set(pid[train]) & set(pid[test])
    inner_fits = [r for r in spy.scaler_fits if not any(set(r) == set(t) for t, _ in cv.splits)]
    assert len(inner_fits) >= 3 * 3  # the inner search fitted many times ...
    for rows in spy.scaler_fits:  # ... always inside one outer training set, patients whole
        assert _within_some_training_set(rows, cv.splits)
        assert _whole_groups(rows, pid, everything)
    for rows in spy.sampler_calls:
        assert _within_some_training_set(rows, cv.splits)
    assert all(set(p) == {"model__C"} for p in cv.best_params)


def test_group_check_catches_a_split_that_ignores_patients():
    from sklearn.model_selection import StratifiedKFold

    x, y, pid = _patients()
    train, _ = next(StratifiedKFold(3, shuffle=True, random_state=0).split(x, y))
    assert not _whole_groups(train, pid, np.arange(y.size))


def test_leakage_check_catches_tuning_on_all_rows(monkeypatch):
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold

    x, y, pid = _patients()
    spy = _Spy(monkeypatch, x)
    cv = cross_validate(x, y, groups=pid, folds=3, seed=1)
    spy.scaler_fits.clear()
    GridSearchCV(build_pipeline("logistic"), {"model__C": [0.1, 1.0]}, cv=StratifiedGroupKFold(3),
                 scoring="roc_auc").fit(x, y, groups=pid)  # leaky: the search sees every outer test fold
    assert not all(_within_some_training_set(r, cv.splits) for r in spy.scaler_fits)


# --------------------------------------------------------------------------- reproducibility
def test_a_seed_reproduces_a_run_exactly_and_another_seed_differs():
    x, y, pid = _patients(seed=4)
    kw = dict(groups=pid, model="rf", imbalance="adasyn", folds=3, model_params={"n_estimators": 10})
    a = cross_validate(x, y, seed=7, **kw)
    b = cross_validate(x, y, seed=7, **kw)
    c = cross_validate(x, y, seed=8, **kw)
    np.testing.assert_array_equal(a.y_score, b.y_score)
    np.testing.assert_array_equal(a.fold, b.fold)
    assert not np.array_equal(a.y_score, c.y_score)
    kw = dict(groups=pid, imbalance="smote", tune_method="random", n_trials=2, folds=3)
    a, b = (cross_validate(x, y, seed=7, **kw) for _ in range(2))
    np.testing.assert_array_equal(a.y_score, b.y_score)
    assert a.best_params == b.best_params


# --------------------------------------------------------------------------- known answers
def test_matches_the_same_pipeline_written_by_hand():
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import Pipeline
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.preprocessing import StandardScaler

    x, y, pid = _patients(seed=2)
    cv = cross_validate(x, y, groups=pid, imbalance="smote", folds=4, seed=5)
    hand = Pipeline([("scale", StandardScaler()), ("sampler", SMOTE(random_state=5, k_neighbors=5)),
                     ("model", LogisticRegression(max_iter=1000, random_state=5))])
    splitter = StratifiedGroupKFold(4, shuffle=True, random_state=5)
    p = cross_val_predict(hand, x, y, groups=pid, cv=splitter, method="predict_proba")[:, 1]
    np.testing.assert_allclose(cv.y_score, p, rtol=1e-10)
    assert cv.auc == pytest.approx(roc_auc_score(y, p))


def test_class_weights_equal_scikit_learn_balanced_weights():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y, _ = _patients(seed=6)
    ours = build_pipeline("logistic", imbalance="weights").fit(x, y)
    z = StandardScaler().fit_transform(x)
    w = np.where(y == 1, y.size / (2 * y.sum()), y.size / (2 * (y.size - y.sum())))
    ref = LogisticRegression(max_iter=1000).fit(z, y, sample_weight=w)
    np.testing.assert_allclose(ours.named_steps["model"].coef_, ref.coef_, rtol=1e-4, atol=1e-6)


def test_undersampling_balances_the_training_rows():
    x, y, _ = _patients(seed=1, prevalence=0.25)
    pipe = build_pipeline("logistic", imbalance="undersample", seed=0)
    xs, ys = pipe.named_steps["sampler"].fit_resample(x, y)
    assert ys.sum() == (ys == 0).sum() == y.sum()


def test_correlation_filter_and_mrmr_drop_redundant_copies():
    from medimg.ml._selectors import CorrelationFilter, MRMRSelector

    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 2, n)
    a = y + rng.normal(0, 0.5, n)          # strong signal
    b = y + rng.normal(0, 0.8, n)          # weaker, independent signal
    x = np.column_stack([a, a * 2 + 0.01 * rng.normal(size=n), b, rng.normal(size=n)])
    kept = CorrelationFilter(threshold=0.9).fit(x, y).get_support(indices=True)
    assert 2 in kept and 3 in kept and len({0, 1} & set(kept)) == 1
    chosen = MRMRSelector(k=2).fit(x, y).ranking_
    assert chosen[0] in (0, 1) and chosen[1] == 2  # the copy of `a` is redundant, `b` is not


def test_lasso_and_variance_selection_keep_the_signal():
    rng = np.random.default_rng(1)
    n = 200
    y = rng.integers(0, 2, n)
    x = np.column_stack([y * 2 + rng.normal(size=n), rng.normal(size=(n, 5)), np.full(n, 3.0)])
    pipe = build_pipeline("logistic", selection=["variance", "lasso"], lasso_C=0.05, n_features=7).fit(x, y)
    assert not pipe.named_steps["variance"].get_support()[-1]
    assert pipe.named_steps["lasso"].get_support()[0]


# --------------------------------------------------------------------------- bad input
def test_bad_input_is_named():
    x, y, pid = _patients()
    with pytest.raises(ParameterError, match="groups"):
        cross_validate(x, y, groups=pid[:-1])
    with pytest.raises(ParameterError, match="folds=40"):
        cross_validate(x, y, groups=pid, folds=40)
    with pytest.raises(ParameterError, match="imbalance"):
        cross_validate(x, y, imbalance="smot")
    with pytest.raises(ParameterError, match="class weights"):
        build_pipeline("easy_ensemble", imbalance="weights")
    x2 = x.copy()
    x2[0, 1] = np.nan
    with pytest.raises(ParameterError, match="impute"):
        cross_validate(x2, y)
    assert np.isfinite(cross_validate(x2, y, impute="median", folds=3).y_score).all()


# --------------------------------------------------------------------------- embeddings
def test_embeddings_pca_known_plane_and_lda_separates(tmp_path):
    from medimg.ml.reduce import embed

    rng = np.random.default_rng(0)
    t = rng.normal(size=(80, 2))
    x = np.column_stack([t[:, 0], t[:, 1], t[:, 0] + t[:, 1], t[:, 0] - t[:, 1]])  # rank 2
    e = embed(x, "pca")
    assert sum(e.explained_variance_ratio) == pytest.approx(1.0, abs=1e-9)
    y = np.repeat([0, 1], 40)
    z = rng.normal(size=(80, 5))
    z[:, 2] += 3 * y
    lda = embed(z, "lda", labels=y)
    # LD1 is in within-class SD units: the class means lie about the Mahalanobis distance (3) apart
    assert 2.5 < abs(lda.points[y == 1, 0].mean() - lda.points[y == 0, 0].mean()) < 4
    out = lda.plot(np.where(y == 1, "malignant", "benign"), tmp_path / "lda.png", legend_title="label")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ts = embed(z[:30], "tsne", seed=0, perplexity=5)
    assert ts.points.shape == (30, 2)


# --------------------------------------------------------------------------- CLI
@pytest.fixture
def feature_csv(tmp_path):
    import pandas as pd

    x, y, pid = _patients(n_patients=24, seed=9)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    frame.insert(0, "case", [f"c{i:03d}" for i in range(len(y))])
    frame["patient"] = [f"p{p}" for p in pid]
    frame["dx"] = np.where(y == 1, "malignant", "benign")
    frame["site"] = np.where(np.arange(len(y)) % 2, "A", "B")
    frame["status"] = "ok"
    frame["prov.config"] = "{}"
    path = tmp_path / "features.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_medimg_model_writes_predictions_metrics_and_a_loadable_model(feature_csv, tmp_path):
    import pandas as pd

    from medimg.cli.main import main
    from medimg.ml.models import load_pipeline

    path, frame = feature_csv
    out = tmp_path / "run"
    rc = main(["model", str(path), "--label", "dx", "--group", "patient", "--keep", "site", "--model", "gb",
               "--imbalance", "smote", "--folds", "3", "--bootstrap", "200", "--seed", "2", "-o", str(out)])
    assert rc == 0
    pred = pd.read_csv(out / "predictions.csv")
    assert list(pred.columns) == ["case", "patient", "site", "y_true", "y_score", "y_pred", "fold"]
    assert len(pred) == len(frame) and (pred["case"] == frame["case"]).all()
    assert set(pred["y_true"]) == {0, 1} and ((pred["dx"] if "dx" in pred else frame["dx"]) == "malignant").eq(
        pred["y_true"] == 1).all()
    assert pred["fold"].between(0, 2).all()
    for _, rows in pred.groupby("patient"):
        assert rows["fold"].nunique() == 1
    metrics = json.loads((out / "metrics.json").read_text())
    auc = metrics["metrics"]["auc"]
    assert auc["ci"][0] <= auc["value"] <= auc["ci"][1]
    assert metrics["bootstrap"]["clustered_by"] == "group"
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    model = load_pipeline(out / "model")
    assert model.config["seed"] == 2 and len(model.config["data_sha256"]) == 64
    assert "scikit-learn" in model.config["software"]
    p = model.predict_proba(frame)
    assert p.shape == (len(frame),) and np.all((p >= 0) & (p <= 1))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"][0]["sha256"] and manifest["seed"] == 2


def test_medimg_model_bad_input_one_line_exit_2(feature_csv, tmp_path, capsys):
    from medimg.cli.main import main

    path, _ = feature_csv
    assert main(["model", str(path), "--label", "diagnosis", "-o", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "diagnosis" in err
    assert main(["model", str(path), "--label", "dx", "--model", "svn", "-o", str(tmp_path / "b")]) == 2
    assert "did you mean 'svm'" in capsys.readouterr().err
    assert main(["model", str(path), "--label", "dx", "--tune", "bayesian", "-o", str(tmp_path / "c")]) == 2
    assert "--tune: unknown 'bayesian'" in capsys.readouterr().err
    assert main(["model", str(path), "--label", "dx", "-o", str(tmp_path / "d")]) == 2
    assert "non-numeric column(s) ['patient', 'site']" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abcd")
