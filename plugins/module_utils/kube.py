# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the Kubernetes platforms apply, as plain data, from one group's settings.

- stack_values: values for the vllm-stack Helm chart (production stack).
- claim_template: the group's DRA ResourceClaimTemplate (exclusive, MPS, time-slicing).
- kind_config / minikube_args: a cluster with DRA and CDI on.
- ingress: an NGINX ingress to the group's router with long proxy timeouts.
Secrets never appear here: values reference a Secret the deploy role creates.
"""

from __future__ import annotations

import os
import re
import shlex
import sys

ROUTING_LOGIC = {
    "round_robin": "roundrobin",
    "session_affinity": "session",
    "prefix_aware": "prefixaware",
    "kv_aware": "kvaware",
}
SESSION_HEADER = "x-session-id"  # what servelab's multi-turn workload sends
ENGINE_CONTAINER = "vllm"  # the chart's engine container name
CLAIM_NAME = "gpu"
DRA_API = "resource.k8s.io/v1"
NVIDIA_DRIVER = "gpu.nvidia.com"
DEVICE_CLASS = "gpu.nvidia.com"


class KubeConfigError(ValueError):
    """A setting that cannot be rendered for Kubernetes."""


def dns_label(text: str) -> str:
    """Lowercase letters, digits and dashes, as Service and label names need."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if not label:
        raise KubeConfigError(f"{text!r} gives an empty Kubernetes name")
    return label[:40].rstrip("-")


def release_name(cfg: dict) -> str:
    return dns_label(f"{cfg['vllm_helm_release_name']}-{cfg['servelab_group']}")


def secret_name(cfg: dict) -> str:
    return f"{release_name(cfg)}-servelab"


def claim_template_name(cfg: dict) -> str:
    return f"{release_name(cfg)}-gpu"


def uses_dra(cfg: dict) -> bool:
    return not cfg.get("vllm_use_cpu_inference") and cfg.get("vllm_gpu_allocation") == "dra"


def stack_values(cfg: dict) -> dict:
    """vllm-stack chart values for one group (validated against its values.schema.json)."""
    cpu = bool(cfg.get("vllm_use_cpu_inference"))
    gpus = 0 if cpu or uses_dra(cfg) else int(cfg.get("vllm_request_gpu", 1))
    vllm_config: dict = {
        "maxModelLen": int(cfg["vllm_max_model_len"]),
        "dtype": cfg["vllm_dtype"],
        "enablePrefixCaching": bool(cfg["vllm_enable_prefix_caching"]),
        "enableChunkedPrefill": bool(cfg["vllm_enable_chunked_prefill"]),
        "tensorParallelSize": int(cfg["vllm_tensor_parallel_size"]),
    }
    if cfg.get("vllm_model_source", "hf_id") != "hf_id":
        raise KubeConfigError(
            f"vllm_model_source={cfg.get('vllm_model_source')}: engine pods download their "
            "model themselves, so the Kubernetes platforms need a Hugging Face id "
            "(CONFIG_VLLM_MODEL_SOURCE_HF_ID and CONFIG_VLLM_MODEL_URL)"
        )
    # Served under the configured name, which the benchmark and quick test ask for.
    extra = ["--served-model-name", cfg["vllm_model_name"]]
    extra += list(cfg.get("vllm_engine_extra_args") or [])
    if not cpu:
        vllm_config["gpuMemoryUtilization"] = float(cfg["vllm_gpu_memory_utilization"])
    if cfg.get("vllm_enforce_eager"):
        extra.append("--enforce-eager")
    vllm_config["extraArgs"] = extra
    model: dict = {
        "name": dns_label(cfg["vllm_model_name"]),
        "repository": cfg["vllm_prod_stack_engine_image"],
        "tag": cfg["vllm_prod_stack_engine_tag"],
        "modelURL": cfg["vllm_model_url"],
        "replicaCount": int(cfg["vllm_replica_count"]),
        "requestCPU": int(cfg["vllm_request_cpu"]),
        "requestMemory": str(cfg["vllm_request_memory"]),
        "requestGPU": gpus,
        "vllmConfig": vllm_config,
    }
    if cfg.get("vllm_hf_token"):
        model["hf_token"] = {"secretName": secret_name(cfg), "secretKey": "hf_token"}
    if cfg.get("vllm_lmcache_enabled"):
        model["lmcacheConfig"] = {
            "enabled": True,
            "cpuOffloadingBufferSize": str(cfg.get("vllm_lmcache_cpu_buffer_size", "30")),
        }
    if cfg.get("vllm_prod_stack_ray_enabled"):
        model["raySpec"] = {
            "enabled": True,
            "headNode": {
                "requestCPU": int(cfg["vllm_request_cpu"]),
                "requestMemory": str(cfg["vllm_request_memory"]),
                "requestGPU": gpus,
            },
        }
    engine: dict = {
        "enableEngine": True,
        # The router finds its engines by these labels: unique per group, so that the
        # baseline router never sends to dev's engines in a shared namespace.
        "labels": {"environment": "servelab", "release": release_name(cfg)},
        "modelSpec": [model],
    }
    if not cpu and not uses_dra(cfg):
        engine["runtimeClassName"] = "nvidia"
    else:
        engine["runtimeClassName"] = ""
    policy = cfg.get("vllm_router_policy", "round_robin")
    if policy not in ROUTING_LOGIC:
        raise KubeConfigError(
            f"vllm_router_policy={policy}: the production stack's router offers "
            f"{', '.join(sorted(ROUTING_LOGIC))} (CONFIG_VLLM_ROUTER_POLICY)"
        )
    router: dict = {
        "enableRouter": True,
        "repository": cfg["vllm_prod_stack_router_image"],
        "tag": cfg["vllm_prod_stack_router_tag"],
        "routingLogic": ROUTING_LOGIC[policy],
        "labels": {"environment": "router", "release": f"{release_name(cfg)}-router"},
    }
    if router["routingLogic"] == "session":
        router["sessionKey"] = SESSION_HEADER
    if cfg.get("vllm_api_key"):
        key = {"secretName": secret_name(cfg), "secretKey": "vllm_api_key"}
        engine["vllmApiKey"] = key
        router["vllmApiKey"] = key
    values = {"servingEngineSpec": engine, "routerSpec": router}
    if cfg.get("vllm_observability_enabled"):
        # Every group's engines and router get ServiceMonitors; only the first group's
        # release carries kube-prometheus-stack (its CRDs can have one owner), and its
        # Prometheus selects the ServiceMonitors of both groups.
        engine["serviceMonitor"] = {"enabled": True}
        router["serviceMonitor"] = {"enabled": True}
        groups = cfg.get("servelab_groups") or [cfg["servelab_group"]]
        if cfg["servelab_group"] == groups[0]:
            values["kube-prometheus-stack"] = {"enabled": True, "grafana": {"enabled": True}}
            values["grafanaDashboards"] = {"enabled": True}
    return values


def claim_template(cfg: dict) -> dict:
    """The group's ResourceClaimTemplate: one GPU, shared as the group's settings say."""
    sharing = cfg.get("vllm_gpu_sharing", "exclusive")
    request = {
        "name": CLAIM_NAME,
        "exactly": {
            "deviceClassName": DEVICE_CLASS,
            "count": int(cfg.get("vllm_request_gpu", 1)),
        },
    }
    spec: dict = {"devices": {"requests": [request]}}
    if sharing == "mps":
        mps: dict = {"defaultActiveThreadPercentage": int(cfg["vllm_mps_active_thread_percentage"])}
        limit = str(cfg.get("vllm_mps_pinned_device_memory_limit") or "")
        if limit:
            mps["defaultPinnedDeviceMemoryLimit"] = limit
        strategy: dict = {"strategy": "MPS", "mpsConfig": mps}
    elif sharing == "time_slicing":
        interval = cfg.get("vllm_time_slicing_interval", "Default")
        if interval not in ("Default", "Short", "Medium", "Long"):
            raise KubeConfigError(
                f"vllm_time_slicing_interval={interval}: expected Default, Short, Medium or "
                "Long (CONFIG_VLLM_TIME_SLICING_INTERVAL)"
            )
        strategy = {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": interval}}
    elif sharing == "exclusive":
        strategy = {}
    else:
        raise KubeConfigError(
            f"vllm_gpu_sharing={sharing}: expected exclusive, mps or time_slicing"
        )
    if strategy:
        # DeviceClaim.config: beside the requests it configures (resource.k8s.io/v1).
        spec["devices"]["config"] = [
            {
                "requests": [CLAIM_NAME],
                "opaque": {
                    "driver": NVIDIA_DRIVER,
                    "parameters": {
                        "apiVersion": "resource.nvidia.com/v1beta1",
                        "kind": "GpuConfig",
                        "sharing": strategy,
                    },
                },
            }
        ]
    return {
        "apiVersion": DRA_API,
        "kind": "ResourceClaimTemplate",
        "metadata": {
            "name": claim_template_name(cfg),
            "namespace": cfg["vllm_helm_namespace"],
            "labels": {
                "app.kubernetes.io/managed-by": "servelab",
                "servelab/group": cfg["servelab_group"],
            },
        },
        "spec": {"spec": spec},
    }


def kind_config(cfg: dict) -> dict:
    """A kind cluster with DRA on, CDI in containerd, and the GPUs handed to the worker."""
    version = str(cfg["vllm_kubernetes_version"])
    worker: dict = {"role": "worker", "image": f"kindest/node:v{version}"}
    if not cfg.get("vllm_use_cpu_inference"):
        # With accept-nvidia-visible-devices-as-volume-mounts on in the host's NVIDIA
        # runtime, this mount asks it for every GPU (how NVIDIA's DRA demo does it).
        worker["extraMounts"] = [
            {
                "hostPath": "/dev/null",
                "containerPath": "/var/run/nvidia-container-devices/cdi/runtime.nvidia.com/gpu/all",
            }
        ]
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": dns_label(f"servelab-{cfg['vllm_helm_release_name']}"),
        "featureGates": {"DynamicResourceAllocation": True},
        "runtimeConfig": {"resource.k8s.io/v1": "true"},
        "containerdConfigPatches": [
            '[plugins."io.containerd.grpc.v1.cri"]\n  enable_cdi = true\n',
        ],
        "nodes": [
            {"role": "control-plane", "image": f"kindest/node:v{version}"},
            worker,
        ],
    }


def minikube_args(cfg: dict) -> list[str]:
    """`minikube start` arguments for a cluster with DRA on."""
    args = [
        f"--profile=servelab-{dns_label(cfg['vllm_helm_release_name'])}",
        f"--kubernetes-version=v{cfg['vllm_kubernetes_version']}",
        "--feature-gates=DynamicResourceAllocation=true",
        "--extra-config=apiserver.runtime-config=resource.k8s.io/v1=true",
        f"--cpus={max(2, int(cfg['vllm_request_cpu']) * int(cfg['vllm_replica_count']) * 2 + 2)}",
        f"--memory={cfg.get('vllm_minikube_memory', '32g')}",
    ]
    if cfg.get("vllm_use_cpu_inference"):
        args.append("--driver=docker")
    else:
        args += ["--driver=docker", "--container-runtime=docker", "--gpus=all"]
    return args


def ingress(cfg: dict, timeout_s: int) -> dict:
    """NGINX ingress to the group's router; proxy timeouts outlast long generations."""
    release = release_name(cfg)
    seconds = str(int(timeout_s))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": f"{release}-router",
            "namespace": cfg["vllm_helm_namespace"],
            "annotations": {
                "nginx.ingress.kubernetes.io/proxy-read-timeout": seconds,
                "nginx.ingress.kubernetes.io/proxy-send-timeout": seconds,
                "nginx.ingress.kubernetes.io/proxy-buffering": "off",
                "nginx.ingress.kubernetes.io/proxy-body-size": "64m",
            },
        },
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": f"{cfg['servelab_group']}.{cfg['vllm_ingress_host']}",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {
                                        "name": f"{release}-router-service",
                                        "port": {"number": 80},
                                    }
                                },
                            }
                        ]
                    },
                }
            ],
        },
    }


def post_renderer_script(cfg: dict, python: str) -> str:
    """The executable Helm 3 runs as --post-renderer for this group's release."""
    collections_root = os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 5))
    argv = [
        python,
        "-m",
        "ansible_collections.servelab.vllm.plugins.module_utils.kube",
        release_name(cfg),
        claim_template_name(cfg),
    ]
    return (
        "#!/bin/sh\n"
        "# Written by servelab: adds the group's DRA claim to the vllm-stack engine\n"
        "# Deployments on every helm install and upgrade (kube.add_claims).\n"
        f"PYTHONPATH={shlex.quote(collections_root)} exec {shlex.join(argv)}\n"
    )


def add_claims(docs: list, release: str, template: str) -> list:
    """Give the chart's engine Deployments of `release` the group's DRA claim.

    The vllm-stack chart has no value for a pod's resourceClaims, so this runs as a Helm
    post-renderer: on every install and upgrade, after the chart rendered and before
    anything is applied. It adds the pod-level claim (from the template) and the engine
    container's use of it, and drops any nvidia.com/gpu request, which DRA replaces.
    """
    found = 0
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "Deployment":
            continue
        meta = doc.get("metadata") or {}
        if (meta.get("labels") or {}).get("helm-release-name") != release:
            continue
        if not str(meta.get("name", "")).endswith("-deployment-vllm"):
            continue
        pod = doc["spec"]["template"]["spec"]
        claims = [c for c in pod.get("resourceClaims") or [] if c.get("name") != CLAIM_NAME]
        pod["resourceClaims"] = [
            *claims,
            {"name": CLAIM_NAME, "resourceClaimTemplateName": template},
        ]
        for container in pod.get("containers") or []:
            if container.get("name") != ENGINE_CONTAINER:
                continue
            resources = container.setdefault("resources", {}) or {}
            container["resources"] = resources
            for part in ("requests", "limits"):
                if isinstance(resources.get(part), dict):
                    resources[part].pop("nvidia.com/gpu", None)
            resources["claims"] = [{"name": CLAIM_NAME}]
            found += 1
    if not found:
        raise KubeConfigError(
            f"post-renderer: no engine Deployment (*-deployment-vllm, label "
            f"helm-release-name={release}, container {ENGINE_CONTAINER!r}) in the chart's "
            "output: the chart changed shape, so the DRA claim cannot be added"
        )
    return docs


def main(argv: list[str]) -> int:
    """Helm 3 post-renderer: manifests on stdin, the same with DRA claims on stdout."""
    import yaml  # only here: the controller has it, module targets need not

    if len(argv) != 2:
        print("usage: kube.py RELEASE CLAIM_TEMPLATE < manifests", file=sys.stderr)
        return 2
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d is not None]
    try:
        add_claims(docs, argv[0], argv[1])
    except KubeConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
