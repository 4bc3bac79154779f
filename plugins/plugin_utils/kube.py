# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the Kubernetes platforms apply, as plain data, from one group's settings.

- stack_values: values for the vllm-stack Helm chart (production stack).
- claim_template: the group's DRA ResourceClaimTemplate (exclusive, MPS, time-slicing),
  when the node has a GPU for every engine pod; shared_claim: otherwise ONE ResourceClaim
  that every engine pod of both groups uses (the NVIDIA driver shares a GPU only among
  the users of one claim).
- dra_driver_values: values for NVIDIA's DRA driver chart (feature gates of the sharing).
- kind_config / minikube_args: a cluster with DRA and CDI on, its GPU node labelled.
- ingress: an NGINX ingress to the group's router with long proxy timeouts.
- add_claims: the Helm post-renderer's work (bin/servelab-post-renderer runs it).

Functions that decide how the GPU is shared take `peers`: the settings of every enabled
group (the group's own included), since the groups share one cluster and one GPU node.
Secrets never appear here: values reference a Secret the deploy role creates.
Controller side: the filters and the post-renderer run where helm runs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path

ROUTING_LOGIC = {
    "round_robin": "roundrobin",
    "session_affinity": "session",
    "prefix_aware": "prefixaware",
}
SESSION_HEADER = "x-session-id"  # what servelab's multi-turn workload sends
ENGINE_CONTAINER = "vllm"  # the chart's engine container name
CLAIM_NAME = "gpu"
DRA_API = "resource.k8s.io/v1"
NVIDIA_DRIVER = "gpu.nvidia.com"
DEVICE_CLASS = "gpu.nvidia.com"
# The label the driver's kubelet-plugin DaemonSet requires (one of its nodeAffinity terms;
# the others are NFD's), set by the GPU Operator or, here, by servelab.
GPU_NODE_LABEL = "nvidia.com/gpu.present"
# Driver feature gates (alpha, off by default) that a sharing strategy needs.
SHARING_GATES = {"mps": "MPSSupport", "time_slicing": "TimeSlicingSettings"}
MPS_THREADS_ENV = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"
MANAGED_BY = {"app.kubernetes.io/managed-by": "servelab"}  # claims and templates we own
CLAIM_SPEC_LABEL = "servelab/claim-spec"  # spec_hash of the object's spec
DRA_DRIVER_RELEASE = "nvidia-dra-driver-gpu"  # the 25.x chart's name, kept (dra_driver_values)
CLAIM_ANNOTATION = "servelab/claim"  # on engine pods: the claim (template) they use
MPS_KNOB = "vllm_mps_active_thread_percentage"
CHART_NAME = "vllm-stack"
DNS_LABEL_MAX = 63  # RFC 1123 label: Service names, hostnames, label values
HELM_RELEASE_MAX = 53  # Helm's own limit on release names
# Tags that name no fixed image: two groups deployed minutes apart could run different
# routers, and the difference would be measured as the configurations'.
MUTABLE_TAGS = ("", "latest", "main", "nightly", "latest-nightly")


class KubeConfigError(ValueError):
    """A setting that cannot be rendered for Kubernetes."""


def dns_label(text: str) -> str:
    """Lowercase letters, digits and dashes, as Service and label names need. Never cut:
    a cut name could lose the group that tells baseline's objects from dev's; the
    lengths are checked where the names are made (chart_names)."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if not label:
        raise KubeConfigError(f"{text!r} gives an empty Kubernetes name")
    return label


def release_name(cfg: dict) -> str:
    release = dns_label(f"{cfg['vllm_helm_release_name']}-{cfg['servelab_group']}")
    if len(release) > HELM_RELEASE_MAX:
        raise KubeConfigError(
            f"Helm release {release!r} has {len(release)} characters, Helm allows "
            f"{HELM_RELEASE_MAX}: shorten CONFIG_VLLM_HELM_RELEASE_NAME"
        )
    return release


def chart_names(cfg: dict) -> dict[str, str]:
    """The names the vllm-stack chart (0.1.12) makes from the release and the model that
    must be DNS labels (63 characters): Services (templates/service-*.yaml) and the
    engine pod's hostname (deployment-vllm-multi.yaml)."""
    release, model = release_name(cfg), dns_label(cfg["vllm_model_name"])
    return {
        "engine Service": f"{release}-{model}-engine-service",
        "engine pod hostname": f"{release}-{model}-{CHART_NAME}",
        "router Service": f"{release}-router-service",
    }


def check_names(cfg: dict) -> None:
    for what, name in chart_names(cfg).items():
        if len(name) > DNS_LABEL_MAX:
            raise KubeConfigError(
                f"the chart would name the {what} {name!r}: {len(name)} characters, "
                f"Kubernetes allows {DNS_LABEL_MAX}. Shorten CONFIG_VLLM_MODEL_NAME (the "
                "name the engines serve; the model itself comes from CONFIG_VLLM_MODEL_URL) "
                "or CONFIG_VLLM_HELM_RELEASE_NAME"
            )


def secret_name(cfg: dict) -> str:
    return f"{release_name(cfg)}-servelab"


def spec_hash(spec: dict) -> str:
    """A short hash of a claim's spec. Claim and template specs are immutable, so a changed
    spec must be a new object: its name carries this hash (and the post-renderer the name,
    so the engine Deployment rolls onto it); the label lets stale ones be found."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def claim_template_name(cfg: dict) -> str:
    return f"{release_name(cfg)}-gpu-{spec_hash(_claim_spec(cfg))}"


def uses_dra(cfg: dict) -> bool:
    return not cfg.get("vllm_use_cpu_inference") and cfg.get("vllm_gpu_allocation") == "dra"


def shared_claim_name(peers: list[dict]) -> str:
    """The one ResourceClaim of all groups (their namespace and release prefix are shared)."""
    prefix = dns_label(f"{peers[0]['vllm_helm_release_name']}-shared-gpu")
    return f"{prefix}-{spec_hash(_shared_spec(peers))}"


def _engine_gpus(cfg: dict) -> int:
    return int(cfg.get("vllm_replica_count", 1)) * int(cfg.get("vllm_request_gpu", 1))


def shares_one_claim(peers: list[dict]) -> bool:
    """Whether the engine pods of all groups must share ONE claim: more GPUs asked than the
    node has (CONFIG_VLLM_KUBERNETES_NODE_GPUS).

    The NVIDIA DRA driver shares a GPU only among the users of one ResourceClaim; two
    claims (one per pod of a template) never get the same GPU, so a pod whose claim finds
    no free GPU stays Pending.
    """
    if not peers or not uses_dra(peers[0]):
        return False
    node_gpus = int(peers[0].get("vllm_kubernetes_node_gpus", 1))
    return sum(_engine_gpus(cfg) for cfg in peers) > node_gpus


def _same_in_all_groups(peers: list[dict], key: str, default, why: str):
    values = {str(cfg.get(key, default)) for cfg in peers}
    if len(values) > 1:
        raise KubeConfigError(
            f"{key} differs between the groups ({', '.join(sorted(values))}), but {why}: "
            f"give both groups the same CONFIG_{key.upper()} (drop it from "
            "CONFIG_VLLM_DEV_OVERRIDES), or give the node a GPU per engine pod "
            "(CONFIG_VLLM_KUBERNETES_NODE_GPUS)"
        )
    return peers[0].get(key, default)


def _check_shared_gpu(peers: list[dict]) -> None:
    """Settings that one shared claim cannot carry per group, and the memory budget."""
    why = "all engine pods share one ResourceClaim on one GPU node"
    _same_in_all_groups(peers, "vllm_gpu_sharing", "exclusive", why)
    _same_in_all_groups(peers, "vllm_request_gpu", 1, why)
    _same_in_all_groups(peers, "vllm_time_slicing_interval", "Default", why)
    _same_in_all_groups(peers, "vllm_mps_pinned_device_memory_limit", "", why)
    parts = [
        (
            cfg["servelab_group"],
            int(cfg.get("vllm_replica_count", 1)),
            float(cfg["vllm_gpu_memory_utilization"]),
        )
        for cfg in peers
    ]
    total = sum(replicas * share for _, replicas, share in parts)
    if total >= 1:
        terms = " + ".join(f"{group} {replicas} x {share:g}" for group, replicas, share in parts)
        raise KubeConfigError(
            f"the engine pods of all groups share one GPU, and their memory shares sum to "
            f"{total:g} ({terms}; replicas x gpuMemoryUtilization), which must be below 1: "
            "lower CONFIG_VLLM_GPU_MEMORY_UTILIZATION (dev's through "
            "CONFIG_VLLM_DEV_OVERRIDES, e.g. vllm_gpu_memory_utilization=0.4) or "
            "CONFIG_VLLM_REPLICA_COUNT"
        )


def stack_values(cfg: dict, peers: list[dict] | None = None) -> dict:
    """vllm-stack chart values for one group (validated against its values.schema.json).

    `peers`: all groups' settings, to know whether the engines share one claim (then an
    MPS group's compute share goes to its engine container's environment).
    """
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
    if peers and shares_one_claim(peers) and cfg.get("vllm_gpu_sharing") == "mps":
        # One claim, one MPS control daemon for both groups: each group's share is a
        # client-side limit, which can only lower the daemon's default (shared_claim
        # sets that to the largest group's share).
        model["env"] = [
            {"name": MPS_THREADS_ENV, "value": str(int(cfg["vllm_mps_active_thread_percentage"]))}
        ]
    if cfg.get("vllm_hf_token"):
        model["hf_token"] = {"secretName": secret_name(cfg), "secretKey": "hf_token"}
    if cfg.get("vllm_lmcache_enabled"):
        model["lmcacheConfig"] = {
            "enabled": True,
            "cpuOffloadingBufferSize": str(cfg.get("vllm_lmcache_cpu_buffer_size", "30")),
        }
    engine: dict = {
        "enableEngine": True,
        "imagePullPolicy": "IfNotPresent",  # the pinned tag, not whatever is newest
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
    if policy == "kv_aware":
        # Upstream's kvaware routing (tutorials/assets/values-17-kv-aware.yaml) also needs
        # LMCache's controller on the engines and router; with routingLogic alone the
        # router falls back without saying so.
        raise KubeConfigError(
            "vllm_router_policy=kv_aware: on Kubernetes the production stack's kvaware "
            "router needs LMCache's controller, which servelab does not configure, and "
            "would silently fall back; choose prefix_aware (CONFIG_VLLM_ROUTER_PREFIX_AWARE) "
            "or run kv_aware on the local platform"
        )
    if policy not in ROUTING_LOGIC:
        raise KubeConfigError(
            f"vllm_router_policy={policy}: the production stack's router offers "
            f"{', '.join(sorted(ROUTING_LOGIC))} (CONFIG_VLLM_ROUTER_POLICY)"
        )
    for setting in ("vllm_prod_stack_router_tag", "vllm_prod_stack_engine_tag"):
        if str(cfg.get(setting, "")).strip() in MUTABLE_TAGS:
            raise KubeConfigError(
                f"{setting}={cfg.get(setting)!r} names no fixed image: pin a version tag "
                f"(CONFIG_{setting.upper()}), so that both groups run the same image"
            )
    check_names(cfg)
    router: dict = {
        "enableRouter": True,
        "repository": cfg["vllm_prod_stack_router_image"],
        "tag": cfg["vllm_prod_stack_router_tag"],
        "imagePullPolicy": "IfNotPresent",
        "routingLogic": ROUTING_LOGIC[policy],
        "labels": {"environment": "router", "release": f"{release_name(cfg)}-router"},
    }
    if router["routingLogic"] == "session":
        router["sessionKey"] = SESSION_HEADER
    if cfg.get("vllm_api_key"):
        key = {"secretName": secret_name(cfg), "secretKey": "vllm_api_key"}
        engine["vllmApiKey"] = key
        router["vllmApiKey"] = key
    if uses_dra(cfg):
        # kubernetes.core.helm upgrades a release only when default_check sees changed
        # values, chart or appVersion (no helm-diff here), and the claim reaches the
        # pods through the post-renderer alone: its name (its spec's hash) goes into the
        # values too, so that a changed claim upgrades the release and rolls its pods.
        claim = (
            shared_claim_name(peers) if peers and shares_one_claim(peers)
            else claim_template_name(cfg)
        )  # fmt: skip
        model["podAnnotations"] = {CLAIM_ANNOTATION: claim}
        # The chart's default RollingUpdate (maxSurge 100%) starts the new pod before the
        # old one stops: it would need a second GPU (template) or a second memory share
        # of it (shared claim) while the old pod holds its own. Recreate stops it first.
        engine["strategy"] = {"type": "Recreate"}
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


def _claim_spec(cfg: dict, mps_percentage: int | None = None) -> dict:
    """A claim's spec: the GPUs of one engine pod, shared as `cfg` says."""
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
        percentage = mps_percentage or int(cfg["vllm_mps_active_thread_percentage"])
        mps: dict = {"defaultActiveThreadPercentage": int(percentage)}
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
    return spec


def claim_template(cfg: dict) -> dict:
    """The group's ResourceClaimTemplate: one claim per engine pod, its own GPU(s)."""
    spec = _claim_spec(cfg)
    return {
        "apiVersion": DRA_API,
        "kind": "ResourceClaimTemplate",
        "metadata": {
            "name": claim_template_name(cfg),
            "namespace": cfg["vllm_helm_namespace"],
            "labels": {
                **MANAGED_BY,
                "servelab/group": cfg["servelab_group"],
                CLAIM_SPEC_LABEL: spec_hash(spec),
            },
        },
        "spec": {"spec": spec},
    }


def _mps_shares(cfg: dict) -> list[int]:
    """The MPS shares a group will run with: its own and, when it sweeps its share, every
    value of the sweep (so that a sweep never changes the shared claim, which would need
    the other group's engines restarted; roles/bench/tasks/knob_point.yml)."""
    shares = [int(cfg[MPS_KNOB])]
    if cfg.get("vllm_benchmark_sweep") == "knob" and (
        cfg.get("vllm_benchmark_sweep_knob_name") == MPS_KNOB
    ):
        shares += [int(v) for v in cfg.get("vllm_benchmark_sweep_knob_values_list") or []]
    return shares


def _shared_spec(peers: list[dict]) -> dict:
    if not shares_one_claim(peers):
        raise KubeConfigError(
            "shared_claim: the node has a GPU for every engine pod "
            "(CONFIG_VLLM_KUBERNETES_NODE_GPUS): each group uses its claim template"
        )
    _check_shared_gpu(peers)
    top = None
    if peers[0].get("vllm_gpu_sharing") == "mps":
        top = max(share for cfg in peers for share in _mps_shares(cfg))
    return _claim_spec(peers[0], top)


def shared_claim(peers: list[dict]) -> dict:
    """The ResourceClaim every engine pod of every group uses, when the node has fewer GPUs
    than engine pods (shares_one_claim).

    Owned by no Helm release (k8s_stack applies it before the first release and deletes it
    after the last), so that removing one group never takes the GPU from the other. With
    MPS there is one control daemon for the claim: its default active-thread percentage is
    the largest share of any group (a swept share's values included, _mps_shares), and
    each group's engine container lowers it to its own through
    CUDA_MPS_ACTIVE_THREAD_PERCENTAGE (a client value above the daemon's is clamped to
    the daemon's, NVIDIA's MPS docs).
    """
    spec = _shared_spec(peers)
    return {
        "apiVersion": DRA_API,
        "kind": "ResourceClaim",
        "metadata": {
            "name": shared_claim_name(peers),
            "namespace": peers[0]["vllm_helm_namespace"],
            "labels": {
                **MANAGED_BY,
                "servelab/groups": "-".join(cfg["servelab_group"] for cfg in peers),
                CLAIM_SPEC_LABEL: spec_hash(spec),
            },
        },
        "spec": spec,
    }


def dra_driver_values(peers: list[dict]) -> dict:
    """Values for NVIDIA's DRA driver chart: GPUs on, beside no device plugin, and the
    feature gates (alpha, off by default) of the sharing strategies the groups use.

    Setting MPSSupport through the chart also gives the kubelet plugin the Role that lets
    it create the per-claim MPS control daemon Deployments (rbac-kubeletplugin.yaml).
    """
    gates = {
        SHARING_GATES[cfg.get("vllm_gpu_sharing", "exclusive")]: True
        for cfg in peers
        if cfg.get("vllm_gpu_sharing", "exclusive") in SHARING_GATES
    }
    values: dict = {
        # The release keeps the 25.x chart's name (nvidia-dra-driver-gpu) so that a
        # cluster that has it is upgraded in place; the renamed chart (0.4.0) then needs
        # its old name too, or it creates its DaemonSet and Deployment beside the old
        # ones (upstream's upgrade guide, "Upgrade from v25.x").
        "nameOverride": DRA_DRIVER_RELEASE,
        "nvidiaDriverRoot": "/",
        # The driver cannot run beside the device plugin (its reference/helm-values.md).
        "gpuResourcesEnabledOverride": True,
        # ComputeDomains (multi-node NVLink, IMEX) serve nothing here, and their part of
        # the driver needs NVIDIA driver 570.158.01 or later: off, no controller.
        "resources": {"gpus": {"enabled": True}, "computeDomains": {"enabled": False}},
    }
    if gates:
        values["featureGates"] = dict(sorted(gates.items()))
    return values


def kind_config(cfg: dict) -> dict:
    """A kind cluster with DRA on, CDI in containerd, and the GPUs handed to the worker."""
    version = str(cfg["vllm_kubernetes_version"])
    worker: dict = {"role": "worker", "image": f"kindest/node:v{version}"}
    if not cfg.get("vllm_use_cpu_inference"):
        # The driver's kubelet plugin runs only on nodes with this label (or NFD's).
        worker["labels"] = {GPU_NODE_LABEL: "true"}
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


MINIKUBE_GPU_MOUNT = "/dev/null:/var/run/nvidia-container-devices/cdi/runtime.nvidia.com/gpu/all"


def minikube_args(cfg: dict) -> list[str]:
    """`minikube start` arguments for a cluster with DRA on.

    GPUs for DRA: containerd, not docker: with docker the node runs cri-dockerd, whose
    released versions do not inject DRA's CDI devices (Mirantis/cri-dockerd#558); and no
    `--gpus`, which only works with docker and turns on minikube's device plugin, which
    must not run beside the DRA driver. The node container gets the host's GPUs as kind's
    worker does, from the NVIDIA runtime (docker's default) through the volume-mount path.
    """
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
    elif not uses_dra(cfg):
        # The device plugin: minikube's documented GPU path (its nvidia tutorial).
        args += ["--driver=docker", "--container-runtime=docker", "--gpus=all"]
    else:
        args += [
            "--driver=docker",
            "--container-runtime=containerd",
            "--mount=true",
            f"--mount-string={MINIKUBE_GPU_MOUNT}",
        ]
    return args


def ingress(cfg: dict, timeout_s: int) -> dict:
    """NGINX ingress to the group's router; proxy timeouts outlast long generations.
    Only on existing clusters: on one servelab creates, nothing would install an ingress
    controller, map its ports or make the host names resolve."""
    if cfg.get("vllm_platform") != "existing_cluster":
        raise KubeConfigError(
            f"ingress on a {cfg.get('vllm_platform')} cluster leads nowhere (no ingress "
            "controller, no DNS for its host names): ingress is for an existing cluster "
            "(CONFIG_VLLM_PLATFORM_EXISTING_CLUSTER); use "
            "CONFIG_VLLM_PROD_STACK_ACCESS_PORT_FORWARD"
        )
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


def collection_dir() -> Path:
    """This collection's directory (.../ansible_collections/servelab/vllm), as loaded."""
    # Not resolved: in a checkout the collection is loaded through collections/'s link,
    # and the post-renderer finds the collection root the same way.
    here = Path(__file__).absolute()
    return next(p for p in here.parents if p.parent.parent.name == "ansible_collections")


POST_RENDERER = "bin/servelab-post-renderer"


def post_renderer_script(cfg: dict, python: str, peers: list[dict] | None = None) -> str:
    """The executable Helm 3 runs as --post-renderer for this group's release."""
    argv = [python, str(collection_dir() / POST_RENDERER), release_name(cfg)]
    if peers and shares_one_claim(peers):
        argv += ["--claim", shared_claim_name(peers)]
    else:
        argv.append(claim_template_name(cfg))
    return (
        "#!/bin/sh\n"
        "# Written by servelab: adds the group's DRA claim to the vllm-stack engine\n"
        "# Deployments on every helm install and upgrade (kube.add_claims).\n"
        f"exec {shlex.join(argv)}\n"
    )


def add_claims(docs: list, release: str, template: str = "", claim: str = "") -> list:
    """Give the chart's engine Deployments of `release` their DRA claim.

    The vllm-stack chart has no value for a pod's resourceClaims, so this runs as a Helm
    post-renderer: on every install and upgrade, after the chart rendered and before
    anything is applied. It adds the pod-level claim (from the group's `template`, one
    claim per pod, or the one shared `claim` of all groups) and the engine container's use
    of it, and drops any nvidia.com/gpu request, which DRA replaces. (Their Recreate
    strategy is a value: stack_values.)
    """
    if bool(template) == bool(claim):
        raise KubeConfigError("post-renderer: give a claim template or a shared claim, not both")
    source = {"resourceClaimName": claim} if claim else {"resourceClaimTemplateName": template}
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
        pod["resourceClaims"] = [*claims, {"name": CLAIM_NAME, **source}]
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
