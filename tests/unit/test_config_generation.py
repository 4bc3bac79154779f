"""Generation of extra_vars.yaml and the inventory from .config."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import servelab_config as sc
import yaml

DEFCONFIGS = sc.list_defconfigs()


def make_config(tmp_path: Path, name: str, *extra: str) -> Path:
    """A .config from a defconfig, with extra lines appended (later lines win)."""
    config = tmp_path / ".config"
    assert sc.main(["--config", str(config), "defconfig", name]) == 0
    if extra:
        with config.open("a") as out:
            out.write("\n".join(extra) + "\n")
    return config


def generate(tmp_path: Path, config: Path) -> tuple[int, dict, dict]:
    ev, hosts = tmp_path / "extra_vars.yaml", tmp_path / "inv" / "hosts.yml"
    rc = sc.main(
        ["--config", str(config), "--extra-vars", str(ev), "--hosts", str(hosts), "generate"]
    )
    if rc:
        return rc, {}, {}
    return rc, yaml.safe_load(ev.read_text()), yaml.safe_load(hosts.read_text())


@pytest.mark.parametrize("name", DEFCONFIGS)
def test_every_defconfig_generates_typed_vars(tmp_path, name):
    rc, extra, inv = generate(tmp_path, make_config(tmp_path, name))
    assert rc == 0
    assert extra["vllm_platform"] in (
        "local",
        "declared_hosts",
        "kind",
        "minikube",
        "existing_cluster",
    )
    assert isinstance(extra["vllm_use_cpu_inference"], bool)
    assert isinstance(extra["vllm_kubernetes"], bool)
    # A defconfig of one group (a sweep of baseline alone: vllm-h200-mps-table) has no dev.
    expected = ["baseline", "dev"] if extra["vllm_baseline_and_dev"] else ["baseline"]
    assert extra["servelab_groups"] == expected
    assert len(extra["servelab_config_hash"]) == 12
    groups = inv["all"]["children"]
    # What runs record as their configuration: every setting, no secret, nothing else.
    names = set(extra["servelab_setting_names"])
    assert {"vllm_router_policy", "vllm_benchmark_arrivals", "servelab_group"} <= names
    assert not names & {"vllm_api_key", "vllm_hf_token", "servelab_config_hash"}
    assert all(k in names for body in groups.values() for k in body["vars"])
    assert set(groups) == set(expected)
    for group, body in groups.items():
        assert body["hosts"], f"{name}: {group} has no hosts"
        gv = body["vars"]
        assert gv["servelab_group"] == group
        assert isinstance(gv["vllm_replica_count"], int) and gv["vllm_replica_count"] >= 1
        assert isinstance(gv["vllm_enable_prefix_caching"], bool)
        assert isinstance(gv["vllm_engine_extra_args"], list)
        # The benchmark is the run's: one value for both groups, never a group's own.
        assert not any(k.startswith(("vllm_benchmark_", "vllm_results_")) for k in gv), name
    assert isinstance(extra["vllm_benchmark_percentiles"], list)
    assert all(isinstance(p, (int, float)) for p in extra["vllm_benchmark_percentiles"])
    rate = extra["vllm_benchmark_request_rate"]
    assert rate == "auto" or isinstance(rate, (int, float)), rate


def test_quick_test_is_local_cpu_with_two_groups_on_distinct_ports(tmp_path):
    _, extra, inv = generate(tmp_path, make_config(tmp_path, "vllm-quick-test"))
    assert extra["vllm_platform"] == "local" and extra["vllm_use_cpu_inference"] is True
    base, dev = (inv["all"]["children"][g] for g in ("baseline", "dev"))
    assert base["hosts"]["baseline-local"]["ansible_connection"] == "local"
    assert dev["hosts"]["dev-local"]["ansible_connection"] == "local"
    assert base["vars"]["vllm_router_port"] == 8000
    assert dev["vars"]["vllm_router_port"] == 9000
    assert dev["vars"]["vllm_engine_base_port"] == base["vars"]["vllm_engine_base_port"] + 1000
    assert base["vars"]["vllm_router_policy"] == "round_robin"
    assert dev["vars"]["vllm_router_policy"] == "prefix_aware"


def test_dev_overrides_are_typed_through_kconfig(tmp_path):
    config = make_config(
        tmp_path,
        "vllm-quick-test",
        'CONFIG_VLLM_DEV_OVERRIDES="vllm_engine_version=0.31.0 vllm_replica_count=2 '
        "vllm_enable_prefix_caching=n vllm_engine_extra_args='--max-num-seqs 4'\"",
    )
    _, _extra, inv = generate(tmp_path, config)
    base = inv["all"]["children"]["baseline"]["vars"]
    dev = inv["all"]["children"]["dev"]["vars"]
    assert (base["vllm_engine_version"], dev["vllm_engine_version"]) == ("0.32.0", "0.31.0")
    assert (base["vllm_replica_count"], dev["vllm_replica_count"]) == (1, 2)
    assert (base["vllm_enable_prefix_caching"], dev["vllm_enable_prefix_caching"]) == (True, False)
    assert dev["vllm_engine_extra_args"] == ["--max-num-seqs", "4"]
    assert base["vllm_engine_extra_args"] == []


def test_mps_override_on_gpu_defconfig(tmp_path):
    _, _, inv = generate(tmp_path, make_config(tmp_path, "vllm-kind-dra-mps"))
    groups = inv["all"]["children"]
    assert groups["baseline"]["vars"]["vllm_mps_active_thread_percentage"] == 100
    assert groups["dev"]["vars"]["vllm_mps_active_thread_percentage"] == 50
    assert groups["baseline"]["vars"]["vllm_gpu_sharing"] == "mps"
    assert groups["baseline"]["vars"]["vllm_gpu_memory_utilization"] == 0.4


def test_diff_groups_prints_only_differences(tmp_path, capsys):
    config = make_config(tmp_path, "vllm-kind-dra-mps")
    capsys.readouterr()
    assert sc.main(["--config", str(config), "diff-groups"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["setting", "baseline", "dev"]
    assert out[1].split() == ["vllm_mps_active_thread_percentage", "100", "50"]
    assert len(out) == 2


def test_secrets_stay_out_of_inventory_and_extra_vars_is_private(tmp_path):
    config = make_config(
        tmp_path,
        "vllm-quick-test",
        'CONFIG_VLLM_HF_TOKEN="hf_secret123"',
        'CONFIG_VLLM_API_KEY="sk-secret"',
    )
    _, extra, _ = generate(tmp_path, config)
    assert extra["vllm_hf_token"] == "hf_secret123"
    hosts_text = (tmp_path / "inv" / "hosts.yml").read_text()
    assert "secret" not in hosts_text
    for private in (tmp_path / "extra_vars.yaml", tmp_path / "inv/group_vars/all.yml"):
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o600


def test_group_vars_beside_the_inventory_repeat_the_settings(tmp_path):
    _, extra, _ = generate(tmp_path, make_config(tmp_path, "vllm-quick-test"))
    assert yaml.safe_load((tmp_path / "inv/group_vars/all.yml").read_text()) == extra


def test_knob_sweep_values_are_typed_as_the_swept_setting(tmp_path):
    config = make_config(
        tmp_path,
        "vllm-local-gpu-mps",
        "CONFIG_VLLM_BENCHMARK_SWEEP_KNOB=y",
        'CONFIG_VLLM_BENCHMARK_SWEEP_KNOB_VALUES_LIST="20 50 100"',
    )
    _, extra, _ = generate(tmp_path, config)
    assert extra["vllm_benchmark_sweep"] == "knob"
    assert extra["vllm_benchmark_sweep_knob_name"] == "vllm_mps_active_thread_percentage"
    assert extra["vllm_benchmark_sweep_knob_values_list"] == [20, 50, 100]


BAD_INPUTS = [
    ("CONFIG_VLLM_ROUTER_PORT=80", ["VLLM_ROUTER_PORT", "1024", "65535"]),
    ("CONFIG_VLLM_REPLICA_COUNT=0", ["VLLM_REPLICA_COUNT", "from 1 to 64"]),
    ("CONFIG_VLLM_REPLICA_COUNT=two", ["VLLM_REPLICA_COUNT", "integer"]),
    ("CONFIG_VLLM_ENGINE_BASE_PORT", ["malformed line", "CONFIG_NAME=value"]),
    ("CONFIG_VLLM_MODEL_NAME=unquoted", ["VLLM_MODEL_NAME", "double-quoted"]),
    ("CONFIG_VLLM_ROUTR_PORT=8000", ["VLLM_ROUTR_PORT", "no such setting"]),
    ('CONFIG_VLLM_BENCHMARK_REQUEST_RATE="-1"', ["VLLM_BENCHMARK_REQUEST_RATE", "> 0"]),
    ('CONFIG_VLLM_DTYPE="fp7"', ["VLLM_DTYPE", "bfloat16"]),
    ('CONFIG_VLLM_BENCHMARK_PERCENTILES="50 abc"', ["PERCENTILES", "list"]),
    (
        "CONFIG_VLLM_BENCHMARK_CONCURRENT_USERS=4",
        ["VLLM_BENCHMARK_CONCURRENT_USERS", "renamed", "CONFIG_VLLM_BENCHMARK_MAX_CONCURRENCY"],
    ),
    ("CONFIG_VLLM_BENCHMARK_ENABLED=y", ["VLLM_BENCHMARK_ENABLED", "removed"]),
    (
        'CONFIG_VLLM_RESULTS_THRESHOLD_PCT="2"',
        ["VLLM_RESULTS_THRESHOLD_PCT", "renamed", "CONFIG_VLLM_RESULTS_MARGIN_PCT"],
    ),
    ('CONFIG_VLLM_RESULTS_MARGIN_PCT="0"', ["VLLM_RESULTS_MARGIN_PCT", "> 0"]),
    (
        "CONFIG_VLLM_BENCHMARK_MIN_REPETITIONS=6",
        ["VLLM_BENCHMARK_REPETITIONS=2", "below", "VLLM_BENCHMARK_MIN_REPETITIONS=6"],
    ),
    ('CONFIG_VLLM_WORK_DIR="relative/dir"', ["VLLM_WORK_DIR", "absolute path"]),
    ('CONFIG_VLLM_ENGINE_ENV_LIST="A=1 not-a-pair"', ["VLLM_ENGINE_ENV_LIST", "NAME=VALUE"]),
    ('CONFIG_VLLM_ENGINE_INHERIT_SITE="lib/site"', ["VLLM_ENGINE_INHERIT_SITE", "absolute"]),
    ('CONFIG_VLLM_DEV_OVERRIDES="vllm_replica_count=0"', ["vllm_replica_count", "from 1 to 64"]),
    ('CONFIG_VLLM_DEV_OVERRIDES="vllm_platform=kind"', ["vllm_platform", "per-group"]),
    # Run-level settings: dev's value would never be applied (both groups get one load).
    (
        'CONFIG_VLLM_DEV_OVERRIDES="vllm_benchmark_request_rate=2"',
        ["vllm_benchmark_request_rate", "run-level", "CONFIG_VLLM_BENCHMARK_REQUEST_RATE"],
    ),
    (
        'CONFIG_VLLM_DEV_OVERRIDES="vllm_benchmark_repetitions=4"',
        ["vllm_benchmark_repetitions", "run-level", "CONFIG_VLLM_BENCHMARK_REPETITIONS"],
    ),
    (
        'CONFIG_VLLM_DEV_OVERRIDES="vllm_benchmark_sweep=rate"',
        ["vllm_benchmark_sweep", "run-level", "CONFIG_VLLM_BENCHMARK_SWEEP_"],
    ),
    ('CONFIG_VLLM_DEV_OVERRIDES="vllm_results_margin_pct=20"', ["run-level"]),
    ('CONFIG_VLLM_DEV_OVERRIDES="vllm_nope=1"', ["vllm_nope", "no such setting"]),
    ('CONFIG_VLLM_DEV_OVERRIDES="justaword"', ["SETTING=VALUE"]),
    ('CONFIG_VLLM_DEV_OVERRIDES="vllm_router_policy=fastest"', ["round_robin", "prefix_aware"]),
    ("CONFIG_VLLM_ROUTER_METRICS_PORT=8000", ["port 8000", "distinct"]),
    ('CONFIG_VLLM_DEV_OVERRIDES="vllm_router_policy=power_of_two"', ["dev:", "at least 2 engines"]),
    (
        'CONFIG_VLLM_BENCHMARK_SWEEP_KNOB=y\nCONFIG_VLLM_BENCHMARK_SWEEP_KNOB_NAME="vllm_replica_count"'
        '\nCONFIG_VLLM_BENCHMARK_SWEEP_KNOB_VALUES_LIST="1 0"',
        ["vllm_replica_count='0'", "from 1 to 64"],
    ),
    (
        'CONFIG_VLLM_BENCHMARK_SWEEP_KNOB=y\nCONFIG_VLLM_BENCHMARK_SWEEP_KNOB_NAME="vllm_nope"',
        ["SWEEP_KNOB_NAME", "per-group setting"],
    ),
    (
        "CONFIG_VLLM_LOCAL_DEV_PORT_OFFSET=20000\nCONFIG_VLLM_ROUTER_METRICS_PORT=50000",
        ["exceeds 65535", "OFFSET"],
    ),
    (
        "CONFIG_VLLM_BENCHMARK_REPETITIONS=8\nCONFIG_VLLM_BENCHMARK_REDEPLOY_EVERY=3",
        ["VLLM_BENCHMARK_REDEPLOY_EVERY=3", "even number below", "REPETITIONS=8"],
    ),
    (
        "CONFIG_VLLM_BENCHMARK_REDEPLOY_EVERY=2",
        ["VLLM_BENCHMARK_REDEPLOY_EVERY=2", "two deployments", "REPETITIONS=2"],
    ),
    (
        "CONFIG_VLLM_PLATFORM_KIND=y\nCONFIG_VLLM_BENCHMARK_REPETITIONS=8"
        "\nCONFIG_VLLM_BENCHMARK_REDEPLOY_EVERY=2",
        ["VLLM_BENCHMARK_REDEPLOY_EVERY=2", "not supported on Kubernetes"],
    ),
]


@pytest.mark.parametrize(("line", "expected"), BAD_INPUTS, ids=[b[0][:40] for b in BAD_INPUTS])
def test_bad_input_is_named_and_old_files_are_untouched(tmp_path, capsys, line, expected):
    config = make_config(tmp_path, "vllm-quick-test")
    rc, _, _ = generate(tmp_path, config)
    assert rc == 0
    before = {
        p: p.read_bytes() for p in (tmp_path / "extra_vars.yaml", tmp_path / "inv" / "hosts.yml")
    }
    with config.open("a") as out:
        out.write(line + "\n")
    capsys.readouterr()
    rc, _, _ = generate(tmp_path, config)
    err = capsys.readouterr().err
    assert rc == 2
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"
    assert {p: p.read_bytes() for p in before} == before
    assert not list(tmp_path.glob(".extra_vars.yaml.*")), "temporary file left behind"


def test_declared_hosts_with_empty_list_is_refused(tmp_path, capsys):
    config = make_config(tmp_path, "vllm-declared-hosts", 'CONFIG_VLLM_DECLARED_HOSTS_DEV_LIST=""')
    rc, _, _ = generate(tmp_path, config)
    assert rc == 2
    assert "CONFIG_VLLM_DECLARED_HOSTS_DEV_LIST is empty" in capsys.readouterr().err


def test_declared_hosts_become_ssh_hosts(tmp_path):
    config = make_config(
        tmp_path,
        "vllm-declared-hosts",
        'CONFIG_VLLM_DECLARED_HOSTS_BASELINE_LIST="gpu1 ops@gpu2"',
        'CONFIG_VLLM_DECLARED_HOSTS_SSH_USER="bench"',
    )
    _, _, inv = generate(tmp_path, config)
    hosts = inv["all"]["children"]["baseline"]["hosts"]
    assert hosts["gpu1"]["ansible_user"] == "bench"
    assert hosts["gpu2"]["ansible_user"] == "ops"
    assert "ansible_connection" not in hosts["gpu1"]
    dev = inv["all"]["children"]["dev"]["vars"]
    assert dev["vllm_router_port"] == 8000  # separate hosts: no port offset


def test_an_ssh_config_names_the_declared_hosts(tmp_path):
    """ssh -F for every declared host; a relative path is the checkout's (as make runs),
    and the file may come later (make ssh-lab), so generation does not look for it."""
    config = make_config(
        tmp_path,
        "vllm-declared-hosts",
        'CONFIG_VLLM_DECLARED_HOSTS_BASELINE_LIST="gpu1"',
        'CONFIG_VLLM_DECLARED_HOSTS_SSH_CONFIG="lab/ssh_config"',
    )
    _, _, inv = generate(tmp_path, config)
    host = inv["all"]["children"]["baseline"]["hosts"]["gpu1"]
    assert host["ansible_ssh_common_args"] == f"-F {sc.TOP / 'lab/ssh_config'}"
    dev = inv["all"]["children"]["dev"]["hosts"]["dev-node"]
    assert dev["ansible_ssh_common_args"] == host["ansible_ssh_common_args"]


def test_bind_addresses_belong_to_hosts_and_survive_a_calibration(tmp_path, capsys):
    """Hosts that share a network stack (the SSH lab) listen on their own addresses
    whichever group's settings they run: dev's host keeps its own in a calibration, where
    dev takes baseline's settings (a group setting would have given it baseline's)."""
    config = make_config(tmp_path, "vllm-ssh-lab")
    _, _, inv = generate(tmp_path, config)
    hosts = {g: b["hosts"] for g, b in inv["all"]["children"].items()}
    assert hosts["dev"]["dev-host"]["vllm_engine_bind_address"] == "127.0.0.3"
    assert hosts["baseline"]["baseline-host"]["vllm_router_bind_address"] == "127.0.0.2"
    sc.generate_calibration(config, tmp_path / "inv" / "hosts.yml")
    cal = yaml.safe_load((tmp_path / "inv" / "calibration.yml").read_text())["all"]["children"]
    assert cal["dev"]["vars"]["vllm_enable_prefix_caching"] is False  # baseline's setting
    assert cal["dev"]["hosts"]["dev-host"]["vllm_engine_bind_address"] == "127.0.0.3"
    assert cal["dev"]["hosts"]["dev-host"]["vllm_router_bind_address"] == "127.0.0.3"

    bad = make_config(
        tmp_path, "vllm-ssh-lab",
        'CONFIG_VLLM_DECLARED_HOSTS_BIND_ADDRESS_LIST="baseline-host=127.0.0.2 gpu9=10.0.0.9"',
    )  # fmt: skip
    capsys.readouterr()
    assert generate(tmp_path, bad)[0] == 2
    err = capsys.readouterr().err
    assert "CONFIG_VLLM_DECLARED_HOSTS_BIND_ADDRESS_LIST names gpu9: not a declared host" in err
    bad.write_text(bad.read_text() + 'CONFIG_VLLM_DECLARED_HOSTS_BIND_ADDRESS_LIST="dev-host"\n')
    assert generate(tmp_path, bad)[0] == 2
    assert "HOST=ADDRESS pairs" in capsys.readouterr().err


@pytest.mark.parametrize(
    "line, why",
    [
        ("CONFIG_VLLM_BENCHMARK_SWEEP_CONCURRENCY=y", "a sweep"),
        ("CONFIG_VLLM_BENCHMARK_REDEPLOY_EVERY=2", "VLLM_BENCHMARK_REDEPLOY_EVERY"),
        ('CONFIG_VLLM_DECLARED_HOSTS_DEV_LIST="dev-host gpu3"', "unequal host lists"),
    ],
)
def test_a_crossover_needs_one_leg_per_host_pair_and_no_sweep(tmp_path, capsys, line, why):
    ok = make_config(tmp_path, "vllm-ssh-lab", "CONFIG_VLLM_BENCHMARK_CROSSOVER=y")
    rc, extra, _ = generate(tmp_path, ok)
    assert rc == 0 and extra["vllm_benchmark_crossover"] is True
    capsys.readouterr()
    bad = make_config(tmp_path, "vllm-ssh-lab", "CONFIG_VLLM_BENCHMARK_CROSSOVER=y", line)
    assert generate(tmp_path, bad)[0] == 2
    err = capsys.readouterr().err
    assert f"CONFIG_VLLM_BENCHMARK_CROSSOVER cannot run with {why}" in err, err


def test_engine_env_and_inherited_site_reach_the_engine(tmp_path):
    from ansible_collections.servelab.vllm.plugins.plugin_utils import commands

    config = make_config(
        tmp_path,
        "vllm-local-gpu-mps",
        'CONFIG_VLLM_ENGINE_ENV_LIST="VLLM_USE_FLASHINFER_SAMPLER=0 X=a=b"',
        'CONFIG_VLLM_ENGINE_INHERIT_SITE="/opt/torch/.venv/lib/python3.12/site-packages"',
        "CONFIG_VLLM_BENCHMARK_ARRIVALS_GAMMA=y",
        'CONFIG_VLLM_BENCHMARK_BURSTINESS="inf"',
    )
    rc, shared, hosts = generate(tmp_path, config)
    assert rc == 0
    dev = hosts["all"]["children"]["dev"]["vars"]
    assert dev["vllm_engine_inherit_site"] == "/opt/torch/.venv/lib/python3.12/site-packages"
    assert shared["vllm_benchmark_burstiness"] == float("inf")
    env = commands.engine_env({**shared, **dev}, "/p", "/l")
    assert env["VLLM_USE_FLASHINFER_SAMPLER"] == "0" and env["X"] == "a=b"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"


def test_single_group(tmp_path):
    config = make_config(tmp_path, "vllm-quick-test", "# CONFIG_VLLM_BASELINE_AND_DEV is not set")
    _, extra, inv = generate(tmp_path, config)
    assert extra["servelab_groups"] == ["baseline"]
    assert list(inv["all"]["children"]) == ["baseline"]


def test_unknown_defconfig_lists_the_available_ones(tmp_path, capsys):
    assert sc.main(["--config", str(tmp_path / ".config"), "defconfig", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown defconfig 'nope'" in err and "vllm-quick-test" in err
    assert not (tmp_path / ".config").exists()


def test_savedefconfig_round_trips(tmp_path):
    config = make_config(tmp_path, "vllm-kind-dra-mps")
    assert sc.main(["--config", str(config), "savedefconfig"]) == 0
    minimal = (tmp_path / "defconfig").read_text()
    assert "CONFIG_VLLM_PLATFORM_KIND=y" in minimal
    again = tmp_path / "again"
    again.mkdir()
    (again / ".config").write_text(minimal)
    _, _, a = generate(tmp_path, config)
    _, _, b = generate(again, again / ".config")
    assert a == b


def test_config_hash_follows_the_settings(tmp_path):
    _, first, _ = generate(tmp_path, make_config(tmp_path, "vllm-quick-test"))
    _, same, _ = generate(tmp_path, make_config(tmp_path, "vllm-quick-test"))
    _, other, _ = generate(
        tmp_path, make_config(tmp_path, "vllm-quick-test", "CONFIG_VLLM_REPLICA_COUNT=2")
    )
    assert first["servelab_config_hash"] == same["servelab_config_hash"]
    assert first["servelab_config_hash"] != other["servelab_config_hash"]


def test_make_defconfig_unknown_name_fails_through_make(tmp_path):
    top = Path(sc.__file__).resolve().parents[2]
    proc = subprocess.run(
        [
            sys.executable,
            str(top / "kconfig/scripts/servelab_config.py"),
            "--config",
            str(tmp_path / ".config"),
            "defconfig",
            "bogus",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "available:" in proc.stderr
