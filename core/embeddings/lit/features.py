"""offline-lit's tower features of a catalogue: photo features in bulk, cached per photo and per sentence."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from core.cache import ArtefactCache, RowStore, digest
from core.embeddings.backbone import encode_by_shape, encode_images
from core.embeddings.lit.descriptor import descriptor_dim, texture_cfg, texture_descriptor
from core.embeddings.lit.runtime import FeatureRunner, FeatureRunners, create_feature_tower, export_onnx_text_tower, \
    export_onnx_tower, runtime_choice
from core.embeddings.lit.text import TextTower
from core.embeddings.lit.towers import IMAGE_FEATURES, IMAGE_TOWER_CFG, TEXT_FEATURES, TEXT_TOWER_CFG, \
    TEXTURE_BLOCKS, ImageTower
from core.embeddings.lit.views import TEXTURE_VIEWS, LitImagePreprocess, check_views, photo_canvas
from core.executor import current

log = logging.getLogger(__name__)

# Photos per ONNX Runtime call in photo_features. Measured on 768 H&M photos (2:3, so 160 x 224 canvases),
# 2 cores, decoding in 2 threads alongside, two rounds: quiet, batch 8, 16 and 32 gave 158-169, 181-189 and
# 187-192 photos/s; with a busy loop on one core, 91-97, 101-103 and 109-126. (With square 224 x 224 canvases
# and a heavier neighbour job, batch 8 had done better; it no longer does.)
FEATURE_BATCH = 32
# Sentences per chunk saved to the store: sorted by tokens within a chunk, so a larger chunk pads less (H&M, batches
# of 128: 1.289x the real tokens in chunks of 1,024, 1.018x over all 24,717); about 30 s of a 2-core machine's work.
TEXT_CHUNK = 8192
PHOTO_CHUNK = 1024  # photos per chunk saved to the stores (and per batch of a cluster's worker)


@dataclass
class _StackedFeatures:
    """Just enough of a Backbone for :func:`core.embeddings.backbone.encode_images`: a runner's outputs side by side."""
    tower: FeatureRunner
    preprocess: Callable[[Image.Image], torch.Tensor] = dataclasses.field(default_factory=LitImagePreprocess)

    @property
    def dim(self) -> int:
        return sum(self.tower.widths)

    def encode_image(self, batch: torch.Tensor) -> np.ndarray:
        return np.concatenate(self.tower(batch), axis=1)


def photo_features(paths: Sequence[str], tower: FeatureRunner, batch_size: int = FEATURE_BATCH, workers: int = 2,
                   progress: Callable[[int, int], None] | None = None, preprocess: LitImagePreprocess | None = None
                   ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[int, str]]:
    """Photo files through ``tower`` (a :class:`~core.embeddings.lit.towers.FeatureTower` runner, see
    :class:`~core.embeddings.lit.runtime.FeatureRunners`) in bulk, decoding the next batch in threads while it runs.

    Returns pooled (n, 1280) float32 (as :class:`ImageTower` gives), the texture outputs
    {``mean<b>``: (n, c), ``gram<b>``: (n, c (c+1)/2)} float32, and {row: error} for unreadable photos,
    whose rows are zero. ``preprocess``: a view of the photo (see TEXTURE_VIEWS), the photo itself by default."""
    preprocess = preprocess or LitImagePreprocess()
    order = None
    # Photos of one canvas shape batched together: a shop's photos of several aspect ratios would otherwise split
    # each batch into small calls, one per shape. Reading every header costs 0.15 ms a photo, so only when 64 photos
    # spread over the catalogue show more than one shape (a rare odd shape costs only its own small calls).
    # Rows and errors come back in the order given.
    if preprocess.keeps_shape and len({photo_canvas(p) for p in paths[::max(1, len(paths) // 64)]}) > 1:
        canvases = [photo_canvas(p) for p in paths]
        order = np.array(sorted(range(len(paths)), key=lambda i: canvases[i]), dtype=np.int64)
        paths = [paths[i] for i in order]
    rows, errors = encode_images(_StackedFeatures(tower, preprocess), paths, batch_size, workers, progress)
    if order is not None:  # back to the order given
        rows[order] = rows.copy()
        errors = {int(order[i]): message for i, message in errors.items()}
    parts = np.split(rows, np.cumsum(tower.widths)[:-1], axis=1)
    return parts[0], dict(zip(tower.names[1:], parts[1:])), errors


def photo_descriptors(images: Sequence[Image.Image], tower: FeatureRunner,
                      views: Sequence[str] = ("photo",)) -> np.ndarray:
    """(n, D x len(views)) float32 texture descriptors (:func:`texture_descriptor`, one per view, side by
    side) of decoded photos, e.g. an uploaded query photo, through ``tower``: the catalogue's runner gives
    them as :func:`catalog_texture_features` does."""
    views = check_views(views)
    if len(images) == 0:
        return np.zeros((0, descriptor_dim() * len(views)), dtype=np.float32)
    out = []
    for view in views:
        preprocess = TEXTURE_VIEWS[view]()
        out.append(encode_by_shape(lambda x: texture_descriptor(dict(zip(tower.names[1:], tower(x)[1:]))),
                                   [preprocess(img) for img in images]))
    return np.concatenate(out, axis=1)


@dataclass
class EagerImageFeatures:
    """Just enough of a Backbone for :func:`core.embeddings.backbone.encode_images` to return the pooled features
    of eager PyTorch's :class:`ImageTower`: the naive path the benchmarks compare the bulk one with."""
    tower: ImageTower
    preprocess: Callable[[Image.Image], torch.Tensor] = dataclasses.field(default_factory=LitImagePreprocess)
    dim: int = IMAGE_FEATURES

    @torch.inference_mode()
    def encode_image(self, batch: torch.Tensor) -> np.ndarray:
        return self.tower(batch).float().numpy()


def image_features(tower: ImageTower, paths: Sequence[str], batch_size: int = 32, workers: int = 2,
                   progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """(n, 1280) float32 pooled features of photo files by eager PyTorch (zero rows for unreadable ones) and
    {row: error}; photos are decoded in threads while it runs."""
    return encode_images(EagerImageFeatures(tower), paths, batch_size, workers, progress)


def catalog_features(catalog, cache: ArtefactCache, progress=None, computed: dict[str, int] | None = None,
                     runners: FeatureRunners | None = None, text: TextTower | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
    """Tower features of every product, computed once and cached per photo and per sentence:
    image (n, 1280), text (n, 384) float32, has_image (n,) bool, {row: error} for unreadable photos.
    A photo's texture descriptor is stored in the same pass (see :func:`catalog_texture_features`).
    ``computed``, if given, receives how many photos and sentences went through a tower this time.
    ``runners`` and ``text``: the loaded towers to use (held by the caller); new ones for this call when None."""
    [image, _], [has_image, _], n_images, errors = _catalog_photo_features(catalog, cache, progress, runners)
    rows, n_texts = sentence_features(catalog, cache, progress, text)
    if computed is not None:
        computed.update(images=n_images, texts=n_texts)
    return image, rows, has_image, errors


def sentence_features(catalog, cache: ArtefactCache, progress=None, text: TextTower | None = None
                      ) -> tuple[np.ndarray, int]:
    """MiniLM features (n, 384) float32 of every product's sentence, cached per sentence and saved every
    TEXT_CHUNK sentences, and how many went through the tower this time. ``text``: the loaded text tower to use
    (held by the caller); a new one for this call when None."""
    sentences = catalog.products["sentence"].tolist()
    text = text or TextTower(cache)
    [rows], _, n_texts, _ = _fill_stores(
        [RowStore(cache, "lit-text-features", TEXT_TOWER_CFG)], [digest(s) for s in sentences], [lambda: TEXT_FEATURES],
        lambda rows, p: ([text([sentences[i] for i in rows], progress=p)], {}), TEXT_CHUNK,
        progress=(lambda d, n: progress("text features", d, n)) if progress else None,
        work=SentenceBatch(str(cache.root.absolute())), inputs=sentences)
    return rows, n_texts


def catalog_texture_features(catalog, cache: ArtefactCache, progress=None, views: Sequence[str] = ("photo",),
                             runners: FeatureRunners | None = None, computed: dict[str, int] | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Texture descriptors of every product's photo (:func:`texture_descriptor` of :class:`FeatureTower`
    over TEXTURE_BLOCKS), cached per photo and view: (n, D x len(views)) float32, one descriptor per view
    side by side, zero rows where there is no readable photo, and has_image (n,) bool. Photos missing from
    the store are featurised once, filling the pooled features' store (``lit-image-features``) in the
    same pass; each other view (TEXTURE_VIEWS) is one more pass over the photos it lacks. ``runners``: the
    loaded photo tower to use (held by the caller); a new one for this call when None. ``computed``, if given,
    receives how many photos went through the tower in the first pass (``images``)."""
    views = check_views(views)
    runners = runners or FeatureRunners()
    [_, photo], [_, has_image], n_images, _ = _catalog_photo_features(catalog, cache, progress, runners)
    if computed is not None:
        computed.update(images=n_images)
    paths = catalog.products["image_path"].tolist()
    out = []
    for view in views:
        if view == "photo":
            out.append(photo)
            continue
        def encode(rows, step, view=view):
            _, descriptors, errors = photo_features([paths[i] for i in rows], runners.get(cache), progress=step,
                                                    preprocess=TEXTURE_VIEWS[view]())
            return [texture_descriptor(descriptors)], errors
        [rows], _, _, _ = _fill_stores(
            [RowStore(cache, "lit-texture-features", {**texture_cfg(TEXTURE_BLOCKS), "view": view})],
            cache.file_digests(paths), [descriptor_dim], encode,
            progress=(lambda d, n, view=view: progress(f"texture features ({view})", d, n)) if progress else None,
            work=PhotoBatch(str(cache.root.absolute()), view, outputs=("descriptor",)), inputs=paths)
        out.append(rows)
    # one view (the usual case) is returned as it is: a concatenated copy would hold the descriptors twice
    return (out[0] if len(out) == 1 else np.concatenate(out, axis=1)), has_image


def _catalog_photo_features(catalog, cache: ArtefactCache, progress=None, runners: FeatureRunners | None = None):
    """(pooled, texture) rows, their (n,) bool masks, how many photos were featurised, {row: error}."""
    paths = catalog.products["image_path"].tolist()
    runners = runners or FeatureRunners()
    stores = [RowStore(cache, "lit-image-features", IMAGE_TOWER_CFG),
              RowStore(cache, "lit-texture-features", texture_cfg(TEXTURE_BLOCKS))]

    def encode(rows: list[int], step) -> tuple[list[np.ndarray], dict[int, str]]:
        pooled, descriptors, errors = photo_features([paths[i] for i in rows], runners.get(cache), progress=step)
        return [pooled, texture_descriptor(descriptors)], errors

    return _fill_stores(stores, cache.file_digests(paths), [lambda: IMAGE_FEATURES, lambda: descriptor_dim()],
                        encode, PHOTO_CHUNK,
                        progress=(lambda d, n: progress("image features", d, n)) if progress else None,
                        work=PhotoBatch(str(cache.root.absolute())), inputs=paths)


def _fill_stores(stores: list[RowStore], keys: list[str], dims: list[Callable[[], int]],
                 encode: Callable[[list[int], Callable[[int, int], None] | None],
                                  tuple[list[np.ndarray], dict[int, str]]],
                 chunk: int = 1024, progress: Callable[[int, int], None] | None = None,
                 work: PhotoBatch | SentenceBatch | None = None, inputs: Sequence[str] = ()
                 ) -> tuple[list[np.ndarray], list[np.ndarray], int, dict[int, str]]:
    """:meth:`RowStore.fill` for several stores filled by one model pass: a key missing from any store is
    encoded once (``encode(rows, progress)`` -> (one (len(rows), d) array per store, {position: error})),
    and each store gets the rows it lacks; rows a store already had are kept as stored. ``dims``: each
    store's width, asked only when the store is empty and nothing is computed. Returns per store the
    (n, d) float32 rows and the (n,) bool mask of rows present, how many keys were encoded, {row: error}.

    With a cluster's executor installed (:func:`core.executor.current`), ``work`` (one output per store, in
    order) runs on its workers over chunks of ``inputs`` (the photo paths or sentences, one per key) instead of
    ``encode``; each chunk is saved here as it comes back, so an interrupted run keeps every chunk it got."""
    got = [store.get(keys) for store in stores]
    found = [f for _, f in got]
    matrices = [m for m, _ in got]
    todo = [i for i, k in enumerate(keys) if k and not all(f[i] for f in found)]
    computed, errors = 0, {}

    def take(part: np.ndarray, outputs: list[np.ndarray], failed: dict[int, str]) -> None:
        nonlocal computed
        good = np.array([j for j in range(len(part)) if j not in failed], dtype=np.int64)
        for s, (store, out) in enumerate(zip(stores, outputs)):
            if matrices[s] is None:
                matrices[s] = np.zeros((len(keys), out.shape[1]), dtype=np.float32)
            new = good[~found[s][part[good]]]
            matrices[s][part[new]] = out[new]
            found[s][part[new]] = True
            store.put([keys[i] for i in part[new]], out[new])
        computed += len(good)
        errors.update({int(part[j]): m for j, m in failed.items()})

    executor = current()
    if executor is not None and work is not None and todo:
        todo = np.asarray(todo, dtype=np.int64)
        work.prepare()
        for positions, out in executor.map(work, np.asarray([inputs[i] for i in todo]), chunk, progress):
            take(todo[positions], [out[name] for name in work.outputs],
                 {j: str(m) for j, m in enumerate(out["error"]) if m})
    else:
        for start in range(0, len(todo), chunk):
            part = np.asarray(todo[start:start + chunk])
            step = (lambda done, _n, start=start: progress(start + done, len(todo))) if progress else None
            take(part, *encode(part.tolist(), step))
            if progress:
                progress(start + len(part), len(todo))
    matrices = [m if m is not None else np.zeros((len(keys), dim()), dtype=np.float32)
                for m, dim in zip(matrices, dims)]
    return matrices, found, computed, errors


WORKER_THREADS = 1  # ONNX Runtime threads (and CPUs asked for) per cluster worker featurising photos or sentences


@dataclass
class PhotoBatch:
    """Featurising photos on a cluster's worker (see :mod:`core.executor`): paths (b,) -> ``pooled`` (b, 1280),
    ``descriptor`` (b, D) of the photo's ``view`` (TEXTURE_VIEWS), ``error`` (b,) str ("" where the photo was read;
    zero rows where not). The tower is loaded from the cache at ``cache_root`` (exported there when missing) on
    the first batch and kept, on ``threads`` ONNX Runtime threads."""
    cache_root: str
    view: str = "photo"
    threads: int = WORKER_THREADS
    outputs: tuple[str, ...] = ("pooled", "descriptor")
    _runner: FeatureRunner | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def prepare(self) -> None:
        """Export the tower into the cache here, once, before the workers load it: on a first run every worker
        would otherwise export it at once."""
        _export_here(lambda: export_onnx_tower(ArtefactCache(self.cache_root)))

    def __call__(self, paths: np.ndarray) -> dict[str, np.ndarray]:
        if self._runner is None:
            self._runner = create_feature_tower(ArtefactCache(self.cache_root), threads=self.threads)
        pooled, descriptors, errors = photo_features([str(p) for p in paths], self._runner, workers=self.threads,
                                                     preprocess=TEXTURE_VIEWS[self.view]())
        return {"pooled": pooled, "descriptor": texture_descriptor(descriptors),
                "error": np.array([errors.get(i, "") for i in range(len(paths))], dtype=object)}


@dataclass
class SentenceBatch:
    """Featurising sentences on a cluster's worker (see :mod:`core.executor`): sentences (b,) -> ``features``
    (b, 384), ``error`` (b,) str (all ""). MiniLM is loaded (its ONNX export from the cache at ``cache_root``) on
    the first batch and kept, on ``threads`` ONNX Runtime threads."""
    cache_root: str
    threads: int = WORKER_THREADS
    outputs: tuple[str, ...] = ("features",)
    _text: TextTower | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def prepare(self) -> None:
        """Export MiniLM into the cache here, once, before the workers load it (see :meth:`PhotoBatch.prepare`)."""
        cache = ArtefactCache(self.cache_root)
        _export_here(lambda: export_onnx_text_tower(cache, TextTower(cache)))

    def __call__(self, sentences: np.ndarray) -> dict[str, np.ndarray]:
        if self._text is None:
            self._text = TextTower(ArtefactCache(self.cache_root), threads=self.threads)
        return {"features": self._text([str(s) for s in sentences]),
                "error": np.full(len(sentences), "", dtype=object)}


def _export_here(export: Callable[[], object]) -> None:
    """``export()`` unless PyTorch is asked for (nothing to export); when it fails, each worker tries and falls back
    to PyTorch as it would here (:func:`~core.embeddings.lit.runtime.onnx_or_torch`), with its warning."""
    if runtime_choice() == "torch":
        return
    try:
        export()
    except Exception as e:  # ImportError (no onnxruntime), an exporter error
        log.warning("exporting a tower to ONNX before the workers start failed (%s: %s)", e.__class__.__name__, e)


def attribute_captions(products) -> list[list[str]]:
    """Short captions from a product's attributes, e.g. ["a striped dress", "a red dress"]: extra
    training texts beside the full sentence (caption augmentation), so the heads also align photos
    with the short phrases people search and prompt with. One list per caption kind, (n,) each."""
    from core.data.catalog import pattern_phrase
    kind = [t.lower() or "garment" for t in products["product_type"]] if "product_type" in products \
        else ["garment"] * len(products)
    out = []
    if "pattern" in products:
        out.append([f"a {pattern_phrase(x)} {k}".replace("  ", " ")
                    for x, k in zip(products["pattern"], kind)])
    if "colour" in products:
        out.append([f"a {x.lower()} {k}".replace("  ", " ") for x, k in zip(products["colour"], kind)])
    return out


def caption_features(catalog, cache: ArtefactCache, progress=None, text: TextTower | None = None) -> list[np.ndarray]:
    """MiniLM features (n, 384) of each kind of :func:`attribute_captions`, cached per caption. ``text``: the
    loaded text tower to use (held by the caller); a new one for this call when None."""
    text = text or TextTower(cache)
    out = []
    for captions in attribute_captions(catalog.products):
        unique = sorted(set(captions))  # few distinct captions: encode each once
        rows, _, _, _ = RowStore(cache, "lit-text-features", TEXT_TOWER_CFG).fill(
            [digest(c) for c in unique], TEXT_FEATURES,
            lambda r, p, unique=unique: (text([unique[i] for i in r]), {}),
            progress=(lambda d, n: progress("caption features", d, n)) if progress else None)
        position = {c: i for i, c in enumerate(unique)}
        out.append(rows[[position[c] for c in captions]])
    return out
