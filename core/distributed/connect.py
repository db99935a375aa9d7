"""The one switch: which Ray cluster Atelier runs on, and the check that every node sees the artefact cache."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from core.config import PROJECT_ROOT, url_scheme
from core.distributed.batches import RayData
from core.executor import use

RAY_ENV = "ATELIER_RAY"
INSTALL_HINT = "pip install -r requirements-ray.txt"
PROBE_DIR = ".cluster-probe"
SHARED_FS = "a shared filesystem every node mounts at that one path (NFS, EFS, Filestore, Azure Files over NFS)"


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
    Python environment (requirements.txt and requirements-ray.txt) but not the checkout; and this process's
    ``ATELIER_*`` settings (``ATELIER_RUNTIME``, ``ATELIER_OFFLINE``, ...), so a worker runs as this process would,
    and its ``RAY_SERVE_*`` ones (the service's ingress, see :data:`core.distributed.serving.INGRESS`)."""
    return {"py_modules": [str(PROJECT_ROOT / "core")], "excludes": ["__pycache__", "*.pyc"],
            "env_vars": {k: v for k, v in os.environ.items() if k.startswith(("ATELIER_", "RAY_SERVE_"))}}


_connected: str | None = None  # the address this process connected to


def connect(address: str, cache_root: str | os.PathLike) -> Cluster:
    """Connect to the cluster at ``address`` (see :func:`ray_address`; connected to another one, leave it first),
    check that every node sees ``cache_root`` (:func:`check_shared_cache`), and send batch work and training there
    from now on (:class:`RayData` installed as :func:`core.executor.current`)."""
    global _connected
    ray = import_ray()
    _check_not_url(str(cache_root))  # before starting anything
    if ray.is_initialized() and _connected not in (None, address):
        disconnect()
    if not ray.is_initialized():
        try:
            # "local" always starts a cluster here (not one RAY_ADDRESS names)
            ray.init(address=address, runtime_env=runtime_env(), logging_level="WARNING", log_to_driver=False,
                     **({"include_dashboard": False} if address == "local" else {}))
        except (ConnectionError, RuntimeError, ValueError, TimeoutError, OSError) as e:
            raise ClusterError(f"cannot use the Ray cluster at {address!r} ({e.__class__.__name__}: "
                               f"{str(e).splitlines()[0][:300] if str(e) else ''}). Start one with `ray start "
                               f"--head`, join it with --ray auto (on its machines) or --ray ray://HEAD:10001, or "
                               f"use --ray local for one on this machine") from None
    _connected = address
    check_shared_cache(cache_root)
    use(RayData())
    resources = ray.cluster_resources()
    return Cluster(address, len([n for n in ray.nodes() if n["Alive"]]), float(resources.get("CPU", 0)))


def _check_not_url(root: str) -> None:
    scheme = url_scheme(root)
    if scheme:
        raise ClusterError(f"the artefact cache {root!r} is a {scheme}:// URL: Atelier's cache is a folder written "
                           f"with atomic renames and file locks, which object stores (and the FUSE mounts of "
                           f"buckets) do not give. Put it on {SHARED_FS} and set ATELIER_CACHE to that path")


def node_sees(path: str, token: str) -> str:
    """On a node: "" when ``path`` holds ``token``, else what the node finds there instead."""
    try:
        found = Path(path).read_text()
    except OSError as e:
        return f"cannot read it ({e.__class__.__name__}: {e.strerror or e})"
    return "" if found == token else "it holds another run's probe"


def check_shared_cache(cache_root: str | os.PathLike) -> None:
    """Raise a ClusterError unless every alive node of the connected cluster reads, at the same absolute path, a
    probe file written here into ``cache_root`` (written as the cache writes: to a temporary name, then renamed):
    workers read models from the cache and Ray Train keeps its runs there, and this process saves what they compute
    into it, so the cache must be one filesystem every node mounts at one path."""
    ray = import_ray()
    _check_not_url(str(cache_root))
    root = Path(cache_root).expanduser().absolute()
    probe = root / PROBE_DIR / f"{uuid.uuid4().hex}.txt"
    token = uuid.uuid4().hex
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        written = probe.with_suffix(".tmp")
        written.write_text(token)
        os.replace(written, probe)
    except OSError as e:
        raise ClusterError(f"cannot write into the artefact cache {root} ({e}): it must be a writable folder on "
                           f"{SHARED_FS}") from None
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
                           + f". Put the cache on {SHARED_FS} and set ATELIER_CACHE to it")


def disconnect() -> None:
    """Leave the cluster (and stop it when ``local`` started it here); batch work runs in this process again."""
    global _connected
    use(None)
    _connected = None
    ray = import_ray()
    if ray.is_initialized():
        ray.shutdown()
