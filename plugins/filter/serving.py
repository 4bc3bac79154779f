# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the typed settings into command lines, Kubernetes objects and the
conventions of a node (its paths, its loopback, its pip source)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.servelab.vllm.plugins.module_utils import gpu, mps, net
from ansible_collections.servelab.vllm.plugins.plugin_utils import commands, kube, node


def _wrap(func):
    def call(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (KeyError, ValueError) as err:
            raise AnsibleFilterError(f"{func.__name__}: {err}") from err

    call.__name__ = func.__name__
    call.__doc__ = func.__doc__
    return call


class FilterModule:
    """servelab.vllm serving filters."""

    def filters(self):
        return {
            "engine_package": _wrap(commands.engine_package),
            "engine_requirements": _wrap(commands.engine_requirements),
            "engine_argv": _wrap(commands.engine_argv),
            "engine_env": _wrap(commands.engine_env),
            "engine_urls": _wrap(commands.engine_urls),
            "engine_turns": _wrap(commands.engine_turns),
            "router_argv": _wrap(commands.router_argv),
            "k8s_stack_values": _wrap(kube.stack_values),
            "mps_cluster_commands": _wrap(mps.cluster_commands),
            "k8s_exec_answer": _wrap(mps.exec_answer),
            "k8s_claim_template": _wrap(kube.claim_template),
            "k8s_shared_claim": _wrap(kube.shared_claim),
            "k8s_shared_claim_name": _wrap(kube.shared_claim_name),
            "k8s_shares_one_claim": _wrap(kube.shares_one_claim),
            "k8s_dra_driver_values": _wrap(kube.dra_driver_values),
            "k8s_kind_config": _wrap(kube.kind_config),
            "k8s_minikube_args": _wrap(kube.minikube_args),
            "k8s_ingress": _wrap(kube.ingress),
            "k8s_release_name": _wrap(kube.release_name),
            "k8s_secret_name": _wrap(kube.secret_name),
            "k8s_uses_dra": _wrap(kube.uses_dra),
            "k8s_post_renderer": _wrap(kube.post_renderer_script),
            "home_path": _wrap(node.home_path),
            "stack_dir": _wrap(node.stack_dir),
            "mps_dir": _wrap(node.mps_dir),
            "render_dir": _wrap(node.render_dir),
            "group_peers": _wrap(node.group_peers),
            "stack_url": _wrap(commands.stack_url),
            "pip_source_args": _wrap(node.pip_source_args),
            "client_host": _wrap(net.client_host),
            "driver_versions_below": _wrap(gpu.driver_versions_below),
        }
