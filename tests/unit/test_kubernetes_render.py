"""Kubernetes platforms, verified without a cluster (none can run on these machines).

`playbooks/render.yml` (what `make vllm-render` runs) writes each group's files; they are
checked against the vllm-stack chart's values.schema.json, the Kubernetes 1.34 and 1.35
schemas (kubernetes-validate, strict), and the real helm 3 binary, which lints them, runs
our post-renderer on the real vllm-stack chart (../shared/data) and renders the real
NVIDIA DRA driver chart with the driver values we write.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from ansible_collections.servelab.vllm.plugins.plugin_utils import kube
from helpers.stack import TOP, Stack

HELM = TOP / ".tools/helm-3.17.3-kubectl-1.31/helm"
CHART_SCHEMA = TOP.parent / "shared/data/production-stack/values.schema.json"
KIND_SCHEMA = TOP / "tests/data/kind-cluster-v1alpha4.schema.json"
ENGINE_CHART = TOP / "tests/data/engine-chart"
UPSTREAM = TOP.parent / "shared/data"
STACK_CHART = UPSTREAM / "production-stack/chart"
DRIVER_CHART = UPSTREAM / "dra-driver-nvidia-gpu/chart"
K8S_VERSIONS = ("1.34.0", "1.35.0")
K8S_DEFCONFIGS = (
    "vllm-kind-dra-mps",
    "vllm-minikube-dra-timeslicing",
    "vllm-production-stack-cpu",
    "vllm-production-stack-declared-hosts-gpu",
)


def render(tmp: Path, defconfig: str, *lines: str) -> tuple[Stack, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    stack = Stack(tmp, defconfig=defconfig)
    stack.configure(*lines)
    out = tmp / "render"
    stack.playbook("render.yml", "-e", f"k8s_render_dir={out}/{{{{ servelab_group }}}}")
    return stack, out


def helm(*args: str) -> subprocess.CompletedProcess:
    if not HELM.exists():
        pytest.fail(f"{HELM} is missing: run `make {HELM.relative_to(TOP)}`")
    return subprocess.run([str(HELM), *args], capture_output=True, text=True)


def post_rendered(group_dir: Path, release: str) -> list[dict]:
    """helm template of the engine-shaped chart with our values and post-renderer."""
    args = ["template", release, str(ENGINE_CHART), "-f", str(group_dir / "values.yaml")]
    args += ["--namespace", "vllm-system"]
    if (group_dir / "post-renderer").exists():
        args += ["--post-renderer", str(group_dir / "post-renderer")]
    proc = helm(*args)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module")
def stack_chart(tmp_path_factory) -> Path:
    """The real vllm-stack chart, less its OCI dependencies (not reachable offline)."""
    chart = tmp_path_factory.mktemp("vllm-stack") / "chart"
    shutil.copytree(STACK_CHART, chart)
    (chart / "Chart.lock").unlink(missing_ok=True)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta.pop("dependencies", None)
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return chart


def real_engines(chart: Path, group_dir: Path, release: str) -> list[dict]:
    """The engine Deployments of the real vllm-stack chart, with our values and
    post-renderer, as helm would apply them."""
    args = ["template", release, str(chart), "-f", str(group_dir / "values.yaml")]
    args += ["--namespace", "vllm-system", "--post-renderer", str(group_dir / "post-renderer")]
    proc = helm(*args)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    engines = [
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-deployment-vllm")
    ]
    assert engines, [d["metadata"]["name"] for d in docs]
    return engines


def real_driver(values: Path) -> list[dict]:
    """The real NVIDIA DRA driver chart rendered with the values servelab installs it with."""
    args = ["template", "nvidia-dra-driver-gpu", str(DRIVER_CHART), "-f", str(values)]
    proc = helm(*args, "--namespace", "nvidia-dra-driver-gpu", "--kube-version", "1.34.3")
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def kubelet_plugin(driver: list[dict]) -> dict:
    (daemonset,) = [d for d in driver if d["kind"] == "DaemonSet"]
    return daemonset


def feature_gates(daemonset: dict) -> set[str]:
    gates = set()
    for container in daemonset["spec"]["template"]["spec"]["containers"]:
        for env in container.get("env") or []:
            if env["name"] == "FEATURE_GATES":
                gates |= {g for g in env["value"].split(",") if g}
    return gates


def may_manage_deployments(driver: list[dict]) -> bool:
    """Whether a Role lets the kubelet plugin create Deployments (the MPS daemons)."""
    return any(
        "deployments" in rule.get("resources", []) and "create" in rule.get("verbs", [])
        for doc in driver
        if doc["kind"] == "Role" and doc["metadata"]["name"].endswith("role-kubeletplugin")
        for rule in doc.get("rules") or []
    )


def schedulable_on(daemonset: dict, labels: dict) -> bool:
    """Whether a node with `labels` matches one of the DaemonSet's required node terms."""
    affinity = daemonset["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return any(
        all(
            e["operator"] == "In" and labels.get(e["key"]) in e["values"]
            for e in term["matchExpressions"]
        )
        for term in terms
    )


def engine_env(deployment: dict) -> dict:
    (vllm,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm"
    ]
    return {e["name"]: e.get("value") for e in vllm.get("env") or []}


def k8s_valid(doc: dict) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("defconfig", K8S_DEFCONFIGS)
def test_every_kubernetes_defconfig_renders_valid_files(tmp_path, defconfig):
    _, out = render(tmp_path, defconfig)
    schema = json.loads(CHART_SCHEMA.read_text())
    for group in ("baseline", "dev"):
        gdir = out / group
        values = yaml.safe_load((gdir / "values.yaml").read_text())
        jsonschema.validate(values, schema)
        manifests = [yaml.safe_load(p.read_text()) for p in gdir.glob("*.yaml")]
        manifests = [m for m in manifests if "apiVersion" in m and m.get("kind") != "Cluster"]
        manifests += post_rendered(gdir, f"vllm-{group}")
        for doc in manifests:
            k8s_valid(doc)
        if (gdir / "kind-config.yaml").exists():
            kind = yaml.safe_load((gdir / "kind-config.yaml").read_text())
            jsonschema.validate(kind, json.loads(KIND_SCHEMA.read_text()))
        if (gdir / "dra-driver-values.yaml").exists():
            check_driver(gdir)


def check_driver(gdir: Path) -> None:
    """The real driver chart with our values: ComputeDomains off (no controller, no
    compute-domain container or DeviceClass) and exactly the sharing gates in use."""
    driver = real_driver(gdir / "dra-driver-values.yaml")
    plugin = kubelet_plugin(driver)
    # The 25.x chart's object names (nameOverride): an upgrade replaces them in place
    # instead of adding a second kubelet plugin beside the old one.
    assert plugin["metadata"]["name"] == "nvidia-dra-driver-gpu-kubelet-plugin"
    containers = [c["name"] for c in plugin["spec"]["template"]["spec"]["containers"]]
    assert containers == ["gpus"]
    assert not [d for d in driver if d["kind"] == "Deployment"]  # the CD controller
    classes = {d["metadata"]["name"] for d in driver if d["kind"] == "DeviceClass"}
    assert "gpu.nvidia.com" in classes and not [c for c in classes if "compute-domain" in c]
    gate = {"MPS": "MPSSupport=true", "TimeSlicing": "TimeSlicingSettings=true"}
    wanted = set()
    for path in gdir.parent.glob("*/resourceclaim*.yaml"):
        claim = yaml.safe_load(path.read_text())
        devices = claim["spec"].get("spec", claim["spec"])["devices"]
        for config in devices.get("config") or []:
            wanted.add(gate[config["opaque"]["parameters"]["sharing"]["strategy"]])
    assert feature_gates(plugin) == wanted


def test_one_gpu_ab_shares_one_claim_and_each_group_keeps_its_mps_share(tmp_path, stack_chart):
    stack, out = render(tmp_path, "vllm-kind-dra-mps")  # one GPU, MPS 100% against 50%
    claims = {g: (out / g / "resourceclaim.yaml").read_text() for g in ("baseline", "dev")}
    assert claims["baseline"] == claims["dev"]
    claim = yaml.safe_load(claims["dev"])
    shared = claim["metadata"]["name"]
    assert claim["kind"] == "ResourceClaim" and shared.startswith("vllm-shared-gpu-")
    k8s_valid(claim)
    mps = claim["spec"]["devices"]["config"][0]["opaque"]["parameters"]["sharing"]
    assert mps["strategy"] == "MPS"
    assert mps["mpsConfig"]["defaultActiveThreadPercentage"] == 100  # the larger share
    shares = {}
    for group in ("baseline", "dev"):
        assert not (out / group / "resourceclaimtemplate.yaml").exists()
        (engine,) = real_engines(stack_chart, out / group, f"vllm-{group}")
        k8s_valid(engine)
        assert engine["metadata"]["labels"]["helm-release-name"] == f"vllm-{group}"
        pod = engine["spec"]["template"]["spec"]
        assert pod["resourceClaims"] == [{"name": "gpu", "resourceClaimName": shared}]
        (vllm,) = [c for c in pod["containers"] if c["name"] == "vllm"]
        assert vllm["resources"]["claims"] == [{"name": "gpu"}]
        assert "nvidia.com/gpu" not in json.dumps(vllm["resources"])
        # A surge pod would need a second memory share while the old pod holds its own.
        assert engine["spec"]["strategy"] == {"type": "Recreate"}
        shares[group] = engine_env(engine)["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"]
        argv = vllm["command"]
        assert argv[argv.index("--gpu_memory_utilization") + 1] == "0.4"
    assert shares == {"baseline": "100", "dev": "50"}

    # The driver: MPS gate on, with the Role that lets the kubelet plugin start the
    # claim's MPS control daemon; it schedules on the worker kind labels.
    driver = real_driver(out / "baseline" / "dra-driver-values.yaml")
    plugin = kubelet_plugin(driver)
    assert "MPSSupport=true" in feature_gates(plugin)
    assert may_manage_deployments(driver)
    kind = yaml.safe_load((out / "baseline" / "kind-config.yaml").read_text())
    (worker,) = [n for n in kind["nodes"] if n["role"] == "worker"]
    assert schedulable_on(plugin, worker["labels"])
    (control,) = [n for n in kind["nodes"] if n["role"] == "control-plane"]
    assert not schedulable_on(plugin, control.get("labels") or {})

    again = stack.playbook("render.yml", "-e", f"k8s_render_dir={out}/{{{{ servelab_group }}}}")
    assert again.changed() == 0


def test_two_gpus_keep_a_claim_template_per_group(tmp_path, stack_chart):
    _, out = render(tmp_path, "vllm-kind-dra-mps", "CONFIG_VLLM_KUBERNETES_NODE_GPUS=2")
    shares = {}
    for group in ("baseline", "dev"):
        assert not (out / group / "resourceclaim.yaml").exists()
        claim = yaml.safe_load((out / group / "resourceclaimtemplate.yaml").read_text())
        name = claim["metadata"]["name"]
        assert name.startswith(f"vllm-{group}-gpu-")
        config = claim["spec"]["spec"]["devices"]["config"][0]["opaque"]["parameters"]
        shares[group] = config["sharing"]["mpsConfig"]["defaultActiveThreadPercentage"]
        (engine,) = real_engines(stack_chart, out / group, f"vllm-{group}")
        pod = engine["spec"]["template"]["spec"]
        assert pod["resourceClaims"] == [{"name": "gpu", "resourceClaimTemplateName": name}]
        # Each claim has its own MPS daemon: the share is on the claim, not the container.
        assert "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in engine_env(engine)
    assert shares == {"baseline": 100, "dev": 50}
    assert "MPSSupport=true" in feature_gates(
        kubelet_plugin(real_driver(out / "dev" / "dra-driver-values.yaml"))
    )


def test_time_slicing_exclusive_and_device_plugin_allocation(tmp_path):
    _, out = render(tmp_path, "vllm-minikube-dra-timeslicing")
    claim = yaml.safe_load((out / "dev" / "resourceclaim.yaml").read_text())
    sharing = claim["spec"]["devices"]["config"][0]["opaque"]["parameters"]["sharing"]
    assert sharing["strategy"] == "TimeSlicing"
    args = (out / "dev" / "minikube-start-args").read_text().splitlines()
    assert "--feature-gates=DynamicResourceAllocation=true" in args
    # Not cri-dockerd (no CDI injection for DRA devices), not --gpus (the device plugin).
    assert "--container-runtime=containerd" in args
    assert not [a for a in args if a.startswith("--gpus")]
    driver = real_driver(out / "dev" / "dra-driver-values.yaml")
    assert "TimeSlicingSettings=true" in feature_gates(kubelet_plugin(driver))
    assert "MPSSupport=true" not in feature_gates(kubelet_plugin(driver))
    assert not may_manage_deployments(driver)

    exclusive = ("CONFIG_VLLM_GPU_SHARING_EXCLUSIVE=y", 'CONFIG_VLLM_DEV_OVERRIDES=""')
    _, out = render(tmp_path / "excl", "vllm-kind-dra-mps", *exclusive)
    claim = yaml.safe_load((out / "dev" / "resourceclaim.yaml").read_text())
    assert "config" not in claim["spec"]["devices"]  # as the driver's gpu-test3 demo
    k8s_valid(claim)
    driver_values = yaml.safe_load((out / "dev" / "dra-driver-values.yaml").read_text())
    assert "featureGates" not in driver_values
    _, out = render(
        tmp_path / "plugin", "vllm-kind-dra-mps", "CONFIG_VLLM_GPU_ALLOCATION_DEVICE_PLUGIN=y"
    )
    for name in ("resourceclaimtemplate.yaml", "resourceclaim.yaml", "dra-driver-values.yaml"):
        assert not (out / "dev" / name).exists()
    values = yaml.safe_load((out / "dev" / "values.yaml").read_text())
    assert values["servingEngineSpec"]["modelSpec"][0]["requestGPU"] == 1
    assert values["servingEngineSpec"]["runtimeClassName"] == "nvidia"
    (deployment,) = post_rendered(out / "dev", "vllm-dev")
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": "1"}


def group_cfg(group: str, **settings) -> dict:
    cfg = {
        "servelab_group": group,
        "vllm_helm_release_name": "vllm",
        "vllm_helm_namespace": "vllm-system",
        "vllm_gpu_allocation": "dra",
        "vllm_kubernetes_node_gpus": 1,
        "vllm_replica_count": 1,
        "vllm_request_gpu": 1,
        "vllm_gpu_sharing": "mps",
        "vllm_mps_active_thread_percentage": 100,
        "vllm_gpu_memory_utilization": 0.4,
    }
    return {**cfg, **settings}


def test_one_gpu_decides_the_claim_and_checks_what_one_claim_cannot_carry():
    base = group_cfg("baseline", vllm_mps_active_thread_percentage=30)
    dev = group_cfg("dev", vllm_mps_active_thread_percentage=60)
    assert kube.shares_one_claim([base, dev])
    claim = kube.shared_claim([base, dev])
    mps = claim["spec"]["devices"]["config"][0]["opaque"]["parameters"]["sharing"]["mpsConfig"]
    assert mps["defaultActiveThreadPercentage"] == 60  # the larger; a client only lowers it
    two = {"vllm_kubernetes_node_gpus": 2}
    assert not kube.shares_one_claim([{**base, **two}, {**dev, **two}])
    assert kube.shares_one_claim(
        [{**base, "vllm_kubernetes_node_gpus": 3, "vllm_replica_count": 4}]
    )
    assert not kube.shares_one_claim([{**base, "vllm_gpu_allocation": "device_plugin"}, dev])

    with pytest.raises(kube.KubeConfigError) as err:
        kube.shared_claim([base, {**dev, "vllm_gpu_memory_utilization": 0.6}])
    assert "CONFIG_VLLM_GPU_MEMORY_UTILIZATION" in str(err.value) and "sum to 1" in str(err.value)
    with pytest.raises(kube.KubeConfigError, match="CONFIG_VLLM_REPLICA_COUNT"):
        kube.shared_claim(
            [{**base, "vllm_replica_count": 2, "vllm_gpu_memory_utilization": 0.3}, dev]
        )
    with pytest.raises(kube.KubeConfigError) as err:
        kube.shared_claim([base, {**dev, "vllm_gpu_sharing": "time_slicing"}])
    assert "CONFIG_VLLM_GPU_SHARING" in str(err.value)
    assert "CONFIG_VLLM_KUBERNETES_NODE_GPUS" in str(err.value)
    with pytest.raises(kube.KubeConfigError, match="CONFIG_VLLM_MPS_PINNED_DEVICE_MEMORY_LIMIT"):
        kube.shared_claim([base, {**dev, "vllm_mps_pinned_device_memory_limit": "8Gi"}])


ENGINE = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: vllm-dev-deployment-vllm, labels: {helm-release-name: vllm-dev}}
spec: {template: {spec: {containers: [{name: vllm}]}}}
"""


def post_render(tmp: Path, cfg: dict, peers: list[dict] | None = None) -> dict:
    """Our post-renderer, as Helm runs it, on an engine Deployment: its pod's claim."""
    wrapper = tmp / "post-renderer"
    wrapper.write_text(kube.post_renderer_script(cfg, sys.executable, peers))
    wrapper.chmod(0o755)
    proc = subprocess.run([str(wrapper)], input=ENGINE, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (doc,) = yaml.safe_load_all(proc.stdout)
    (claim,) = doc["spec"]["template"]["spec"]["resourceClaims"]
    return claim


def test_a_claim_is_named_by_its_spec_and_the_post_renderer_follows(tmp_path):
    """Claim and template specs are immutable: a changed MPS share must be a new object."""
    two = {"vllm_kubernetes_node_gpus": 2}
    dev50 = group_cfg("dev", vllm_mps_active_thread_percentage=50, **two)
    dev30 = group_cfg("dev", vllm_mps_active_thread_percentage=30, **two)
    t50, t30 = kube.claim_template(dev50), kube.claim_template(dev30)
    assert t50["metadata"]["name"] != t30["metadata"]["name"]
    for template, cfg in ((t50, dev50), (t30, dev30)):
        name = template["metadata"]["name"]
        assert name == kube.claim_template_name(cfg) and name.startswith("vllm-dev-gpu-")
        assert template["metadata"]["labels"]["servelab/claim-spec"] == name.rsplit("-", 1)[1]
        k8s_valid(template)
        assert post_render(tmp_path, cfg) == {"name": "gpu", "resourceClaimTemplateName": name}
    # Same spec, same name: in another process too (no hash seed, no dict order), and
    # whatever else differs (the namespace, the engine's memory share).
    assert kube.claim_template_name(dict(reversed(dev50.items()))) == t50["metadata"]["name"]
    other = {**dev50, "vllm_helm_namespace": "x", "vllm_gpu_memory_utilization": 0.9}
    assert kube.claim_template_name(other) == t50["metadata"]["name"]
    code = (
        "from ansible_collections.servelab.vllm.plugins.plugin_utils import kube; "
        f"print(kube.claim_template_name({dev50!r}))"
    )
    again = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": str(TOP / "collections")},
    )
    assert again.stdout.strip() == t50["metadata"]["name"]

    # One GPU: the shared claim is named by its spec too, and both groups point at it.
    base = group_cfg("baseline", vllm_mps_active_thread_percentage=100)
    dev = group_cfg("dev", vllm_mps_active_thread_percentage=50)
    claim = kube.shared_claim([base, dev])
    assert post_render(tmp_path, dev, [base, dev]) == {
        "name": "gpu",
        "resourceClaimName": claim["metadata"]["name"],
    }
    limited = [{**c, "vllm_mps_pinned_device_memory_limit": "20Gi"} for c in (base, dev)]
    assert kube.shared_claim_name(limited) != claim["metadata"]["name"]
    # A group's own share below the claim's default leaves the claim as it is.
    assert (
        kube.shared_claim_name([base, {**dev, "vllm_mps_active_thread_percentage": 20}])
        == (claim["metadata"]["name"])
    )


def generated_groups(tmp: Path, *lines: str) -> list[dict]:
    """Each group's settings as the roles see them (shared + the group's), from a
    vllm-kind-dra-mps .config with `lines` appended."""
    tmp.mkdir(parents=True, exist_ok=True)
    stack = Stack(tmp, defconfig="vllm-kind-dra-mps")
    stack.configure(*lines)
    shared = yaml.safe_load((tmp / "extra_vars.yaml").read_text())
    hosts = yaml.safe_load((tmp / "inventory/hosts.yml").read_text())["all"]["children"]
    return [{**shared, **hosts[g]["vars"]} for g in ("baseline", "dev")]


@pytest.mark.parametrize(
    "change",
    [
        ['CONFIG_VLLM_MPS_PINNED_DEVICE_MEMORY_LIMIT="20Gi"'],  # one GPU: the shared claim
        [
            "CONFIG_VLLM_KUBERNETES_NODE_GPUS=2",  # two GPUs: dev's template (its MPS share)
            'CONFIG_VLLM_DEV_OVERRIDES="vllm_mps_active_thread_percentage=30"',
        ],
    ],
    ids=["shared-claim", "claim-template"],
)
def test_a_claim_change_is_a_values_change_that_helm_upgrades(tmp_path, change):
    """kubernetes.core.helm 6.2.0 runs `helm upgrade` only when its own default_check
    (imported here) sees changed values, chart or appVersion. A change that only the
    claim carries upgrades dev's release (and rolls its pods: a new pod annotation),
    and leaves a release whose claim stayed as it was."""
    from ansible_collections.kubernetes.core.plugins.modules.helm import default_check

    chart = yaml.safe_load((STACK_CHART / "Chart.yaml").read_text())
    two = [c for c in change if "NODE_GPUS" in c]
    before = generated_groups(tmp_path / "before", *two)
    after = generated_groups(tmp_path / "after", *change)
    for old, new in zip(before, after, strict=True):
        status = {
            "values": kube.stack_values(old, before),
            "chart": f"{chart['name']}-{chart['version']}",
            "app_version": chart.get("appVersion", ""),
        }
        upgrade = default_check(status, chart, values=kube.stack_values(new, after))
        claim_moved = kube.post_renderer_script(old, "p", before) != kube.post_renderer_script(
            new, "p", after
        )
        assert upgrade == claim_moved, (old["servelab_group"], upgrade)
        assert not default_check(status, chart, values=kube.stack_values(old, before))
    assert kube.post_renderer_script(before[1], "p", before) != kube.post_renderer_script(
        after[1], "p", after
    )  # dev's claim changed in both cases


def test_a_swept_share_never_changes_the_shared_claim():
    """A knob sweep redeploys one group; the other group's engines hold the shared claim,
    so its MPS default counts every value of the sweep from the start."""
    sweep = {
        "vllm_benchmark_sweep": "knob",
        "vllm_benchmark_sweep_knob_name": "vllm_mps_active_thread_percentage",
        "vllm_benchmark_sweep_knob_values_list": [20, 80],
    }
    base = group_cfg("baseline", vllm_mps_active_thread_percentage=50, **sweep)
    dev = group_cfg("dev", vllm_mps_active_thread_percentage=30)
    names = {
        kube.shared_claim_name([{**base, "vllm_mps_active_thread_percentage": v}, dev])
        for v in (50, 20, 80)
    }
    assert len(names) == 1
    mps = kube.shared_claim([base, dev])["spec"]["devices"]["config"][0]["opaque"]
    assert mps["parameters"]["sharing"]["mpsConfig"]["defaultActiveThreadPercentage"] == 80


def test_minikube_gpu_arguments_follow_the_allocation():
    cfg = group_cfg(
        "baseline",
        vllm_kubernetes_version="1.34.3",
        vllm_request_cpu=4,
    )
    dra = kube.minikube_args(cfg)
    assert "--container-runtime=containerd" in dra and "--gpus=all" not in dra
    assert f"--mount-string={kube.MINIKUBE_GPU_MOUNT}" in dra
    plugin = kube.minikube_args({**cfg, "vllm_gpu_allocation": "device_plugin"})
    assert "--gpus=all" in plugin and "--container-runtime=docker" in plugin


def test_ingress_lmcache_and_secrets(tmp_path):
    _, out = render(
        tmp_path,
        "vllm-production-stack-declared-hosts-gpu",
        "CONFIG_VLLM_PROD_STACK_ACCESS_INGRESS=y",
        "CONFIG_VLLM_LMCACHE_ENABLED=y",
        'CONFIG_VLLM_API_KEY="k-123-secret"',
        'CONFIG_VLLM_HF_TOKEN="hf_secret_token"',
        "CONFIG_VLLM_ROUTER_SESSION_AFFINITY=y",
    )
    text = "".join(p.read_text() for p in (out / "dev").iterdir())
    assert "k-123-secret" not in text and "hf_secret_token" not in text
    values = yaml.safe_load((out / "dev" / "values.yaml").read_text())
    jsonschema.validate(values, json.loads(CHART_SCHEMA.read_text()))
    model = values["servingEngineSpec"]["modelSpec"][0]
    assert model["lmcacheConfig"]["enabled"] is True
    # Pinned images, not pulled again: both groups run the same ones.
    assert values["routerSpec"]["tag"] not in kube.MUTABLE_TAGS
    assert values["routerSpec"]["imagePullPolicy"] == "IfNotPresent"
    assert values["servingEngineSpec"]["imagePullPolicy"] == "IfNotPresent"
    assert model["hf_token"] == {"secretName": "vllm-dev-servelab", "secretKey": "hf_token"}
    assert values["routerSpec"]["routingLogic"] == "session"
    extra = model["vllmConfig"]["extraArgs"]
    assert extra[extra.index("--served-model-name") + 1] == "qwen2.5-1.5b-instruct"
    ingress = yaml.safe_load((out / "dev" / "ingress.yaml").read_text())
    k8s_valid(ingress)
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600


def test_helm_lints_what_we_render(tmp_path):
    _, out = render(tmp_path, "vllm-kind-dra-mps")
    _, ingress_out = render(
        tmp_path / "ingress",
        "vllm-production-stack-declared-hosts-gpu",
        "CONFIG_VLLM_PROD_STACK_ACCESS_INGRESS=y",
    )
    chart = tmp_path / "servelab-objects"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: servelab-objects\nversion: 0.1.0\n")
    for name, source in (("resourceclaim.yaml", out), ("ingress.yaml", ingress_out)):
        (chart / "templates" / name).write_text((source / "dev" / name).read_text())
    lint = helm("lint", "--strict", str(chart))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    lint = helm("lint", "--strict", str(ENGINE_CHART), "-f", str(out / "dev" / "values.yaml"))
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_post_renderer_refuses_output_without_an_engine_deployment(tmp_path):
    _, out = render(tmp_path, "vllm-kind-dra-mps")
    proc = subprocess.run(
        [str(out / "dev" / "post-renderer")],
        input="apiVersion: v1\nkind: Service\nmetadata: {name: x}\n",
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "no engine Deployment" in proc.stderr and "helm-release-name=vllm-dev" in proc.stderr
    assert "--claim vllm-shared-gpu-" in (out / "dev" / "post-renderer").read_text()


def test_bad_input_is_named(tmp_path):
    stack = Stack(tmp_path, defconfig="vllm-kind-dra-mps")
    stack.configure("CONFIG_VLLM_ROUTER_POWER_OF_TWO=y", "CONFIG_VLLM_REPLICA_COUNT=2")
    run = stack.playbook("render.yml", "-e", f"k8s_render_dir={tmp_path}/r", check=False)
    assert run.rc != 0 and "CONFIG_VLLM_ROUTER_POLICY" in run.output
    gguf = Stack(tmp_path / "gguf", defconfig="vllm-kind-dra-mps")
    (tmp_path / "gguf").mkdir()
    gguf.configure("CONFIG_VLLM_MODEL_SOURCE_PYPI_GGUF=y")
    run = gguf.playbook("render.yml", "-e", f"k8s_render_dir={tmp_path}/g", check=False)
    assert run.rc != 0 and "CONFIG_VLLM_MODEL_SOURCE_HF_ID" in run.output
    (tmp_path / "memory").mkdir()
    memory = Stack(tmp_path / "memory", defconfig="vllm-kind-dra-mps")
    memory.configure('CONFIG_VLLM_DEV_OVERRIDES="vllm_gpu_memory_utilization=0.7"')
    run = memory.playbook("render.yml", "-e", f"k8s_render_dir={tmp_path}/m", check=False)
    assert run.rc != 0 and "CONFIG_VLLM_GPU_MEMORY_UTILIZATION" in run.output
    assert "baseline 1 x 0.4 + dev 1 x 0.7" in run.output
    (tmp_path / "local").mkdir()
    local = Stack(tmp_path / "local", defconfig="vllm-quick-test")
    local.configure()
    run = local.playbook("render.yml", check=False)
    assert run.rc != 0 and "choose kind, minikube or existing_cluster" in run.output


def test_refused_on_kubernetes_with_the_setting_named(tmp_path):
    """What cannot run as configured is refused before anything is applied: Ray (no DRA
    claim, colliding ConfigMaps, no operator), kv_aware (needs LMCache's controller),
    ingress on a cluster servelab creates (no controller, no DNS), a mutable image tag,
    and names the chart would make longer than a DNS label."""
    with pytest.raises(subprocess.CalledProcessError) as removed:
        Stack(tmp_path, defconfig="vllm-kind-dra-mps").configure(
            "CONFIG_VLLM_PROD_STACK_RAY_ENABLED=y"
        )
    assert "VLLM_PROD_STACK_RAY_ENABLED" in removed.value.stderr
    assert "no KubeRay operator" in removed.value.stderr
    cases = {
        "kv-aware": (["CONFIG_VLLM_ROUTER_KV_AWARE=y"], "CONFIG_VLLM_ROUTER_PREFIX_AWARE"),
        "latest": (['CONFIG_VLLM_PROD_STACK_ROUTER_TAG="latest"'],
                   "CONFIG_VLLM_PROD_STACK_ROUTER_TAG"),
    }  # fmt: skip
    for name, (lines, message) in cases.items():
        (tmp_path / name).mkdir()
        stack = Stack(tmp_path / name, defconfig="vllm-kind-dra-mps")
        stack.configure(*lines)
        render_dir = f"k8s_render_dir={tmp_path}/{name}/r"
        run = stack.playbook("render.yml", "-e", render_dir, check=False)
        assert run.rc != 0 and message in run.output, (name, run.output[-2000:])
    # Ingress is offered only on existing clusters; Kconfig drops it elsewhere.
    (tmp_path / "ingress").mkdir()
    stack = Stack(tmp_path / "ingress", defconfig="vllm-kind-dra-mps")
    stack.configure("CONFIG_VLLM_PROD_STACK_ACCESS_INGRESS=y")
    generated = yaml.safe_load((tmp_path / "ingress" / "extra_vars.yaml").read_text())
    assert generated["vllm_prod_stack_access"] == "port_forward"
    with pytest.raises(kube.KubeConfigError, match="existing cluster"):
        kube.ingress({"vllm_platform": "kind", "servelab_group": "dev"}, 3600)


def test_names_fit_the_chart_or_are_refused(tmp_path, stack_chart):
    """The longest model name we accept gives the real chart's Services and pod hostname
    at most 63 characters; one more character is refused, naming the setting."""
    cfg = {"vllm_helm_release_name": "vllm", "servelab_group": "baseline"}
    longest = max(len(n) for n in kube.chart_names({**cfg, "vllm_model_name": "m"}).values())
    model = "m" * (kube.DNS_LABEL_MAX - longest + 1)
    kube.check_names({**cfg, "vllm_model_name": model})
    with pytest.raises(kube.KubeConfigError, match="CONFIG_VLLM_MODEL_NAME"):
        kube.check_names({**cfg, "vllm_model_name": model + "m"})
    _, out = render(tmp_path, "vllm-kind-dra-mps", f'CONFIG_VLLM_MODEL_NAME="{model}"')
    args = ["template", "vllm-baseline", str(stack_chart), "-f", str(out / "baseline/values.yaml")]
    args += ["--post-renderer", str(out / "baseline/post-renderer")]
    proc = helm(*args)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    services = [d["metadata"]["name"] for d in docs if d["kind"] == "Service"]
    hostnames = [
        d["spec"]["template"]["spec"].get("hostname", "") for d in docs if d["kind"] == "Deployment"
    ]
    assert services and max(len(n) for n in services + hostnames) <= kube.DNS_LABEL_MAX
    assert max(len(n) for n in services + hostnames) == kube.DNS_LABEL_MAX  # the bound is tight
