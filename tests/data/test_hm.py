"""Tests of the H&M loader: schema, sentences, bad rows reported not fatal, the real sample."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.data.hm import load_hm
from tests.data.files import HM_ARTICLES, HM_HEADER, HM_TRANSACTIONS, article_line, issue, write_hm


HM_PRODUCT_COLUMNS = {"title", "description", "image_path", "group_id", "sentence", "product_type",
                      "product_group", "colour", "pattern", "section", "department", "index_group",
                      "garment_group"}


def test_hm_schema_and_dtypes(tmp_path):
    cat = load_hm(write_hm(tmp_path / "hm"))
    products = cat.products
    assert cat.report.ok, cat.report.summary()
    assert products.index.name == "product_id"
    assert products.index.tolist() == [a[0] for a in HM_ARTICLES]  # 10 digits, leading zero kept
    assert set(products.columns) == HM_PRODUCT_COLUMNS
    for col in products.columns:
        assert pd.api.types.is_string_dtype(products[col]), col
    assert products.loc["0108775015", "group_id"] == "0108775"
    assert products.loc["0108775044", "description"] == ""
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in products["image_path"])

    purchases = cat.purchases
    assert list(purchases.columns) == ["customer_id", "product_id", "timestamp", "price"]
    assert purchases["timestamp"].dtype == "datetime64[ns]"
    assert pd.api.types.is_float_dtype(purchases["price"])
    assert pd.api.types.is_string_dtype(purchases["product_id"])
    assert purchases["timestamp"].is_monotonic_increasing
    assert len(purchases) == len(HM_TRANSACTIONS)
    assert purchases["price"].tolist() == pytest.approx([0.0508, 0.0169, 0.0305])

    assert cat.customers.index.name == "customer_id"
    assert set(cat.customers.index) == {"cust-a", "cust-b"}
    assert cat.counts() == {"products": 3, "customers": 2, "purchases": 3, "missing_images": 0}


def test_hm_sentence_mentions_colour_pattern_and_type(tmp_path):
    products = load_hm(write_hm(tmp_path / "hm")).products
    expected = {"0108775015": ("black", "solid", "vest top"),
                "0108775044": ("white", "striped", "vest top"),
                "0110065001": ("light pink", "checked", "bra")}
    for pid, words in expected.items():
        sentence = products.loc[pid, "sentence"].lower()
        for w in words:
            assert w in sentence, (w, sentence)
    assert products.loc["0108775015", "sentence"].startswith("Strap top")
    assert "Jersey top with narrow straps." in products.loc["0108775015", "sentence"]


def test_hm_group_id_falls_back_to_article_prefix(tmp_path):
    articles = [("0201219003", "", "Tights", "Underwear Tights", "Solid", "Black", "")]
    products = load_hm(write_hm(tmp_path / "hm", articles=articles, transactions=[])).products
    assert products.loc["0201219003", "group_id"] == "0201219"


def test_hm_broken_row_is_skipped_and_reported(tmp_path):
    broken = article_line("0999999001", "0999999", "Broken", "Dress", "Solid", "Red", "", extra=",EXTRA")
    cat = load_hm(write_hm(tmp_path / "hm", extra_lines=(broken,)))
    got = issue(cat, "articles.csv", "broken rows")
    assert got.count == 1 and "line 5" in got.examples[0]
    assert "0999999001" not in cat.products.index
    assert len(cat.products) == len(HM_ARTICLES)


def test_hm_duplicate_ids_keep_the_first(tmp_path):
    dup = article_line("0108775015", "0108775", "Second copy", "Dress", "Check", "Red", "")
    cat = load_hm(write_hm(tmp_path / "hm", extra_lines=(dup,)))
    got = issue(cat, "articles.csv", "duplicate")
    assert got.count == 1 and got.examples == ["0108775015"]
    assert cat.products.loc["0108775015", "title"] == "Strap top"
    assert cat.products.index.is_unique and len(cat.products) == len(HM_ARTICLES)


def test_hm_purchases_of_unknown_products_are_dropped(tmp_path):
    tx = HM_TRANSACTIONS + [("2020-03-01", "cust-a", "0555555001", "0.01"),
                            ("2020-03-02", "cust-b", "0555555001", "0.01")]
    cat = load_hm(write_hm(tmp_path / "hm", transactions=tx))
    got = issue(cat, "transactions_train.csv", "unknown products")
    assert got.count == 2 and got.examples == ["0555555001"]
    assert len(cat.purchases) == len(HM_TRANSACTIONS)
    assert cat.purchases["product_id"].isin(cat.products.index).all()


def test_hm_missing_and_empty_images_keep_the_product(tmp_path):
    root = write_hm(tmp_path / "hm")
    (root / "images" / "010" / "0108775044.jpg").unlink()  # missing
    (root / "images" / "011" / "0110065001.jpg").write_bytes(b"")  # 0 bytes
    cat = load_hm(root)
    got = issue(cat, "images/", "image")
    assert got.count == 2
    assert len(cat.products) == len(HM_ARTICLES)
    assert cat.products.loc["0108775044", "image_path"] == ""
    assert cat.products.loc["0110065001", "image_path"] == ""
    assert cat.products.loc["0108775015", "image_path"] != ""
    assert cat.counts()["missing_images"] == 2


def test_hm_misspelled_optional_column_is_read(tmp_path):
    cat = load_hm(write_hm(tmp_path / "hm", header=HM_HEADER.replace("colour_group_name", "colour_group_nme")))
    got = issue(cat, "articles.csv", "misspelled")
    assert "colour_group_nme" in got.examples[0]
    assert cat.products["colour"].tolist() == ["Black", "White", "Light Pink"]


def test_hm_missing_optional_column_is_filled_and_reported(tmp_path):
    header = HM_HEADER.replace("detail_desc", "something_else_entirely")
    cat = load_hm(write_hm(tmp_path / "hm", header=header))
    assert "detail_desc" in issue(cat, "articles.csv", "missing columns").examples
    assert (cat.products["description"] == "").all()


def test_hm_unreadable_dates_are_reported(tmp_path):
    cat = load_hm(write_hm(tmp_path / "hm", tx_lines=("not a date,cust-a,0108775044,0.02,2",)))
    got = issue(cat, "transactions_train.csv", "dates")
    assert got.count == 1 and got.examples == ["not a date"]
    assert len(cat.purchases) == len(HM_TRANSACTIONS)
    assert cat.purchases["timestamp"].notna().all()


def test_hm_without_transactions_loads_products(tmp_path):
    root = write_hm(tmp_path / "hm")
    (root / "transactions_train.csv").unlink()
    cat = load_hm(root)
    assert len(cat.products) == len(HM_ARTICLES)
    assert len(cat.purchases) == 0
    assert list(cat.purchases.columns) == ["customer_id", "product_id", "timestamp", "price"]
    issue(cat, "transactions_train.csv", "missing")


def test_hm_broken_row_keeps_the_rows_after_it(tmp_path):
    short = "0999999001,0999999,Broken"
    later = article_line("0120129001", "0120129", "Later top", "Top", "Solid", "Blue", '"Soft, light."')
    cat = load_hm(write_hm(tmp_path / "hm", extra_lines=(short, later)))
    assert cat.products.index.tolist() == [a[0] for a in HM_ARTICLES] + ["0120129001"]
    assert cat.products.loc["0120129001", "description"] == "Soft, light."
    assert issue(cat, "articles.csv", "broken rows").examples == ["line 5: 3 fields, expected 14"]


@pytest.mark.integration
def test_real_hm_sample(hm_dir):
    cat = load_hm(hm_dir)
    counts = cat.counts()
    assert counts["products"] == 24_717
    assert counts["purchases"] == 28_006
    never_bought = ~cat.products.index.isin(cat.purchases["product_id"])
    assert never_bought.sum() == 9_470  # as in a real catalogue, many products never sold (data README)
    assert counts["missing_images"] == 0
    assert {"Solid", "Stripe", "Check", "Denim"} <= set(cat.products["pattern"])
    group = cat.products["group_id"]
    assert group.str.fullmatch(r"\d{7}").all()
    assert (group == cat.products.index.str[:7]).all()
    assert cat.purchases["product_id"].isin(cat.products.index).all()
    assert cat.purchases["timestamp"].notna().all()
    assert np.all(cat.products["sentence"].str.len() > 10)
