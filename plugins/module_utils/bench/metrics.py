# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-request outcomes and the run's metrics, named as `vllm bench serve` names them."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, fields


@dataclass
class RequestOutcome:
    """One request: clocks are monotonic seconds; start is relative to the run's start."""

    index: int
    start: float = 0.0
    success: bool = False
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    output_tokens: int = 0
    chunks: int = 0
    error_class: str = (
        ""  # http_<status>, timeout, connection_reset, client_abort, invalid_response
    )
    error: str = ""
    session: str = ""
    text: str = ""  # the answer, only when asked for (save_text)
    send_lag: float = 0.0  # handed to the client this late after its send time (measured)

    @property
    def tpot(self) -> float | None:
        """(E2E - TTFT) / (output tokens - 1); None for single-token outputs."""
        if self.output_tokens > 1:
            return (self.latency - self.ttft) / (self.output_tokens - 1)
        return None

    def to_record(self) -> dict:
        record = asdict(self)
        record["tpot"] = self.tpot
        if not self.text:
            del record["text"]
        return record

    @classmethod
    def from_record(cls, record: dict) -> RequestOutcome:
        """The outcome a to_record() line holds, for the results stage to read back.

        Keys it does not know (tpot, which is derived) are ignored and missing or null ones
        take their defaults, so older files read; a record that is not an object or holds a
        value of the wrong type raises TypeError or ValueError.
        """
        if not isinstance(record, dict):
            raise TypeError(f"a request record is a JSON object, not {type(record).__name__}")
        values: dict = {}
        for f in fields(cls):
            value = record.get(f.name)
            if value is None:
                continue
            kind = getattr(f.type, "__name__", f.type)  # "float", postponed or not
            if f.name == "itl":
                value = [float(x) for x in value]
            elif kind in ("float", "int", "str"):
                value = {"float": float, "int": int, "str": str}[kind](value)
            elif kind == "bool" and not isinstance(value, bool):
                raise TypeError(f"{f.name}: {value!r} is not true or false")
            values[f.name] = value
        return cls(**values)


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
