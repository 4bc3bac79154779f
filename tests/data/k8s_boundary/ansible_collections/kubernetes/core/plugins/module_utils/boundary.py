"""Record a module call instead of talking to a cluster (test stand-in).

With $K8S_BOUNDARY_CLUSTER set, the stand-in keeps the cluster's state in that JSON file
(a list of objects) and answers as the API server, helm and kubernetes.core document:
- k8s applies `src` files client-side, as kubernetes.core does: a GET, then a create of
  what was missing. A create whose object appeared meanwhile (another host applied it
  between the two) is refused with 409 AlreadyExists. A ResourceClaim(Template) whose
  spec changed under the same name is refused (their spec is immutable). state=absent
  deletes by name or, with delete_all, by label selector (key=value, key!=value, key);
  a ResourceClaim that running pods reserve is refused (the API server would keep it,
  terminating, until they stop: a wait for its deletion times out).
- helm keeps a "Release" object per release: its values, chart version, the shared
  claim its engine pods reserve (modelSpec podAnnotations servelab/claim) and their
  replicas. As kubernetes.core.helm's default_check, an upgrade with the same values
  and chart version is skipped (changed false, the pods untouched). One GPU: a release
  whose engine pods would reserve a shared claim while another release's pods still
  reserve a different one never becomes ready (the new claim finds no free device):
  with wait, it fails as helm's --wait does. The engine Deployments roll Recreate
  (the post-renderer's strategy), so a release's own old pods stop first.
- k8s_scale sets the replicas of the release its label selectors name
  (helm-release-name=...).
- k8s_info lists the stored objects of a kind that match its name, label selectors and
  field selectors (status.phase=...), in its namespace or, without one, in all.
- k8s_exec runs in a stored Pod: its command must split as kubernetes.core splits it
  (shlex). A `python3 -c` program is decoded and compiled (a syntax error fails as the
  pod would), then answered with the Pod's "answers"["probe"]. A `chroot /driver-root sh
  -c SCRIPT` runs SCRIPT here with sh, the Pod's "path" first on PATH (the tools of the
  host's driver root, stand-ins the test writes). A missing pod fails as the API server's
  404 does.
"""

import base64
import fcntl
import json
import os
import re
import shlex
import subprocess
import sys
import time

import yaml
from ansible.module_utils.basic import _load_params

RESULTS = {
    "k8s_cluster_info": {"version": {"server": {"kubernetes": {"gitVersion": "v1.34.0"}}}},
    "k8s_info": {"resources": []},
    "helm": {"status": {"status": "deployed"}},
    "k8s": {"result": {}},
    "k8s_scale": {"result": {}},
    "k8s_exec": {},
}
IMMUTABLE_SPEC = ("ResourceClaim", "ResourceClaimTemplate")
CLAIM_ANNOTATION = "servelab/claim"
# Between a client-side apply's GET and its create: long enough that two hosts applying
# one object in the same task (ansible's forks start together) both find it missing.
RACE_WINDOW_S = 1.0


class Refused(Exception):
    """What the API server or helm answers instead of doing the call."""


def _selected(labels: dict, selectors: list) -> bool:
    for term in selectors:
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
        elif term not in labels:
            return False
    return True


class Cluster:
    """The stand-in's objects, read and written under a lock: the groups' hosts call in
    parallel, and a read between another call's truncate and write found an empty file
    (seen in a CI rehearsal)."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self) -> list:
        self._lock = open(self.path + ".lock", "a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.objects = []
        if os.path.exists(self.path):
            with open(self.path) as state:
                self.objects = json.load(state)
        return self.objects

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            with open(self.path + ".tmp", "w") as out:
                json.dump(self.objects, out)
            os.replace(self.path + ".tmp", self.path)  # whole, for readers that do not lock
        self._lock.close()


def _key(obj: dict) -> tuple:
    return (obj["kind"], obj["namespace"], obj["name"])


def _docs(params: dict) -> list[dict]:
    with open(params["src"]) as src:
        return [
            {
                "kind": d["kind"],
                "namespace": d["metadata"].get("namespace"),
                "name": d["metadata"]["name"],
                "labels": d["metadata"].get("labels") or {},
                "spec": d["spec"],
            }
            for d in yaml.safe_load_all(src)
            if d
        ]


def _reserving(objects: list, claim: dict) -> list[str]:
    """The releases whose running engine pods reserve the shared claim `claim`."""
    return [
        r["name"]
        for r in objects
        if r["kind"] == "Release"
        and r["namespace"] == claim["namespace"]
        and r["spec"]["claim"] == claim["name"]
        and r["spec"]["replicas"] > 0
    ]


def _k8s(path: str, params: dict) -> None:
    if params.get("state") == "present" and params.get("src"):
        docs = _docs(params)
        with Cluster(path) as objects:
            missing = {_key(d) for d in docs} - {_key(o) for o in objects}
        if missing:
            time.sleep(RACE_WINDOW_S)
        with Cluster(path) as objects:
            for doc in docs:
                old = [o for o in objects if _key(o) == _key(doc)]
                if old and _key(doc) in missing:
                    raise Refused(
                        f'{doc["kind"]} "{doc["name"]}" already exists (409 AlreadyExists: '
                        "created by another client after this apply's GET)"
                    )
                if old and doc["kind"] in IMMUTABLE_SPEC and old[0]["spec"] != doc["spec"]:
                    raise Refused(
                        f"{doc['kind']} {doc['name']} is invalid: spec: field is immutable"
                    )
                objects[:] = [o for o in objects if o not in old] + [doc]
    elif params.get("state") == "absent":

        def gone(obj):
            if obj["kind"] != params.get("kind") or obj["namespace"] != params.get("namespace"):
                return False
            if params.get("name"):
                return obj["name"] == params["name"]
            return bool(params.get("delete_all")) and _selected(
                obj["labels"], params.get("label_selectors") or []
            )

        with Cluster(path) as objects:
            for obj in filter(gone, list(objects)):
                if obj["kind"] == "ResourceClaim" and _reserving(objects, obj):
                    raise Refused(
                        f"ResourceClaim {obj['name']} is reserved by the engine pods of "
                        f"{', '.join(_reserving(objects, obj))}: it stays until they stop"
                    )
            objects[:] = [o for o in objects if not gone(o)]


def _values(params: dict) -> dict:
    merged: dict = {}
    for name in params.get("values_files") or []:
        with open(name) as values:
            merged.update(yaml.safe_load(values) or {})
    return merged


def _helm(path: str, params: dict) -> bool:
    """Whether the release changed."""
    key = ("Release", params.get("release_namespace"), params["name"])
    with Cluster(path) as objects:
        old = [o for o in objects if _key(o) == key]
        if params.get("state") == "absent":
            objects[:] = [o for o in objects if o not in old]
            return bool(old)
        values = _values(params)
        if old and (old[0]["spec"]["values"], old[0]["spec"]["chart_version"]) == (
            values,
            params.get("chart_version"),
        ):
            return False  # kubernetes.core's default_check: no upgrade
        engines = (values.get("servingEngineSpec") or {}).get("modelSpec") or [{}]
        claim = (engines[0].get("podAnnotations") or {}).get(CLAIM_ANNOTATION)
        shared = {
            o["name"] for o in objects if o["kind"] == "ResourceClaim" and o["namespace"] == key[1]
        }
        if claim in shared and params.get("wait"):
            held = [
                o["name"]
                for o in objects
                if o["kind"] == "Release"
                and o["name"] != key[2]
                and o["spec"]["replicas"] > 0
                and o["spec"]["claim"] in shared
                and o["spec"]["claim"] != claim
            ]
            if held:
                raise Refused(
                    f"release {key[2]} failed: timed out waiting for the condition (its engine "
                    f"pod stays Pending: claim {claim} finds no free device while the pods of "
                    f"{', '.join(held)} reserve another claim on the GPU)"
                )
        release = {"kind": "Release", "namespace": key[1], "name": key[2], "labels": {}}
        release["spec"] = {
            "values": values,
            "chart_version": params.get("chart_version"),
            "claim": claim,
            "replicas": sum(int(e.get("replicaCount", 1)) for e in engines),
        }
        objects[:] = [o for o in objects if o not in old] + [release]
        return True


def _scale(path: str, params: dict) -> bool:
    names = [
        t.split("=", 1)[1]
        for t in params.get("label_selectors") or []
        if t.startswith("helm-release-name=")
    ]
    with Cluster(path) as objects:
        changed = False
        for obj in objects:
            if (
                obj["kind"] == "Release"
                and obj["name"] in names
                and obj["namespace"] == params.get("namespace")
            ):
                changed |= obj["spec"]["replicas"] != params["replicas"]
                obj["spec"]["replicas"] = params["replicas"]
        return changed


def _fields(obj: dict, selectors: list) -> bool:
    for term in selectors:
        key, value = term.split("=", 1)
        if key == "status.phase" and (obj.get("status") or {}).get("phase") != value:
            return False
    return True


def _info(path: str, params: dict) -> list[dict]:
    with Cluster(path) as objects:
        return [
            {
                "kind": o["kind"],
                "metadata": {
                    "name": o["name"], "namespace": o["namespace"], "labels": o["labels"],
                    **({"uid": o["uid"]} if o.get("uid") else {}),
                },
                "spec": o.get("spec") or {},
                "status": o.get("status") or {},
            }
            for o in objects
            if o["kind"] == params.get("kind")
            and (not params.get("namespace") or o["namespace"] == params.get("namespace"))
            and (not params.get("name") or o["name"] == params.get("name"))
            and _selected(o["labels"], params.get("label_selectors") or [])
            and _fields(o, params.get("field_selectors") or [])
        ]  # fmt: skip


def _exec(path: str, params: dict) -> dict:
    with Cluster(path) as objects:
        pods = [
            o for o in objects
            if (o["kind"], o["namespace"], o["name"]) == ("Pod", params["namespace"], params["pod"])
        ]  # fmt: skip
    if not pods:
        raise Refused(
            f"Failed to execute on pod {params['pod']} due to : (404) pods "
            f'"{params["pod"]}" not found'
        )
    argv = shlex.split(params["command"])
    if argv[:2] == ["python3", "-c"]:
        encoded = re.search(r"b64decode\('([A-Za-z0-9+/=]+)'\)", argv[2])
        program = base64.b64decode(encoded[1]).decode() if encoded else argv[2]
        compile(program, "<kubectl exec>", "exec")
        return pods[0]["answers"]["probe"]
    if argv[:4] == ["chroot", "/driver-root", "sh", "-c"]:
        env = {**os.environ, "PATH": f"{pods[0]['path']}:{os.environ['PATH']}"}
        done = subprocess.run(["sh", "-c", argv[4]], capture_output=True, text=True, env=env)
        return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    raise Refused(f"the stand-in has no answer to {params['command']!r}")


def record(name):
    params = {k: v for k, v in _load_params().items() if not k.startswith("_ansible")}
    start = time.time()
    if name == "helm":
        time.sleep(1)  # a release takes time: installs run in parallel would overlap
    result = {"changed": name in ("helm", "k8s", "k8s_scale"), **RESULTS[name]}
    path = os.environ.get("K8S_BOUNDARY_CLUSTER")
    error = ""
    try:
        if path and name == "k8s":
            _k8s(path, params)
        elif path and name == "helm":
            result["changed"] = _helm(path, params)
        elif path and name == "k8s_scale":
            result["changed"] = _scale(path, params)
        elif path and name == "k8s_info":
            result["resources"] = _info(path, params)
        elif path and name == "k8s_exec":
            result.update(_exec(path, params))
            result["return_code"] = result["rc"]
    except Refused as err:
        error = str(err)
    call = {"module": name, "params": params, "start": start, "end": time.time(), "error": error}
    with open(os.environ["K8S_BOUNDARY_LOG"], "a") as out:
        out.write(json.dumps(call) + "\n")
    if error:
        print(json.dumps({"failed": True, "msg": error}))
        sys.exit(1)
    print(json.dumps(result))
    sys.exit(0)
