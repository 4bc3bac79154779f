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


def test_the_role_passes_each_option_from_the_setting_of_its_name():
    """A Kconfig symbol VLLM_BENCHMARK_<NAME> that is a RunSpec field reaches the module
    as option <name> from vllm_benchmark_<name>: no renames on the way."""
    task = yaml.safe_load((TOP / "roles/bench/tasks/block.yml").read_text())[0]
    options = task["servelab.vllm.benchmark"]
    declared = yaml.safe_load((TOP / "roles/bench/meta/argument_specs.yml").read_text())
    role_vars = declared["argument_specs"]["main"]["options"]
    symbols = kconfig_symbols()
    configured = [n for n in FIELDS if f"VLLM_BENCHMARK_{n.upper()}" in symbols]
    assert len(configured) >= 20, configured
    for name in configured:
        assert name in options, name
        if name != "request_rate":  # auto is resolved to a number first (bench_rate)
            assert f"vllm_benchmark_{name}" in options[name], (name, options[name])
    used = set(re.findall(r"vllm_benchmark_\w+", yaml.safe_dump(options)))
    assert used <= set(role_vars), used - set(role_vars)  # the role declares what it reads
    # Every setting the role reads names a RunSpec field or the play around the runs.
    for var in used:
        name = var.removeprefix("vllm_benchmark_")
        around = ("probe_concurrency", "request_rate", "sweep", "block_retries")
        assert name in FIELDS or name in around, var


@pytest.mark.parametrize("process", arrivals.PROCESSES)
def test_send_times_of_a_count_and_of_a_duration(process):
    count = spec.RunSpec(url="u", model="m", request_rate=4, arrivals=process, seed=3)
    assert list(schedule.send_times(count, 8)) == arrivals.schedule(8, 4, 3, process, 1.0)
    timed = dataclasses.replace(count, duration=10)
    gaps = arrivals.intervals(4, 3, process, 1.0)
    expected = list(itertools.accumulate(itertools.islice(gaps, 50)))
    got = list(itertools.islice(schedule.send_times(timed, 8), 50))
    assert got == pytest.approx(expected)
