"""Tests of the rows both loaders normalise alike: ids, photos, timestamps, purchases, customers."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.data.catalog import ValidationReport
from core.data.rows import attach_images, customer_rows, parse_times, purchase_rows, unique_ids


def problems(report: ValidationReport) -> dict[str, list[str]]:
    return {i.problem: i.examples for i in report.issues}


def test_unique_ids_strip_skip_empty_and_keep_the_first():
    report = ValidationReport()
    got = unique_ids(pd.DataFrame({"id": [" a", "", "b", "a "], "x": ["1", "2", "3", "4"]}), "id", "f.csv", report)
    assert got.index.tolist() == ["a", "b"] and got["x"].tolist() == ["1", "3"]
    assert problems(report) == {"rows without id": ["3"], "duplicate id": ["a"]}  # line 3: header is line 1


def test_attach_images_keeps_only_non_empty_files(tmp_path):
    (tmp_path / "ok.jpg").write_bytes(b"x")
    (tmp_path / "empty.jpg").write_bytes(b"")
    products = pd.DataFrame(index=["p1", "p2", "p3", "p4"])
    report = ValidationReport()
    paths = [tmp_path / "ok.jpg", tmp_path / "empty.jpg", tmp_path / "none.jpg", None]
    attach_images(products, paths, "images/", report)
    assert products["image_path"].tolist() == [str(tmp_path / "ok.jpg"), "", "", ""]
    assert report.issues[0].count == 3


def test_parse_times_reads_iso_and_other_formats_as_naive_utc():
    got = parse_times(pd.Series(["2020-03-01", "2020-03-01T10:00:00+02:00", "03/02/2020 10:00", "", "soon"]))
    assert got.dtype == "datetime64[ns]"
    assert got[:3].tolist() == [pd.Timestamp("2020-03-01"), pd.Timestamp("2020-03-01 08:00"),
                                pd.Timestamp("2020-03-02 10:00")]
    assert got[3:].isna().all()


def test_purchase_rows_drop_unknown_products_bad_dates_and_no_customer_then_sort():
    products = pd.DataFrame(index=["a", "b"])
    tx = pd.DataFrame({"user": ["u1", "u2", "u3", "", "u1"], "item": ["b", "zzz", "a", "a", "a"],
                       "when": ["2020-03-02", "2020-03-01", "never", "2020-03-01", "2020-03-01"],
                       "price": ["1.5", "2", "3", "4", "x"]})
    report = ValidationReport()
    got = purchase_rows(tx, {"customer_id": "user", "product_id": "item", "timestamp": "when", "price": "price"},
                        products, "t.csv", report)
    assert got[["customer_id", "product_id"]].values.tolist() == [["u1", "a"], ["u1", "b"]]  # oldest first
    assert got["price"].tolist()[1] == 1.5 and np.isnan(got["price"].tolist()[0])
    assert problems(report) == {"purchases of unknown products": ["zzz"], "unreadable dates": ["never"],
                                "purchases without a customer": ["5"]}


def test_customer_rows_add_buyers_without_a_row():
    purchases = pd.DataFrame({"customer_id": ["u1", "u2"]})
    report = ValidationReport()
    got = customer_rows(pd.DataFrame({"id": ["u1"], "age": ["30"]}), "id", purchases, "users.csv", report)
    assert got.index.name == "customer_id" and got.index.tolist() == ["u1", "u2"]
    assert got.loc["u2", "age"] == "" and problems(report) == {"customers with purchases but no row": ["u2"]}
    silent = ValidationReport()
    assert customer_rows(None, "id", purchases, "users.csv", silent).index.tolist() == ["u1", "u2"] and silent.ok
