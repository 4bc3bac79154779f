"""The tasks that talk to a cluster, checked at the module boundary.

No Kubernetes API server can run on these machines. The deploy and teardown playbooks
run for real, with kubernetes.core replaced by a stand-in that records each call
(tests/data/k8s_boundary); every recorded call is then validated against the argument
spec of the real kubernetes.core module (6.2.0) of the same name, and its content checked.
"""

import importlib
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.servelab.vllm.plugins.module_utils import records
from ansible_collections.servelab.vllm.plugins.plugin_utils import kube
from helpers.stack import BOUNDARY, TOP, VENV_BIN, Stack

SPECS = {
    "helm": "argument_spec",
    "k8s": "argspec",
    "k8s_info": "argspec",
    "k8s_cluster_info": "argspec",
    "k8s_scale": "argspec",
    "k8s_exec": "argspec",
}


def real_spec(module: str) -> dict:
    real = importlib.import_module(f"ansible_collections.kubernetes.core.plugins.modules.{module}")
    return getattr(real, SPECS[module])()


@pytest.fixture
def cluster(tmp_path):
    stack = Stack(tmp_path, defconfig="vllm-kind-dra-mps")
    base = (
        f'CONFIG_VLLM_WORK_DIR="{tmp_path}/work"',
        "CONFIG_VLLM_ROUTER_PORT=18650",
        'CONFIG_VLLM_API_KEY="k-boundary-secret"',
    )
    stack.configure(*base)
    log = tmp_path / "calls.jsonl"
    log.touch()
    env = {
        # A home of its own: the default kubeconfig (~/.kube/config) resolves under it.
        "HOME": str(tmp_path / "home"),
        "K8S_BOUNDARY_LOG": str(log),
        # The stand-in keeps what it applied here, as the API server would (objects()).
        "K8S_BOUNDARY_CLUSTER": str(tmp_path / "cluster.json"),
        "ANSIBLE_COLLECTIONS_PATH": f"{BOUNDARY}:{TOP / 'collections'}",
    }
    extra = [
        "-e",
        f"k8s_render_dir={tmp_path}/render/{{{{ servelab_group }}}}",
        "-e",
        f"k8s_stack_render_dir={tmp_path}/render/{{{{ servelab_group }}}}",
        "-e",
        f"k8s_stack_kubectl={BOUNDARY / 'fake-kubectl'}",
        # A stand-in cluster takes no cores: a lock of its own, so that a real run of
        # the same user (or CI's integration tests) neither blocks it nor is blocked.
        "-e",
        f"servelab_run_lock={tmp_path}/run.lock",
    ]

    def run(playbook: str, *args: str, check: bool = True):
        return stack.playbook(playbook, *extra, *args, env=env, check=check)

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()]

    run.configure = lambda *lines: stack.configure(*base, *lines)

    yield run, calls, tmp_path
    stack.playbook("teardown.yml", *extra, env=env, check=False)


def test_deploy_and_teardown_call_kubernetes_core_with_valid_arguments(cluster):
    run, calls, tmp = cluster
    deploy = run("deploy.yml")
    assert "k-boundary-secret" not in deploy.output
    recorded = calls()
    for call in recorded:
        result = ArgumentSpecValidator(real_spec(call["module"])).validate(call["params"])
        assert not result.error_messages, (call, result.error_messages)
    helm = {c["params"]["name"]: c["params"] for c in recorded if c["module"] == "helm"}
    assert set(helm) == {"vllm-baseline", "vllm-dev"}
    for group, params in (("baseline", helm["vllm-baseline"]), ("dev", helm["vllm-dev"])):
        assert params["chart_ref"] == "vllm-stack" and params["chart_version"] == "0.1.12"
        assert params["values_files"] == [f"{tmp}/render/{group}/values.yaml"]
        assert os.access(params["post_renderer"], os.X_OK)
        assert Path(params["post_renderer"]).parent == tmp / "render" / group
    applied = [c["params"].get("src") for c in recorded if c["module"] == "k8s"]
    # One GPU (vllm-kind-dra-mps): both groups' engines use one claim, applied before the
    # first release, and no per-group template.
    assert not [a for a in applied if a and a.endswith("resourceclaimtemplate.yaml")]
    claim_at = [
        i
        for i, c in enumerate(recorded)
        if str(c["params"].get("src")).endswith("/resourceclaim.yaml")
    ]
    first_release = min(i for i, c in enumerate(recorded) if c["module"] == "helm")
    # Applied by one host: two would race (GET, GET, create, 409 for the other create).
    assert len(claim_at) == 1 and claim_at[0] < first_release
    (shared,) = objects(tmp, "ResourceClaim")
    assert shared.startswith("vllm-shared-gpu-")
    assert f"--claim {shared}" in Path(helm["vllm-dev"]["post_renderer"]).read_text()
    secrets = [
        c["params"]["definition"]
        for c in recorded
        if c["module"] == "k8s" and (c["params"].get("definition") or {}).get("kind") == "Secret"
    ]
    assert {s["metadata"]["name"] for s in secrets} == {
        "vllm-baseline-servelab",
        "vllm-dev-servelab",
    }
    assert all(s["stringData"] == {"vllm_api_key": "k-boundary-secret"} for s in secrets)
    # The router is reached through a port-forward kept running as a service.
    spec = json.loads((tmp / "work/stacks/dev/router-port-forward/spec.json").read_text())
    # Both groups' port-forwards run on this host: dev's port is moved by the offset.
    assert spec["argv"][-2:] == ["service/vllm-dev-router-service", "19650:80"]
    base = json.loads((tmp / "work/stacks/baseline/router-port-forward/spec.json").read_text())
    assert base["argv"][-1] == "18650:80"
    assert_real_kubectl_reaches_the_cluster(spec["argv"], tmp / "home")
    values = yaml.safe_load((tmp / "render/dev/values.yaml").read_text())
    assert values["servingEngineSpec"]["vllmApiKey"]["secretName"] == "vllm-dev-servelab"

    before = len(recorded)
    teardown = run("teardown.yml")
    removed = calls()[before:]
    for call in removed:
        result = ArgumentSpecValidator(real_spec(call["module"])).validate(call["params"])
        assert not result.error_messages, (call, result.error_messages)
    assert {c["params"]["name"] for c in removed if c["module"] == "helm"} == {
        "vllm-baseline",
        "vllm-dev",
    }
    kinds = [c["params"]["kind"] for c in removed if c["module"] == "k8s"]
    assert set(kinds) == {"ResourceClaimTemplate", "Ingress", "Secret", "ResourceClaim"}
    # The shared claim goes once, after both releases are gone.
    (claim_at,) = [i for i, c in enumerate(removed) if c["params"].get("kind") == "ResourceClaim"]
    assert claim_at > max(i for i, c in enumerate(removed) if c["module"] == "helm")
    # Every shared claim servelab made, of any spec (their names carry the spec's hash).
    assert removed[claim_at]["params"]["label_selectors"] == [
        "app.kubernetes.io/managed-by=servelab",
        "servelab/groups",
    ]
    assert removed[claim_at]["params"]["delete_all"]
    assert not objects(tmp, "ResourceClaim")
    assert all(c["params"]["state"] == "absent" for c in removed if c["module"] != "k8s_info")
    assert not (tmp / "work/stacks/dev/router-port-forward/supervisor.pid").exists()
    assert "kind delete" not in teardown.output  # servelab did not create this cluster


KUBECTL = TOP / ".tools/helm-3.17.3-kubectl-1.31/kubectl"


def assert_real_kubectl_reaches_the_cluster(argv: list[str], home: Path) -> None:
    """The port-forward's exact command line, run by the real kubectl without a shell
    against a kubeconfig (at the configured ~/.kube/config) whose server is a closed
    loopback port: the error must be the connection's, never the kubeconfig's path
    (kubectl expands no ~: the roles resolve it, k8s_stack_kubeconfig)."""
    flag = next(a for a in argv if a.startswith("--kubeconfig="))
    assert flag == f"--kubeconfig={home}/.kube/config", flag
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    (home / ".kube").mkdir(parents=True, exist_ok=True)
    (home / ".kube/config").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{closed}"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }))  # fmt: skip

    def kubectl(args: list[str]) -> str:
        proc = subprocess.run(
            [str(KUBECTL), *args], capture_output=True, text=True, timeout=60,
            env={"PATH": os.environ["PATH"], "HOME": str(home)},
        )  # fmt: skip
        assert proc.returncode != 0
        return proc.stderr

    out = kubectl(argv[1:])
    assert "connection refused" in out and "no such file" not in out, out
    # What the roles passed before (the setting as configured): a path error.
    raw = [a if a != flag else "--kubeconfig=~/.kube/config" for a in argv[1:]]
    assert "no such file or directory" in kubectl(raw)


def objects(tmp: Path, kind: str) -> dict[str, dict]:
    """The stand-in cluster's objects of `kind`, by name."""
    path = tmp / "cluster.json"
    found = json.loads(path.read_text()) if path.exists() else []
    return {o["name"]: o for o in found if o["kind"] == kind}


def releases(tmp: Path) -> dict[str, tuple]:
    """The stand-in's releases: the shared claim their engine pods reserve, and how many
    run."""
    return {
        n: (r["spec"]["claim"], r["spec"]["replicas"]) for n, r in objects(tmp, "Release").items()
    }


def test_a_changed_claim_spec_deploys_under_a_new_name_and_the_old_one_goes(cluster):
    """Claim and template specs are immutable (the stand-in refuses a changed spec under
    the same name, as the API server does): a changed share must be a new object."""
    run, calls, tmp = cluster
    two_gpus = "CONFIG_VLLM_KUBERNETES_NODE_GPUS=2"  # a template per group
    run.configure(two_gpus)
    run("deploy.yml")
    first = objects(tmp, "ResourceClaimTemplate")
    (base_name,) = [n for n in first if n.startswith("vllm-baseline-gpu-")]
    (dev_name,) = [n for n in first if n.startswith("vllm-dev-gpu-")]
    assert set(first) == {base_name, dev_name}
    assert dev_name in (tmp / "render/dev/post-renderer").read_text()

    run.configure(two_gpus, 'CONFIG_VLLM_DEV_OVERRIDES="vllm_mps_active_thread_percentage=30"')
    before = len(calls())
    run("deploy.yml")
    now = objects(tmp, "ResourceClaimTemplate")
    assert base_name in now and dev_name not in now and len(now) == 2
    (new_dev,) = set(now) - {base_name}
    mps = now[new_dev]["spec"]["spec"]["devices"]["config"][0]["opaque"]["parameters"]
    assert mps["sharing"]["mpsConfig"]["defaultActiveThreadPercentage"] == 30
    assert new_dev in (tmp / "render/dev/post-renderer").read_text()  # dev's pods roll
    redeploy = calls()[before:]
    helm_dev = [i for i, c in enumerate(redeploy) if c["params"].get("name") == "vllm-dev"]
    removal = [
        i
        for i, c in enumerate(redeploy)
        if c["params"].get("kind") == "ResourceClaimTemplate"
        and "servelab/group=dev" in c["params"]["label_selectors"]
    ]
    assert removal and min(removal) > max(helm_dev)  # after dev's release moved off it

    # One GPU: the shared claim; the groups' templates go, and a changed spec (here the
    # MPS memory limit) is a new claim, the old one removed after both releases.
    run.configure()
    run("deploy.yml")
    assert not objects(tmp, "ResourceClaimTemplate")
    (shared,) = objects(tmp, "ResourceClaim")
    assert releases(tmp) == {"vllm-baseline": (shared, 1), "vllm-dev": (shared, 1)}
    again = calls()
    run("deploy.yml")  # nothing changed: no release upgraded, no engine stopped
    assert not [c for c in calls()[len(again) :] if c["module"] == "k8s_scale"]
    # On one GPU the new claim is allocated only once no pod reserves the old one: the
    # stand-in fails a release whose pods would wait for another release's old claim
    # (helm's --wait ends), and refuses to delete a claim that running pods reserve.
    # Both happened before the engines were stopped first (tried: the old order failed
    # with "timed out waiting for the condition").
    run.configure('CONFIG_VLLM_MPS_PINNED_DEVICE_MEMORY_LIMIT="20Gi"')
    before = len(calls())
    run("deploy.yml")
    (new_shared,) = objects(tmp, "ResourceClaim")
    assert new_shared != shared and new_shared.startswith("vllm-shared-gpu-")
    for group in ("baseline", "dev"):
        assert f"--claim {new_shared}" in (tmp / f"render/{group}/post-renderer").read_text()
    assert releases(tmp) == {"vllm-baseline": (new_shared, 1), "vllm-dev": (new_shared, 1)}
    redeploy = calls()[before:]
    scaled = [i for i, c in enumerate(redeploy) if c["module"] == "k8s_scale"]
    assert {redeploy[i]["params"]["label_selectors"][0] for i in scaled} == {
        "helm-release-name=vllm-baseline",
        "helm-release-name=vllm-dev",
    }
    assert all(redeploy[i]["params"]["replicas"] == 0 for i in scaled)
    (removal,) = [
        i
        for i, c in enumerate(redeploy)
        if c["module"] == "k8s"
        and c["params"].get("kind") == "ResourceClaim"
        and c["params"]["state"] == "absent"
    ]
    helm = [i for i, c in enumerate(redeploy) if c["module"] == "helm"]
    assert max(scaled) < removal < min(helm)

    # A shared claim moves with every group or not at all: one group alone is refused.
    run.configure('CONFIG_VLLM_MPS_PINNED_DEVICE_MEMORY_LIMIT="10Gi"')
    alone = run("deploy.yml", "--limit", "dev", check=False)
    assert alone.rc != 0 and "deploy all groups together" in alone.output, alone.output[-3000:]
    assert releases(tmp)["vllm-dev"] == (new_shared, 1)  # nothing was stopped

    run("teardown.yml")
    assert not objects(tmp, "ResourceClaim") and not objects(tmp, "ResourceClaimTemplate")


def test_engines_on_one_gpu_start_one_release_after_another(cluster):
    """vLLM sizes its KV cache from the GPU memory free while it profiles: two engines
    starting on one GPU at once split it unevenly (the H100 runs: 20 GB against 28.5-34).
    Without the monitoring release (which goes first and alone anyway), the releases on
    the shared claim install one after another, each waited for; on a GPU per engine pod
    they may go together. Tried: without the throttle both helm calls overlapped."""
    run, calls, _ = cluster
    run.configure("# CONFIG_VLLM_OBSERVABILITY_ENABLED is not set")
    run("deploy.yml")
    helm = sorted(
        (c["start"], c["end"], c["params"]["name"], c["params"]["wait"])
        for c in calls()
        if c["module"] == "helm"
    )
    assert [h[2] for h in helm] in (["vllm-baseline", "vllm-dev"], ["vllm-dev", "vllm-baseline"])
    assert all(h[3] for h in helm)  # each waited for (helm --wait: its engine ready)
    (first, second) = helm
    assert second[0] >= first[1], helm


FAKE_KIND = """#!/bin/sh
echo "$*" >> "$KIND_LOG"
case "$1 $2" in
  "get clusters") exit 0 ;;
  "create cluster") echo "ERROR: failed to create cluster: node(s) not ready" >&2; exit 1 ;;
esac
exit 0
"""


def k8s_cluster_role(tmp: Path, step: str, env: dict, **extra) -> subprocess.CompletedProcess:
    """Run one entry of the k8s_cluster role on this machine (no cluster: stand-ins)."""
    return role_step(tmp, "k8s_cluster", step, env, **extra)


def role_step(
    tmp: Path, role: str, step: str, env: dict, then: tuple = (), **extra
) -> subprocess.CompletedProcess:
    """Run one task file of a role on this machine, against the stand-ins, then the
    tasks `then`."""
    play = tmp / f"{step}.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "vars": {
            "vllm_platform": "kind", "vllm_kubeconfig": f"{tmp}/kubeconfig",
            "vllm_work_dir": str(tmp), "vllm_helm_release_name": "t",
            "vllm_use_cpu_inference": True, "servelab_groups": ["baseline"],
            "k8s_cluster_render_dir": str(tmp / "render"), **extra,
        },
        "tasks": [{"ansible.builtin.include_role": {
            "name": f"servelab.vllm.{role}", "tasks_from": step}}, *then],
    }]))  # fmt: skip
    (tmp / "render").mkdir(exist_ok=True)
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
         "-e", "ansible_python_interpreter={{ ansible_playbook_python }}"],
        cwd=TOP, capture_output=True, text=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(TOP / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
             "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **env},
    )  # fmt: skip


def test_a_cluster_whose_creation_failed_is_still_torn_down(tmp_path):
    """The marker that servelab created the cluster is written before `kind create
    cluster`: a creation that fails half-way leaves a node container that teardown must
    delete (tried: with the marker written by a handler, the failed play never wrote it
    and teardown called no `kind delete`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kind").write_text(FAKE_KIND)
    (bin_dir / "kind").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{VENV_BIN}:{os.environ['PATH']}",
        "KIND_LOG": str(tmp_path / "kind.log"),
    }
    (tmp_path / "render").mkdir()
    (tmp_path / "render/kind-config.yaml").write_text("kind: Cluster\n")
    bringup = k8s_cluster_role(tmp_path, "main", env)
    assert bringup.returncode != 0 and "failed to create cluster" in bringup.stdout
    assert (tmp_path / "cluster-created-by-servelab").read_text() == "kind servelab-t\n"
    teardown = k8s_cluster_role(tmp_path, "teardown", env)
    assert teardown.returncode == 0, teardown.stdout[-3000:]
    assert "delete cluster --name servelab-t" in (tmp_path / "kind.log").read_text()
    assert not (tmp_path / "cluster-created-by-servelab").exists()


def test_a_driver_that_publishes_no_gpu_is_named(tmp_path):
    """The ResourceSlice wait ends on its last try instead of failing there, so the
    check after it says why no engine can get a GPU (tried: Ansible fails a task whose
    retries run out whatever its failed_when, and the play ended on "Task failed")."""
    (tmp_path / "calls.jsonl").touch()
    env = {
        "ANSIBLE_COLLECTIONS_PATH": f"{BOUNDARY}:{TOP / 'collections'}",
        "K8S_BOUNDARY_LOG": str(tmp_path / "calls.jsonl"),
        "K8S_BOUNDARY_CLUSTER": str(tmp_path / "cluster.json"),  # no ResourceSlice in it
    }
    (tmp_path / "render").mkdir()
    # The values render writes: their nameOverride is the release's name too.
    values = kube.dra_driver_values([{"vllm_gpu_sharing": "mps"}])
    (tmp_path / "render/dra-driver-values.yaml").write_text(yaml.safe_dump(values))
    run = k8s_cluster_role(
        tmp_path, "dra_driver", env, vllm_dra_driver_chart_version="0.4.0",
        k8s_cluster_slice_timeout=20,
    )  # fmt: skip
    assert run.returncode != 0
    assert "published no ResourceSlice of gpu.nvidia.com within 20 s" in run.stdout, run.stdout[
        -3000:
    ]
    slices = [json.loads(c) for c in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert [c["params"]["kind"] for c in slices if c["module"] == "k8s_info"] == [
        "ResourceSlice"
    ] * 2
    (helm,) = [c["params"] for c in slices if c["module"] == "helm"]
    assert helm["name"] == values["nameOverride"] == "nvidia-dra-driver-gpu"


# nvidia-cuda-mps-control and nvidia-smi as the lent H200 answered them
# (docs/evidence/h200-mps/readback.txt): one server, two clients, the table's M+C rows.
FAKE_MPS_CONTROL = """#!/bin/sh
read cmd arg
case "$cmd" in
  get_server_list) echo 544 ;;
  get_client_list) [ "$arg" = 544 ] && printf '608\\n607\\n' ;;
  get_default_active_thread_percentage) echo 100.0 ;;
esac
"""
FAKE_SMI = """#!/bin/sh
cat <<'TABLE'
| Processes:                                                                              |
|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |
|        ID   ID                                                               Usage      |
|=========================================================================================|
|    0   N/A  N/A             544      C   nvidia-cuda-mps-server                   66MiB |
|    0   N/A  N/A             607    M+C   VLLM::EngineCore                      32512MiB |
|    0   N/A  N/A             608    M+C   VLLM::EngineCore                      32512MiB |
+-----------------------------------------------------------------------------------------+
TABLE
"""


def test_engine_pods_prove_from_inside_that_they_are_mps_clients(tmp_path):
    """Defect 8: the Kubernetes path records the MPS proof from the engine pods (the probe
    in the engine container, the claim's daemon pod asked through its chroot), and fails
    when an engine container is not wired to the daemon."""
    tools = tmp_path / "driver-root-bin"
    tools.mkdir()
    for name, text in (("nvidia-cuda-mps-control", FAKE_MPS_CONTROL), ("nvidia-smi", FAKE_SMI)):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    mps_env = {"CUDA_MPS_PIPE_DIRECTORY": "/tmp/nvidia-mps",
               "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "50"}  # fmt: skip
    probe = {"device": 0, "env": mps_env, "device_sms": 66, "context_device_sms": 66,
             "context_sms": 66, "processes": [
                 {"pid": 1, "program": "vllm", "env": mps_env},
                 {"pid": 57, "program": "VLLM::EngineCore", "env": mps_env}]}  # fmt: skip
    labels = {"helm-release-name": "vllm-baseline",
              "app.kubernetes.io/component": "serving-engine"}  # fmt: skip

    def pod(name, answer, phase="Running"):
        return {"kind": "Pod", "namespace": "vllm-system", "name": name, "labels": labels,
                "spec": {"resourceClaims": [{"name": "gpu", "resourceClaimName": "shared-1"}]},
                "status": {"phase": phase},
                "answers": {"probe": {"rc": 0, "stdout": json.dumps(answer)}}}  # fmt: skip

    objects_ = [
        pod("vllm-baseline-engine-a", probe),
        pod("vllm-baseline-engine-old", {}, phase="Succeeded"),  # not running: not asked
        {"kind": "ResourceClaim", "namespace": "vllm-system", "name": "shared-1",
         "uid": "4f1c", "labels": {}, "spec": {}},
        {"kind": "Pod", "namespace": "nvidia-dra-driver-gpu",
         "name": "mps-control-daemon-4f1c-ab12c-7d9f8", "labels": {}, "spec": {},
         "status": {"phase": "Running"}, "path": str(tools)},
    ]  # fmt: skip
    state = tmp_path / "cluster.json"
    state.write_text(json.dumps(objects_))
    log = tmp_path / "calls.jsonl"
    env = {"K8S_BOUNDARY_LOG": str(log), "K8S_BOUNDARY_CLUSTER": str(state),
           "ANSIBLE_COLLECTIONS_PATH": f"{BOUNDARY}:{TOP / 'collections'}"}  # fmt: skip
    settings = {"vllm_kubeconfig": f"{tmp_path}/kubeconfig", "vllm_helm_namespace": "vllm-system",
                "vllm_helm_release_name": "vllm", "servelab_group": "baseline"}  # fmt: skip
    keep = ({"ansible.builtin.copy": {"content": "{{ bench_mps.proof | to_json }}",
                                      "dest": str(tmp_path / "proof.json")}},)  # fmt: skip
    done = role_step(tmp_path, "bench", "mps_cluster", env, then=keep, **settings)
    assert done.returncode == 0, done.stdout[-3000:]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    for call in calls:
        result = ArgumentSpecValidator(real_spec(call["module"])).validate(call["params"])
        assert not result.error_messages, (call, result.error_messages)
    execs = [c["params"] for c in calls if c["module"] == "k8s_exec"]
    assert [(e["pod"], e.get("container")) for e in execs] == [
        ("vllm-baseline-engine-a", "vllm"),
        ("mps-control-daemon-4f1c-ab12c-7d9f8", None),
    ]
    proof = json.loads((tmp_path / "proof.json").read_text())  # as the results record it
    assert proof["ok"] and proof["clients"] == 1 and proof["sms"] == [66]
    assert proof["engines"][0]["env"] == mps_env
    assert proof["daemon"]["servers"] == {"544": [608, 607]}
    assert proof["daemon"]["default_active_thread_percentage"] == "100.0"
    assert proof["types"] == ["M+C"]  # the daemon's table, less the MPS server itself
    assert records.describe_mps([proof]) == "MPS: 1 client(s), M+C, 50% (66 SMs read back)"

    # An engine container the claim's CDI edits never reached: no pipe directory.
    objects_[0]["answers"]["probe"]["stdout"] = json.dumps({**probe, "env": {}, "processes": [
        {"pid": 1, "program": "vllm", "env": {}}]})  # fmt: skip
    state.write_text(json.dumps(objects_))
    failed = role_step(tmp_path, "bench", "mps_cluster", env, **settings)
    assert failed.returncode != 0
    assert ("pod vllm-baseline-engine-a's engine container has no CUDA_MPS_PIPE_DIRECTORY"
            in failed.stdout), failed.stdout[-3000:]  # fmt: skip
