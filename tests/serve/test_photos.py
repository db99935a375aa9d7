"""An upload is judged by its header alone: its format, its pixels, each refusal's status."""
import io

import pytest
from fastapi import HTTPException
from PIL import Image

from core.serve.photos import photo_suffix


def _image(fmt: str, size=(32, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


def test_the_suffix_comes_from_the_format():
    assert [photo_suffix(_image(f), 10_000) for f in ("JPEG", "PNG", "WEBP")] == [".jpg", ".png", ".webp"]


@pytest.mark.parametrize("data, status", [
    (b"", 422),                              # empty
    (b"not an image at all", 415),           # no format we take
    (_image("GIF"), 415),                    # an image, but not one we take
    (_image("PNG", (200, 100)), 413),        # over the pixel limit (20,000 > 10,000)
    (_image("PNG")[:20], 422),               # a header cut short
])
def test_refusals_and_their_statuses(data, status):
    with pytest.raises(HTTPException) as e:
        photo_suffix(data, 10_000)
    assert e.value.status_code == status
