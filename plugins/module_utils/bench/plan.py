# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Points of a sweep, the interleaved order of a run's blocks, and one block's run."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

from .. import layout
from . import workload
from .runner import run
from .spec import RunSpec

SWEEPS = ("none", "concurrency", "rate")


def point_label(sweep: str, value: float | str) -> str:
    if sweep == "none":
        return "default"
    if isinstance(value, float) and math.isinf(value):
        value = "inf"
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{sweep}-{value}"


def points(sweep: str, values: list) -> list[dict]:
    """[{label, max_concurrency or request_rate}] per sweep point."""
    if sweep not in SWEEPS:
        raise ValueError(f"sweep {sweep!r}: expected one of {', '.join(SWEEPS)}")
    if sweep == "none":
        return [{"label": "default"}]
    if not values:
        raise ValueError(f"a {sweep} sweep needs at least one value")
    key = "max_concurrency" if sweep == "concurrency" else "request_rate"
    return [
        {
            "label": point_label(sweep, float(v)),
            key: int(float(v)) if key == "max_concurrency" else float(v),
        }
        for v in values
    ]


def block_order(
    groups: list[str],
    sweep_points: list[dict],
    repetitions: int,
    redeploy_every: int = 0,
    crossover: bool = False,
) -> list[dict]:
    """The order of a run's blocks: round r runs every point, and at each point the
    groups in order on odd rounds and reversed on even rounds (ABBA), so that a drift of
    the machine over the run falls on both groups alike.

    `warm` marks each group's first block at a point: only it warms the engine until
    steady. A frozen engine keeps its warm state: on the embedded default, blocks run
    right after a thaw with no warm-up gave median TPOT 94.9-98.3 ms against 96.2 ms
    for the warmed first block.

    With `redeploy_every` k (even, so that a deployment holds whole ABBA cycles), every
    group's engines restart before rounds k+1, 2k+1, ...: those rounds' blocks carry
    `redeploy` (the first of them restarts) and `warm`, and every block its
    `deployment` (0, 1, ...), which the verdict takes as its unit.

    With `crossover`, the groups swap hosts after the first half of the rounds (an even
    number, so that each leg holds whole ABBA cycles): every block carries `crossed`
    (true after the swap), and the first round after the swap `swap` (each host is
    redeployed with the other group's settings) and `warm`."""
    if repetitions < 1:
        raise ValueError(f"repetitions {repetitions}: expected >= 1")
    if redeploy_every and (redeploy_every < 2 or redeploy_every % 2):
        raise ValueError(f"redeploy every {redeploy_every} rounds: expected 0 or an even number")
    swap_after = crossover_round(repetitions) if crossover else repetitions
    out: list[dict] = []
    for rep in range(1, repetitions + 1):
        fresh = bool(redeploy_every) and rep > 1 and (rep - 1) % redeploy_every == 0
        for point in sweep_points:
            order = groups if rep % 2 else list(reversed(groups))
            for group in order:
                block = {"group": group, "rep": rep, **point, "order": len(out) + 1}
                block["warm"] = rep == 1 or fresh or rep == swap_after + 1
                if redeploy_every:
                    block.update(deployment=(rep - 1) // redeploy_every, redeploy=fresh)
                if crossover:
                    block.update(crossed=rep > swap_after, swap=rep == swap_after + 1)
                out.append(block)
    return out


def crossover_round(repetitions: int) -> int:
    """The last round before a crossover's swap: half the budget, rounded down to whole
    ABBA cycles (two rounds), at least one cycle."""
    if repetitions < 4:
        raise ValueError(f"a crossover of {repetitions} rounds: expected at least 4 (two legs)")
    return max(2, repetitions // 4 * 2)


def crossed_settings(mine: dict, theirs: dict, names: list[str]) -> dict:
    """The settings a host takes at a crossover's swap: the other group's value of every
    generated setting that differs, but those that belong to the group or the host by
    construction (its name, ports, bind addresses: layout.PER_GROUP_BY_CONSTRUCTION)."""
    return {
        k: theirs[k]
        for k in names
        if k not in layout.PER_GROUP_BY_CONSTRUCTION and k in theirs and mine.get(k) != theirs[k]
    }


def knob_label(knob: str, value) -> str:
    """A configuration sweep's point: the setting's name without `vllm_`, then the value
    (`mps_active_thread_percentage-20`), as results and plots read it back."""
    return f"{knob.removeprefix('vllm_')}-{value}"


def knob_order(values: list, repetitions: int, knob: str = "") -> list[dict]:
    """The blocks of a configuration sweep: round r runs every value, in order on odd
    rounds and reversed on even ones (ABBA over the values), so that a drift of the
    machine falls on every value alike. `redeploy` marks a block whose value differs
    from the block before (the stack must be redeployed), and such a block warms the
    restarted engine; consecutive blocks of one value (at a turn) share a deployment."""
    if repetitions < 1:
        raise ValueError(f"repetitions {repetitions}: expected >= 1")
    if not values:
        raise ValueError("a configuration sweep needs at least one value")
    out: list[dict] = []
    for rep in range(1, repetitions + 1):
        for value in values if rep % 2 else list(reversed(values)):
            changed = not out or out[-1]["value"] != value
            out.append(
                {"value": value, "label": knob_label(knob, value), "rep": rep,
                 "order": len(out) + 1, "redeploy": changed, "warm": changed}
            )  # fmt: skip
    return out


def dev_sweep_order(values: list, repetitions: int, knob: str) -> list[dict]:
    """The blocks of a sweep of dev's setting beside a fixed baseline: value after value,
    so that dev's stack is redeployed once a value, and at each value the two groups'
    blocks in ABBA order over its rounds, so that every value is compared with baseline's
    blocks run beside it (a drift between values falls on both groups alike; the values
    need not alternate, which would redeploy dev at nearly every block). Both groups' first
    block at a value warms its engine: dev's was restarted, baseline's sat idle meanwhile."""
    if repetitions < 1:
        raise ValueError(f"repetitions {repetitions}: expected >= 1")
    if not values:
        raise ValueError("a sweep of dev's setting needs at least one value")
    if len({str(v) for v in values}) < len(values):
        raise ValueError(f"values {values}: each value once (a value is one comparison)")
    groups = ["baseline", "dev"]
    out: list[dict] = []
    for value in values:
        for rep in range(1, repetitions + 1):
            for group in groups if rep % 2 else list(reversed(groups)):
                out.append(
                    {"group": group, "value": value, "label": knob_label(knob, value),
                     "rep": rep, "order": len(out) + 1, "warm": rep == 1}
                )  # fmt: skip
    return out


def warmed_by_probe(blocks: list[dict], host: str) -> list[dict]:
    """The blocks, with the first one of `host` not warming: the capacity probe has just
    warmed that engine at the load the run offers (rate auto, no sweep), so a second
    warm-up would only cost time."""
    out, done = [], False
    for block in blocks:
        if not done and block.get("host") == host:
            block, done = {**block, "warm": False}, True
        out.append(block)
    return out


SETTING = "vllm_benchmark_{}"  # the run's setting of RunSpec field {}: one name end to end
# The settings that shape the run around its blocks (the probe, the order, the retries),
# not a block's load: read by the play and by block_options, never a RunSpec field.
AROUND = (
    "probe_concurrency", "request_rate", "load_fraction", "sweep", "block_retries", "repetitions",
)  # fmt: skip


def offered_rate(capacity: float, fraction: float) -> float:
    """The request rate offered to every group with rate auto: a fraction of the probed
    capacity (the one place this formula lives; the probe returns it)."""
    return round(capacity * fraction, 3)


def block_options(
    settings, part: dict, block: dict, rate, action: str = "run", load: dict | None = None,
    parts: list | None = None,
) -> dict:  # fmt: skip
    """The benchmark module's options for one block: each RunSpec field from the run's
    setting vllm_benchmark_<field> (absent: the field's default), then what is the
    block's own (the group's server and model, its point, the rate offered, the probe).

    settings: the block's host's variables (a mapping; read by key only). part: the host's
    part of the run (part.yml); parts: every host's, whose stacks on the same machine the
    block freezes. block: one entry of the run's block order (plan.block_order), with
    `max_concurrency` or `request_rate` where the point sets them and `warm` false where
    the block must not warm."""
    opts = {}
    parts = parts or []
    for f in dataclasses.fields(RunSpec):
        key = SETTING.format(f.name)
        if key in settings and settings[key] is not None:
            opts[f.name] = settings[key]
    auto = settings.get(SETTING.format("request_rate")) == "auto"
    limit = settings.get(SETTING.format("max_concurrency")) or 0
    probing = settings.get(SETTING.format("probe_concurrency")) or 0
    opts.update(
        url=part["url"],
        model=settings["vllm_model_name"],
        api_key=settings.get("vllm_api_key") or "",
        tokenizer_path=part["tokenizer_path"],
        metrics_urls=part["metrics_urls"],
        processes=part["processes"],
        out_dir=part["out_dir"],
        request_rate=str(block.get("request_rate", rate)),
        max_concurrency=block.get("max_concurrency", limit),
        point=block["label"],
        repetition=block["rep"],
        action=action,
        freeze=frozen_beside(parts, part),
        block_retries=settings.get(SETTING.format("block_retries"), 1),
        context={
            **part["context"],
            # What the controller froze on other hosts; the module adds its own.
            "frozen": [f"{p['host']}:{p['stack_dir']}" for p in frozen_elsewhere(parts, part)],
            "order": block["order"],
            "load": load or {},
            "sweep": settings.get(SETTING.format("sweep"), "none"),
            "deployment": block.get("deployment"),
            "crossed": block.get("crossed"),  # None: not a crossover
        },
    )
    # Only a group's first block at a point warms (block_order says why).
    if not block.get("warm", True):
        opts["warmup_requests"] = 0
    # 0: the run's limit; with rate auto and no limit, the load the probe sized the rate
    # at (4 in flight against a run of 1 gave rounds too uneven to become steady).
    if not opts.get("warmup_concurrency"):
        opts["warmup_concurrency"] = (limit or probing) if auto else 0
    if action == "probe":
        opts["load_fraction"] = settings.get(SETTING.format("load_fraction"), 1.0)
    return opts


def _beside(parts: list[dict], part: dict) -> list[dict]:
    """Every other host's part on `part`'s machine (stacks on one machine are measured
    one at a time; a cluster's never are)."""
    if part["machine"] == "kubernetes":
        return []
    return [p for p in parts if p["host"] != part["host"] and p["machine"] == part["machine"]]


def frozen_beside(parts: list[dict], part: dict) -> list[dict]:
    """The stacks a block of `part`'s host freezes itself: those on its machine whose
    processes it sees (the same PID namespace, as the local platform's groups)."""
    return [
        {"stack_dir": p["stack_dir"], "pids": p["pids"]}
        for p in _beside(parts, part)
        if p.get("pid_ns") == part.get("pid_ns")
    ]


def frozen_elsewhere(parts: list[dict], part: dict) -> list[dict]:
    """The stacks on `part`'s machine that its host cannot see (hosts in namespaces,
    containers or VMs of one machine): the controller freezes each through its own
    host's connection (block.yml, servelab.vllm.stack_freeze)."""
    return [
        {"host": p["host"], "stack_dir": p["stack_dir"], "pids": p["pids"]}
        for p in _beside(parts, part)
        if p.get("pid_ns") != part.get("pid_ns")
    ]


def restarted(parts: list[dict], stacks: list[dict]) -> list[dict]:
    """The hosts' parts with the processes of their restarted stacks: `stacks` holds one
    stack_status result a host, its loop item the host's part. A block freezes the other
    group by pid, so an old pid would freeze nothing, or someone else."""
    by_host = {s["item"]["host"]: s["services"] for s in stacks}
    out = []
    for part in parts:
        services = by_host.get(part["host"])
        if services is not None:
            live = [s for s in services if s.get("pid")]
            part = {
                **part,
                "pids": [s["pid"] for s in live],
                "processes": {s["name"]: s["pid"] for s in live},
            }
        out.append(part)
    return out


def reject_block(out_dir: Path, point: str, rep: int, attempt: int) -> Path:
    """Move a block's results aside (it is run again): nothing is deleted, and the
    comparison reads only rep-<n>/."""
    target = out_dir / point / layout.REJECTED / f"{layout.REP_PREFIX}{rep}-{attempt}"
    target.parent.mkdir(parents=True, exist_ok=True)
    layout.rep_dir(out_dir / point, rep).rename(target)
    return target


def run_block(
    spec: RunSpec,
    out_dir: Path,
    point: str,
    rep: int,
    context: dict,
) -> dict:
    """One repetition at one point, under out_dir/<point>/rep-<n> (layout.rep_dir)."""
    spec.check()
    run_dir = layout.rep_dir(out_dir / point, rep)
    ctx = {**context, "point": point, "repetition": rep}
    seed = block_seed(spec.seed, str(context.get("run_id") or ""), point, rep)
    work = workload.build(dataclasses.replace(spec, seed=seed))
    work.info["seed"] = seed
    return run(spec, run_dir, context=ctx, work=work)


def block_seed(seed: int, run_id: str, point: str, rep: int) -> int:
    """The seed of one block's prompts: the same for every group (the two blocks of a pair
    see the same prompts), another for every repetition, sweep point and run. A prompt sent
    before would hit the prefix cache (on in vLLM by default) and make the block faster for
    that alone: seeded by the repetition only, a rate sweep on the H200 served every point
    after the first from the cache (median TTFT of 2048-token prompts 30-39 ms at 20% of
    the SMs, against 183-189 ms for the first point's fresh prompts), and so would a run on
    engines still up from the run before."""
    digest = hashlib.sha256(f"{seed}/{run_id}/{point}/{rep}".encode()).digest()
    return int.from_bytes(digest[:4], "big")
