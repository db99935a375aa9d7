"""Decompression bombs: small files that decode to a flat grey square of the side asked for."""
import io

from PIL import Image

from core.bench.bombs import bomb_photos


def test_bomb_photos_are_small_files_of_many_pixels():
    photos = bomb_photos(side=2000, formats=("GIF", "PNG", "JPEG"))
    assert list(photos) == ["GIF", "PNG", "JPEG"]
    for fmt, data in photos.items():
        assert len(data) < 2000 * 2000 / 50, fmt  # flat grey compresses well over 50 to 1
        with Image.open(io.BytesIO(data)) as img:
            assert (img.format, img.size) == (fmt, (2000, 2000))
            assert img.convert("L").getextrema() == (128, 128)
