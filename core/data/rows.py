"""The rows both loaders normalise alike: unique ids, photos on disk, purchases and customers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.data.catalog import ValidationReport


def unique_ids(df: pd.DataFrame, col: str, file: str, report: ValidationReport) -> pd.DataFrame:
    """``df`` indexed by its stripped ``col``: rows without one skipped, repeats after the first dropped, both reported."""
    df[col] = df[col].str.strip()
    empty = df[col] == ""
    report.add(file, f"rows without {col}", (df.index[empty] + 2).tolist(), "skipped")
    df = df[~empty]
    dup = df[col].duplicated()
    report.add(file, f"duplicate {col}", df.loc[dup, col].tolist(), "kept the first")
    return df[~dup].set_index(col)


def attach_images(products: pd.DataFrame, paths: list[Path | None], file: str, report: ValidationReport) -> None:
    """Set ``image_path`` to the absolute path where the file exists and is non-empty, else ""."""
    ok = []
    for p in paths:
        try:
            ok.append(p is not None and p.stat().st_size > 0)
        except (OSError, ValueError):
            ok.append(False)
    ok = np.array(ok, dtype=bool)
    products["image_path"] = np.where(ok, [str(p or "") for p in paths], "")
    report.add(file, "missing or empty image files", [f"{i} ({p})" for i, p, k in zip(products.index, paths, ok)
                                                      if not k], "product kept without a photo",
               count=int((~ok).sum()))


def parse_times(text: pd.Series) -> pd.Series:
    """Timestamps as naive UTC datetime64[ns], NaT where unreadable. ISO 8601 (fast, any mix of dates,
    times and offsets) first; other formats are parsed one by one."""
    times = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    rest = times.isna() & (text.str.strip() != "")
    if rest.any():
        times[rest] = pd.to_datetime(text[rest], errors="coerce", utc=True, format="mixed")
    return times.dt.tz_convert(None).astype("datetime64[ns]")


def purchase_rows(df: pd.DataFrame, cols: dict[str, str], products: pd.DataFrame, file: str,
                  report: ValidationReport) -> pd.DataFrame:
    """Normalise purchase rows; drop rows of unknown products or unreadable dates."""
    out = pd.DataFrame({
        "customer_id": df[cols["customer_id"]].str.strip(),
        "product_id": df[cols["product_id"]].str.strip(),
        "timestamp": parse_times(df[cols["timestamp"]]) if cols.get("timestamp") in df
        else pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]"),
        "price": pd.to_numeric(df[cols["price"]], errors="coerce") if cols.get("price") in df else np.nan,
    })
    out["timestamp"] = out["timestamp"].astype("datetime64[ns]")
    unknown = ~out["product_id"].isin(products.index)
    report.add(file, "purchases of unknown products", out.loc[unknown, "product_id"].unique().tolist(),
               "skipped", count=int(unknown.sum()))
    out = out[~unknown]
    if cols.get("timestamp") in df:
        bad_date = out["timestamp"].isna() & (df.loc[out.index, cols["timestamp"]].str.strip() != "")
        report.add(file, "unreadable dates", df.loc[out.index[bad_date], cols["timestamp"]].tolist(), "skipped",
                   count=int(bad_date.sum()))
        out = out[~bad_date]
    no_customer = out["customer_id"] == ""
    report.add(file, "purchases without a customer", (out.index[no_customer] + 2).tolist(), "skipped")
    return out[~no_customer].sort_values("timestamp", kind="stable").reset_index(drop=True)


def customer_rows(df: pd.DataFrame | None, id_col: str, purchases: pd.DataFrame, file: str,
                  report: ValidationReport) -> pd.DataFrame:
    """Customers indexed by ``customer_id`` (``df`` None: no file), every purchasing customer given a row."""
    if df is None:
        customers = pd.DataFrame(index=pd.Index([], name="customer_id", dtype=str))
    else:
        customers = unique_ids(df, id_col, file, report)
        customers.index.name = "customer_id"
    unseen = pd.Index(purchases["customer_id"].unique()).difference(customers.index)
    if len(unseen):
        if df is not None:
            report.add(file, "customers with purchases but no row", unseen.tolist(), "added without attributes",
                       count=len(unseen))
        customers = pd.concat([customers, pd.DataFrame(index=pd.Index(unseen, name="customer_id"))]).fillna("")
    return customers
