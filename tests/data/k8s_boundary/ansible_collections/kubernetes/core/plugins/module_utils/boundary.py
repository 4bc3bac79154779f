"""Record a module call instead of talking to a cluster (test stand-in)."""

import json
import os
import sys

from ansible.module_utils.basic import _load_params

RESULTS = {
    "k8s_cluster_info": {"version": {"server": {"kubernetes": {"gitVersion": "v1.34.0"}}}},
    "k8s_info": {"resources": []},
    "helm": {"status": {"status": "deployed"}},
    "k8s": {"result": {}},
}


def record(name):
    params = {k: v for k, v in _load_params().items() if not k.startswith("_ansible")}
    with open(os.environ["K8S_BOUNDARY_LOG"], "a") as out:
        out.write(json.dumps({"module": name, "params": params}) + "\n")
    print(json.dumps({"changed": name in ("helm", "k8s"), **RESULTS[name]}))
    sys.exit(0)
