"""The app's Ray switch against the simulated cluster: the sidebar says where batch stages run, for the process."""
import pytest

from core.executor import current, use
from tests.app.test_pages import app_env, run_page  # noqa: F401  (app_env: a fixture)

pytestmark = pytest.mark.ray


def test_sidebar_connects_and_says_where_batches_run(app_env, ray_cluster, monkeypatch):
    monkeypatch.setenv("ATELIER_RAY", ray_cluster.address)
    try:
        at = run_page()
        assert any("on Ray at" in c.value and "3 nodes" in c.value for c in at.sidebar.caption)
        assert current() is not None and current().name == "ray"
        at.sidebar.text_input(key="app_ray").set_value("").run()
        assert current() is None
    finally:
        use(None)
