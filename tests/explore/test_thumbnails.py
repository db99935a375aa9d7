"""Thumbnails of the catalogue's photos: named by content, written once, small, unreadable photos skipped."""
from __future__ import annotations

import shutil

from PIL import Image

from core.cache import ArtefactCache
from core.explore.thumbnails import thumbnail_folder, thumbnail_names, write_thumbnails


def test_thumbnails_are_named_by_content_written_once_and_small(synthetic_catalog, tmp_path):
    cache = ArtefactCache(tmp_path / "cache")
    paths = synthetic_catalog.products["image_path"].tolist()[:6]
    twin = tmp_path / "twin.png"  # the same photo at another path shares its thumbnail
    shutil.copy(paths[0], twin)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    paths = [*paths, str(twin), str(broken), "", str(tmp_path / "missing.jpg")]
    names = thumbnail_names(cache, paths)
    assert names[6] == names[0] and len(set(names[:6])) == 6 and names[8:] == ["", ""]
    assert all(n.endswith(".jpg") for n in names[:8])

    folder = thumbnail_folder(cache, side=32)
    seen = []
    assert write_thumbnails(paths, names, folder, side=32, progress=lambda *a: seen.append(a)) == 6
    assert sorted(p.name for p in folder.iterdir()) == sorted(set(names[:6]))  # the broken one is skipped
    with Image.open(folder / names[0]) as small, Image.open(paths[0]) as photo:
        assert max(small.size) == 32 and small.format == "JPEG"
        assert abs(small.size[0] / small.size[1] - photo.size[0] / photo.size[1]) < 0.1
    assert seen[-1] == ("photo thumbnails for the map", 7, 7)
    assert write_thumbnails(paths, names, folder, side=32) == 0  # all there: nothing written again
