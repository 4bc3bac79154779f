"""The report of a run, from synthetic results with a known 50% latency regression."""

import json
import re
import shutil

from ansible_collections.servelab.vllm.plugins.module_utils.bench import server_metrics
from ansible_collections.servelab.vllm.plugins.module_utils.results import collect, compare, report
from helpers.results_fixture import write_run

SETTINGS = compare.Settings(confidence=0.95, margin_pct=5)
GATE = ["median_ttft_ms", "median_tpot_ms"]


def verdicts(out: dict, point: str = "default") -> dict:
    return {r["metric"]: r["verdict"] for r in out["comparisons"][point]}


def test_report_detects_the_regression_and_writes_every_file(tmp_path):
    run = write_run(tmp_path)
    out = report.write_report(run, SETTINGS, GATE)
    v = verdicts(out)
    assert v["median_ttft_ms"] == "WORSE" and v["median_tpot_ms"] == "WORSE"
    assert v["output_throughput"] == "WORSE"  # a closed loop: throughput is primary
    assert v["request_throughput"] == "-"  # a secondary: an interval, no word
    assert out["regressions"] and not out["problems"]
    rdir = run / "report"
    for name in (
        "report.md",
        "report.html",
        "summary.csv",
        "compare.json",
        "cdf_ttft_default.png",
        "cdf_itl_default.png",
        "cdf_e2el_default.png",
        "throughput_default.png",
        "decision.png",
        "blocks_default.png",
    ):
        assert (rdir / name).stat().st_size > 0, name
    html = (rdir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6 and "src='http" not in html
    # The first image is the forest plot of what decided the verdict.
    assert (
        html.index("alt='decision'")
        < html.index("alt='blocks_default'")
        < html.index("alt='cdf_ttft_default'")
    )
    assert len((rdir / "summary.csv").read_text().splitlines()) == 1 + 2 * 3
    doc = json.loads((rdir / "compare.json").read_text())
    assert doc["gate"]["regressions"] and doc["comparisons"]["default"][0]["pairs"] == 3
    # The printed summary and the report open with the words.
    assert out["table"][1].strip().startswith("WORSE median_ttft_ms, median_tpot_ms")
    assert any(line.strip().startswith("median_ttft_ms WORSE: ") for line in out["table"])
    md = (rdir / "report.md").read_text()
    # The answer comes first: the verdict before the tables, the MDE beside each verdict.
    assert md.index("## Verdict") < md.index("## Comparison: default") < md.index("## Plots")
    assert md.index("## Verdict") < md.index("## What decided it") < md.index("decision.png")
    assert "MDE %" in md and "## Repetitions in run order" in md and "## Warnings" in md
    assert "<h2>Verdict</h2>" in html and "Repetitions in run order" in html


def test_identical_groups_are_the_same_with_enough_blocks_and_undecided_with_few(tmp_path):
    many = report.write_report(
        write_run(tmp_path / "many", dev_scale=1.0, seed=5, reps=8, n=400), SETTINGS, GATE
    )
    assert not many["regressions"]
    assert verdicts(many)["median_ttft_ms"] == "SAME"
    few = report.write_report(write_run(tmp_path / "few", dev_scale=1.0, seed=5), SETTINGS, GATE)
    assert not few["regressions"]
    assert verdicts(few)["median_ttft_ms"] == "UNDECIDED"
    assert "more blocks a group would likely decide it" in "\n".join(few["table"])
    undecided = report.write_report(
        write_run(tmp_path / "gate", dev_scale=1.0, seed=5), SETTINGS, GATE, undecided=True
    )
    assert undecided["regressions"]  # FAIL_ON_UNDECIDED: an undecided run fails the gate


def test_sweep_points_get_their_own_comparison_and_a_sweep_plot(tmp_path):
    points = ("concurrency-1", "concurrency-2", "concurrency-4")
    run = write_run(tmp_path, points=points, reps=2, n=20)
    out = report.write_report(run, SETTINGS, GATE)
    assert list(out["comparisons"]) == list(points)
    assert (run / "report" / "sweep.png").stat().st_size > 0
    md = (run / "report" / "report.md").read_text()
    assert "## Sweep" in md and md.count("| concurrency-") >= 6


def test_a_sweep_of_one_group_compares_each_point_with_the_first_in_run_order(tmp_path):
    points = ("mps-100", "mps-50", "mps-20")  # run order; by name 20 would come first
    run = write_run(tmp_path, points=points, reps=3, n=30)
    shutil.rmtree(run / "dev")
    out = report.write_report(run, SETTINGS, GATE)
    assert list(out["comparisons"]) == ["mps-50 against mps-100", "mps-20 against mps-100"]
    assert not out["problems"]
    # The fixture's later points are slower (load 1.5x, 2x): the first point plays baseline.
    assert verdicts(out, "mps-20 against mps-100")["median_ttft_ms"] == "WORSE"
    md = (run / "report" / "report.md").read_text()
    assert "the first point plays baseline" in md
    assert (
        md.index("| mps-100 | baseline")
        < md.index("| mps-50 | baseline")
        < md.index("| mps-20 | baseline")
    )


def test_missing_partial_and_corrupt_results_are_reported_not_deleted(tmp_path):
    run = write_run(tmp_path)
    dev_host = run / "dev" / "dev-local"
    (dev_host / "default" / "rep-2" / "summary.json").write_text("{not json")
    (dev_host / "default" / "rep-3" / "requests.jsonl").unlink()
    (run / "dev" / "dev-other").mkdir()
    old = json.loads((dev_host / "default" / "rep-1" / "summary.json").read_text())
    old["schema_version"] = 99
    (dev_host / "default" / "rep-1" / "summary.json").write_text(json.dumps(old))
    files_before = sorted(p for p in run.rglob("*") if "report" not in p.parts)
    out = report.write_report(run, SETTINGS, GATE)
    problems = "\n".join(out["problems"])
    assert "rep-2: summary.json is corrupt" in problems
    assert "rep-3: requests.jsonl missing" in problems
    assert "dev-other: no summary.json" in problems
    assert "schema_version 99" in problems
    assert out["comparisons"]["default"]  # rep-3 of dev still compares throughputs
    assert sorted(p for p in run.rglob("*") if "report" not in p.parts) == files_before
    assert "Problems" in (run / "report" / "report.md").read_text()


def test_a_group_missing_entirely_is_said(tmp_path):
    run = write_run(tmp_path)
    shutil.rmtree(run / "dev")
    out = report.write_report(run, SETTINGS, GATE)
    assert out["comparisons"] == {}
    assert any("no dev results" in p for p in out["problems"])


def test_runs_are_listed_with_time_hash_and_groups(tmp_path):
    write_run(tmp_path, run_id="20261122T000000Z-aaaaaaaaaaaa")
    write_run(tmp_path, run_id="20261123T000000Z-bbbbbbbbbbbb")
    (tmp_path / ".incoming").mkdir()  # fetch's staging directory is not a run
    runs = collect.list_runs(tmp_path)
    assert [r["config_hash"] for r in runs] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert runs[0]["time"] == "20261122T000000Z" and runs[0]["groups"] == ["baseline", "dev"]


def test_a_block_served_from_the_prefix_cache_beyond_its_workload_is_warned_about(tmp_path):
    """The engines' own counters (as the H200 rate sweep recorded them: 48,768 of 49,152
    prompt tokens hit) against what the workload shares by design: random prompts with no
    common prefix share nothing; a common prefix of 128 before 16 tokens shares 89%."""
    run = write_run(tmp_path)

    def block(group, rep, hits, prefix_len):
        path = run / group / f"{group}-local" / "default" / f"rep-{rep}" / "summary.json"
        doc = json.loads(path.read_text())
        doc["server"] = {
            f"{group}-engine-0": {"prefix_cache_hits": hits, "prefix_cache_queries": 49152.0}
        }
        doc["spec"] = {**doc.get("spec", {}), "dataset": "random", "input_len": 16 if prefix_len
                       else 2048, "prefix_len": prefix_len}  # fmt: skip
        path.write_text(json.dumps(doc))

    block("baseline", 1, 48768.0, 0)  # the first run's prompts sent again: warned
    block("dev", 1, 0.0, 0)  # fresh prompts
    block("dev", 2, 43000.0, 128)  # 87% through a shared prefix of 89%: by design
    report.write_report(run, SETTINGS, GATE)
    doc = json.loads((run / "report" / "compare.json").read_text())
    warned = [w for w in doc["warnings"] if "prefix cache" in w]
    assert warned == [
        "baseline/baseline-local default rep 1: 99% of the prompt tokens were served from the "
        "prefix cache, where the workload shares 0% by design: prompts the engines had served "
        "before made it faster, it measured a cached prefill (docs/benchmark.md, the seed of a "
        "block)"
    ]


def test_a_client_bound_repetition_is_warned_about_with_its_figure(tmp_path):
    run = write_run(tmp_path)
    reps = run / "dev" / "dev-local" / "default"
    bound = {"bound": True, "send_lag_p99_ms": 3.2, "cpu_pct_max": 40.0,
             "why": "the client's p99 send lag 3.20 ms is above 1 ms"}  # fmt: skip
    for rep, client in ((2, bound), (3, {**bound, "bound": False, "why": ""})):
        path = reps / f"rep-{rep}" / "summary.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "client": client}))
    # A summary that says bound but not why: the report gives the figures and limits.
    path = run / "baseline" / "baseline-local" / "default" / "rep-1" / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()),
                                "client": {"bound": True, "send_lag_p99_ms": 0.4,
                                           "cpu_pct_max": 97.0}}))  # fmt: skip
    # A busy-polling client: its full core is no warning; the share at work is shown.
    path = run / "baseline" / "baseline-local" / "default" / "rep-2" / "summary.json"
    polling = {"bound": False, "send_lag_p99_ms": 0.3, "cpu_pct_max": 100.0, "busy_poll": True,
               "loop_busy_pct_max": 35.0, "workers": [{}, {}]}  # fmt: skip
    path.write_text(json.dumps({**json.loads(path.read_text()), "client": polling}))
    report.write_report(run, SETTINGS, GATE)
    doc = json.loads((run / "report" / "compare.json").read_text())
    warned = sorted(w for w in doc["warnings"] if "client-bound" in w)
    assert warned == [
        "baseline/baseline-local default rep 1: client-bound: p99 send lag 0.40 ms (limit 1 "
        "ms), CPU 97% of a core (limit 90%): the load generator, not only the server, shaped "
        "these figures",
        "dev/dev-local default rep 2: client-bound: the client's p99 send lag 3.20 ms is "
        "above 1 ms: the load generator, not only the server, shaped these figures",
    ]
    md = (run / "report" / "report.md").read_text()
    assert warned[1] in md
    # Every block shows its client check in the run-order table, bound or not.
    table = [line for line in md.splitlines() if line.startswith("| ") and "| default |" in line]
    rows = {line.split("|")[2].strip() + line.split("|")[4].strip(): line for line in table}
    assert rows["dev2"].rstrip(" |").endswith("3.20 ms, 40% x1 BOUND")
    assert rows["dev3"].rstrip(" |").endswith("3.20 ms, 40% x1")
    assert rows["dev1"].rstrip(" |").endswith("| -")  # a summary from before the check
    assert rows["baseline2"].rstrip(" |").endswith("0.30 ms, busy 35% x2 poll")


def test_calibrations_of_this_machine_and_engine_pool_and_others_expire(tmp_path):
    """Two A/A runs of the configuration pool their spreads (degrees of freedom added);
    one of another engine version is not used; the report says what +-margin takes."""
    machine = {"placement": {"facts": {"model": "EPYC", "cpus": [0, 1]}}}

    def patch(run, **extra):
        for path in run.rglob("summary.json"):
            doc = json.loads(path.read_text())
            doc["context"].update(machine, **extra)
            path.write_text(json.dumps(doc))
        return run

    cals = [
        patch(write_run(tmp_path, run_id=f"20261122T00000{i}Z-abcdef123456-calibration",
                        dev_scale=1.0, seed=i, reps=6), run_kind="calibration")
        for i in (1, 2)
    ]  # fmt: skip
    other = patch(write_run(tmp_path, run_id="20261122T000003Z-abcdef123456-calibration",
                            dev_scale=1.0, seed=3, reps=6), run_kind="calibration")  # fmt: skip
    for path in other.rglob("summary.json"):
        doc = json.loads(path.read_text())
        doc["context"]["versions"]["engine"] = "0.31.0"
        path.write_text(json.dumps(doc))
    run = patch(write_run(tmp_path, run_id="20261123T000000Z-abcdef123456"))
    name, spread = report.find_calibration(collect.load_run(run), tmp_path)
    assert name == ", ".join(c.name for c in cals)
    assert spread["median_ttft_ms"]["df"] == 8  # 4 + 4: six pairs with a position term each
    assert spread["median_ttft_ms"]["runs"] == [c.name for c in cals]
    report.write_report(run, SETTINGS, GATE, tmp_path)
    md = (run / "report" / "report.md").read_text()
    assert f"Calibration {name}" in md and "blocks a group" in md
    # Before a run: what it can decide, from the newest calibration's engine and machine.
    said = report.forecast(tmp_path, "abcdef123456", SETTINGS)
    assert said.startswith("deciding +-5% on this machine takes about ")
    assert "20261122T000003Z" in said and "20261122T000001Z" not in said  # the newest: 0.31.0
    assert "no calibration" in report.forecast(tmp_path, "0123456789ab", SETTINGS)


def test_groups_on_two_hosts_report_the_host_offset_and_the_effect_net_of_it(tmp_path):
    """Across hosts, a calibration (dev with baseline's settings on its own host) measures
    the hosts' offset; an A/B on the same hosts reports it beside the verdict with the
    effect net of it; an A/B without a calibration is warned about; one host, neither."""
    hosts = {"baseline": "baseline-host", "dev": "dev-host"}
    declared = {"vllm_platform": "declared_hosts"}
    cal = write_run(tmp_path, run_id="20261122T000001Z-abcdef123456-calibration", dev_scale=1.10,
                    reps=8, hosts=hosts, run_kind="calibration", config=declared)  # fmt: skip
    out = report.write_report(cal, SETTINGS, GATE, tmp_path)
    line = next(x for x in out["table"] if "host offset" in x and "median_ttft_ms" in x)
    assert "dev's host (dev-host) against baseline's (baseline-host), with the same" in line
    assert "slower on median_ttft_ms" in line
    low, high = (float(x) for x in re.findall(r"[-+][0-9.]+", line.split("median_ttft_ms")[1])[:2])
    assert low < 10 < high, line  # dev's host is 10% slower
    doc = json.loads((cal / "report" / "compare.json").read_text())
    assert doc["host_offset"]["hosts"] == {"baseline": ["baseline-host"], "dev": ["dev-host"]}
    assert "the hosts' own difference" in (cal / "report" / "report.md").read_text()

    # dev's setting costs 20% more on top of its host's 10%.
    ab = write_run(tmp_path, run_id="20261123T000000Z-abcdef123456", dev_scale=1.32, reps=8,
                   seed=5, hosts=hosts, config=declared)  # fmt: skip
    out = report.write_report(ab, SETTINGS, GATE, tmp_path)
    line = next(x for x in out["table"] if "host offset" in x and "median_ttft_ms" in x)
    assert f"(calibration {cal.name})" in line and "cannot be told from the hosts" in line
    net = line.split("net of it, dev's change is ")[1]
    change, low, high = (float(x) for x in re.findall(r"[-+][0-9.]+", net)[:3])
    assert 15 < change < 25 and low < 20 < high, line

    other = tmp_path / "other"
    other.mkdir()
    alone = write_run(other, dev_scale=1.32, hosts=hosts, config=declared)
    out = report.write_report(alone, SETTINGS, GATE, other)
    doc = json.loads((alone / "report" / "compare.json").read_text())
    warned = [w for w in doc["warnings"] if "ran on different hosts" in w]
    assert warned and "make vllm-calibrate" in warned[0]
    assert not any("host offset" in x for x in out["table"])

    (tmp_path / "one").mkdir()
    one = write_run(tmp_path / "one", config=declared)  # one host name for both groups
    for group in ("baseline", "dev"):
        (one / group / f"{group}-local").rename(one / group / "gpu1")
    out = report.write_report(one, SETTINGS, GATE, tmp_path)
    doc = json.loads((one / "report" / "compare.json").read_text())
    assert not any("host" in w for w in doc["warnings"])
    assert not any("host offset" in x for x in out["table"])


def test_a_crossover_reports_the_settings_effect_net_of_the_hosts(tmp_path):
    """dev's host is 12% slower and dev's setting 10% faster: the groups swap hosts after
    4 of 8 repetitions, the verdict finds the setting's -10% and the report the hosts'
    +12%; the same run judged without its host term (no crossover) would see -10% x
    1.12 before the swap and -10% / 1.12 after, one number for both."""
    hosts = {"baseline": "gpu1", "dev": "gpu2"}
    config = {"vllm_platform": "declared_hosts", "vllm_benchmark_crossover": True}
    run = write_run(tmp_path, dev_scale=0.90, reps=8, hosts=hosts, config=config,
                    crossover_after=4, host_scales={"gpu2": 1.12})  # fmt: skip
    assert sorted(p.name for p in (run / "dev").iterdir()) == ["gpu1", "gpu2"]
    out = report.write_report(run, SETTINGS, GATE, tmp_path)
    rows = {r["metric"]: r for r in out["comparisons"]["default"]}
    tpot = rows["median_tpot_ms"]  # TTFT's median of 40 is too noisy for 8 pairs
    assert tpot["verdict"] == "BETTER" and "host (crossover)" in tpot["method"]
    assert tpot["low_pct"] < -10 < tpot["high_pct"], tpot
    assert 10 < tpot["host_pct"] < 14, tpot
    doc = json.loads((run / "report" / "compare.json").read_text())
    said = "\n".join(doc["verdict"])
    assert "crossover: baseline on gpu1 then gpu2; dev on gpu2 then gpu1" in said
    line = next(x for x in doc["verdict"] if x.startswith("host offset") and "median_tpot" in x)
    assert "dev's first host (gpu2) against baseline's (gpu1)" in line and "slower" in line
    assert not any("different hosts" in w for w in doc["warnings"])
    # Stopped before the swap: the estimate makes no claim.
    (tmp_path / "early").mkdir()
    early = write_run(tmp_path / "early", dev_scale=0.90, reps=4, hosts=hosts, config=config,
                      crossover_after=4, host_scales={"gpu2": 1.12})  # fmt: skip
    out = report.write_report(early, SETTINGS, GATE)
    assert verdicts(out)["median_tpot_ms"] == "UNDECIDED"
    assert any("stopped before the groups swapped" in x for x in out["table"])


def test_a_host_lost_mid_run_is_named_and_what_the_others_measured_is_compared(tmp_path):
    """dev's host went away after its second block: the report compares the two pairs
    it has, names the repetitions baseline ran alone, and the host that did not answer."""
    run = write_run(tmp_path, reps=4)
    for rep in (3, 4):
        shutil.rmtree(run / "dev" / "dev-local" / "default" / f"rep-{rep}")
    out = report.write_report(run, SETTINGS, GATE, tmp_path, unreachable=["dev-host"])
    assert out["problems"][0].startswith("dev-host could not be reached")
    assert f"make vllm-results RUN={run.name}" in out["problems"][0]
    assert (
        "point default: dev has no block for repetition(s) 3, 4, which baseline ran"
        in (out["problems"][1])
    )
    assert {r["pairs"] for r in out["comparisons"]["default"] if r["primary"]} == {2}
    md = (run / "report" / "report.md").read_text()
    assert "dev-host could not be reached" in md


def test_each_groups_kv_cache_is_shown_and_unequal_caches_are_warned_about(tmp_path):
    """The KV cache capacity the engines report (vllm:cache_config_info) is on the Groups
    line; groups whose engines hold caches more than 5% apart are warned about."""
    run = write_run(tmp_path)
    caches = {"baseline": (364, 46592), "dev": (320, 40960)}
    for group, (blocks, tokens) in caches.items():
        for rep in (1, 2, 3):
            path = run / group / f"{group}-local" / "default" / f"rep-{rep}" / "summary.json"
            kv = {"blocks": blocks, "block_size": 128, "tokens": tokens, "bytes": None}
            server = {f"{group}-engine-0": {"kv_cache": kv}, "router": {}}
            path.write_text(json.dumps({**json.loads(path.read_text()), "server": server}))
    report.write_report(run, SETTINGS, GATE)
    md = (run / "report" / "report.md").read_text()
    assert "KV cache 46592 tokens (364 blocks of 128)" in md
    assert "KV cache 40960 tokens (320 blocks of 128)" in md
    doc = json.loads((run / "report" / "compare.json").read_text())
    (warned,) = [w for w in doc["warnings"] if "KV caches" in w]
    assert "baseline 46592 tokens, dev 40960 (-12%)" in warned


def test_the_kv_cache_capacity_is_read_from_the_engines_cache_config_line():
    line = (
        'vllm:cache_config_info{block_size="128",enable_prefix_caching="True",engine="0",'
        'kv_cache_memory_bytes="1073741824",kv_cache_size_tokens="46592",'
        'num_cpu_blocks="None",num_gpu_blocks="364"} 1.0'
    )
    assert server_metrics.kv_cache(f"# HELP x\n{line}\n") == {
        "blocks": 364, "block_size": 128, "tokens": 46592, "bytes": 1073741824,
    }  # fmt: skip
    older = 'vllm:cache_config_info{block_size="16",num_gpu_blocks="1000"} 1.0'
    assert server_metrics.kv_cache(older)["tokens"] == 16000  # no tokens label: the product
    assert server_metrics.kv_cache('vllm:cache_config_info{num_gpu_blocks="None"} 1.0') is None
    assert server_metrics.kv_cache("vllm:num_requests_running 0.0") is None


def test_what_differs_shows_each_value_of_a_setting_swept_over_dev():
    """A sweep of dev's setting: dev's blocks ran at several values, baseline's at one;
    the table shows dev's values in run order, and a setting equal everywhere not at all."""
    from ansible_collections.servelab.vllm.plugins.module_utils.records import BlockSummary

    run = collect.RunResults("dev-sweep")
    for order, (group, share) in enumerate(
        [("baseline", 100), ("dev", 80), ("dev", 80), ("baseline", 100), ("dev", 20)], 1
    ):
        config = {"vllm_mps_active_thread_percentage": share, "vllm_model_name": "m"}
        summary = BlockSummary.from_json({"context": {"order": order, "config": config}})
        run.reps.append(collect.RepResult(group, "h", f"p-{share}", 1, summary, []))
    assert report.config_diff(run) == [["vllm_mps_active_thread_percentage", "100", "80 / 20"]]
