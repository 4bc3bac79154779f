# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that order a run's benchmark blocks."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.servelab.vllm.plugins.module_utils.bench import plan


def bench_schedule(
    groups: list, sweep: str, values: list, repetitions, redeploy_every=0
) -> list[dict]:
    """Blocks of (group, point, repetition) in ABBA order; see plan.schedule."""
    try:
        points = plan.points(sweep if sweep in plan.SWEEPS else "none", list(values or []))
        return plan.schedule(list(groups), points, int(repetitions), int(redeploy_every))
    except ValueError as err:
        raise AnsibleFilterError(f"bench_schedule: {err}") from err


def bench_blocks_by_host(blocks: list, arms: list) -> list[dict]:
    """Each group's block once per host of that group, hosts in inventory order."""
    out = []
    for block in blocks:
        for arm in arms:
            if arm["group"] == block["group"]:
                out.append({**block, "host": arm["host"]})
    return out


def bench_knob_schedule(values: list, repetitions) -> list[dict]:
    """Blocks of a configuration sweep in ABBA order over the values; see plan.knob_schedule."""
    try:
        return plan.knob_schedule(list(values or []), int(repetitions))
    except ValueError as err:
        raise AnsibleFilterError(f"bench_knob_schedule: {err}") from err


def bench_rearm(arms: list, stacks: list) -> list[dict]:
    """See plan.rearm."""
    return plan.rearm(list(arms), list(stacks))


def bench_warmed_by_probe(blocks: list, host: str) -> list[dict]:
    """See plan.warmed_by_probe."""
    return plan.warmed_by_probe(list(blocks), host)


class FilterModule:
    """servelab.vllm benchmark filters."""

    def filters(self):
        return {
            "bench_schedule": bench_schedule,
            "bench_blocks_by_host": bench_blocks_by_host,
            "bench_rearm": bench_rearm,
            "bench_warmed_by_probe": bench_warmed_by_probe,
            "bench_knob_schedule": bench_knob_schedule,
        }
