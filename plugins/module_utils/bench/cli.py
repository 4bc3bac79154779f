# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""servelab-bench: the benchmark on its own, against any OpenAI-compatible URL."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import spec as run_spec
from .runner import BenchError, run, stop_on_sigterm


def parser() -> argparse.ArgumentParser:
    """The flags: one per RunSpec field (spec.add_arguments), and where the results go."""
    p = argparse.ArgumentParser(prog="servelab-bench", description=__doc__)
    run_spec.add_arguments(p)
    p.add_argument("--out", required=True, type=Path, help="directory for the results")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        spec = run_spec.from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
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
