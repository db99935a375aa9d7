"""The demo check: what a stakeholder sees first on the Cold start page, measured over many draws.

Three numbers per model, each for a customer or a product the model has never seen:

- ``taste_overlap``: two new customers (no id, no attributes) who each liked 3 products of one
  (product type, colour) group, the two groups differing in both type and colour: the mean Jaccard
  overlap of their top-k lists. A model that shows everyone the same bestsellers scores 1.
- ``taste_fit``: a new customer who liked 3 products of one type and colour: the share of their
  top-k that shares the type or the colour.
- ``added_product_rank``: a product nobody bought before the cutoff, removed and added back
  through the model's ``product_vector`` (every attribute the catalogue has, its group included):
  its median rank (0 = first) among all products in the lists of the customers who bought its
  nearest products, its own catalogue row left out of the competition.

A customer's liked products are never in their list, as on the page. Everything random is drawn
from ``DemoConfig.seed``, the same draws for every model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from core.recs.contract import CUSTOMER_VECTORS, PRODUCT_VECTOR, RecData, Recommender, rank_in_lists, top_k

NOT_ATTRIBUTES = ("title", "description", "image_path", "sentence")  # product columns that are not attributes
BATCH = 100  # customers scored at once: (100, n_products) float32 is 10 MB on the H&M sample


@dataclass(frozen=True)
class DemoConfig:
    k: int = 12  # the page's default list length
    n_liked: int = 3  # products a new customer liked
    min_group: int = 3  # a (type, colour) group needs at least n_liked products to be drawn from
    n_pairs: int = 200  # customer pairs for taste_overlap
    n_customers: int = 300  # customers for taste_fit
    n_added: int = 100  # never-bought products removed and added back
    n_near: int = 5  # nearest bought products whose buyers rank an added product
    max_buyers: int = 200  # buyers ranked per added product (a seeded sample when more)
    rank_under: int = 200  # added_product_rank also reports the share of products ranked under this
    seed: int = 0


def places_products(model: Recommender) -> bool:
    """Whether the model places a product outside the catalogue and scores it for its known customers:
    ``customer_vectors() @ product_vector(...)`` is the product's score in each customer's list."""
    return model.supports(PRODUCT_VECTOR) and model.supports(CUSTOMER_VECTORS)


# ---------------------------------------------------------------- draws

def taste_groups(product_type: np.ndarray, colour: np.ndarray, min_size: int = 3
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Products grouped by (type, colour), groups of at least ``min_size`` products with both values
    known (not ""): keys (g, 2) str and the g arrays of member rows (int64, ascending)."""
    frame = pd.DataFrame({"type": np.asarray(product_type, dtype=str), "colour": np.asarray(colour, dtype=str)})
    frame = frame[(frame["type"] != "") & (frame["colour"] != "")]
    groups = [(key, rows.to_numpy(dtype=np.int64)) for key, rows in frame.groupby(["type", "colour"]).groups.items()
              if len(rows) >= min_size]
    keys = np.array([key for key, _ in groups], dtype=str).reshape(-1, 2)
    return keys, [np.sort(rows) for _, rows in groups]


def draw_liked(members: Sequence[np.ndarray], groups: np.ndarray, n_liked: int,
               rng: np.random.Generator) -> list[np.ndarray]:
    """For each group index in ``groups``, ``n_liked`` distinct member rows drawn at random."""
    return [rng.choice(members[g], size=n_liked, replace=False).astype(np.int64) for g in groups]


def apart(keys: np.ndarray) -> np.ndarray:
    """(g, g) bool: groups i and j (keys (g, 2): type, colour) differ in both type and colour."""
    return (keys[:, None, 0] != keys[None, :, 0]) & (keys[:, None, 1] != keys[None, :, 1])


def draw_pairs(keys: np.ndarray, n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` pairs of group indices (a, b), (n_pairs,) int64 each, whose keys differ in both type
    and colour: a uniform over the groups that have such a partner, b uniform over a's partners."""
    partners = apart(keys)
    firsts = np.flatnonzero(partners.any(axis=1))
    if not len(firsts):
        raise ValueError("no two (type, colour) groups differ in both type and colour")
    a = rng.choice(firsts, size=n_pairs)
    b = np.array([rng.choice(np.flatnonzero(partners[i])) for i in a], dtype=np.int64)
    return a.astype(np.int64), b


# ---------------------------------------------------------------- lists and their measures

def new_customer_lists(model: Recommender, liked: Sequence[np.ndarray], k: int) -> np.ndarray:
    """(q, k) int64 top-k of q new customers (no id, no attributes) given as liked product rows, their
    liked products left out; -1 pads a list that runs short."""
    out = []
    for start in range(0, len(liked), BATCH):
        part = [np.asarray(h, dtype=np.int64) for h in liked[start:start + BATCH]]
        rows, scores = model.recommend_histories(part, k, [None] * len(part), exclude=part)
        out.append(np.where(np.isfinite(scores), rows, -1))
    return np.concatenate(out) if out else np.empty((0, k), dtype=np.int64)


def jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(q,) float64 |a_i ∩ b_i| / |a_i ∪ b_i| of the rows of two (q, k) int64 lists (-1 entries ignored);
    1 for two empty lists."""
    out = np.empty(len(a))
    for i, (x, y) in enumerate(zip(a, b)):
        x, y = set(x[x >= 0].tolist()), set(y[y >= 0].tolist())
        out[i] = len(x & y) / len(x | y) if x | y else 1.0
    return out


def share_matching(lists: np.ndarray, product_type: np.ndarray, colour: np.ndarray,
                   want_type: np.ndarray, want_colour: np.ndarray) -> np.ndarray:
    """(q,) float64: the share of each list (rows of (q, k) int64, -1 ignored) whose product has type
    ``want_type[i]`` or colour ``want_colour[i]``; 0 for an empty list."""
    product_type, colour = np.asarray(product_type, dtype=str), np.asarray(colour, dtype=str)
    valid = lists >= 0
    rows = np.where(valid, lists, 0)
    match = (product_type[rows] == np.asarray(want_type, dtype=str)[:, None]) | \
        (colour[rows] == np.asarray(want_colour, dtype=str)[:, None])
    n = valid.sum(axis=1)
    return np.where(n > 0, (match & valid).sum(axis=1) / np.maximum(n, 1), 0.0)


def taste_overlap(model: Recommender, product_type: np.ndarray, colour: np.ndarray,
                  cfg: DemoConfig = DemoConfig()) -> float | None:
    """Mean Jaccard overlap of the top-k lists of ``cfg.n_pairs`` pairs of new customers, each liking
    ``cfg.n_liked`` products of one (type, colour) group, the two groups differing in both. Types and
    colours are (n_products,) str by product row ("" unknown). None when no two groups differ in both."""
    keys, members = taste_groups(product_type, colour, max(cfg.min_group, cfg.n_liked))
    if not apart(keys).any():
        return None
    rng = np.random.default_rng(cfg.seed)
    a, b = draw_pairs(keys, cfg.n_pairs, rng)
    liked = draw_liked(members, a, cfg.n_liked, rng) + draw_liked(members, b, cfg.n_liked, rng)
    lists = new_customer_lists(model, liked, cfg.k)
    return float(jaccard(lists[:cfg.n_pairs], lists[cfg.n_pairs:]).mean())


def taste_fit(model: Recommender, product_type: np.ndarray, colour: np.ndarray,
              cfg: DemoConfig = DemoConfig()) -> float | None:
    """Mean share of a new customer's top-k sharing the type or the colour of what they liked, over
    ``cfg.n_customers`` customers each liking ``cfg.n_liked`` products of one (type, colour) group; None
    when no group has enough products."""
    keys, members = taste_groups(product_type, colour, max(cfg.min_group, cfg.n_liked))
    if not len(keys):
        return None
    rng = np.random.default_rng(cfg.seed + 1)  # not the pairs' draws
    groups = rng.integers(len(keys), size=cfg.n_customers)
    lists = new_customer_lists(model, draw_liked(members, groups, cfg.n_liked, rng), cfg.k)
    return float(share_matching(lists, product_type, colour, keys[groups, 0], keys[groups, 1]).mean())


# ---------------------------------------------------------------- a product removed and added back

def product_attributes(products: pd.DataFrame, row: int) -> dict[str, str]:
    """Every attribute the catalogue has for the product at ``row``, ``group_id`` included (its colour
    variants), as strings: what a product added from a photo and a sentence would be given."""
    columns = [c for c in products.columns if c not in NOT_ATTRIBUTES]
    values = products.iloc[row][columns]
    return {c: "" if pd.isna(v) else str(v) for c, v in values.items()}


def nearest_bought(hybrid: np.ndarray, row: int, bought: np.ndarray, n: int) -> np.ndarray:
    """(<= n,) int64 the ``n`` products nearest to ``row`` by cosine of ``hybrid`` ((n_products, d),
    rows L2-normalised) among those with ``bought`` (n_products,) bool, ``row`` itself excluded."""
    candidates = np.flatnonzero(bought)
    candidates = candidates[candidates != row]
    rows, _ = top_k((hybrid[candidates] @ hybrid[row])[None], n)
    return candidates[rows[0]]


def rank_added(model: Recommender, data: RecData, row: int, customer_ids: Sequence[str]) -> np.ndarray:
    """(q,) int64 rank (0 = first) of the catalogue product at ``row`` when removed and added back
    through ``model.product_vector`` (its photo, sentence and every attribute; ``hide_row`` keeps it
    out of its own neighbourhood), in the lists of known customers over the whole catalogue, its own
    row left out of the competition. The model places products (:func:`places_products`)."""
    vector = model.product_vector(data.image[row], data.text[row], product_attributes(data.products, row),
                                  bool(data.has_image[row]), hide_row=row)
    customers = model.customer_vectors()
    ranks = []
    for start in range(0, len(customer_ids), BATCH):
        ids = list(customer_ids[start:start + BATCH])
        scores = np.array(model.score(ids), dtype=np.float32)
        scores[:, row] = -np.inf
        own = customers[[data.customer_row[c] for c in ids]] @ np.asarray(vector, np.float32)
        ranks.append(rank_in_lists(scores, own))
    return np.concatenate(ranks) if ranks else np.empty(0, dtype=np.int64)


def added_product_rank(model: Recommender, data: RecData, cfg: DemoConfig = DemoConfig()) -> dict:
    """Over ``cfg.n_added`` products nobody bought before the cutoff (a seeded sample), each removed and
    added back (:func:`rank_added`) and ranked for the customers who bought its ``cfg.n_near`` nearest
    bought products (content, ``data.hybrid``; at most ``cfg.max_buyers`` of them, a seeded sample):
    ``median_rank`` the median over products of the median rank over their customers, ``share_under``
    the share of products whose median is under ``cfg.rank_under``, ``n_products``, ``mean_customers``."""
    rng = np.random.default_rng(cfg.seed + 2)
    bought = data.popularity() > 0
    never = np.flatnonzero(~bought)
    chosen = np.sort(rng.choice(never, size=min(cfg.n_added, len(never)), replace=False))
    hybrid = data.hybrid
    medians, n_customers = [], []
    for row in chosen.tolist():
        near = nearest_bought(hybrid, row, bought, cfg.n_near)
        buyers = np.unique(data.customer_ids[data.users[np.isin(data.items, near)]])
        if len(buyers) > cfg.max_buyers:
            buyers = np.sort(rng.choice(buyers, size=cfg.max_buyers, replace=False))
        if not len(buyers):
            continue
        medians.append(float(np.median(rank_added(model, data, row, buyers.tolist()))))
        n_customers.append(len(buyers))
    medians = np.asarray(medians)
    return {"median_rank": float(np.median(medians)) if len(medians) else None,
            "share_under": float(np.mean(medians < cfg.rank_under)) if len(medians) else None,
            "n_products": len(medians),
            "mean_customers": float(np.mean(n_customers)) if n_customers else 0.0}
