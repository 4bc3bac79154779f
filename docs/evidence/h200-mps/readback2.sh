#!/usr/bin/env bash
# Session 15 check on the H200: a probe outside MPS while the daemon serves a client; the
# Kubernetes probe command line (python3 -c base64) as k8s_exec would split it; the daemon
# query script (without the chroot, which the DRA driver's pod adds).
set -u
export PATH=/usr/local/nvidia/bin:$PATH PYTHONUNBUFFERED=1
PY=/opt/torch/.venv/bin/python3
P=$PWD/.carry/mps_probe.py
mkdir -p /tmp/mps/pipe /tmp/mps/log /tmp/nomps
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps/log
nvidia-cuda-mps-control -d; sleep 1
CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=20 $PY -c 'import torch,time; x=torch.ones(1,device="cuda"); time.sleep(20)' & h=$!
sleep 10
echo "== outside MPS (pipe dir with no daemon) while a 20% client holds a context"
CUDA_MPS_PIPE_DIRECTORY=/tmp/nomps $PY $P
echo "== the Kubernetes probe command, split as shlex does, with a 40% client env"
CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=40 $PY - <<'PYEOF'
import shlex, subprocess
argv = shlex.split(open(".carry/podcmd.txt").read())
done = subprocess.run(argv, capture_output=True, text=True)
print("rc", done.returncode, done.stderr[-500:])
import json
out = json.loads(done.stdout)
print({k: v for k, v in out.items() if k != "processes"})
print("processes with CUDA_MPS_PIPE_DIRECTORY:", [p for p in out["processes"] if p["env"].get("CUDA_MPS_PIPE_DIRECTORY")][:5])
PYEOF
echo "== the daemon query script (chroot dropped)"
$PY - <<'PYEOF'
import shlex, subprocess
argv = shlex.split(open(".carry/daemoncmd.txt").read())
assert argv[:2] == ["chroot", "/driver-root"], argv
done = subprocess.run(argv[2:], capture_output=True, text=True)
print("rc", done.returncode)
print(done.stdout)
print(done.stderr[-300:])
PYEOF
wait
echo quit | nvidia-cuda-mps-control
