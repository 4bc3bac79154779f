"""Record a module call instead of talking to a cluster (test stand-in).

With $K8S_BOUNDARY_CLUSTER set, k8s also keeps the objects applied from `src` files in
that JSON file, as an API server would: a ResourceClaim(Template) whose spec changed
under the same name is refused (their spec is immutable), and state=absent deletes by
name or, with delete_all, by label selector (key=value, key!=value, key).
"""

import fcntl
import json
import os
import sys
import time

import yaml
from ansible.module_utils.basic import _load_params

RESULTS = {
    "k8s_cluster_info": {"version": {"server": {"kubernetes": {"gitVersion": "v1.34.0"}}}},
    "k8s_info": {"resources": []},
    "helm": {"status": {"status": "deployed"}},
    "k8s": {"result": {}},
}
IMMUTABLE_SPEC = ("ResourceClaim", "ResourceClaimTemplate")


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


def _cluster(params: dict) -> str:
    """Apply the call to the stand-in's objects; an error message, or ''. One call at a
    time: the groups' hosts call k8s in parallel, and a read between another call's
    truncate and write found an empty file (seen in a CI rehearsal)."""
    path = os.environ.get("K8S_BOUNDARY_CLUSTER")
    if not path:
        return ""
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _apply(path, params)


def _apply(path: str, params: dict) -> str:
    objects = []
    if os.path.exists(path):
        with open(path) as state:
            objects = json.load(state)
    if params.get("state") == "present" and params.get("src"):
        with open(params["src"]) as src:
            for doc in (d for d in yaml.safe_load_all(src) if d):
                key = (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
                old = [o for o in objects if (o["kind"], o["namespace"], o["name"]) == key]
                if old and doc["kind"] in IMMUTABLE_SPEC and old[0]["spec"] != doc["spec"]:
                    return f"{doc['kind']} {key[2]} is invalid: spec: field is immutable"
                objects = [o for o in objects if o not in old]
                objects.append(
                    {
                        "kind": key[0],
                        "namespace": key[1],
                        "name": key[2],
                        "labels": doc["metadata"].get("labels") or {},
                        "spec": doc["spec"],
                    }
                )
    elif params.get("state") == "absent":

        def gone(obj):
            if obj["kind"] != params.get("kind") or obj["namespace"] != params.get("namespace"):
                return False
            if params.get("name"):
                return obj["name"] == params["name"]
            return bool(params.get("delete_all")) and _selected(
                obj["labels"], params.get("label_selectors") or []
            )

        objects = [o for o in objects if not gone(o)]
    with open(path + ".tmp", "w") as out:
        json.dump(objects, out)
    os.replace(path + ".tmp", path)  # whole, for readers that do not lock
    return ""


def record(name):
    params = {k: v for k, v in _load_params().items() if not k.startswith("_ansible")}
    start = time.time()
    if name == "helm":
        time.sleep(1)  # a release takes time: installs run in parallel would overlap
    call = {"module": name, "params": params, "start": start, "end": time.time()}
    with open(os.environ["K8S_BOUNDARY_LOG"], "a") as out:
        out.write(json.dumps(call) + "\n")
    error = _cluster(params) if name == "k8s" else ""
    if error:
        print(json.dumps({"failed": True, "msg": error}))
        sys.exit(1)
    print(json.dumps({"changed": name in ("helm", "k8s"), **RESULTS[name]}))
    sys.exit(0)
