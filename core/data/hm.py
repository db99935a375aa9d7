"""The H&M layout: articles.csv, customers.csv, transactions_train.csv, images/<3 digits>/<id>.jpg."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.data.catalog import Catalog, ValidationReport, product_sentences
from core.data.csvread import read_csv
from core.data.rows import attach_images, customer_rows, purchase_rows, unique_ids

HM_GUIDE = "see the README section 'Data'"
# H&M column -> Atelier column. Columns not listed are dropped.
HM_PRODUCT_COLUMNS = {
    "prod_name": "title",
    "detail_desc": "description",
    "product_code": "group_id",
    "product_type_name": "product_type",
    "product_group_name": "product_group",
    "colour_group_name": "colour",
    "graphical_appearance_name": "pattern",
    "section_name": "section",
    "department_name": "department",
    "index_group_name": "index_group",
    "garment_group_name": "garment_group",
}
HM_CUSTOMER_COLUMNS = ["FN", "Active", "club_member_status", "fashion_news_frequency", "age", "postal_code"]


def load_hm(root: str | Path) -> Catalog:
    """Read the H&M layout: articles.csv, customers.csv, transactions_train.csv, images/<3 digits>/<id>.jpg."""
    root = Path(root).resolve()
    report = ValidationReport()
    art = read_csv(root / "articles.csv", report, ["article_id"], list(HM_PRODUCT_COLUMNS), HM_GUIDE)
    products = unique_ids(art, "article_id", "articles.csv", report)
    products = products[list(HM_PRODUCT_COLUMNS)].rename(columns=HM_PRODUCT_COLUMNS)
    products.index.name = "product_id"
    products["group_id"] = products["group_id"].where(products["group_id"] != "", products.index.str[:7])
    attach_images(products, [root / "images" / pid[:3] / f"{pid}.jpg" for pid in products.index],
                   "images/", report)
    products["sentence"] = product_sentences(products)

    tx_path = root / "transactions_train.csv"
    if tx_path.is_file():
        tx = read_csv(tx_path, report, ["customer_id", "article_id"], ["t_dat", "price"], HM_GUIDE)
        purchases = purchase_rows(tx, {"customer_id": "customer_id", "product_id": "article_id",
                                    "timestamp": "t_dat", "price": "price"}, products, tx_path.name, report)
    else:
        report.add("transactions_train.csv", "file missing", ["no purchases loaded"], "catalogue without purchases",
                   count=1)
        purchases = purchase_rows(pd.DataFrame(columns=["customer_id", "article_id"]),
                               {"customer_id": "customer_id", "product_id": "article_id"}, products,
                               tx_path.name, report)
    cu_path = root / "customers.csv"
    cu = read_csv(cu_path, report, ["customer_id"], [], HM_GUIDE) if cu_path.is_file() else None
    customers = customer_rows(cu, "customer_id", purchases, cu_path.name, report)
    return Catalog(f"H&M ({root.name})", str(root), products, customers, purchases, report)
