"""Top-k lists of many customers in batches (what ``recommend`` writes): here, or on a cluster's workers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd

from core.executor import current
from core.progress import Progress
from core.recs.contract import RecData, Recommender

RECOMMEND_BATCH = 512  # customers scored at once: (512, n_products) float32 is 51 MB on the H&M sample


@dataclass
class ListBatch:
    """Top-k lists of a batch of customers (ids (b,)), here or on a cluster's worker (:mod:`core.executor`, which
    sends it, the fitted model and the purchases once to each worker): ``rows`` (b, k) int64 product rows and
    ``scores`` (b, k) float32, best first; -inf scores past what is left when ``exclude_bought`` drops a customer's
    earlier purchases. A customer not in ``data`` is scored as the model scores a new customer."""
    model: Recommender
    data: RecData
    k: int
    exclude_bought: bool
    threads: int = 1  # CPUs of a cluster's worker (Ray sets its OpenMP and torch threads to them)

    def __call__(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        ids = [str(c) for c in ids]
        exclude = [self.data.history(c) for c in ids] if self.exclude_bought else None
        rows, scores = self.model.recommend(ids, self.k, exclude)
        return {"rows": np.asarray(rows, dtype=np.int64), "scores": np.asarray(scores, dtype=np.float32)}


def recommendation_batches(model: Recommender, data: RecData, customer_ids: list[str], k: int, exclude_bought: bool,
                           batch: int = RECOMMEND_BATCH, progress: Progress | None = None) -> Iterator[pd.DataFrame]:
    """Top-k lists of ``customer_ids`` in batches, in the order given: DataFrames customer_id, product_id, rank
    (1 = best), score (see :class:`ListBatch`). With a cluster's executor installed the batches are scored on its
    workers, and come back here in order."""
    work = ListBatch(model, data, k, exclude_bought)
    ids = np.asarray(customer_ids, dtype=object)
    executor = current()
    if executor is not None:
        done = _in_order(executor.map(work, ids, batch))
    else:
        done = ((np.arange(start, min(start + batch, len(ids))), work(ids[start:start + batch]))
                for start in range(0, len(ids), batch))
    finished = 0
    for at, out in done:
        rows, scores = out["rows"], out["scores"]
        frame = pd.DataFrame({"customer_id": np.repeat(ids[at], rows.shape[1]),
                              "product_id": data.product_ids[rows.ravel()],
                              "rank": np.tile(np.arange(1, rows.shape[1] + 1), len(at)),
                              "score": scores.ravel()})
        if exclude_bought:  # a customer who bought nearly everything has fewer than k products left
            frame = frame[np.isfinite(frame["score"].to_numpy())]
        finished += len(at)
        if progress:
            progress("recommending", finished, len(ids))
        yield frame


def _in_order(batches: Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]
              ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """The batches' rows in the order of their positions (0, 1, ...), whatever order they finish in: each run of
    consecutive positions is held until every position before it has been yielded."""
    waiting, expected = {}, 0
    for at, out in batches:
        if len(at) == 0:
            continue
        order = np.argsort(at, kind="stable")
        at, out = at[order], {name: value[order] for name, value in out.items()}
        for run in np.split(np.arange(len(at)), np.flatnonzero(np.diff(at) != 1) + 1):
            waiting[int(at[run[0]])] = (at[run], {name: value[run] for name, value in out.items()})
        while expected in waiting:
            at, out = waiting.pop(expected)
            expected = int(at[-1]) + 1
            yield at, out
