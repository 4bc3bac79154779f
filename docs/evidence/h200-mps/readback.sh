#!/usr/bin/env bash
# MPS read-back on the lent H200: what a client's own context reports under each share.
set -u
export PATH=/usr/local/nvidia/bin:$PATH PYTHONUNBUFFERED=1
PY=/opt/torch/.venv/bin/python3
P=$PWD/.carry/mps_probe.py
ctl() { echo "$*" | nvidia-cuda-mps-control; }
nvidia-smi -L; nvidia-smi --query-gpu=compute_mode,driver_version --format=csv,noheader
echo "== no daemon"; $PY $P
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps/log
mkdir -p /tmp/mps/pipe /tmp/mps/log
nvidia-cuda-mps-control -d; sleep 1
echo "== daemon default: $(ctl get_default_active_thread_percentage)"
for s in unset 100 80 60 40 20 10; do
  echo "== client share $s"
  if [ $s = unset ]; then $PY $P; else CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=$s $PY $P; fi
done
echo "== torch multi_processor_count at 20: $(CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=20 $PY -c 'import torch; print(torch.cuda.get_device_properties(0).multi_processor_count)' 2>&1 | tail -1)"
CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=20 $PY -c 'import torch,time; x=torch.ones(1,device="cuda"); time.sleep(25)' & h1=$!
CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=60 $PY -c 'import torch,time; x=torch.ones(1,device="cuda"); time.sleep(25)' & h2=$!
sleep 12
echo "== control queries while clients at 20 (pid $h1) and 60 (pid $h2) hold contexts"
srv=$(ctl get_server_list); echo "get_server_list: $srv"
for s in $srv; do
  echo "get_client_list $s: $(ctl get_client_list $s | tr '\n' ' ')"
  echo "get_active_thread_percentage $s: $(ctl get_active_thread_percentage $s)"
done
echo "== nvidia-smi while they run"; nvidia-smi | sed -n '/Processes/,$p'
wait
echo "== a new daemon whose default is 50 (set before its first client)"
ctl quit; sleep 2
nvidia-cuda-mps-control -d; sleep 1
ctl set_default_active_thread_percentage 50
echo "default now: $(ctl get_default_active_thread_percentage)"
for s in unset 80 20; do
  echo "== client share $s under default 50"
  if [ $s = unset ]; then $PY $P; else CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=$s $PY $P; fi
done
srv=$(ctl get_server_list); for s in $srv; do echo "get_active_thread_percentage $s: $(ctl get_active_thread_percentage $s)"; done
echo "== control.log tail"; tail -n 30 /tmp/mps/log/control.log
echo "== server.log tail"; tail -n 10 /tmp/mps/log/server.log
ctl quit
