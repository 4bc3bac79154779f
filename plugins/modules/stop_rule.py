#!/usr/bin/python
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ask the sequential verdict whether a run needs another round of blocks."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stop_rule
short_description: Decide whether a run goes on to another round of blocks
description:
  - Replays the sequential verdict (module_utils/results/stats.py, the one the report
    uses) over the blocks run so far and says whether to run another round. It says
    no when every primary metric at every point is BETTER, WORSE or SAME, when the
    budget of repetitions is spent, or when the time budget is.
  - A sweep of baseline alone (a configuration sweep of one group) compares every later
    point with its first, as the report does, and stops when those are decided.
  - Runs on the controller after each round; changes nothing.
version_added: "0.2.0"
author: servelab developers (@servelab)
options:
  blocks:
    description:
      - The blocks run so far, each with C(group), C(host), C(point), C(rep) and
        C(summary) (what M(servelab.vllm.benchmark) returns, in records.BlockSummary's shape).
    type: list
    elements: dict
    required: true
  confidence:
    description: Family-wise confidence over primaries, looks and sweep points.
    type: float
    default: 0.95
  margin_pct:
    description: Equivalence margin in percent.
    type: float
    default: 5
  primary_metrics:
    description: The metrics that get a word.
    type: list
    elements: str
    default: [median_ttft_ms, median_tpot_ms, output_throughput]
  min_repetitions:
    description: The first look, in repetitions a group.
    type: int
    default: 4
  repetitions:
    description: The budget, in repetitions a group.
    type: int
    required: true
  sequential:
    description: Stop when decided; false runs the whole budget.
    type: bool
    default: true
  started:
    description: When the blocks started (seconds since the epoch).
    type: float
    default: 0
  max_minutes:
    description: Time budget of the blocks; 0 for none.
    type: float
    default: 0
  comparisons:
    description:
      - How many comparisons the run will make, when the blocks so far hold only some of
        them (a sweep of dev's setting asks about one value at a time); the family-wise
        level is shared among them as the report shares it. 0 counts those in the blocks.
    type: int
    default: 0
"""

EXAMPLES = r"""
- name: Ask whether to run another round
  servelab.vllm.stop_rule:
    blocks: "{{ bench_done }}"
    repetitions: 12
  register: bench_stop
"""

RETURN = r"""
go_on:
  description: Whether to run another round.
  returned: always
  type: bool
reason:
  description: Why, in words.
  returned: always
  type: str
verdicts:
  description:
    - Per comparison, each primary metric's word so far, keyed as the report's
      comparisons are, by the point (dev against baseline), or by
      C(<point> against <first>) for a sweep of baseline alone (every later point
      against its first).
  returned: always
  type: dict
"""

import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible_collections.servelab.vllm.plugins.module_utils.records import (  # noqa: E402
    BlockSummary,
)
from ansible_collections.servelab.vllm.plugins.module_utils.results import (  # noqa: E402
    compare,
    stats,
)
from ansible_collections.servelab.vllm.plugins.module_utils.results.collect import (  # noqa: E402
    RepResult,
    RunResults,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "blocks": {"type": "list", "elements": "dict", "required": True},
            **compare.verdict_argument_spec(),
            "min_repetitions": {"type": "int", "default": 4},
            "repetitions": {"type": "int", "required": True},
            "sequential": {"type": "bool", "default": True},
            "started": {"type": "float", "default": 0},
            "max_minutes": {"type": "float", "default": 0},
            "comparisons": {"type": "int", "default": 0},
        },
        supports_check_mode=True,
    )
    if stats.IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("numpy and scipy"), exception=stats.IMPORT_ERROR)
    p = module.params
    s = compare.Settings(
        confidence=p["confidence"], margin_pct=p["margin_pct"], primary=p["primary_metrics"],
        min_pairs=p["min_repetitions"], max_pairs=p["repetitions"],
    )  # fmt: skip
    try:
        s.plan()
    except ValueError as err:
        module.fail_json(msg=f"stop rule: {err}")
    run = RunResults("running")
    for b in p["blocks"]:
        run.reps.append(
            RepResult(
                b["group"],
                b["host"],
                b["point"],
                int(b["rep"]),
                BlockSummary.from_json(b["summary"]),
                [],
            )
        )
    go_on, reason = compare.go_on(run, s, p["comparisons"])
    if go_on and not p["sequential"]:
        reason = "sequential verdict off: the whole budget runs"
    elif not go_on and not p["sequential"] and "budget" not in reason:
        go_on, reason = True, "decided, but the sequential verdict is off: the whole budget runs"
    minutes = (time.time() - p["started"]) / 60 if p["started"] else 0.0
    if go_on and p["max_minutes"] and minutes >= p["max_minutes"]:
        go_on, reason = False, f"the time budget of {p['max_minutes']:.3g} min is spent ({reason})"
    # Keyed as the report's comparisons: the point, or "<point> against <first>" for a
    # sweep of one group (compare.compared_points).
    verdicts = {
        title: {m: v.verdict for m, v in words.items()}
        for title, words in compare.run_verdicts(run, s, p["comparisons"]).items()
    }
    module.exit_json(changed=False, go_on=go_on, reason=reason, verdicts=verdicts)


if __name__ == "__main__":
    main()
