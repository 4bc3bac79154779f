#!/usr/bin/env bash
# The MPS study (issue #16) on the lent GPU machine (no index), after the wheels were
# carried to /tmp/carry (docs/evidence/h100-mps.md says how). Runs from a copy of the
# checkout, writes everything under /tmp/evidence, packed into /tmp/evidence.tar.gz as
# it goes: A/B 100 vs 20, A/B 100 vs 50, A/A 100 vs 100 (prefill-heavy), then the A/B
# 100 vs 20 on a decode-heavy workload while time is left.
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
find /tmp/carry -maxdepth 1 -name '*.whl' -exec cp {} "$WH/" \;
cp /tmp/carry/manifest.json /tmp/carry/install.txt "$WH/"
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
tar -C "$PWD" --exclude=./.carry --exclude=./.whl -cf - . | tar -C /tmp/servelab-repo -xf - && cd /tmp/servelab-repo
CFG="$PY kconfig/scripts/servelab_config.py"
PLAY="ansible-playbook -i inventories/generated/hosts.yml -e @extra_vars.yaml"
export ANSIBLE_CONFIG=$PWD/ansible.cfg
setcfg() { printf '%s\n' "$@" >> .config; $CFG olddefconfig; $CFG generate; }
save() {  # $1: label; keeps the report and raw results of the latest run
  $PLAY playbooks/results.yml || true
  run=$(ls -t results | grep -v '^latest' | head -1)
  mkdir -p "$EV/$1" && cp -a "results/$run" "$EV/$1/" && cp .config "$EV/$1/config"
  nvidia-smi > "$EV/$1/nvidia-smi.txt" 2>&1 || true
  pack
}
{ nvidia-smi; $PY -c 'import torch; print(torch.__version__, torch.version.cuda)'; } > "$EV/machine.txt" 2>&1 || true

stamp "A/B: baseline MPS 100 vs dev MPS 20, prefill-heavy (2048 in, 16 out) at 2 req/s"
$CFG defconfig vllm-h100-mps-8b-study && $CFG generate
time $PLAY playbooks/vllm.yml
save ab-100-20-prefill

stamp "A/B: baseline MPS 100 vs dev MPS 50 (dev's engine restarts alone)"
setcfg 'CONFIG_VLLM_DEV_OVERRIDES="vllm_mps_active_thread_percentage=50"'
time $PLAY playbooks/vllm.yml
save ab-100-50-prefill

stamp "A/A: baseline MPS 100 vs dev MPS 100"
setcfg 'CONFIG_VLLM_DEV_OVERRIDES=""'
time $PLAY playbooks/vllm.yml
save aa-100-100-prefill

stamp "A/B: baseline MPS 100 vs dev MPS 20, decode-heavy (128 in, 256 out) at 2 req/s"
setcfg 'CONFIG_VLLM_DEV_OVERRIDES="vllm_mps_active_thread_percentage=20"' \
  CONFIG_VLLM_BENCHMARK_INPUT_LEN=128 CONFIG_VLLM_BENCHMARK_OUTPUT_LEN=256
time $PLAY playbooks/vllm.yml
save ab-100-20-decode
$PLAY playbooks/teardown.yml || true
stamp "done"
