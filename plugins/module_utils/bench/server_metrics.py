# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus /metrics of engines and router: parse, snapshot, and summarize deltas."""

from __future__ import annotations

import re

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN|[-+]?Inf)\b")


def parse(text: str) -> dict[str, float]:
    """Sum of each metric's samples over its labels (one engine serves one model)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        if match:
            name, value = match.group(1), float(match.group(3))
            out[name] = out.get(name, 0.0) + value
    return out


def _delta(before: dict, after: dict, name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def engine_deltas(before: dict, after: dict, samples: list[dict]) -> dict:
    """What the engine saw during the run: prefix cache, preemptions, KV usage, queueing."""
    queries = _delta(before, after, "vllm:prefix_cache_queries_total")
    hits = _delta(before, after, "vllm:prefix_cache_hits_total")
    snapshots = [*samples, after]
    return {
        "prefix_cache_queries": queries,
        "prefix_cache_hits": hits,
        "prefix_cache_hit_rate": hits / queries if queries else None,
        "preemptions": _delta(before, after, "vllm:num_preemptions_total"),
        "peak_kv_cache_usage_perc": max(
            (s.get("vllm:kv_cache_usage_perc", 0.0) for s in snapshots), default=0.0
        ),
        "peak_requests_waiting": max(
            (s.get("vllm:num_requests_waiting", 0.0) for s in snapshots), default=0.0
        ),
        "peak_requests_running": max(
            (s.get("vllm:num_requests_running", 0.0) for s in snapshots), default=0.0
        ),
        "queue_time_seconds_sum": _delta(before, after, "vllm:request_queue_time_seconds_sum"),
        "requests_finished": _delta(before, after, "vllm:request_success_total"),
        "generation_tokens": _delta(before, after, "vllm:generation_tokens_total"),
        "prompt_tokens": _delta(before, after, "vllm:prompt_tokens_total"),
    }
