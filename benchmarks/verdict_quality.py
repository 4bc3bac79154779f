#!/usr/bin/env python3
"""How trustworthy a run's verdict is: per-repetition spread, MDE, load and warm-up.

Reads results/<run>/report/compare.json and the run's summaries (run `make vllm-results`
first) and prints, against the targets of the embedded default:
  - per group, the coefficient of variation (CV) of the per-repetition median TPOT and
    TTFT (target: TPOT CV under 5%);
  - per primary metric, the MDE at the run's repetitions and where it came from
    (target: median TPOT MDE at most 5%), and the repetitions a 5% MDE would need;
  - offered vs achieved rate and warm-up per block.
Usage: benchmarks/verdict_quality.py [RESULTS_DIR] [RUN_ID]   (default: results, newest)
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collections"))
from ansible_collections.servelab.vllm.plugins.module_utils import layout


def main(argv: list[str]) -> int:
    results = Path(argv[1] if len(argv) > 1 else "results")
    runs = sorted(
        p for p in results.iterdir() if (p / layout.REPORT / layout.COMPARE_JSON).is_file()
    )
    if not runs:
        print(f"no reported run under {results}: run make vllm-results first", file=sys.stderr)
        return 2
    run = results / argv[2] if len(argv) > 2 else runs[-1]
    doc = json.loads((run / layout.REPORT / layout.COMPARE_JSON).read_text())
    print(f"run {run.name} ({doc.get('run_kind')})")
    for point, rows in doc["comparisons"].items():
        by = {r["metric"]: r for r in rows}
        for metric in ("median_tpot_ms", "median_ttft_ms"):
            r = by[metric]
            for group, values in (("baseline", r["baseline_reps"]), ("dev", r["dev_reps"])):
                cv = statistics.stdev(values) / statistics.fmean(values) if len(values) > 1 else 0
                print(f"  {point} {group:8} {metric:15} reps {[round(v, 1) for v in values]}"
                      f" CV {cv:.1%}")  # fmt: skip
        for r in rows:
            if r["primary"]:
                print(
                    f"  {point} {r['metric']:18} {r['verdict']:22} delta "
                    f"{(r['relative'] or 0):+.1%}  MDE {r['mde_pct'] or float('nan'):.1f}% "
                    f"({r['mde_source'] or 'this run'}), reps for 5%: {r['reps_for_5pct']}"
                )
    for summary in sorted(s for host in run.glob("*/*") for s in layout.summaries(host)):
        s = json.loads(summary.read_text())
        w = s.get("warmup", {})
        print(
            f"  block {s.get('order')}: {s['group']} rep {s['repetition']} offered "
            f"{s.get('offered_rate')} achieved {round(s.get('achieved_rate') or 0, 3)} req/s, "
            f"warm-up {w.get('warmup_requests')} req {round(w.get('warmup_seconds', 0), 1)} s"
            f" steady {w.get('warmup_steady')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
