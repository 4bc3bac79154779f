# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The load generator's check on itself: was the client, not the server, the bottleneck?

Each worker (the one asyncio process, or each worker process of workers.py) measures,
over its measured phase, how late it handed each request to the HTTP client (send lag),
how late its event loop woke a timer (loop lag) and how much CPU it used. summary()
joins the workers' figures and judges the run client-bound by SEND_LAG_P99_MS and CPU_PCT.

A busy-polling worker (VLLM_BENCHMARK_CLIENT_BUSY_POLL) never lets its loop sleep, so
it uses a whole core however little it does, and CPU_PCT would judge every such run.
Its load is measured instead by counting loop turns: an empty turn's CPU cost is
calibrated before and after the measured phase, and whatever CPU the turns took beyond
that went to work (sending, reading, parsing). That share is judged by BUSY_PCT. Its loop lag is
judged too (LOOP_LAG_P99_MS): a loop that never sleeps fires a due timer on its next
turn, so the lag is how long a turn held it, which is how late a chunk that arrived
meanwhile was stamped (a sleeping loop's lag also holds the timer's millisecond, so
there it is only reported).
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from dataclasses import dataclass, field

from ..records import CPU_PCT, OTHER_LOAD, SEND_LAG_P99_MS
from .metrics import percentile

# Below this many sends a p99 is the largest lag or next to it: one preemption of the
# client (common on a 2-core host that also runs the engines) would mark the run. Such a
# worker is judged on its median send lag, which a client that cannot keep up raises.
MIN_SENDS_FOR_P99 = 100
LOOP_TICK_S = 0.010  # the loop-lag probe's sleep
BUSY_PCT = 90.0  # busy-polling: a worker's CPU share spent on work above this
LOOP_LAG_P99_MS = 1.0  # busy-polling: a worker's p99 loop lag above this (over enough ticks)
# An empty loop turn's cost: the cheapest of a few batches (another task that runs
# during one batch, or a preemption between two clock reads, only raises a batch).
CALIBRATION_BATCHES, CALIBRATION_TURNS = 5, 400


@dataclass
class WorkerCheck:
    """One worker's figures: call start() when its measured phase begins, record() per
    request sent, stop() when the phase ends (or is cut off)."""

    worker: int = 0
    event_loop: str = "asyncio"  # or uvloop, in worker processes where it installs
    send_lags: list[float] = field(default_factory=list)  # seconds, per measured request
    loop_lags: list[float] = field(default_factory=list)  # seconds, per probe tick
    started: tuple[float, float, int] | None = None  # perf_counter, process_time, GC runs
    ended: tuple[float, float, int] | None = None  # the same at stop
    busy_poll: bool = False  # the loop never sleeps (see the module's docstring)
    idle_turn_s: float = 0.0  # CPU seconds of an empty loop turn (busy_poll: calibrated)
    turns: int = 0  # busy_poll: loop turns in the measured phase
    probe: asyncio.Task | None = field(default=None, repr=False)
    poller: asyncio.Task | None = field(default=None, repr=False)

    async def calibrate(self) -> None:
        """busy_poll: measure an empty loop turn's CPU cost with no load (in a loop),
        before the measured phase and again after it; the cheapest batch of all counts.
        Before, N workers start at once: on the 16-vCPU VM every worker of one run read
        its turns then as dearer than its whole phase's (a work share of 0%)."""
        batches = [self.idle_turn_s] if self.idle_turn_s else []
        for _ in range(CALIBRATION_BATCHES):
            began = time.process_time()
            for _ in range(CALIBRATION_TURNS):
                await asyncio.sleep(0)
            batches.append((time.process_time() - began) / CALIBRATION_TURNS)
        self.idle_turn_s = min(batches)

    def start(self, probe: bool = True) -> None:
        """From now on the phase is measured; probe: run the loop-lag task (in a loop);
        busy_poll: also the task that keeps the loop from sleeping, counting its turns."""
        # process_time: user + sys, all threads
        self.started = time.perf_counter(), time.process_time(), _gc_runs()
        loop = asyncio.get_running_loop()
        if probe:
            self.probe = loop.create_task(self._watch_loop())
        if self.busy_poll:
            self.poller = loop.create_task(self._poll())

    def record(self, lag: float) -> None:
        self.send_lags.append(lag)

    def stop(self) -> None:
        """End the measured phase, also one cut off; once: later calls change nothing."""
        if self.started is not None and self.ended is None:
            self.ended = time.perf_counter(), time.process_time(), _gc_runs()
        for task in (self.probe, self.poller):
            if task is not None:
                task.cancel()  # not awaited: stop() may run inside a cancellation
        self.probe = self.poller = None

    async def _poll(self) -> None:
        # Always ready, so the loop's poll for I/O never waits: a chunk is read, and a
        # timer fires, on the loop's next turn, not when the kernel wakes the process.
        while True:
            await asyncio.sleep(0)
            self.turns += 1

    async def _watch_loop(self) -> None:
        # A timer due every LOOP_TICK_S: how late it fires is how long the loop was busy
        # (or blocked) with other callbacks, plus the timer's own granularity.
        while True:
            due = time.perf_counter() + LOOP_TICK_S
            await asyncio.sleep(LOOP_TICK_S)
            self.loop_lags.append(max(0.0, time.perf_counter() - due))

    def figures(self) -> dict:
        """This worker's figures, in milliseconds and % of one core."""
        begin = self.started or (0.0, 0.0, 0)
        end = self.ended or begin
        wall, cpu, gc_runs = end[0] - begin[0], end[1] - begin[1], end[2] - begin[2]
        send = [x * 1000 for x in self.send_lags]
        loop = [x * 1000 for x in self.loop_lags]
        return {
            "worker": self.worker,
            "pid": os.getpid(),
            "event_loop": self.event_loop,
            "requests": len(send),
            "send_lag_p50_ms": percentile(send, 50),
            "send_lag_p99_ms": percentile(send, 99),
            "send_lag_max_ms": max(send, default=0.0),
            "loop_lag_p99_ms": percentile(loop, 99),
            "loop_lag_max_ms": max(loop, default=0.0),
            "loop_ticks": len(loop),
            "cpu_seconds": cpu,
            "wall_seconds": wall,
            "cpu_pct": 100 * cpu / wall if wall > 0 else 0.0,
            "gc_collections": gc_runs,  # 0: the collector is paused (sending.gc_paused)
            "busy_poll": self.busy_poll,
            "loop_turns": self.turns,
            "idle_turn_us": self.idle_turn_s * 1e6,
            "loop_busy_pct": self.busy_pct(cpu) if self.busy_poll else None,
        }

    def busy_pct(self, cpu: float) -> float:
        """busy_poll: the share of the phase's CPU time (cpu seconds) that went to work,
        not to empty turns."""
        if cpu <= 0:
            return 0.0
        return max(0.0, 100 * (1 - self.turns * self.idle_turn_s / cpu))


def _gc_runs() -> int:
    """How many times Python's cyclic garbage collector has run in this process."""
    return sum(generation["collections"] for generation in gc.get_stats())


def summary(workers: list[dict], paced: bool = True) -> dict:
    """summary.json's `client`: every worker's figures, the worst of them, and whether the
    run was client-bound (any worker over a threshold), with why.

    paced: the run had send times to keep (a finite rate). At an infinite rate every
    request is due at once and the send lag is the spread of that burst: reported, not
    judged."""
    send_p99 = max((w["send_lag_p99_ms"] for w in workers), default=0.0)
    cpu_max = max((w["cpu_pct"] for w in workers), default=0.0)
    why = []
    for w in workers:
        name = f"worker {w['worker']}" if len(workers) > 1 else "the client"
        few = w.get("requests", 0) < MIN_SENDS_FOR_P99
        stat, lag = ("median", w["send_lag_p50_ms"]) if few else ("p99", w["send_lag_p99_ms"])
        if paced and lag > SEND_LAG_P99_MS:
            why.append(
                f"{name}'s {stat} send lag {lag:.2f} ms is above {SEND_LAG_P99_MS:g} ms"
                + (f" (a median: {w['requests']} sends are too few for a p99)" if few else "")
            )
        if w.get("busy_poll"):  # a whole core by design: judged by the work it did
            if w["loop_busy_pct"] > BUSY_PCT:
                why.append(
                    f"{name}'s busy-polling loop spent {w['loop_busy_pct']:.0f}% of its CPU "
                    f"on work over the measured phase (above {BUSY_PCT:g}%)"
                )
            if w["loop_ticks"] >= MIN_SENDS_FOR_P99 and w["loop_lag_p99_ms"] > LOOP_LAG_P99_MS:
                why.append(
                    f"{name}'s busy-polling loop fired its timer {w['loop_lag_p99_ms']:.2f} "
                    f"ms late at p99 (above {LOOP_LAG_P99_MS:g} ms): chunks waited as long"
                )
        elif w["cpu_pct"] > CPU_PCT:
            why.append(
                f"{name} used {w['cpu_pct']:.0f}% of a core over the measured phase "
                f"(above {CPU_PCT:g}%)"
            )
    busy = [w["loop_busy_pct"] for w in workers if w.get("busy_poll")]
    return {
        "workers": workers,
        "send_lag_p99_ms": send_p99,
        "loop_lag_p99_ms": max((w["loop_lag_p99_ms"] for w in workers), default=0.0),
        "cpu_pct_max": cpu_max,
        "busy_poll": bool(busy),
        "loop_busy_pct_max": max(busy) if busy else None,
        "thresholds": {
            "send_lag_p99_ms": SEND_LAG_P99_MS,
            "cpu_pct": CPU_PCT,
            "loop_busy_pct": BUSY_PCT,
            "loop_lag_p99_ms": LOOP_LAG_P99_MS,
            "min_sends_for_p99": MIN_SENDS_FOR_P99,
        },
        "send_lag_judged": paced,
        "bound": bool(why),
        "why": "; ".join(why),
    }


def rejection(block: dict) -> str:
    """Why a block's figures should not be pooled (its summary): its client was the
    bottleneck, or other load took the host; empty when it is fine."""
    client = block.get("client") or {}
    if client.get("bound"):
        return f"client-bound ({client.get('why') or 'self-check'})"
    host = block.get("host_load") or {}
    for key, what in (("other_cpu_share", "other load"), ("steal_share", "steal")):
        if (host.get(key) or 0) > OTHER_LOAD:
            return f"{what} on the host {host[key]:.0%} (above {OTHER_LOAD:.0%})"
    return ""
