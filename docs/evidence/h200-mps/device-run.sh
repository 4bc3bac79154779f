#!/usr/bin/env bash
# The seeds' MPS table on the lent H200 (issue #29), as a GPU user would run it from a
# fresh checkout on a machine with no index, after the wheels were carried to /tmp/carry
# (docs/evidence/h200-mps/README.md, "Commands", says how): a .venv for make from the carried
# controller wheels, then
#   make defconfig-vllm-h200-mps-table && make bringup && make vllm && make vllm-results
# each stage timed (stages.txt), the GPU preflight's checks (preflight.txt), the MPS
# daemon's servers and clients and every process's GPU memory sampled every 5 s
# (mps-samples.log). The sweep is stopped (SIGINT, as Ctrl-C) when the device budget
# would not leave time for the report: DEADLINE (epoch seconds) is when everything must
# be packed. Everything lands under /tmp/evidence, packed into /tmp/evidence.tgz as it
# goes; /tmp/job.done marks the end.
set -uo pipefail
export PATH=/usr/local/nvidia/bin:$PATH LANG=C.UTF-8 LC_ALL=C.UTF-8 PYTHONUNBUFFERED=1
PY=/opt/torch/.venv/bin/python3
WH=/tmp/servelab-wheelhouse
EV=/tmp/evidence
DEADLINE=${DEADLINE:?epoch seconds by which the evidence must be packed}
mkdir -p "$EV"
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
pack() {
  tar -C /tmp -czf /tmp/evidence.tgz.tmp evidence && mv /tmp/evidence.tgz.tmp /tmp/evidence.tgz
}
left() { echo $((DEADLINE - $(date +%s))); }
secs() { local d=$(( ($(date +%s%N) - $1) / 100000000 )); echo "$((d / 10)).$((d % 10))"; }  # since $1 (ns)
# stage NAME CMD...: run, time, log; the stage's line in stages.txt
stage() {
  local name=$1 t0 rc
  shift
  stamp "$name: $*"
  t0=$(date +%s%N)
  "$@" > "$EV/$name.log" 2>&1
  rc=$?
  printf '%-22s rc=%-3s %6s s  %s\n' "$name" "$rc" "$(secs "$t0")" "$*" | tee -a "$EV/stages.txt"
  pack
  return $rc
}

stamp "assemble the wheelhouse"
mkdir -p "$WH"
for part in /tmp/carry/*.part-00; do cat "${part%.part-00}".part-* > "$WH/$(basename "${part%.part-00}")"; done
find /tmp/carry -maxdepth 1 -type f ! -name '*.part-*' -exec cp {} "$WH/" \;
$PY - "$WH" <<'PYEOF' || { touch /tmp/job.done; exit 1; }
import hashlib, json, sys
from pathlib import Path
wh = Path(sys.argv[1])
bad = [w["file"] for w in json.loads((wh / "manifest.json").read_text())["wheels"]
       if hashlib.sha256((wh / w["file"]).read_bytes()).hexdigest() != w["sha256"]]
sys.exit(f"sha256 mismatch: {bad}" if bad else 0)
PYEOF

{ nvidia-smi; nvidia-smi -q | grep -i -E 'product name|driver version|cuda version|mig mode' -A0;
  $PY -c 'import torch, sys; print(sys.version); print(torch.__version__, torch.version.cuda,
  torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).multi_processor_count, "SMs")';
  nproc; free -g; uname -r; } > "$EV/machine.txt" 2>&1

# A fresh checkout, away from the tree the device tool replaces at each call.
rm -rf /tmp/servelab-repo && mkdir /tmp/servelab-repo
tar -C "$PWD" --exclude=./.carry -cf - . | tar -C /tmp/servelab-repo -xf - && cd /tmp/servelab-repo || { touch /tmp/job.done; exit 1; }
rm -rf .venv .config extra_vars.yaml inventories/generated results

# make builds .venv with pip from the index (Python 3.11); here there is neither, so the
# stand-in: a venv of the image's Python 3.12 that sees the image's packages (numpy,
# scipy, matplotlib for the report) and holds the carried controller wheels.
venv() {
  $PY -m venv .venv &&
    echo /opt/torch/.venv/lib/python3.12/site-packages > .venv/lib/python3.12/site-packages/image-site.pth &&
    .venv/bin/python -m pip install -q --no-index --no-deps /tmp/carry/ctl/*.whl &&
    touch .venv/.installed
}
# An image without make: its recipes for the targets used here (recorded in stages.txt).
if ! command -v make > /dev/null; then
  echo "no make on this image: /tmp/shim/make stands in" | tee -a "$EV/stages.txt"
  mkdir -p /tmp/shim && export PATH=/tmp/shim:$PATH
  cat > /tmp/shim/make <<'EOF'
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
  vllm-teardown) $P playbooks/teardown.yml ;;
  *) echo "shim: $1 unknown" >&2; exit 2 ;;
esac
EOF
  chmod +x /tmp/shim/make
fi
stage venv venv || { pack; touch /tmp/job.done; exit 1; }

( while :; do  # the MPS daemon's servers and clients, every GPU process's memory
    pipe=$(ls -d ~/.local/share/servelab/mps/pipe 2>/dev/null)
    echo "--- $(date -u +%H:%M:%S)"
    nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader 2>&1
    if [ -n "$pipe" ] && [ -e "$pipe/control" ]; then
      for s in $(echo get_server_list | CUDA_MPS_PIPE_DIRECTORY=$pipe timeout 5 nvidia-cuda-mps-control); do
        echo "server $s clients: $(echo "get_client_list $s" | CUDA_MPS_PIPE_DIRECTORY=$pipe timeout 5 nvidia-cuda-mps-control | tr '\n' ' ')"
        echo "server $s active thread %: $(echo "get_active_thread_percentage $s" | CUDA_MPS_PIPE_DIRECTORY=$pipe timeout 5 nvidia-cuda-mps-control 2>&1 | tr '\n' ' ')"
      done
    fi
    sleep 5
  done > "$EV/mps-samples.log" 2>&1 ) &
SAMPLER=$!

stage defconfig make defconfig-vllm-h200-mps-table || { pack; touch /tmp/job.done; exit 1; }
cp .config "$EV/config"
if ! stage bringup make bringup; then
  # What a user without a package index must do: the image has the compilers.
  printf '%s\n' '# CONFIG_VLLM_BRINGUP_INSTALL_PACKAGES is not set' >> .config
  stage olddefconfig make olddefconfig
  stage bringup-no-packages make bringup || { pack; touch /tmp/job.done; exit 1; }
fi
.venv/bin/python - > "$EV/preflight.txt" 2>&1 <<'PYEOF'
import sys
sys.path.insert(0, "collections")
from ansible_collections.servelab.vllm.plugins.module_utils import gpu
gpus = gpu.query("nvidia-smi")
print(gpus)
print("\n".join(gpu.check(gpus, 0.4, 1, 0)))
PYEOF

# make vllm in its own process group, stopped as by Ctrl-C when the time runs short
# (the report needs about 2 minutes after it).
stamp "make vllm (sweep), $(left) s left"
t0=$(date +%s%N)
setsid make vllm > "$EV/vllm.log" 2>&1 &
MAKE=$!
stopped=""
while kill -0 $MAKE 2>/dev/null; do
  if [ "$(left)" -lt 150 ] && [ -z "$stopped" ]; then
    stamp "out of time: SIGINT to make vllm"; stopped=yes
    kill -INT -- -$MAKE 2>/dev/null; ( sleep 25; kill -TERM -- -$MAKE 2>/dev/null ) &
  fi
  sleep 5
done
wait $MAKE; rc=$?
printf '%-22s rc=%-3s %6s s  %s%s\n' vllm "$rc" "$(secs "$t0")" "make vllm" \
  "${stopped:+ (stopped at the deadline)}" | tee -a "$EV/stages.txt"
pack

stage results make vllm-results
run=$(ls -t results | grep -v '^latest' | head -1)
[ -n "$run" ] && cp -a "results/$run" "$EV/run"
mkdir -p "$EV/stack-logs"
find ~/.local/share/servelab/stacks -name '*.log' -exec cp --parents {} "$EV/stack-logs/" \; 2>/dev/null
cp -a ~/.local/share/servelab/mps/log "$EV/mps-log" 2>/dev/null
nvidia-smi > "$EV/nvidia-smi-end.txt" 2>&1
pack
stage teardown make vllm-teardown
kill $SAMPLER 2>/dev/null
pack
stamp "done, $(left) s left"
touch /tmp/job.done
