# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run's summary from its outcomes, and its results on disk (summary.json last)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .. import layout
from ..atomic import write_atomic, write_json_atomic
from ..records import RUN_FIGURES, BlockContext, RequestOutcome
from . import metrics
from .spec import RunSpec


def load_figures(outcomes: list[RequestOutcome], spec: RunSpec, send_span: float) -> dict:
    """Offered vs achieved request rate, and whether the server kept up.

    The achieved rate is the completion rate between the first and the last completion,
    which under a steady load follows the arrival rate; a server that cannot keep up
    completes at its capacity instead, below what was offered."""
    ends = sorted(o.start + o.latency for o in outcomes if o.success)
    offered = spec.request_rate if math.isfinite(spec.request_rate) else None
    achieved = (
        (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) > 2 and ends[-1] > ends[0] else None
    )
    saturated = bool(offered and achieved is not None and achieved < 0.95 * offered)
    # The offered rate itself is spec.request_rate: one record of it.
    return {"achieved_rate": achieved, "saturated": saturated, "send_span_s": send_span}


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
