"""Building a catalogue's artefacts: per-product embeddings (cached by content), indexes, neighbour tables.

Used alike by the CLI (``python -m core build``), the benchmarks and the app.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING

import numpy as np
import pandas as pd

from core.cache import ArtefactCache, RowStore, digest
from core.progress import Progress, Ticks
from core.data.catalog import Catalog, ValidationReport
from core.embeddings.backbone import Backbone, encode_images, encode_texts, fuse, load_image
from core.embeddings.index import IndexConfig, VectorIndex, build_neighbour_table, table_index_config
from core.embeddings.texture import TextureConfig, TextureModel, fit_texture_model

if TYPE_CHECKING:
    from core.embeddings.lit.runtime import FeatureRunners

KINDS = ("image", "text", "hybrid", "texture")  # texture: the texture-aware photo embedding (core/embeddings/texture.py)
# What each kind is, in the app's words: a short name for a chooser, and one line on what it holds.
KIND_NAMES = {"image": "photo", "text": "product sentence", "hybrid": "hybrid (photo + sentence)",
              "texture": "texture-aware photo (pattern)"}
KIND_ABOUT = {"image": "photo embedding", "text": "product-sentence embedding", "hybrid": "photo + sentence, fused",
              "texture": "photo + texture (mid-level features), pattern-aware"}


@dataclass(frozen=True)
class BuildConfig:
    # Photo share of the hybrid embedding, chosen on the texture report's validation split (H&M, offline-lit
    # heads refitted without the held-out products): 0.4 gave the best mean of pattern, type and colour
    # agreement@10 (0.607; 0.594 at 0.5, 0.574 at 0, 0.403 at 1). The recommenders keep their own weight.
    hybrid_weight: float = 0.4
    batch_size: int = 32  # on 2 CPU cores ViT-B-32 peaks at 8-32 images a batch (measured); larger only adds latency
    workers: int = 2  # threads decoding photos while the model runs
    save_every: int = 1024  # rows written to the cache per chunk, so an interrupted build keeps its work
    index: IndexConfig = IndexConfig()
    table_k: int = 50  # precomputed neighbours per product; larger k falls back to a search
    texture: TextureConfig | None = TextureConfig()  # None: no texture kind (and no texture pass over the photos)


@dataclass
class Embeddings:
    """Per-product embeddings, rows aligned with ``ids``."""
    ids: np.ndarray  # (n,) str product ids
    image: np.ndarray  # (n, d) float32, rows L2-normalised; zero rows where there is no readable photo
    text: np.ndarray  # (n, d) float32, rows L2-normalised
    has_image: np.ndarray  # (n,) bool
    texture: np.ndarray | None = None  # (n, d') float32 texture-aware photo embedding, zero rows without a photo

    def matrix(self, kind: str, weight: float) -> tuple[np.ndarray, np.ndarray]:
        """The (m, d) rows of one kind and their (m,) product ids; "image" keeps products with a photo."""
        if kind == "image":
            return self.image[self.has_image], self.ids[self.has_image]
        if kind == "text":
            return self.text, self.ids
        if kind == "hybrid":
            return fuse(self.image, self.text, weight, self.has_image), self.ids
        if kind == "texture":
            if self.texture is None:
                raise ValueError("the texture kind was not built (BuildConfig.texture is None)")
            return self.texture[self.has_image], self.ids[self.has_image]
        raise ValueError(f"unknown embedding kind '{kind}'; one of {KINDS}")


@dataclass
class BuildStats:
    images_embedded: int = 0
    texts_embedded: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def _stage(progress: Progress | None, name: str) -> Ticks | None:
    """A (done, total) callback reporting as one named stage."""
    return (lambda done, total: progress(name, done, total)) if progress else None


def embed_catalog(catalog: Catalog, backbone: Backbone, cache: ArtefactCache, cfg: BuildConfig = BuildConfig(),
                  progress: Progress | None = None) -> tuple[Embeddings, BuildStats, ValidationReport]:
    """Image and text embeddings of every product; only content not already in the cache is encoded."""
    stats, report = BuildStats(), ValidationReport()
    t = time.perf_counter()
    # e.g. offline-lit: tower features of new products, then heads trained on this catalogue
    prepared_images, prepared_texts = backbone.prepare(catalog, cache, progress)
    stats.seconds["prepare"] = time.perf_counter() - t
    products = catalog.products
    ids = products.index.to_numpy(dtype=str)
    t = time.perf_counter()
    paths = products["image_path"].tolist()
    image_keys = cache.file_digests(paths)
    text_keys = [digest(s) for s in products["sentence"].tolist()]
    stats.seconds["fingerprint"] = time.perf_counter() - t

    t = time.perf_counter()
    image, has_image, stats.images_embedded, errors = RowStore(cache, "image", backbone.cache_config()).fill(
        image_keys, backbone.dim,
        lambda rows, p: encode_images(backbone, [paths[i] for i in rows], cfg.batch_size, cfg.workers, p),
        cfg.save_every, _stage(progress, "embedding photos"))
    report.add("images", "unreadable image files", [f"{ids[i]}: {m}" for i, m in errors.items()],
               "product kept without a photo")
    stats.seconds["images"] = time.perf_counter() - t

    t = time.perf_counter()
    sentences = products["sentence"].tolist()
    text, _, stats.texts_embedded, _ = RowStore(cache, "text", backbone.cache_config()).fill(
        text_keys, backbone.dim,
        lambda rows, p: (encode_texts(backbone, [sentences[i] for i in rows], progress=p), {}),
        cfg.save_every, _stage(progress, "embedding text"))
    stats.seconds["texts"] = time.perf_counter() - t
    stats.images_embedded += prepared_images
    stats.texts_embedded += prepared_texts
    return Embeddings(ids, image, text, has_image), stats, report


@dataclass
class Built:
    """Everything the app and the CLI query: embeddings, one index and neighbour table per kind."""
    catalog: Catalog
    backbone: Backbone
    cfg: BuildConfig
    embeddings: Embeddings
    indexes: dict[str, VectorIndex]
    tables: dict[str, dict[str, np.ndarray]]
    stats: BuildStats
    report: ValidationReport
    texture_model: TextureModel | None = None
    texture_selection: pd.DataFrame | None = None  # the weights tried on a validation split, and their scores
    cache: ArtefactCache | None = None  # the cache the build used: photo descriptors read the tower's export from it
    runners: FeatureRunners | None = None  # the photo tower's loaded runner, held for photo descriptors

    @property
    def kinds(self) -> tuple[str, ...]:
        """The embedding kinds this build has (all of KINDS unless the texture kind was left out)."""
        return tuple(k for k in KINDS if k in self.indexes)

    def neighbours(self, product_id: str, kind: str, k: int = 10) -> pd.DataFrame:
        """Top-k products most similar to ``product_id`` (itself excluded): columns product_id, score.
        Raises KeyError for an unknown id; empty for a product without a photo in image space."""
        if product_id not in self.catalog.products.index:
            raise KeyError(f"unknown product id '{product_id}'")
        index = self.indexes[kind]
        row = index.row.get(product_id)
        if row is None:
            return pd.DataFrame({"product_id": pd.Series(dtype=str), "score": pd.Series(dtype=np.float32)})
        rows, scores = self.nearest_rows(kind, row, k)
        return pd.DataFrame({"product_id": index.ids[rows], "score": scores})

    def is_lookup(self, kind: str, row: int, k: int) -> bool:
        """Whether :meth:`nearest_rows` of index row ``row`` reads the neighbour table (microseconds): it covers
        the catalogue's rows, not rows added to the index since, and its width of neighbours."""
        table = self.tables[kind]["rows"]
        return row < len(table) and k <= table.shape[1]

    def nearest_rows(self, kind: str, row: int, k: int, added: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Index rows (<= k,) int64 and scores (<= k,) float32 of the products most similar to index row ``row``
        of ``kind`` (itself excluded), best first: from the neighbour table where :meth:`is_lookup`, else a
        search. ``added``: (m, d) vectors of the rows added to the index after the table was built (rows
        ``len(table)`` on), scored against this one and merged into a table's answer (ties: the table's first)."""
        index, table = self.indexes[kind], self.tables[kind]
        if not self.is_lookup(kind, row, k):
            s, r = index.search(index.reconstruct(index.ids[row]), k + 1)
            keep = (r[0] >= 0) & (r[0] != row)
            return r[0][keep][:k].astype(np.int64), s[0][keep][:k]
        rows, scores = table["rows"][row, :k], table["scores"][row, :k]
        keep = rows >= 0
        rows, scores = rows[keep].astype(np.int64), scores[keep]
        if added is not None and len(added):
            extra = (np.asarray(added) @ index.reconstruct(index.ids[row])).astype(scores.dtype)
            rows = np.concatenate([rows, len(table["rows"]) + np.arange(len(extra), dtype=np.int64)])
            scores = np.concatenate([scores, extra])
            order = np.argsort(-scores, kind="stable")[:k]
            rows, scores = rows[order], scores[order]
        return rows, scores

    def search(self, query: np.ndarray, kind: str, k: int = 10) -> pd.DataFrame:
        """Top-k products for a (d,) query vector in the space of ``kind``."""
        s, r = self.indexes[kind].search(query, k)
        keep = r[0] >= 0
        return pd.DataFrame({"product_id": self.indexes[kind].ids[r[0][keep]], "score": s[0][keep]})

    def text_query(self, text: str) -> np.ndarray:
        """(d,) embedding of a text query; ValueError for an empty one."""
        if not text or not text.strip():
            raise ValueError("empty query: type a few words, e.g. 'red striped dress'")
        return self.backbone.encode_text([text.strip()])[0]

    def photo_query(self, source: str | IO[bytes]) -> np.ndarray:
        """(d,) embedding of an uploaded photo; ImageError for a file that is not an image."""
        return self.backbone.encode_image(self.backbone.preprocess(load_image(source))[None])[0]

    def photo_descriptor(self, source: str | IO[bytes]) -> np.ndarray:
        """(D,) texture descriptor of an uploaded photo (see core.embeddings.lit.towers.FeatureTower), through the
        photo tower the build held, read from the build's cache; ImageError as above."""
        from core.embeddings.lit.features import photo_descriptors
        if hasattr(source, "seek"):
            source.seek(0)
        return photo_descriptors([load_image(source)], self.runners.get(self.cache),
                                 views=(self.cfg.texture or TextureConfig()).views)[0]

    def in_space(self, kind: str, query: np.ndarray, descriptor: np.ndarray | None = None) -> np.ndarray:
        """A (d,) text or photo query of the backbone as a query in ``kind``'s space. For "texture", a
        photo's ``descriptor`` places it fully; a text (no descriptor) lands on the photo block only."""
        if kind != "texture":
            return query
        if descriptor is None:
            return self.texture_model.text_query(query)
        return self.texture_model.transform(query[None], descriptor[None])[0]


def build(catalog: Catalog, backbone: Backbone, cache: ArtefactCache, cfg: BuildConfig = BuildConfig(),
          progress: Progress | None = None) -> Built:
    """Embed (incrementally), index and tabulate neighbours for every embedding kind."""
    from core.embeddings.lit.backbone import LitBackbone
    from core.embeddings.lit.runtime import FeatureRunners
    embeddings, stats, report = embed_catalog(catalog, backbone, cache, cfg, progress)
    # The texture pass and photo descriptors run the EfficientNet tower: offline-lit holds it loaded already.
    runners = backbone.model.runners if isinstance(backbone, LitBackbone) else FeatureRunners()
    model, selection = None, None
    if cfg.texture is not None:
        t = time.perf_counter()
        model, selection = texture_kind(catalog, embeddings, cache, cfg.texture, progress, runners)
        stats.seconds["texture"] = time.perf_counter() - t
    kinds = KINDS if model is not None else tuple(k for k in KINDS if k != "texture")
    indexes, tables = {}, {}
    for i, kind in enumerate(kinds):
        t = time.perf_counter()
        vectors, ids = embeddings.matrix(kind, cfg.hybrid_weight)
        index = indexes[kind] = VectorIndex(vectors, ids, cfg.index)
        table_on = table_index_config(len(ids), cfg.index)  # past EXACT_TABLE_LIMIT products: an HNSW graph
        table_cfg = {"kind": kind, "k": cfg.table_k, "index": asdict(table_on), **backbone.cache_config()}
        if table_on.factory != "Flat":  # 2: missing neighbours stored as -1 with score 0, and the table's recall
            table_cfg["table_version"] = 2
        tables[kind] = cache.get_or_compute("neighbours", table_cfg, digest(vectors, ids),
                                            lambda index=index, vectors=vectors, table_on=table_on:
                                            build_neighbour_table(index, vectors, cfg.table_k, table_on))
        stats.seconds[f"index_{kind}"] = time.perf_counter() - t
        if progress:
            progress("indexing", i + 1, len(kinds))
    return Built(catalog, backbone, cfg, embeddings, indexes, tables, stats, report, model, selection, cache, runners)


MIN_TEXTURE_PHOTOS = 10  # fewer readable photos than this: no texture kind (nothing to fit its PCA on)


def texture_kind(catalog: Catalog, embeddings: Embeddings, cache: ArtefactCache, cfg: TextureConfig,
                 progress: Progress | None = None, runners: FeatureRunners | None = None) -> tuple[TextureModel | None, pd.DataFrame | None]:
    """Fill ``embeddings.texture``: texture descriptors of every photo (cached per photo), a TextureModel
    whose weights are chosen on a validation split of the catalogue's pattern labels (cached), applied.
    (None, None) for a catalogue with fewer than MIN_TEXTURE_PHOTOS readable photos. ``runners``: the photo tower
    to use (core.embeddings.lit.runtime.FeatureRunners), a new one when None."""
    from core.embeddings.lit.features import catalog_texture_features
    descriptors, has_photo = catalog_texture_features(catalog, cache, progress, cfg.views, runners)
    if has_photo.sum() < MIN_TEXTURE_PHOTOS:
        return None, None
    products = catalog.products
    labels = products["pattern"].to_numpy(dtype=str) if "pattern" in products else None
    types = products["product_type"].to_numpy(dtype=str) if "product_type" in products else None
    groups = products["group_id"].to_numpy(dtype=str)
    if progress:
        progress("texture embedding", 0, 1)
    key_cfg, fingerprint = asdict(cfg), digest(embeddings.image, descriptors, labels, types, groups)

    def fit() -> dict[str, np.ndarray]:
        return fit_texture_model(embeddings.image, descriptors, labels, groups, types, cfg)
    state = cache.get_or_compute("texture-model", key_cfg, fingerprint, fit)
    if not (state["model.pca_scale_"] > 0).all():  # stored before zero-variance components were dropped: NaN rows
        state = fit()
        cache.save("texture-model", cache.key(key_cfg, fingerprint), state, {"config": key_cfg,
                                                                             "fingerprint": fingerprint})
    model, selection = TextureModel.from_state(state)
    embeddings.texture = model.transform(embeddings.image, descriptors)
    if progress:
        progress("texture embedding", 1, 1)
    return model, selection
