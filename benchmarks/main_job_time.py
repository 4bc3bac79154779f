#!/usr/bin/env python3
"""Time the README's main job on a clean clone, stage by stage, and where the time goes.

  benchmarks/main_job_time.py [--cold] [--rerun] [--dir DIR]

Clones this checkout's HEAD into DIR (default: a new temporary directory), then runs
`make defconfig-vllm`, `make bringup`, `make vllm`, `make vllm-results` there, each line
of output time-stamped, and prints:
  - each make stage's seconds, and the total against the 12-minute target;
  - within the stages, the seconds of each role's tasks (from the playbooks' TASK lines)
    and of the venv's pip install;
  - the verdict line of `make vllm-results`.
--cold moves the pip cache and ~/.cache/servelab aside for the run (as a fresh machine
has neither) and puts them back afterwards, whatever happens; the caches the run built
are kept beside them as *.cold-run, for a look, and removed on the next --cold run.
--rerun then times `make vllm && make vllm-results` again in the same clone (the warm
re-run, target 2.5 minutes). The stacks are torn down at the end (untimed). Nothing
else may run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
HOME = Path.home()
CACHES = [HOME / ".cache/servelab", HOME / ".cache/pip"]
STAGES = ["defconfig-vllm", "bringup", "vllm", "vllm-results"]
TASK = re.compile(r"^TASK \[(?:([\w.]+) : )?(.*?)\] \*+$")


@contextmanager
def caches_aside(cold: bool):
    if not cold:
        yield
        return
    moved = []
    try:
        for cache in CACHES:
            shutil.rmtree(cache.with_name(cache.name + ".cold-run"), ignore_errors=True)
            if cache.exists():
                aside = cache.with_name(cache.name + ".warm")
                if aside.exists():
                    sys.exit(f"error: {aside} exists (an interrupted --cold run?): restore it")
                cache.rename(aside)
                moved.append((aside, cache))
        yield
    finally:
        for aside, cache in moved:
            if cache.exists():
                cache.rename(cache.with_name(cache.name + ".cold-run"))
            aside.rename(cache)


def run_stage(target: str, cwd: Path, log) -> tuple[float, dict[str, float], list[str]]:
    """Seconds of `make target`, seconds per role (or play task), and its output lines."""
    start = time.monotonic()
    proc = subprocess.Popen(
        ["make", target], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
    )  # fmt: skip
    parts: dict[str, float] = defaultdict(float)
    lines, current, since = [], "make (before the playbook)", start
    for line in proc.stdout:
        now = time.monotonic()
        log.write(f"{now - start:8.1f} {line}")
        lines.append(line.rstrip("\n"))
        m = TASK.match(line.strip())
        if m:
            parts[current] += now - since
            current, since = (m.group(1) or f"play: {m.group(2)}"), now
    parts[current] += time.monotonic() - since
    if proc.wait():
        sys.exit(f"error: make {target} failed (rc {proc.returncode}); see {log.name}")
    return time.monotonic() - start, dict(parts), lines


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cold", action="store_true")
    p.add_argument("--rerun", action="store_true")
    p.add_argument("--dir", type=Path)
    args = p.parse_args(argv[1:])
    work = args.dir or Path(tempfile.mkdtemp(prefix="main-job-"))
    subprocess.run(["git", "clone", "--quiet", str(TOP), str(work)], check=True)
    total = 0.0
    with caches_aside(args.cold), (work / "timing.log").open("w") as log:
        rows = []
        for target in STAGES:
            seconds, parts, lines = run_stage(target, work, log)
            total += seconds
            rows.append((target, seconds, parts, lines))
        rerun = []
        if args.rerun:
            rerun = [(t, *run_stage(t, work, log)) for t in ("vllm", "vllm-results")]
        # Untimed; inside, since the engines run from the cache's venvs.
        subprocess.run(["make", "vllm-teardown"], cwd=work, stdout=log, stderr=log, check=False)
    print(f"main job on a clean clone ({'cold' if args.cold else 'warm'} caches), {work}:")
    for target, seconds, parts, _ in rows:
        print(f"  make {target:15s} {seconds:7.1f} s")
        for name, part in sorted(parts.items(), key=lambda kv: -kv[1])[:6]:
            if part >= 5:
                print(f"      {part:7.1f} s  {name}")
    print(f"  total {total / 60:.1f} min (target 12)")
    verdict = [line for line in rows[-1][3] if "BETTER" in line or "WORSE" in line
               or "SAME" in line or "UNDECIDED" in line]  # fmt: skip
    print("  verdict: " + (verdict[0].strip() if verdict else "(none printed)"))
    if rerun:
        seconds = sum(r[1] for r in rerun)
        print(f"  warm re-run (make vllm && make vllm-results): {seconds / 60:.1f} min "
              f"(target 2.5): " + ", ".join(f"{t} {r[0]:.0f} s" for t, *r in rerun))  # fmt: skip
        for name, part in sorted(rerun[0][2].items(), key=lambda kv: -kv[1])[:4]:
            print(f"      {part:7.1f} s  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
