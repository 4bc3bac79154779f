"""Kubernetes platforms, verified without a cluster (none can run on these machines).

`playbooks/render.yml` (what `make vllm-render` runs) writes each group's files; they are
checked against the vllm-stack chart's values.schema.json, the Kubernetes 1.34 and 1.35
schemas (kubernetes-validate, strict), and the real helm 3 binary, which lints them and
runs our post-renderer on a chart with the production stack's engine Deployment shape.
"""

import json
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from stack import TOP, Stack

HELM = TOP / ".tools/helm-3.17.3/helm"
CHART_SCHEMA = TOP.parent / "shared/data/production-stack/values.schema.json"
KIND_SCHEMA = TOP / "tests/data/kind-cluster-v1alpha4.schema.json"
ENGINE_CHART = TOP / "tests/data/engine-chart"
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


def test_mps_claims_differ_per_group_and_reach_the_engine_deployments(tmp_path):
    stack, out = render(tmp_path, "vllm-kind-dra-mps")
    shares = {}
    for group in ("baseline", "dev"):
        claim = yaml.safe_load((out / group / "resourceclaimtemplate.yaml").read_text())
        config = claim["spec"]["spec"]["devices"]["config"][0]["opaque"]["parameters"]
        shares[group] = config["sharing"]["mpsConfig"]["defaultActiveThreadPercentage"]
        (deployment,) = post_rendered(out / group, f"vllm-{group}")
        pod = deployment["spec"]["template"]["spec"]
        assert pod["resourceClaims"] == [
            {"name": "gpu", "resourceClaimTemplateName": claim["metadata"]["name"]}
        ]
        resources = pod["containers"][0]["resources"]
        assert resources["claims"] == [{"name": "gpu"}]
        assert "nvidia.com/gpu" not in json.dumps(resources)
    assert shares == {"baseline": 100, "dev": 50}
    again = stack.playbook("render.yml", "-e", f"k8s_render_dir={out}/{{{{ servelab_group }}}}")
    assert again.changed() == 0


def test_time_slicing_exclusive_and_device_plugin_allocation(tmp_path):
    _, out = render(tmp_path, "vllm-minikube-dra-timeslicing")
    claim = yaml.safe_load((out / "dev" / "resourceclaimtemplate.yaml").read_text())
    sharing = claim["spec"]["spec"]["devices"]["config"][0]["opaque"]["parameters"]["sharing"]
    assert sharing["strategy"] == "TimeSlicing"
    assert (out / "dev" / "minikube-start-args").read_text().count("DynamicResourceAllocation")
    exclusive = ("CONFIG_VLLM_GPU_SHARING_EXCLUSIVE=y", 'CONFIG_VLLM_DEV_OVERRIDES=""')
    _, out = render(tmp_path / "excl", "vllm-kind-dra-mps", *exclusive)
    claim = yaml.safe_load((out / "dev" / "resourceclaimtemplate.yaml").read_text())
    assert "config" not in claim["spec"]["spec"]["devices"]
    k8s_valid(claim)
    _, out = render(
        tmp_path / "plugin", "vllm-kind-dra-mps", "CONFIG_VLLM_GPU_ALLOCATION_DEVICE_PLUGIN=y"
    )
    assert not (out / "dev" / "resourceclaimtemplate.yaml").exists()
    values = yaml.safe_load((out / "dev" / "values.yaml").read_text())
    assert values["servingEngineSpec"]["modelSpec"][0]["requestGPU"] == 1
    assert values["servingEngineSpec"]["runtimeClassName"] == "nvidia"
    (deployment,) = post_rendered(out / "dev", "vllm-dev")
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": "1"}


def test_ingress_lmcache_ray_and_secrets(tmp_path):
    _, out = render(
        tmp_path,
        "vllm-kind-dra-mps",
        "CONFIG_VLLM_PROD_STACK_ACCESS_INGRESS=y",
        "CONFIG_VLLM_LMCACHE_ENABLED=y",
        "CONFIG_VLLM_PROD_STACK_RAY_ENABLED=y",
        'CONFIG_VLLM_API_KEY="k-123-secret"',
        'CONFIG_VLLM_HF_TOKEN="hf_secret_token"',
        "CONFIG_VLLM_ROUTER_SESSION_AFFINITY=y",
    )
    text = "".join(p.read_text() for p in (out / "dev").iterdir())
    assert "k-123-secret" not in text and "hf_secret_token" not in text
    values = yaml.safe_load((out / "dev" / "values.yaml").read_text())
    jsonschema.validate(values, json.loads(CHART_SCHEMA.read_text()))
    model = values["servingEngineSpec"]["modelSpec"][0]
    assert model["lmcacheConfig"]["enabled"] is True and model["raySpec"]["enabled"] is True
    assert model["hf_token"] == {"secretName": "vllm-dev-servelab", "secretKey": "hf_token"}
    assert values["routerSpec"]["routingLogic"] == "session"
    extra = model["vllmConfig"]["extraArgs"]
    assert extra[extra.index("--served-model-name") + 1] == "qwen2.5-1.5b-instruct"
    ingress = yaml.safe_load((out / "dev" / "ingress.yaml").read_text())
    k8s_valid(ingress)
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600


def test_helm_lints_what_we_render(tmp_path):
    _, out = render(tmp_path, "vllm-kind-dra-mps", "CONFIG_VLLM_PROD_STACK_ACCESS_INGRESS=y")
    chart = tmp_path / "servelab-objects"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: servelab-objects\nversion: 0.1.0\n")
    for name in ("resourceclaimtemplate.yaml", "ingress.yaml"):
        (chart / "templates" / name).write_text((out / "dev" / name).read_text())
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
    (tmp_path / "local").mkdir()
    local = Stack(tmp_path / "local", defconfig="vllm-quick-test")
    local.configure()
    run = local.playbook("render.yml", check=False)
    assert run.rc != 0 and "choose kind, minikube or existing_cluster" in run.output
