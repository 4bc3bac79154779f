# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run's summary from its outcomes, and its results on disk (summary.json last)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from .. import layout
from ..atomic import write_atomic, write_json_atomic
from ..records import RUN_FIGURES, BlockContext, RequestOutcome
from . import metrics
from .spec import RunSpec


def load_figures(outcomes: list[RequestOutcome], spec: RunSpec, send_span: float) -> dict:
    """Offered vs achieved request rate, and whether the server kept up.

    The achieved rate is the rate of first tokens over the requests in send order
    (_rate). A server that keeps up starts each request soon after its send, so it
    follows the send rate; one that cannot queues them and starts them at its capacity.
    First tokens, not completions: completions come an output's length later, so long,
    varied outputs drain past the last send and read low from the drain alone (ShareGPT
    on an H200 was flagged in 11 of 12 blocks with 4-9 of 64 requests in flight).
    Saturated: achieved below 95% of the rate the requests were sent at, measured the
    same way over send times, so a client that sent late (its own self-check) is not
    laid on the server."""
    served = sorted((o.start, o.start + o.ttft) for o in outcomes if o.success)
    sends, firsts = [s for s, _ in served], [f for _, f in served]
    achieved = _rate(firsts)
    sent = _rate(sends)
    paced = math.isfinite(spec.request_rate)  # a closed loop has no pace to fall behind
    saturated = bool(paced and achieved and sent and achieved < 0.95 * sent)
    # The offered rate itself is spec.request_rate: one record of it.
    return {"achieved_rate": achieved, "saturated": saturated, "send_span_s": send_span}


def _rate(times: list[float]) -> float | None:
    """Events per second over times in their order: one over the median pace of the pairs
    half a block apart (a Theil-Sen slope, so one late event cannot move it as it moves a
    least-squares fit); None for fewer than three or a pace that is not positive."""
    n = len(times)
    if n < 3:
        return None
    half = n // 2
    pace = statistics.median((times[i + half] - times[i]) / half for i in range(n - half))
    return 1.0 / pace if pace > 0 else None


def summarize(
    spec: RunSpec,
    outcomes: list[RequestOutcome],
    duration: float,
    send_span: float,
    run: dict,
    context: dict,
) -> dict:
    """The summary (records.BlockSummary): the metrics, beside them the load and what the
    run adds (`run`: times, warm-up, host load, server deltas, dataset, client check), the
    spec it ran, and the caller's context nested (records.BlockContext: an undeclared key
    raises ValueError). No figure can shadow a metric: their names are checked apart."""
    figures = {**load_figures(outcomes, spec, send_span), **run}
    if set(figures) != set(RUN_FIGURES):
        raise ValueError(f"run figures {sorted(set(figures) ^ set(RUN_FIGURES))} not declared")
    measured = metrics.summarize(outcomes, duration, spec.percentiles, spec.slo)
    if set(measured) & set(figures):
        raise ValueError(f"run figures {sorted(set(measured) & set(figures))} shadow metrics")
    return {
        "schema_version": layout.SCHEMA_VERSION,
        **measured,
        **figures,
        "spec": spec.recorded(),
        "slo": spec.slo.__dict__,
        "context": BlockContext.from_json(context).to_json(),
    }


def write(out_dir: Path, outcomes: list[RequestOutcome], summary: dict) -> None:
    """requests.jsonl, then summary.json: its presence says the rest is complete.
    Raises OSError; a file not written is not left behind in part."""
    write_atomic(
        out_dir / layout.REQUESTS, "".join(json.dumps(o.to_record()) + "\n" for o in outcomes)
    )
    write_json_atomic(out_dir / layout.SUMMARY, summary)
