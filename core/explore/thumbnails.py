"""Thumbnails of the catalogue's photos, named by each photo's content: what a browser is sent to show a product
on hover (a few kB) instead of the photo itself."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.cache import ArtefactCache, write_atomic
from core.progress import Progress

SIDE = 192  # pixels on the longer side; the map's hover shows them at about this size
QUALITY = 85


def thumbnail_folder(cache: ArtefactCache, side: int = SIDE) -> Path:
    """Where thumbnails of ``side`` pixels live: ``<cache root>/thumbnails/<side>`` (nothing else is written there,
    so the folder can be served as it is)."""
    return cache.root / "thumbnails" / str(side)


def thumbnail_names(cache: ArtefactCache, paths: list[str]) -> list[str]:
    """A file name per photo path: ``<digest of the photo's bytes>.jpg``, "" for no or an unreadable photo. The
    digests come from the cache's memo (:meth:`ArtefactCache.file_digests`), so a built catalogue's photos are
    only looked at, not read again."""
    return [f"{d}.jpg" if d else "" for d in cache.file_digests(paths)]


def write_thumbnail(path: str, target: Path, side: int = SIDE) -> bool:
    """``target``: a JPEG of the photo at ``path``, at most ``side`` pixels wide and high; False when the photo
    cannot be read."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            image.draft("RGB", (side, side))  # a JPEG decodes at 1/2, 1/4 or 1/8 scale: several times faster
            small = image.convert("RGB")
    except OSError:
        return False
    # Bilinear (antialiased when shrinking, as every PIL filter is) rather than thumbnail()'s default bicubic:
    # 0.4 ms a photo instead of 0.9 for a thumbnail shown at about its own size.
    small.thumbnail((side, side), Image.Resampling.BILINEAR)
    write_atomic(target, lambda f: small.save(f, "JPEG", quality=QUALITY))
    return True


def write_thumbnails(paths: list[str], names: list[str], folder: Path, side: int = SIDE,
                     progress: Progress | None = None, workers: int = 2) -> int:
    """Writes ``folder/<name>`` (:func:`write_thumbnail`) for each photo whose thumbnail is missing, in ``workers``
    threads (decoding, resizing and encoding release the GIL); a photo that cannot be read is skipped. ``paths``
    and ``names`` align (:func:`thumbnail_names`). Returns how many it wrote."""
    folder.mkdir(parents=True, exist_ok=True)
    todo = {name: path for path, name in zip(paths, names) if name and not (folder / name).is_file()}
    written = 0
    pool = ThreadPoolExecutor(max(1, workers))
    try:
        done = pool.map(lambda item: write_thumbnail(item[1], folder / item[0], side), todo.items())
        for i, ok in enumerate(done):
            if progress and i % 200 == 0:
                progress("photo thumbnails for the map", i, len(todo))
            written += ok
    finally:  # an error (or a stopped page's progress) leaves the photos not yet started unstarted
        pool.shutdown(cancel_futures=True)
    if progress:
        progress("photo thumbnails for the map", len(todo), len(todo))
    return written


def catalog_thumbnails(products, cache: ArtefactCache, progress: Progress | None = None) -> list[str]:
    """Thumbnails of every product's photo in ``thumbnail_folder(cache)``, written where missing; returns each
    product's thumbnail file name ("" without a photo), in the order of ``products``."""
    paths = products["image_path"].fillna("").astype(str).tolist()
    if progress:
        progress("finding the photos' thumbnails", 0, 0)
    names = thumbnail_names(cache, paths)
    write_thumbnails(paths, names, thumbnail_folder(cache), progress=progress)
    return names
