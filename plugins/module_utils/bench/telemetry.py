# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""1 Hz telemetry during a run: GPU (nvidia-smi, where present) and engine processes."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import subprocess
import threading
import time

GPU_FIELDS = "utilization.gpu,memory.used,memory.total,power.draw,temperature.gpu"
COLUMNS = [
    "time",
    "source",
    "gpu_util_pct",
    "gpu_mem_used_mib",
    "gpu_mem_total_mib",
    "gpu_power_w",
    "gpu_temp_c",
    "cpu_seconds",
    "rss_mib",
]


def _process_tree(pid: int) -> list[int]:
    """pid and its descendants (vLLM runs its engine core in a child process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def _cpu_and_rss(pids: list[int]) -> tuple[float, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu = rss = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / ticks
            rss += int(fields[21]) * page / 2**20
        except (OSError, ValueError, IndexError):
            continue
    return cpu, rss


def host_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / ticks, steal / ticks


class HostLoad:
    """How much of the machine went to processes other than the measured stack and the
    client during a run, and how much the hypervisor took (steal)."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.pids = [p for p in processes.values() if p]

    def _known(self) -> float:
        own = os.times()
        return own.user + own.system + sum(_cpu_and_rss(_process_tree(pid))[0] for pid in self.pids)

    def __enter__(self) -> HostLoad:
        self.start = (time.monotonic(), *host_cpu(), self._known())
        return self

    def __exit__(self, *exc) -> None:
        t0, busy0, steal0, known0 = self.start
        busy1, steal1 = host_cpu()
        seconds = max(time.monotonic() - t0, 1e-9) * (os.cpu_count() or 1)
        self.figures = {
            "other_cpu_share": max(busy1 - busy0 - (self._known() - known0), 0.0) / seconds,
            "steal_share": (steal1 - steal0) / seconds,
        }


class Telemetry:
    """Samples in a thread into `path` (a run's telemetry.csv) until stopped.

    Rows stream into a temporary file beside it, renamed when sampling ends: a reader sees
    no file or the whole one."""

    def __init__(self, path: str, processes: dict[str, int], interval: float = 1.0) -> None:
        self.path = path
        self.processes = processes
        self.interval = interval
        self.smi = shutil.which("nvidia-smi")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.rows = 0

    def __enter__(self) -> Telemetry:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _gpu_rows(self, now: float) -> list[list]:
        try:
            out = subprocess.run(
                [self.smi, f"--query-gpu={GPU_FIELDS}", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        rows = []
        for i, line in enumerate(out.strip().splitlines()):
            values = [v.strip() for v in line.split(",")]
            rows.append([f"{now:.3f}", f"gpu{i}", *values, "", ""])
        return rows

    def _run(self) -> None:
        head, base = os.path.split(self.path)
        tmp = os.path.join(head, f".{base}.tmp.{os.getpid()}")  # as atomic.write_atomic names it
        try:
            with open(tmp, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(COLUMNS)
                while not self._stop.is_set():
                    now = time.time()
                    rows = self._gpu_rows(now) if self.smi else []
                    for name, pid in self.processes.items():
                        cpu, rss = _cpu_and_rss(_process_tree(pid))
                        rows.append(
                            [f"{now:.3f}", name, "", "", "", "", "", f"{cpu:.2f}", f"{rss:.1f}"]
                        )
                    writer.writerows(rows)
                    handle.flush()
                    self.rows += len(rows)
                    self._stop.wait(self.interval)
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:  # a full disk: no partial file left behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
