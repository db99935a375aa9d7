"""Artefact versions: what ``python -m core build`` publishes and the retrieval service loads and queries.

A version is a manifest (catalogue, backbone, build config, recommenders, cutoff, and a fingerprint
of the content) whose artefacts (embeddings, indexes, neighbour tables, trained recommenders) are in
the content-keyed cache. Publishing writes ``versions/<catalogue scope>/<version>.json`` and then
replaces ``current.json`` beside it by a rename, so a reader sees the old version or the new one,
never half of one. :class:`Release` is one version loaded in memory, plus the products added to it
while it serves (kept in :mod:`core.serve.store` and re-added to the next version).
"""
from __future__ import annotations

import dataclasses
import gc
import io
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from core.cache import ArtefactCache, digest, write_atomic
from core.progress import Progress
from core.data.catalog import Catalog, product_sentences
from core.data.load import load_catalog
from core.embeddings.backbone import Backbone, fuse
from core.embeddings.registry import create_backbone
from core.embeddings.index import IndexConfig
from core.embeddings.pipeline import BuildConfig, Built, build
from core.recs.contract import ADD_PRODUCT, CUSTOMER_VECTORS, RecData, Recommender, cutoff_after, no_purchases, rec_data
from core.recs.newcustomer import NEW_CUSTOMER_SEEDS, recommend_new
from core.recs.registry import data_fingerprint, fitted
from core.serve.store import ProductStore, store_root
from core.embeddings.texture import TextureConfig

log = logging.getLogger(__name__)
SERVED_MODELS = ("two_tower", "graphsage")  # the recommenders a build fits and publishes; the first is the default
LIST_K = 100  # products per known customer's precomputed list (the service's largest k)
LIST_BATCH = 256  # customers per model call while the lists are computed
# Beyond this many customers the lists are not kept (4 of 1.2 KB a customer: 240 MB at the limit); the models
# answer known customers per request instead, on a heavy-work thread.
LIST_MAX_CUSTOMERS = 50_000


# ---------------------------------------------------------------- versions

def catalog_scope(spec: str) -> str:
    """Key of a catalogue's versions: its resolved folder, or the synthetic spec (with its limit)."""
    spec = str(spec)
    return digest(spec if spec.startswith("synthetic") else os.path.realpath(os.path.expanduser(spec)))


def _versions_dir(cache: ArtefactCache, spec: str) -> Path:
    return cache.root / "versions" / catalog_scope(spec)


def build_config(d: dict) -> BuildConfig:
    """The BuildConfig of a manifest's ``build`` dict (``dataclasses.asdict`` of one)."""
    d = dict(d)
    d["index"] = IndexConfig(**d["index"])
    if d.get("texture") is not None:
        texture = dict(d["texture"])
        texture["views"] = tuple(texture["views"])
        d["texture"] = TextureConfig(**texture)
    return BuildConfig(**d)


def manifest(spec: str, limit: int | None, backbone: str, cfg: BuildConfig, models: Sequence[str],
             data: RecData) -> dict:
    """A version's manifest; its ``version`` hashes everything else but the time it was made."""
    body = {"catalog": str(spec), "limit": limit, "backbone": backbone, "build": dataclasses.asdict(cfg),
            "models": list(models), "cutoff": data.cutoff.isoformat(), "fingerprint": data_fingerprint(data)}
    return {"version": digest(body)[:16], **body, "published": time.time()}


def publish(cache: ArtefactCache, release_manifest: dict) -> Path:
    """Make the manifest its catalogue's current version (atomically, see the module docstring)."""
    folder = _versions_dir(cache, release_manifest["catalog"])
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(release_manifest, indent=1, default=str).encode()
    write_atomic(folder / f"{release_manifest['version']}.json", lambda f: f.write(text))
    write_atomic(folder / "current.json", lambda f: f.write(text))
    return folder / "current.json"


def current(cache: ArtefactCache, spec: str) -> dict | None:
    """The catalogue's current published manifest, or None if nothing was published (or it is unreadable)."""
    try:
        return json.loads((_versions_dir(cache, spec) / "current.json").read_bytes())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- a reader-writer lock

class RWLock:
    """Many readers (queries) or one writer (adding a product), writers first: FAISS indexes are not safe
    to search while a product is added to them."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = self._writers_waiting = 0
        self._writing = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


# ---------------------------------------------------------------- added products, persisted

def added_products(cache: ArtefactCache, spec: str) -> ProductStore:
    """The store of the products added to a catalogue while it is served: user data, kept beside the cache
    (:mod:`core.serve.store`), never in it; products added before the store existed are moved in from the cache."""
    return ProductStore(store_root(cache.root), catalog_scope(spec), legacy_root=cache.root)


# ---------------------------------------------------------------- a loaded version

@dataclasses.dataclass
class Hit:
    id: str
    score: float


class Release:
    """One artefact version in memory: the catalogue, its build (indexes per embedding kind), the
    recommenders, and the products added since. Queries read under a shared lock; adding a product
    takes it alone. Product rows of the recommenders are the catalogue's, then the added ones in order."""

    def __init__(self, release_manifest: dict, catalog: Catalog, backbone: Backbone, built: Built,
                 data: RecData, models: dict[str, Recommender]):
        self.manifest, self.version = release_manifest, release_manifest["version"]
        self.catalog, self.backbone, self.built, self.data, self.models = catalog, backbone, built, data, models
        self.lock = RWLock()
        self.added: dict[str, dict] = {}  # id -> record (with "image_path")
        self.product_ids = data.product_ids.copy()  # candidate row -> id, added products appended
        self.product_row = dict(data.product_row)
        self.attribute_columns = [c for c in catalog.attribute_columns if c != "image_path"]
        # neighbour tables cover the catalogue; rows past them (added products) are searched
        self._added_vectors: dict[str, list[np.ndarray]] = {kind: [] for kind in built.kinds}
        self._model_rows: dict[str, int] = {name: data.n_products for name in models}
        # (model, exclude_bought) -> (rows, scores), (n_customers, LIST_K) each: see customer_lists
        self._lists: dict[tuple[str, bool], tuple[np.ndarray, np.ndarray]] = {}
        self._titles = dict(zip(catalog.products.index, catalog.products["title"].astype(str)))
        self.loaded_at = time.time()

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.built.kinds

    @property
    def models_note(self) -> str | None:
        """Why this version serves no recommenders (None when it serves some)."""
        if self.models:
            return None
        reason = no_purchases(self.catalog)
        return (f"{reason}, so no recommenders were fitted" if reason else
                "this version was built without recommenders (python -m core build --models '')")

    # ------------------------------------------------------------ products

    def has_product(self, product_id: str) -> bool:
        return product_id in self.added or product_id in self.catalog.products.index

    def missing(self, product_ids: Sequence[str]) -> list[str]:
        """The ids among ``product_ids`` that are neither in the catalogue nor added, in order."""
        return [p for p in product_ids if not self.has_product(p)]

    def product(self, product_id: str) -> dict:
        """A product's record: id, title, description, attributes {column: value}, image_path, added.
        KeyError for an unknown id."""
        if product_id in self.added:
            r = self.added[product_id]
            return {"id": product_id, "title": r["title"], "description": r["description"],
                    "attributes": r["attributes"], "image_path": r["image_path"], "added": True}
        row = self.catalog.products.loc[product_id]  # KeyError for an unknown id
        return {"id": product_id, "title": str(row["title"]), "description": str(row["description"]),
                "attributes": {c: str(row[c]) for c in self.attribute_columns},
                "image_path": str(row["image_path"]), "added": False}

    def group_of(self, product_id: str) -> str | None:
        """The colour group (``group_id``) of a catalogue product, or of an added one given as a variant of
        one; None for an unknown id."""
        if product_id in self.added:
            return self.added[product_id]["attributes"].get("group_id", "") or None
        if product_id not in self.catalog.products.index:
            return None
        return str(self.catalog.products.at[product_id, "group_id"]) or None

    def title(self, product_id: str) -> str:
        r = self.added.get(product_id)
        return r["title"] if r is not None else self._titles[product_id]

    # ------------------------------------------------------------ similarity and search

    def similar_is_lookup(self, product_id: str, kind: str, k: int) -> bool:
        """Whether :meth:`similar` answers from the neighbour table (microseconds) rather than a search."""
        row = self.built.indexes[kind].row.get(product_id)
        return row is None or self.built.is_lookup(kind, row, k)

    def similar(self, product_id: str, kind: str, k: int) -> list[Hit]:
        """Top-k products most like ``product_id`` in ``kind``'s space (itself excluded); empty for a
        product that has no vector there (no photo, in a photo space). KeyError for an unknown id."""
        if not self.has_product(product_id):
            raise KeyError(product_id)
        with self.lock.read():
            index = self.built.indexes[kind]
            row = index.row.get(product_id)
            if row is None:
                return []
            added = self._added_vectors[kind]  # the table predates them: they are scored against this one
            rows, scores = self.built.nearest_rows(kind, row, k, np.stack(added) if added else None)
            return [Hit(str(index.ids[r]), float(s)) for r, s in zip(rows, scores)]

    def search(self, query: np.ndarray, kind: str, k: int, descriptor: np.ndarray | None = None) -> list[Hit]:
        """Top-k products for a (d,) backbone text or photo vector in ``kind``'s space (``descriptor``: a
        photo's texture descriptor, for the texture space)."""
        with self.lock.read():
            s, r = self.built.indexes[kind].search(self.built.in_space(kind, query, descriptor), k)
            ids = self.built.indexes[kind].ids
            return [Hit(str(ids[j]), float(v)) for j, v in zip(r[0], s[0]) if j >= 0]

    def vectors(self, product_ids: Sequence[str], kind: str) -> list[np.ndarray | None]:
        """Each product's vector in ``kind``: an embedding kind, or a served model's item vector; None
        where it has none (no photo in a photo space, or a model that cannot take added products)."""
        with self.lock.read():
            if kind in self.models:
                vectors, n = self.models[kind].item_vectors(), self._model_rows[kind]
                rows = [self.product_row[p] for p in product_ids]
                return [vectors[r] if r < n else None for r in rows]
            index = self.built.indexes[kind]
            return [index.reconstruct(p) if p in index.row else None for p in product_ids]

    # ------------------------------------------------------------ recommendations

    def _hits(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        keep = (rows >= 0) & np.isfinite(scores)
        return [Hit(str(self.product_ids[r]), float(s)) for r, s in zip(rows[keep], scores[keep])]

    def recommend_is_lookup(self, model: str, k: int, exclude_bought: bool) -> bool:
        """Whether :meth:`recommend` answers from the precomputed lists (see :meth:`customer_lists`)."""
        lists = self._lists.get((model, exclude_bought))
        return lists is not None and k <= lists[0].shape[1]

    def recommend(self, customer_id: str, model: str, k: int, exclude_bought: bool) -> list[Hit]:
        """Top-k for a known customer (their purchases before the version's cutoff). KeyError for an
        unknown customer id."""
        row = self.data.customer_row.get(customer_id)
        if row is None:
            raise KeyError(customer_id)
        with self.lock.read():
            if self.recommend_is_lookup(model, k, exclude_bought):
                rows, scores = self._lists[(model, exclude_bought)]
                return self._hits(rows[row, :k], scores[row, :k])
            exclude = [self.data.history(customer_id)] if exclude_bought else None
            rows, scores = self.models[model].recommend([customer_id], k, exclude)
            return self._hits(rows[0], scores[0])

    def customer_lists(self) -> None:
        """Precompute every known customer's top LIST_K products per served model, with and without what
        they bought (a request then costs a lookup, not a model call), as the neighbour tables do for
        products. A product added later is merged into them (see :meth:`add_product`)."""
        customers = self.data.customer_ids.tolist()
        if len(customers) > LIST_MAX_CUSTOMERS:
            log.warning("%d customers: more than %d, so no precomputed lists; the models answer each request",
                        len(customers), LIST_MAX_CUSTOMERS)
            return
        for name in self.models:
            for exclude_bought in (False, True):
                if (name, exclude_bought) in self._lists:
                    continue
                n_rows, parts = self._model_rows[name], []
                for start in range(0, len(customers), LIST_BATCH):
                    batch = customers[start:start + LIST_BATCH]
                    exclude = [self.data.history(c) for c in batch] if exclude_bought else None
                    with self.lock.read():
                        parts.append(self.models[name].recommend(batch, LIST_K, exclude))
                rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, LIST_K), np.int64)
                scores = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, LIST_K), np.float32)
                with self.lock.write():
                    if self._model_rows[name] == n_rows:  # no product added meanwhile
                        self._lists[(name, exclude_bought)] = (rows, scores)

    def _merge_into_lists(self, name: str, row: int) -> None:
        """Product ``row``, just added to model ``name``, into its customers' lists where it scores high
        enough (nobody bought it, so the lists without purchases take it too). A model without per-customer
        vectors loses its lists and answers from the model again."""
        model = self.models[name]
        if not model.supports(CUSTOMER_VECTORS):
            for key in [key for key in self._lists if key[0] == name]:
                del self._lists[key]
            return
        new_scores = (model.customer_vectors() @ model.item_vectors()[row]).astype(np.float32)
        for key in [key for key in self._lists if key[0] == name]:
            rows, scores = self._lists[key]
            rows = np.concatenate([rows, np.full((len(rows), 1), row, np.int64)], axis=1)
            scores = np.concatenate([scores, new_scores[:, None]], axis=1)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :LIST_K]  # ties: the earlier product first
            self._lists[key] = np.take_along_axis(rows, order, 1), np.take_along_axis(scores, order, 1)

    def recommend_new(self, liked: Sequence[str], query: np.ndarray | None, model: str, k: int) -> list[Hit]:
        """Top-k for a new or anonymous customer: the products they liked and/or a (d,) text vector of what
        they describe. Two-tower reads a text alone in its session mode; otherwise the text stands for its
        NEW_CUSTOMER_SEEDS nearest products (hybrid space), read as liked (:func:`core.recs.newcustomer.recommend_new`,
        as in the app). Liked products are not recommended back. KeyError naming unknown liked ids."""
        unknown = self.missing(liked)
        if unknown:
            raise KeyError(", ".join(unknown))
        recommender = self.models[model]
        with self.lock.read():
            n = self._model_rows[model]
            rows = [self.product_row[p] for p in dict.fromkeys(liked)]
            liked_rows = np.asarray([r for r in rows if r < n], dtype=np.int64)  # a model without added products

            def nearest(vector: np.ndarray) -> list[int]:
                _, r = self.built.indexes["hybrid"].search(vector, NEW_CUSTOMER_SEEDS)
                seeds = [self.product_row[str(self.built.indexes["hybrid"].ids[j])] for j in r[0] if j >= 0]
                return [j for j in seeds if j < n]
            out, scores = recommend_new(recommender, liked_rows, k, query, nearest=nearest)
            return self._hits(out[0], scores[0])

    def warm_up(self) -> None:
        """One query through each encoder, index and model, so the first requests do not pay for lazy
        initialisation (the first text encode alone takes ~0.4 s on H&M)."""
        products = self.catalog.products
        photos = products.index[products["image_path"] != ""]
        query = self.backbone.encode_text(["warm up"])[0]
        if len(photos):
            self.built.photo_query(products.at[photos[0], "image_path"])
        for kind in self.kinds:
            self.search(query, kind, 10)
        self.customer_lists()
        customers = self.data.customer_ids[:1].tolist()
        for name in self.models:
            if customers:
                self.recommend(customers[0], name, 10, exclude_bought=True)
            self.recommend_new(products.index[:1].tolist(), query, name, 10)

    # ------------------------------------------------------------ adding products

    def encode_product(self, record: dict, photo: bytes | None) -> dict[str, np.ndarray | None]:
        """The frozen models' vectors of a new product: ``image`` and ``text`` (d,) backbone vectors (image
        None without a photo) and ``descriptor``, the photo's texture descriptor where the build has the
        texture space. ImageError for a photo that is not an image."""
        frame = pd.DataFrame([{"title": record["title"], "description": record["description"],
                               **{c: record["attributes"].get(c, "") for c in self.attribute_columns}}])
        sentence = product_sentences(frame)[0]
        image = descriptor = None
        if photo:
            image = self.built.photo_query(io.BytesIO(photo))
            if "texture" in self.kinds:
                descriptor = self.built.photo_descriptor(io.BytesIO(photo))
        return {"sentence": sentence, "text": self.backbone.encode_text([sentence])[0], "image": image,
                "descriptor": descriptor}

    def add_product(self, record: dict, vectors: dict) -> None:
        """Add an encoded product (see :meth:`encode_product`) to every index and to each recommender that
        can take one (``add_product``) by a forward pass: no retraining. ValueError for a known id."""
        pid = record["id"]
        if self.has_product(pid):
            raise ValueError(f"product id '{pid}' already exists")
        image, text, has_image = vectors["image"], vectors["text"], vectors["image"] is not None
        in_kind = {"text": text,
                   "hybrid": fuse(image[None] if has_image else np.zeros((1, len(text)), np.float32), text[None],
                                  self.built.cfg.hybrid_weight, np.array([has_image]))[0]}
        if has_image:
            in_kind["image"] = image
            if "texture" in self.kinds:
                in_kind["texture"] = self.built.in_space("texture", image, vectors["descriptor"])
        with self.lock.write():
            for kind, vector in in_kind.items():
                if kind in self.built.indexes:
                    vector = np.asarray(vector, np.float32)
                    self.built.indexes[kind].add(vector[None], np.array([pid]))
                    self._added_vectors[kind].append(vector)
            for name, model in self.models.items():
                if model.supports(ADD_PRODUCT) and self._model_rows[name] == len(self.product_ids):
                    try:
                        model.add_product(pid, image, text, record["attributes"], has_image)
                    except Exception:  # the indexes have the product already: it is added, this model lacks it
                        log.exception("recommender %s could not take product %s: it answers without it and "
                                      "without the products added after it, until the next version", name, pid)
                        continue
                    self._merge_into_lists(name, self._model_rows[name])
                    self._model_rows[name] += 1
            self.product_row[pid] = len(self.product_ids)
            self.product_ids = np.append(self.product_ids, pid)
            self.added[pid] = {**record, "image_path": record.get("image_path", "")}


# ---------------------------------------------------------------- making and loading a version

def prepare(spec: str, limit: int | None = None, backbone: str | Backbone = "auto",
            cfg: BuildConfig = BuildConfig(), models: Sequence[str] = SERVED_MODELS,
            cache: ArtefactCache | None = None, progress: Progress | None = None,
            catalog: Catalog | None = None) -> Release:
    """Build a catalogue's artefacts and fit its recommenders (all cached: loading a published version
    recomputes nothing), as a Release. Recommenders learn from every purchase (cutoff after the last).
    ``catalog``: the catalogue of ``spec`` and ``limit`` if already loaded."""
    cache = cache or ArtefactCache()
    catalog = catalog if catalog is not None else load_catalog(spec, limit)
    backbone = create_backbone(backbone) if isinstance(backbone, str) else backbone
    built = build(catalog, backbone, cache, cfg, progress)
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, cutoff_after(catalog.purchases),
                    built.embeddings)
    reason = no_purchases(catalog)
    if reason and models:  # nothing to fit: the version serves products, similar products and search
        log.warning("%s: recommenders not fitted (%s); similar products and search are built", reason,
                    ", ".join(models))
        models = []
    fitted_models = {m: fitted(m, data, cache, progress=progress) for m in models}
    return Release(manifest(spec, limit, backbone.name, cfg, models, data), catalog, backbone, built, data,
                   fitted_models)


_gc_lock = threading.Lock()
_gc_pauses = [0, False]  # loads under way, and whether the collector was on before the first


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a version loads, and every object then alive frozen
    (:func:`gc.freeze`) when the last load ends. A full collection walks every tracked object holding the
    GIL (0.4 s with two H&M versions in memory): one set off by a load's allocations stalled every request,
    and later ones walked the served version's objects again and again. A version's objects are freed by
    their reference counts when it is dropped (it holds no cycles), frozen or not."""
    with _gc_lock:
        if not _gc_pauses[0]:
            _gc_pauses[1] = gc.isenabled()
            gc.disable()
        _gc_pauses[0] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses[0] -= 1
            if not _gc_pauses[0]:
                gc.collect(1)  # the young garbage only: cheap
                gc.freeze()
                if _gc_pauses[1]:
                    gc.enable()


def load(release_manifest: dict, cache: ArtefactCache | None = None, backbone: Backbone | None = None,
         progress: Progress | None = None) -> Release:
    """The Release of a published manifest (``backbone``: one already loaded, reused if it is the one the
    manifest names, e.g. "offline-lit", the backbone "auto" chose when the version was built). Loaded with
    the garbage collector paused (:func:`collector_paused`)."""
    m = release_manifest
    if backbone is None or backbone.name != m["backbone"]:
        backbone = m["backbone"]
    with collector_paused():
        release = prepare(m["catalog"], m["limit"], backbone, build_config(m["build"]), m["models"], cache,
                          progress)
    if release.version == m["version"]:
        release.manifest = m  # as published (its time)
    else:
        log.warning("the catalogue changed since version %s was published: serving its content as of now, "
                    "version %s (python -m core build publishes it)", m["version"], release.version)
    return release
