#!/usr/bin/env bash
# Issue #29 on the lent H200, two studies in turn after the wheels were carried to
# /tmp/carry: (1) deliverable 3, the rate sweep 2-32 req/s at 100% and 20% of the SMs
#   make defconfig-vllm-h200-mps-rates && make bringup && make vllm && make vllm-results
# and (2) the ShareGPT table's missing shares, dev at 40 and 80 beside 100%:
#   make defconfig-vllm-h200-mps-sharegpt (values edited to "40 80") ... vllm-results
# on the same engines (baseline's stays up), from a fresh copy of the checkout, each
# stage timed (stages.txt). MAX_MINUTES is cut to
# what the deadline leaves before make vllm starts; make vllm gets SIGINT (as Ctrl-C)
# when less than 60 s remain, so the report is always made. Everything lands under
# /tmp/evidence, packed into /tmp/evidence.tgz as it goes; /tmp/job.done marks the end.
set -uo pipefail
export PATH=/usr/local/nvidia/bin:$PATH LANG=C.UTF-8 LC_ALL=C.UTF-8 PYTHONUNBUFFERED=1
PY=/opt/torch/.venv/bin/python3
WH=/tmp/servelab-wheelhouse
EV=/tmp/evidence
DEADLINE=${DEADLINE:?epoch seconds by which the evidence must be packed}
mkdir -p "$EV"
T00=$(date +%s)
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
pack() { tar -C /tmp -czf /tmp/evidence.tgz.tmp evidence && mv /tmp/evidence.tgz.tmp /tmp/evidence.tgz; }
left() { echo $((DEADLINE - $(date +%s))); }
secs() { local d=$(( ($(date +%s%N) - $1) / 100000000 )); echo "$((d / 10)).$((d % 10))"; }
fin() { stamp "end, $(left) s left, $(( $(date +%s) - T00 )) s since the script started" | tee -a "$EV/stages.txt"; pack; touch /tmp/job.done; exit "${1:-0}"; }
stage() {
  local name=$1 t0 rc
  shift
  stamp "$name: $*"
  t0=$(date +%s%N)
  "$@" > "$EV/$name.log" 2>&1
  rc=$?
  printf '%-14s rc=%-3s %6s s  %s\n' "$name" "$rc" "$(secs "$t0")" "$*" | tee -a "$EV/stages.txt"
  pack
  return $rc
}
echo "script start $(date -u +%FT%TZ), deadline in $(left) s" | tee "$EV/stages.txt"

t0=$(date +%s%N)
mkdir -p "$WH"
for part in /tmp/carry/*.part-00; do cat "${part%.part-00}".part-* > "$WH/$(basename "${part%.part-00}")"; done
find /tmp/carry -maxdepth 1 -type f ! -name '*.part-*' -exec cp {} "$WH/" \;
$PY - "$WH" <<'PYEOF' > "$EV/wheelhouse.log" 2>&1 || { cat "$EV/wheelhouse.log"; fin 1; }
import hashlib, json, sys
from pathlib import Path
wh = Path(sys.argv[1])
ws = json.loads((wh / "manifest.json").read_text())["wheels"]
bad = [w["file"] for w in ws
       if not (wh / w["file"]).exists() or hashlib.sha256((wh / w["file"]).read_bytes()).hexdigest() != w["sha256"]]
print(len(ws), "wheels checked")
sys.exit(f"sha256 mismatch or missing: {bad}" if bad else 0)
PYEOF
printf '%-14s rc=%-3s %6s s  %s\n' wheelhouse 0 "$(secs "$t0")" "assemble, sha256 of every wheel" | tee -a "$EV/stages.txt"

{ nvidia-smi; nvidia-smi -q | grep -i -E 'product name|driver version|cuda version|mig mode';
  $PY -c 'import torch, sys; print(sys.version); print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))';
  nproc; free -g; } > "$EV/machine.txt" 2>&1

rm -rf /tmp/servelab-repo && mkdir /tmp/servelab-repo
tar -C "$PWD" --exclude=./.carry -cf - . | tar -C /tmp/servelab-repo -xf - && cd /tmp/servelab-repo || fin 1
rm -rf .venv .config extra_vars.yaml inventories/generated results
git log -1 --format='%H %s' > "$EV/commit.txt" 2>&1 || true

venv() {
  $PY -m venv .venv &&
    echo /opt/torch/.venv/lib/python3.12/site-packages > .venv/lib/python3.12/site-packages/image-site.pth &&
    .venv/bin/python -m pip install -q --no-index --no-deps /tmp/carry/ctl/*.whl &&
    touch .venv/.installed
}
if ! command -v make > /dev/null; then
  echo "no make on this image: /tmp/shim/make stands in" | tee -a "$EV/stages.txt"
  mkdir -p /tmp/shim && export PATH=/tmp/shim:$PATH
  cat > /tmp/shim/make <<'SHIM'
#!/usr/bin/env bash
C=".venv/bin/python kconfig/scripts/servelab_config.py"
P=".venv/bin/ansible-playbook -i inventories/generated/hosts.yml -e @extra_vars.yaml"
export ANSIBLE_CONFIG=$PWD/ansible.cfg
case $1 in
  defconfig-*) $C defconfig "${1#defconfig-}" && $C generate ;;
  olddefconfig) $C olddefconfig && $C generate ;;
  bringup) $P playbooks/bringup.yml ;;
  vllm) $P playbooks/vllm.yml ;;
  vllm-results) $P playbooks/results.yml -e servelab_fail_on_regression=0 -e servelab_fail_on_undecided=0 ;;
  *) echo "shim: $1 unknown" >&2; exit 2 ;;
esac
SHIM
  chmod +x /tmp/shim/make
fi
stage venv venv || fin 1

# One study: defconfig, bringup, its .config edits, MAX_MINUTES from what `reserve`
# seconds (installs, engine starts, redeploys, report) leave before its own deadline,
# make vllm (SIGINT 60 s before that deadline), make vllm-results, the run copied.
study() {
  local name=$1 defconfig=$2 until=$3 reserve=$4 edit=$5 m
  mkdir -p "$EV/$name"
  stage "$name-defconfig" make "defconfig-$defconfig" || return 1
  stage "$name-bringup" make bringup || return 1
  [ -n "$edit" ] && sed -i "$edit" .config
  m=$(( (until - $(date +%s) - reserve) / 60 )); [ $m -lt 3 ] && m=3; [ $m -gt 16 ] && m=16
  sed -i "s/^CONFIG_VLLM_BENCHMARK_MAX_MINUTES=.*/CONFIG_VLLM_BENCHMARK_MAX_MINUTES=$m/" .config
  stage "$name-olddefconfig" make olddefconfig
  cp .config "$EV/$name/config"
  echo "$name: VLLM_BENCHMARK_MAX_MINUTES=$m ($((until - $(date +%s))) s to its deadline)" | tee -a "$EV/stages.txt"
  stamp "$name: make vllm"
  local t0 stopped="" n=0 rc
  t0=$(date +%s%N)
  setsid make vllm > "$EV/$name/vllm.log" 2>&1 &
  local MAKE=$!
  while kill -0 $MAKE 2>/dev/null; do
    if [ $((until - $(date +%s))) -lt 60 ] && [ -z "$stopped" ]; then
      stamp "$name out of time: SIGINT to make vllm"; stopped=yes
      kill -INT -- -$MAKE 2>/dev/null; ( sleep 20; kill -TERM -- -$MAKE 2>/dev/null ) &
    fi
    sleep 3; n=$((n + 1)); [ $((n % 10)) -eq 0 ] && pack
  done
  wait $MAKE; rc=$?
  printf '%-14s rc=%-3s %6s s  %s%s\n' "$name-vllm" "$rc" "$(secs "$t0")" "make vllm" \
    "${stopped:+ (stopped at the deadline)}" | tee -a "$EV/stages.txt"
  pack
  stage "$name-results" make vllm-results
  local run
  run=$(ls -t results 2>/dev/null | grep -v '^latest' | head -1)
  [ -n "$run" ] && cp -a "results/$run" "$EV/$name/run"
  pack
}

( while :; do
    pipe=$(ls -d ~/.local/share/servelab/mps/pipe 2>/dev/null)
    echo "--- $(date -u +%H:%M:%S)"
    nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader 2>&1
    if [ -n "$pipe" ] && [ -e "$pipe/control" ]; then
      for s in $(echo get_server_list | CUDA_MPS_PIPE_DIRECTORY=$pipe timeout 5 nvidia-cuda-mps-control); do
        echo "server $s clients: $(echo "get_client_list $s" | CUDA_MPS_PIPE_DIRECTORY=$pipe timeout 5 nvidia-cuda-mps-control | tr '\n' ' ')"
      done
    fi
    sleep 5
  done > "$EV/mps-samples.log" 2>&1 ) &
SAMPLER=$!

# Rates: 40 blocks took ~7 min in session 17's 32; installs and two engine starts ~330 s.
# It gets the time to RATES_END (at most 16 min of blocks); ShareGPT gets the rest.
RATES_END=${RATES_END:-$(( $(date +%s) + 900 ))}
[ "$RATES_END" -gt "$DEADLINE" ] && RATES_END=$DEADLINE
study rates vllm-h200-mps-rates "$RATES_END" 390 ""
# ShareGPT at 40 and 80: dev redeployed twice (~75 s each), the report, one round a share.
if [ "$(left)" -gt 400 ]; then
  study sharegpt vllm-h200-mps-sharegpt "$DEADLINE" 330 \
    's/^CONFIG_VLLM_BENCHMARK_SWEEP_KNOB_VALUES_LIST=.*/CONFIG_VLLM_BENCHMARK_SWEEP_KNOB_VALUES_LIST="40 80"/'
else
  echo "sharegpt: skipped, $(left) s left" | tee -a "$EV/stages.txt"
fi
mkdir -p "$EV/stack-logs"
find ~/.local/share/servelab/stacks -name '*.log' -exec cp --parents {} "$EV/stack-logs/" \; 2>/dev/null
nvidia-smi > "$EV/nvidia-smi-end.txt" 2>&1
kill $SAMPLER 2>/dev/null
fin 0
