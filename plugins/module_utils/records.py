# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The records both sides of the results contract read (layout.py says where they lie):
a request's outcome, a block's summary and its context, the client check's thresholds
and the MPS proof's one-line form. The benchmark writes them, the results stage reads
them; neither reaches into the other.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

# The client check (bench/selfcheck.py judges, the report shows the same limits).
SEND_LAG_P99_MS = 1.0  # a worker's p99 send lag above this: the schedule was not kept
CPU_PCT = 90.0  # a worker's CPU over its measured phase above this (% of one core)
# A block whose host gave more than this share of its CPU to processes outside the stack
# and the client (or to the hypervisor) measured a neighbour too: it is run again.
OTHER_LOAD = 0.10


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


def _percent_key(value: str) -> tuple[float, str]:
    try:
        return (float(value), value)
    except ValueError:
        return (float("inf"), value)


def describe_mps(proofs: list[dict]) -> str:
    """One line for the report from a group's proofs (one a block): 'MPS: 2 client(s),
    M+C, 50% (66 of 132 SMs read back)'; a configuration sweep of the share lists every
    value it ran."""
    proofs = [p for p in proofs if p]
    if not proofs:
        return ""
    types = sorted({t for p in proofs for t in p.get("types") or []})
    shares = {s for p in proofs for s in p.get("active_thread_percentages") or []}
    share = "/".join(f"{s}%" for s in sorted(shares, key=_percent_key)) or "share not set"
    clients = max(int(p.get("clients") or 0) for p in proofs)
    verdict = "" if all(p.get("ok", True) for p in proofs) else ", NOT every engine a client"
    sms = sorted({s for p in proofs for s in p.get("sms") or []})
    devices = sorted({p["device_sms"] for p in proofs if p.get("device_sms")})
    if sms:
        of = f" of {'/'.join(map(str, devices))}" if devices else ""
        share += f" ({'/'.join(map(str, sms))}{of} SMs read back)"
    return f"MPS: {clients} client(s), {'/'.join(types) or 'control.log only'}, {share}{verdict}"


@dataclass
class BlockContext:
    """What the play says of a block: where and when in the run it ran, on what. Recorded
    nested under the summary's "context", so no key of it can shadow a metric; a key not
    declared here is refused (ValueError), so the shape has one declaration."""

    run_id: str = ""
    group: str = ""
    host: str = ""
    config_hash: str = ""
    run_kind: str = "ab"  # ab, calibration
    point: str = "default"
    repetition: int = 0
    order: int | None = None  # the block's place in the run (ABBA)
    deployment: int | None = None  # with replication across deployments
    crossed: bool | None = None  # a crossover's block: after its swap (None: no crossover)
    sweep: str = "none"
    load: dict = field(default_factory=dict)  # how the rate was chosen (auto: the probe)
    config: dict = field(default_factory=dict)  # the generated settings, as this host has them
    versions: dict = field(default_factory=dict)  # engine, router, model
    placement: dict = field(default_factory=dict)  # a CPU engine's dtype and core sets
    mps: dict = field(default_factory=dict)  # the MPS proof
    wheelhouse: dict = field(default_factory=dict)
    host_facts: dict = field(default_factory=dict)  # kernel, cpu, gpu_driver of the host
    collection: str = ""  # the servelab commit that ran the block (the controller's checkout)
    frozen: list = field(default_factory=list)  # the stacks frozen meanwhile
    rejected: list = field(default_factory=list)  # earlier attempts, run again

    @classmethod
    def from_json(cls, data: dict) -> BlockContext:
        if not isinstance(data, dict):
            raise TypeError(f"a block's context is an object, not {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"context: {', '.join(unknown)} not declared (records.BlockContext)")
        values = {k: v for k, v in data.items() if v is not None}
        for key in ("repetition", "order", "deployment"):
            if key in values:
                values[key] = int(values[key])
        return cls(**values)

    def to_json(self) -> dict:
        return asdict(self)


# The figures a block adds beside its metrics (summary.summarize), at the summary's top.
RUN_FIGURES = (
    "achieved_rate", "saturated", "send_span_s", "started_at", "ended_at", "warmup",
    "interrupted", "host_load", "server", "dataset", "client",
)  # fmt: skip


@dataclass
class BlockSummary:
    """A block's summary.json (layout.SCHEMA_VERSION 2) as the results read it: the
    metrics at the top under vllm bench serve's names, the run's figures (RUN_FIGURES)
    beside them, `spec` (the options as run: the request rate is spec.request_rate, its
    one record), `slo`, and `context` (BlockContext)."""

    data: dict
    context: BlockContext

    @classmethod
    def from_json(cls, data: dict) -> BlockSummary:
        if not isinstance(data, dict):
            raise TypeError(f"a summary is an object, not {type(data).__name__}")
        return cls(data, BlockContext.from_json(data.get("context") or {}))

    def value(self, metric: str) -> float | None:
        """A metric's figure, or None where the block has none."""
        value = self.data.get(metric)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else None

    def count(self, name: str) -> int | None:
        """A count among the metrics (completed, failed, ...), or None where it has none."""
        value = self.value(name)
        return None if value is None else int(value)

    @property
    def errors(self) -> dict:
        """The failed requests by error class."""
        return dict(self.data.get("errors") or {})

    @property
    def request_rate(self) -> float | None:
        """The rate offered, requests per second; None for a closed loop (inf)."""
        rate = (self.data.get("spec") or {}).get("request_rate")
        return float(rate) if isinstance(rate, (int, float)) and math.isfinite(rate) else None

    @property
    def saturated(self) -> bool:
        return bool(self.data.get("saturated"))

    @property
    def started_at(self) -> float:
        return float(self.data.get("started_at") or 0)

    def figure(self, name: str, default=None):
        """One of RUN_FIGURES (client, server, host_load, ...), or the default."""
        if name not in RUN_FIGURES:
            raise KeyError(f"{name}: not a block's figure (records.RUN_FIGURES)")
        value = self.data.get(name)
        return default if value is None else value
