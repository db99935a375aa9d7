"""Google Merchant Center product feeds, as TSV (tab-separated, a header of attribute names) or as XML (RSS 2.0
or Atom with the ``g:`` namespace), read into Atelier's products."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from core.data.catalog import CatalogError, ValidationReport
from core.data.csvread import check_columns, read_rows

GUIDE = "see the README section 'Shop exports'"
G = "http://base.google.com/ns/1.0"
ATOM = "http://www.w3.org/2005/Atom"
# Merchant Center attribute -> Atelier column. pattern and material are exactly what the Texture failures page
# measures embeddings against.
ATTRIBUTES = {"title": "title", "description": "description", "image_link": "image", "item_group_id": "group_id",
              "color": "colour", "pattern": "pattern", "material": "material", "brand": "brand", "size": "size",
              "gender": "gender", "age_group": "age_group", "google_product_category": "category",
              "product_type": "product_path", "price": "price", "link": "link", "availability": "availability",
              "additional_image_link": "more_images"}
UNPUBLISHED = {"out_of_stock", "out of stock", "discontinued"}  # not buyable now: kept, as a shop's catalogue is


def _xml_rows(path: Path) -> pd.DataFrame:
    """The items of an RSS 2.0 (``<channel><item>``) or Atom (``<entry>``) feed, one row each, the ``g:``
    attributes (and plain ``title``, ``link``, ``description``) by name; a repeated attribute's values joined by
    commas. The standard library's parser: no external entities are fetched."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise CatalogError(f"{path}: not a readable XML feed ({e}). Fix: export the feed again; {GUIDE}") from None
    items = root.findall("./channel/item") or root.findall(f"{{{ATOM}}}entry") or root.findall("entry")
    rows = []
    for item in items:
        ours: dict[str, str] = {}  # the g: attributes
        plain: dict[str, str] = {}  # the feed's own (an Atom entry's <id>, RSS's <title>): only where g: has none
        for child in item:
            name = child.tag.split("}", 1)[-1]
            value = (child.text or child.get("href") or "").strip()
            into = ours if child.tag.startswith(f"{{{G}}}") else plain
            if name == "additional_image_link" and into.get(name) and value:
                into[name] = f"{into[name]},{value}"  # repeated: every one kept
            elif not into.get(name):
                into[name] = value
        rows.append({**plain, **{k: v for k, v in ours.items() if v}})
    if not rows:
        raise CatalogError(f"{path}: a feed with no items (no <item> in its channel, no Atom <entry>). "
                           f"Fix: export the feed again with its products; {GUIDE}")
    return pd.DataFrame(rows, dtype=str).fillna("")


def merchant_products(path: Path, report: ValidationReport, include_drafts: bool = False) -> pd.DataFrame:
    """The products of a Merchant Center feed (TSV, or RSS / Atom XML), indexed by ``id``: ``title``,
    ``description``, ``image`` (image_link), ``group_id`` (item_group_id, else the id), ``colour``, ``pattern``,
    ``material``, ``brand``, ``size``, ``gender``, ``age_group``, ``product_type`` (the last part of the shop's
    product_type path, else of google_product_category), ``category``, ``product_path``, ``price`` and
    ``currency`` (from "12.99 USD"), ``link``, ``availability``, ``more_images`` (additional_image_link). Items
    out of stock or discontinued are kept and counted; a feed holds published items only, so
    ``include_drafts`` changes nothing."""
    xml = path.read_bytes()[:512].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")
    df = _xml_rows(path) if xml else read_rows(path, report, GUIDE, sep=None, quoted=None)  # tabs: never quoted
    df.columns = [c.strip().lower().removeprefix("g:") for c in df.columns]
    df = check_columns(df, path, report, ["id"], ["title", "image_link"], GUIDE)
    df["id"] = df["id"].str.strip()
    empty = df["id"] == ""
    report.add(path.name, "items without id", (df.index[empty] + 2).tolist(), "skipped")
    df = df[~empty]
    dup = df["id"].duplicated()
    report.add(path.name, "duplicate id", df.loc[dup, "id"].tolist(), "kept the first")
    df = df[~dup].set_index("id")
    products = pd.DataFrame({out: df[attr] if attr in df else "" for attr, out in ATTRIBUTES.items()},
                            index=df.index).fillna("")
    products.index.name = "product_id"
    products["group_id"] = products["group_id"].where(products["group_id"].str.strip() != "",
                                                      products.index.to_series())
    path_of = products["product_path"].where(products["product_path"] != "", products["category"])
    products["product_type"] = [p.rsplit(">", 1)[-1].strip() for p in path_of]
    amount = products["price"].str.strip().str.split(" ", n=1)
    products["currency"] = [a[1] if len(a) > 1 else "" for a in amount]
    products["price"] = [a[0] if a else "" for a in amount]
    gone = products["availability"].str.strip().str.lower().isin(UNPUBLISHED)
    report.add(path.name, "items out of stock or discontinued", products.index[gone].tolist(), "kept")
    return products
