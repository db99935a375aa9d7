"""WooCommerce's product CSV export (simple and variable products, each variation a row naming its Parent), read
into Atelier's products."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from core.data.catalog import ValidationReport
from core.data.csvread import check_columns, read_rows
from core.data.roles import ROLE_SYNONYMS, plain_name
from core.data.shopify import drop_unpublished, finite_number, slug

GUIDE = "see the README section 'Shop exports'"
COLOUR_ATTRIBUTES = {plain_name(s) for s in ROLE_SYNONYMS["colour"]}
# What becomes what, for people (the app's sidebar shows it): export field -> Atelier column.
MAPPING = {"ID": "product id (with the colour for a variable product)", "Parent": "group_id of its variations",
           "Name": "title", "Description / Short description": "description (as text)",
           "Categories": "category, product_type (its last part)", "Tags": "tags",
           "Attribute with a colour name": "colour (one product per colour)",
           "Other attributes": "an attribute each (values joined)", "Sale price / Regular price": "price (the lowest)",
           "Images": "the photo (the first)", "Published": "status (1: published)", "SKU": "matches order lines"}
FIELDS = ("Type", "SKU", "Name", "Published", "Short description", "Description", "Categories", "Tags", "Images",
          "Parent", "Regular price", "Sale price")


def _attributes(row: dict) -> dict[str, str]:
    """A row's ``Attribute N name`` -> ``Attribute N value(s)``, in N order, the empty ones left out."""
    out = {}
    for col in row:
        m = re.fullmatch(r"Attribute (\d+) name", col)
        if m and row[col].strip():
            out[row[col].strip()] = row.get(f"Attribute {m.group(1)} value(s)", "").strip()
    return out


def _items(text: str) -> list[str]:
    """A WooCommerce list field's items: split at commas, but not at the ``\\,`` it writes for a comma inside an
    item (an image URL's transformation, a category name)."""
    return [part.replace("\\,", ",").strip() for part in re.split(r"(?<!\\),", text) if part.strip()]


def _text(text: str) -> str:
    """A WooCommerce text field as written: it exports a line break as the two characters ``\\n``."""
    return text.replace("\\n", "\n")


def _first_image(images: str) -> str:
    return next(iter(_items(images)), "")


def _category(categories: str) -> tuple[str, str]:
    """(the first category path, its last part): "Clothing > Tshirts, Sale" -> ("Clothing > Tshirts", "Tshirts")."""
    first = next(iter(_items(categories)), "")
    return first, first.rsplit(">", 1)[-1].strip()


def woocommerce_products(path: Path, report: ValidationReport, include_drafts: bool = False) -> pd.DataFrame:
    """The products of a WooCommerce product CSV export, indexed by product id: a simple product is one; a
    variable product is one per colour of its variations when an attribute is a colour (``<ID>-<colour>``,
    sharing the parent's ID as ``group_id``), else one. Columns: ``title`` (Name), ``description``
    (Description, else Short description; HTML as given), ``image`` (the colour's variation image, else the
    product's first Image), ``group_id``, ``colour``, one column per other attribute (its values),
    ``product_type`` (the first category's last part), ``category``, ``tags``, ``price`` (the lowest sale or
    regular price), ``status`` and ``skus``. Unpublished products (Published 0 or -1) are reported and dropped
    unless ``include_drafts``; grouped products (containers of others) are left out."""
    df = check_columns(read_rows(path, report, GUIDE, sep=None), path, report, ["ID"], list(FIELDS), GUIDE)
    df["ID"] = df["ID"].str.strip()
    df["Type"] = df["Type"].str.strip().str.lower()
    grouped = df["Type"].str.contains("grouped")
    report.add(path.name, "grouped products (containers of other products)", df.loc[grouped, "ID"].tolist(),
               "skipped")
    df = df[~grouped & (df["ID"] != "")]
    is_variation = df["Type"].str.contains("variation").to_numpy()
    records = df.to_dict("records")  # plain Python from here: per-product pandas work costs ms a product
    parents = {r["ID"]: r for r, v in zip(records, is_variation) if not v}
    variations = [r for r, v in zip(records, is_variation) if v]
    by_sku = {r["SKU"].strip(): i for i, r in parents.items() if r["SKU"].strip()}

    def parent_of(text: str) -> str | None:
        text = text.strip()
        found = text.removeprefix("id:") if text.startswith("id:") else by_sku.get(text)
        return found if found in parents else None

    children: dict[str, list[dict]] = {}
    orphans = []
    for r in variations:
        owner = parent_of(r["Parent"])
        if owner is None:
            orphans.append(r["ID"])
        else:
            children.setdefault(owner, []).append(r)
    report.add(path.name, "variations whose Parent is not in the file", orphans, "skipped")
    rows = []
    for pid, parent in parents.items():
        rows.extend(_parent_products(pid, parent, children.get(pid)))
    products = pd.DataFrame(rows).fillna("").set_index("product_id") if rows else \
        pd.DataFrame(columns=["title", "description", "image", "group_id", "skus"]).rename_axis("product_id")
    return drop_unpublished(products, path.name, report, include_drafts)


def _lowest(texts) -> str:
    prices = [p for p in map(finite_number, texts) if p is not None]
    return f"{min(prices):.2f}" if prices else ""


def _parent_products(pid: str, parent: dict, kids: list[dict] | None) -> list[dict]:
    """The products of one simple or variable product and its variations: one, or one per colour."""
    attrs = _attributes(parent)
    colour_name = next((n for n in attrs if plain_name(n) in COLOUR_ATTRIBUTES), None)
    category, kind = _category(parent["Categories"])
    base = {"title": parent["Name"].strip(),
            "description": _text(parent["Description"] or parent["Short description"]),
            "group_id": pid, "product_type": kind, "category": category, "tags": parent["Tags"].strip(),
            "status": "active" if parent["Published"].strip() in ("1", "") else "draft"}
    if kids is None or colour_name is None:
        family = [parent, *(kids or [])]
        row = {"product_id": pid, **base, "image": _first_image(parent["Images"]),
               "price": _lowest(r[c] for r in family for c in ("Sale price", "Regular price")),
               "skus": "\n".join(r["SKU"].strip() for r in family if r["SKU"].strip())}
        row |= {slug(n).replace("-", "_"): v for n, v in attrs.items()}
        if colour_name is not None:
            row["colour"] = row.pop(slug(colour_name).replace("-", "_"))
        return [row]
    kid_attrs = [_attributes(k) for k in kids]
    colours = list(dict.fromkeys(a.get(colour_name, "") for a in kid_attrs if a.get(colour_name, "")))
    out = []
    for colour in colours or [""]:
        mine = [(k, a) for k, a in zip(kids, kid_attrs) if a.get(colour_name, "") == colour]
        images = [_first_image(k["Images"]) for k, _ in mine if _first_image(k["Images"])]
        row = {"product_id": f"{pid}-{slug(colour)}" if colour else pid, **base, "colour": colour,
               "image": images[0] if images else _first_image(parent["Images"]),
               "price": _lowest(k[c] for k, _ in mine for c in ("Sale price", "Regular price")),
               "skus": "\n".join(k["SKU"].strip() for k, _ in mine if k["SKU"].strip())}
        for name in attrs:
            if name != colour_name:
                values = dict.fromkeys(a.get(name, "") for _, a in mine if a.get(name, ""))
                row[slug(name).replace("-", "_")] = ", ".join(values) or attrs[name]
        out.append(row)
    return out
