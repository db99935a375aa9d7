"""Tests of the generic loader: schema, sentences, column roles applied, bad rows reported not fatal."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from core.data.catalog import CatalogError
from core.data.generic import load_generic
from core.data.load import load_catalog
from tests.data.files import GENERIC_INTERACTIONS, GENERIC_ITEMS, STYLES_ITEMS, issue, write_generic


def test_generic_schema_and_sentence(tmp_path):
    root = write_generic(tmp_path / "shop", GENERIC_ITEMS, GENERIC_INTERACTIONS,
                         users="user_id,age\nu1,30\nu2,41\n")
    cat = load_generic(root)
    assert cat.report.ok, cat.report.summary()
    p = cat.products
    assert p.index.name == "product_id" and p.index.tolist() == ["a", "b"]
    assert {"title", "description", "image_path", "group_id", "sentence", "colour", "material"} <= set(p.columns)
    assert "image" not in p.columns
    for col in p.columns:
        assert pd.api.types.is_string_dtype(p[col]), col
    assert p.loc["b", "title"] == "b"  # an empty title falls back to the id
    assert p["group_id"].tolist() == ["a", "b"]
    assert Path(p.loc["a", "image_path"]) == (root / "img" / "a.png").resolve()
    sentence = p.loc["a", "sentence"].lower()
    for word in ("red", "striped", "dress", "material: cotton", "a summer dress."):
        assert word in sentence, (word, sentence)

    assert len(cat.purchases) == 3
    assert cat.purchases["timestamp"].dtype == "datetime64[ns]"
    assert cat.purchases["timestamp"].isna().sum() == 1  # an empty date is unknown, not an error
    assert cat.purchases["price"].isna().all()
    assert set(cat.customers.index) == {"u1", "u2"}
    assert cat.customers.loc["u2", "age"] == "41"


def test_generic_empty_image_cell_keeps_the_product(tmp_path):
    items = GENERIC_ITEMS + "c,Green hat,,,green,solid,hat,wool\n"
    cat = load_generic(write_generic(tmp_path / "shop", items))
    got = issue(cat, "items.csv image column", "image")
    assert got.count == 1 and got.examples[0].startswith("c")
    assert cat.products.loc["c", "image_path"] == ""
    assert cat.products.loc["a", "image_path"] != ""


def test_generic_bad_interactions_are_reported(tmp_path):
    interactions = GENERIC_INTERACTIONS + "u3,zzz,2020-03-05\nu2,a,yesterday-ish\n"
    cat = load_generic(write_generic(tmp_path / "shop", GENERIC_ITEMS, interactions))
    assert issue(cat, "interactions.csv", "unknown products").examples == ["zzz"]
    assert issue(cat, "interactions.csv", "dates").examples == ["yesterday-ish"]
    assert len(cat.purchases) == 3
    assert "u3" not in cat.customers.index


def test_generic_mixed_iso_dates_and_datetimes_are_all_read(tmp_path):
    interactions = "user_id,item_id,timestamp\nu1,a,2020-03-01\nu2,b,2020-03-02 10:00:00\n"
    cat = load_generic(write_generic(tmp_path / "shop", GENERIC_ITEMS, interactions))
    assert cat.report.ok, cat.report.summary()
    assert cat.purchases["timestamp"].tolist() == [pd.Timestamp("2020-03-01"), pd.Timestamp("2020-03-02 10:00")]


@pytest.mark.parametrize("stamps", [("2020-03-01T10:00:00Z", "2020-03-02T11:00:00Z"),
                                    ("2020-03-01T10:00:00+01:00", "2020-03-02T11:00:00+02:00")])
def test_generic_timezone_aware_timestamps_do_not_stop_the_load(tmp_path, stamps):
    interactions = f"user_id,item_id,timestamp\nu1,a,{stamps[0]}\nu2,b,{stamps[1]}\n"
    cat = load_generic(write_generic(tmp_path / "shop", GENERIC_ITEMS, interactions))
    assert len(cat.purchases) == 2
    assert cat.purchases["timestamp"].dtype == "datetime64[ns]"


def test_generic_misspelled_column_is_read(tmp_path):
    items = GENERIC_ITEMS.replace("description", "descripton", 1)
    cat = load_generic(write_generic(tmp_path / "shop", items))
    assert "descripton" in issue(cat, "items.csv", "misspelled").examples[0]
    assert cat.products.loc["a", "description"] == "A summer dress."


def test_generic_unterminated_quote_in_last_row_keeps_every_other_row(tmp_path):
    items = GENERIC_ITEMS + 'c,"Green hat,,,green,solid,hat,wool\n'
    cat = load_generic(write_generic(tmp_path / "shop", items))
    assert cat.products.index.tolist() == ["a", "b"]
    assert cat.products.loc["a", "description"] == "A summer dress."
    got = issue(cat, "items.csv", "broken rows")
    assert got.count == 1 and got.action == "skipped"
    assert got.examples == ["line 4: unterminated quote, runs to the end of the file"]


@pytest.mark.parametrize("bad, why", [
    ("x,Too many,,,red,solid,hat,wool,EXTRA", "line 4: 9 fields, expected 8"),
    ("x,Too few", "line 4: 2 fields, expected 8"),
    ('x,"Stray quote,,,red,solid,hat,wool', "line 4: stray or unterminated quote"),  # closes on line 6
], ids=["too-many-fields", "too-few-fields", "stray-quote"])
def test_generic_broken_row_in_the_middle_is_skipped_and_later_rows_kept(tmp_path, bad, why):
    items = (GENERIC_ITEMS + bad + "\n" + "c,Green hat,,,green,solid,hat,wool\n"
             'd,Blue cap,"Warm, soft ""wool"" cap.",,blue,solid,cap,wool\n')
    cat = load_generic(write_generic(tmp_path / "shop", items))
    assert cat.products.index.tolist() == ["a", "b", "c", "d"]
    assert cat.products.loc["d", "description"] == 'Warm, soft "wool" cap.'
    got = issue(cat, "items.csv", "broken rows")
    assert got.count == 1 and got.examples[0].startswith(why), got.examples


def test_generic_quoted_multiline_description_loads(tmp_path):
    items = ("item_id,title,description,image,colour\n"
             'a,Red dress,"A summer dress.\nMachine wash, 30 degrees.",img/a.png,red\n'
             "b,Blue shirt,,img/b.jpg,blue\n"
             ",No id,,,green\n")
    cat = load_generic(write_generic(tmp_path / "shop", items))
    assert cat.products.index.tolist() == ["a", "b"]
    assert cat.products.loc["a", "description"] == "A summer dress.\nMachine wash, 30 degrees."
    assert issue(cat, "items.csv", "rows without item_id").examples == ["5"]  # the file's line, after 2-line row a
    assert not [i for i in cat.report.issues if "broken" in i.problem]


def test_styles_csv_like_catalogue_reads_colour_and_type_into_its_sentences(tmp_path):
    cat = load_generic(write_generic(tmp_path / "shop", STYLES_ITEMS, photos=()))
    p = cat.products
    assert p.loc["15970", "sentence"] == ("Turtle Check Men Navy Blue Shirt: a navy blue shirt, Apparel. "
                                          "gender: Men; season: Fall; year: 2011; usage: Casual.")
    assert p.loc["39386", "title"] == "Peter England Men Party Blue Jeans"
    assert p.loc["39386", "product_group"] == "Bottomwear"
    assert not {"baseColour", "articleType", "masterCategory"} & set(p.columns)
    got = issue(cat, "items.csv", "columns mapped to roles")
    assert got.action == "renamed" and got.count == 5
    assert "'baseColour' read as colour" in got.examples


def test_columns_json_beside_items_is_honoured(tmp_path):
    items = STYLES_ITEMS.replace("usage", "print_type").replace("Casual", "Stripe")
    root = write_generic(tmp_path / "shop", items, photos=())
    (root / "columns.json").write_text(json.dumps({"pattern": "print_type", "product_type": "subCategory"}))
    cat = load_generic(root)
    assert cat.products["pattern"].tolist() == ["Stripe", "Stripe"]
    assert cat.products["product_type"].tolist() == ["Topwear", "Bottomwear"]
    assert cat.products["articleType"].tolist() == ["Shirt", "Jeans"]  # lost its role, kept as an attribute
    sentence = cat.products.loc["15970", "sentence"]
    assert sentence.startswith("Turtle Check Men Navy Blue Shirt: a navy blue striped topwear, Apparel."), sentence
    assert "'print_type' read as pattern (columns.json)" in issue(cat, "items.csv", "mapped to roles").examples
    assert issue(cat, "items.csv", "another column took").examples == [
        "'articleType' kept its own name (product_type read from 'subCategory')"]
    # columns= replaces columns.json
    assert load_catalog(root, columns={}).products["product_type"].tolist() == ["Shirt", "Jeans"]


def test_columns_json_naming_a_missing_column_names_the_file_and_both_names(tmp_path):
    root = write_generic(tmp_path / "shop", STYLES_ITEMS, photos=())
    (root / "columns.json").write_text(json.dumps({"pattern": "print_type"}))
    with pytest.raises(CatalogError) as e:
        load_catalog(root)
    assert str(root.resolve() / "columns.json") in str(e.value)
    assert "'print_type'" in str(e.value) and "pattern" in str(e.value) and "productDisplayName" in str(e.value)
