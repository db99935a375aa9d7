"""Ranking metrics per customer (Recall, NDCG, MAP, hit rate at k, from PyG's link-prediction metrics),
coverage, bootstrap intervals, and the sampled metric (a reference only).

Definitions are in :mod:`core.recs.evaluate`'s docstring.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from torch_geometric.metrics.link_pred import LinkPredMetricData

# torch_geometric is imported by the functions that use it: it takes about 2 s, and the pages import this module
# (through the typed report and the bootstrap) long before anything is ranked.


def _pyg_data(top: np.ndarray, truth: Sequence[np.ndarray]) -> LinkPredMetricData:
    """PyG's batch of ranked lists and their ground truth (duplicates within a truth dropped)."""
    lengths = np.fromiter((len(t) for t in truth), dtype=np.int64, count=len(truth))
    users = np.repeat(np.arange(len(truth), dtype=np.int64), lengths)
    items = np.concatenate([np.asarray(t, dtype=np.int64) for t in truth]) if len(truth) else \
        np.empty(0, dtype=np.int64)
    pairs = np.unique(np.stack([users, items], axis=1), axis=0) if len(items) else np.empty((0, 2), np.int64)
    from torch_geometric.metrics.link_pred import LinkPredMetricData
    return LinkPredMetricData(torch.from_numpy(np.ascontiguousarray(top, dtype=np.int64)),
                              torch.from_numpy(np.ascontiguousarray(pairs.T)))


def ranking_metrics(top: np.ndarray, truth: list[np.ndarray], k: int = 10, map_k: int = 12) -> dict[str, np.ndarray]:
    """Per-customer metrics of ranked lists over the whole catalogue.

    ``top``: (q, m) int64 product rows, best first, m >= max(k, map_k) (fewer only when the catalogue
    has fewer products); ``truth[i]``: product rows customer i bought (repeats are counted once).
    Returns (q,) float64 arrays: ``recall`` (at k), ``ndcg`` (at k), ``ap`` (AP at map_k, H&M's) and
    ``hit`` (at k), as defined in the module docstring; a customer with no truth scores 0 on each.
    """
    q = len(truth)
    if top.shape[0] != q:
        raise ValueError(f"{top.shape[0]} ranked lists for {q} truths")
    if q == 0:
        return {name: np.empty(0) for name in ("recall", "ndcg", "ap", "hit")}
    data = _pyg_data(top, truth)  # shared, so PyG matches predictions to truth once
    # PyG's per-example values (what its update() sums), so the bootstrap and the slices can use them
    from torch_geometric.metrics import LinkPredHitRatio, LinkPredMAP, LinkPredNDCG, LinkPredRecall
    metrics = {"recall": LinkPredRecall(k), "ndcg": LinkPredNDCG(k), "ap": LinkPredMAP(map_k),
               "hit": LinkPredHitRatio(k)}
    return {name: m._compute(data).double().numpy() for name, m in metrics.items()}


def coverage(top: np.ndarray, n_products: int, k: int = 10) -> float:
    """Distinct products across all top-k lists (rows of ``top``, (q, >= k) int64) / n_products."""
    from torch_geometric.metrics import LinkPredCoverage
    metric = LinkPredCoverage(k, n_products)
    metric.update(torch.from_numpy(np.ascontiguousarray(top, dtype=np.int64)), torch.empty((2, 0), dtype=torch.long))
    return float(metric.compute())


def bootstrap_ci(values: np.ndarray, n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` ((q,), one per customer): the customers
    are resampled with replacement ``n`` times. (nan, nan) when there are no values."""
    values = np.asarray(values, dtype=np.float64)
    q = len(values)
    if q == 0 or n <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n)
    chunk = max(1, 2 ** 22 // q)  # resamples drawn at once: at most 4M indices (32 MB) in memory
    for start in range(0, n, chunk):
        c = min(chunk, n - start)
        means[start:start + c] = values[rng.integers(0, q, size=(c, q))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


# ---------------------------------------------------------------- the sampled metric

def sample_negatives(n_products: int, bought: Sequence[np.ndarray], owner: np.ndarray, n: int = 99,
                     seed: int = 0) -> np.ndarray:
    """(m, n) int64: for each test pair j, ``n`` distinct product rows drawn uniformly from the whole
    catalogue minus what its customer bought (``bought[owner[j]]``, product rows); -1 pads a row when
    fewer than ``n`` products are left."""
    rng = np.random.default_rng(seed)
    out = np.full((len(owner), n), -1, dtype=np.int64)
    # the v-th product not in sorted b is v + #{i : b[i] - i <= v}
    gaps = [np.unique(np.asarray(b, dtype=np.int64)) for b in bought]
    gaps = [b - np.arange(len(b)) for b in gaps]
    for j, o in enumerate(np.asarray(owner, dtype=np.int64)):
        g = gaps[o]
        free = n_products - len(g)
        v = rng.choice(free, size=min(n, free), replace=False) if free > 0 else np.empty(0, dtype=np.int64)
        out[j, :len(v)] = v + np.searchsorted(g, v, side="right")
    return out


def sampled_ranks(model_scores: np.ndarray, query: np.ndarray, target: np.ndarray,
                  negatives: np.ndarray) -> np.ndarray:
    """(m,) int64 rank (0 = best) of each pair's target among itself and its negatives.

    ``model_scores``: (q, n_products) scores; pair j is query row ``query[j]``, product row
    ``target[j]``, negatives ``negatives[j]`` ((m, n) int64, -1 = none). Ties break as in
    :func:`core.recs.contract.top_k` (the lower product row first), so the sampled order is the full
    ranking's order restricted to the 1 + n candidates; NaN counts as -inf.
    """
    s = np.asarray(model_scores, dtype=np.float32)
    query, target = np.asarray(query, dtype=np.int64), np.asarray(target, dtype=np.int64)
    return ranks_among(s[query, target], s[query[:, None], np.maximum(negatives, 0)], target, negatives)


def ranks_among(own: np.ndarray, other: np.ndarray, target: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """:func:`sampled_ranks` from the scores themselves: ``own`` (m,) each pair's target's score, ``other``
    (m, n) its negatives' (any value where ``negatives`` is -1)."""
    own = np.nan_to_num(np.asarray(own, dtype=np.float32), nan=-np.inf)[:, None]
    other = np.nan_to_num(np.asarray(other, dtype=np.float32), nan=-np.inf)
    beats = (other > own) | ((other == own) & (negatives < np.asarray(target, dtype=np.int64)[:, None]))
    return (beats & (negatives >= 0)).sum(axis=1)


def sampled_recall(model_scores: np.ndarray, query: np.ndarray, target: np.ndarray, negatives: np.ndarray,
                   k: int = 10) -> float:
    """SAMPLED Recall@k (hit rate among 1 + n candidates, not comparable to full ranking): the share
    of pairs whose target ranks in the top k of itself and its negatives (see :func:`sampled_ranks`)."""
    ranks = sampled_ranks(model_scores, query, target, negatives)
    return float(np.mean(ranks < k)) if len(ranks) else float("nan")
