"""RunSpec is the one declaration of the benchmark's options: the CLI, the module, the
role and Kconfig all use its names, and its defaults."""

import dataclasses
import itertools
import math
import re
from pathlib import Path

import pytest
import yaml
from ansible_collections.servelab.vllm.plugins.module_utils.bench import (
    arrivals,
    cli,
    plan,
    schedule,
    spec,
)
from ansible_collections.servelab.vllm.plugins.modules import benchmark

TOP = Path(__file__).resolve().parents[2]
FIELDS = {f.name: f for f in dataclasses.fields(spec.RunSpec)}


def test_the_module_documents_exactly_its_argument_spec():
    """ansible-test sanity checks the same; this says which option drifted, in a second."""
    documented = yaml.safe_load(benchmark.DOCUMENTATION)["options"]
    argspec = benchmark.argument_spec()
    assert set(documented) == set(argspec)
    for name, entry in argspec.items():
        doc = documented[name]
        for key in ("type", "default", "choices", "elements"):
            assert doc.get(key) == entry.get(key), (name, key)
        assert bool(doc.get("required")) == bool(entry.get("required")), name
        for line in (
            [doc["description"]] if isinstance(doc["description"], str) else doc["description"]
        ):
            assert isinstance(line, str), name


def test_every_run_option_is_a_module_option_with_runspecs_default():
    argspec = spec.argument_spec()
    assert set(argspec) == set(FIELDS)
    defaults = spec.RunSpec(url="u", model="m")
    for name, entry in argspec.items():
        if "default" in entry and name != "request_rate":
            assert entry["default"] == getattr(defaults, name), name


def test_the_cli_offers_every_option_and_defaults_to_runspecs():
    args = cli.parser().parse_args(["--url", "u", "--model", "m", "--out", "/tmp/x"])
    from_cli = spec.from_args(args)
    assert from_cli == spec.RunSpec(url="u", model="m")
    flags = {a.dest: a.option_strings for a in cli.parser()._actions}
    for name, f in FIELDS.items():
        if f.metadata["cli"]:
            assert flags[name] == [f.metadata["flag"] or "--" + name.replace("_", "-")]


def test_cli_lists_and_maps():
    args = cli.parser().parse_args(
        ["--url", "u", "--model", "m", "--out", "o", "--percentiles", "50,99.9",
         "--metrics-url", "e0=http://x/metrics", "--max-concurrency", "3"]
    )  # fmt: skip
    got = spec.from_args(args)
    assert got.percentiles == [50, 99.9] and got.metrics_urls == {"e0": "http://x/metrics"}
    assert got.max_concurrency == 3
    bad = cli.parser().parse_args(
        ["--url", "u", "--model", "m", "--out", "o", "--percentiles", "a"]
    )
    with pytest.raises(ValueError, match="--percentiles takes numbers"):
        spec.from_args(bad)


def test_module_params_become_a_runspec():
    params = {name: entry.get("default") for name, entry in benchmark.argument_spec().items()}
    params.update(url="u", model="m", request_rate="4", processes={"e": 12, "r": 0, "x": ""})
    params.update(goodput_tpot_ms=50.0)
    got = spec.from_params(params)
    assert got.request_rate == 4.0 and got.processes == {"e": 12}
    assert got.slo == spec.metrics.Slo(0.0, 50.0, 0.0)
    assert math.isinf(spec.from_params({**params, "request_rate": "inf"}).request_rate)
    with pytest.raises(spec.BenchError, match="request_rate 'fast': expected a number or inf"):
        spec.from_params({**params, "request_rate": "fast"})


def kconfig_symbols() -> set[str]:
    text = (TOP / "kconfig/Kconfig.benchmark").read_text()
    return set(re.findall(r"^(?:config|choice) (VLLM_BENCHMARK_\w+)", text, re.M))


PART = {
    "host": "b1", "group": "baseline", "url": "http://127.0.0.1:8000", "machine": "localhost",
    "stack_dir": "/s/baseline", "pids": [10], "tokenizer_path": "/m", "out_dir": "/r/b",
    "metrics_urls": {"router": "http://127.0.0.1:8001/metrics"}, "processes": {"e": 10},
    "context": {"group": "baseline", "run_id": "r1"},
}  # fmt: skip
BLOCK = {"host": "b1", "group": "baseline", "label": "default", "rep": 3, "order": 5}


def test_each_option_comes_from_the_setting_of_its_name():
    """A Kconfig symbol VLLM_BENCHMARK_<NAME> that is a RunSpec field reaches the module
    as option <name> from vllm_benchmark_<name> (plan.block_options): no renames on the
    way; and every option given is one the module takes."""
    symbols = kconfig_symbols()
    configured = [n for n in FIELDS if f"VLLM_BENCHMARK_{n.upper()}" in symbols]
    assert len(configured) >= 20, configured
    settings = {f"vllm_benchmark_{n}": f"<{n}>" for n in configured}
    settings.update(vllm_model_name="smol", vllm_api_key="k")
    opts = plan.block_options(settings, PART, BLOCK, 2.5)
    the_blocks_own = ("request_rate", "max_concurrency", "warmup_concurrency")
    for name in configured:
        if name not in the_blocks_own:
            assert opts[name] == f"<{name}>", name
    assert set(opts) <= set(benchmark.argument_spec()), set(opts) - set(benchmark.argument_spec())
    assert (opts["model"], opts["api_key"], opts["url"]) == ("smol", "k", PART["url"])
    # Every setting of the benchmark's Kconfig file is a RunSpec field, a choice's option
    # or list, or read around the blocks (plan.AROUND).
    for symbol in symbols:
        name = symbol.removeprefix("VLLM_BENCHMARK_").lower()
        assert (
            name in FIELDS or name in plan.AROUND or name.startswith(("sweep_", "dataset_"))
            or name.startswith("endpoint_") or name.startswith("arrivals_")
        ), symbol  # fmt: skip


def test_a_blocks_own_options():
    settings = {
        "vllm_model_name": "smol", "vllm_benchmark_request_rate": "auto",
        "vllm_benchmark_max_concurrency": 0, "vllm_benchmark_probe_concurrency": 4,
        "vllm_benchmark_warmup_requests": 8, "vllm_benchmark_load_fraction": 0.75,
        "vllm_benchmark_block_retries": 2, "vllm_benchmark_sweep": "none",
    }  # fmt: skip
    other = {**PART, "host": "d1", "stack_dir": "/s/dev", "pids": [20], "group": "dev"}
    away = {**PART, "host": "x1", "machine": "elsewhere", "stack_dir": "/s/x", "pids": [30]}
    opts = plan.block_options(settings, PART, BLOCK, 4.43, parts=[PART, other, away])
    assert opts["request_rate"] == "4.43" and opts["max_concurrency"] == 0
    assert opts["warmup_requests"] == 8 and opts["warmup_concurrency"] == 4  # the probe's load
    assert opts["freeze"] == [{"stack_dir": "/s/dev", "pids": [20]}]  # same machine only
    assert opts["block_retries"] == 2 and "load_fraction" not in opts
    assert opts["context"] == {
        "group": "baseline", "run_id": "r1", "order": 5, "load": {}, "sweep": "none",
        "deployment": None, "crossed": None, "frozen": [],
    }  # fmt: skip
    cold = plan.block_options(settings, PART, {**BLOCK, "warm": False, "max_concurrency": 2}, 1)
    assert cold["warmup_requests"] == 0 and cold["max_concurrency"] == 2
    probe = plan.block_options(settings, PART, BLOCK, "inf", action="probe")
    assert probe["action"] == "probe" and probe["load_fraction"] == 0.75
    # A configured rate: the warm-up runs at the run's limit (none).
    fixed = plan.block_options({**settings, "vllm_benchmark_request_rate": 3}, PART, BLOCK, 3)
    assert fixed["warmup_concurrency"] == 0
    # On a cluster, nothing is frozen.
    pod = {**PART, "machine": "kubernetes"}
    assert plan.block_options(settings, pod, BLOCK, 1, parts=[pod, other])["freeze"] == []
    assert plan.offered_rate(5.904, 0.75) == 4.428


def test_a_machine_shared_by_hosts_that_cannot_see_each_other_freezes_through_each():
    """Hosts on one machine (one boot id) are measured one at a time. Those in one PID
    namespace (the local platform) the benchmark freezes itself; those in namespaces of
    their own (the SSH lab, containers, VMs) the controller freezes through their own
    hosts (block.yml). A host on another machine is never frozen."""
    base = {**PART, "machine": "boot:1", "pid_ns": "pid:[1]"}
    same_ns = {**base, "host": "d1", "stack_dir": "/s/dev", "pids": [20], "group": "dev"}
    own_ns = {**same_ns, "host": "d2", "stack_dir": "/s/d2", "pids": [2], "pid_ns": "pid:[9]"}
    away = {**own_ns, "host": "x1", "machine": "boot:2", "stack_dir": "/s/x"}
    parts = [base, same_ns, own_ns, away]
    assert plan.frozen_beside(parts, base) == [{"stack_dir": "/s/dev", "pids": [20]}]
    assert plan.frozen_elsewhere(parts, base) == [{"host": "d2", "stack_dir": "/s/d2", "pids": [2]}]
    opts = plan.block_options({"vllm_model_name": "m"}, base, BLOCK, 1, parts=parts)
    assert opts["context"]["frozen"] == ["d2:/s/d2"]  # recorded in the block's summary
    assert plan.frozen_elsewhere(parts, away) == []  # alone on its machine
    pod = {**base, "machine": "kubernetes"}
    assert plan.frozen_elsewhere([pod, {**own_ns, "machine": "kubernetes"}], pod) == []


@pytest.mark.parametrize("process", arrivals.PROCESSES)
def test_send_times_of_a_count_and_of_a_duration(process):
    count = spec.RunSpec(url="u", model="m", request_rate=4, arrivals=process, seed=3)
    assert list(schedule.send_times(count, 8)) == arrivals.offsets(8, 4, 3, process, 1.0)
    timed = dataclasses.replace(count, duration=10)
    gaps = arrivals.intervals(4, 3, process, 1.0)
    expected = list(itertools.accumulate(itertools.islice(gaps, 50)))
    got = list(itertools.islice(schedule.send_times(timed, 8), 50))
    assert got == pytest.approx(expected)
