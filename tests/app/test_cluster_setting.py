"""The app's Ray switch in the sidebar: empty runs here; an address it cannot use says why, and the app goes on."""
import sys

import pytest

from core.executor import current
from tests.app.test_pages import app_env, run_page  # noqa: F401  (app_env: a fixture)

pytestmark = pytest.mark.app


def test_no_cluster_named_runs_here(app_env, monkeypatch):
    monkeypatch.delenv("ATELIER_RAY", raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # importing it would fail: it is never imported
    at = run_page()
    assert at.sidebar.text_input(key="app_ray").value == ""
    assert not at.sidebar.error and current() is None


def test_cluster_without_ray_installed_says_how_to_install(app_env, monkeypatch):
    monkeypatch.setenv("ATELIER_RAY", "local")
    monkeypatch.setitem(sys.modules, "ray", None)
    at = run_page()
    assert any("requirements-ray.txt" in e.value for e in at.sidebar.error)
    assert current() is None
    at.sidebar.text_input(key="app_ray").set_value("").run()  # cleared: back to this process, no error
    assert not at.sidebar.error and not at.exception
