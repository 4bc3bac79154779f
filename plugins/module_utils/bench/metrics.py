# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-request outcomes and the run's metrics, named as `vllm bench serve` names them."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from ..records import RequestOutcome


@dataclass
class Slo:
    """Goodput thresholds in milliseconds; 0 means no limit."""

    ttft_ms: float = 0
    tpot_ms: float = 0
    e2e_ms: float = 0

    def met(self, o: RequestOutcome) -> bool:
        if self.ttft_ms and o.ttft * 1000 > self.ttft_ms:
            return False
        if self.tpot_ms and (o.tpot or 0) * 1000 > self.tpot_ms:
            return False
        return not (self.e2e_ms and o.latency * 1000 > self.e2e_ms)

    @property
    def active(self) -> bool:
        return bool(self.ttft_ms or self.tpot_ms or self.e2e_ms)


def percentile(values: list[float], p: float) -> float:
    """Linear-interpolation percentile (numpy's default), without numpy."""
    if not values:
        return 0.0
    data = sorted(values)
    k = (len(data) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def _label(p: float) -> str:
    return f"{p:g}".replace(".", "_")


def summarize(
    outcomes: list[RequestOutcome], duration: float, percentiles: list[float], slo: Slo
) -> dict:
    """The run's metrics: vLLM's key names where they overlap."""
    ok = [o for o in outcomes if o.success]
    errors: dict[str, int] = {}
    for o in outcomes:
        if not o.success:
            errors[o.error_class] = errors.get(o.error_class, 0) + 1
    out_tokens = sum(o.output_tokens for o in ok)
    in_tokens = sum(o.prompt_tokens for o in ok)
    duration = max(duration, 1e-9)
    result: dict = {
        "duration": duration,
        "completed": len(ok),
        "failed": len(outcomes) - len(ok),
        "errors": errors,
        "total_input_tokens": in_tokens,
        "total_output_tokens": out_tokens,
        "request_throughput": len(ok) / duration,
        "output_throughput": out_tokens / duration,
        "total_token_throughput": (in_tokens + out_tokens) / duration,
        "max_concurrent_requests": max_concurrency(ok),
    }
    if slo.active:
        result["request_goodput"] = sum(slo.met(o) for o in ok) / duration
    series = {
        "ttft": [o.ttft for o in ok],
        "tpot": [t for o in ok if (t := o.tpot) is not None],
        "itl": [x for o in ok for x in o.itl],
        "e2el": [o.latency for o in ok],
    }
    for name, values in series.items():
        ms = [v * 1000 for v in values]
        result[f"mean_{name}_ms"] = statistics.fmean(ms) if ms else 0.0
        result[f"median_{name}_ms"] = statistics.median(ms) if ms else 0.0
        result[f"std_{name}_ms"] = statistics.pstdev(ms) if len(ms) > 1 else 0.0
        for p in percentiles:
            result[f"p{_label(p)}_{name}_ms"] = percentile(ms, p)
    return result


def max_concurrency(outcomes: list[RequestOutcome]) -> int:
    """Most requests in flight at once, from their start and end times."""
    events = sorted(
        [(o.start, 1) for o in outcomes] + [(o.start + o.latency, -1) for o in outcomes]
    )
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak
