"""CPU placement from the CPU's flags, the interleaved order, and freezing a stack."""

import os
import subprocess
import sys
import time

import pytest
from ansible_collections.servelab.vllm.plugins.filter.bench import bench_blocks_by_host
from ansible_collections.servelab.vllm.plugins.module_utils import freeze, hardware
from ansible_collections.servelab.vllm.plugins.module_utils.bench import plan
from ansible_collections.servelab.vllm.plugins.plugin_utils import commands

AVX2 = "model name\t: AMD EPYC\nflags\t\t: fpu sse avx avx2 fma\n"
AMX = "model name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_dtype_auto_follows_native_bfloat16_support():
    avx2 = hardware.read_facts(AVX2, cpus=[0, 1])
    amx = hardware.read_facts(AMX, cpus=[0, 1])
    assert avx2.flags == ["avx2"] and not avx2.bf16_native
    assert hardware.choose_dtype("auto", avx2)[0] == "float32"
    assert hardware.choose_dtype("auto", amx)[0] == "bfloat16"
    assert hardware.choose_dtype("bfloat16", avx2) == ("bfloat16", "set by VLLM_DTYPE")


def test_core_sets_keep_frontends_off_the_engines_and_are_equal_per_replica():
    facts = hardware.read_facts(AVX2, cpus=[0, 1])
    two = hardware.place(facts, 1)
    assert two.frontend_cpus == [0] and two.engine_cpus == [[1]]
    big = hardware.place(hardware.read_facts(AVX2, cpus=list(range(8))), 3)
    assert big.frontend_cpus == [0] and big.engine_cpus == [[1, 2], [3, 4], [5, 6]]
    chosen = hardware.place(facts, 1, engine_cpus_setting="0", frontend_cpus_setting="1")
    assert chosen.engine_cpus == [[0]] and chosen.frontend_cpus == [1]
    with pytest.raises(hardware.PlacementError, match="CONFIG_VLLM_CPU_ENGINE_CPUS names CPU"):
        hardware.place(facts, 1, engine_cpus_setting="5")
    with pytest.raises(hardware.PlacementError, match="CONFIG_VLLM_REPLICA_COUNT"):
        hardware.place(facts, 2)
    with pytest.raises(hardware.PlacementError, match="not a CPU list"):
        hardware.place(facts, 1, engine_cpus_setting="one")
    assert hardware.format_cpu_list(hardware.parse_cpu_list("0-2,5,7-8")) == "0-2,5,7-8"


def test_the_placement_reaches_the_engine_and_router_command_lines():
    cfg = {
        "vllm_use_cpu_inference": True, "vllm_dtype": "auto", "vllm_model_name": "m",
        "vllm_engine_bind_address": "127.0.0.1", "vllm_max_model_len": 2048,
        "vllm_tensor_parallel_size": 1, "vllm_enable_prefix_caching": True,
        "vllm_enable_chunked_prefill": True, "vllm_cpu_kvcache_space": 1,
        "vllm_engine_placement": {"dtype": "float32", "frontend_cpus": [0],
                                  "engine_cpus": [[1], [2]]},
    }  # fmt: skip
    argv = commands.engine_argv(cfg, "/v", "/m", 8100)
    assert argv[:3] == ["taskset", "-c", "0"] and argv[argv.index("--dtype") + 1] == "float32"
    assert commands.engine_env(cfg, replica=1)["VLLM_CPU_OMP_THREADS_BIND"] == "2"


def test_blocks_alternate_abba_at_every_point():
    points = plan.points("concurrency", ["1", "4"])
    blocks = plan.block_order(["baseline", "dev"], points, 3)
    at1 = [b["group"][0] for b in blocks if b["label"] == "concurrency-1"]
    assert at1 == list("bddbbd")  # A B, B A, A B
    assert [b["order"] for b in blocks] == list(range(1, 13))
    assert all(b["max_concurrency"] in (1, 4) for b in blocks)
    # Each group warms once per point, in its first block there.
    warm = [(b["group"], b["label"]) for b in blocks if b["warm"]]
    assert sorted(warm) == sorted({(b["group"], b["label"]) for b in blocks})
    assert all(b["rep"] == 1 for b in blocks if b["warm"])
    hosts = bench_blocks_by_host(
        blocks[:2], [{"group": "baseline", "host": "b1"}, {"group": "dev", "host": "d1"},
                     {"group": "dev", "host": "d2"}]
    )  # fmt: skip
    assert [b["host"] for b in hosts] == ["b1", "d1", "d2"]


def test_a_redeploy_every_k_rounds_marks_its_rounds_and_deployments():
    blocks = plan.block_order(["baseline", "dev"], plan.points("none", []), 6, redeploy_every=2)
    by_rep = {b["rep"]: b for b in blocks}
    assert [by_rep[r]["deployment"] for r in range(1, 7)] == [0, 0, 1, 1, 2, 2]
    assert [r for r in range(1, 7) if by_rep[r]["redeploy"]] == [3, 5]
    # Both groups warm the restarted engines; the rounds between restarts do not.
    assert sorted({b["rep"] for b in blocks if b["warm"]}) == [1, 3, 5]
    assert all("deployment" not in b for b in plan.block_order(["baseline"], [{"label": "x"}], 2))
    for bad in (1, 3):
        with pytest.raises(ValueError, match="even number"):
            plan.block_order(["baseline", "dev"], plan.points("none", []), 6, redeploy_every=bad)


def test_a_crossover_swaps_the_groups_hosts_after_half_the_rounds():
    """Rounds after the first half (whole ABBA cycles) are crossed: each group's blocks
    run on the other group's hosts, the first crossed round redeploys and warms; the
    settings a host takes are the other group's, never its name, ports or addresses."""
    blocks = plan.block_order(["baseline", "dev"], plan.points("none", []), 10, crossover=True)
    assert plan.crossover_round(10) == 4 and plan.crossover_round(16) == 8
    assert sorted({b["rep"] for b in blocks if b["crossed"]}) == [5, 6, 7, 8, 9, 10]
    assert sorted({b["rep"] for b in blocks if b["swap"]}) == [5]
    plain = plan.block_order(["baseline", "dev"], plan.points("none", []), 10)
    assert not any("crossed" in b for b in plain)
    assert sorted({b["rep"] for b in blocks if b["warm"]}) == [1, 5]
    parts = [{"group": "baseline", "host": "gpu1"}, {"group": "dev", "host": "gpu2"}]
    placed = bench_blocks_by_host(blocks, parts)
    where = {(b["group"], b["rep"]): b["host"] for b in placed}
    assert where["baseline", 4] == "gpu1" and where["dev", 4] == "gpu2"
    assert where["baseline", 5] == "gpu2" and where["dev", 5] == "gpu1"
    with pytest.raises(ValueError, match="at least 4"):
        plan.block_order(["baseline", "dev"], plan.points("none", []), 3, crossover=True)
    mine = {
        "servelab_group": "baseline",
        "vllm_enable_prefix_caching": False,
        "vllm_engine_bind_address": "127.0.0.2",
        "vllm_router_port": 8000,
        "x": 1,
    }
    theirs = {
        "servelab_group": "dev",
        "vllm_enable_prefix_caching": True,
        "vllm_engine_bind_address": "127.0.0.3",
        "vllm_router_port": 9000,
        "x": 1,
    }
    assert plan.crossed_settings(mine, theirs, sorted(mine)) == {
        "vllm_enable_prefix_caching": True
    }  # fmt: skip


def test_restarted_engines_are_frozen_by_their_new_pids():
    arms = [{"host": "b1", "pids": [10, 11], "processes": {"baseline-engine-0": 10}},
            {"host": "d1", "pids": [20], "processes": {"dev-engine-0": 20}}]  # fmt: skip
    results = [{"item": arms[0], "services": [
        {"name": "baseline-engine-0", "pid": 30}, {"name": "baseline-router", "pid": 11},
        {"name": "baseline-gone", "pid": 0}]}]  # fmt: skip
    out = plan.restarted(arms, results)
    assert out[0]["pids"] == [30, 11]
    assert out[0]["processes"] == {"baseline-engine-0": 30, "baseline-router": 11}
    assert out[1] == arms[1] and arms[0]["pids"] == [10, 11]  # others, and the input, kept


def test_the_probed_engine_does_not_warm_twice():
    arms = [{"group": "baseline", "host": "b1"}, {"group": "dev", "host": "d1"}]
    schedule = plan.block_order(["baseline", "dev"], plan.points("none", []), 2)
    blocks = bench_blocks_by_host(schedule, arms)
    after = plan.warmed_by_probe(blocks, "b1")
    assert [b["warm"] for b in blocks] == [True, True, False, False]
    assert [b["warm"] for b in after] == [False, True, False, False]  # only b1's first
    assert blocks[0]["warm"]  # the input is not changed


def test_a_frozen_stack_takes_no_cpu_and_is_thawed(tmp_path):
    # A parent that spins and a child that spins: both stop, both continue.
    code = "import os,time\nif os.fork()==0:\n  while True: pass\nwhile True: pass"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.5)
        pids = freeze.tree(proc.pid)
        assert len(pids) == 2
        freeze.freeze_stack(str(tmp_path), [proc.pid])
        time.sleep(0.2)
        assert all(freeze.is_frozen(p) for p in pids)
        assert (tmp_path / freeze.MARKER).is_file()
        ticks = [_cpu_ticks(p) for p in pids]
        time.sleep(0.5)
        assert [_cpu_ticks(p) for p in pids] == ticks  # no CPU while frozen
        # Frozen by this (live) process: a stale thaw leaves it alone.
        assert freeze.thaw_stale(str(tmp_path)) == []
        assert sorted(freeze.thaw_stack(str(tmp_path))) == sorted(pids)
        time.sleep(0.2)
        assert not any(freeze.is_frozen(p) for p in pids)
        assert not (tmp_path / freeze.MARKER).exists()
    finally:
        for pid in freeze.tree(proc.pid)[::-1]:
            os.kill(pid, 9)
        proc.wait()


def test_a_freeze_left_by_a_dead_benchmark_is_thawed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        freeze.freeze_stack(str(tmp_path), [proc.pid])
        record = (
            (tmp_path / freeze.MARKER)
            .read_text()
            .replace(f'"by": {os.getpid()}', '"by": 999999999')
        )
        (tmp_path / freeze.MARKER).write_text(record)  # the freezer is gone
        assert freeze.thaw_stale(str(tmp_path)) == [proc.pid]
        time.sleep(0.1)
        assert not freeze.is_frozen(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_gpu_preflight_names_what_cannot_work():
    from ansible_collections.servelab.vllm.plugins.module_utils import gpu

    h100 = gpu.parse("0, NVIDIA H100 80GB HBM3, 9.0, 81559, 80000\n")
    assert gpu.check(h100, 0.4, 2, 0)[0].startswith("GPU 0 NVIDIA H100")
    with pytest.raises(gpu.PreflightError, match=r"CONFIG_VLLM_GPU_MEMORY_UTILIZATION=0\.9 x 2"):
        gpu.check(h100, 0.9, 2, 0)
    with pytest.raises(gpu.PreflightError, match="MiB free"):
        gpu.check(gpu.parse("0, H100, 9.0, 81559, 20000"), 0.4, 2, 0)
    assert gpu.check(gpu.parse("0, H100, 9.0, 81559, 20000"), 0.4, 2, 2)  # a redeploy
    with pytest.raises(gpu.PreflightError, match=r"compute capability 7\.5"):
        gpu.check(gpu.parse("0, Tesla T4, 7.5, 15360, 15000"), 0.4, 1, 0)
    with pytest.raises(gpu.PreflightError, match="nvidia-smi is not on this host"):
        gpu.query("nvidia-smi-that-does-not-exist")


def test_a_knob_sweep_alternates_its_values_and_redeploys_only_on_a_change():
    blocks = plan.knob_order([20, 50, 100], 2)
    assert [b["value"] for b in blocks] == [20, 50, 100, 100, 50, 20]
    assert [b["rep"] for b in blocks] == [1, 1, 1, 2, 2, 2]
    assert [b["order"] for b in blocks] == [1, 2, 3, 4, 5, 6]
    # The turn (100, 100) shares one deployment; every redeployed engine warms.
    assert [b["redeploy"] for b in blocks] == [True, True, True, False, True, True]
    assert [b["warm"] for b in blocks] == [b["redeploy"] for b in blocks]
    with pytest.raises(ValueError, match="at least one value"):
        plan.knob_order([], 2)
    labels = [b["label"] for b in plan.knob_order([20, 50], 1, "vllm_mps_active_thread_percentage")]
    assert labels == ["mps_active_thread_percentage-20", "mps_active_thread_percentage-50"]


def test_a_sweep_of_dev_runs_value_after_value_with_baseline_beside_each():
    """Dev redeploys once a value; at each value the groups alternate ABBA over its
    rounds, and both warm at the value's first round (dev restarted, baseline idle)."""
    blocks = plan.dev_sweep_order([80, 20], 3, "vllm_max_num_seqs")
    assert [(b["value"], b["rep"], b["group"][0]) for b in blocks] == [
        (80, 1, "b"), (80, 1, "d"), (80, 2, "d"), (80, 2, "b"), (80, 3, "b"), (80, 3, "d"),
        (20, 1, "b"), (20, 1, "d"), (20, 2, "d"), (20, 2, "b"), (20, 3, "b"), (20, 3, "d"),
    ]  # fmt: skip
    assert [b["order"] for b in blocks] == list(range(1, 13))
    assert {b["label"] for b in blocks} == {"max_num_seqs-80", "max_num_seqs-20"}
    assert [b["warm"] for b in blocks] == [b["rep"] == 1 for b in blocks]
    assert all("redeploy" not in b for b in blocks)  # round.yml would restart every engine
    with pytest.raises(ValueError, match="each value once"):
        plan.dev_sweep_order([80, 80], 2, "vllm_max_num_seqs")
    with pytest.raises(ValueError, match="at least one value"):
        plan.dev_sweep_order([], 2, "vllm_max_num_seqs")
