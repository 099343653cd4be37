"""Bootstrap CI of the ROC AUC: medimg's vectorised bootstrap vs a loop of scikit-learn calls.

1,000 resamples of 10,000 predictions, same run, same data. The loop draws the same resample
indices (plain bootstrap, ``rng.integers(0, n, (1000, n))``) and calls ``roc_auc_score`` on each;
medimg computes all resamples at once from resample counts (``plain_bootstrap_auc``), and also the
stratified percentile interval of ``bootstrap_ci`` (its default) and the BCa one.
The two plain intervals are checked equal. `python benchmarks/run.py bench_evaluation`.
"""

from __future__ import annotations

import os
import time

import numpy as np

from _common import interleaved, machine, write_section


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from medimg.evaluation.classification import BinaryData, bootstrap_ci, plain_bootstrap_auc

    rng = np.random.default_rng(0)
    n, b = 10_000, 1_000
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
    load = os.getloadavg()
    times = interleaved({
        "loop": sklearn_loop,
        "plain": medimg_plain,
        "strat": lambda: bootstrap_ci(y, s, n_bootstrap=b, seed=1),
    }, repeats=3)
    t0 = time.perf_counter()
    bootstrap_ci(y, s, n_bootstrap=b, seed=1, method="bca")
    t_bca = time.perf_counter() - t0
    load_after = os.getloadavg()
    rows = [
        ("scikit-learn loop: `roc_auc_score` on each resample", times["loop"]),
        ("medimg `plain_bootstrap_auc` (same resamples, vectorised)", times["plain"]),
        ("medimg `bootstrap_ci` (stratified percentile, default)", times["strat"]),
        ("medimg `bootstrap_ci(method='bca')` (+ 10,000-case jackknife), one run", t_bca),
    ]
    lines = [f"| {name} | {t:.3f} | {times['loop'] / t:.1f}x |" for name, t in rows]
    body = f"""## Evaluation: bootstrap CI of the AUC

Machine: {machine()}; load average {load[0]:.2f} before, {load_after[0]:.2f} after (shared machine).
{b:,} bootstrap resamples of {n:,} predictions (binormal scores). Median of 3 interleaved runs after a
warm-up (BCa: one run). The scikit-learn loop and medimg's plain bootstrap draw the same resamples and give
the same 95 % interval (checked to 1e-12). `python benchmarks/run.py bench_evaluation`.

| method | time (s) | speed-up vs loop |
|---|---:|---:|
{chr(10).join(lines)}
"""
    write_section("evaluation", body)
    print(body)


if __name__ == "__main__":
    main()
