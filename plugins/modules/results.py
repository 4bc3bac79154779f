#!/usr/bin/python
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare baseline and dev for one run, and write the report."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: results
short_description: Compare baseline and dev with statistics and write the report
description:
  - Reads C(<results_dir>/<run_id>/<group>/<host>/<point>/rep-<n>/) as written by
    M(servelab.vllm.benchmark) (the layout of module_utils/layout.py), compares dev against
    baseline per sweep point and metric on one value per repetition (relative delta, t
    interval of the difference, verdict, minimum detectable effect), and writes
    C(<results_dir>/<run_id>/report/) with report.md, a self-contained report.html (the
    same sections), summary.csv, compare.json and PNG plots.
  - Missing, partial or corrupt results are reported and what exists is compared; nothing
    is deleted.
  - With O(action=compare), compares and returns the table without writing anything; with
    O(action=list), lists the runs here and those only on the nodes (O(node_runs)); with
    O(action=forecast), says before a run of O(config_hash) how many blocks deciding the
    margin takes, from the calibrations of that configuration; with
    O(fail_on_regression), fails when dev is WORSE on one of O(gate_metrics) (and with
    O(fail_on_undecided), when one is UNDECIDED); with O(action=history), indexes every run
    under O(results_dir) and shows the history (module_utils/results/history.py, trend.py);
    with O(action=import), copies in the runs of O(import_dir).
version_added: "0.1.0"
author: servelab developers (@servelab)
options:
  results_dir:
    description: Controller results directory.
    type: path
    required: true
  run_id:
    description: Run to compare; empty for the latest.
    type: str
    default: ""
  action:
    description: What to do.
    type: str
    choices: [report, compare, list, forecast, history, import]
    default: report
  confidence:
    description: Family-wise confidence over the primary metrics of a point.
    type: float
    default: 0.95
  primary_metrics:
    description:
      - The metrics that get a word (BETTER, WORSE, SAME, UNDECIDED); Holm's step-down
        over them keeps the family-wise level. Throughput counts only where the load lets
        it move (closed loop or saturated).
    type: list
    elements: str
    default: [median_ttft_ms, median_tpot_ms, output_throughput]
  margin_pct:
    description: Equivalence margin in percent (SAME inside it, BETTER or WORSE beyond).
    type: float
    default: 5
  history:
    description:
      - "With O(action=history), the filters of the runs shown (make vllm-history), each
        optional: C(config_hash), C(setting) (C(name=value)), C(host), C(since), C(until)
        (UTC stamps such as C(20261201)) and C(kind) (C(ab), the default, or C(calibration))."
    type: dict
    default: {}
  import_dir:
    description: With O(action=import), a directory of run directories from another controller.
    type: path
    default: ""
  repetitions:
    description:
      - With O(action=forecast), the run's budget in blocks a group
        (VLLM_BENCHMARK_REPETITIONS); 0 for the default plan's.
    type: int
    default: 0
  min_repetitions:
    description: With O(action=forecast), the run's first look (VLLM_BENCHMARK_MIN_REPETITIONS).
    type: int
    default: 0
  unreachable_hosts:
    description:
      - Nodes that did not answer when the results were fetched; the report names them
        (their blocks are missing), and compares what the others hold.
    type: list
    elements: str
    default: []
  gate_metrics:
    description: Primary metrics checked by O(fail_on_regression); empty for every primary.
    type: list
    elements: str
    default: []
  fail_on_regression:
    description: Fail when a gate metric is WORSE.
    type: bool
    default: false
  fail_on_undecided:
    description: With O(fail_on_regression), also fail when a gate metric is UNDECIDED.
    type: bool
    default: false
  config_hash:
    description: For O(action=forecast), the configuration about to run.
    type: str
    default: ""
  node_runs:
    description:
      - For O(action=list), the run ids each node holds (node name to list); the runs
        not yet fetched here are listed with the nodes that have them.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Compare the latest run
  servelab.vllm.results:
    results_dir: results
"""

RETURN = r"""
run_id:
  description: The run compared.
  returned: always
  type: str
table:
  description: The verdict and the comparison as text lines.
  returned: always
  type: list
  elements: str
problems:
  description: Missing, partial or corrupt results.
  returned: always
  type: list
  elements: str
regressions:
  description: Gate metrics on which dev is WORSE (or UNDECIDED, with O(fail_on_undecided)).
  returned: always
  type: list
  elements: str
runs:
  description: The runs under O(results_dir).
  returned: always
  type: list
  elements: dict
"""

import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible_collections.servelab.vllm.plugins.module_utils.results import (  # noqa: E402
    collect,
    compare,
    history,
    plots,
    report,
    stats,
    trend,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "results_dir": {"type": "path", "required": True},
            "run_id": {"type": "str", "default": ""},
            "action": {
                "type": "str",
                "default": "report",
                "choices": ["report", "compare", "list", "forecast", "history", "import"],
            },
            "node_runs": {"type": "dict", "default": {}},
            "unreachable_hosts": {"type": "list", "elements": "str", "default": []},
            "history": {"type": "dict", "default": {}},
            "import_dir": {"type": "path", "default": ""},
            "repetitions": {"type": "int", "default": 0},
            "min_repetitions": {"type": "int", "default": 0},
            "config_hash": {"type": "str", "default": ""},
            **compare.verdict_argument_spec(),
            "gate_metrics": {"type": "list", "elements": "str", "default": []},
            "fail_on_regression": {"type": "bool", "default": False},
            "fail_on_undecided": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    if stats.IMPORT_ERROR or plots.plt is None:
        module.fail_json(
            msg=missing_required_lib("numpy, scipy and matplotlib"), exception=stats.IMPORT_ERROR
        )
    p = module.params
    results_dir = Path(p["results_dir"])
    runs = collect.list_runs(results_dir)
    base = {"runs": runs, "table": [], "problems": [], "regressions": [], "run_id": ""}
    if p["action"] == "list":
        lines = collect.run_lines(runs, p["node_runs"])
        module.exit_json(changed=False, **{**base, "table": lines or ["(no runs)"]})
    if p["action"] == "forecast":
        s = compare.Settings(p["confidence"], p["margin_pct"], list(p["primary_metrics"]))
        if p["repetitions"] > 0:  # the run's plan: its first look and budget
            s.max_pairs = p["repetitions"]
            s.min_pairs = min(p["min_repetitions"] or s.min_pairs, s.max_pairs)
        line = report.forecast(results_dir, p["config_hash"], s)
        module.exit_json(changed=False, **{**base, "table": [line]})
    if p["action"] in ("history", "import"):
        _history(module, results_dir, p, base)
    if not 0 < p["confidence"] < 1:
        module.fail_json(msg=f"confidence {p['confidence']}: expected 0 < x < 1")
    if not 0 < p["margin_pct"] < 100:
        module.fail_json(
            msg=f"margin {p['margin_pct']}% (VLLM_RESULTS_MARGIN_PCT): expected 0 < x < 100"
        )
    run_id = p["run_id"] or (runs[-1]["run_id"] if runs else "")
    if not run_id or not (results_dir / run_id).is_dir():
        module.fail_json(
            msg=f"no run {run_id!r} under {results_dir}: run `make vllm` first, or "
            "pick one from `make vllm-results-list`"
            + (
                "; `make vllm-results` fetches a run from the nodes"
                if p["action"] == "compare"
                else ""
            ),
            **base,
        )
    if module.check_mode:
        module.exit_json(changed=False, **{**base, "run_id": run_id})
    unknown = sorted(set(p["primary_metrics"] + p["gate_metrics"]) - set(compare.metric_names()))
    if unknown:
        module.fail_json(
            msg=f"unknown metric(s) {', '.join(unknown)} in VLLM_RESULTS_PRIMARY_METRICS_LIST or "
            f"VLLM_RESULTS_GATE_METRICS_LIST: expected some of {', '.join(compare.metric_names())}"
        )
    not_primary = sorted(set(p["gate_metrics"]) - set(p["primary_metrics"]))
    if not_primary:
        module.fail_json(
            msg=f"VLLM_RESULTS_GATE_METRICS_LIST has {', '.join(not_primary)}, not primary: "
            "only primary metrics get a word to gate on; add them to "
            "VLLM_RESULTS_PRIMARY_METRICS_LIST or leave the gate list empty (every primary)"
        )
    settings = compare.Settings(p["confidence"], p["margin_pct"], list(p["primary_metrics"]))
    write = p["action"] == "report"
    out = report.write_report(
        results_dir / run_id, settings, p["gate_metrics"], results_dir, write=write,
        undecided=p["fail_on_undecided"] and p["fail_on_regression"],
        unreachable=p["unreachable_hosts"],
    )  # fmt: skip
    result = {
        **base,
        "changed": write,
        "run_id": run_id,
        **({"report_dir": out["report_dir"]} if write else {}),
        "table": out["table"],
        "problems": out["problems"],
        "regressions": out["regressions"],
    }
    if p["fail_on_regression"] and out["regressions"]:
        module.fail_json(
            msg="the gate fails: " + "; ".join(out["regressions"]), **result,
        )  # fmt: skip
    module.exit_json(**result)


def _history(module, results_dir: Path, p: dict, base: dict) -> None:
    """make vllm-history (the table, change points, the page) and vllm-history-import."""
    if history.IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("ruptures"), exception=history.IMPORT_ERROR)
    if p["action"] == "import":
        if not p["import_dir"]:
            module.fail_json(msg="import: name the directory of runs to import (DIR=path)")
        got = trend.import_runs(Path(p["import_dir"]), results_dir)
        lines = [
            f"imported {len(got['imported'])} run(s): {', '.join(got['imported']) or '-'}",
            f"already here (same blocks): {', '.join(got['duplicates']) or '-'}",
        ]
        module.exit_json(changed=bool(got["imported"]), **{**base, "table": lines,
                         "problems": got["problems"]})  # fmt: skip
    known = {f.name for f in dataclasses.fields(history.Filters)}
    unknown = sorted(set(p["history"]) - known)
    if unknown:
        module.fail_json(msg=f"history: unknown filter(s) {', '.join(unknown)}: expected "
                         f"some of {', '.join(sorted(known))}")  # fmt: skip
    f = history.Filters(**{k: str(v) for k, v in p["history"].items() if v not in (None, "")})
    out = trend.history_report(results_dir, f, list(p["primary_metrics"]), write=True)
    lines = [f"{len(out['runs'])} run(s)"] + out["table"] + ["change points:"]
    lines += [f"  {x}" for x in out["findings"]]
    if out.get("page"):
        lines.append(f"page: {out['page']}")
    # FAIL_ON_CHANGE is the playbook's: it shows the table before it fails.
    module.exit_json(
        **{**base, "changed": bool(out.get("page")), "table": lines,
           "problems": out["problems"], "regressions": out["regressions"]}
    )  # fmt: skip


if __name__ == "__main__":
    main()
