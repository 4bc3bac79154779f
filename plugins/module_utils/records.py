# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The records both sides of the results contract read (layout.py says where they lie):
a request's outcome, the client check's thresholds and the MPS proof's one-line form.
The benchmark writes them, the results stage reads them; neither reaches into the other.
"""

from __future__ import annotations

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
    M+C, 50%'; a configuration sweep of the share lists every value it ran."""
    proofs = [p for p in proofs if p]
    if not proofs:
        return ""
    types = sorted({t for p in proofs for t in p.get("types") or []})
    shares = {s for p in proofs for s in p.get("active_thread_percentages") or []}
    share = "/".join(f"{s}%" for s in sorted(shares, key=_percent_key)) or "share not set"
    clients = max(int(p.get("clients") or 0) for p in proofs)
    verdict = "" if all(p.get("ok", True) for p in proofs) else ", NOT every engine a client"
    return f"MPS: {clients} client(s), {'/'.join(types) or 'control.log only'}, {share}{verdict}"
