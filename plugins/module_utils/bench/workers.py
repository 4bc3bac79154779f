# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The measured requests sent by N worker processes, when one event loop cannot keep up.

The coordinator (loop.run_load's process) owns the seeded schedule: every measured
request's index, request and absolute send time (offset from one start, on the
system-wide monotonic clock that time.perf_counter reads on Linux). Request i goes to
worker i % N, which sends its share through its own event loop (uvloop where it is
installed) and aiohttp session, with its own self-check, and hands back its outcomes
at the end; the coordinator merges them by index into the same requests.jsonl and
summary.json as one process writes. With max_concurrency, the limit is split between
the workers (their shares differ by at most one), so no more than the limit are ever in
flight; which worker's slot frees first is no longer global, as it is in one process.

One worker is not this module: loop._send_measured sends its one share (sending.share)
through the same sending.send_share, in the coordinator itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import time

from .selfcheck import WorkerCheck
from .sending import Share, gc_paused, send_share, sleep_until

CPUS_PER_WORKER = 4  # auto: one worker per this many CPUs (the engines need the rest)
START_MARGIN_S = 0.2  # the common start, after every worker said it is ready
READY_TIMEOUT_S = 60.0
RESULTS_TIMEOUT_S = 30.0  # after a stop, how long a worker gets to hand back its outcomes


def count(requested: int, max_concurrency: int = 0) -> int:
    """Workers for a run: `requested`, or one per CPUS_PER_WORKER CPUs; never more than a
    concurrency limit (each worker needs a slot of its own)."""
    n = requested or max(1, (os.cpu_count() or 1) // CPUS_PER_WORKER)
    return min(n, max_concurrency) if max_concurrency else n


def _use_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


async def _send_share(
    mine: Share, target, conn, done, event_loop: str
) -> tuple[list, WorkerCheck, float]:
    """The worker's loop: ready, wait for the common start, send its share on time
    (sending.send_share, as one process does), collect."""
    import aiohttp

    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    outcomes: list = []
    check = WorkerCheck(worker=mine.worker, event_loop=event_loop, busy_poll=mine.busy_poll)
    span = 0.0
    stopped = False

    def ended(outcome) -> None:
        outcomes.append(outcome)
        with done.get_lock():
            done[0] += 1
            done[1] += not outcome.success

    def went(count: int, sent_at: float) -> None:
        nonlocal span
        span = sent_at

    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, read_bufsize=2**20) as session:
        conn.send(("ready", os.getpid()))
        while not conn.poll():
            await asyncio.sleep(0.005)
        _, start, deadline = conn.recv()
        if check.busy_poll:
            await check.calibrate()  # within the start margin
        await sleep_until(start)
        check.start()
        try:
            await send_share(session, target, mine, start, deadline, check, ended, went)
        except asyncio.CancelledError:
            stopped = True
        check.stop()
        if check.busy_poll and not stopped:
            await check.calibrate()  # again, with the load gone
    return outcomes, check, span


def _worker_main(share: Share, target, conn, done) -> None:
    """A worker process: its share, then (outcomes, self-check figures, send span)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until its loop handles it
    event_loop = "uvloop" if _use_uvloop() else "asyncio"
    try:
        with gc_paused():  # the worker's whole life: its load is all measured
            outcomes, check, span = asyncio.run(_send_share(share, target, conn, done, event_loop))
        conn.send(("done", outcomes, check.figures(), span))
    except Exception as err:
        conn.send(("error", f"worker {share.worker}: {type(err).__name__}: {err}"))
    finally:
        conn.close()


class Pool:
    """The worker processes of one measured phase (spawned: no loop state inherited)."""

    def __init__(self, shares: list[Share], target) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.done = ctx.Array("l", 2)  # requests ended, of which failed: for progress
        self.conns, self.procs = [], []
        for share in shares:
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main, args=(share, target, theirs, self.done), daemon=True
            )
            proc.start()
            theirs.close()
            self.conns.append(mine)
            self.procs.append(proc)

    async def start(self, duration: float) -> float:
        """Wait until every worker is ready, then give them one start; returns it."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        for conn, proc in self.each():
            while not conn.poll():
                if not proc.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"load generator worker {proc.pid} did not start")
                await asyncio.sleep(0.01)
            conn.recv()
        start = time.perf_counter() + START_MARGIN_S
        for conn in self.conns:
            conn.send(("start", start, start + duration if duration else None))
        return start

    def counts(self) -> tuple[int, int]:
        with self.done.get_lock():
            return self.done[0], self.done[1]

    def running(self) -> bool:
        return any(not conn.poll() and proc.is_alive() for conn, proc in self.each())

    def each(self):
        return zip(self.conns, self.procs, strict=True)

    def stop(self) -> None:
        """Ask every worker to stop sending and hand back what it has."""
        for proc in self.procs:
            if proc.is_alive():
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGTERM)

    def results(self, timeout: float) -> tuple[list, list[dict], float, list[str]]:
        """Every worker's outcomes, self-check figures and the latest send, and what went
        wrong with the workers that failed or did not answer in time."""
        outcomes, figures, span, errors = [], [], 0.0, []
        deadline = time.monotonic() + timeout
        for conn, proc in self.each():
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                errors.append(f"worker {proc.pid} gave no results")
                continue
            message = conn.recv()
            if message[0] == "error":
                errors.append(message[1])
                continue
            _, got, check, sent = message
            outcomes += got
            figures.append(check)
            span = max(span, sent)
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        return outcomes, figures, span, errors
