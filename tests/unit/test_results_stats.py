"""Statistics of the comparison, on synthetic repetitions with known truth."""

import numpy as np
import pytest
from ansible_collections.servelab.vllm.plugins.module_utils.results import stats
from scipy import stats as scipy_stats


def reps(rng, n, level=100.0, cv=0.03):
    """One value per repetition: a level scattered from run to run by cv."""
    return (level * np.exp(rng.normal(0, cv, n))).tolist()


def test_a_known_ten_percent_shift_is_found_in_the_right_direction():
    rng = np.random.default_rng(1)
    base, slower = reps(rng, 5), reps(rng, 5, level=110)
    worse = stats.compare("median_ttft_ms", base, slower, lower_is_better=True)
    assert worse.verdict == stats.WORSE and worse.ci_low > 0
    assert worse.relative == pytest.approx(0.10, abs=0.04)
    assert stats.compare("median_ttft_ms", slower, base, True).verdict == stats.BETTER
    assert stats.compare("output_throughput", base, slower, False).verdict == stats.BETTER


def test_welch_interval_and_p_value_match_scipy():
    base, dev = [63.9, 72.1, 57.7], [74.3, 80.2, 68.4]
    c = stats.compare("request_throughput", base, dev, lower_is_better=False)
    res = scipy_stats.ttest_ind(dev, base, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high, c.p_value) == pytest.approx((ci.low, ci.high, res.pvalue))
    assert c.verdict == stats.SAME  # +16% on three scattered runs is not established
    flat = stats.compare("request_throughput", [5, 5, 5], [5, 5, 5], False)
    assert flat.verdict == stats.SAME and flat.ci_low == flat.ci_high == 0


@pytest.mark.parametrize("n", [3, 5])
def test_no_change_is_called_at_most_at_the_nominal_rate(n):
    rng = np.random.default_rng(2 + n)
    trials = 1000
    flagged = sum(
        stats.compare("m", reps(rng, n, cv=0.1), reps(rng, n, cv=0.1), True).verdict != stats.SAME
        for _ in range(trials)
    )
    # Welch's t on lognormal levels with cv 0.1: the nominal 5%, within sampling noise.
    assert flagged / trials <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / trials)


def test_the_alpha_of_a_primary_metric_widens_its_interval():
    rng = np.random.default_rng(4)
    base, dev = reps(rng, 5), reps(rng, 5, level=103)
    nominal = stats.compare("m", base, dev, True, alpha=0.05)
    family = stats.compare("m", base, dev, True, alpha=0.05 / 3)
    assert family.ci_low < nominal.ci_low and family.ci_high > nominal.ci_high
    assert family.level == pytest.approx(1 - 0.05 / 3)


def test_mde_shrinks_with_repetitions_and_is_met_by_simulation():
    cv = 0.03
    at3, at5 = stats.mde(cv, 3, 3, 0.05), stats.mde(cv, 5, 5, 0.05)
    assert at5 < at3
    # A true change of the MDE is found about 80% of the time (power), by simulation.
    rng = np.random.default_rng(5)
    found = sum(
        stats.compare("m", reps(rng, 5, cv=cv), reps(rng, 5, level=100 * (1 + at5), cv=cv), True)
        .verdict == stats.WORSE
        for _ in range(1000)
    )  # fmt: skip
    assert 0.72 <= found / 1000 <= 0.9, found
    assert stats.reps_needed(0.02, 0.05, 0.05) <= 5 < stats.reps_needed(0.1, 0.05, 0.05)


def test_the_mde_comes_from_a_calibration_when_given():
    c = stats.compare("m", [100, 101, 99], [100, 100, 101], True, spread_cv=0.05,
                      spread_source="calibration X")  # fmt: skip
    assert c.mde_source == "calibration X"
    assert c.mde_pct == pytest.approx(stats.mde(0.05, 3, 3, 0.05) * 100)


def test_threshold_hides_tiny_but_significant_changes():
    base = [100.0, 100.1, 99.9, 100.0, 100.05]
    dev = [x * 1.01 for x in base]
    assert stats.compare("m", base, dev, True, threshold_pct=0).verdict == stats.WORSE
    assert stats.compare("m", base, dev, True, threshold_pct=2).verdict == stats.SAME


def test_too_few_repetitions_say_so():
    c = stats.compare("request_throughput", [2.5], [2.7], lower_is_better=False)
    assert c.verdict == stats.UNKNOWN and c.ci_low is None and c.relative == pytest.approx(0.08)
    assert stats.compare("m", [], [1.0, 2.0], True).verdict == stats.UNKNOWN


def test_percentile_statistics():
    assert stats.statistic("p99")(np.arange(101.0)) == pytest.approx(99.0)
    assert stats.statistic("p99_9")(np.arange(1001.0)) == pytest.approx(999.0)
    with pytest.raises(ValueError):
        stats.statistic("mode")
