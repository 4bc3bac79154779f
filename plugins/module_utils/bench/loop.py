# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The request loop: warm up until steady, then send the measured requests at their send
times through the client, collecting their outcomes; SIGINT and SIGTERM stop it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import time
from dataclasses import dataclass, field

try:
    import aiohttp
except ImportError:  # the module reports it with missing_required_lib
    aiohttp = None

from ..records import RequestOutcome
from . import sending, workers
from .client import Target, send
from .datasets import BenchRequest
from .progress import Progress
from .selfcheck import WorkerCheck
from .server_metrics import Sampler
from .spec import BenchError, RunSpec


@dataclass
class RunState:
    """What a run has done so far. The caller holds it, so that a run stopped midway
    still has its outcomes, its start and its warm-up."""

    outcomes: list[RequestOutcome] = field(default_factory=list)  # as requests end
    start: float | None = None  # perf_counter() when the measured requests began
    warmup: dict = field(default_factory=dict)  # what the warm-up did
    send_span_s: float = 0.0  # seconds from the start to the last send
    interrupted: str = ""  # the signal that stopped the run, if one did
    client: WorkerCheck = field(default_factory=WorkerCheck)  # the client's self-check
    workers: list[dict] = field(default_factory=list)  # worker processes' figures, if any


async def run_load(
    spec: RunSpec,
    target: Target,
    requests: list[BenchRequest],
    progress: Progress,
    sampler: Sampler,
    state: RunState,
) -> float:
    """Warm up on the first spec.warmup_requests requests, send the rest; the measured
    duration in seconds. state fills as it goes."""
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    restore = _stop_on_signals(state)
    try:
        async with aiohttp.ClientSession(connector=connector, read_bufsize=2**20) as session:
            warm = dataclasses.replace(target, save_text=False)
            state.warmup = await _warm_up(spec, session, warm, requests[: spec.warmup_requests])
            measured = requests[spec.warmup_requests :]
            n = workers.count(spec.client_workers, spec.max_concurrency)
            if n > 1:
                return await _send_by_workers(spec, target, measured, n, progress, sampler, state)
            return await _send_measured(spec, session, target, measured, progress, sampler, state)
    finally:
        restore()


def _stop_on_signals(state: RunState):
    """SIGINT and SIGTERM cancel the run's main task from the event loop, between callbacks.
    A handler that raised where the signal landed could land inside aiohttp's protocol,
    which turns any exception into one failed request and lets the run go on (seen in CI).
    Returns the function that puts the process's own handlers back."""
    loop, main = asyncio.get_running_loop(), asyncio.current_task()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def stop(name: str) -> None:
        state.interrupted = state.interrupted or name
        main.cancel()

    try:
        for sig in previous:
            loop.add_signal_handler(sig, stop, sig.name)
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
        return lambda: None

    def restore() -> None:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler)

    return restore


async def _send_measured(
    spec: RunSpec,
    session: aiohttp.ClientSession,
    target: Target,
    measured: list[BenchRequest],
    progress: Progress,
    sampler: Sampler,
    state: RunState,
) -> float:
    """Every measured request from this process: one share (sending.share)."""
    sampler.before = await sampler.snapshot_async()
    done_event = asyncio.Event()
    sampler_task = asyncio.create_task(sampler.sample_until(done_event))
    outcomes = state.outcomes
    failed = sum(not o.success for o in outcomes)
    sent = 0
    check = state.client

    def ended(outcome: RequestOutcome) -> None:
        nonlocal failed
        outcomes.append(outcome)
        failed += not outcome.success
        progress.line(
            f"{len(outcomes)} done ({failed} failed), {sent - len(outcomes)} in flight, "
            f"{time.perf_counter() - start:.0f} s"
        )

    def went(count: int, span: float) -> None:
        nonlocal sent
        sent, state.send_span_s = count, span

    check.busy_poll = spec.client_busy_poll
    if check.busy_poll:
        await check.calibrate()
    with sending.gc_paused():
        start = state.start = time.perf_counter()
        deadline = start + spec.duration if spec.duration else None
        check.start()
        # A request count ends after its last request; a duration at its deadline.
        mine = sending.share(spec, measured)
        last_scheduled = await sending.send_share(
            session, target, mine, start, deadline, check, ended, went
        )
        duration = time.perf_counter() - start
        check.stop()
        if check.busy_poll:
            await check.calibrate()  # again, with the load gone
    done_event.set()
    await sampler_task
    sampler.after = await sampler.snapshot_async()
    state.send_span_s = last_scheduled
    return duration


async def _send_by_workers(
    spec: RunSpec,
    target: Target,
    measured: list[BenchRequest],
    n: int,
    progress: Progress,
    sampler: Sampler,
    state: RunState,
) -> float:
    """The measured requests through n worker processes (workers.py); what they did is
    merged into state, also when the run is stopped."""
    pool = workers.Pool(sending.deal(spec, measured, n), target)
    sampler.before = await sampler.snapshot_async()
    done_event = asyncio.Event()
    sampler_task = asyncio.create_task(sampler.sample_until(done_event))
    try:
        try:
            start = state.start = await pool.start(spec.duration)
        except RuntimeError as err:  # a worker that did not start: before any load
            pool.stop()
            raise BenchError(f"the load generator could not start: {err}") from None
        while pool.running():
            ended, failed = pool.counts()
            progress.line(
                f"{ended} done ({failed} failed), {n} workers, {time.perf_counter() - start:.0f} s"
            )
            await asyncio.sleep(0.1)
        duration = time.perf_counter() - start
    except asyncio.CancelledError:
        pool.stop()  # each worker saves what ended, as one process does
        _merge(state, *pool.results(workers.RESULTS_TIMEOUT_S)[:3])  # keep what came back
        raise
    finally:
        done_event.set()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler_task
    *done, errors = pool.results(workers.RESULTS_TIMEOUT_S)
    if errors:  # a worker failed: its share of the requests cannot be accounted for
        raise BenchError(f"the load generator failed: {'; '.join(errors)}")
    _merge(state, *done)
    sampler.after = await sampler.snapshot_async()
    return duration


def _merge(state: RunState, outcomes: list, figures: list[dict], span: float) -> None:
    state.outcomes.extend(outcomes)
    state.workers = sorted(figures, key=lambda f: f["worker"])
    state.send_span_s = span


def _median_tpot(outcomes: list[RequestOutcome]) -> float | None:
    tpots = sorted(t for o in outcomes if o.success and (t := o.tpot) is not None)
    return tpots[len(tpots) // 2] if tpots else None


async def _warm_up(spec: RunSpec, session, target: Target, pool: list[BenchRequest]) -> dict:
    """Warm until steady: rounds of `concurrency` requests in flight at once, until the
    median TPOT of a round is within spec.warmup_tolerance of the round before, or the
    pool (spec.warmup_requests requests) is spent. Excluded from the figures, recorded."""
    started = time.perf_counter()
    concurrency = spec.warmup_concurrency or spec.max_concurrency or 4
    rounds: list[float | None] = []
    sent, steady = 0, False
    while pool and sent + concurrency <= max(len(pool), concurrency) and not steady:
        batch = [pool[(sent + k) % len(pool)] for k in range(concurrency)]
        outcomes = await asyncio.gather(
            *(
                send(session, target, req, -1 - sent - k, time.perf_counter())
                for k, req in enumerate(batch)
            )
        )
        sent += len(batch)
        rounds.append(_median_tpot(outcomes))
        last, prev = rounds[-1], rounds[-2] if len(rounds) > 1 else None
        steady = bool(last and prev and abs(last - prev) / prev < spec.warmup_tolerance)
    return {
        "warmup_requests": sent,
        "warmup_seconds": time.perf_counter() - started,
        "warmup_steady": steady,
        "warmup_concurrency": concurrency,
        "warmup_round_tpot_ms": [None if r is None else r * 1000 for r in rounds],
    }
