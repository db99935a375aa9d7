"""Shops' standard exports (Shopify products and orders, WooCommerce, Google Merchant Center TSV and XML), from
small fixtures written to each platform's documented columns: variants, extra image rows, HTML descriptions,
quoted commas, a byte-order mark, semicolons from spreadsheet software, drafts and broken references."""
import csv
import io

import pytest

from core.data.catalog import CatalogError
from core.data.exports import detect_format, export_files
from core.data.htmltext import html_to_text
from core.data.load import load_catalog
from core.data.shopify import customer_key

SHOPIFY_COLUMNS = ["Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags", "Published",
                   "Option1 Name", "Option1 Value", "Option2 Name", "Option2 Value", "Option3 Name", "Option3 Value",
                   "Variant SKU", "Variant Grams", "Variant Inventory Qty", "Variant Price",
                   "Variant Compare At Price", "Image Src", "Image Position", "Image Alt Text", "Variant Image",
                   "Status"]


def rows_to_csv(columns: list[str], rows: list[dict], sep: str = ",", bom: bool = False) -> bytes:
    out = io.StringIO()
    w = csv.DictWriter(out, columns, delimiter=sep, lineterminator="\r\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode()


def shopify_rows() -> list[dict]:
    cdn = "https://cdn.shopify.com/s/files/1/0001/products"
    return [
        # a dress in two colours and two sizes; product fields on the first row only; an extra image row
        {"Handle": "wrap-dress", "Title": "Wrap dress", "Vendor": "Atelier", "Type": "Dress",
         "Product Category": "Apparel & Accessories > Clothing > Dresses", "Tags": "summer, linen",
         "Body (HTML)": "<p>A <strong>linen</strong> wrap dress, midi length.</p><ul><li>Tie waist</li></ul>",
         "Option1 Name": "Color", "Option1 Value": "Navy", "Option2 Name": "Size", "Option2 Value": "S",
         "Variant SKU": "WD-NAVY-S", "Variant Price": "59.00", "Image Src": f"{cdn}/wd-navy.jpg",
         "Image Position": "1", "Variant Image": f"{cdn}/wd-navy.jpg", "Status": "active"},
        {"Handle": "wrap-dress", "Option1 Value": "Navy", "Option2 Value": "M", "Variant SKU": "WD-NAVY-M",
         "Variant Price": "59.00", "Image Src": f"{cdn}/wd-back.jpg", "Image Position": "2"},
        {"Handle": "wrap-dress", "Option1 Value": "Sand", "Option2 Value": "S", "Variant SKU": "WD-SAND-S",
         "Variant Price": "49.00", "Variant Image": f"{cdn}/wd-sand.jpg"},
        {"Handle": "wrap-dress", "Option1 Value": "Sand", "Option2 Value": "M", "Variant SKU": "WD-SAND-M",
         "Variant Price": "52.00"},
        # one variant ("Default Title"), no photo, a title with a quoted comma
        {"Handle": "canvas-tote", "Title": 'Tote bag, "canvas"', "Type": "Bag", "Body (HTML)": "Plain text.",
         "Option1 Name": "Title", "Option1 Value": "Default Title", "Variant SKU": "TOTE-1", "Variant Price": "20",
         "Status": "active"},
        # a draft
        {"Handle": "draft-scarf", "Title": "Scarf", "Type": "Scarf", "Option1 Name": "Title",
         "Option1 Value": "Default Title", "Variant SKU": "SC-1", "Variant Price": "15", "Status": "draft",
         "Image Src": f"{cdn}/scarf.jpg", "Image Position": "1"},
    ]


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_shopify_products_split_colours_into_variants_of_one_group(tmp_path):
    path = write(tmp_path, "products_export_1.csv", rows_to_csv(SHOPIFY_COLUMNS, shopify_rows(), bom=True))
    assert detect_format(path) == "shopify"
    cat = load_catalog(path, fetch_photos=False)
    p = cat.products
    assert list(p.index) == ["wrap-dress-navy", "wrap-dress-sand", "canvas-tote"]  # the draft left out
    assert set(p.loc[["wrap-dress-navy", "wrap-dress-sand"], "group_id"]) == {"wrap-dress"}
    assert p.loc["wrap-dress-navy", "colour"] == "Navy" and p.loc["wrap-dress-sand", "size"] == "S, M"
    assert p.loc["wrap-dress-navy", "description"] == "A linen wrap dress, midi length.\nTie waist"
    assert p.loc["wrap-dress-sand", "price"] == "49.00" and p.loc["wrap-dress-navy", "product_type"] == "Dress"
    # the colour's own variant image, else the handle's first by position
    assert p.loc["wrap-dress-sand", "image_url"].endswith("wd-sand.jpg")
    assert p.loc["wrap-dress-navy", "image_url"].endswith("wd-navy.jpg")
    assert p.loc["canvas-tote", "title"] == 'Tote bag, "canvas"' and p.loc["canvas-tote", "image_url"] == ""
    assert "default title" not in " ".join(p.loc["canvas-tote"].astype(str)).lower()
    assert (p["image_path"] == "").all()  # photos by URL not fetched when asked not to: kept without, and said
    problems = {i.problem: i for i in cat.report.issues}
    assert problems["unpublished products (draft, archived or private)"].examples == ["draft-scarf (draft)"]
    assert problems["photos at web addresses not fetched (fetching off)"].count == 2
    assert problems["products without a photo"].examples == ["canvas-tote"]
    sentence = p.loc["wrap-dress-navy", "sentence"]
    assert sentence.startswith("Wrap dress: a navy dress.") and "size: S, M" in sentence
    assert "<" not in " ".join(p["sentence"]) and "https://" not in " ".join(p["sentence"])


def test_shopify_drafts_kept_on_request_and_semicolons_read_alike(tmp_path):
    comma = load_catalog(write(tmp_path, "a.csv", rows_to_csv(SHOPIFY_COLUMNS, shopify_rows())),
                         include_drafts=True, fetch_photos=False)
    assert "draft-scarf" in comma.products.index
    semi = tmp_path / "semi"
    semi.mkdir()
    spreadsheet = load_catalog(write(semi, "b.csv", rows_to_csv(SHOPIFY_COLUMNS, shopify_rows(), sep=";")),
                               include_drafts=True, fetch_photos=False)
    cols = ["title", "description", "colour", "size", "price", "group_id"]
    assert spreadsheet.products[cols].equals(comma.products[cols])


ORDER_COLUMNS = ["Name", "Email", "Financial Status", "Created at", "Lineitem quantity", "Lineitem name",
                 "Lineitem price", "Lineitem sku", "Billing Name", "Cancelled at", "Id"]


def test_shopify_orders_become_purchases_matched_by_sku_then_name(tmp_path):
    write(tmp_path, "products_export.csv", rows_to_csv(SHOPIFY_COLUMNS, shopify_rows()))
    orders = [
        {"Name": "#1001", "Email": "Ana@Example.com ", "Created at": "2024-03-01 10:15:00 +0100",
         "Lineitem quantity": "2", "Lineitem name": "Wrap dress - Navy / S", "Lineitem price": "59.00",
         "Lineitem sku": "WD-NAVY-S"},
        # the order's second line: order fields blank, matched by name (no SKU)
        {"Name": "#1001", "Lineitem quantity": "1", "Lineitem name": "Wrap dress - Sand / M",
         "Lineitem price": "52.00"},
        {"Name": "#1002", "Email": "bo@example.com", "Created at": "2024-03-05T08:00:00Z", "Lineitem quantity": "x",
         "Lineitem name": 'Tote bag, "canvas"', "Lineitem price": "20.00", "Lineitem sku": ""},
        {"Name": "#1003", "Email": "bo@example.com", "Created at": "2024-03-06T08:00:00Z",
         "Lineitem quantity": "1", "Lineitem name": "Gift card", "Lineitem price": "50.00"},
        {"Name": "#1004", "Email": "bo@example.com", "Created at": "2024-03-07T08:00:00Z",  # options the other
         "Lineitem quantity": "1", "Lineitem name": "Wrap dress - M / Sand", "Lineitem price": "52,00"},  # way
        {"Name": "#1005", "Email": "bo@example.com", "Created at": "2024-03-08T08:00:00Z", "Lineitem quantity": "1",
         "Financial Status": "refunded", "Lineitem name": "Wrap dress - Navy / S", "Lineitem sku": "WD-NAVY-S"},
        {"Name": "#1005", "Lineitem quantity": "1", "Lineitem name": "Tote bag", "Lineitem sku": "TOTE-1"},
        {"Name": "#1006", "Email": "bo@example.com", "Created at": "2024-03-09T08:00:00Z", "Lineitem quantity": "1",
         "Financial Status": "paid", "Cancelled at": "2024-03-09 09:00:00 +0000", "Lineitem name": "Tote bag",
         "Lineitem sku": "TOTE-1"},
    ]
    write(tmp_path, "orders_export.csv", rows_to_csv(ORDER_COLUMNS, orders))
    assert [e.format for e in export_files(tmp_path)] == ["shopify-orders", "shopify"]
    cat = load_catalog(tmp_path, fetch_photos=False)
    buys = cat.purchases
    ana, bo = customer_key("ana@example.com", ""), customer_key("bo@example.com", "")
    assert sorted(buys.loc[buys["customer_id"] == ana, "product_id"]) == ["wrap-dress-navy", "wrap-dress-navy",
                                                                          "wrap-dress-sand"]
    assert list(buys.loc[buys["customer_id"] == bo, "product_id"]) == ["canvas-tote", "wrap-dress-sand"]
    assert buys.loc[buys["customer_id"] == bo, "price"].tolist() == [20.0, 52.0]  # a decimal comma read
    assert set(cat.customers.index) == {ana, bo} and "@" not in " ".join(buys["customer_id"])
    assert str(buys["timestamp"].min()) == "2024-03-01 09:15:00"  # UTC
    problems = {i.problem: i for i in cat.report.issues}
    assert problems["purchases of unknown products"].examples == ["Gift card"]
    assert problems["order lines with no readable quantity"].count == 1
    assert problems["order lines matched by name, not SKU"].count == 3
    undone = problems["lines of refunded, voided or cancelled orders"]
    assert (undone.count, undone.examples) == (3, ["#1005", "#1006"])  # bo bought no more than the two above


WOO_COLUMNS = ["ID", "Type", "SKU", "Name", "Published", "Is featured?", "Visibility in catalog",
               "Short description", "Description", "In stock?", "Sale price", "Regular price", "Categories", "Tags",
               "Images", "Parent", "Attribute 1 name", "Attribute 1 value(s)", "Attribute 1 visible",
               "Attribute 2 name", "Attribute 2 value(s)"]


def test_woocommerce_variable_products_split_by_colour_simple_ones_stay_whole(tmp_path):
    img = "https://shop.example/wp-content/uploads"
    rows = [
        {"ID": "10", "Type": "variable", "SKU": "HOOD", "Name": "Hoodie", "Published": "1",
         "Description": "<p>Brushed fleece &amp; a kangaroo pocket</p>", "Categories": "Clothing > Hoodies, Sale",
         "Images": f"{img}/hoodie.jpg, {img}/hoodie-2.jpg", "Attribute 1 name": "Color",
         "Attribute 1 value(s)": "Grey, Green", "Attribute 2 name": "Size", "Attribute 2 value(s)": "S, M"},
        {"ID": "11", "Type": "variation", "SKU": "HOOD-GREY-S", "Name": "Hoodie - Grey, S", "Published": "1",
         "Regular price": "45", "Sale price": "39", "Images": f"{img}/hoodie-grey.jpg", "Parent": "id:10",
         "Attribute 1 name": "Color", "Attribute 1 value(s)": "Grey", "Attribute 2 name": "Size",
         "Attribute 2 value(s)": "S"},
        {"ID": "12", "Type": "variation", "SKU": "HOOD-GREEN-M", "Name": "Hoodie - Green, M", "Published": "1",
         "Regular price": "45", "Parent": "HOOD", "Attribute 1 name": "Color", "Attribute 1 value(s)": "Green",
         "Attribute 2 name": "Size", "Attribute 2 value(s)": "M"},
        {"ID": "13", "Type": "variation", "SKU": "LOST", "Name": "Lost", "Parent": "id:99",
         "Attribute 1 name": "Color", "Attribute 1 value(s)": "Red"},
        {"ID": "20", "Type": "simple", "SKU": "CAP", "Name": "Cap", "Published": "1", "Regular price": "15",
         "Short description": "Cotton cap, one size", "Categories": "Accessories", "Images": f"{img}/cap.jpg"},
        {"ID": "21", "Type": "simple", "SKU": "OLD", "Name": "Old cap", "Published": "-1"},
        {"ID": "30", "Type": "grouped", "Name": "Cap set"},
    ]
    path = write(tmp_path, "wc-product-export.csv", rows_to_csv(WOO_COLUMNS, rows, bom=True))
    assert detect_format(path) == "woocommerce"
    cat = load_catalog(path, fetch_photos=False)
    p = cat.products
    assert list(p.index) == ["10-grey", "10-green", "20"]
    assert set(p.loc[["10-grey", "10-green"], "group_id"]) == {"10"}
    assert p.loc["10-grey", "price"] == "39.00" and p.loc["10-green", "size"] == "M"
    assert p.loc["10-grey", "image_url"].endswith("hoodie-grey.jpg")
    assert p.loc["10-green", "image_url"].endswith("/hoodie.jpg")  # no image of its own: the parent's first
    assert p.loc["10-grey", "description"] == "Brushed fleece & a kangaroo pocket"
    assert p.loc["10-grey", "product_type"] == "Hoodies" and p.loc["20", "description"] == "Cotton cap, one size"
    problems = {i.problem: i for i in cat.report.issues}
    assert problems["variations whose Parent is not in the file"].examples == ["13"]
    assert problems["grouped products (containers of other products)"].examples == ["30"]
    assert problems["unpublished products (draft, archived or private)"].examples == ["21 (draft)"]


MERCHANT_COLUMNS = ["id", "title", "description", "link", "image_link", "additional_image_link", "price",
                    "availability", "brand", "color", "pattern", "material", "size", "gender", "age_group",
                    "item_group_id", "product_type", "google_product_category"]
MERCHANT_ITEMS = [
    {"id": "SH-1-BL", "title": "Oxford shirt", "description": "Cotton oxford shirt, button-down collar",
     "link": "https://shop.example/p/sh-1", "image_link": "https://cdn.example/sh-1-bl.jpg", "price": "39.90 EUR",
     "availability": "in_stock", "brand": "Atelier", "color": "Blue", "pattern": "Striped", "material": "Cotton",
     "size": "M", "gender": "male", "age_group": "adult", "item_group_id": "SH-1",
     "product_type": "Men > Shirts > Oxford", "google_product_category": "Apparel & Accessories > Clothing > Shirts"},
    {"id": "SH-1-WH", "title": "Oxford shirt", "link": "https://shop.example/p/sh-1",
     "image_link": "https://cdn.example/sh-1-wh.jpg", "price": "39.90 EUR", "availability": "out_of_stock",
     "color": "White", "pattern": "Solid", "item_group_id": "SH-1",
     "google_product_category": "Apparel & Accessories > Clothing > Shirts"},
]


def test_merchant_center_tsv_reads_pattern_and_material_as_texture_labels(tmp_path):
    path = write(tmp_path, "feed.tsv", rows_to_csv(MERCHANT_COLUMNS, MERCHANT_ITEMS, sep="\t"))
    assert detect_format(path) == "merchant"
    cat = load_catalog(path, fetch_photos=False)
    p = cat.products
    assert list(p.index) == ["SH-1-BL", "SH-1-WH"] and set(p["group_id"]) == {"SH-1"}
    assert list(p["pattern"]) == ["Striped", "Solid"] and p.loc["SH-1-BL", "material"] == "Cotton"
    assert list(p["colour"]) == ["Blue", "White"]
    assert list(p["product_type"]) == ["Oxford", "Shirts"]  # the shop's own path, else Google's category
    assert p.loc["SH-1-BL", "price"] == "39.90"
    assert p.loc["SH-1-BL", "currency"] == "EUR"
    assert {i.problem: i.count for i in cat.report.issues}["items out of stock or discontinued"] == 1
    assert "striped" in p.loc["SH-1-BL", "sentence"].lower()


def merchant_xml(atom: bool) -> bytes:
    def fields(item):
        return "".join(f"<g:{k}>{v.replace('&', '&amp;')}</g:{k}>" for k, v in item.items() if v)
    if atom:
        entries = "".join(f"<entry>{fields(i)}</entry>" for i in MERCHANT_ITEMS)
        return ('<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
                f'xmlns:g="http://base.google.com/ns/1.0"><title>Shop</title>{entries}</feed>').encode()
    items = "".join(f"<item>{fields(i)}</item>" for i in MERCHANT_ITEMS)
    return ('<?xml version="1.0"?><rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel>'
            f'<title>Shop</title><link>https://shop.example</link>{items}</channel></rss>').encode()


@pytest.mark.parametrize("atom", [False, True])
def test_merchant_center_xml_feeds_read_as_the_tsv(tmp_path, atom):
    tsv = load_catalog(write(tmp_path, "feed.tsv", rows_to_csv(MERCHANT_COLUMNS, MERCHANT_ITEMS, sep="\t")),
                       fetch_photos=False)
    (tmp_path / "x").mkdir()
    xml = load_catalog(write(tmp_path / "x", "feed.xml", merchant_xml(atom)), fetch_photos=False)
    cols = ["title", "description", "colour", "pattern", "material", "group_id", "product_type", "price"]
    assert xml.products[cols].equals(tsv.products[cols])


def test_a_file_of_no_known_export_or_a_folder_of_two_product_files_says_what_to_do(tmp_path):
    other = write(tmp_path, "notes.csv", b"a,b\n1,2\n")
    with pytest.raises(CatalogError, match="not an export Atelier knows.*--format"):
        load_catalog(other)
    named = load_catalog(write(tmp_path, "odd.csv", b"id,title,picture\nA1,Shirt,\n"), fmt="merchant")
    assert list(named.products.index) == ["A1"]  # named with --format; its misspelled column reported
    both = tmp_path / "both"
    both.mkdir()
    write(both, "feed.tsv", rows_to_csv(MERCHANT_COLUMNS, MERCHANT_ITEMS, sep="\t"))
    write(both, "products.csv", rows_to_csv(SHOPIFY_COLUMNS, shopify_rows()))
    with pytest.raises(CatalogError, match="more than one products file"):
        load_catalog(both)
    with pytest.raises(CatalogError, match="unknown format 'magento'"):
        load_catalog(other, fmt="magento")


def test_html_descriptions_become_text_without_scripts_or_markup():
    html = ('<div><h2>Fit</h2><p>Relaxed&nbsp;fit, <em>dropped</em> shoulders</p><script>alert("x")</script>'
            '<style>.a{}</style><img src=x onerror="alert(1)"><br>Care: 30&deg;C</div>')
    assert html_to_text(html) == "Fit\nRelaxed fit, dropped shoulders\nCare: 30°C"
    assert html_to_text("a < b, plain text") == "a < b, plain text"
    assert html_to_text("<p>unclosed <b>bold") == "unclosed bold"
    assert html_to_text("&lt;script&gt;") == "<script>"  # text that reads as a tag stays text (never rendered)


def test_photos_named_by_path_are_read_beside_the_export(tmp_path):
    from tests.data.files import photo
    photo(tmp_path / "photos" / "a.jpg")
    items = [{"id": "A", "title": "Shirt", "image_link": "photos/a.jpg"},
             {"id": "B", "title": "Skirt", "image_link": "photos/missing.jpg"}]
    cat = load_catalog(write(tmp_path, "feed.tsv", rows_to_csv(["id", "title", "image_link"], items, sep="\t")))
    assert cat.products.loc["A", "image_path"] == str(tmp_path / "photos" / "a.jpg")
    assert cat.products.loc["B", "image_path"] == "" and "image_url" not in cat.products
    assert {i.problem: i.count for i in cat.report.issues}["missing or empty image files"] == 1


def test_ids_that_come_out_alike_are_told_apart_and_reported(tmp_path):
    rows = [{"Handle": "tee", "Title": "Tee", "Option1 Name": "Colour", "Option1 Value": "Black", "Status": "active",
             "Variant SKU": "T1"},
            {"Handle": "tee", "Option1 Value": "black", "Variant SKU": "T2"},  # slugs to the same id
            {"Handle": "tee-black", "Title": "Other tee", "Option1 Name": "Title", "Option1 Value": "Default Title",
             "Status": "active"}]
    cat = load_catalog(write(tmp_path, "p.csv", rows_to_csv(SHOPIFY_COLUMNS, rows)), fetch_photos=False)
    assert list(cat.products.index) == ["tee-black", "tee-black-2", "tee-black-3"]
    assert list(cat.products["title"]) == ["Tee", "Tee", "Other tee"]
    assert {i.problem: i.count for i in cat.report.issues}["products whose ids came out alike"] == 2


def test_photo_paths_must_stay_in_the_export_s_folder_and_titles_keep_their_angle_brackets(tmp_path):
    from tests.data.files import photo
    photo(tmp_path / "outside.png")
    shop = tmp_path / "shop"
    photo(shop / "in.png")
    items = [{"id": "A", "title": "Tee <Limited Edition> &amp; more", "image_link": "in.png"},
             {"id": "B", "title": "Skirt", "image_link": "../outside.png"},
             {"id": "C", "title": "Coat", "image_link": str(tmp_path / "outside.png")}]
    shop.mkdir(exist_ok=True)
    cat = load_catalog(write(shop, "feed.tsv", rows_to_csv(["id", "title", "image_link"], items, sep="\t")))
    assert cat.products.loc["A", "image_path"] and cat.products.loc["A", "title"] == "Tee <Limited Edition> & more"
    assert cat.products.loc["B", "image_path"] == "" and cat.products.loc["C", "image_path"] == ""
    assert {i.problem: i.count for i in cat.report.issues}["photo paths outside the export's folder"] == 2


def test_a_limit_is_taken_before_any_photo_is_fetched(tmp_path, monkeypatch):
    from core.data import load
    asked = []

    class Counting:
        def fetch(self, urls, progress=None):
            asked.extend(urls)
            from core.data.photofetch import Fetched
            return [Fetched(u, "") for u in urls]
    monkeypatch.setattr(load, "PhotoFetcher", Counting)
    items = [{"id": f"S{i}", "title": "Shirt", "image_link": f"https://cdn.example/{i}.jpg"} for i in range(50)]
    cat = load_catalog(write(tmp_path, "feed.tsv", rows_to_csv(["id", "title", "image_link"], items, sep="\t")),
                       limit=5)
    assert len(cat.products) == 5 and len(asked) == 5 and cat.name.endswith("(first 5)")


def test_woocommerce_escaped_commas_and_line_breaks_read_back(tmp_path):
    rows = [{"ID": "1", "Type": "simple", "SKU": "A", "Name": "Shirt", "Published": "1",
             "Description": "Soft cotton.\\n\\nMachine wash.", "Categories": "Shirts\\, blouses > Oxford, Sale",
             "Images": "https://res.example/w_500\\,h_300/a.jpg, https://res.example/b.jpg"}]
    cat = load_catalog(write(tmp_path, "wc.csv", rows_to_csv(WOO_COLUMNS, rows)), fetch_photos=False)
    p = cat.products.loc["1"]
    assert p["description"] == "Soft cotton.\nMachine wash." and p["category"] == "Shirts, blouses > Oxford"
    assert p["image_url"] == "https://res.example/w_500,h_300/a.jpg"


def test_a_feed_s_own_tags_give_way_to_its_g_attributes(tmp_path):
    atom = ('<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" xmlns:g="http://base.google.com/ns/1.0">'
            '<entry><id>urn:uuid:1</id><title>Feed title</title><g:id>SH-1</g:id><g:title>Oxford shirt</g:title>'
            '<g:additional_image_link>https://c.example/1.jpg</g:additional_image_link>'
            '<g:additional_image_link>https://c.example/2.jpg</g:additional_image_link></entry></feed>')
    cat = load_catalog(write(tmp_path, "feed.xml", atom.encode()), fetch_photos=False)
    assert list(cat.products.index) == ["SH-1"] and cat.products.loc["SH-1", "title"] == "Oxford shirt"
    assert cat.products.loc["SH-1", "more_images"] == "https://c.example/1.jpg,https://c.example/2.jpg"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CatalogError, match="a feed with no items"):
        load_catalog(write(empty, "feed.xml", b'<rss version="2.0"><channel><title>x</title></channel></rss>'))


def test_a_spec_keeping_drafts_names_the_format_of_a_folder_s_products_file(tmp_path):
    from core.data.exports import make_spec, parse_spec
    write(tmp_path, "products.csv", rows_to_csv(SHOPIFY_COLUMNS, shopify_rows()))
    spec = make_spec(str(tmp_path), None, True)
    assert parse_spec(spec) == ("shopify", True, str(tmp_path))
    assert "draft-scarf" in load_catalog(spec, fetch_photos=False).products.index


def test_a_tab_separated_feed_reads_quotes_as_written(tmp_path):
    feed = 'id\ttitle\tdescription\timage_link\n1\t"Best" shirt\tSays "hi"\t\n2\tSkirt\tA 5" hem\t\n'
    cat = load_catalog(write(tmp_path, "feed.tsv", feed.encode()), fetch_photos=False)
    assert list(cat.products["title"]) == ['"Best" shirt', "Skirt"]
    assert cat.products.loc["2", "description"] == 'A 5" hem'
    assert not [i for i in cat.report.issues if "broken rows" in i.problem]
