# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The measured phase's one send path, for any number of processes.

The run's seeded send times are dealt into shares (deal): one share holds every request
when one process sends them (loop.py), or each worker process gets one (workers.py).
Either way send_share sends a share at its times through one event loop, with the same
deadline, concurrency and stop rules; gc_paused, sleep_until and send_on_time are its
parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..records import RequestOutcome
from . import schedule
from .client import Target, send
from .datasets import BenchRequest
from .selfcheck import WorkerCheck


@dataclass
class Share:
    """What one worker sends: (index, request, send offset) in send order."""

    worker: int
    items: Iterable[tuple[int, BenchRequest, float]]  # a list, or one process's lazy run
    concurrency: int  # 0: no limit
    busy_poll: bool = False  # its loop never sleeps (selfcheck.py)


def deal(spec, measured: list[BenchRequest], n: int) -> list[Share]:
    """The run's send times, dealt round robin to n workers. A duration keeps the sends
    due before it (one process, share(), stops at its deadline the same way)."""
    offsets = schedule.send_times(spec, len(measured))
    if spec.duration:
        offsets = itertools.takewhile(lambda t: t < spec.duration, offsets)
    shares = [Share(k, [], 0, spec.client_busy_poll) for k in range(n)]
    for i, offset in enumerate(offsets):
        shares[i % n].items.append((i, measured[i % len(measured)], offset))
    if spec.max_concurrency:
        base, extra = divmod(spec.max_concurrency, n)
        for share in shares:
            share.concurrency = base + (share.worker < extra)
    return shares


def share(spec, measured: list[BenchRequest]) -> Share:
    """Every request, for one process: lazily, since a duration's sends have no end."""
    items = (
        (i, measured[i % len(measured)], offset)
        for i, offset in enumerate(schedule.send_times(spec, len(measured)))
    )
    return Share(0, items, spec.max_concurrency, spec.client_busy_poll)


async def send_share(
    session,
    target: Target,
    mine: Share,
    start: float,
    deadline: float | None,
    check: WorkerCheck,
    on_outcome: Callable[[RequestOutcome], None],
    on_send: Callable[[int, float], None] = lambda sent, span: None,
) -> float:
    """Send the share's requests at their times from `start` (none at or after
    `deadline`), each outcome to on_outcome as it ends and each send to on_send (sent so
    far, seconds from the start); returns the seconds from the start to the last send.
    Cancelled (the run stopped): the requests in flight are cut off and not handed on,
    then CancelledError goes to the caller, which keeps what ended."""
    limit = asyncio.Semaphore(mine.concurrency) if mine.concurrency else None
    tasks: list[asyncio.Task] = []
    pending: set[asyncio.Task] = set()
    stopped = False
    span = 0.0

    async def one(index: int, req: BenchRequest, due: float) -> None:
        outcome = await send_on_time(session, target, req, index, start, due, check, limit)
        if stopped and outcome.error_class == "client_abort":
            return  # cut off by the user's stop: it never ended, so it is not a result
        on_outcome(outcome)

    try:
        for index, req, offset in mine.items:
            if deadline is not None and time.perf_counter() >= deadline:
                break
            await sleep_until(start + offset)
            if deadline is not None and time.perf_counter() >= deadline:
                break
            # A closed loop for a duration: no more tasks than slots, or the loop would
            # create a task a turn (all due at once) until the deadline.
            while mine.concurrency and len(pending) >= mine.concurrency:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(one(index, req, offset))
            tasks.append(task)
            pending.add(task)
            span = time.perf_counter() - start
            on_send(len(tasks), span)
        await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        stopped = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return span


async def send_on_time(
    session,  # aiohttp.ClientSession
    target: Target,
    req: BenchRequest,
    index: int,
    start: float,
    due: float,
    check: WorkerCheck,
    limit: asyncio.Semaphore | None,
) -> RequestOutcome:
    """One measured request, its send lag recorded: how late after its send time (`due`,
    from `start`) its task ran. Nothing awaits between here and send() but a free slot
    under max_concurrency, and that wait is the limit at work, not the client lagging."""
    lag = time.perf_counter() - start - due
    check.record(lag)
    async with limit or contextlib.nullcontext():
        outcome = await send(session, target, req, index, start)
    outcome.send_lag = lag
    return outcome


@contextlib.contextmanager
def gc_paused():
    """The measured phase without Python's cyclic garbage collector, which stops the
    whole process while it runs: at 6,000 chunks/s it ran 125 times in 8 s (gen 0: up to
    2 ms each; once gen 2: 23 ms) and doubled the p99 chunk timing error. The client
    makes no cyclic garbage per request (reference counting frees it: 3,230 objects
    unreachable after 500 requests, 3,244 after 2,000), so memory does not grow; what
    was alive before is frozen out of later collections, and all is collected after."""
    gc.collect()
    gc.freeze()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.unfreeze()


# asyncio's timers fire up to 1 ms late (the epoll timeout is whole milliseconds, rounded
# up), and the process then takes its time to wake: sends wait on a timer until this long
# before their time, then yield to the loop. At 1 ms the p99 send lag at 10 req/s was
# 1.02-1.14 ms on this project's 2-core machine; at 2 ms, 0.18-0.42 ms.
SPIN_S = 0.002


async def sleep_until(when: float) -> None:
    """Return at perf_counter() `when`, not a timer's millisecond later: the last SPIN_S
    passes in asyncio.sleep(0), which lets every other task run meanwhile."""
    delay = when - time.perf_counter() - SPIN_S
    if delay > 0:
        await asyncio.sleep(delay)
    while time.perf_counter() < when:
        await asyncio.sleep(0)
