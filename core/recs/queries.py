"""Questions the Cold start page asks of the purchases and of a fitted model: small pure functions, so the page does no arithmetic."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from core.recs.contract import Recommender, rank_in_lists


def purchase_counts(purchases: pd.DataFrame, cutoff, end, customer_ids: Sequence[str] = ()) -> pd.DataFrame:
    """Purchase rows per customer before ``cutoff`` (``before``) and in ``[cutoff, end)`` (``after``), int64,
    index ``customer_id``: every customer with a purchase, plus ``customer_ids`` (zeros where they bought
    nothing). Sorted for listing: most purchases after the cutoff first, then most before, then by id."""
    cutoff, end = pd.Timestamp(cutoff), pd.Timestamp(end)
    t = purchases["timestamp"]
    ids = purchases["customer_id"].astype(str)
    before = ids[t < cutoff].value_counts()
    after = ids[(t >= cutoff) & (t < end)].value_counts()
    index = pd.Index(pd.unique(np.concatenate([np.asarray(customer_ids, dtype=str), ids.unique().astype(str)])),
                     name="customer_id")
    counts = pd.DataFrame({"before": before.reindex(index, fill_value=0).astype(np.int64),
                           "after": after.reindex(index, fill_value=0).astype(np.int64)}, index=index)
    order = np.lexsort((counts.index.to_numpy(dtype=str), -counts["before"].to_numpy(), -counts["after"].to_numpy()))
    return counts.iloc[order]


def product_audience(model: Recommender, customer_ids: Sequence[str], product_row: int | None = None,
                     product_vector: np.ndarray | None = None, batch: int = 256) -> pd.DataFrame:
    """Where one product would rank in each customer's list over the whole catalogue: columns
    ``customer_id`` and ``rank`` (int64, 0 = first), best-placed customers first (ties in the given order).

    The product is a catalogue row (``product_row``), or a product outside the catalogue given as the
    model's (d,) vector for it (``product_vector``, e.g. ``SageRecommender.product_vector``; needs the
    model's ``customer_vectors()``, so only customers in ``model.data_`` are ranked). Customers are
    scored ``batch`` at a time, so memory stays (batch, n_products)."""
    if (product_row is None) == (product_vector is None):
        raise ValueError("give exactly one of product_row and product_vector")
    ids = np.asarray(customer_ids, dtype=str)
    if product_vector is not None:
        rows = [model.data_.customer_row.get(c) for c in ids.tolist()]
        ids = ids[[r is not None for r in rows]]
        own = model.customer_vectors()[[r for r in rows if r is not None]] @ np.asarray(product_vector, np.float32)
    ranks = np.empty(len(ids), dtype=np.int64)
    for start in range(0, len(ids), batch):
        scores = model.score(ids[start:start + batch].tolist())
        candidate = scores[:, product_row] if product_vector is None else own[start:start + batch]
        ranks[start:start + batch] = rank_in_lists(scores, candidate)
    order = np.argsort(ranks, kind="stable")
    return pd.DataFrame({"customer_id": ids[order], "rank": ranks[order]})
