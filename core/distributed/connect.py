"""The one switch: which Ray cluster Atelier runs on, and the check that every node sees the artefact cache."""
from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from core.config import PROJECT_ROOT
from core.distributed.batches import RayData
from core.executor import use

RAY_ENV = "ATELIER_RAY"
INSTALL_HINT = "pip install -r requirements-ray.txt"
PROBE_DIR = ".cluster-probe"


class ClusterError(RuntimeError):
    """A cluster was asked for and cannot be used as asked: the message says what is wrong and the fix."""


def ray_address(arg: str | None = None) -> str | None:
    """The cluster asked for: ``arg`` (``--ray``), else ``$ATELIER_RAY``; None (or "") runs in this process.
    ``auto``: the running cluster this machine belongs to; ``local``: start one on this machine;
    ``ray://host:10001`` or ``host:6379``: that cluster."""
    address = (arg if arg is not None else os.environ.get(RAY_ENV, "")).strip()
    return address or None


def import_ray():
    """The ``ray`` module, or a ClusterError saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ClusterError(f"a Ray cluster was asked for (--ray or {RAY_ENV}) but Ray is not installed "
                           f"({e}); install it with: {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class Cluster:
    """The cluster this process is connected to."""
    address: str
    nodes: int
    cpus: float


def runtime_env() -> dict:
    """What every worker gets: Atelier's own package (``core/``) shipped to each node, so a node needs the same
    Python environment (requirements.txt and requirements-ray.txt) but not the checkout."""
    return {"py_modules": [str(PROJECT_ROOT / "core")],
            "excludes": ["__pycache__", "*.pyc"]}


def connect(address: str, cache_root: str | os.PathLike) -> Cluster:
    """Connect to the cluster at ``address`` (see :func:`ray_address`) unless already connected, check that every
    node sees ``cache_root`` (:func:`check_shared_cache`), and send batch work there from now on (:class:`RayData`
    installed as :func:`core.executor.current`)."""
    ray = import_ray()
    _check_not_url(str(cache_root))  # before starting anything
    if not ray.is_initialized():
        try:
            if address == "local":
                ray.init(runtime_env=runtime_env(), include_dashboard=False, logging_level="WARNING",
                         log_to_driver=False)
            else:
                ray.init(address=address, runtime_env=runtime_env(), logging_level="WARNING", log_to_driver=False)
        except ConnectionError as e:
            raise ClusterError(f"cannot reach the Ray cluster at {address!r} ({e}). Start one with "
                               f"`ray start --head`, or use --ray local for one on this machine") from None
    check_shared_cache(cache_root)
    use(RayData())
    resources = ray.cluster_resources()
    return Cluster(address, len([n for n in ray.nodes() if n["Alive"]]), float(resources.get("CPU", 0)))


def _url_scheme(root: str) -> str | None:
    """``s3`` of ``s3://bucket/x``, also as a Path has folded it (``s3:/bucket/x``); None for a path."""
    found = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):/", root)
    return found.group(1) if found else None


def _check_not_url(root: str) -> None:
    scheme = _url_scheme(root)
    if scheme:
        raise ClusterError(f"the artefact cache {root!r} is a {scheme}:// URL: Atelier's cache is a filesystem "
                           f"(atomic renames, file locks). Mount the bucket at one path on every node (e.g. "
                           f"mountpoint-s3, gcsfuse, blobfuse2) and set ATELIER_CACHE to that path")


def node_sees(path: str, token: str) -> str:
    """On a node: "" when ``path`` holds ``token``, else what the node finds there instead."""
    try:
        found = Path(path).read_text()
    except OSError as e:
        return f"cannot read it ({e.__class__.__name__}: {e.strerror or e})"
    return "" if found == token else "it holds another run's probe"


def check_shared_cache(cache_root: str | os.PathLike) -> None:
    """Raise a ClusterError unless every alive node of the connected cluster reads, at the same path, a probe file
    written here into ``cache_root``: workers write features and tables into the cache and this process reads
    them back, so the cache must be one filesystem every node mounts at one path (NFS, a cloud file share, a
    bucket mounted with a FUSE driver such as mountpoint-s3 or gcsfuse)."""
    ray = import_ray()
    root = str(cache_root)
    _check_not_url(root)
    probe = Path(root) / PROBE_DIR / f"{uuid.uuid4().hex}.txt"
    token = uuid.uuid4().hex
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(token)
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        check = ray.remote(num_cpus=0)(node_sees)
        nodes = [n for n in ray.nodes() if n["Alive"]]
        answers = ray.get([check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                           .remote(str(probe), token) for n in nodes])
    finally:
        probe.unlink(missing_ok=True)
    blind = [f"{n['NodeManagerAddress']} ({n['NodeID'][:8]}): {answer}" for n, answer in zip(nodes, answers) if answer]
    if blind:
        raise ClusterError(f"the artefact cache {root} is not shared with every node of the cluster: a file written "
                           f"there by this process is not seen at the same path by " + "; ".join(blind)
                           + ". Put the cache on storage every node mounts at one path (NFS, a cloud file share, a "
                           "bucket through mountpoint-s3 or gcsfuse) and set ATELIER_CACHE to it")


def disconnect() -> None:
    """Leave the cluster (and stop it when ``local`` started it here); batch work runs in this process again."""
    use(None)
    ray = import_ray()
    if ray.is_initialized():
        ray.shutdown()
