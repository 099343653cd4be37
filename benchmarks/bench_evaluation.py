"""Bootstrap CI of the ROC AUC: medimg's vectorised bootstrap vs a loop of scikit-learn calls.

1,000 resamples of 10,000 predictions, same run, same data. The loop draws the same resample
indices (plain bootstrap, ``rng.integers(0, n, (1000, n))``) and calls ``roc_auc_score`` on each;
medimg computes all resamples at once from resample counts (``plain_bootstrap_auc``), and also the
stratified percentile interval of ``bootstrap_ci`` (its default) and the BCa one.
The two plain intervals are checked equal. `python benchmarks/run.py bench_evaluation`.
"""

from __future__ import annotations

import numpy as np

from _common import comparison, interleaved, load_average, pin_threads, protocol, write_section

REPEATS = 5
SIZES = (10_000, 1_000)  # predictions: two data shapes (the loop's cost per resample grows with n)


def measure(n: int, b: int) -> list[str]:
    """Table rows for ``b`` bootstrap resamples of ``n`` predictions."""
    from sklearn.metrics import roc_auc_score

    from medimg.evaluation.classification import BinaryData, bootstrap_ci, plain_bootstrap_auc

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n).astype(bool)
    s = rng.normal(0, 1, n) + 1.0 * y
    data = BinaryData.from_arrays(y, s, threshold=0.0)

    def sklearn_loop() -> tuple[float, float]:
        idx = np.random.default_rng(1).integers(0, n, size=(b, n))
        aucs = [roc_auc_score(y[i], s[i]) for i in idx]
        return tuple(np.quantile(aucs, [0.025, 0.975]))

    def medimg_plain() -> tuple[float, float]:
        aucs = plain_bootstrap_auc(data, b, np.random.default_rng(1))
        return tuple(np.quantile(aucs, [0.025, 0.975]))

    assert np.allclose(sklearn_loop(), medimg_plain(), atol=1e-12)
    times = interleaved({
        "loop": sklearn_loop,
        "plain": medimg_plain,
        "strat": lambda: bootstrap_ci(y, s, n_bootstrap=b, seed=1),
        "bca": lambda: bootstrap_ci(y, s, n_bootstrap=b, seed=1, method="bca"),
    }, repeats=REPEATS)
    rows = [
        ("scikit-learn loop: `roc_auc_score` on each resample", times["loop"]),
        ("medimg `plain_bootstrap_auc` (same resamples, vectorised)", times["plain"]),
        ("medimg `bootstrap_ci` (stratified percentile, default)", times["strat"]),
        (f"medimg `bootstrap_ci(method='bca')` (+ {n:,}-case jackknife)", times["bca"]),
    ]
    same = ["(the reference)", "yes: the same resamples, the same interval", "no: stratified resamples (the default)",
            "no: stratified resamples + jackknife (BCa)"]
    return [f"| {n:,} | {name} | {sm} | {t:.3f} | {times['loop'] / t:.1f}x |" for (name, t), sm in zip(rows, same, strict=True)]


def main() -> None:
    threads = pin_threads()
    b = 1_000
    load = load_average()
    lines: list[str] = []
    for n in SIZES:
        lines += measure(n, b)
    load_after = load_average()
    body = f"""## Evaluation: bootstrap CI of the AUC

{protocol(threads, load, load_after, f"medians of {REPEATS} runs interleaved between the methods after a warm-up")}
{b:,} bootstrap resamples of {" and of ".join(f"{n:,}" for n in SIZES)} predictions (binormal scores), in process (arrays in memory).
`python benchmarks/run.py bench_evaluation`.

{comparison("same", "the scikit-learn loop and medimg's `plain_bootstrap_auc` draw the same resamples and give "
            "the same 95 % interval (checked to 1e-12); the `bootstrap_ci` rows are medimg's recommended defaults "
            "(stratified resampling, percentile or BCa interval), a different computation shown beside it")}

| predictions | method | same computation as the loop? | time (s) | speed-up vs loop |
|---:|---|---|---:|---:|
{chr(10).join(lines)}
"""
    write_section("evaluation", body)
    print(body)


if __name__ == "__main__":
    main()
