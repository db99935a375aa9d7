"""Tests of the catalogue loaders: schema, product sentences, bad input reported not fatal, fatal input named."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.data.catalog import ROLE_SYNONYMS, Catalog, CatalogError, column_roles, load_generic, load_hm
from core.data.load import load_catalog

HM_HEADER = ("article_id,product_code,prod_name,product_type_name,product_group_name,graphical_appearance_name,"
             "colour_group_name,perceived_colour_value_name,department_name,index_name,index_group_name,"
             "section_name,garment_group_name,detail_desc")
# (article_id, product_code, prod_name, product_type_name, pattern, colour, detail_desc)
HM_ARTICLES = [
    ("0108775015", "0108775", "Strap top", "Vest top", "Solid", "Black", "Jersey top with narrow straps."),
    ("0108775044", "0108775", "Strap top", "Vest top", "Stripe", "White", ""),
    ("0110065001", "0110065", "OP T-shirt", "Bra", "Check", "Light Pink", ""),
]
HM_TRANSACTIONS = [
    ("2020-01-02", "cust-a", "0108775015", "0.0508"),
    ("2020-01-03", "cust-b", "0108775044", "0.0169"),
    ("2020-02-10", "cust-a", "0110065001", "0.0305"),
]
HM_PRODUCT_COLUMNS = {"title", "description", "image_path", "group_id", "sentence", "product_type",
                      "product_group", "colour", "pattern", "section", "department", "index_group",
                      "garment_group"}


def _article_line(aid, code, name, ptype, pattern, colour, desc, extra: str = "") -> str:
    return (f"{aid},{code},{name},{ptype},Garment Upper body,{pattern},{colour},Dark,Jersey Basic,Ladieswear,"
            f"Ladieswear,Womens Everyday Basics,Jersey Basic,{desc}{extra}")


def _photo(path: Path, colour=(200, 30, 40), size=(16, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def write_hm(root: Path, articles=HM_ARTICLES, header: str = HM_HEADER, extra_lines: tuple[str, ...] = (),
             transactions=HM_TRANSACTIONS, tx_lines: tuple[str, ...] = (), photos: bool = True) -> Path:
    """A tiny H&M-layout folder: articles.csv, transactions_train.csv, customers.csv, images/."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [header] + [_article_line(*a) for a in articles] + list(extra_lines)
    (root / "articles.csv").write_text("\n".join(lines) + "\n")
    tx = ["t_dat,customer_id,article_id,price,sales_channel_id"]
    tx += [f"{d},{c},{a},{p},2" for d, c, a, p in transactions] + list(tx_lines)
    (root / "transactions_train.csv").write_text("\n".join(tx) + "\n")
    (root / "customers.csv").write_text(
        "customer_id,FN,Active,club_member_status,fashion_news_frequency,age,postal_code\n"
        "cust-a,1,1,ACTIVE,Regularly,24,p1\ncust-b,,,ACTIVE,NONE,51,p2\n")
    if photos:
        for a in articles:
            _photo(root / "images" / a[0][:3] / f"{a[0]}.jpg")
    return root


def write_generic(root: Path, items: str, interactions: str | None = None, users: str | None = None,
                  photos: tuple[str, ...] = ("img/a.png", "img/b.jpg")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "items.csv").write_text(items)
    if interactions is not None:
        (root / "interactions.csv").write_text(interactions)
    if users is not None:
        (root / "users.csv").write_text(users)
    for i, p in enumerate(photos):
        _photo(root / p, colour=(40 * i, 100, 200))
    return root


GENERIC_ITEMS = ("item_id,title,description,image,colour,pattern,product_type,material\n"
                 "a,Red dress,A summer dress.,img/a.png,red,stripe,dress,cotton\n"
                 "b,,,img/b.jpg,blue,solid,shirt,linen\n")
GENERIC_INTERACTIONS = "user_id,item_id,timestamp\nu1,a,2020-03-01 09:30:00\nu2,b,2020-03-02 10:00:00\nu1,b,\n"


def issue(catalog: Catalog, file: str, words: str):
    """The report issue of ``file`` whose problem contains ``words``; fails the test if there is none."""
    found = [i for i in catalog.report.issues if i.file == file and words in i.problem]
    assert found, f"no issue '{words}' for {file} in:\n{catalog.report.summary()}"
    return found[0]


# ---------------------------------------------------------------- H&M loader

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
    broken = _article_line("0999999001", "0999999", "Broken", "Dress", "Solid", "Red", "", extra=",EXTRA")
    cat = load_hm(write_hm(tmp_path / "hm", extra_lines=(broken,)))
    got = issue(cat, "articles.csv", "broken rows")
    assert got.count == 1 and "line 5" in got.examples[0]
    assert "0999999001" not in cat.products.index
    assert len(cat.products) == len(HM_ARTICLES)


def test_hm_duplicate_ids_keep_the_first(tmp_path):
    dup = _article_line("0108775015", "0108775", "Second copy", "Dress", "Check", "Red", "")
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


# ---------------------------------------------------------------- generic loader

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


# ---------------------------------------------------------------- broken rows

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


def test_hm_broken_row_keeps_the_rows_after_it(tmp_path):
    short = "0999999001,0999999,Broken"
    later = _article_line("0120129001", "0120129", "Later top", "Top", "Solid", "Blue", '"Soft, light."')
    cat = load_hm(write_hm(tmp_path / "hm", extra_lines=(short, later)))
    assert cat.products.index.tolist() == [a[0] for a in HM_ARTICLES] + ["0120129001"]
    assert cat.products.loc["0120129001", "description"] == "Soft, light."
    assert issue(cat, "articles.csv", "broken rows").examples == ["line 5: 3 fields, expected 14"]


def test_record_reader_reads_a_sound_file_as_pandas_does(tmp_path):
    from core.data.catalog import _read_by_record, _read_fast
    text = ('id,name,name,,note\n1,"a, b",x,,"say ""hi"""\n2,c,"",y,\n3,"",z,,\n')
    fast = _read_fast(text.encode())
    slow, broken = _read_by_record(text, tmp_path / "f.csv", "")
    assert fast is not None and broken == []
    pd.testing.assert_frame_equal(slow, fast, check_index_type=False)
    assert fast.columns.tolist() == ["id", "name", "name.1", "Unnamed: 3", "note"]
    assert fast.loc[0, "note"] == 'say "hi"'


# ---------------------------------------------------------------- column roles

STYLES_HEADER = "item_id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
STYLES_ITEMS = (STYLES_HEADER + "\n"
                "15970,Men,Apparel,Topwear,Shirt,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt\n"
                "39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual,Peter England Men Party Blue Jeans\n")


def test_column_roles_of_styles_csv_headers():
    assert column_roles(STYLES_HEADER.split(",")) == {
        "productDisplayName": "title", "baseColour": "colour", "articleType": "product_type",
        "subCategory": "product_group", "masterCategory": "index_group"}


def test_column_roles_ignore_case_and_separators_and_follow_priority():
    assert column_roles(["Base Colour", "article-type", "PRODUCT_NAME", "Print", "desc"]) == {
        "PRODUCT_NAME": "title", "desc": "description", "Base Colour": "colour", "Print": "pattern",
        "article-type": "product_type"}
    # two columns for one role: the earlier synonym wins, the role's own name first
    assert column_roles(["category", "articleType", "color", "colour"]) == {"colour": "colour",
                                                                          "articleType": "product_type"}


def test_role_synonyms_belong_to_one_role_each_and_start_with_the_role():
    plain = [s.replace("_", "") for synonyms in ROLE_SYNONYMS.values() for s in synonyms]
    assert len(plain) == len(set(plain))
    assert all(synonyms[0] == role for role, synonyms in ROLE_SYNONYMS.items())
    assert "gender" not in plain


def test_explicit_mapping_wins_over_synonyms():
    roles = column_roles(STYLES_HEADER.split(","), {"product_type": "subCategory", "section": "gender"})
    assert roles["subCategory"] == "product_type" and roles["gender"] == "section"
    assert "articleType" not in roles  # its role was given to subCategory
    assert roles["baseColour"] == "colour"


@pytest.mark.parametrize("explicit, words", [
    ({"colr": "baseColour"}, ["unknown role 'colr'", "baseColour", "did you mean colour", "product_type"]),
    ({"pattern": "print_type"}, ["'print_type'", "role pattern", "not in the file", "baseColour"]),
    ({"title": "gender", "section": "gender"}, ["'gender'", "two roles", "title", "section"]),
], ids=["unknown-role", "missing-column", "column-given-twice"])
def test_bad_explicit_mapping_raises_a_clear_error(explicit, words):
    with pytest.raises(CatalogError) as e:
        column_roles(STYLES_HEADER.split(","), explicit)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


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


def test_columns_argument_is_refused_for_a_fixed_layout(tmp_path):
    with pytest.raises(CatalogError, match="columns="):
        load_catalog(write_hm(tmp_path / "hm"), columns={"colour": "colour_group_name"})


# ---------------------------------------------------------------- fatal input

def test_folder_without_catalogue_files_names_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogError, match="articles.csv") as e:
        load_catalog(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value)
    assert "items.csv" in str(e.value)


def test_nonexistent_folder_names_it(tmp_path):
    with pytest.raises(CatalogError, match="no such folder") as e:
        load_catalog(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value)


@pytest.mark.parametrize("layout", ["hm", "generic"])
def test_missing_id_column_names_the_file(tmp_path, layout):
    if layout == "hm":
        root = write_hm(tmp_path / "hm", header=HM_HEADER.replace("article_id", "id", 1))
        file, column = "articles.csv", "article_id"
    else:
        root = write_generic(tmp_path / "shop", GENERIC_ITEMS.replace("item_id", "sku", 1))
        file, column = "items.csv", "item_id"
    with pytest.raises(CatalogError) as e:
        load_catalog(root)
    assert str(root.resolve() / file) in str(e.value)
    assert column in str(e.value)


@pytest.mark.parametrize("content, words", [
    (b"", "items.csv: empty file"),
    (b"\n \n", "items.csv: empty file"),
    ("item_id,title\na,Cr\u00e8me\n".encode("latin-1"), "items.csv: not a CSV: not UTF-8 text (byte 0xe8 on line 2)"),
    ("item_id,title\na,A\n".encode("utf-16"), "items.csv: not a CSV: UTF-16 text"),
    (b'item_id,"title,colour\na,A,red\n', "items.csv: line 1 (the header) cannot be read: unterminated quote"),
    (b"item_id;title;colour\na;A;red\n", "items.csv: not a CSV: its header reads as one column"),
    (b"item_id,title\na,A,\nb,B,\n", "items.csv: every row is broken (2), e.g. line 2: 3 fields, expected 2"),
], ids=["empty", "blank-lines", "latin-1", "utf-16", "header-quote", "semicolons", "every-row-broken"])
def test_unreadable_items_csv_names_the_real_cause(tmp_path, content, words):
    root = tmp_path / "shop"
    root.mkdir()
    (root / "items.csv").write_bytes(content)
    with pytest.raises(CatalogError) as e:
        load_catalog(root)
    assert words in str(e.value)
    assert "required column" not in str(e.value) and "needs" not in str(e.value)


def test_binary_items_csv_names_the_real_cause(tmp_path):
    root = tmp_path / "shop"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "items.csv", format="PNG")
    with pytest.raises(CatalogError, match=r"items\.csv: not a CSV: binary data") as e:
        load_catalog(root)
    assert "item_id" not in str(e.value)


def test_layout_is_told_apart_by_its_files(tmp_path):
    assert load_catalog(write_hm(tmp_path / "hm")).products.index[0] == "0108775015"
    assert load_catalog(write_generic(tmp_path / "shop", GENERIC_ITEMS)).products.index.tolist() == ["a", "b"]


def test_limit_keeps_the_first_products(tmp_path):
    cat = load_catalog(write_hm(tmp_path / "hm"), limit=2)
    assert cat.products.index.tolist() == ["0108775015", "0108775044"]
    assert cat.purchases["product_id"].isin(cat.products.index).all()
    assert len(cat.purchases) == 2


# ---------------------------------------------------------------- synthetic specs

def test_synthetic_spec_loads_into_the_cache(isolated_env):
    cat = load_catalog("synthetic:30")
    assert len(cat.products) == 30 and cat.simulated
    paths = [Path(p) for p in cat.products["image_path"]]
    assert all(p.is_file() for p in paths)
    assert all(isolated_env in p.parents for p in paths)


@pytest.mark.parametrize("spec", ["synthetic:abc", "synthetic:0", "synthetic:5:-1", "synthetic:5:0:9",
                                  "synthetic:5:x"])
def test_bad_synthetic_spec_raises(spec):
    with pytest.raises(CatalogError, match="synthetic"):
        load_catalog(spec)


@pytest.mark.parametrize("name", ["synthetic_shop", "synthetic-2024"])
def test_folder_named_like_synthetic_is_loaded_as_a_folder(tmp_path, monkeypatch, name):
    write_generic(tmp_path / name, GENERIC_ITEMS)
    monkeypatch.chdir(tmp_path)
    cat = load_catalog(name)
    assert not cat.simulated
    assert cat.products.index.tolist() == ["a", "b"]


# ---------------------------------------------------------------- Catalog.head

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


# ---------------------------------------------------------------- real sample

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
