# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus /metrics of engines and router: parse, snapshot, and summarize deltas."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from .. import readiness
from ..atomic import write_atomic

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


LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def kv_cache(text: str) -> dict | None:
    """The engine's KV cache capacity, from the labels of vllm:cache_config_info: blocks,
    tokens a block, tokens (vLLM's kv_cache_size_tokens where it says, else their
    product) and bytes where it says. None where the engine exposes no such line. Two
    engines of an A/B should hold the same: on a shared GPU, engines that profile memory
    at once can end with very different caches."""
    line = next((x for x in text.splitlines() if x.startswith("vllm:cache_config_info{")), "")
    labels = dict(LABEL.findall(line[line.find("{") : line.rfind("}")]))
    number = {k: int(v) for k, v in labels.items() if v.isdigit()}
    blocks, size = number.get("num_gpu_blocks"), number.get("block_size")
    if blocks is None:
        return None
    return {
        "blocks": blocks,
        "block_size": size,
        "tokens": number.get("kv_cache_size_tokens") or (blocks * size if size else None),
        "bytes": number.get("kv_cache_memory_bytes"),
    }


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


class Sampler:
    """Snapshots of each /metrics URL before, during (every interval) and after the run."""

    def __init__(self, urls: dict[str, str], interval: float, out_dir: Path) -> None:
        self.urls, self.interval, self.out_dir = urls, interval, out_dir
        self.before: dict[str, dict] = {}
        self.after: dict[str, dict] = {}
        self.samples: dict[str, list[dict]] = {name: [] for name in urls}
        self.raw: dict[str, list[str]] = {name: [] for name in urls}
        self.kv_cache: dict[str, dict] = {}

    def snapshot(self) -> dict[str, dict]:
        out = {}
        for name, url in self.urls.items():
            status, body = readiness.probe(url, timeout=5, headers={})
            if status == 200:
                text = body.decode(errors="replace")
                out[name] = parse(text)
                if name not in self.kv_cache and (cache := kv_cache(text)):
                    self.kv_cache[name] = cache
                self.raw[name].append(f"# servelab snapshot {time.time():.3f}\n{text}")
        return out

    async def snapshot_async(self) -> dict[str, dict]:
        return await asyncio.get_running_loop().run_in_executor(None, self.snapshot)

    async def sample_until(self, done: asyncio.Event) -> None:
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), timeout=self.interval)
            except TimeoutError:
                for name, values in (await self.snapshot_async()).items():
                    self.samples[name].append(values)

    def deltas(self) -> dict[str, dict]:
        out = {}
        for name in self.urls:
            if name in self.before and name in self.after:
                before, after, samples = self.before[name], self.after[name], self.samples[name]
                if name.startswith("router"):
                    out[name] = {
                        k: after[k] - before.get(k, 0.0) for k in after if k.endswith("_total")
                    }
                else:
                    out[name] = engine_deltas(before, after, samples)
                    out[name]["kv_cache"] = self.kv_cache.get(name)
        return out

    def save(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, chunks in self.raw.items():
            write_atomic(self.out_dir / f"{name}.prom", "\n".join(chunks))
