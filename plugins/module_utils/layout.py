# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The results contract: where a run's files lie and what they are called.

The benchmark writes by these names and the results stage reads by them; a change of
layout or of the summary's meaning bumps SCHEMA_VERSION, and readers skip other versions.

    <results_dir>/<run_id>/<group>/<host>/<point>/rep-<n>/{summary.json, requests.jsonl,
        progress.log, telemetry.csv, metrics/}
    <results_dir>/<run_id>/<group>/<host>/<point>/rejected/rep-<n>-<attempt>/  (run again)
    <results_dir>/<run_id>/report/{report.md, report.html, summary.csv, compare.json, *.png}
"""

from __future__ import annotations

from pathlib import Path

# 2: the context nested under "context" (records.BlockContext), offered_rate gone
# (spec.request_rate is the rate offered). Readers skip other versions, saying so.
SCHEMA_VERSION = 2
SUMMARY = "summary.json"  # written last: its presence says the repetition is complete
REQUESTS = "requests.jsonl"  # one RequestOutcome record a line
PROGRESS = "progress.log"
TELEMETRY = "telemetry.csv"
METRICS = "metrics"
REP_PREFIX = "rep-"
# A block run again (its host was loaded, its client the bottleneck) keeps its first
# attempt under <point>/rejected/rep-<n>-<attempt>/, out of the comparison.
REJECTED = "rejected"
# The metrics the results compare, one value a block, by the summary's names: the
# benchmark returns them to the stopping rule, which reads them as the report does.
LATENCY_METRICS = tuple(
    f"{stat}_{name}_ms" for name in ("ttft", "tpot", "itl", "e2el") for stat in ("median", "p99")
)
THROUGHPUT_METRICS = (
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "request_goodput",
)
COMPARED = LATENCY_METRICS + THROUGHPUT_METRICS
# Settings that differ between the groups by construction or by host (where a host's
# servers listen: CONFIG_VLLM_DECLARED_HOSTS_BIND_ADDRESS_LIST), not by the user's choice:
# left out of the report's differences and never carried across a crossover's swap.
PER_GROUP_BY_CONSTRUCTION = frozenset({
    "servelab_group",
    "vllm_engine_base_port",
    "vllm_router_port",
    "vllm_router_metrics_port",
    "vllm_engine_bind_address",
    "vllm_router_bind_address",
})  # fmt: skip
# The results stage's output, derived from the above and rewritten each time.
REPORT = "report"  # <results_dir>/<run_id>/report/, beside the groups' directories
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
SUMMARY_CSV = "summary.csv"
COMPARE_JSON = "compare.json"
# make vllm-history's page, beside the runs (<results_dir>/history/): never a run itself.
HISTORY_DIR = "history"


def rep_dir(point_dir: Path, rep: int) -> Path:
    return point_dir / f"{REP_PREFIX}{rep}"


def rep_number(path: Path) -> int:
    """The repetition a rep-<n> directory holds (0 for a run outside a plan); ValueError
    for a name that is not rep-<n>."""
    return int(path.name.removeprefix(REP_PREFIX) or 0)


def summaries(host_dir: Path) -> list[Path]:
    """Every repetition's summary under a host's results, in name order."""
    return sorted(host_dir.glob(f"*/{REP_PREFIX}*/{SUMMARY}"))
