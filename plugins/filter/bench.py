# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that order a run's benchmark blocks and give each its options."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.servelab.vllm.plugins.module_utils.bench import plan


def bench_block_order(
    groups: list, sweep: str, values: list, repetitions, redeploy_every=0, crossover=False
) -> list[dict]:
    """Blocks of (group, point, repetition) in ABBA order; see plan.block_order."""
    try:
        points = plan.points(sweep if sweep in plan.SWEEPS else "none", list(values or []))
        return plan.block_order(
            list(groups), points, int(repetitions), int(redeploy_every), bool(crossover)
        )
    except ValueError as err:
        raise AnsibleFilterError(f"bench_block_order: {err}") from err


def bench_blocks_by_host(blocks: list, parts: list) -> list[dict]:
    """Each group's block once per host of that group, hosts in inventory order; after a
    crossover's swap (`crossed`), once per host of the other group, which then runs this
    group's settings."""
    groups = [p["group"] for p in parts]
    out = []
    for block in blocks:
        where = block["group"]
        if block.get("crossed"):
            where = next((g for g in groups if g != block["group"]), where)
        for part in parts:
            if part["group"] == where:
                out.append({**block, "host": part["host"]})
    return out


def bench_crossed_settings(mine, theirs, names) -> dict:
    """See plan.crossed_settings."""
    return plan.crossed_settings(dict(mine), dict(theirs), list(names))


def bench_knob_order(values: list, repetitions, knob="") -> list[dict]:
    """Blocks of a configuration sweep in ABBA order over the values; see plan.knob_order."""
    try:
        return plan.knob_order(list(values or []), int(repetitions), str(knob))
    except ValueError as err:
        raise AnsibleFilterError(f"bench_knob_order: {err}") from err


def bench_dev_sweep_order(values: list, repetitions, knob) -> list[dict]:
    """Blocks of a sweep of dev's setting beside baseline; see plan.dev_sweep_order."""
    try:
        return plan.dev_sweep_order(list(values or []), int(repetitions), str(knob))
    except ValueError as err:
        raise AnsibleFilterError(f"bench_dev_sweep_order: {err}") from err


def bench_restarted(parts: list, stacks: list) -> list[dict]:
    """See plan.restarted."""
    return plan.restarted(list(parts), list(stacks))


def bench_block_options(
    settings, part: dict, block: dict, rate, action="run", load=None, parts=None
) -> dict:
    """The benchmark module's options for one block; see plan.block_options."""
    try:
        return plan.block_options(
            settings, dict(part), dict(block), rate, action, dict(load or {}), list(parts or [])
        )
    except KeyError as err:
        raise AnsibleFilterError(f"bench_block_options: {err} is missing") from err


def bench_frozen_elsewhere(parts: list, part: dict) -> list[dict]:
    """See plan.frozen_elsewhere."""
    return plan.frozen_elsewhere(list(parts or []), dict(part))


def bench_warmed_by_probe(blocks: list, host: str) -> list[dict]:
    """See plan.warmed_by_probe."""
    return plan.warmed_by_probe(list(blocks), host)


class FilterModule:
    """servelab.vllm benchmark filters."""

    def filters(self):
        return {
            "bench_block_order": bench_block_order,
            "bench_blocks_by_host": bench_blocks_by_host,
            "bench_restarted": bench_restarted,
            "bench_block_options": bench_block_options,
            "bench_warmed_by_probe": bench_warmed_by_probe,
            "bench_frozen_elsewhere": bench_frozen_elsewhere,
            "bench_knob_order": bench_knob_order,
            "bench_dev_sweep_order": bench_dev_sweep_order,
            "bench_crossed_settings": bench_crossed_settings,
        }
