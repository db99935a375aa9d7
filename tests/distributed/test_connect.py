"""The switch without a cluster: which address is asked for, and the errors when Ray or a shared cache is missing
(no Ray needed)."""
from __future__ import annotations

import os
import sys

import pytest

from core.config import url_scheme
from core.distributed.connect import ClusterError, check_shared_cache, import_ray, node_sees, ray_address


def test_address_from_argument_then_environment(monkeypatch):
    monkeypatch.delenv("ATELIER_RAY", raising=False)
    assert ray_address(None) is None and ray_address("") is None
    monkeypatch.setenv("ATELIER_RAY", " auto ")
    assert ray_address(None) == "auto"
    assert ray_address("ray://head:10001") == "ray://head:10001"  # the flag wins over the environment


def test_missing_ray_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ClusterError, match="requirements-ray.txt"):
        import_ray()


def test_cli_without_ray_stops_with_the_fix(monkeypatch, capsys):
    from core.__main__ import main
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(SystemExit) as stop:
        main(["validate", "--catalog", "synthetic:10:0", "--ray", "local"])
    assert "pip install -r requirements-ray.txt" in str(stop.value.code)


def test_no_cluster_named_runs_in_process(monkeypatch, capsys):
    from core.__main__ import main
    from core.executor import current
    monkeypatch.delenv("ATELIER_RAY", raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # never imported: it would fail
    main(["validate", "--catalog", "synthetic:10:0"])
    assert current() is None


def test_object_store_url_is_refused_with_the_fix(monkeypatch):
    assert url_scheme("s3://bucket/cache") == "s3" and url_scheme("s3:/bucket/cache") == "s3"
    assert url_scheme("/mnt/shared/cache") is None and url_scheme("cache") is None
    monkeypatch.setitem(sys.modules, "ray", object())  # stands in: the URL is refused before Ray is used
    with pytest.raises(ClusterError, match="shared filesystem"):
        check_shared_cache("gs://bucket/cache")


def test_a_node_reports_what_it_sees(tmp_path):
    probe = tmp_path / "probe.txt"
    assert "cannot read it" in node_sees(str(probe), "token")
    probe.write_text("token")
    assert node_sees(str(probe), "token") == ""
    assert node_sees(str(probe), "another") == "it holds another run's probe"


def test_serve_ingress_is_in_the_environment_before_the_cluster_starts(monkeypatch):
    from core import __main__ as cli
    from core.distributed import connect
    seen = {}

    def refuse(address, root):
        seen["env"] = os.environ.get("RAY_SERVE_ENABLE_HA_PROXY")
        raise ClusterError("no cluster in this test")

    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    monkeypatch.setattr(connect, "connect", refuse)
    with pytest.raises(SystemExit, match="no cluster in this test"):
        cli.main(["serve", "--catalog", "synthetic:10:0", "--ray", "local", "--ingress", "haproxy"])
    assert seen["env"] == "1"  # (monkeypatch's record of the variable's absence removes it again after the test)
