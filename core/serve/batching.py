"""Micro-batching of encoder calls made by concurrent requests, and a bounded LRU cache of their results.

A text or photo query costs one encoder pass. Passes over 8 queries cost far less than 8 passes over one,
so :class:`MicroBatcher` holds each query for at most ``window_ms`` to let others arriving meanwhile share
its pass; :class:`LRUCache` keeps recent results so a repeated query costs a lookup.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Generic, Hashable, Sequence, TypeVar

X = TypeVar("X")
Y = TypeVar("Y")
log = logging.getLogger(__name__)


def lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value by ``nice`` (Linux: niceness is per thread), so the threads
    answering cheap requests get the CPU first when they need it. Elsewhere, or when refused, it logs a warning
    and the thread runs at the process's priority."""
    if nice <= 0:
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except (AttributeError, OSError) as e:
        log.warning("cannot lower the priority of thread %s (%s): heavy work competes with light requests",
                    threading.current_thread().name, e)


def background_pool(workers: int, name: str, nice: int = 0) -> ThreadPoolExecutor:
    """A thread pool whose threads run ``nice`` steps below the rest of the process (see :func:`lower_priority`)."""
    return ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=lower_priority, initargs=(nice,))


class MicroBatcher(Generic[X, Y]):
    """Runs ``fn(items) -> results`` (one result per item, in order) over items submitted by concurrent
    coroutines. The first item of a batch waits at most ``window_ms`` for others, a full batch
    (``max_batch``) goes at once, and while a batch runs the next one gathers. ``fn`` runs on one worker
    thread, off the event loop, so passes never overlap (the encoder has the cores to itself).

    ``on_batch(size, seconds)`` is called after each pass (e.g. for metrics). ``calls`` and ``items``
    count passes and items; an exception in ``fn`` is raised to every submitter of that batch. ``nice``:
    how far below the process's priority the worker runs (see :func:`lower_priority`)."""

    def __init__(self, fn: Callable[[list[X]], Sequence[Y]], max_batch: int = 32, window_ms: float = 2.0,
                 on_batch: Callable[[int, float], None] | None = None, nice: int = 0):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.fn, self.max_batch, self.window_s, self.on_batch = fn, max_batch, window_ms / 1e3, on_batch
        self.calls = self.items = 0
        self._pending: list[tuple[X, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running = False
        self._worker = background_pool(1, "micro-batch", nice)

    async def submit(self, item: X) -> Y:
        """The result of ``fn`` for ``item``, computed in a batch with whatever else arrives meanwhile."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_batch and not self._running:
            self._flush(loop)
        elif self._timer is None and not self._running:
            self._timer = loop.call_later(self.window_s, self._flush, loop)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running or not self._pending:
            return
        batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
        self._running = True
        loop.create_task(self._run(loop, batch))

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[X, asyncio.Future]]) -> None:
        items = [item for item, _ in batch]
        t = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._worker, self.fn, items)
            if len(results) != len(items):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
        except Exception as e:  # every waiting request gets the error; the batcher keeps serving
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
        else:
            for (_, future), result in zip(batch, results):
                if not future.done():  # a request cancelled while waiting (client gone) is skipped
                    future.set_result(result)
        finally:
            self.calls += 1
            self.items += len(items)
            if self.on_batch is not None:
                self.on_batch(len(items), time.perf_counter() - t)
            self._running = False
            if self._pending:  # what arrived during the pass goes next, as one batch
                self._flush(loop)

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)


class LRUCache(Generic[Y]):
    """At most ``maxsize`` results by key, least recently used evicted first; thread-safe. ``hits`` and
    ``misses`` count :meth:`get` outcomes."""

    def __init__(self, maxsize: int = 4096):
        self.maxsize = maxsize
        self.hits = self.misses = 0
        self._items: OrderedDict[Hashable, Y] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Y | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: Y) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
