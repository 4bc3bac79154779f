# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GPU preflight: the checks that fail in seconds instead of in an engine's log."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

QUERY = "index,name,compute_cap,memory.total,memory.free"
MIN_COMPUTE_CAPABILITY = 8.0  # current vLLM's kernels; older GPUs fail at launch


class PreflightError(Exception):
    """A GPU host that cannot run the configured engines, worded for the user."""


@dataclass
class Gpu:
    index: int
    name: str
    compute_cap: float
    total_mib: float
    free_mib: float


def parse(csv_text: str) -> list[Gpu]:
    """nvidia-smi --query-gpu=QUERY --format=csv,noheader,nounits output."""
    gpus = []
    for line in csv_text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            raise PreflightError(f"nvidia-smi printed {line!r}; expected {QUERY}")
        gpus.append(Gpu(int(parts[0]), parts[1], float(parts[2]), float(parts[3]), float(parts[4])))
    return gpus


def query(nvidia_smi: str = "nvidia-smi") -> list[Gpu]:
    path = shutil.which(nvidia_smi)
    if not path:
        raise PreflightError(
            "nvidia-smi is not on this host: install the NVIDIA driver (make bringup with "
            "CONFIG_VLLM_USE_CPU_INFERENCE=n installs it) or set CONFIG_VLLM_USE_CPU_INFERENCE=y"
        )
    proc = subprocess.run(
        [path, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode:
        raise PreflightError(f"nvidia-smi failed: {(proc.stderr or proc.stdout).strip()[:300]}")
    gpus = parse(proc.stdout)
    if not gpus:
        raise PreflightError("nvidia-smi lists no GPU on this host")
    return gpus


def check(gpus: list[Gpu], utilization: float, engines_on_gpu: int, running: int) -> list[str]:
    """Raise on what cannot work; return what was checked, for the log.

    engines_on_gpu: engines of all groups that will share GPU 0 of this host; running: how
    many of them already hold their memory (a redeploy)."""
    gpu = gpus[0]
    if gpu.compute_cap < MIN_COMPUTE_CAPABILITY:
        raise PreflightError(
            f"GPU {gpu.index} ({gpu.name}) has compute capability {gpu.compute_cap:g}; current "
            f"vLLM needs >= {MIN_COMPUTE_CAPABILITY:g} (older GPUs fail with 'too many "
            "resources requested for launch'): pin an older CONFIG_VLLM_ENGINE_VERSION or use "
            "another GPU"
        )
    if utilization * engines_on_gpu > 1.0:
        raise PreflightError(
            f"CONFIG_VLLM_GPU_MEMORY_UTILIZATION={utilization:g} x {engines_on_gpu} engines on "
            f"one GPU is {utilization * engines_on_gpu:.2f} of its memory: lower it to at most "
            f"{1 / engines_on_gpu:.2f}"
        )
    need = utilization * gpu.total_mib * (engines_on_gpu - running)
    if need > gpu.free_mib:
        raise PreflightError(
            f"GPU {gpu.index} has {gpu.free_mib:.0f} MiB free; {engines_on_gpu - running} more "
            f"engine(s) at CONFIG_VLLM_GPU_MEMORY_UTILIZATION={utilization:g} need "
            f"{need:.0f} MiB: stop what holds the GPU (nvidia-smi lists it) or lower the setting"
        )
    return [
        f"GPU {gpu.index} {gpu.name}: compute capability {gpu.compute_cap:g}, "
        f"{gpu.free_mib:.0f} of {gpu.total_mib:.0f} MiB free; {engines_on_gpu} engine(s) at "
        f"{utilization:g} fit"
    ]


class DriverVersionError(PreflightError, ValueError):
    """nvidia-smi printed no driver version that can be read."""


def driver_version(text: str) -> tuple[int, ...]:
    """An NVIDIA driver version ('570.158.01', '565') as numbers, to compare."""
    try:
        return tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        raise DriverVersionError(f"{text!r} is not an NVIDIA driver version") from None


def driver_versions_below(csv_text: str, minimum: str) -> list[str]:
    """The driver versions that `nvidia-smi --query-gpu=driver_version --format=csv,noheader`
    printed (a line per GPU) that are older than `minimum`; numerically, so 565.57 is newer
    than 565 and 1000 than 999."""
    low = driver_version(minimum)
    found = [line.strip() for line in csv_text.splitlines() if line.strip()]
    if not found:
        raise DriverVersionError("nvidia-smi printed no driver version")
    return [v for v in found if driver_version(v) < low]
