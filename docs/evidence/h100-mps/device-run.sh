#!/usr/bin/env bash
# The H100 evidence run, on the lent GPU machine (no index), after the wheels were carried
# to /tmp/carry (see docs/evidence/h100-mps.md). Runs from a copy of the checkout, writes
# everything under /tmp/evidence, and packs it into /tmp/evidence.tar.gz as it goes.
set -euo pipefail
export PATH=/usr/local/nvidia/bin:$PATH LANG=C.UTF-8 LC_ALL=C.UTF-8 PYTHONUNBUFFERED=1
PY=/opt/torch/.venv/bin/python3
WH=/tmp/servelab-wheelhouse
EV=/tmp/evidence
mkdir -p "$EV"
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
pack() { tar -C /tmp -czf /tmp/evidence.tar.gz.tmp evidence && mv /tmp/evidence.tar.gz.tmp /tmp/evidence.tar.gz; }

stamp "assemble the wheelhouse"
mkdir -p "$WH"
for part in /tmp/carry/*.part-00; do cat "${part%.part-00}".part-* > "$WH/$(basename "${part%.part-00}")"; done
cp /tmp/carry/*.whl /tmp/carry/manifest.json /tmp/carry/install.txt "$WH/"
$PY - "$WH" <<'PYEOF'
import hashlib, json, sys
from pathlib import Path
wh = Path(sys.argv[1])
bad = [w["file"] for w in json.loads((wh / "manifest.json").read_text())["wheels"]
       if hashlib.sha256((wh / w["file"]).read_bytes()).hexdigest() != w["sha256"]]
sys.exit(f"sha256 mismatch: {bad}" if bad else 0)
PYEOF
stamp "controller: ansible-core and kconfiglib from wheels, the image's Python"
$PY -m pip install -q --no-index --no-deps --target /tmp/ctl /tmp/carry/ctl/*.whl
export PYTHONPATH=/tmp/ctl PATH=/tmp/ctl/bin:$PATH

rm -rf /tmp/servelab-repo && mkdir /tmp/servelab-repo
tar -C "$PWD" --exclude=./.carry -cf - . | tar -C /tmp/servelab-repo -xf - && cd /tmp/servelab-repo
CFG="$PY kconfig/scripts/servelab_config.py"
PLAY="ansible-playbook -i inventories/generated/hosts.yml -e @extra_vars.yaml"
export ANSIBLE_CONFIG=$PWD/ansible.cfg
setcfg() { printf '%s\n' "$@" >> .config; $CFG olddefconfig; $CFG generate; }
save() {  # $1: label; keeps the report and raw results of the latest run
  $PLAY playbooks/results.yml || true
  run=$(ls -t results | grep -v '^latest' | head -1)
  mkdir -p "$EV/$1" && cp -a "results/$run" "$EV/$1/" && cp .config "$EV/$1/config"
  pack
}
{ nvidia-smi; $PY -c 'import torch; print(torch.__version__, torch.version.cuda)'; } > "$EV/machine.txt" 2>&1 || true

stamp "run 1: baseline MPS 100 vs dev MPS 50, ShareGPT at a fixed 4 req/s"
$CFG defconfig vllm-h100-mps-offline && $CFG generate
time $PLAY playbooks/vllm.yml
save 1-fixed-rate

stamp "run 2: baseline MPS 100 vs dev MPS 50, a concurrency sweep (128 requests a point)"
$PLAY playbooks/teardown.yml
$CFG defconfig vllm-h100-mps-offline
setcfg CONFIG_VLLM_BENCHMARK_SWEEP_CONCURRENCY=y 'CONFIG_VLLM_BENCHMARK_SWEEP_CONCURRENCY_LIST="16 64 256"' \
  'CONFIG_VLLM_BENCHMARK_REQUEST_RATE="inf"' CONFIG_VLLM_BENCHMARK_NUM_PROMPTS=128
time $PLAY playbooks/vllm.yml
save 2-concurrency

stamp "run 3: one group, MPS 100/50/20 as a sweep, 64 requests in flight"
$PLAY playbooks/teardown.yml
setcfg '# CONFIG_VLLM_BASELINE_AND_DEV is not set' CONFIG_VLLM_BENCHMARK_SWEEP_KNOB=y \
  'CONFIG_VLLM_BENCHMARK_SWEEP_KNOB_NAME="vllm_mps_active_thread_percentage"' \
  'CONFIG_VLLM_BENCHMARK_SWEEP_KNOB_VALUES_LIST="100 50 20"' CONFIG_VLLM_BENCHMARK_CONCURRENT_USERS=64
time $PLAY playbooks/vllm.yml
save 3-mps-sweep
$PLAY playbooks/teardown.yml || true
stamp "done"
