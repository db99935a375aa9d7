"""Open-loop HTTP load generator for the retrieval service (no coordinated omission).

Why open loop. A closed-loop generator (N workers, each sending its next request when its last one
returned) slows down when the service does: the requests it should have sent during a stall are never
sent, so a half-second stall shows up as a handful of slow requests instead of the dozens that real,
independent users would have waited on ("coordinated omission"; wrk2 fixes it the same way). Here every
send time is planned up front at the offered rate, the scheduler fires each request as a task at its
time whatever the earlier ones are doing, and a request's latency is its completion time minus its
PLANNED send time: a stall of the service, or of the generator itself, is charged to every request that
should have gone out during it.

Arrivals are ``"poisson"`` (exponential gaps, seeded: many independent users; :func:`core.bench.workload.plan_arrivals`)
or ``"uniform"`` (one constant rate, as wrk2). Requests sent in the warm-up (same rate) are not counted.
A send that leaves more than ``late_ms`` after its planned time is counted in ``late_sends``: if that is
more than a few percent of the requests, the generator, not the service, set the pace, and the run should
be repeated with the generator on its own core(s) (:func:`serve_and_load` pins the two apart).

The request mix (:data:`core.bench.workload.MIX`) is built from the catalogue by
:func:`core.bench.workload.workload`; :func:`run_load` (async) or :func:`load` runs it against a URL;
:func:`serve_and_load` starts ``python -m core serve`` itself, waits for ``/readyz``, runs the load and
stops the service. ``python -m core bench serve`` runs it
from the command line and prints the result as JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from core.bench.command import BenchContext
from core.bench.client import Connections, encode_call
from core.bench.measure import reference_s
from core.bench.process import (free_port, log_tail, null_command, process_cpu_s, server_command, set_affinity,
                                start_logged, stop_process, wait_ready)
from core.bench.summary import summary, swap_summary
from core.bench.workload import Call, LoadConfig, plan_arrivals, workload
from core.data.load import load_catalog

START_LEAD_S = 0.05  # the clock starts this far ahead so the first sends are not late by construction
DRAIN_MARGIN_S = 5.0  # after the last send, requests still open timeout_s + this later are cancelled


async def _send(client: Connections, call: Call, data: bytes, planned: float, timeout_s: float,
                out: list | None) -> None:
    """Send ``call`` (encoded as ``data``); append (name, latency_s, send_lag_s, completion time, error or
    None, the version the answer names or None, planned send time) to ``out`` (None for a warm-up request),
    also when cancelled. Times are event-loop clock seconds; latency counts from ``planned``."""
    loop = asyncio.get_running_loop()
    lag = loop.time() - planned
    error, version = "CancelledError", None  # unless the request ends
    try:
        async with asyncio.timeout(timeout_s):
            status, version = await client.request(data)
        error = f"HTTP {status}" if status >= 400 else None
    except Exception as e:  # noqa: BLE001 - any failure of the request is an error to count, not to raise
        error = type(e).__name__
    finally:
        if out is not None:
            done = loop.time()
            out.append((call.name, done - planned, lag, done, error, version, planned))


async def run_load(url: str, next_call: Callable[[np.random.Generator], Call], cfg: LoadConfig,
                   publish: tuple[float, Callable[[], str]] | None = None) -> dict:
    """Offer ``cfg.qps`` requests per second drawn from ``next_call`` to the service at ``url``, open loop.

    Every send time is planned up front (:func:`core.bench.workload.plan_arrivals`); the scheduler sleeps
    until each, fires the request as a task and moves on, never waiting for answers. Latency = completion -
    planned send time, for every measured request, errors included (a timeout counts as at least ``timeout_s``). Errors are
    exceptions (connection refused, timeout) and HTTP statuses >= 400, and requests not sent: one that
    would have been the ``max_connections + 1``-th in flight, and all the rest once the generator is more
    than ``timeout_s`` behind its plan (the run stops there rather than going on for minutes). Requests
    still open ``timeout_s`` + 5 s after the last send are cancelled (errors).

    Returns {offered_qps (planned measured requests / seconds), achieved_qps (successful measured
    responses / (last completion - measurement start)), requests, errors, late_sends (send lag >
    late_ms), max_send_lag_ms, seconds, latency_ms {p50_ms, p90_ms, p99_ms, max_ms} over all endpoints
    (requests not sent have none; None if no request was sent), endpoints {name: {count, errors, p50_ms,
    p90_ms, p99_ms, max_ms}} (most requested first), error_examples (up to 5 distinct "name: HTTP status",
    "name: ExceptionType" or "name: not sent (why)"), warnings (a list, e.g. the generator sent more than 5%
    of requests late), warmup_requests, generator_cpu_s (CPU seconds of this whole process over the run,
    warm-up included), wall_s}.

    ``publish`` = (seconds into the measured window, fn): ``fn()`` runs then, on a thread (the sends go on),
    publishes a new version and returns its name; the result then has ``swap`` (:func:`core.bench.summary.swap_summary`:
    latencies of the swap window and of the rest, apart, and when the new version first answered)."""
    times, n_warm = plan_arrivals(cfg)
    cpu0, wall0 = _self_cpu_s(), time.perf_counter()
    loop = asyncio.get_running_loop()
    start = loop.time() + START_LEAD_S
    records: list[tuple] = []
    published: list[tuple[float, str]] = []
    client = Connections(url, cfg.keepalive)
    try:
        publisher = (asyncio.create_task(_publish_at(start + cfg.warmup_s + publish[0], publish[1], published))
                     if publish is not None else None)
        abandoned = await _offer(client, url, next_call, cfg, start + times, n_warm, records)
        if publisher is not None:
            await publisher  # raises what publishing raised
    finally:
        client.close()
    result = _result(records, len(times) - n_warm, start + cfg.warmup_s, cfg, published[0] if publish else None,
                     abandoned)
    result.update(warmup_requests=n_warm, generator_cpu_s=round(_self_cpu_s() - cpu0, 3),
                  wall_s=round(time.perf_counter() - wall0, 3))
    return result


async def _offer(client: Connections, url: str, next_call: Callable[[np.random.Generator], Call], cfg: LoadConfig,
                 planned_times: np.ndarray, n_warm: int, records: list[tuple]) -> str:
    """Send a request at each of ``planned_times`` (event-loop seconds), never waiting for answers; append the
    records of those after the first ``n_warm`` to ``records`` (see :func:`_send`), then wait for the last
    answers (up to timeout_s + DRAIN_MARGIN_S). Returns why the sends stopped early, or ""."""
    loop = asyncio.get_running_loop()
    rng = np.random.default_rng([cfg.seed, 1])  # a stream of its own: the arrivals do not shift the requests
    pending: set[asyncio.Task] = set()
    abandoned = ""
    for i, planned in enumerate(planned_times):
        call = next_call(rng)  # drawn and encoded before the sleep, so their cost does not delay the send
        data = encode_call(call, url)
        delay = planned - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        out = records if i >= n_warm else None
        if not abandoned and loop.time() - planned > cfg.timeout_s:
            abandoned = f"not sent (the generator fell more than {cfg.timeout_s:g} s behind its plan)"
        if abandoned or len(pending) >= cfg.max_connections:
            if out is not None:
                now = loop.time()
                why = abandoned or f"not sent ({cfg.max_connections} requests in flight)"
                out.append((call.name, np.nan, now - planned, now, why, None, planned))
            continue
        task = asyncio.create_task(_send(client, call, data, planned, cfg.timeout_s, out))
        pending.add(task)  # the loop holds tasks weakly: keep each until it is done
        task.add_done_callback(pending.discard)
    if pending:
        _, late = await asyncio.wait(set(pending), timeout=cfg.timeout_s + DRAIN_MARGIN_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    return abandoned


async def _publish_at(at: float, fn: Callable[[], str], published: list[tuple[float, str]]) -> None:
    """At event-loop time ``at``, ``fn()`` on a thread (the sends go on); appends (the time it returned, the
    version it published) to ``published``."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, at - loop.time()))
    version = await loop.run_in_executor(None, fn)
    published.append((loop.time(), version))


def _result(records: list[tuple], n_planned: int, start: float, cfg: LoadConfig,
            published: tuple[float, str] | None, abandoned: str) -> dict:
    """:func:`core.bench.summary.summary` of the measured records, with the swap window's when a version was
    ``published`` (time, name), and warnings for a swap never seen and for sends given up (``abandoned``)."""
    result = summary(records, n_planned, start, cfg)
    if published is not None:
        swap = result["swap"] = swap_summary(records, *published, start)
        if swap["first_new_answer_s"] is None:
            result["warnings"].append(f"no answer named the new version {swap['new_version']} before the run "
                                      "ended: publish earlier or run longer (the window runs to the end)")
    if abandoned:
        result["warnings"].append(f"the generator fell more than {cfg.timeout_s:g} s behind its plan and stopped "
                                  "sending: lower qps or give it more CPU")
    return result


def load(url: str, next_call: Callable[[np.random.Generator], Call], cfg: LoadConfig,
         publish: tuple[float, Callable[[], str]] | None = None) -> dict:
    """:func:`run_load` from synchronous code (runs its own event loop)."""
    return asyncio.run(run_load(url, next_call, cfg, publish))


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


MANIFEST_BODY = ("catalog", "limit", "backbone", "build", "models", "cutoff", "fingerprint")  # what a version hashes


def another_version(m: dict) -> dict:
    """The manifest a build of ``m``'s catalogue would publish with its recommenders in the other order (with
    fewer than two: with ``popularity`` added, or removed): a new version, loaded by the service as any new
    one is (catalogue, indexes, every model, warm-up), whose artefacts are all in the cache already."""
    from core.cache import digest
    models = list(m["models"])
    if len(models) >= 2:
        models = models[::-1]
    else:
        models = [x for x in models if x != "popularity"] if "popularity" in models else models + ["popularity"]
    body = {key: m[key] for key in MANIFEST_BODY} | {"models": models}
    return {"version": digest(body)[:16], **body, "published": time.time()}


def serve_and_load(catalog: str | None, cfg: LoadConfig = LoadConfig(), url: str | None = None,
                   models: Sequence[str] = ("graphsage", "two_tower"), port: int | None = None,
                   ready_timeout_s: float = 900.0, pin: bool = True, floor: bool = False,
                   publish_at_s: float | None = None) -> dict:
    """Load-test the service on catalogue ``catalog`` (a :func:`core.data.load.load_catalog` spec; None: the
    default). With ``url`` None, start it here (:func:`core.bench.process.server_command` on ``port`` or a
    free one, output to a temporary log), wait until GET /readyz answers 200, run :func:`run_load` with the
    :func:`core.bench.workload.workload` of the catalogue, then stop it (SIGTERM, then SIGKILL after 10 s).
    With a ``url``, load that service.

    Pinning (``pin``, the service started here, at least two usable cores): the service runs on the last
    core and this process (the generator) on the others, so the two do not compete; the generator's
    affinity is restored afterwards.

    Returns the :func:`run_load` dict plus url, server_started, catalog, models, config (the LoadConfig as a
    dict), mix (the request shares drawn), reference_s (:func:`core.bench.measure.reference_s`, measured first,
    before the service starts), pinning ({"server": [cpu], "generator": [cpus]} or {"note": why not}),
    version (when /readyz gives one), and for a service started here server_log (its log file) and
    server_cpu_s (its CPU seconds during the run, warm-up included).

    ``floor``: start :func:`core.bench.process.null_service` instead of the service (same pinning, same
    schedule, ``models`` as given): the latencies are then the measurement's own, the floor under the service's.

    ``publish_at_s`` (``bench serve --publish-during``; the service started here, on the cache this process
    sees, ``$ATELIER_CACHE``): that many seconds into the measured window, publish :func:`another_version` of
    the catalogue's current version, so the service swaps to it under the load; the result's ``swap`` says
    how the requests of the swap window fared against the rest (:func:`run_load`). The version published
    before is published again once the service has stopped."""
    start_here = url is None
    swap = restore = None
    if publish_at_s is not None:
        if not start_here or floor:
            raise ValueError("publish_at_s: only with the service started here (no url, no floor)")
        publish_fn, restore = _version_swap(catalog, cfg, publish_at_s)
        swap = (publish_at_s, publish_fn)
    if start_here:
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
    result: dict = {"url": url, "server_started": start_here, "catalog": catalog, "models": list(models),
                    "config": dataclasses.asdict(cfg), "reference_s": reference_s()}
    if floor:
        result["floor"] = "a null service (200 at once, no work) stood in for the service"
    saved = os.sched_getaffinity(0)
    allowed = sorted(saved)
    pinned = start_here and pin and len(allowed) >= 2
    proc: subprocess.Popen | None = None
    log: Path | None = None
    try:
        if start_here:
            command = (null_command if floor else server_command)(catalog, port)
            proc, log = start_logged(command, allowed[-1] if pinned else None)
            if pinned:
                set_affinity(os.getpid(), set(allowed[:-1]))
                result["pinning"] = {"server": allowed[-1:], "generator": allowed[:-1]}
            else:
                result["pinning"] = {"note": "pinning off" if not pin else f"only {len(allowed)} usable core"}
            result["server_log"] = str(log)
        else:
            result["pinning"] = {"note": "service not started here (url given): not pinned"}
        result.update(_load_when_ready(url, proc, log, catalog, models, not floor, cfg, ready_timeout_s, swap))
    finally:
        if proc is not None:
            stop_process(proc)
        if pinned:
            set_affinity(os.getpid(), saved)
        if restore is not None:
            restore()
    return result


def _version_swap(catalog: str | None, cfg: LoadConfig, publish_at_s: float
                  ) -> tuple[Callable[[], str], Callable[[], None]]:
    """For ``serve_and_load(publish_at_s=...)``: (publish, restore). ``publish()`` publishes
    :func:`another_version` of the catalogue's current version (in ``$ATELIER_CACHE``) and returns its name;
    ``restore()`` publishes the current one again. ValueError when ``publish_at_s`` is not within the measured
    window or nothing is published yet."""
    from core.cache import ArtefactCache
    from core.data.load import default_catalog_spec
    from core.serve.release import current, publish
    if not 0 <= publish_at_s < cfg.seconds:
        raise ValueError(f"publish_at_s: {publish_at_s} is not within the measured {cfg.seconds} s")
    cache = ArtefactCache()
    restore = current(cache, catalog or default_catalog_spec())
    if restore is None:
        raise ValueError(f"publish_at_s: {catalog or default_catalog_spec()} has no published version in "
                         f"{cache.root} (python -m core build publishes one)")
    variant = another_version(restore)

    def publish_variant() -> str:
        publish(cache, variant | {"published": time.time()})
        return variant["version"]
    return publish_variant, lambda: publish(cache, restore)


def _load_when_ready(url: str, proc: subprocess.Popen | None, log: Path | None, catalog: str | None,
                     models: Sequence[str], served_models: bool, cfg: LoadConfig, ready_timeout_s: float,
                     publish: tuple[float, Callable[[], str]] | None) -> dict:
    """The catalogue's workload (loaded while the service starts) run by :func:`load` once ``url``'s /readyz
    answers: its result with version, models (with ``served_models``: those the service serves, else
    ``models``), mix, and for a service started here (``proc``) server_cpu_s. RuntimeError if ``proc``
    exits meanwhile."""
    out: dict = {}
    data = load_catalog(catalog)  # while the service loads
    customers = data.purchases["customer_id"].astype(str).unique().tolist()
    ready = wait_ready(url, proc, log, ready_timeout_s)
    if "version" in ready:
        out["version"] = ready["version"]
    if served_models:
        models = out["models"] = list(ready.get("models", models))  # what the service serves (maybe none)
    work = workload(data.products, customers, models, cfg.seed)
    out["mix"] = {name: round(share, 4) for name, share in work.mix.items()}
    cpu0 = process_cpu_s(proc.pid) if proc is not None else None
    out.update(load(url, work, cfg, publish))
    cpu1 = process_cpu_s(proc.pid) if proc is not None else None
    if cpu0 is not None and cpu1 is not None:
        out["server_cpu_s"] = round(cpu1 - cpu0, 3)
    if proc is not None and proc.poll() is not None:
        raise RuntimeError(f"the service exited with code {proc.returncode} during the load; "
                           f"its log {log} ends:\n{log_tail(log)}")
    return out


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    """Starts `python -m core serve` itself (or loads --url) and loads it open-loop."""
    if args.qps <= 0 or args.seconds <= 0:
        sys.exit("error: --qps and --seconds must be positive")
    cfg = LoadConfig(qps=args.qps, seconds=args.seconds, warmup_s=args.warmup)
    if args.floor and args.url:
        sys.exit("error: --floor starts a null service of its own; it cannot load --url")
    if args.publish_during and (args.floor or args.url):
        sys.exit("error: --publish-during publishes into the cache of the service it starts: not with --floor "
                 "or --url")
    publish_at = (args.seconds / 2 if args.publish_at is None else args.publish_at) if args.publish_during else None
    try:
        return serve_and_load(ctx.spec, cfg, url=args.url, pin=not args.no_pin, floor=args.floor,
                              publish_at_s=publish_at)
    except ValueError as e:  # --publish-at outside the run, or no version published to start from
        sys.exit(f"error: {e}")
