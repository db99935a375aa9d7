"""Micro-batching of concurrent calls, and the LRU cache of query vectors."""
from __future__ import annotations

import asyncio
import os
import sys
import threading

import numpy as np
import pytest

from core.serve.batching import LRUCache, MicroBatcher, background_pool


def encoder(batches: list[int]):
    """A fake encoder: (sum of the item's digits, its length), recording each batch's size."""
    def fn(items: list[str]) -> list[np.ndarray]:
        batches.append(len(items))
        return [np.array([sum(map(int, s)), len(s)], dtype=np.float32) for s in items]
    return fn


async def submit_all(batcher: MicroBatcher, items: list) -> list:
    return await asyncio.gather(*(batcher.submit(x) for x in items))


def test_concurrent_submits_share_passes_and_get_their_own_results():
    batches: list[int] = []
    batcher = MicroBatcher(encoder(batches), max_batch=8, window_ms=20)
    items = [str(i) * (i % 3 + 1) for i in range(40)]
    got = asyncio.run(submit_all(batcher, items))
    expected = encoder([])(items)
    assert all(np.array_equal(g, e) for g, e in zip(got, expected))  # each caller its own row, in order
    assert batcher.items == 40 and sum(batches) == 40
    assert batcher.calls == len(batches) <= 6  # 40 items in batches of at most 8, not 40 passes
    assert max(batches) <= 8


def test_a_lone_query_is_not_held_for_company():
    batches: list[int] = []
    batcher = MicroBatcher(encoder(batches), max_batch=8, window_ms=1)

    async def one_at_a_time() -> list:
        return [await batcher.submit(s) for s in ["1", "22", "333"]]
    got = asyncio.run(one_at_a_time())
    assert [g.tolist() for g in got] == [[1, 1], [4, 2], [9, 3]]
    assert batches == [1, 1, 1]


def test_queries_arriving_during_a_pass_form_the_next_batch():
    batches: list[int] = []
    slow = encoder(batches)

    def fn(items):
        import time
        time.sleep(0.05)  # while this pass runs, the others queue
        return slow(items)
    batcher = MicroBatcher(fn, max_batch=32, window_ms=0)

    async def staggered() -> list:
        first = asyncio.ensure_future(batcher.submit("1"))
        await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(batcher.submit(str(i))) for i in range(2, 12)]
        return await asyncio.gather(first, *rest)
    got = asyncio.run(staggered())
    expected = encoder([])(["1"] + [str(i) for i in range(2, 12)])
    assert all(np.array_equal(g, e) for g, e in zip(got, expected))
    assert batches == [1, 10]


def test_an_encoder_error_reaches_every_caller_of_its_batch_and_the_batcher_goes_on():
    calls = []

    def fn(items):
        calls.append(list(items))
        if "bad" in items:
            raise RuntimeError("encoder failed")
        return [len(s) for s in items]
    batcher = MicroBatcher(fn, max_batch=4, window_ms=10)

    async def run():
        failed = await asyncio.gather(batcher.submit("bad"), batcher.submit("ok"), return_exceptions=True)
        after = await batcher.submit("fine")
        return failed, after
    failed, after = asyncio.run(run())
    assert all(isinstance(f, RuntimeError) for f in failed)
    assert after == 4


def test_a_batch_function_must_return_one_result_per_item():
    batcher = MicroBatcher(lambda items: [0], max_batch=4, window_ms=10)
    with pytest.raises(RuntimeError, match="1 results for 2 items"):
        asyncio.run(submit_all(batcher, ["a", "b"]))


def test_lru_cache_evicts_the_least_recently_used():
    cache = LRUCache(maxsize=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2 and (cache.hits, cache.misses) == (3, 1)
    off = LRUCache(maxsize=0)
    off.put("a", 1)
    assert off.get("a") is None and len(off) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_background_threads_run_below_the_rest_of_the_process():
    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    mine = nice()
    pool = background_pool(2, "test-heavy", nice=3)
    try:
        assert {pool.submit(nice).result() for _ in range(4)} == {mine + 3}
    finally:
        pool.shutdown()
    assert nice() == mine  # the calling thread keeps its priority
    batcher = MicroBatcher(lambda items: [nice() for _ in items], nice=2)
    assert asyncio.run(submit_all(batcher, ["x"])) == [mine + 2]
    batcher.close()
