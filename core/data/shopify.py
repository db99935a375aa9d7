"""Shopify's product CSV export (one row per variant and per extra image, grouped by Handle) and its orders CSV
export (one row per line item), read into Atelier's products and purchases."""
from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import pandas as pd

from core.data.catalog import ValidationReport
from core.data.csvread import check_columns, read_rows
from core.data.roles import ROLE_SYNONYMS, plain_name

GUIDE = "see the README section 'Shop exports'"
# The product-level fields, on a handle's first row only; later rows carry variant and image fields.
PRODUCT_FIELDS = ("Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags", "Status",
                  "Option1 Name", "Option2 Name", "Option3 Name")
VARIANT_FIELDS = ("Option1 Value", "Option2 Value", "Option3 Value", "Variant SKU", "Variant Price",
                  "Variant Image", "Image Src", "Image Position")
COLOUR_OPTIONS = {plain_name(s) for s in ROLE_SYNONYMS["colour"]}
# What becomes what, for people (the app's sidebar shows it): export field -> Atelier column.
MAPPING = {"Handle": "group_id (and the product id, with the colour)", "Title": "title",
           "Body (HTML)": "description (as text)", "Vendor": "brand",
           "Type / Product Category": "product_type (the category's last part)", "Product Category": "category",
           "Tags": "tags", "Option with a colour name": "colour (one product per colour)",
           "Other options": "an attribute each (values joined)", "Variant Price": "price (the lowest)",
           "Variant Image / Image Src": "the photo", "Variant SKU": "matches order lines", "Status": "status"}
ORDER_MAPPING = {"Email (else Customer ID)": "customer_id (hashed)", "Created at": "timestamp",
                 "Lineitem sku / Lineitem name": "product_id", "Lineitem quantity": "one purchase per unit",
                 "Lineitem price": "price"}
MAX_QUANTITY = 100  # an order line's quantity above this is read as this many purchases (and reported)
UNDONE = {"refunded", "voided"}  # an order's Financial Status that means nothing was bought


def slug(text: str) -> str:
    """``text`` as a product-id fragment: lower case, runs of other characters as one '-'."""
    return re.sub(r"[^0-9a-z]+", "-", text.casefold()).strip("-") or "x"


def _last_segment(category: str) -> str:
    """"Apparel & Accessories > Clothing > Dresses" -> "Dresses"."""
    return category.rsplit(">", 1)[-1].strip()


def shopify_products(path: Path, report: ValidationReport, include_drafts: bool = False) -> pd.DataFrame:
    """The products of a Shopify product CSV export, indexed by product id: one per Handle, or one per Handle
    and colour when a variant option is a colour (``<handle>-<colour>``, sharing the handle as ``group_id``, as
    H&M's articles of one product do). Columns: ``title``, ``description`` (the Body HTML, as given),
    ``image`` (the colour's variant image, else the handle's first image by position), ``group_id``, ``colour``,
    ``brand`` (Vendor), ``product_type`` (Type, else Product Category's last part), ``category``, ``tags``,
    one column per other option (e.g. ``size``: its values), ``price`` (the lowest variant price), ``status``
    and ``skus`` (the variants' SKUs, one a line, for orders to match). Draft and archived products are
    reported, and dropped unless ``include_drafts``."""
    df = check_columns(read_rows(path, report, GUIDE, sep=None), path, report, ["Handle"],
                       list(PRODUCT_FIELDS + VARIANT_FIELDS), GUIDE)
    df["Handle"] = df["Handle"].str.strip()
    empty = df["Handle"] == ""
    report.add(path.name, "rows without Handle", (df.index[empty] + 2).tolist(), "skipped")
    df = df[~empty]
    groups: dict[str, list[dict]] = {}
    for record in df[["Handle", *PRODUCT_FIELDS, *VARIANT_FIELDS]].to_dict("records"):  # plain Python: per-handle
        groups.setdefault(record["Handle"], []).append(record)  # pandas work costs ms a handle
    rows = []
    for handle, group in groups.items():
        rows.extend(_handle_products(handle, group))
    products = pd.DataFrame(rows).fillna("").set_index("product_id") if rows else \
        pd.DataFrame(columns=["title", "description", "image", "group_id", "skus"]).rename_axis("product_id")
    return drop_unpublished(products, path.name, report, include_drafts)


def finite_number(text: str) -> float | None:
    """A price or position as a number; None when it is not a finite one."""
    text = text.strip().replace(" ", "")
    if "," in text:  # the last of ',' and '.' is the decimal mark ("59,90", "1.059,90"; "1,059.90"), the other groups
        decimal = "," if text.rfind(",") > text.rfind(".") else "."
        text = text.replace("." if decimal == "," else ",", "").replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _handle_products(handle: str, group: list[dict]) -> list[dict]:
    """The products of one handle's rows (file order): one, or one per colour of its variants."""
    first = group[0]
    names = [first[f"Option{i} Name"].strip() for i in (1, 2, 3)]
    colour_at = next((i for i, n in enumerate(names) if plain_name(n) in COLOUR_OPTIONS), None)
    values = [f"Option{i} Value" for i in (1, 2, 3)]
    variants = [r for r in group if any(r[v] for v in values) or r["Variant SKU"] or r["Variant Price"]]
    positions = [(finite_number(r["Image Position"]), r["Image Src"].strip()) for r in group if r["Image Src"].strip()]
    handle_image = min(positions, key=lambda p: 1e9 if p[0] is None else p[0])[1] if positions else ""
    colour_key = None if colour_at is None else values[colour_at]
    colours = [""] if colour_key is None else \
        list(dict.fromkeys(r[colour_key].strip() for r in variants if r[colour_key].strip())) or [""]
    out = []
    for colour in colours:
        mine = variants if not colour else [r for r in variants if r[colour_key].strip() == colour]
        own_images = [r["Variant Image"].strip() for r in mine if r["Variant Image"].strip()]
        prices = [p for p in (finite_number(r["Variant Price"]) for r in mine) if p is not None]
        row = {"product_id": f"{handle}-{slug(colour)}" if colour else handle,
               "title": first["Title"].strip(), "description": first["Body (HTML)"],
               "image": own_images[0] if own_images else handle_image, "group_id": handle,
               "brand": first["Vendor"].strip(),
               "product_type": first["Type"].strip() or _last_segment(first["Product Category"]),
               "category": first["Product Category"].strip(), "tags": first["Tags"].strip(),
               "price": f"{min(prices):.2f}" if prices else "",
               "status": first["Status"].strip().lower() or "active",
               "skus": "\n".join(r["Variant SKU"].strip() for r in mine if r["Variant SKU"].strip())}
        if colour_key is not None:
            row["colour"] = colour
        for i, name in enumerate(names):
            if name and i != colour_at:
                found = dict.fromkeys(r[values[i]].strip() for r in mine if r[values[i]].strip())
                if list(found) != ["Default Title"]:  # Shopify's name for a product without options
                    row[slug(name).replace("-", "_")] = ", ".join(found)
        out.append(row)
    return out


def drop_unpublished(products: pd.DataFrame, file: str, report: ValidationReport,
                     include_drafts: bool) -> pd.DataFrame:
    """``products`` without those whose ``status`` is not "active" (drafts, archived, private), reported; all
    of them, still reported, with ``include_drafts``."""
    if "status" not in products or products.empty:
        return products
    hidden = products["status"] != "active"
    report.add(file, "unpublished products (draft, archived or private)",
               [f"{p} ({s})" for p, s in products.loc[hidden, "status"].items()],
               "kept (include drafts)" if include_drafts else "skipped (keep them with --include-drafts)")
    return products if include_drafts else products[~hidden]


def customer_key(email: str, customer: str) -> str:
    """A customer's id in Atelier: a hash of their email (lower-cased), else of the shop's customer id; ""
    without either. Hashed so no address reaches the cache, the app or the service."""
    text = email.strip().casefold() or customer.strip()
    return "c" + hashlib.sha256(text.encode()).hexdigest()[:16] if text else ""


def shopify_orders(path: Path, report: ValidationReport) -> pd.DataFrame:
    """The line items of a Shopify orders CSV export as purchase rows: ``customer_id`` (:func:`customer_key`),
    ``timestamp`` (Created at, as text), ``price`` (Lineitem price), ``sku`` and ``name`` (Lineitem sku and
    name, for :func:`core.data.exports.match_products`), one row per unit of Lineitem quantity. Order-level
    fields given on an order's first line only are carried to its other lines. The lines of orders refunded or
    voided (Financial Status) or cancelled (Cancelled at) are left out and counted."""
    df = check_columns(read_rows(path, report, GUIDE, sep=None), path, report, ["Name", "Lineitem name"],
                       ["Email", "Created at", "Lineitem quantity", "Lineitem price", "Lineitem sku"], GUIDE)
    blank = pd.Series("", index=df.index)
    order = pd.DataFrame({"order": df["Name"].str.strip(), "email": df["Email"], "created": df["Created at"],
                          "customer": df.get("Customer ID", blank), "paid": df.get("Financial Status", blank),
                          "cancelled": df.get("Cancelled at", blank)})
    for col in ("email", "created", "customer", "paid", "cancelled"):  # blank on an order's later lines
        order[col] = order[col].where(order[col].str.strip() != "").groupby(order["order"]).transform("first")
    order = order.fillna("")
    undone = order["paid"].str.strip().str.lower().isin(UNDONE) | (order["cancelled"].str.strip() != "")
    report.add(path.name, "lines of refunded, voided or cancelled orders", order.loc[undone, "order"].unique().tolist(),
               "skipped: not purchases", count=int(undone.sum()))
    df, order = df[~undone], order[~undone]
    quantity = pd.to_numeric(df["Lineitem quantity"], errors="coerce")
    bad = quantity.isna() | (quantity < 1)
    report.add(path.name, "order lines with no readable quantity", (df.index[bad] + 2).tolist(), "read as 1")
    big = quantity > MAX_QUANTITY
    report.add(path.name, f"order lines of more than {MAX_QUANTITY} units", (df.index[big] + 2).tolist(),
               f"read as {MAX_QUANTITY}")
    units = quantity.where(~bad, 1).clip(upper=MAX_QUANTITY).astype(int)
    rows = pd.DataFrame({"customer_id": [customer_key(e, c) for e, c in zip(order["email"], order["customer"])],
                         "timestamp": order["created"],
                         "price": [finite_number(p) for p in df["Lineitem price"]],  # "52,00" too
                         "sku": df["Lineitem sku"].str.strip(), "name": df["Lineitem name"].str.strip()},
                        index=df.index)
    return rows.loc[rows.index.repeat(units)]
