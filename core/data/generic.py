"""The generic layout: items.csv, optional interactions.csv and users.csv, columns read by role."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.data.catalog import Catalog, CatalogError, ValidationReport, product_sentences
from core.data.csvread import check_columns, is_blank, read_csv, read_rows
from core.data.roles import COLUMNS_FILE, apply_roles, explicit_roles
from core.data.rows import attach_images, customer_rows, purchase_rows, unique_ids

GENERIC_GUIDE = "see the README section 'Your own catalogue'"


def load_generic(root: str | Path, columns: dict[str, str] | None = None) -> Catalog:
    """Read the generic layout: items.csv (item_id, title, description, image, attributes...),
    optional interactions.csv (user_id, item_id, timestamp) and users.csv (user_id, attributes...).

    items.csv columns that :data:`core.data.roles.ROLE_SYNONYMS` recognises, or that ``columns`` (role -> column;
    when None, columns.json beside items.csv) names, are renamed to their roles; the others stay
    attributes under their own names.
    """
    root = Path(root).resolve()
    report = ValidationReport()
    explicit, source = explicit_roles(root, columns)
    items_path = root / "items.csv"
    items = read_rows(items_path, report, GENERIC_GUIDE)
    try:
        items = apply_roles(items, explicit, source, items_path.name, report)
    except CatalogError as e:
        where = root / COLUMNS_FILE if source == COLUMNS_FILE else "the columns= mapping"
        raise CatalogError(f"{where}: {e}. Fix: map roles to columns of {items_path} as "
                           f"{{\"role\": \"column\"}}; {GENERIC_GUIDE}") from None
    items = check_columns(items, items_path, report, ["item_id"], ["title", "description", "image"], GENERIC_GUIDE)
    products = unique_ids(items, "item_id", "items.csv", report)
    products.index.name = "product_id"
    if "group_id" not in products:
        products["group_id"] = products.index
    products["title"] = products["title"].where(products["title"] != "", products.index.to_series())
    image = products.pop("image").str.strip()
    attach_images(products, [root / p if p else None for p in image],
                   "items.csv image column", report)
    products["sentence"] = product_sentences(products)

    it_path = root / "interactions.csv"
    blank = it_path.is_file() and is_blank(it_path)  # a shop with no sales yet: no purchases, as without the file
    if blank:
        report.add(it_path.name, "empty file", [str(it_path)], "read as no purchases")
    if it_path.is_file() and not blank:
        it = read_csv(it_path, report, ["user_id", "item_id"], ["timestamp"], GENERIC_GUIDE)
        purchases = purchase_rows(it, {"customer_id": "user_id", "product_id": "item_id", "timestamp": "timestamp",
                                    "price": "price"}, products, it_path.name, report)
    else:
        purchases = purchase_rows(pd.DataFrame(columns=["user_id", "item_id"]),
                               {"customer_id": "user_id", "product_id": "item_id"}, products, it_path.name, report)
    us_path = root / "users.csv"
    users = read_csv(us_path, report, ["user_id"], [], GENERIC_GUIDE) if us_path.is_file() else None
    customers = customer_rows(users, "user_id", purchases, us_path.name, report)
    return Catalog(f"{root.name}", str(root), products, customers, purchases, report)
