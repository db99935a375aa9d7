"""The recommender registry, above the models it lists: a model by name, and a fitted model from the cache."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.cache import ArtefactCache, RowBlocks, digest
from core.progress import Progress
from core.recs.contract import SAVES_STATE, RecData, Recommender
from core.recs.fusion import RankFusion

BASELINES = ("popularity", "recent_popularity", "segment_popularity", "new_arrivals", "colour_variants", "itemknn",
             "als", "lightgcn", "content")
MODELS = ("graphsage", "two_tower", "ranker") + BASELINES
# Models whose fit depends on a seed: the evaluation fits them once per seed; the others are deterministic.
SEEDED = ("graphsage", "two_tower", "ranker", "als", "lightgcn")
# Reciprocal-rank fusion of GraphSAGE and two-tower, by name only: the validation window (2020-01-01..03-31)
# preferred two-tower alone (Recall@10 0.0156 against the blend's 0.0138 and GraphSAGE's 0.0115), so the
# blend is not among the default models (evaluate --models blend measures it).
BLENDS = {"blend": ("graphsage", "two_tower")}
# They choose their own settings (early stopping on their own validation window).
SELF_TUNED = ("graphsage", "two_tower", "ranker")

# What each model is called and is, in a line, for people (the Cold start page); in MODELS' order.
LABELS = {"graphsage": "GraphSAGE", "two_tower": "Two-tower", "ranker": "Ranker (two-stage)",
          "popularity": "Popularity", "recent_popularity": "Recent popularity",
          "segment_popularity": "Popular with their segment", "new_arrivals": "New arrivals",
          "colour_variants": "Colour variants", "itemknn": "Item kNN", "als": "ALS", "lightgcn": "LightGCN",
          "content": "Content (photo + text)"}
ABOUT = {"graphsage": "a graph neural network over customers, products and look-alike products; embeds anything "
                      "new from its photo, text and attributes",
         "two_tower": "a customer tower over recent purchases and attributes, an item tower over each product's "
                      "sentence, photo and attributes, matched by nearest neighbours (FAISS); takes a typed "
                      "description or a photo as a new customer's only signal",
         "ranker": "two stages: every other model proposes a few hundred products, a LightGBM ranker orders them by "
                   "features no single model sees (history, prices, sales, look-alikes of their last purchases)",
         "popularity": "bestsellers before the cutoff, the same for everyone",
         "recent_popularity": "bestsellers of the last four weeks before the cutoff, the same for everyone",
         "segment_popularity": "what customers of the same age band and profile bought in the last weeks",
         "new_arrivals": "the most recently introduced products, the same for everyone",
         "colour_variants": "other colours of what they like, then bestsellers",
         "itemknn": "products bought by the same people (item-item cosine)",
         "als": "matrix factorisation of who bought what",
         "lightgcn": "a graph model of who bought what, without content",
         "content": "the products whose photo and text are closest to what they like"}
# Their lists ignore what the customer likes; the reason each recommendation gives instead.
HISTORY_FREE = {"popularity": "a bestseller", "recent_popularity": "popular lately",
                "segment_popularity": "popular lately with customers like them", "new_arrivals": "new arrival"}
ID_ONLY = "ID-only: cannot rank never-bought products"  # what Recommender.id_only means, in words
# What each baseline gives a customer with no purchases (core/recs/baselines/); the learned models' is their own
# attribute-only list unless the evaluation chose a fallback on its validation window.
NEW_CUSTOMER_LISTS = {"recent_popularity": "the last 4 weeks' bestsellers", "segment_popularity": "their segment's "
                      "bestsellers", "new_arrivals": "the newest products"}


def list_recommenders(blends: bool = False) -> list[str]:
    """The default models (every evaluation runs them), and with ``blends`` the blends too."""
    return list(MODELS) + (list(BLENDS) if blends else [])


def label(name: str) -> str:
    """The model's name for people ("GraphSAGE"), its id where it has none."""
    return LABELS.get(name, name)


def in_order(names) -> list[str]:
    """Model names in the registry's order (GraphSAGE first, then two-tower and the baselines), others last."""
    return sorted(names, key=lambda n: list(LABELS).index(n) if n in LABELS else len(LABELS))


def new_customer_list(name: str, path: str | None) -> str:
    """What the named model gives a customer with no purchases, in words, given its evaluated new-customer
    ``path`` ("model", or the baseline serving them: see core.recs.evaluate)."""
    if path and path != "model":
        return f"{label(path)} (fallback)"
    if name in SELF_TUNED:
        return "its own list, from attributes"
    return NEW_CUSTOMER_LISTS.get(name, "all-time bestsellers")


def is_seeded(name: str) -> bool:
    """Whether the named model's fit depends on its seed (a blend when any part's does)."""
    return name in SEEDED or any(is_seeded(part) for part in BLENDS.get(name, ()))


def tuning_grid(name: str) -> list[dict]:
    """The settings the evaluation tries for the named model on its validation window (``params`` of
    :func:`create_recommender`): the baselines' :data:`core.recs.baselines.GRIDS`; ``[{}]`` (its defaults)
    for a model that chooses its own settings (GraphSAGE and two-tower stop early on their own
    validation window) or has none."""
    if name in BASELINES:
        from core.recs import baselines  # imported when asked for (see create_recommender)
        return [dict(p) for p in baselines.GRIDS.get(name, ({},))]
    return [{}]


class RegistryRetrievers:
    """The ranker's candidate sources, fitted through :func:`fitted` (from ``cache`` where one is given)."""

    def __init__(self, cache: ArtefactCache | None = None):
        self.cache = cache

    def fit(self, name: str, data: RecData, seed: int, progress: Progress | None = None) -> Recommender:
        return fitted(name, data, self.cache, seed if is_seeded(name) else 0, progress)

    def config(self, name: str) -> dict | None:
        model = create_recommender(name)
        return model.cache_config() if model.supports(SAVES_STATE) else None


def create_recommender(name: str, seed: int = 0, params: dict | None = None,
                       cache: ArtefactCache | None = None) -> Recommender:
    """A fresh, unfitted recommender by name (see :func:`list_recommenders`); ``params`` overrides a
    baseline's settings (see :func:`tuning_grid`); ``cache`` is where a model built on others (the ranker) fits
    them."""
    if params and name not in BASELINES:
        raise ValueError(f"'{name}' takes no settings here; got {sorted(params)}")
    # Each model's module is imported when the model is asked for: torch_geometric, scipy and the rest take
    # seconds to import, and the service and every page import this registry (measured: the service's import
    # 5.3 s with them at the top, 2.3 s without).
    if name == "graphsage":
        from core.recs.sage import SageRecommender
        from core.recs.sage_model import SageConfig
        return SageRecommender(SageConfig(seed=seed))
    if name == "two_tower":
        from core.recs.two_tower import TwoTowerConfig, TwoTowerRecommender
        return TwoTowerRecommender(TwoTowerConfig(seed=seed))
    if name == "ranker":
        from core.recs.ranker import RankerConfig, RankerRecommender
        return RankerRecommender(RankerConfig(seed=seed), RegistryRetrievers(cache))
    if name in BLENDS:
        return RankFusion(name, [create_recommender(part, seed) for part in BLENDS[name]])
    if name in BASELINES:
        from core.recs import baselines
        return baselines.create(name, seed=seed, params=params)
    raise ValueError(f"unknown model '{name}'; one of {', '.join(list_recommenders(blends=True))}")


def declares(name: str, capability: str) -> bool:
    """Whether the named model declares ``capability`` (see :data:`core.recs.contract.CAPABILITIES`), asked before
    it is fitted (creating one fits nothing)."""
    return create_recommender(name).supports(capability)


# ---------------------------------------------------------------- cached fitting

FINGERPRINT_ROWS = 128  # rows converted to text at a time for a fingerprint (~8 ms each on H&M's products)


def _as_text(frame: pd.DataFrame, rows: int = FINGERPRINT_ROWS) -> np.ndarray | RowBlocks:
    """``frame.to_numpy(dtype=str)``, or for more than ``rows`` rows the same array as :class:`RowBlocks`
    (a :func:`digest` of either is the same): converted ``rows`` at a time, because one conversion holds the
    GIL throughout (1.5 s for H&M's products) and the whole array is large (740 MB: its width is the
    longest text's)."""
    if len(frame) <= rows:
        return frame.to_numpy(dtype=str)
    blocks = [frame.iloc[start:start + rows].to_numpy(dtype=str) for start in range(0, len(frame), rows)]
    return RowBlocks(blocks, max((b.dtype for b in blocks), key=lambda d: d.itemsize), (len(frame), frame.shape[1]))


def data_fingerprint(data: RecData) -> str:
    """Hash of everything a recommender learns from: candidates, customers, training purchases, content. Kept on
    ``data`` (read-only once built): an evaluation asks for it at every fit, and it takes about 1 s on H&M."""
    if data.fingerprint_ is None:
        attrs = _as_text(data.products.drop(columns=["image_path", "description"], errors="ignore"))
        prices = data.purchases["price"].to_numpy(np.float64) if "price" in data.purchases else np.empty(0)
        data.fingerprint_ = digest(data.product_ids, data.customer_ids, attrs, _as_text(data.customers),
                                   data.items, data.users, data.days_ago, prices, str(data.cutoff), data.image,
                                   data.text, float(data.hybrid_weight))
    return data.fingerprint_


def fitted(name: str, data: RecData, cache: ArtefactCache | None = None, seed: int = 0,
           progress: Progress | None = None, params: dict | None = None) -> Recommender:
    """A recommender fitted on ``data`` (``params``: see :func:`create_recommender`). Models that can
    save their state (:data:`~core.recs.contract.SAVES_STATE`) are cache artefacts keyed by
    their config and the data's fingerprint, so a trained model is trained once; the others fit in
    seconds and are refitted."""
    if name in BLENDS:
        fused = RankFusion(name, [fitted(part, data, cache, seed, progress) for part in BLENDS[name]])
        fused.data_ = data
        return fused
    model = create_recommender(name, seed, params, cache)
    if cache is None or not model.supports(SAVES_STATE):
        return model.fit(data, progress)
    state = cache.get_or_compute(f"recommender-{name}", model.cache_config(), data_fingerprint(data),
                                 lambda: model.fit(data, progress).state_arrays())
    return model.load_state(data, state)
