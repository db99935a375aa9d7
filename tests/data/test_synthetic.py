"""Tests of the synthetic catalogue: determinism, schema, coverage, simulated taste, photo ground truth."""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.data import synthetic
from core.data.catalog import product_sentences
from core.data.synthetic import COLOURS, PATTERNS, SILHOUETTES, draw_product, garment_mask, make_catalog

PRODUCT_COLUMNS = ["title", "description", "image_path", "group_id", "product_type", "colour", "pattern",
                   "section", "index_group", "sentence"]


@pytest.fixture(scope="module")
def catalog_200(tmp_path_factory):
    return make_catalog(200, seed=0, image_dir=tmp_path_factory.mktemp("syn200"))


def _image_bytes(products: pd.DataFrame) -> list[bytes]:
    return [Path(p).read_bytes() for p in products["image_path"]]


def _mtimes(products: pd.DataFrame) -> list[int]:
    return [os.stat(p).st_mtime_ns for p in products["image_path"]]


def _profile_spread(image: Image.Image, silhouette: str) -> tuple[float, float]:
    """Std of the mean grey level inside the garment, across rows and across columns.
    Only rows/columns at least half as full of garment as the fullest one count, so the
    edges of the outline (a few pixels wide) do not decide the result."""
    grey = np.asarray(image, dtype=float).mean(axis=2)
    mask = garment_mask(silhouette)
    spreads = []
    for axis in (1, 0):  # axis 1: one mean per row; axis 0: one mean per column
        count = mask.sum(axis=axis)
        full = count >= 0.5 * count.max()
        means = (grey * mask).sum(axis=axis)[full] / count[full]
        spreads.append(float(means.std()))
    return spreads[0], spreads[1]


# ---------------------------------------------------------------- determinism

def test_same_seed_gives_identical_catalogue_and_photos(tmp_path):
    a = make_catalog(40, seed=3, image_dir=tmp_path / "a")
    b = make_catalog(40, seed=3, image_dir=tmp_path / "b")
    pd.testing.assert_frame_equal(a.products.drop(columns=["image_path", "sentence"]),
                                  b.products.drop(columns=["image_path", "sentence"]))
    pd.testing.assert_frame_equal(a.customers, b.customers)
    pd.testing.assert_frame_equal(a.purchases, b.purchases)
    assert _image_bytes(a.products) == _image_bytes(b.products)


def test_different_seed_gives_different_catalogue_and_photos(tmp_path):
    a = make_catalog(120, seed=3, image_dir=tmp_path / "a")
    b = make_catalog(120, seed=4, image_dir=tmp_path / "b")
    combination = ["product_type", "colour", "pattern"]
    assert not a.products[combination].equals(b.products[combination])
    assert not a.purchases.equals(b.purchases)
    # at 120 products each seed draws every combination once; the seed's jitter tells the photos apart
    photos_a = dict(zip(map(tuple, a.products[combination].to_numpy()), _image_bytes(a.products)))
    photos_b = dict(zip(map(tuple, b.products[combination].to_numpy()), _image_bytes(b.products)))
    assert photos_a.keys() == photos_b.keys()
    assert sum(photos_a[k] != photos_b[k] for k in photos_a) >= 110


def test_draw_product_is_a_function_of_the_rng():
    args = ("dress", COLOURS["blue"], "check")
    one = np.asarray(draw_product(*args, np.random.default_rng(7)))
    two = np.asarray(draw_product(*args, np.random.default_rng(7)))
    other = np.asarray(draw_product(*args, np.random.default_rng(8)))
    np.testing.assert_array_equal(one, two)
    assert (one != other).any()


# ---------------------------------------------------------------- schema

def test_products_schema(catalog_200):
    products = catalog_200.products
    assert list(products.columns) == PRODUCT_COLUMNS
    assert products.index.name == "product_id"
    assert products.index.is_unique
    assert products.index[0] == "syn00000" and products.index[-1] == "syn00199"
    for col in PRODUCT_COLUMNS:
        assert pd.api.types.is_string_dtype(products[col]), col
        assert products[col].map(type).eq(str).all(), col
    assert (products["group_id"] == products.index).all()
    assert set(products["section"]) == {synthetic.SECTION}
    assert set(products["index_group"]) == {"Synthetic"}
    assert products["sentence"].tolist() == product_sentences(products.drop(columns=["sentence"]))
    row = products.loc["syn00000"]
    assert row["title"].lower() == f"{row['colour']} {synthetic.PATTERN_TITLES[row['pattern']]} " \
                                   f"{row['product_type']}"
    assert catalog_200.attribute_columns == ["product_type", "colour", "pattern", "section", "index_group"]


def test_every_photo_exists_and_is_a_128x192_rgb_png(catalog_200):
    for path in catalog_200.products["image_path"]:
        assert Path(path).is_absolute()
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.mode == "RGB"
            assert image.size == (128, 192)
    assert catalog_200.counts()["missing_images"] == 0


def test_customers_purchases_and_catalogue_fields(catalog_200):
    c = catalog_200
    assert c.simulated is True
    assert c.source == "synthetic:200:0"
    assert c.name == "Synthetic catalogue (simulated customers, 200 products)"
    assert c.report.ok
    assert c.customers.index.name == "customer_id"
    assert len(c.customers) == 100  # default n_products // 2
    assert c.customers.index[0] == "sim-cust-0000"
    assert list(c.customers.columns) == ["taste_pattern", "taste_colour", "simulated"]
    assert set(c.customers["simulated"]) == {"yes"}
    assert set(c.customers["taste_pattern"]) <= set(PATTERNS)
    assert set(c.customers["taste_colour"]) <= set(COLOURS)
    assert list(c.purchases.columns) == ["customer_id", "product_id", "timestamp", "price"]
    assert c.purchases["timestamp"].dtype == "datetime64[ns]"
    assert c.purchases["price"].dtype == "float64"
    assert pd.api.types.is_string_dtype(c.purchases["customer_id"])
    assert pd.api.types.is_string_dtype(c.purchases["product_id"])


def test_default_customer_count_has_a_floor(tmp_path):
    small = make_catalog(8, seed=0, image_dir=tmp_path / "a")
    assert len(small.customers) == 10
    chosen = make_catalog(8, seed=0, image_dir=tmp_path / "b", n_customers=3)
    assert len(chosen.customers) == 3
    assert set(chosen.purchases["customer_id"]) == set(chosen.customers.index)


# ---------------------------------------------------------------- coverage and purchases

def test_every_combination_appears_at_200(catalog_200):
    products = catalog_200.products
    seen = set(zip(products["product_type"], products["colour"], products["pattern"]))
    assert seen == set(itertools.product(SILHOUETTES, COLOURS, PATTERNS))


def test_purchases_reference_known_rows_and_are_well_formed(catalog_200):
    p = catalog_200.purchases
    assert p["product_id"].isin(catalog_200.products.index).all()
    assert p["customer_id"].isin(catalog_200.customers.index).all()
    assert set(p["customer_id"]) == set(catalog_200.customers.index)  # everyone buys something
    assert p["timestamp"].is_monotonic_increasing
    assert p["timestamp"].min() >= pd.Timestamp("2020-01-01")
    assert p["timestamp"].max() < pd.Timestamp("2020-07-01")
    assert p["price"].notna().all() and (p["price"] > 0).all()
    per_customer = p.groupby("customer_id").size()
    assert per_customer.min() >= 3 and per_customer.max() <= 12
    assert not p.duplicated(["customer_id", "product_id"]).any()


def test_simulated_taste_drives_purchases(catalog_200):
    c = catalog_200
    bought = c.purchases.join(c.products[["pattern", "colour"]], on="product_id") \
                        .join(c.customers[["taste_pattern", "taste_colour"]], on="customer_id")
    per_customer = bought.assign(pattern_match=bought["pattern"] == bought["taste_pattern"],
                                 colour_match=bought["colour"] == bought["taste_colour"]) \
                         .groupby("customer_id")[["pattern_match", "colour_match"]].mean()
    # chance is 1/4 for the pattern and 1/6 for the colour; the taste share is 0.8
    assert per_customer["pattern_match"].mean() > 0.6
    assert per_customer["colour_match"].mean() > 0.6
    # and a shuffled assignment of tastes to customers is no better than chance
    shuffled = c.customers["taste_pattern"].sample(frac=1, random_state=0).to_numpy()
    shuffled_taste = pd.Series(shuffled, index=c.customers.index)
    baseline = (bought["pattern"] == bought["customer_id"].map(shuffled_taste)).mean()
    assert baseline < 0.45


# ---------------------------------------------------------------- photo ground truth

@pytest.mark.parametrize("silhouette", SILHOUETTES)
def test_garment_fills_exactly_its_mask_on_white(silhouette):
    rng = np.random.default_rng(0)
    mask = garment_mask(silhouette)
    assert mask.shape == (192, 128)
    assert 0.15 < mask.mean() < 0.7
    for pattern in PATTERNS:
        pixels = np.asarray(draw_product(silhouette, COLOURS["black"], pattern, rng))
        assert (pixels[~mask] == 255).all()
        assert (pixels[mask] < 250).all()


@pytest.mark.parametrize("silhouette", SILHOUETTES)
@pytest.mark.parametrize("colour", list(COLOURS))
def test_pattern_ground_truth_in_pixels(silhouette, colour):
    """Stripes vary down the garment only, checks both ways, solid neither."""
    rng = np.random.default_rng(1)
    rgb = COLOURS[colour]
    rows, cols = _profile_spread(draw_product(silhouette, rgb, "solid", rng), silhouette)
    assert rows < 1 and cols < 1
    rows, cols = _profile_spread(draw_product(silhouette, rgb, "stripe", rng), silhouette)
    assert rows > 20 and cols < 5
    rows, cols = _profile_spread(draw_product(silhouette, rgb, "check", rng), silhouette)
    assert rows > 10 and cols > 10


@pytest.mark.parametrize("silhouette", SILHOUETTES)
def test_dots_are_sparse_spots_of_colour(silhouette):
    rng = np.random.default_rng(2)
    mask = garment_mask(silhouette)
    grey = np.asarray(draw_product(silhouette, COLOURS["navy"], "dot", rng), dtype=float).mean(axis=2)
    dark = grey[mask] < 128
    assert 0.05 < dark.mean() < 0.4  # a light ground with spots, not a flat colour or a stripe


# ---------------------------------------------------------------- photo files

def test_rerun_reuses_photos_and_redraws_a_deleted_one(tmp_path):
    first = make_catalog(30, seed=5, image_dir=tmp_path)
    before_bytes, before_mtimes = _image_bytes(first.products), _mtimes(first.products)
    second = make_catalog(30, seed=5, image_dir=tmp_path)
    assert _mtimes(second.products) == before_mtimes

    victim = Path(first.products["image_path"].iloc[7])
    victim.unlink()
    third = make_catalog(30, seed=5, image_dir=tmp_path)
    assert victim.is_file()
    assert _image_bytes(third.products) == before_bytes  # redrawn exactly as before
    after = _mtimes(third.products)
    assert [a == b for a, b in zip(after, before_mtimes)].count(False) == 1
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_folder_of_another_seed_is_redrawn(tmp_path):
    make_catalog(30, seed=5, image_dir=tmp_path / "shared")
    reused = make_catalog(30, seed=6, image_dir=tmp_path / "shared")
    fresh = make_catalog(30, seed=6, image_dir=tmp_path / "fresh")
    assert _image_bytes(reused.products) == _image_bytes(fresh.products)


def test_folder_without_marker_is_redrawn(tmp_path):
    first = make_catalog(30, seed=5, image_dir=tmp_path)
    (tmp_path / synthetic.MARKER_NAME).unlink()
    Path(first.products["image_path"].iloc[0]).write_bytes(b"half a png")  # as if a crash had left it
    second = make_catalog(30, seed=5, image_dir=tmp_path)
    with Image.open(second.products["image_path"].iloc[0]) as image:
        assert image.size == (128, 192)
