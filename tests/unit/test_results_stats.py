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


def abba_drift_run(rng, n, cv, drift, change=0.0):
    """n repetitions a side in ABBA order: a machine level that wanders (random walk of
    `drift` per block) times independent noise cv; dev `change` slower."""
    level, base, dev = 100.0, [], []
    for rep in range(n):
        order = ("b", "d") if rep % 2 == 0 else ("d", "b")
        for side in order:
            level *= 1 + rng.normal(0, drift)
            value = level * (1 + rng.normal(0, cv))
            (base if side == "b" else dev).append(value)
    return base, [x * (1 + change) for x in dev]


def test_pairing_removes_the_machines_drift_and_holds_its_level():
    rng = np.random.default_rng(7)
    trials, alarms, mde_w, mde_p = 600, 0, [], []
    for _ in range(trials):
        base, dev = abba_drift_run(rng, 8, cv=0.01, drift=0.03)
        paired = stats.compare("m", base, dev, True, alpha=0.05, pair=True)
        welch = stats.compare("m", base, dev, True, alpha=0.05)
        assert paired.method == "paired" and welch.method == "welch"
        alarms += paired.verdict != stats.SAME
        mde_w.append(welch.mde_pct)
        mde_p.append(paired.mde_pct)
    # Nominal 5%: 600 trials give a standard error of about 0.9 points.
    assert alarms / trials < 0.08
    assert np.median(mde_p) < 0.6 * np.median(mde_w)
    # A real 5% change under the same drift: paired finds it most of the time.
    found = sum(
        stats.compare(
            "m", *abba_drift_run(rng, 8, 0.01, 0.03, change=0.05), True, pair=True
        ).verdict
        == stats.WORSE
        for _ in range(200)
    )
    assert found / 200 > 0.7


def test_pairs_drop_a_repetition_missing_on_one_side():
    c = stats.compare("m", [100, 101, None, 99], [110, 112, 111, 108], True, pair=True)
    assert c.method == "paired" and c.n_baseline == c.n_dev == 3
    assert c.baseline_reps == [100, 101, 99] and c.dev_reps == [110, 112, 108]
    single = stats.compare("m", [100, None], [110, 112], True, pair=True)
    assert single.method == "welch"  # one pair is no interval: two samples instead


def test_runs_pair_their_repetitions_from_the_stated_count(tmp_path):
    from ansible_collections.servelab.vllm.plugins.module_utils.results import collect, compare
    from results_fixture import write_run

    for reps, method in ((compare.PAIRED_MIN_REPS, "paired"), (3, "welch")):
        run = collect.load_run(write_run(tmp_path / str(reps), reps=reps, dev_scale=1.2))
        rows = compare.compare_run(run, compare.Settings())["default"]
        assert {r["method"] for r in rows} == {method}, reps
        ttft = next(r for r in rows if r["metric"] == "median_ttft_ms")
        assert ttft["verdict"] == stats.WORSE and ttft["n_baseline"] == reps
    spread = compare.calibration_spread(run)
    assert set(spread["median_ttft_ms"]) == {"welch", "paired"}
