# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One benchmark run: workload -> schedule -> client -> outcomes -> summary, on disk.

The stages live in modules of their own: preflight (disk room, server), workload (the
requests), schedule (send times), client (one request), loop (warm-up and the measured
requests), server_metrics (the /metrics sampler), summary (figures and files).
"""

from __future__ import annotations

import asyncio
import math
import signal
import time
import traceback
from pathlib import Path

try:
    import aiohttp  # noqa: F401 (the client's; the module reports it missing from here)

    IMPORT_ERROR = ""
except ImportError:  # the module reports it with missing_required_lib
    IMPORT_ERROR = traceback.format_exc()

from .. import layout
from . import preflight, selfcheck, summary, telemetry, workload
from .client import Target
from .loop import RunState, run_load
from .progress import Progress
from .server_metrics import Sampler
from .spec import BenchError, RunSpec

__all__ = ["IMPORT_ERROR", "BenchError", "RunSpec", "run", "stop_on_sigterm"]


def target(spec: RunSpec, ignore_eos: bool) -> Target:
    """Where the run's requests go, and how."""
    return Target(
        base_url=spec.url,
        model=spec.model,
        endpoint=spec.endpoint,
        headers=preflight.auth_headers(spec),
        timeout=spec.request_timeout,
        ignore_eos=ignore_eos,
        save_text=spec.save_text,
    )


def run(
    spec: RunSpec,
    out_dir: Path,
    echo: bool = False,
    context: dict | None = None,
    work: workload.Workload | None = None,
) -> dict:
    """Run, write summary.json, requests.jsonl, metrics/ and telemetry.csv; return the summary.

    `work` is workload.build(spec)'s result, when the caller reuses one across runs.
    Raises BenchError before any load for bad input. A run whose requests failed still
    writes everything it has; the summary says how many failed and why. A run stopped by
    SIGINT or SIGTERM saves what it did, marked interrupted, then raises KeyboardInterrupt.
    """
    spec.check()
    preflight.check_room(out_dir, spec.num_prompts)
    preflight.check_server(spec)
    requests, dataset_info, ignore_eos = work or workload.build(spec)
    if spec.ignore_eos is not None:
        ignore_eos = spec.ignore_eos
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        progress = Progress(out_dir / layout.PROGRESS, echo)
    except OSError as err:
        raise BenchError(f"cannot write the results under {out_dir}: {err.strerror}") from None
    sampler = Sampler(spec.metrics_urls, spec.metrics_interval, out_dir / layout.METRICS)
    started_at = time.time()
    progress.line(
        f"start: {spec.num_prompts} requests, rate {spec.request_rate}, "
        f"concurrency {spec.max_concurrency or 'unlimited'}",
        force=True,
    )
    state = RunState()
    interrupted = ""
    with (
        telemetry.Telemetry(str(out_dir / layout.TELEMETRY), spec.processes),
        telemetry.HostLoad(spec.processes) as host,
    ):
        try:
            duration = asyncio.run(
                run_load(spec, target(spec, ignore_eos), requests, progress, sampler, state)
            )
        except (KeyboardInterrupt, asyncio.CancelledError) as err:
            # SIGINT or SIGTERM: during the load through loop's signal handlers, before or
            # after it through stop_on_sigterm or Python's own SIGINT handler.
            if isinstance(err, asyncio.CancelledError) and not state.interrupted:
                raise
            interrupted = state.interrupted or str(err) or "SIGINT"
            duration = time.perf_counter() - state.start if state.start is not None else 0.0
            state.client.stop()
    outcomes = sorted(state.outcomes, key=lambda o: o.index)
    result = summary.summarize(
        spec,
        outcomes,
        duration,
        state.send_span_s,
        run={
            "started_at": started_at,
            "ended_at": time.time(),
            "warmup": state.warmup,
            # The requests that ended before the run was stopped are kept, and say so.
            "interrupted": bool(interrupted),
            "host_load": host.figures,
            "server": sampler.deltas(),
            "dataset": dataset_info,
            # Was the load generator the bottleneck? This process, or its workers.
            "client": selfcheck.summary(
                state.workers or [state.client.figures()], paced=math.isfinite(spec.request_rate)
            ),
        },
        context=context or {},
    )
    try:  # summary.json last: its presence says the rest is complete
        sampler.save()
        summary.write(out_dir, outcomes, result)
    except OSError as err:
        progress.close()
        raise BenchError(
            f"the run's results could not be written under {out_dir}: {err.strerror or err}; "
            "no partial file is left and earlier runs are untouched"
        ) from None
    progress.line(
        f"{'interrupted (' + interrupted + ')' if interrupted else 'end'}: "
        f"{result['completed']} completed, {result['failed']} failed, "
        f"{result['request_throughput']:.2f} req/s",
        force=True,
    )
    progress.close()
    if interrupted:
        raise KeyboardInterrupt(interrupted)
    return result


def _raise_interrupt(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_sigterm() -> None:
    """SIGTERM stops a run as SIGINT does: what it did is saved, marked interrupted."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
