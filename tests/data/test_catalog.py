"""Tests of the Catalog itself: head keeps what belongs to the kept products; filtering its products."""
from __future__ import annotations

import pandas as pd

from core.data.catalog import Catalog, filter_products, pattern_phrase

def test_head_keeps_only_purchases_of_kept_products(synthetic_catalog):
    full = synthetic_catalog
    head = full.head(10)
    kept = set(head.products.index)
    assert head.products.index.tolist() == full.products.index[:10].tolist()
    assert set(head.purchases["product_id"]) <= kept
    assert len(head.purchases) == full.purchases["product_id"].isin(kept).sum() > 0
    assert set(head.customers.index) == set(head.purchases["customer_id"])
    assert full.head(None) is full and full.head(10_000) is full
    assert len(full.products) == 60  # the shared fixture is untouched


def test_filter_products_by_attribute_values_and_every_word():
    products = pd.DataFrame({"title": ["Red dress", "Blue dress", "Red hat"], "colour": ["red", "blue", "red"],
                             "sentence": ["Red dress: a red dress.", "Blue dress: a blue dress.", "Red hat: a red hat."]},
                            index=pd.Index(["p1", "p2", "p3"], name="product_id"))
    assert filter_products(products, {"colour": ["red"]}).index.tolist() == ["p1", "p3"]
    assert filter_products(products, {"colour": []}, "DRESS").index.tolist() == ["p1", "p2"]
    assert filter_products(products, text="red dress").index.tolist() == ["p1"]
    assert filter_products(products, text="p2").index.tolist() == ["p2"]


def test_pattern_phrase_reads_in_a_sentence():
    assert pattern_phrase("Stripe") == "striped" and pattern_phrase("All over pattern") == "all-over patterned"
    assert pattern_phrase("Lace") == "lace"


def test_never_bought_lists_the_products_no_purchase_names_in_catalogue_order():
    products = pd.DataFrame({"title": ["a", "b", "c", "d"], "image_path": ["", "", "", ""]},
                            index=pd.Index(["p1", "p2", "p3", "p4"], name="product_id"))
    purchases = pd.DataFrame({"customer_id": ["c1", "c1", "c2"], "product_id": ["p3", "p1", "p3"]})
    catalog = Catalog("t", "t", products, pd.DataFrame(index=pd.Index(["c1", "c2"], name="customer_id")), purchases)
    assert catalog.never_bought().tolist() == ["p2", "p4"]
    nobody = Catalog("t", "t", products, catalog.customers, purchases.iloc[:0])
    assert nobody.never_bought().tolist() == ["p1", "p2", "p3", "p4"]
