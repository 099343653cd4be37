"""Known-answer tests of medimg.evaluation's classification statistics.

References: scikit-learn metrics, scipy (Mann-Whitney U, bootstrap), an independent slow
implementation of DeLong's structural components, the published Hanley & McNeil (1982) worked
example, and repeated simulations with a known true AUC (interval coverage).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from medimg.errors import ParameterError
from medimg.evaluation.calibration import (
    calibration,
    reliability_curve,
    threshold_for_sensitivity,
    threshold_for_specificity,
    youden_threshold,
)
from medimg.evaluation.classification import (
    BinaryData,
    _weighted_metrics,
    average_precision,
    binary_metrics,
    bootstrap_ci,
    bootstrap_weights,
    mean_ci,
    roc_auc,
    roc_curve,
    summarize_cases,
)
from medimg.evaluation.delong import delong_auc, delong_components, delong_test

pytest.importorskip("sklearn")


def _binormal(rng: np.random.Generator, n_pos: int, n_neg: int, d: float) -> tuple[np.ndarray, np.ndarray]:
    """Scores N(d, 1) for positives, N(0, 1) for negatives: true AUC = Phi(d / sqrt(2))."""
    y = np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)]
    s = np.r_[rng.normal(d, 1, n_pos), rng.normal(0, 1, n_neg)]
    return y, s


# ---------------------------------------------------------------------- metrics vs scikit-learn
@pytest.mark.parametrize("ties", [False, True])
def test_metrics_match_scikit_learn(ties: bool) -> None:
    from sklearn import metrics as m

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = np.clip(rng.random(500) * 0.8 + 0.25 * y, 0, 1)
    if ties:
        s = np.round(s, 1)
    r = binary_metrics(y, s, n_bootstrap=0)
    p = s >= 0.5
    assert r["auc"].value == pytest.approx(m.roc_auc_score(y, s), abs=1e-12)
    assert r["auc_pr"].value == pytest.approx(m.average_precision_score(y, s), abs=1e-12)
    assert r["accuracy"].value == pytest.approx(m.accuracy_score(y, p))
    assert r["sensitivity"].value == pytest.approx(m.recall_score(y, p))
    assert r["specificity"].value == pytest.approx(m.recall_score(y, p, pos_label=0))
    assert r["precision"].value == pytest.approx(m.precision_score(y, p))
    assert r["npv"].value == pytest.approx(m.precision_score(y, p, pos_label=0))
    assert r["f1"].value == pytest.approx(m.f1_score(y, p))
    assert r["balanced_accuracy"].value == pytest.approx(m.balanced_accuracy_score(y, p))
    assert r["brier"].value == pytest.approx(m.brier_score_loss(y, s))
    assert all(math.isnan(v.ci[0]) for v in r.values())
    fpr, tpr, thr = roc_curve(y, s)
    f2, t2, th2 = m.roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(fpr, f2) and np.allclose(tpr, t2) and np.allclose(thr[1:], th2[1:])


def test_explicit_y_pred_and_threshold() -> None:
    y = np.array([1, 1, 1, 0, 0, 0])
    s = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3])
    r = binary_metrics(y, s, threshold=0.25, n_bootstrap=0, metrics=["sensitivity", "specificity"])
    assert r["sensitivity"].value == pytest.approx(2 / 3) and r["specificity"].value == pytest.approx(1 / 3)
    r = binary_metrics(y, y_pred=[1, 0, 0, 0, 0, 1], n_bootstrap=0)
    assert set(r) == {"accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "npv", "f1"}
    assert r["precision"].value == pytest.approx(0.5)


def test_bad_inputs_raise_parameter_error() -> None:
    with pytest.raises(ParameterError, match="only 0 and 1"):
        binary_metrics([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ParameterError, match="NaN"):
        binary_metrics([0, 1, 1], [0.1, np.nan, 0.3])
    with pytest.raises(ParameterError, match="must match"):
        binary_metrics([0, 1, 1], [0.1, 0.3])
    with pytest.raises(ParameterError, match="n_bootstrap"):
        binary_metrics([0, 1], [0.1, 0.3], n_bootstrap=-1)
    with pytest.raises(ParameterError, match="brier"):
        binary_metrics([0, 1], [-1.0, 3.0], metrics=["brier"])


# ---------------------------------------------------------------------- resampling
def test_weighted_resample_equals_metric_on_the_explicit_resample() -> None:
    from sklearn import metrics as m

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 80).astype(bool)
    s = np.round(rng.random(80) + 0.3 * y, 1)
    data = BinaryData.from_arrays(y, s, threshold=0.6)
    w = bootstrap_weights(data.n, 5, np.random.default_rng(0), strata=data.y.astype(int))
    vals = _weighted_metrics(data, w, ("auc", "auc_pr", "f1"))
    ys, ss = y[data.order], s[data.order]
    for r in range(5):
        idx = np.repeat(np.arange(data.n), w[r].astype(int))
        assert vals["auc"][r] == pytest.approx(m.roc_auc_score(ys[idx], ss[idx]))
        assert vals["auc_pr"][r] == pytest.approx(m.average_precision_score(ys[idx], ss[idx]))
        assert vals["f1"][r] == pytest.approx(m.f1_score(ys[idx], ss[idx] >= 0.6))
        # stratified: every resample keeps the class counts
        assert w[r][data.y].sum() == data.y.sum() and w[r].sum() == data.n


def test_cluster_weights_are_constant_within_a_case() -> None:
    cluster = np.repeat(np.arange(30), 3)
    w = bootstrap_weights(90, 50, np.random.default_rng(1), cluster=cluster)
    assert np.all(w.reshape(50, 30, 3).std(axis=2) == 0)
    assert np.all(w.sum(axis=1) == 90)


def test_clustered_bootstrap_widens_ci_on_duplicated_cases() -> None:
    rng = np.random.default_rng(11)
    y, s = _binormal(rng, 60, 60, 1.0)
    base = bootstrap_ci(y, s, n_bootstrap=2000, seed=1)
    y3, s3, ids = np.repeat(y, 3), np.repeat(s, 3), np.repeat(np.arange(120), 3)
    naive = bootstrap_ci(y3, s3, n_bootstrap=2000, seed=1)
    clustered = bootstrap_ci(y3, s3, cluster=ids, n_bootstrap=2000, seed=1)
    width = lambda r: r.ci[1] - r.ci[0]  # noqa: E731
    assert naive.value == clustered.value == pytest.approx(base.value)
    # three copies of each case: the naive interval shrinks by ~1/sqrt(3), the clustered one does not
    assert width(naive) / width(base) == pytest.approx(1 / math.sqrt(3), rel=0.2)
    assert width(clustered) / width(base) == pytest.approx(1.0, rel=0.12)
    assert width(clustered) > 1.4 * width(naive)


def test_unique_case_ids_mean_plain_resampling() -> None:
    rng = np.random.default_rng(2)
    y, s = _binormal(rng, 40, 40, 1.0)
    a = bootstrap_ci(y, s, n_bootstrap=300, seed=4)
    b = bootstrap_ci(y, s, cluster=np.arange(80), n_bootstrap=300, seed=4)
    assert a == b


def test_seed_reproduces_and_changes() -> None:
    rng = np.random.default_rng(2)
    y, s = _binormal(rng, 40, 40, 1.0)
    assert bootstrap_ci(y, s, n_bootstrap=200, seed=1) == bootstrap_ci(y, s, n_bootstrap=200, seed=1)
    assert bootstrap_ci(y, s, n_bootstrap=200, seed=1) != bootstrap_ci(y, s, n_bootstrap=200, seed=2)


def test_mean_ci_percentile_and_bca_match_scipy_bootstrap() -> None:
    from scipy.stats import bootstrap

    rng = np.random.default_rng(7)
    dice = rng.beta(8, 2, 60)  # skewed per-case Dice
    for method, scipy_method in (("percentile", "percentile"), ("bca", "BCa")):
        ours = mean_ci(dice, n_bootstrap=20000, method=method, seed=3)
        ref = bootstrap((dice,), np.mean, n_resamples=20000, method=scipy_method,
                        random_state=np.random.default_rng(9)).confidence_interval
        assert ours.value == pytest.approx(dice.mean())
        assert ours.ci == pytest.approx((ref.low, ref.high), abs=0.003)


def test_summarize_cases_gives_every_numeric_column() -> None:
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    table = pd.DataFrame({"case": [f"c{i}" for i in range(30)], "dice": rng.random(30), "hd95": rng.random(30) * 5})
    res = summarize_cases(table, n_bootstrap=500)
    assert set(res) == {"dice", "hd95"}
    assert res["dice"].ci[0] < table["dice"].mean() < res["dice"].ci[1]
    med = mean_ci(table["hd95"], statistic="median", n_bootstrap=0)
    assert med.value == pytest.approx(np.sort(table["hd95"])[14])  # lower median of 30


def test_bca_interval_on_auc_is_finite_and_near_percentile() -> None:
    rng = np.random.default_rng(21)
    y, s = _binormal(rng, 80, 120, 1.0)
    p = bootstrap_ci(y, s, n_bootstrap=2000, seed=0)
    b = bootstrap_ci(y, s, n_bootstrap=2000, seed=0, method="bca")
    assert b.ci[0] < b.value < b.ci[1]
    assert b.ci == pytest.approx(p.ci, abs=0.02)


# ---------------------------------------------------------------------- coverage (known true AUC)
def test_bootstrap_and_delong_cover_the_true_auc_about_95_percent() -> None:
    from scipy.stats import norm

    d = 1.0
    true_auc = norm.cdf(d / math.sqrt(2))
    rng = np.random.default_rng(2024)
    hits = {"percentile": 0, "bca": 0, "delong": 0}
    sims = 200
    for k in range(sims):
        y, s = _binormal(rng, 50, 70, d)
        r = binary_metrics(y, s, metrics=["auc"], n_bootstrap=400, seed=k)["auc"]
        hits["percentile"] += r.ci[0] <= true_auc <= r.ci[1]
        if k < 100:
            rb = binary_metrics(y, s, metrics=["auc"], n_bootstrap=400, seed=k, method="bca")["auc"]
            hits["bca"] += rb.ci[0] <= true_auc <= rb.ci[1]
        dl = delong_auc(y, s)
        hits["delong"] += dl.ci[0] <= true_auc <= dl.ci[1]
    assert 0.90 <= hits["percentile"] / sims <= 0.99
    assert 0.88 <= hits["bca"] / 100 <= 1.0
    assert 0.90 <= hits["delong"] / sims <= 0.99


def test_delong_test_rejects_at_the_nominal_rate_under_the_null() -> None:
    rng = np.random.default_rng(5)
    rejections = 0
    sims = 200
    for _ in range(sims):
        y = np.r_[np.ones(40, bool), np.zeros(60, bool)]
        latent = rng.normal(0, 1, 100) + 1.0 * y
        a = latent + rng.normal(0, 1, 100)  # two equally good, correlated readers
        b = latent + rng.normal(0, 1, 100)
        rejections += delong_test(y, a, b).p_value < 0.05
    assert 0.01 <= rejections / sims <= 0.10


# ---------------------------------------------------------------------- DeLong known answers
def _slow_delong(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) written directly: psi over all pairs, V10/V01 by loops, S = S10/m + S01/n."""
    pos, neg = scores[:, y], scores[:, ~y]
    k, m, n = scores.shape[0], pos.shape[1], neg.shape[1]
    v10 = np.zeros((k, m))
    v01 = np.zeros((k, n))
    for r in range(k):
        for i in range(m):
            for j in range(n):
                psi = 1.0 if pos[r, i] > neg[r, j] else 0.5 if pos[r, i] == neg[r, j] else 0.0
                v10[r, i] += psi / n
                v01[r, j] += psi / m
    aucs = v10.mean(axis=1)
    s10 = np.array([[np.sum((v10[a] - aucs[a]) * (v10[b] - aucs[b])) / (m - 1) for b in range(k)] for a in range(k)])
    s01 = np.array([[np.sum((v01[a] - aucs[a]) * (v01[b] - aucs[b])) / (n - 1) for b in range(k)] for a in range(k)])
    return aucs, s10 / m + s01 / n


def test_fast_delong_matches_the_structural_components_formula() -> None:
    rng = np.random.default_rng(13)
    y = rng.integers(0, 2, 70).astype(bool)
    a = np.round(rng.normal(0, 1, 70) + y, 1)  # ties
    b = np.round(0.5 * a + rng.normal(0, 1, 70), 1)
    aucs, cov = _slow_delong(y, np.vstack([a, b]))
    res = delong_test(y, a, b)
    assert (res.auc_a, res.auc_b) == pytest.approx(tuple(aucs), abs=1e-12)
    assert res.se == pytest.approx(math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]), rel=1e-10)
    assert delong_auc(y, a).se == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-10)
    fast_aucs, v10, v01 = delong_components(y, np.vstack([a, b]))
    assert fast_aucs == pytest.approx(aucs)


def test_auc_equals_mann_whitney_u() -> None:
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(4)
    y, s = _binormal(rng, 33, 47, 0.7)
    s = np.round(s, 1)
    u = mannwhitneyu(s[y], s[~y]).statistic
    assert roc_auc(y, s) == pytest.approx(u / (33 * 47), abs=1e-12)
    assert delong_auc(y, s).auc == pytest.approx(u / (33 * 47), abs=1e-12)


def test_hanley_mcneil_1982_worked_example() -> None:
    """Hanley & McNeil (1982, Radiology 143:29), Table 1: 109 CT images rated 1-5.

    Published: AUC 0.893 (trapezoidal = Wilcoxon), SE 0.032 by their exponential approximation.
    DeLong's nonparametric SE of the same data must be close to it.
    """
    normal = [33, 6, 6, 11, 2]
    abnormal = [3, 2, 2, 11, 33]
    y = np.r_[np.zeros(58, bool), np.ones(51, bool)]
    s = np.r_[np.repeat(np.arange(1, 6), normal), np.repeat(np.arange(1, 6), abnormal)].astype(float)
    res = delong_auc(y, s)
    assert round(res.auc, 3) == 0.893
    a, na, nn = res.auc, 51, 58
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se_hm = math.sqrt((a * (1 - a) + (na - 1) * (q1 - a * a) + (nn - 1) * (q2 - a * a)) / (na * nn))
    assert round(se_hm, 3) == 0.032
    assert res.se == pytest.approx(se_hm, abs=0.004)
    assert res.ci[0] < 0.893 < res.ci[1]


def test_delong_identical_scores_p_is_one() -> None:
    rng = np.random.default_rng(0)
    y, s = _binormal(rng, 20, 20, 1.0)
    res = delong_test(y, s, 2 * s + 1)  # same ranking
    assert res.difference == 0 and res.p_value == 1.0


# ---------------------------------------------------------------------- calibration and thresholds
def test_calibration_slope_and_intercept_known_answers() -> None:
    from sklearn.calibration import calibration_curve
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss

    rng = np.random.default_rng(1)
    lp = rng.normal(0, 1.5, 20000)
    p = 1 / (1 + np.exp(-lp))
    y_cal = rng.random(lp.size) < p  # perfectly calibrated
    c = calibration(y_cal, p)
    assert c.slope == pytest.approx(1.0, abs=0.05) and c.intercept == pytest.approx(0.0, abs=0.05)
    y_off = rng.random(lp.size) < 1 / (1 + np.exp(-(0.5 + lp)))  # risks too low by 0.5 on the logit
    assert calibration(y_off, p).intercept == pytest.approx(0.5, abs=0.06)
    y_over = rng.random(lp.size) < 1 / (1 + np.exp(-0.5 * lp))  # over-confident model
    c2 = calibration(y_over, p, n_bootstrap=100)
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=1000).fit(lp[:, None], y_over)
    assert c2.slope == pytest.approx(float(ref.coef_[0, 0]), abs=1e-6)
    assert c2.ci["slope"][0] < c2.slope < c2.ci["slope"][1]
    assert c2.brier == pytest.approx(brier_score_loss(y_over, p))
    mean_p, obs, count = reliability_curve(y_over, p, n_bins=8)
    ref_obs, ref_p = calibration_curve(y_over, p, n_bins=8)
    assert np.allclose(mean_p, ref_p) and np.allclose(obs, ref_obs) and count.sum() == p.size


def test_thresholds_match_brute_force() -> None:
    rng = np.random.default_rng(8)
    y, s = _binormal(rng, 50, 80, 1.2)
    cand = np.unique(s)
    sens = np.array([(s[y] >= t).mean() for t in cand])
    spec = np.array([(s[~y] < t).mean() for t in cand])
    j = youden_threshold(y, s)
    assert j.sensitivity + j.specificity == pytest.approx((sens + spec).max())
    t90 = threshold_for_sensitivity(y, s, 0.9)
    assert t90.sensitivity >= 0.9
    assert t90.threshold == pytest.approx(cand[sens >= 0.9].max())
    t80 = threshold_for_specificity(y, s, 0.8)
    assert t80.specificity >= 0.8 and t80.threshold == pytest.approx(cand[spec >= 0.8].min())


def test_plots_write_pngs(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image as PILImage

    from medimg.evaluation.plots import plot_calibration, plot_confusion, plot_pr, plot_roc

    rng = np.random.default_rng(0)
    y, s = _binormal(rng, 40, 60, 1.0)
    p = 1 / (1 + np.exp(-s))
    paths = [
        plot_roc(y, {"model": s, "noise": rng.random(100)}, tmp_path / "roc.png"),
        plot_pr(y, s, tmp_path / "pr.png"),
        plot_confusion(y, p >= 0.5, tmp_path / "cm.png"),
        plot_calibration(y, p, tmp_path / "cal.png"),
    ]
    for path in paths:
        with PILImage.open(path) as im:
            assert im.format == "PNG" and min(im.size) > 100
    assert average_precision(y, s) > y.mean()


# ---------------------------------------------------------------------- subgroup audit
def _audit_frame(rng: np.random.Generator, n: int, shift_c: float) -> object:
    pd = pytest.importorskip("pandas")
    site = rng.choice(["A", "B", "C"], n)
    y = rng.random(n) < 0.4
    s = rng.normal(0, 1, n) + 1.5 * y
    s = np.where((site == "C") & y, s - shift_c, s)  # planted: site C's positives score lower
    return pd.DataFrame({"y_true": y.astype(int), "y_score": 1 / (1 + np.exp(-s)), "site": site,
                         "sex": rng.choice(["F", "M"], n), "pid": np.arange(n) // 2})


def test_audit_flags_a_planted_gap_and_only_it() -> None:
    from medimg.evaluation.audit import subgroup_audit

    frame = _audit_frame(np.random.default_rng(0), 1500, shift_c=1.2)
    res = subgroup_audit(frame, ["site", "sex"], versus={"site": "A"}, n_bootstrap=1000, case_id="pid", seed=1)
    flagged = {(g["column"], g["group"], g["metric"]) for g in res.flagged}
    assert ("site", "C", "sensitivity") in flagged and ("site", "C", "auc") in flagged
    assert not any(col == "sex" or grp == "B" or m == "specificity" for col, grp, m in flagged)
    assert res.settings["n_comparisons"] == 9 and res.settings["correction"] == "holm"
    # group values agree with the metrics computed on the subgroup alone
    sub = frame[frame.site == "C"]
    direct = binary_metrics(sub.y_true, sub.y_score, metrics=["sensitivity"], n_bootstrap=0)["sensitivity"].value
    row = next(r for r in res.groups if r["group"] == "C" and r["metric"] == "sensitivity")
    assert row["value"] == pytest.approx(direct) and row["n"] == len(sub)
    gap = next(g for g in res.gaps if g["group"] == "C" and g["metric"] == "sensitivity")
    ref = frame[frame.site == "A"]
    ref_sens = binary_metrics(ref.y_true, ref.y_score, metrics=["sensitivity"], n_bootstrap=0)["sensitivity"].value
    assert gap["gap"] == pytest.approx(direct - ref_sens)
    assert gap["ci_level"] > 0.95 and gap["ci_high"] < 0
    assert res.gap_table().shape[0] == 9 and set(res.to_dict()) == {"settings", "groups", "gaps"}


def test_audit_flags_nothing_on_null_data_at_the_family_wise_level() -> None:
    from medimg.evaluation.audit import subgroup_audit

    rng = np.random.default_rng(42)
    any_flag = {"holm": 0, "none": 0}
    for k in range(20):
        frame = _audit_frame(rng, 600, shift_c=0.0)
        for corr in any_flag:
            res = subgroup_audit(frame, "site", n_bootstrap=500, correction=corr, seed=k)
            any_flag[corr] += bool(res.flagged)
    assert any_flag["holm"] <= 3  # family-wise 5 %: about 1 of 20 expected
    assert any_flag["holm"] <= any_flag["none"]


def test_bonferroni_widens_every_interval() -> None:
    from medimg.evaluation.audit import subgroup_audit

    frame = _audit_frame(np.random.default_rng(3), 800, shift_c=0.5)
    bon = subgroup_audit(frame, "site", n_bootstrap=800, correction="bonferroni")
    none = subgroup_audit(frame, "site", n_bootstrap=800, correction="none")
    m = bon.settings["n_comparisons"]
    for b, n in zip(bon.gaps, none.gaps, strict=True):
        assert b["ci_level"] == pytest.approx(1 - 0.05 / m) and n["ci_level"] == pytest.approx(0.95)
        assert b["ci_low"] <= n["ci_low"] and b["ci_high"] >= n["ci_high"]


# ---------------------------------------------------------------------- CLI
def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from medimg.cli.main import main

    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_evaluate_json_and_bad_input(tmp_path, capsys) -> None:
    import json

    frame = _audit_frame(np.random.default_rng(5), 400, shift_c=0.0)
    csv = tmp_path / "pred.csv"
    frame.to_csv(csv, index=False)
    code, out, _ = _run_cli(["evaluate", str(csv), "--bootstrap", "300", "--seed", "3", "--id", "pid", "--json"], capsys)
    assert code == 0
    res = json.loads(out)
    for key in ("auc", "sensitivity", "specificity", "accuracy", "f1", "brier", "calibration_slope"):
        assert set(res[key]) >= {"value", "ci"} and len(res[key]["ci"]) == 2
    direct = binary_metrics(frame.y_true, frame.y_score, cluster=frame.pid, n_bootstrap=300, seed=3)
    assert res["auc"]["value"] == pytest.approx(direct["auc"].value)
    assert res["auc"]["ci"] == pytest.approx(list(direct["auc"].ci))
    code, out, _ = _run_cli(["evaluate", str(csv), "--bootstrap", "0", "--json"], capsys)
    assert code == 0 and json.loads(out)["sensitivity"]["ci"] == [None, None]
    (tmp_path / "bad.csv").write_text("y_true,y_score\n0,0.2\n3,0.5\n")
    for args in (["evaluate", str(tmp_path / "bad.csv")], ["evaluate", str(csv), "--y-score", "nope"],
                 ["evaluate", str(tmp_path / "missing.csv")], ["evaluate", str(csv), "--method", "bogus"],
                 ["audit", str(csv), "--by", "nope"], ["audit", str(csv), "--by", "site", "--reference", "site=Z"]):
        code, _, err = _run_cli(args, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, (args, err)


def test_cli_audit_json_table_plot(tmp_path, capsys) -> None:
    import json

    frame = _audit_frame(np.random.default_rng(6), 900, shift_c=1.2)
    csv = tmp_path / "pred.csv"
    frame.to_csv(csv, index=False)
    code, out, _ = _run_cli(["audit", str(csv), "--by", "site,sex", "--bootstrap", "1000", "--json",
                             "--table", str(tmp_path / "gaps.csv"), "--plot", str(tmp_path / "gaps.png")], capsys)
    assert code == 0
    res = json.loads(out)
    assert set(res["groups"]) == {"site", "sex"} and set(res["groups"]["site"]) == {"A", "B", "C"}
    flagged = [(g["group"], g["metric"]) for g in res["gaps"] if g["flagged"]]
    assert ("C", "sensitivity") in flagged
    assert (tmp_path / "gaps.csv").read_text().startswith("column,group,versus,metric,gap")
    assert (tmp_path / "gaps.png").stat().st_size > 1000


def test_closed_form_jackknife_equals_leave_one_out_weights() -> None:
    from medimg.evaluation.classification import _jackknife_weights, jackknife_metrics

    rng = np.random.default_rng(12)
    y, s = _binormal(rng, 30, 40, 0.8)
    s = np.round(1 / (1 + np.exp(-s)), 2)  # ties, probabilities
    data = BinaryData.from_arrays(y, s)
    names = ("auc", "sensitivity", "f1", "balanced_accuracy", "brier", "auc_pr")
    fast = jackknife_metrics(data, names)
    slow = _weighted_metrics(data, _jackknife_weights(data.n, None, 0, data.n), names)
    for m in names:
        assert np.allclose(fast[m], slow[m], equal_nan=True), m
