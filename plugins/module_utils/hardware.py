# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the CPU can do, and the engine settings that follow from it on the local platform."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field

# CPU flags under which vLLM's CPU kernels compute bfloat16 in hardware; without them
# bfloat16 is emulated (measured here on an AVX2 EPYC: 53x slower than float32).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


class PlacementError(ValueError):
    """A CPU placement setting that cannot be honoured, worded for the user."""


@dataclass
class CpuFacts:
    model: str
    flags: list[str]  # the ones in REPORTED_FLAGS that the CPU has
    cpus: list[int]  # usable by this process (affinity / cgroup cpuset)
    numa_nodes: int

    @property
    def bf16_native(self) -> bool:
        return any(f in self.flags for f in BF16_FLAGS)


@dataclass
class Placement:
    dtype: str
    dtype_reason: str
    frontend_cpus: list[int]  # API servers, routers, the benchmark client
    engine_cpus: list[list[int]]  # one core set per replica, the same for every group
    facts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def parse_cpu_list(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]; raises ValueError on anything else."""
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"{text!r} is not a CPU list such as 0-3,8")
        low, high = int(m.group(1)), int(m.group(2) or m.group(1))
        if high < low:
            raise ValueError(f"{text!r}: range {part} runs backwards")
        out.extend(range(low, high + 1))
    return sorted(set(out))


def format_cpu_list(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    parts, run = [], []
    for cpu in sorted(cpus):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [cpu]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def read_facts(cpuinfo: str | None = None, cpus: list[int] | None = None) -> CpuFacts:
    """The CPU's model, flags of interest, usable CPUs and NUMA node count."""
    if cpuinfo is None:
        with open("/proc/cpuinfo") as handle:
            cpuinfo = handle.read()
    flags: set[str] = set()
    model = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags" and not flags:
            flags = set(value.split())
        elif key == "model name" and not model:
            model = value.strip()
    if cpus is None:
        cpus = sorted(os.sched_getaffinity(0))
    try:
        nodes = len(
            [d for d in os.listdir("/sys/devices/system/node") if re.fullmatch(r"node\d+", d)]
        )
    except OSError:
        nodes = 1
    return CpuFacts(model, [f for f in REPORTED_FLAGS if f in flags], cpus, max(nodes, 1))


def choose_dtype(setting: str, facts: CpuFacts) -> tuple[str, str]:
    """The engine dtype: the user's, unless 'auto', which takes bfloat16 only where the CPU
    computes it natively."""
    if setting and setting != "auto":
        return setting, "set by VLLM_DTYPE"
    if facts.bf16_native:
        return (
            "bfloat16",
            f"auto: the CPU has {', '.join(f for f in BF16_FLAGS if f in facts.flags)}",
        )
    return "float32", "auto: no avx512_bf16 or amx_bf16, so bfloat16 would be emulated"


def place(
    facts: CpuFacts,
    replicas: int,
    engine_cpus_setting: str = "",
    frontend_cpus_setting: str = "",
    dtype_setting: str = "auto",
) -> Placement:
    """Core sets for the engines and for everything else.

    Both groups get the same sets: on one machine they are measured one at a time with
    the other frozen, so the same cores serve each (no core-to-core difference enters the
    comparison). By default one core is left to the API servers, routers and the
    benchmark client, and the rest is split evenly between the replicas.
    """
    usable = facts.cpus
    try:
        engine = parse_cpu_list(engine_cpus_setting) if engine_cpus_setting else []
        front = parse_cpu_list(frontend_cpus_setting) if frontend_cpus_setting else []
    except ValueError as err:
        raise PlacementError(f"CONFIG_VLLM_CPU_ENGINE_CPUS / _FRONTEND_CPUS: {err}") from None
    for name, chosen in (("VLLM_CPU_ENGINE_CPUS", engine), ("VLLM_CPU_FRONTEND_CPUS", front)):
        missing = sorted(set(chosen) - set(usable))
        if missing:
            raise PlacementError(
                f"CONFIG_{name} names CPU(s) {format_cpu_list(missing)} that this host cannot "
                f"use; usable: {format_cpu_list(usable)}"
            )
    if not front:
        front = [c for c in usable if c not in engine][:1] or usable[:1]
    if not engine:
        engine = [c for c in usable if c not in front] or list(front)
    if len(engine) < replicas:
        raise PlacementError(
            f"{replicas} engine replicas need at least one engine CPU each; this host gives "
            f"the engines {len(engine)} ({format_cpu_list(engine)}): lower "
            "CONFIG_VLLM_REPLICA_COUNT or set CONFIG_VLLM_CPU_ENGINE_CPUS"
        )
    per = len(engine) // replicas  # equal sets; a remainder stays unused
    sets = [engine[i * per : (i + 1) * per] for i in range(replicas)]
    dtype, reason = choose_dtype(dtype_setting, facts)
    return Placement(dtype, reason, front, sets, asdict(facts))
