"""Statistics of the comparison, on synthetic samples with known truth."""

import numpy as np
import pytest
from ansible_collections.servelab.vllm.plugins.module_utils.results import stats


def lognormal(rng, n, scale=1.0):
    return (rng.lognormal(mean=np.log(100), sigma=0.3, size=n) * scale).tolist()


def test_a_known_ten_percent_shift_is_detected_in_the_right_direction():
    rng = np.random.default_rng(1)
    base, slower = lognormal(rng, 400), lognormal(rng, 400, scale=1.10)
    worse = stats.compare("median_ttft_ms", base, slower, "median", lower_is_better=True)
    assert worse.verdict == stats.WORSE
    assert worse.relative == pytest.approx(0.10, abs=0.05)
    assert worse.ci_low > 0
    better = stats.compare("median_ttft_ms", slower, base, "median", lower_is_better=True)
    assert better.verdict == stats.BETTER
    more = stats.compare("request_throughput", base, slower, "mean", lower_is_better=False)
    assert more.verdict == stats.BETTER


def test_identical_distributions_are_flagged_at_most_at_the_nominal_rate():
    rng = np.random.default_rng(2)
    trials, flagged = 300, 0
    for i in range(trials):
        a, b = lognormal(rng, 100), lognormal(rng, 100)
        c = stats.compare(
            "median_ttft_ms",
            a,
            b,
            "median",
            lower_is_better=True,
            threshold_pct=0,
            resamples=500,
            seed=i,
        )
        flagged += c.verdict != stats.SAME
    # 95% intervals: about 5% false alarms expected; allow sampling noise (3 sigma).
    rate = flagged / trials
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / trials), rate


def test_threshold_hides_tiny_but_significant_changes():
    rng = np.random.default_rng(3)
    base = lognormal(rng, 20000)
    dev = [x * 1.01 for x in base]
    assert stats.compare("m", base, dev, "median", True, threshold_pct=0).verdict == stats.WORSE
    assert stats.compare("m", base, dev, "median", True, threshold_pct=2).verdict == stats.SAME


def test_too_few_samples_say_so():
    c = stats.compare("request_throughput", [2.5], [2.7], "mean", lower_is_better=False)
    assert c.verdict == stats.UNKNOWN and c.ci_low is None and c.relative == pytest.approx(0.08)
    assert stats.compare("m", [], [1.0, 2.0], "median", True).verdict == stats.UNKNOWN


def test_percentile_statistics():
    assert stats.statistic("p99")(np.arange(101.0)) == pytest.approx(99.0)
    assert stats.statistic("p99_9")(np.arange(1001.0)) == pytest.approx(999.0)
    with pytest.raises(ValueError):
        stats.statistic("mode")


def clusters(rng, offsets, n=300):
    """One list of samples per repetition; each repetition runs at its own speed."""
    return [lognormal(rng, n, scale=o) for o in offsets]


def test_run_to_run_variation_widens_latency_intervals():
    rng = np.random.default_rng(3)
    # No real change: the repetitions of both groups scatter by +-15%, dev's by chance higher.
    base = clusters(rng, [0.85, 1.0, 1.15])
    dev = clusters(rng, [1.05, 0.9, 1.25])
    flat_base, flat_dev = np.concatenate(base).tolist(), np.concatenate(dev).tolist()
    pooled = stats.compare("median_ttft_ms", flat_base, flat_dev, "median", True)
    assert pooled.verdict == stats.WORSE  # requests as if independent: falsely confident
    clustered = stats.compare("median_ttft_ms", base, dev, "median", True, clustered=True)
    assert clustered.verdict == stats.SAME
    assert clustered.n_baseline == 900 and clustered.baseline == pytest.approx(pooled.baseline)
    # A change every repetition shows stays visible through the same run-to-run scatter.
    shifted = clusters(rng, [0.99 * 1.1, 1.0 * 1.1, 1.01 * 1.1])
    steady = clusters(rng, [0.99, 1.0, 1.01])
    real = stats.compare("median_ttft_ms", steady, shifted, "median", True, clustered=True)
    assert real.verdict == stats.WORSE and real.ci_low > 0


def test_throughputs_of_three_repetitions_use_welch_intervals():
    from scipy import stats as scipy_stats

    base, dev = [63.9, 72.1, 57.7], [74.3, 80.2, 68.4]
    c = stats.compare("request_throughput", base, dev, "mean", False, method="welch")
    ci = scipy_stats.ttest_ind(dev, base, equal_var=False).confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high))
    assert c.verdict == stats.SAME  # +16% on three scattered runs is not established
    clear = stats.compare(
        "request_throughput", [100, 101, 99], [120, 121, 119], "mean", False, method="welch"
    )
    assert clear.verdict == stats.BETTER
    flat = stats.compare("request_throughput", [5, 5, 5], [5, 5, 5], "mean", False, method="welch")
    assert flat.verdict == stats.SAME and flat.ci_low == flat.ci_high == 0
