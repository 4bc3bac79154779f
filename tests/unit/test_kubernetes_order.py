"""With observability on, the release that carries kube-prometheus-stack (and with it the
ServiceMonitor CRD) is installed first and alone; the real deploy playbook runs against
the recording stand-in of kubernetes.core (test_kubernetes_boundary.py says how)."""

import json

import yaml
from helpers.stack import BOUNDARY, TOP, Stack


def test_the_release_with_the_monitoring_crds_goes_first_and_alone(tmp_path):
    stack = Stack(tmp_path, defconfig="vllm-kind-dra-mps")
    stack.configure(
        f'CONFIG_VLLM_WORK_DIR="{tmp_path}/work"',
        "CONFIG_VLLM_ROUTER_PORT=18660",
        "CONFIG_VLLM_OBSERVABILITY_ENABLED=y",
    )
    log = tmp_path / "calls.jsonl"
    log.touch()
    env = {
        "K8S_BOUNDARY_LOG": str(log),
        "ANSIBLE_COLLECTIONS_PATH": f"{BOUNDARY}:{TOP / 'collections'}",
    }
    extra = [
        "-e", f"k8s_render_dir={tmp_path}/render/{{{{ servelab_group }}}}",
        "-e", f"k8s_stack_render_dir={tmp_path}/render/{{{{ servelab_group }}}}",
        "-e", f"k8s_stack_kubectl={BOUNDARY / 'fake-kubectl'}",
        "-e", f"servelab_run_lock={tmp_path}/run.lock",
    ]  # fmt: skip
    try:
        stack.playbook("deploy.yml", *extra, env=env)
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        helm = {c["params"]["name"]: c for c in calls if c["module"] == "helm"}
        assert set(helm) == {"vllm-baseline", "vllm-dev"}
        carrier = yaml.safe_load((tmp_path / "render/baseline/values.yaml").read_text())
        other = yaml.safe_load((tmp_path / "render/dev/values.yaml").read_text())
        assert carrier["kube-prometheus-stack"]["enabled"] is True
        assert "kube-prometheus-stack" not in other
        assert other["servingEngineSpec"]["serviceMonitor"]["enabled"] is True
        # dev's install starts after baseline's has returned (helm --wait: deployed).
        assert helm["vllm-dev"]["start"] >= helm["vllm-baseline"]["end"]
    finally:
        stack.playbook("teardown.yml", *extra, env=env, check=False)
