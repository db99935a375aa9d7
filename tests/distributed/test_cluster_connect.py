"""Connecting to the simulated cluster: what a wrong address says, and the cluster still there after it."""
import pytest

pytestmark = pytest.mark.ray


def test_an_address_that_is_no_cluster_is_one_clear_error_then_back(on_cluster, ray_cluster, isolated_env):
    from core.distributed.connect import ClusterError, connect
    with pytest.raises(ClusterError, match="cannot use the Ray cluster at 'no-such-host'"):
        connect("no-such-host", isolated_env)
    assert connect(ray_cluster.address, isolated_env).nodes == 3  # and the cluster is still there to go back to
