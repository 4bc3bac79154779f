"""The verdict's statistics, on synthetic blocks with known truth."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from ansible_collections.servelab.vllm.plugins.module_utils.results import compare, stats
from scipy import stats as scipy_stats

TOP = Path(__file__).resolve().parents[2]


def blocks(rng, n, level=100.0, cv=0.03):
    """One value a block: a level scattered from block to block by cv."""
    return (level * np.exp(rng.normal(0, cv, n))).tolist()


def verdict(base, dev, plan, lower=True, order=None):
    return stats.sequential({"m": (base, dev)}, {"m": lower}, plan, order)["m"]


ONE_LOOK = stats.Plan(min_pairs=8, max_pairs=8)


def test_a_large_change_is_called_in_its_direction_beyond_the_margin():
    rng = np.random.default_rng(1)
    base, slower = blocks(rng, 8), blocks(rng, 8, level=130)
    assert verdict(base, slower, ONE_LOOK).verdict == stats.WORSE
    assert verdict(slower, base, ONE_LOOK).verdict == stats.BETTER
    assert verdict(base, slower, ONE_LOOK, lower=False).verdict == stats.BETTER  # throughput
    v = verdict(base, slower, ONE_LOOK)
    low, _ = v.estimate.interval(v.level)
    assert low > math.log(1.05)  # the whole interval beyond the margin
    assert math.expm1(v.estimate.mu) == pytest.approx(0.30, abs=0.05)


def test_no_change_on_a_quiet_machine_is_the_same():
    rng = np.random.default_rng(2)
    v = verdict(blocks(rng, 8, cv=0.01), blocks(rng, 8, cv=0.01), ONE_LOOK)
    assert v.verdict == stats.SAME
    low, high = v.estimate.interval(v.level)
    assert -math.log(1.05) < low and high < math.log(1.05)


def test_a_change_as_large_as_the_noise_stays_undecided_and_says_what_would_decide():
    rng = np.random.default_rng(3)
    base, dev = blocks(rng, 8, cv=0.05), blocks(rng, 8, level=104, cv=0.05)
    v = verdict(base, dev, ONE_LOOK)
    assert v.verdict == stats.UNDECIDED
    need = stats.pairs_needed(v.estimate, ONE_LOOK.log_margin, v.level)
    assert need is None or need > 8


def test_the_paired_log_estimate_is_scipys_paired_t_on_logs():
    base, dev = [100.0, 104.0, 98.0, 101.0], [110.0, 113.0, 109.0, 108.0]
    e = stats.estimate(base, dev)
    res = scipy_stats.ttest_rel(np.log(dev), np.log(base))
    ci = res.confidence_interval(0.90)
    assert e.interval(0.05) == pytest.approx((ci.low, ci.high))
    assert e.df == 3 and e.position is None


def test_the_position_term_takes_out_a_cost_of_running_second():
    """ABBA with a 6% cost for the block that runs second: with the position term the
    effect is found and the spread is the noise's, without it the cost counts as noise."""
    rng = np.random.default_rng(4)
    n = 12
    dev_second = [r % 2 == 0 for r in range(n)]
    base, dev = [], []
    for second in dev_second:
        b, d = 100 * np.exp(rng.normal(0, 0.01, 2))
        base.append(b * (1.06 if not second else 1.0))
        dev.append(d * 1.10 * (1.06 if second else 1.0))
    with_term = stats.estimate(base, dev, dev_second)
    without = stats.estimate(base, dev)
    assert with_term.position == pytest.approx(math.log(1.06), abs=0.01)
    assert math.expm1(with_term.mu) == pytest.approx(0.10, abs=0.02)
    assert with_term.sd < 0.3 * without.sd and with_term.df == n - 2


def test_a_pair_missing_a_side_is_dropped_and_one_pair_is_no_estimate():
    e = stats.estimate([100, 101, None, 99], [110, 112, 111, 108])
    assert e.n == 3
    assert stats.estimate([100, None], [110, 112]) is None


def test_deployments_are_the_unit_when_the_engines_restart():
    """A deployment's state (the same for every pair it ran) is no noise that pairs
    average out: an A/A whose deployments differ by 5% makes false claims at a 2% margin
    (16%) when its 16 pairs are taken as independent, and within alpha when its 4
    deployments are the units."""
    rng = np.random.default_rng(7)
    plan = stats.Plan(confidence=0.95, margin_pct=2, min_pairs=16, max_pairs=16)
    deployment = [i // 4 for i in range(16)]
    runs, by_pairs, by_units = 300, 0, 0
    for _ in range(runs):
        base = blocks(rng, 16, cv=0.01)
        shift = np.exp(np.repeat(rng.normal(0, 0.05, 4), 4))
        dev = (np.asarray(blocks(rng, 16, cv=0.01)) * shift).tolist()
        series, lower = {"m": (base, dev)}, {"m": True}
        pairs = stats.sequential(series, lower, plan)["m"]
        units = stats.sequential(series, lower, plan, None, deployment)["m"]
        by_pairs += pairs.verdict in (stats.WORSE, stats.BETTER)
        by_units += units.verdict in (stats.WORSE, stats.BETTER)
        assert units.estimate.units == 4 and units.estimate.df == 3
    assert by_pairs / runs > 0.1, by_pairs  # 16% measured
    assert by_units / runs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)


def test_no_claim_before_two_deployments_and_needs_count_whole_deployments():
    base, dev = [100.0, 101.0, 99.0, 100.0], [130.0, 131.0, 129.0, 130.0]
    assert stats.estimate(base, dev, None, [0, 0, 0, 0]) is None
    e = stats.estimate(base * 2, [*dev, 125.0, 126.0, 124.0, 125.0], None, [0] * 4 + [1] * 4)
    assert (e.n, e.units, e.df) == (8, 2, 1)
    assert math.expm1(e.mu) == pytest.approx(0.275, abs=0.01)
    need = stats.pairs_needed(e, math.log(1.05), 0.025)
    assert need is not None and need % 4 == 0 and need > 8  # whole deployments of 4 pairs


def test_a_crossover_separates_the_setting_from_the_host():
    """dev's host is 8% slower and dev's setting 10% faster: without the swap the two are
    one number (-2.8%); with it the intercept is the setting's effect and the host term
    the hosts' offset, each near its truth. Before the swap there is no estimate, and a
    look with nothing to test spends no alpha."""
    rng = np.random.default_rng(11)
    n, half = 16, 8
    crossed = [i >= half for i in range(n)]
    order = [i % 2 == 0 for i in range(n)]
    base, dev = [], []
    for swapped in crossed:  # host A: 1.0, host B (dev's first): 1.08
        b, d = 100 * np.exp(rng.normal(0, 0.01, 2))
        base.append(b * (1.08 if swapped else 1.0))
        dev.append(d * 0.90 * (1.0 if swapped else 1.08))
    e = stats.estimate(base, dev, order, None, crossed)
    assert math.expm1(e.mu) == pytest.approx(-0.10, abs=0.015)
    assert math.expm1(e.host) == pytest.approx(0.08, abs=0.015)
    assert e.df == n - 3  # intercept, position and host
    naive = stats.estimate(base[:half], dev[:half])
    assert math.expm1(naive.mu) == pytest.approx(0.9 * 1.08 - 1, abs=0.015)
    assert stats.estimate(base[:half], dev[:half], None, None, crossed[:half]) is None
    plan = stats.Plan(confidence=0.95, margin_pct=5, min_pairs=4, max_pairs=16)
    series, lower = {"m": (base, dev)}, {"m": True}
    v = stats.sequential(series, lower, plan, order, None, crossed)["m"]
    # The first look with both legs (10 pairs) may spend all that 4, 6 and 8 did not.
    assert v.verdict == stats.BETTER and v.pairs == 10
    assert v.level == pytest.approx(plan.spent(10))


def test_holm_is_the_textbook_step_down():
    p = {"a": 0.01, "b": 0.04, "c": 0.03}
    assert stats.holm(p, 0.05) == ["a"]  # 0.01 <= 0.05/3; then 0.03 > 0.05/2: stop
    assert stats.holm({"a": 0.01, "b": 0.02, "c": 0.04}, 0.05) == ["a", "b", "c"]


def test_the_looks_spend_alpha_and_no_more():
    plan = stats.Plan(confidence=0.95, min_pairs=4, max_pairs=12, rho=2)
    assert plan.looks(12) == [4, 6, 8, 10, 12]
    assert plan.looks(7) == [4, 6, 7]  # stopped between looks: one more look where it stopped
    spent = [plan.spent(n) for n in plan.looks(12)]
    assert spent[-1] == pytest.approx(0.05) and spent == sorted(spent)
    assert stats.Plan(points=4).alpha == pytest.approx(0.0125)
    with pytest.raises(ValueError, match="first look"):
        stats.Plan(min_pairs=6, max_pairs=4)
    with pytest.raises(ValueError, match="margin"):
        stats.Plan(margin_pct=0)


def test_a_decided_metric_keeps_its_word_while_the_others_go_on():
    rng = np.random.default_rng(5)
    plan = stats.Plan(min_pairs=4, max_pairs=12)
    series = {
        "big": (blocks(rng, 12), blocks(rng, 12, level=160)),
        "none": (blocks(rng, 12, cv=0.04), blocks(rng, 12, cv=0.04)),
    }
    early = stats.sequential({k: (b[:4], d[:4]) for k, (b, d) in series.items()},
                             {"big": True, "none": True}, plan)  # fmt: skip
    assert early["big"].verdict == stats.WORSE and early["big"].pairs == 4
    assert early["none"].verdict == stats.UNDECIDED
    late = stats.sequential(series, {"big": True, "none": True}, plan)
    assert late["big"].pairs == 4  # decided at the first look, kept


def test_the_mde_is_called_worse_about_80_percent_of_the_time():
    rng = np.random.default_rng(6)
    cv, n = 0.03, 8
    plan = stats.Plan(min_pairs=n, max_pairs=n)
    e = stats.estimate(blocks(rng, n, cv=cv), blocks(rng, n, cv=cv))
    # The MDE of this rule at the noise of this estimate's true sd (cv * sqrt 2).
    true = stats.Estimate(n, 0.0, cv * math.sqrt(2) / math.sqrt(n), n - 1, cv * math.sqrt(2))
    change = stats.mde(true, plan.log_margin, plan.alpha)
    assert change > plan.log_margin and e is not None
    found = sum(
        verdict(blocks(rng, n, cv=cv), blocks(rng, n, level=100 * math.exp(change), cv=cv), plan)
        .verdict == stats.WORSE
        for _ in range(600)
    )  # fmt: skip
    assert 0.72 <= found / 600 <= 0.88, found


def test_secondaries_get_an_interval_and_no_word():
    rng = np.random.default_rng(7)
    row = stats.comparison("m", blocks(rng, 6), blocks(rng, 6, level=150), True, False,
                           stats.Plan(min_pairs=6, max_pairs=6))  # fmt: skip
    assert row.verdict == stats.SECONDARY and row.low_pct > 30 and row.level == 0.95


def test_percentile_statistics():
    assert stats.statistic("p99")(np.arange(101.0)) == pytest.approx(99.0)
    assert stats.statistic("p99_9")(np.arange(1001.0)) == pytest.approx(999.0)
    with pytest.raises(ValueError):
        stats.statistic("mode")


def test_the_simulation_holds_the_error_rates_and_finds_ten_percent():
    """benchmarks/verdict_quality.py, small: through go_on, compare_run and gate. The
    rates below are bounds with sampling slack at 300 runs (binomial 3 sigma)."""
    sys.path.insert(0, str(TOP / "benchmarks"))
    import verdict_quality as vq

    args = vq.parse(["--runs", "300", "--cv", "0.02", "--drift", "0.05"])
    s = vq.settings(args)
    aa = vq.scenario(args, s, {})
    assert aa["alarm"] <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)
    assert aa["same"] >= 0.7
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)
    edge = vq.scenario(args, s, {"median_ttft_ms": 0.05})  # exactly the margin
    assert edge["worse_ttft"] <= bound and edge["same_ttft"] <= bound
    ten = vq.scenario(args, s, {"median_ttft_ms": 0.10})
    assert ten["worse_ttft"] >= 0.8
    assert ten["blocks_mean"] < s.max_pairs


def test_a_run_of_the_fixture_is_compared_paired_with_its_plan(tmp_path):
    from ansible_collections.servelab.vllm.plugins.module_utils.results import collect
    from helpers.results_fixture import write_run

    run = collect.load_run(write_run(tmp_path, reps=6, dev_scale=1.5))
    rows = compare.compare_run(run, compare.Settings(min_pairs=6, max_pairs=6))["default"]
    ttft = next(r for r in rows if r["metric"] == "median_ttft_ms")
    assert ttft["verdict"] == stats.WORSE and ttft["pairs"] == 6 and ttft["primary"]
    assert ttft["method"] == "paired log ratio + ABBA position"
    assert compare.go_on(run, compare.Settings(min_pairs=4, max_pairs=12)) == (
        False, "every primary metric is decided after 6 blocks a group",
    )  # fmt: skip
    spread = compare.calibration_spread(run)
    assert spread["median_ttft_ms"]["df"] == 4
    assert "between_sd" not in spread["median_ttft_ms"]


def sweep_of_one_group(levels: dict[str, float], reps: int):
    """A configuration sweep of baseline alone, as the sweep's rounds run it: round r
    runs every value, in order on odd rounds and reversed on even ones; each block's
    median TTFT and TPOT at its value's level, with a little noise."""
    from ansible_collections.servelab.vllm.plugins.module_utils.records import BlockSummary
    from ansible_collections.servelab.vllm.plugins.module_utils.results import collect

    run, order = collect.RunResults("sweep"), 0
    for rep in range(1, reps + 1):
        for point in list(levels) if rep % 2 else list(reversed(levels)):
            order += 1
            level = levels[point] * (1 + 0.01 * ((rep * 7 + order * 3) % 5 - 2))
            summary = BlockSummary.from_json({
                "median_ttft_ms": level, "median_tpot_ms": 0.4 * level,
                "spec": {"request_rate": 2.0}, "context": {"order": order},
            })  # fmt: skip
            run.reps.append(collect.RepResult("baseline", "h", point, rep, summary, []))
    return run


SWEEP = compare.Settings(min_pairs=4, max_pairs=8)
SLOWER = {"v-100": 100.0, "v-60": 150.0, "v-20": 200.0}  # the later values 50%, 100% slower


def test_a_sweep_of_one_group_decided_at_the_first_look_stops_as_its_report_says():
    """go_on on a sweep of baseline alone pairs each later value with the first, as the
    report does (compare_run): the same comparisons, the same words."""
    run = sweep_of_one_group(SLOWER, 4)
    assert compare.go_on(run, SWEEP) == (
        False, "every primary metric is decided after 4 blocks a point",
    )  # fmt: skip
    words = compare.run_verdicts(run, SWEEP)
    rows = compare.compare_run(run, SWEEP)
    assert list(words) == list(rows) == ["v-60 against v-100", "v-20 against v-100"]
    for title, verdicts in words.items():
        primary = {r["metric"]: r["verdict"] for r in rows[title] if r["primary"]}
        assert primary == {m: v.verdict for m, v in verdicts.items()}
        assert set(primary.values()) == {stats.WORSE}


def test_a_sweep_of_one_group_with_a_value_still_open_goes_on():
    edge = sweep_of_one_group({**SLOWER, "v-20": 105.0}, 4)  # at the margin: undecided
    assert compare.go_on(edge, SWEEP) == (
        True, "undecided at v-20 against v-100 after 4 blocks a point",
    )  # fmt: skip
    # One value only is no comparison: the sweep goes on (to its budget or its time).
    assert compare.go_on(sweep_of_one_group({"v-100": 100.0}, 4), SWEEP) == (
        True, "no pair of blocks yet",
    )  # fmt: skip


def test_a_sweep_of_one_group_between_looks_goes_on_counting_the_fewest_pairs():
    assert compare.go_on(sweep_of_one_group(SLOWER, 5), SWEEP) == (
        True, "5 blocks a point, between looks",
    )  # fmt: skip
    run = sweep_of_one_group(SLOWER, 4)  # decided, were v-60's last block not missing
    run.reps = [r for r in run.reps if (r.point, r.rep) != ("v-60", 4)]
    assert compare.go_on(run, SWEEP) == (True, "3 blocks a point, between looks")


def test_a_sweep_of_one_group_stops_at_its_budget():
    same = sweep_of_one_group({"v-100": 100.0, "v-60": 100.0, "v-20": 104.0}, 8)
    assert compare.go_on(same, SWEEP) == (False, "the budget of 8 blocks a point is spent")


def test_a_calibration_across_deployments_reports_the_spread_between_them(tmp_path):
    from ansible_collections.servelab.vllm.plugins.module_utils.results import collect
    from helpers.results_fixture import write_run

    scales = (1.0, 1.12, 0.9, 1.05)  # dev's deployments differ; its blocks within do not
    run = collect.load_run(write_run(tmp_path, reps=8, dev_scale=1.0, deployment_scales=scales))
    spread = compare.calibration_spread(run)["median_ttft_ms"]
    assert spread["deployments"] == 4 and spread["df"] == 4  # 8 pairs - 4 deployment means
    assert spread["between_sd"] > spread["sd"]
    assert spread["between_sd"] == pytest.approx(float(np.std(np.log(scales), ddof=1)), rel=0.5)
    pooled = compare.pool_spreads([{"m": spread | {"runs": ["a"]}}, {"m": spread}])["m"]
    assert pooled["between_sd"] == pytest.approx(spread["between_sd"])
    assert pooled["deployments"] == 7 and pooled["df"] == 8
    rows = compare.compare_run(run, compare.Settings(min_pairs=4, max_pairs=8))["default"]
    ttft = next(r for r in rows if r["metric"] == "median_ttft_ms")
    assert ttft["method"] == "paired log ratio, 4 deployments as units"


def sweep_of_dev(levels: dict[str, float], reps: int, noise: float = 0.01):
    """A sweep of dev's setting beside baseline (plan.dev_sweep_order): value after value,
    at each the two groups in ABBA order; baseline at 100, dev at the value's level, each
    block with a little noise."""
    from ansible_collections.servelab.vllm.plugins.module_utils.bench import plan
    from ansible_collections.servelab.vllm.plugins.module_utils.records import BlockSummary
    from ansible_collections.servelab.vllm.plugins.module_utils.results import collect

    run = collect.RunResults("dev-sweep")
    for b in plan.dev_sweep_order(list(levels), reps, "vllm_v"):
        level = (levels[b["value"]] if b["group"] == "dev" else 100.0) * (
            1 + noise * ((b["rep"] * 7 + b["order"] * 3) % 5 - 2)
        )
        summary = BlockSummary.from_json({
            "median_ttft_ms": level, "median_tpot_ms": 0.4 * level,
            "spec": {"request_rate": 2.0}, "context": {"order": b["order"]},
        })  # fmt: skip
        run.reps.append(collect.RepResult(b["group"], "h", b["label"], b["rep"], summary, []))
    return run


def test_a_sweep_of_dev_asked_one_value_at_a_time_stops_as_its_report_says():
    """The rule asked about one value's blocks alone (a sweep of dev's setting) shares
    the family-wise level among all the values, as the report does: each value's words
    are the report's at that value. Asked as if the value were the run's only
    comparison, a value near the edge is decided a look earlier than its report allows."""
    levels = {"80": 112.0, "60": 150.0, "40": 104.0, "20": 200.0}
    run = sweep_of_dev(levels, 6, noise=0.02)
    rows = compare.compare_run(run, SWEEP)
    assert list(rows) == [f"v-{v}" for v in levels]
    for value in levels:
        alone = sweep_of_dev({value: levels[value]}, 6, noise=0.02)
        alone.reps = [r for r in run.reps if r.point == f"v-{value}"]
        words = compare.run_verdicts(alone, SWEEP, comparisons=len(levels))
        primary = {r["metric"]: r["verdict"] for r in rows[f"v-{value}"] if r["primary"]}
        assert primary == {m: v.verdict for m, v in words[f"v-{value}"].items()}
    assert {r["verdict"] for r in rows["v-40"] if r["primary"]} == {stats.UNDECIDED}
    assert {r["verdict"] for r in rows["v-20"] if r["primary"]} == {stats.WORSE}
    edge = sweep_of_dev({"40": 105.0}, 4)
    assert compare.go_on(edge, SWEEP) == (
        False, "every primary metric is decided after 4 blocks a group",
    )  # fmt: skip
    assert compare.go_on(edge, SWEEP, comparisons=4) == (
        True, "undecided at v-40 after 4 blocks a group",
    )  # fmt: skip
