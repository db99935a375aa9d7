"""The simulated cluster: a Ray head and two worker nodes on this machine, one CPU each, shared by the session's
cluster tests (marked ``ray``: ``pytest -m ray`` runs exactly them; ``make test-ray``). Ray is imported only inside
the fixtures, so the fast suite collects this folder without it."""
from __future__ import annotations

import pytest

NODES = 3  # the head and two workers
NODE_CPUS = 1


@pytest.fixture(scope="session")
def ray_cluster():
    """The running simulated cluster (``ray.cluster_utils.Cluster``), this process connected to it."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-ray.txt (make test-ray)")
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": NODE_CPUS})
    for _ in range(NODES - 1):
        cluster.add_node(num_cpus=NODE_CPUS)
    cluster.wait_for_nodes()
    yield cluster
    from core.distributed.connect import disconnect
    disconnect()
    cluster.shutdown()


@pytest.fixture
def on_cluster(ray_cluster, isolated_env):
    """Batch work of this test goes to the simulated cluster (``--ray`` given), its cache the test's own."""
    from core.distributed.connect import connect
    from core.executor import use
    yield connect(ray_cluster.address, isolated_env)
    use(None)
