"""The NVIDIA driver version check of bringup's preflight (k8s_cluster, DRA driver)."""

import pytest
from ansible_collections.servelab.vllm.plugins.module_utils import gpu


def test_driver_versions_compare_as_numbers_per_gpu():
    assert gpu.driver_versions_below("570.158.01\n565.57.01\n", "565") == []
    assert gpu.driver_versions_below("565\n", "565") == []
    # As text "1000" < "565" and "99.1" > "565": the comparison must be numeric.
    assert gpu.driver_versions_below("1000.1\n", "565") == []
    assert gpu.driver_versions_below("560.35.03\n99.1\n", "565") == ["560.35.03", "99.1"]
    assert gpu.driver_versions_below("570.124.06\n", "570.158.01") == ["570.124.06"]
    # One GPU of two below: the host fails.
    assert gpu.driver_versions_below("580.65.06\n550.54.15\n", "565") == ["550.54.15"]


def test_unreadable_driver_output_fails_clearly():
    with pytest.raises(gpu.DriverVersionError, match="no driver version"):
        gpu.driver_versions_below("\n", "565")
    with pytest.raises(ValueError, match="not an NVIDIA driver version"):
        gpu.driver_versions_below("NVIDIA-SMI has failed\n", "565")
