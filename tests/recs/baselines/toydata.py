"""Hand-built RecData for the baseline tests, and the helpers that build a model and read its scores."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.embeddings.backbone import l2_normalise
from core.recs import baselines
from core.recs.baselines.lightgcn import LightGCN, LightGCNConfig
from core.recs.contract import RecData, top_k

CUTOFF = pd.Timestamp("2020-04-01")
ID_ONLY = ("itemknn", "als", "lightgcn")
FAST_LIGHTGCN = LightGCNConfig(epochs=40, batch_size=64, lr=0.02)  # tiny graphs: more steps per epoch


def make_data(n_products: int, purchases: list[tuple[str, int, float]], groups: list[str] | None = None,
              vectors: np.ndarray | None = None, customers: tuple[str, ...] = (),
              attributes: pd.DataFrame | None = None, product_columns: dict[str, list[str]] | None = None
              ) -> RecData:
    """RecData of products p0.. (``groups`` their group_id; ``vectors`` their photo and sentence
    embedding, random unit rows by default; ``product_columns`` more attribute columns) and purchases
    (customer, product row, days before CUTOFF); ``attributes`` is the customers table when given."""
    ids = [f"p{i}" for i in range(n_products)]
    products = pd.DataFrame({"title": ids, "group_id": groups or ids, **(product_columns or {})},
                            index=pd.Index(ids, name="product_id"))
    frame = pd.DataFrame({
        "customer_id": pd.Series([c for c, _, _ in purchases], dtype=object),
        "product_id": pd.Series([ids[p] for _, p, _ in purchases], dtype=object),
        "timestamp": pd.to_datetime([CUTOFF - pd.Timedelta(days=d) for _, _, d in purchases]),
        "price": np.full(len(purchases), 0.01)})
    frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    known = sorted(set(customers) | set(frame["customer_id"]))
    if vectors is None:
        vectors = l2_normalise(np.random.default_rng(0).normal(size=(n_products, 8)))
    table = pd.DataFrame(index=pd.Index(known, name="customer_id")) if attributes is None else attributes
    return RecData(products, table, frame, CUTOFF, vectors, vectors, np.ones(n_products, dtype=bool))


def model(name: str, seed: int = 0):
    return LightGCN(FAST_LIGHTGCN) if name == "lightgcn" else baselines.create(name, seed=seed)


def best(scores: np.ndarray, exclude=()) -> list[int]:
    """Product rows of one score row, best first (``exclude`` left out)."""
    return top_k(scores[None], scores.shape[0], [np.asarray(exclude, dtype=np.int64)])[0][0].tolist()
