#!/usr/bin/env python3
"""The verdict on the real stack: how often each kind of run ends in each word.

Deploys the embedded default (`kconfig/defconfigs/vllm`) on private ports and a private
work directory (as the integration tests do), then runs `benchmark.yml` and
`results.yml` RUNS times per scenario and prints every run's words, blocks and minutes,
then the rates the targets of docs/results.md name:
  aa        dev with baseline's settings: never BETTER or WORSE; SAME as often as the noise allows
  stretch   aa behind benchmarks/delay_proxy.py (dev 1.1x, baseline 1.0x), margin 2%:
            median TPOT WORSE
  maxseqs   dev with --max-num-seqs 1: median TTFT WORSE within 4 blocks a group
  default   the defconfig's own dev (prefix caching on): BETTER on median TTFT
Usage: benchmarks/verdict_power.py [--runs 6] [--scenarios aa,stretch,maxseqs,default]
       [--set CONFIG_LINE ...]   (extra .config lines for every scenario, e.g. a margin)
Nothing else may run on the machine meanwhile: every block is timed.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP / "tests"))
from helpers.stack import Stack  # noqa: E402

PORTS = [
    "CONFIG_VLLM_ENGINE_BASE_PORT=28100",
    "CONFIG_VLLM_ROUTER_PORT=28000",
    "CONFIG_VLLM_ROUTER_METRICS_PORT=48000",
]
SCENARIOS = {
    "aa": ['CONFIG_VLLM_DEV_OVERRIDES=""', "CONFIG_VLLM_ENABLE_PREFIX_CACHING=y"],
    # WORSE means beyond the margin, so a known +10% is judged against a margin below it
    "stretch": [
        'CONFIG_VLLM_DEV_OVERRIDES=""',
        "CONFIG_VLLM_ENABLE_PREFIX_CACHING=y",
        'CONFIG_VLLM_RESULTS_MARGIN_PCT="2"',
    ],
    "maxseqs": [
        "CONFIG_VLLM_ENABLE_PREFIX_CACHING=y",
        "CONFIG_VLLM_DEV_OVERRIDES=\"vllm_engine_extra_args='--max-num-seqs 1'\"",
    ],
    "default": [],
}
PROXIES = {"baseline": (28555, 28000, "1.0"), "dev": (29555, 29000, "1.1")}


def proxies(stack: Stack) -> list[subprocess.Popen]:
    out = []
    for group, (port, router, stretch) in PROXIES.items():
        stack.host_var(f"{group}-local", "servelab_bench_url", f"http://127.0.0.1:{port}")
        out.append(subprocess.Popen(
            [sys.executable, str(TOP / "benchmarks/delay_proxy.py"), "--upstream",
             f"http://127.0.0.1:{router}", "--port", str(port), "--stretch", stretch],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as a, socket.socket() as b:
            if not a.connect_ex(("127.0.0.1", 28555)) and not b.connect_ex(("127.0.0.1", 29555)):
                break
        time.sleep(0.2)
    return out


def one_run(stack: Stack, run_id: str) -> dict:
    start = time.monotonic()
    stack.playbook("benchmark.yml", "-e", f"servelab_run_id={run_id}")
    minutes = (time.monotonic() - start) / 60
    results = stack.tmp / "controller-results"
    stack.playbook("results.yml", "-e", f"servelab_results_run={run_id}",
                   "-e", f"vllm_results_dir={results}")  # fmt: skip
    doc = json.loads((results / run_id / "report" / "compare.json").read_text())
    rows = {r["metric"]: r for r in doc["comparisons"]["default"] if r["primary"]}
    return {"words": {m: (r["verdict"], r["pairs"], r["change_pct"]) for m, r in rows.items()},
            "minutes": minutes, "headline": doc["verdict"][0]}  # fmt: skip


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=6)
    p.add_argument("--scenarios", default="aa,stretch,maxseqs,default")
    p.add_argument("--set", action="append", default=[], help="an extra .config line")
    args = p.parse_args(argv[1:])
    tmp = Path(tempfile.mkdtemp(prefix="verdict-power-"))
    stack = Stack(tmp, defconfig="vllm", lines=[
        *PORTS, f'CONFIG_VLLM_WORK_DIR="{tmp}/work"',
        f'CONFIG_VLLM_BENCHMARK_RESULTS_DIR="{tmp}/results"', *args.set,
    ])  # fmt: skip
    stack.configure()
    stack.playbook("bringup.yml")
    tally: dict[str, list[dict]] = {}
    try:
        for name in args.scenarios.split(","):
            stack.configure(*SCENARIOS[name])
            stack.playbook("deploy.yml")
            running = proxies(stack) if name == "stretch" else []
            try:
                for i in range(args.runs):
                    got = one_run(stack, f"{name}-{i + 1}")
                    tally.setdefault(name, []).append(got)
                    print(f"{name} {i + 1}: {got['headline']}; "
                          + ", ".join(f"{m} {w} {n} blocks {c:+.1f}%" for m, (w, n, c)
                                      in got["words"].items() if c is not None)
                          + f"; {got['minutes']:.1f} min", flush=True)  # fmt: skip
            finally:
                for proxy in running:
                    proxy.terminate()
                    proxy.wait(timeout=30)
    finally:
        stack.configure()
        stack.playbook("teardown.yml", check=False)
    for name, runs in tally.items():
        tpot = [r["words"]["median_tpot_ms"][0] for r in runs]
        ttft = [r["words"]["median_ttft_ms"] for r in runs]
        words = [w for r in runs for (w, _, _) in r["words"].values()]
        n = len(runs)
        line = f"{name}: {n} runs, {sum(r['minutes'] for r in runs) / n:.1f} min a run; "
        if name == "aa":
            line += (
                f"a false BETTER/WORSE in {sum(w in ('BETTER', 'WORSE') for w in words)} "
                f"words; SAME on every primary in "
                f"{sum(all(w == 'SAME' for w, _, _ in r['words'].values()) for r in runs)}"
            )
        elif name == "stretch":
            line += f"median TPOT WORSE in {tpot.count('WORSE')}"
        elif name == "maxseqs":
            hit = sum(word == "WORSE" and blocks <= 4 for word, blocks, _ in ttft)
            line += f"median TTFT WORSE within 4 blocks in {hit}"
        else:
            line += f"median TTFT BETTER in {sum(word == 'BETTER' for word, _, _ in ttft)}"
        print(line + f" of {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
