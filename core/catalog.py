"""The in-memory catalogue (products, customers, purchases) and its loaders.

Schema, whatever the source:

``products``  index ``product_id`` (str), one row per product:
    ``title``        str, short product name
    ``description``  str, free text, "" where the source has none
    ``image_path``   str, absolute path of the photo, "" where it is missing
    ``group_id``     str, products sharing it are variants of one product
                     (H&M ``product_code``); equals ``product_id`` otherwise
    ``sentence``     str, readable product sentence used by every text model
    attribute columns, str, "" where unknown. The H&M loader names them
    ``product_type``, ``product_group``, ``colour``, ``pattern``, ``section``,
    ``department``, ``index_group``, ``garment_group``; the generic loader
    keeps the shop's own column names.
``customers`` index ``customer_id`` (str), attribute columns (str).
``purchases`` columns ``customer_id`` (str), ``product_id`` (str),
    ``timestamp`` (datetime64[ns], NaT where unknown), ``price`` (float, NaN
    where unknown); every ``product_id`` is in ``products``.

Bad input never stops a load that can safely go on: problems are counted in a
:class:`ValidationReport`. What cannot be loaded at all raises
:class:`CatalogError` naming the file and the fix.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HM_DIR = PROJECT_ROOT.parent / "shared" / "data" / "hm"
CATALOG_ENV = "ATELIER_CATALOG"
N_EXAMPLES = 5

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
# Phrases that read better in a sentence than H&M's pattern labels.
PATTERN_PHRASES = {
    "solid": "solid",
    "stripe": "striped",
    "check": "checked",
    "dot": "dotted",
    "all over pattern": "all-over patterned",
    "denim": "denim",
    "melange": "melange",
}
# Zero-shot prompts for a pattern (given as its phrase) and a product type, shared by evaluation and naming.
PATTERN_PROMPT = "a photo of a {} garment"
TYPE_PROMPT = "a photo of a {}"


def pattern_phrase(label: str) -> str:
    """A pattern label as it reads in a sentence: "Stripe" -> "striped"; unknown labels lower-cased."""
    return PATTERN_PHRASES.get(label.lower(), label.lower())


class CatalogError(Exception):
    """A catalogue that cannot be loaded at all; the message names the file and the fix."""


@dataclass
class Issue:
    file: str
    problem: str
    count: int
    examples: list[str]
    action: str  # what the loader did about it: "skipped", "kept the first", ...


@dataclass
class ValidationReport:
    issues: list[Issue] = field(default_factory=list)

    def add(self, file: str, problem: str, examples: list, action: str, count: int | None = None) -> None:
        count = len(examples) if count is None else count
        if count:
            self.issues.append(Issue(file, problem, int(count), [str(e) for e in list(examples)[:N_EXAMPLES]], action))

    @property
    def ok(self) -> bool:
        return not self.issues

    def extend(self, other: "ValidationReport") -> None:
        self.issues.extend(other.issues)

    def to_frame(self) -> pd.DataFrame:
        rows = [dataclasses.asdict(i) | {"examples": ", ".join(i.examples)} for i in self.issues]
        return pd.DataFrame(rows, columns=["file", "problem", "count", "action", "examples"])

    def summary(self) -> str:
        if self.ok:
            return "validation: no problems found"
        lines = [f"validation: {len(self.issues)} kind(s) of problem"]
        for i in self.issues:
            lines.append(f"  {i.file}: {i.problem}: {i.count} ({i.action}); e.g. {', '.join(i.examples)}")
        return "\n".join(lines)


@dataclass
class Catalog:
    name: str
    source: str  # directory it was read from, or "synthetic:<n>:<seed>"
    products: pd.DataFrame
    customers: pd.DataFrame
    purchases: pd.DataFrame
    report: ValidationReport = field(default_factory=ValidationReport)
    simulated: bool = False  # customers and purchases are simulated, not observed

    @property
    def attribute_columns(self) -> list[str]:
        fixed = {"title", "description", "image_path", "group_id", "sentence"}
        return [c for c in self.products.columns if c not in fixed]

    def counts(self) -> dict[str, int]:
        return {
            "products": len(self.products),
            "customers": len(self.customers),
            "purchases": len(self.purchases),
            "missing_images": int((self.products["image_path"] == "").sum()),
        }

    def head(self, limit: int | None) -> "Catalog":
        """The first ``limit`` products (file order) and the purchases of them."""
        if limit is None or limit >= len(self.products):
            return self
        products = self.products.iloc[:limit]
        purchases = self.purchases[self.purchases["product_id"].isin(products.index)].reset_index(drop=True)
        customers = self.customers[self.customers.index.isin(purchases["customer_id"])]
        return dataclasses.replace(self, name=f"{self.name} (first {limit})", products=products,
                                   customers=customers, purchases=purchases)


# ---------------------------------------------------------------- sentences

def product_sentences(products: pd.DataFrame) -> list[str]:
    """One readable sentence per product from its metadata, e.g.
    "Strap top: a black solid vest top, Womens Everyday Basics, Ladieswear."
    Known attributes (colour, pattern, product_type, section, index_group) read as a
    phrase; any other attribute columns of a generic catalogue follow as "name: value".
    """
    known = ["colour", "pattern", "product_type", "section", "index_group"]
    skip = set(known) | {"title", "description", "image_path", "group_id", "sentence",
                         "product_group", "department", "garment_group"}
    extra = [c for c in products.columns if c not in skip]
    cols = {c: products[c].tolist() if c in products else [""] * len(products)
            for c in known + ["title", "description"] + extra}
    out = []
    for i in range(len(products)):
        colour = cols["colour"][i].lower()
        pattern = pattern_phrase(cols["pattern"][i])
        kind = cols["product_type"][i].lower() or "product"
        noun = " ".join(w for w in (colour, pattern, kind) if w)
        article = "an" if noun[:1] in "aeiou" else "a"
        where = ", ".join(w for w in (cols["section"][i], cols["index_group"][i]) if w)
        s = f"{cols['title'][i]}: {article} {noun}" + (f", {where}" if where else "") + "."
        attrs = "; ".join(f"{c.replace('_', ' ')}: {cols[c][i]}" for c in extra if cols[c][i])
        if attrs:
            s += f" {attrs}."
        desc = cols["description"][i].strip()
        if desc:
            s += f" {desc}"
        out.append(s)
    return out


# ---------------------------------------------------------------- CSV reading

def _read_csv(path: Path, report: ValidationReport, required: list[str], expected: list[str],
              fix: str) -> pd.DataFrame:
    """Read a CSV as strings; skip broken rows and repair misspelled columns, reporting both."""
    if not path.is_file():
        raise CatalogError(f"{path}: file not found. Fix: {fix}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, on_bad_lines="warn")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise CatalogError(f"{path}: not a readable CSV ({e}). Fix: {fix}") from e
    bad = [m for w in caught for m in re.findall(r"Skipping line (\d+): ([^\n]*)", str(w.message))]
    report.add(path.name, "broken rows (wrong number of fields)", [f"line {n}: {why}" for n, why in bad],
               "skipped")
    df.columns = [c.strip() for c in df.columns]
    renamed = {}
    for col in required + expected:
        if col in df.columns:
            continue
        close = difflib.get_close_matches(col, [c for c in df.columns if c not in required + expected], 1, 0.8)
        if close:
            renamed[close[0]] = col
    if renamed:
        df = df.rename(columns=renamed)
        report.add(path.name, "misspelled columns", [f"'{a}' read as '{b}'" for a, b in renamed.items()],
                   "renamed")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise CatalogError(f"{path}: required column(s) {missing} missing; found {list(df.columns)}. Fix: {fix}")
    absent = [c for c in expected if c not in df.columns]
    report.add(path.name, "missing columns", absent, "filled with empty values")
    for c in absent:
        df[c] = ""
    return df


def _unique_ids(df: pd.DataFrame, col: str, file: str, report: ValidationReport) -> pd.DataFrame:
    df[col] = df[col].str.strip()
    empty = df[col] == ""
    report.add(file, f"rows without {col}", (df.index[empty] + 2).tolist(), "skipped")
    df = df[~empty]
    dup = df[col].duplicated()
    report.add(file, f"duplicate {col}", df.loc[dup, col].tolist(), "kept the first")
    return df[~dup].set_index(col)


def _attach_images(products: pd.DataFrame, paths: list[Path | None], file: str, report: ValidationReport) -> None:
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


def _parse_times(text: pd.Series) -> pd.Series:
    """Timestamps as naive UTC datetime64[ns], NaT where unreadable. ISO 8601 (fast, any mix of dates,
    times and offsets) first; other formats are parsed one by one."""
    times = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    rest = times.isna() & (text.str.strip() != "")
    if rest.any():
        times[rest] = pd.to_datetime(text[rest], errors="coerce", utc=True, format="mixed")
    return times.dt.tz_convert(None).astype("datetime64[ns]")


def _purchases(df: pd.DataFrame, cols: dict[str, str], products: pd.DataFrame, file: str,
               report: ValidationReport) -> pd.DataFrame:
    """Normalise purchase rows; drop rows of unknown products or unreadable dates."""
    out = pd.DataFrame({
        "customer_id": df[cols["customer_id"]].str.strip(),
        "product_id": df[cols["product_id"]].str.strip(),
        "timestamp": _parse_times(df[cols["timestamp"]]) if cols.get("timestamp") in df
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


def _customers(df: pd.DataFrame | None, id_col: str, purchases: pd.DataFrame, file: str,
               report: ValidationReport) -> pd.DataFrame:
    if df is None:
        customers = pd.DataFrame(index=pd.Index([], name="customer_id", dtype=str))
    else:
        customers = _unique_ids(df, id_col, file, report)
        customers.index.name = "customer_id"
    unseen = pd.Index(purchases["customer_id"].unique()).difference(customers.index)
    if len(unseen):
        if df is not None:
            report.add(file, "customers with purchases but no row", unseen.tolist(), "added without attributes",
                       count=len(unseen))
        customers = pd.concat([customers, pd.DataFrame(index=pd.Index(unseen, name="customer_id"))]).fillna("")
    return customers


# ---------------------------------------------------------------- loaders

def load_hm(root: str | Path) -> Catalog:
    """Read the H&M layout: articles.csv, customers.csv, transactions_train.csv, images/<3 digits>/<id>.jpg."""
    root = Path(root).resolve()
    report = ValidationReport()
    fix = "point --catalog at a folder holding the H&M files (articles.csv, images/...); see README"
    art = _read_csv(root / "articles.csv", report, ["article_id"], list(HM_PRODUCT_COLUMNS), fix)
    products = _unique_ids(art, "article_id", "articles.csv", report)
    products = products[list(HM_PRODUCT_COLUMNS)].rename(columns=HM_PRODUCT_COLUMNS)
    products.index.name = "product_id"
    products["group_id"] = products["group_id"].where(products["group_id"] != "", products.index.str[:7])
    _attach_images(products, [root / "images" / pid[:3] / f"{pid}.jpg" for pid in products.index],
                   "images/", report)
    products["sentence"] = product_sentences(products)

    tx_path = root / "transactions_train.csv"
    if tx_path.is_file():
        tx = _read_csv(tx_path, report, ["customer_id", "article_id"], ["t_dat", "price"], fix)
        purchases = _purchases(tx, {"customer_id": "customer_id", "product_id": "article_id",
                                    "timestamp": "t_dat", "price": "price"}, products, tx_path.name, report)
    else:
        report.add("transactions_train.csv", "file missing", ["no purchases loaded"], "catalogue without purchases",
                   count=1)
        purchases = _purchases(pd.DataFrame(columns=["customer_id", "article_id"]),
                               {"customer_id": "customer_id", "product_id": "article_id"}, products,
                               tx_path.name, report)
    cu_path = root / "customers.csv"
    cu = _read_csv(cu_path, report, ["customer_id"], [], fix) if cu_path.is_file() else None
    customers = _customers(cu, "customer_id", purchases, cu_path.name, report)
    return Catalog(f"H&M ({root.name})", str(root), products, customers, purchases, report)


def load_generic(root: str | Path) -> Catalog:
    """Read the generic layout: items.csv (item_id, title, description, image, attributes...),
    optional interactions.csv (user_id, item_id, timestamp) and users.csv (user_id, attributes...)."""
    root = Path(root).resolve()
    report = ValidationReport()
    fix = "items.csv needs an item_id column; see the README section 'Your own catalogue'"
    items = _read_csv(root / "items.csv", report, ["item_id"], ["title", "description", "image"], fix)
    products = _unique_ids(items, "item_id", "items.csv", report)
    products.index.name = "product_id"
    if "group_id" not in products:
        products["group_id"] = products.index
    products["title"] = products["title"].where(products["title"] != "", products.index.to_series())
    image = products.pop("image").str.strip()
    _attach_images(products, [root / p if p else None for p in image],
                   "items.csv image column", report)
    products["sentence"] = product_sentences(products)

    it_path = root / "interactions.csv"
    if it_path.is_file():
        it = _read_csv(it_path, report, ["user_id", "item_id"], ["timestamp"], fix)
        purchases = _purchases(it, {"customer_id": "user_id", "product_id": "item_id", "timestamp": "timestamp",
                                    "price": "price"}, products, it_path.name, report)
    else:
        purchases = _purchases(pd.DataFrame(columns=["user_id", "item_id"]),
                               {"customer_id": "user_id", "product_id": "item_id"}, products, it_path.name, report)
    us_path = root / "users.csv"
    users = _read_csv(us_path, report, ["user_id"], [], fix) if us_path.is_file() else None
    customers = _customers(users, "user_id", purchases, us_path.name, report)
    return Catalog(f"{root.name}", str(root), products, customers, purchases, report)


def default_catalog_spec() -> str:
    """``$ATELIER_CATALOG``, else ../shared/data/hm if it exists, else the synthetic catalogue."""
    env = os.environ.get(CATALOG_ENV, "").strip()
    if env:
        return env
    return str(DEFAULT_HM_DIR) if (DEFAULT_HM_DIR / "articles.csv").is_file() else "synthetic"


def load_catalog(spec: str | Path | None = None, limit: int | None = None,
                 synthetic_dir: Path | None = None) -> Catalog:
    """Load a catalogue by spec: a directory (H&M or generic layout, told apart by their files),
    or ``synthetic[:n_products[:seed]]``. ``None`` means :func:`default_catalog_spec`.
    ``synthetic_dir`` is where generated photos are written (default: the artefact cache)."""
    spec = str(spec) if spec is not None else default_catalog_spec()
    if spec == "synthetic" or spec.startswith("synthetic:"):
        from core import synthetic
        from core.cache import cache_root
        parts = spec.split(":")
        try:
            if len(parts) > 3:
                raise ValueError
            n = int(parts[1]) if len(parts) > 1 and parts[1] else synthetic.DEFAULT_N
            seed = int(parts[2]) if len(parts) > 2 else 0
            if n < 1 or seed < 0:
                raise ValueError
        except ValueError:
            raise CatalogError(f"'{spec}': expected synthetic[:n_products[:seed]] with n_products >= 1 and "
                               "seed >= 0, e.g. synthetic:200:0") from None
        directory = synthetic_dir or cache_root() / "synthetic" / f"{n}-{seed}"
        return synthetic.make_catalog(n, seed=seed, image_dir=directory).head(limit)
    root = Path(spec).expanduser()
    if not root.is_dir():
        raise CatalogError(f"{root}: no such folder. Fix: pass --catalog DIR (or set {CATALOG_ENV}) to a folder "
                           "with articles.csv (H&M) or items.csv (generic), or 'synthetic'")
    if (root / "articles.csv").is_file():
        return load_hm(root).head(limit)
    if (root / "items.csv").is_file():
        return load_generic(root).head(limit)
    raise CatalogError(f"{root}: neither articles.csv (H&M layout) nor items.csv (generic layout) found. "
                       "Fix: point --catalog at the folder that holds them; see README 'Your own catalogue'")


def filter_products(products: pd.DataFrame, filters: dict[str, list[str]] | None = None,
                    text: str = "") -> pd.DataFrame:
    """Products whose attributes are among the chosen values (an empty choice keeps all) and whose
    id, title or sentence contains every word of ``text`` (case-insensitive)."""
    mask = np.ones(len(products), dtype=bool)
    for col, values in (filters or {}).items():
        if values:
            mask &= products[col].isin(values).to_numpy()
    words = text.lower().split()
    if words:
        haystack = (products.index.to_series() + " " + products["title"] + " " + products["sentence"]).str.lower()
        for w in words:
            mask &= haystack.str.contains(w, regex=False).to_numpy()
    return products[mask]
