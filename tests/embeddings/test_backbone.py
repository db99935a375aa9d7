"""Tests of image loading, batched encoding and fusing (the backbones themselves: test_openclip.py,
test_registry.py)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import core.embeddings.backbone as embed
from core.embeddings.backbone import (ImageError, encode_by_shape, encode_images, encode_texts, fuse, load_image,
    pad_to_square)

TINY = "random:atelier-tiny"
WHITE = (255, 255, 255)


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random dark pixels (never pure white), so padding is told apart from content."""
    pixels = np.random.default_rng(seed).integers(0, 200, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.fixture
def photos(tmp_path) -> list[str]:
    paths = []
    for i in range(5):
        path = tmp_path / f"photo{i}.png"
        noise_image(20, 30, seed=i).save(path)
        paths.append(str(path))
    return paths


def assert_unit_rows(x: np.ndarray) -> None:
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------- images

def test_pad_to_square_keeps_the_whole_portrait_image():
    img = noise_image(20, 30)
    square = pad_to_square(img)
    assert square.size == (30, 30)
    out, orig = np.asarray(square), np.asarray(img)
    np.testing.assert_array_equal(out[:, 5:25], orig)
    assert np.all(out[:, :5] == 255) and np.all(out[:, 25:] == 255)


def test_pad_to_square_landscape_and_square():
    img = noise_image(31, 20)
    out = np.asarray(pad_to_square(img))
    assert out.shape == (31, 31, 3)
    np.testing.assert_array_equal(out[5:25], np.asarray(img))
    assert np.all(out[:5] == 255) and np.all(out[25:] == 255)
    square = noise_image(16, 16)
    assert pad_to_square(square) is square


def test_load_image_rejects_a_text_file_named_jpg(tmp_path):
    fake = tmp_path / "fake_photo.jpg"
    fake.write_text("this is not a photo\n")
    with pytest.raises(ImageError, match="fake_photo.jpg"):
        load_image(fake)
    with pytest.raises(ImageError, match="fake_photo.jpg"):
        load_image(str(fake))


def test_load_image_rejects_a_truncated_jpeg(tmp_path):
    good = tmp_path / "good.jpg"
    noise_image(64, 96).save(good, quality=95)
    cut = tmp_path / "cut_short.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert load_image(good).size == (64, 96)
    with pytest.raises(ImageError, match="cut_short.jpg"):
        load_image(cut)


def test_load_image_composites_transparency_onto_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[:, :, :3] = (200, 0, 0)  # red everywhere, but ...
    rgba[:, 5:, 3] = 255  # ... only the right half is opaque
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba, "RGBA").save(path)
    got = load_image(path)
    assert got.mode == "RGB"
    out = np.asarray(got)
    assert np.all(out[:, :5] == WHITE)
    assert np.all(out[:, 5:] == (200, 0, 0))


def test_load_image_reads_an_upload_and_greyscale(tmp_path):
    buf = io.BytesIO()
    Image.new("L", (8, 12), 40).save(buf, format="PNG")
    buf.seek(0)
    got = load_image(buf)
    assert got.mode == "RGB" and got.size == (8, 12)
    assert np.all(np.asarray(got) == 40)
    with pytest.raises(ImageError):
        load_image(io.BytesIO(b"GIF89a broken"))


# ---------------------------------------------------------------- encoding

def test_encode_images_unit_rows_and_errors(tiny_backbone, photos, tmp_path):
    bad = tmp_path / "not_an_image.png"
    bad.write_text("text")
    paths = photos[:2] + [str(bad)] + photos[2:] + [str(tmp_path / "missing.png")]
    rows, errors = encode_images(tiny_backbone, paths, batch_size=3)
    assert rows.shape == (7, tiny_backbone.dim) and rows.dtype == np.float32
    assert set(errors) == {2, 6}
    assert "not_an_image.png" in errors[2] and "missing.png" in errors[6]
    np.testing.assert_array_equal(rows[[2, 6]], 0.0)
    good = [0, 1, 3, 4, 5]
    assert_unit_rows(rows[good])
    gaps = np.abs(rows[good][:, None] - rows[good][None]).max(axis=2)
    assert np.all(gaps[~np.eye(5, dtype=bool)] > 1e-4)  # different photos, different rows


def test_encode_images_is_independent_of_batch_size(tiny_backbone, photos):
    reference, _ = encode_images(tiny_backbone, photos, batch_size=64)
    for batch_size, workers in ((1, 1), (2, 2), (4, 3)):
        rows, errors = encode_images(tiny_backbone, photos, batch_size=batch_size, workers=workers)
        assert not errors
        np.testing.assert_allclose(rows, reference, atol=1e-5)


def test_encode_images_reports_progress(tiny_backbone, photos):
    calls = []
    encode_images(tiny_backbone, photos, batch_size=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_encode_images_edge_cases(tiny_backbone, tmp_path):
    rows, errors = encode_images(tiny_backbone, [])
    assert rows.shape == (0, tiny_backbone.dim) and errors == {}
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 nope")
    rows, errors = encode_images(tiny_backbone, [str(bad)])
    assert rows.shape == (1, tiny_backbone.dim) and np.all(rows == 0) and list(errors) == [0]


def test_encode_by_shape_groups_a_batch_of_several_shapes_and_keeps_the_order():
    tensors = [torch.full((3, 4, w), float(i)) for i, w in enumerate([2, 6, 2, 6, 6])]
    calls = []

    def encode(x: torch.Tensor) -> np.ndarray:  # (b, 3, 4, w) -> (b, 2): the value and the width
        calls.append(tuple(x.shape))
        return np.stack([x[:, 0, 0, 0].numpy(), np.full(len(x), x.shape[-1], dtype=np.float32)], axis=1)

    out = encode_by_shape(encode, tensors)
    np.testing.assert_array_equal(out, [[0, 2], [1, 6], [2, 2], [3, 6], [4, 6]])
    assert sorted(calls) == [(2, 3, 4, 2), (3, 3, 4, 6)]
    calls.clear()
    assert encode_by_shape(encode, tensors[1::2]).shape == (2, 2) and calls == [(2, 3, 4, 6)]  # one shape: one call


def test_encode_texts(tiny_backbone):
    texts = ["red striped dress", "black jacket", "", "blue checked skirt"]
    rows = encode_texts(tiny_backbone, texts, batch_size=3)
    assert rows.shape == (4, tiny_backbone.dim)
    assert_unit_rows(rows)
    np.testing.assert_allclose(rows, encode_texts(tiny_backbone, texts, batch_size=256), atol=1e-5)
    assert encode_texts(tiny_backbone, []).shape == (0, tiny_backbone.dim)


def test_trimmed_text_encoding_equals_the_full_context(tiny_backbone):
    """encode_text runs the text tower over the batch's longest sentence only; the rows must equal
    open_clip's own encode_text over all 77 positions, for short, long and over-long texts."""
    texts = ["", "dress", "Strap top: a black solid vest top, Womens Everyday Basics, Ladieswear.",
             "a very long product description " * 20]
    tokens = tiny_backbone.tokenizer(texts)
    assert (tokens[-1] != 0).all()  # the last text fills the whole context
    with torch.inference_mode():
        full = embed.l2_normalise(tiny_backbone.model.encode_text(tokens).float().numpy())
    np.testing.assert_allclose(tiny_backbone.encode_text(texts), full, atol=1e-5)
    for i, t in enumerate(texts):  # alone, each text is trimmed to its own length
        np.testing.assert_allclose(tiny_backbone.encode_text([t])[0], full[i], atol=1e-5)


# ---------------------------------------------------------------- fuse

def test_fuse_unit_rows_and_text_without_photo():
    rng = np.random.default_rng(0)
    image = embed.l2_normalise(rng.normal(size=(6, 8)))
    text = embed.l2_normalise(rng.normal(size=(6, 8)))
    has_image = np.array([True, True, False, True, False, True])
    hybrid = fuse(image, text, 0.5, has_image)
    assert hybrid.shape == (6, 8) and hybrid.dtype == np.float32
    assert_unit_rows(hybrid)
    np.testing.assert_allclose(hybrid[~has_image], text[~has_image], atol=1e-6)
    np.testing.assert_allclose(hybrid[has_image], embed.l2_normalise(image + text)[has_image], atol=1e-6)
    np.testing.assert_allclose(fuse(image, text, 1.0), image, atol=1e-6)
    np.testing.assert_allclose(fuse(image, text, 0.0), text, atol=1e-6)
