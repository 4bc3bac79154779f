#!/usr/bin/python
"""Test stand-in: records the call (see module_utils/boundary.py)."""

from ansible_collections.kubernetes.core.plugins.module_utils.boundary import record

if __name__ == "__main__":
    record("k8s_exec")
