"""The load test's requests: the request mix drawn from a catalogue, and when each is sent (open-loop arrivals)."""
from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import quote

import numpy as np
import pandas as pd

# Share of requests per endpoint: browsing (similar items, product pages) and the logged-in home page
# (customer recommendations) dominate; photo search is rare. Kinds the catalogue cannot supply (no
# photos, no customers) are dropped and the rest renormalised (:attr:`Workload.mix`).
MIX: dict[str, float] = {
    "similar": 0.35,        # GET /products/{id}/similar
    "customer_recs": 0.25,  # GET /customers/{id}/recommendations
    "search_text": 0.15,    # POST /search/text
    "product": 0.10,        # GET /products/{id}
    "recs_new": 0.08,       # POST /recommendations (a visitor's liked products, no purchase history)
    "image": 0.05,          # GET /products/{id}/image
    "search_image": 0.02,   # POST /search/image (multipart photo upload)
}
SIMILAR_KINDS: dict[str, float] = {"hybrid": 0.8, "image": 0.1, "text": 0.1}  # "kind" of /similar requests
N_POPULAR = 50  # popular text queries: repeated, so a query cache sees hits (the other half are fresh)
N_PHOTOS = 20  # photos read once for /search/image uploads
N_LIKED = 3  # products liked by a visitor in POST /recommendations


# ---------------------------------------------------------------- configuration and requests

@dataclass(frozen=True)
class LoadConfig:
    qps: float = 100.0  # offered rate, requests per second, in the warm-up and the measurement
    seconds: float = 60.0  # measured window
    warmup_s: float = 5.0  # sent at the same rate before the window, not counted (connections, caches)
    arrivals: str = "poisson"  # "poisson": random (exponential) gaps, seeded; "uniform": constant rate, like wrk2
    seed: int = 0  # arrival times and the requests drawn from the workload
    timeout_s: float = 10.0  # a request not answered this long after it was sent is an error
    late_ms: float = 5.0  # a send leaving more than this after its planned time counts as late
    # Requests in flight at most: a send that would exceed it is not made and counts as an error (the
    # service is far behind by then), so the client never queues requests behind its own pool.
    max_connections: int = 256
    # Idle connections kept open after a burst (more are closed as they come back)
    keepalive: int = 32


@dataclass(frozen=True)
class Call:
    """One request: ``name`` labels its endpoint in the results; the rest is passed to ``httpx``
    (``files`` is an httpx files mapping, e.g. ``{"file": ("x.jpg", data, "image/jpeg")}``)."""
    name: str
    method: str
    path: str
    params: dict | None = None
    json: dict | None = None
    files: dict | None = None


# ---------------------------------------------------------------- the workload

def _column(products: pd.DataFrame, name: str) -> np.ndarray:
    """(n_products,) object array of str: the column lower-cased and stripped, "" where absent."""
    if name not in products.columns:
        return np.full(len(products), "", dtype=object)
    return products[name].fillna("").astype(str).str.strip().str.lower().to_numpy(dtype=object)


def _phrase(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def popular_queries(products: pd.DataFrame, n: int = N_POPULAR) -> list[str]:
    """The ``n`` most frequent "colour product_type" pairs ("black dress"), most frequent first; the most
    frequent titles when the catalogue has neither column."""
    pairs = pd.Series([_phrase(c, t) for c, t in zip(_column(products, "colour"), _column(products, "product_type"))],
                      dtype=object)
    if not (pairs != "").any():
        pairs = pd.Series(_column(products, "title"), dtype=object)
    counts = pairs[pairs != ""].value_counts(sort=False)
    # Ties broken by the text so the pool does not depend on row order.
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [text for text, _ in ranked[:n]]


def _photo_pool(paths: Sequence[str], n: int, rng: np.random.Generator) -> list[tuple[str, bytes, str]]:
    """Up to ``n`` photos as httpx file tuples (name, bytes, mime type), read once; unreadable ones skipped."""
    pool = []
    for i in rng.permutation(len(paths)):
        path = Path(paths[i])
        try:
            data = path.read_bytes()
        except OSError:
            continue
        pool.append((path.name, data, mimetypes.guess_type(path.name)[0] or "application/octet-stream"))
        if len(pool) == n:
            break
    return pool


class Workload:
    """A request mix drawn from a catalogue: ``workload(rng) -> Call``. Stateless between calls: the
    sequence of requests depends only on the generator passed in.

    Attributes: ``mix`` {name: share}, the shares actually drawn (:data:`MIX` without the kinds the data
    cannot supply, renormalised); ``popular`` the repeated text queries."""

    def __init__(self, products: pd.DataFrame, customer_ids: Sequence[str], models: Sequence[str], seed: int = 0,
                 n_popular: int = N_POPULAR, n_photos: int = N_PHOTOS):
        if len(products) == 0:
            raise ValueError("workload: the catalogue has no products")
        rng = np.random.default_rng(seed)
        self.ids = products.index.astype(str).to_numpy(dtype=object)
        paths = (products["image_path"].fillna("").astype(str).to_numpy(dtype=object)
                 if "image_path" in products.columns else np.full(len(products), "", dtype=object))
        has_photo = paths != ""
        self.photo_ids = self.ids[has_photo]
        self.photos = _photo_pool(list(paths[has_photo]), n_photos, rng)
        self.customers = np.asarray([str(c) for c in customer_ids], dtype=object)
        self.models = [str(m) for m in models]
        self.popular = popular_queries(products, n_popular)
        self._colour, self._type = _column(products, "colour"), _column(products, "product_type")
        self._title_words = [t.split() for t in _column(products, "title")]
        kinds = {k: w for k, w in SIMILAR_KINDS.items() if k != "image" or len(self.photo_ids)}
        self._similar_kinds = list(kinds)
        self._similar_cum = np.cumsum(list(kinds.values())) / sum(kinds.values())

        can = {"similar": True, "product": True,
               "customer_recs": len(self.customers) > 0 and len(self.models) > 0,
               "recs_new": len(self.models) > 0,
               "search_text": len(self.popular) > 0,
               "image": len(self.photo_ids) > 0,
               "search_image": len(self.photos) > 0}
        names = [name for name in MIX if can[name]]
        weights = np.array([MIX[name] for name in names]) / sum(MIX[name] for name in names)
        self.mix: dict[str, float] = dict(zip(names, weights.tolist()))
        self._names, self._cum = names, np.cumsum(weights)
        self._draw: dict[str, Callable[[np.random.Generator], Call]] = {
            "similar": self._similar, "customer_recs": self._customer_recs, "search_text": self._search_text,
            "product": self._product, "recs_new": self._recs_new, "image": self._image,
            "search_image": self._search_image}

    def __call__(self, rng: np.random.Generator) -> Call:
        return self._draw[self._names[_pick(self._cum, rng)]](rng)

    def _id(self, rng: np.random.Generator, ids: np.ndarray | None = None) -> str:
        ids = self.ids if ids is None else ids
        return quote(ids[rng.integers(len(ids))], safe="")

    def _similar(self, rng: np.random.Generator) -> Call:
        kind = self._similar_kinds[_pick(self._similar_cum, rng)]
        # An image-only neighbour query needs a product with a photo.
        pid = self._id(rng, self.photo_ids if kind == "image" else None)
        return Call("similar", "GET", f"/products/{pid}/similar", params={"k": 10, "kind": kind})

    def _customer_recs(self, rng: np.random.Generator) -> Call:
        cid = self._id(rng, self.customers)
        params = {"k": 12, "model": self.models[rng.integers(len(self.models))],
                  "exclude_bought": "true" if rng.random() < 0.5 else "false"}
        return Call("customer_recs", "GET", f"/customers/{cid}/recommendations", params=params)

    def _search_text(self, rng: np.random.Generator) -> Call:
        if rng.random() < 0.5:
            text = self.popular[rng.integers(len(self.popular))]
        else:
            # A fresh phrase: a random product's colour and type and a word of its title.
            i = rng.integers(len(self.ids))
            colour, kind = self._colour[i], self._type[i]
            words = [w for w in self._title_words[i] if w not in colour.split() + kind.split()]
            text = _phrase(colour, kind, words[rng.integers(len(words))] if words else "")
            text = text or self.popular[rng.integers(len(self.popular))]
        return Call("search_text", "POST", "/search/text", json={"text": text, "k": 10, "kind": "hybrid"})

    def _product(self, rng: np.random.Generator) -> Call:
        return Call("product", "GET", f"/products/{self._id(rng)}")

    def _recs_new(self, rng: np.random.Generator) -> Call:
        liked = rng.choice(len(self.ids), size=min(N_LIKED, len(self.ids)), replace=False)
        body = {"liked": [str(self.ids[i]) for i in liked], "k": 12,
                "model": self.models[rng.integers(len(self.models))]}
        return Call("recs_new", "POST", "/recommendations", json=body)

    def _image(self, rng: np.random.Generator) -> Call:
        return Call("image", "GET", f"/products/{self._id(rng, self.photo_ids)}/image")

    def _search_image(self, rng: np.random.Generator) -> Call:
        photo = self.photos[rng.integers(len(self.photos))]
        return Call("search_image", "POST", "/search/image", files={"file": photo})


def _pick(cumulative: np.ndarray, rng: np.random.Generator) -> int:
    """An index drawn with the probabilities whose running sum is ``cumulative`` (last entry 1)."""
    return min(int(np.searchsorted(cumulative, rng.random(), side="right")), len(cumulative) - 1)


def workload(products: pd.DataFrame, customer_ids: Sequence[str], models: Sequence[str], seed: int = 0) -> Workload:
    """The service's request mix (:data:`MIX`) over a catalogue. ``products`` is indexed by product_id with
    columns title, colour, product_type, image_path (absolute, "" when none); ``customer_ids`` are customers
    with purchases; ``models`` the recommender names to spread requests over. ``seed`` fixes the photo pool;
    which requests come out is decided by the generator passed to each call."""
    return Workload(products, customer_ids, models, seed)


def plan_arrivals(cfg: LoadConfig) -> tuple[np.ndarray, int]:
    """(n_warmup + n_measured,) float64 planned send times in seconds from the start, increasing, and
    n_warmup. The warm-up fills [0, warmup_s), the measured window [warmup_s, warmup_s + seconds).
    Each window gets round(qps * duration) sends: "uniform" evenly spaced; "poisson" at times drawn
    uniformly and sorted, i.e. a Poisson process of rate ``qps`` conditioned on that count (exponential
    gaps and their bursts, but the offered rate is exactly ``qps`` in every run), seeded by ``cfg.seed``."""
    if cfg.qps <= 0 or cfg.seconds < 0 or cfg.warmup_s < 0:
        raise ValueError(f"LoadConfig: qps must be > 0 and seconds, warmup_s >= 0, got {cfg}")
    n_warm, n = round(cfg.warmup_s * cfg.qps), round(cfg.seconds * cfg.qps)
    if cfg.arrivals == "uniform":
        warm, measured = np.arange(n_warm) / cfg.qps, np.arange(n) / cfg.qps
    elif cfg.arrivals == "poisson":
        rng = np.random.default_rng([cfg.seed, 0])
        warm, measured = np.sort(rng.uniform(0, cfg.warmup_s, n_warm)), np.sort(rng.uniform(0, cfg.seconds, n))
    else:
        raise ValueError(f"LoadConfig.arrivals: expected 'poisson' or 'uniform', got {cfg.arrivals!r}")
    return np.concatenate([warm, cfg.warmup_s + measured]), n_warm
