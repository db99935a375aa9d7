"""Shops' standard exports (Shopify, WooCommerce, Google Merchant Center): told apart by their headers, read
into Atelier's schema. Each platform's own reading is its module (:mod:`core.data.shopify`,
:mod:`core.data.woocommerce`, :mod:`core.data.merchant`); this one finds the files, names the format and
finishes the products alike (HTML descriptions as text, photos by path or by URL, sentences)."""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.catalog import Catalog, CatalogError, ValidationReport, product_sentences
from core.data.csvread import header_separator
from core.data.htmltext import html_to_text
from core.data.merchant import ATTRIBUTES, merchant_products
from core.data.photofetch import PhotoFetcher
from core.data.rows import attach_images, customer_rows, purchase_rows
from core.data.shopify import MAPPING as SHOPIFY_MAPPING, ORDER_MAPPING, shopify_orders, shopify_products
from core.data.woocommerce import MAPPING as WOOCOMMERCE_MAPPING, woocommerce_products
from core.progress import Progress

EXPORT_GUIDE = "see the README section 'Shop exports'"
URL = re.compile(r"^https?://", re.IGNORECASE)
# What an export's files hold, by format name (``--format``): products, or purchases of them (orders).
PRODUCT_FORMATS = ("shopify", "woocommerce", "merchant")
ORDER_FORMATS = ("shopify-orders",)
FORMATS = PRODUCT_FORMATS + ORDER_FORMATS
# The columns that name each format: every one of them in the header (case-insensitive). The first match wins.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "shopify-orders": ("name", "created at", "lineitem name", "lineitem quantity"),
    "shopify": ("handle", "title", "body (html)"),
    "woocommerce": ("id", "type", "sku", "name", "parent"),
    "merchant": ("id", "title", "image_link"),
}
EXPORT_SUFFIXES = (".csv", ".tsv", ".txt", ".xml")
# Each products format's reader (path, report, include_drafts) -> products, and what becomes what, for people.
READERS = {"shopify": shopify_products, "woocommerce": woocommerce_products, "merchant": merchant_products}
MAPPINGS = {"shopify": SHOPIFY_MAPPING, "shopify-orders": ORDER_MAPPING, "woocommerce": WOOCOMMERCE_MAPPING,
            "merchant": {field: "the photo" if column == "image" else column for field, column in ATTRIBUTES.items()}}
DRAFTS = "+drafts"  # a spec's format tail keeping unpublished products: "shopify+drafts:products.csv"


def parse_spec(spec: str) -> tuple[str | None, bool, str]:
    """A catalogue spec's format, whether it keeps drafts, and its path: "merchant:/data/feed.csv" names the
    format as ``--format`` does, "shopify+drafts:<path>" keeps unpublished products too; any other spec is
    (None, False, spec)."""
    head, sep, rest = spec.partition(":")
    fmt = head.removesuffix(DRAFTS)
    if sep and fmt in FORMATS and rest:
        return fmt, head.endswith(DRAFTS), rest
    return None, False, spec


def make_spec(path: str, fmt: str | None, include_drafts: bool) -> str:
    """The spec :func:`parse_spec` reads back as ``path`` read as ``fmt`` (None: told from its header)."""
    if fmt is None and not include_drafts:
        return path
    if fmt is None:  # drafts kept, the format as read: a file's header, or a folder's products file
        found = read_as(path)
        fmt = found[0] if found else "merchant"
    return f"{fmt}{DRAFTS if include_drafts else ''}:{path}"


def mapping(fmt: str) -> dict[str, str]:
    """What each export field becomes in Atelier, for people: field -> column."""
    return MAPPINGS[fmt]


def read_as(spec: str) -> tuple[str, bool, str] | None:
    """How a spec is read when it is a shop's export: (its products' format, drafts kept, the path), else None
    (another layout, or nothing readable there: the loader says why)."""
    fmt, drafts, path = parse_spec(spec)
    if fmt is not None:
        return fmt, drafts, path
    where = Path(path).expanduser()
    if not (where.is_file() or (where.is_dir() and not (where / "articles.csv").is_file()
                                and not (where / "items.csv").is_file())):
        return None
    try:
        found = [e.format for e in export_files(where) if e.format in PRODUCT_FORMATS]
    except (CatalogError, OSError):
        return None
    return (found[0], False, path) if found else None


@dataclass(frozen=True)
class ExportFile:
    """One file of a shop's export and the format it was read as."""
    path: Path
    format: str


def _header(path: Path) -> set[str] | None:
    """The lower-cased column names of a delimited file's first line, or None for an XML feed."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff").lstrip()
    if text.startswith("<"):
        return None
    sep = header_separator(head.removeprefix(b"\xef\xbb\xbf"))
    line = text.split("\n", 1)[0]
    return {c.strip().strip('"').strip().lower() for c in line.split(sep)}


def detect_format(path: Path) -> str | None:
    """The export format of one file, from its header (an XML file is a Merchant Center feed when its root is
    an RSS or Atom feed), or None."""
    header = _header(path)
    if header is None:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", errors="replace")
        return "merchant" if re.search(r"<(rss|feed)\b", head) else None
    return next((fmt for fmt, cols in SIGNATURES.items() if set(cols) <= header), None)


def export_files(spec: Path, fmt: str | None = None) -> list[ExportFile]:
    """The export files of ``spec`` (a file, or a folder holding them) with their formats: ``fmt`` names a
    lone file's format instead of its header. [] when a folder holds none (it may be another layout)."""
    if fmt is not None and fmt not in FORMATS:
        raise CatalogError(f"unknown format '{fmt}'; the formats are: {', '.join(FORMATS)}")
    if spec.is_file():
        found = fmt or detect_format(spec)
        if found is None:
            raise CatalogError(f"{spec}: not an export Atelier knows (its header matches none of "
                               f"{', '.join(FORMATS)}). Fix: name the format with --format; {EXPORT_GUIDE}")
        return [ExportFile(spec, found)]
    files = [p for p in sorted(spec.iterdir()) if p.is_file() and p.suffix.lower() in EXPORT_SUFFIXES]
    out = [ExportFile(p, f) for p in files if (f := detect_format(p)) is not None]
    if fmt is not None:
        out = [e for e in out if e.format == fmt or (fmt == "shopify" and e.format == "shopify-orders")]
    return out


def is_url(text: str) -> bool:
    return bool(URL.match(text.strip()))


def finish_products(products: pd.DataFrame, images: list[str], root: Path, file: str,
                    report: ValidationReport, fetcher: PhotoFetcher | None = None,
                    progress: Progress | None = None) -> pd.DataFrame:
    """The last steps every export's products take: descriptions from HTML to text, titles defaulting to the id,
    photos (``image_path``) read beside the export when given as a path, fetched by ``fetcher`` into the cache
    when given as a web address (kept in ``image_url``; without a fetcher, not fetched and said so), sentences.
    Every photo that cannot be had is reported by cause, the product kept without it."""
    fixed = {"title", "description", "group_id"}
    products = products[[c for c in products if c in fixed or (products[c].astype(str).str.strip() != "").any()]]
    products = products.copy()  # an attribute no product has is left out
    products.index.name = "product_id"
    products["description"] = [html_to_text(d) for d in products["description"]]
    products["title"] = [" ".join(html.unescape(t).split()) or pid for t, pid in zip(products["title"], products.index)]
    images = [i.strip() for i in images]
    urls = [i if is_url(i) else "" for i in images]
    web = np.array([bool(u) for u in urls], dtype=bool)
    none = np.array([not i for i in images], dtype=bool)
    report.add(file, "products without a photo", products.index[none].tolist(), "kept without a photo")
    inside = np.array([bool(i) and not w and (root / i).resolve().is_relative_to(root.resolve())
                       for i, w in zip(images, web)], dtype=bool)
    outside = ~web & ~none & ~inside
    report.add(file, "photo paths outside the export's folder", [f"{p} ({i})" for p, i, o in
                                                                  zip(products.index, images, outside) if o],
               "not read; product kept without a photo")
    local = products.loc[inside].copy()  # photos named by path, in the export's folder
    attach_images(local, [root / i for i, k in zip(images, inside) if k], f"{file} photos", report)
    products["image_path"] = ""
    products.loc[local.index, "image_path"] = local["image_path"]
    if web.any():
        products["image_url"] = urls
        at_urls = products.index[web]
        if fetcher is None:
            report.add(file, "photos at web addresses not fetched (fetching off)", [u for u in urls if u],
                       "product kept without a photo", count=int(web.sum()))
        else:
            got = fetcher.fetch([u for u in urls if u], progress)
            products.loc[at_urls, "image_path"] = [f.path for f in got]
            for cause in sorted({f.cause for f in got if f.cause}):
                failed = [f"{pid} ({f.url}: {f.detail})" for pid, f in zip(at_urls, got) if f.cause == cause]
                report.add(file, f"photos by URL: {cause}", failed, "product kept without a photo")
    products["sentence"] = product_sentences(products)
    return products


def unique_product_ids(products: pd.DataFrame, file: str, report: ValidationReport) -> pd.DataFrame:
    """``products`` with every id once: a repeated id (two colours that read alike, "Black" and "black", or a
    handle ``tee`` in red beside a handle ``tee-red``) gets ``-2``, ``-3``... after the first, reported."""
    ids = products.index.astype(str).tolist()
    seen, out, renamed = set(ids), [], []
    counts: dict[str, int] = {}
    for pid in ids:
        counts[pid] = counts.get(pid, 0) + 1
        if counts[pid] == 1:
            out.append(pid)
            continue
        n = counts[pid]
        while f"{pid}-{n}" in seen:
            n += 1
        seen.add(f"{pid}-{n}")
        out.append(f"{pid}-{n}")
        renamed.append(f"{pid} -> {pid}-{n}")
    report.add(file, "products whose ids came out alike", renamed, "renamed")
    products = products.copy()
    products.index = pd.Index(out, name="product_id")
    return products


def load_export(spec: str | Path, fmt: str | None = None, include_drafts: bool = False,
                fetcher: PhotoFetcher | None = None, progress: Progress | None = None,
                limit: int | None = None) -> Catalog:
    """A catalogue from a shop's export: one products file (Shopify, WooCommerce or Merchant Center) and, for
    Shopify, an orders file as its purchases. ``spec`` is the file or a folder holding the files;
    ``include_drafts`` keeps the products the shop has not published (reported either way); ``fetcher`` fetches
    photos given as web addresses (None: they are not fetched); ``limit`` keeps the first products only."""
    spec = Path(spec).expanduser().resolve()
    files = export_files(spec, fmt)
    product_files = [e for e in files if e.format in PRODUCT_FORMATS]
    if not product_files:
        raise CatalogError(f"{spec}: no products file of a shop export found (only "
                           f"{', '.join(e.path.name for e in files) or 'other files'}). Fix: export the products "
                           f"too and put them beside it; {EXPORT_GUIDE}")
    if len(product_files) > 1:
        raise CatalogError(f"{spec}: more than one products file ({', '.join(e.path.name for e in product_files)}). "
                           f"Fix: point --catalog at one of them, or keep one per folder; {EXPORT_GUIDE}")
    main = product_files[0]
    report = ValidationReport()
    raw = unique_product_ids(READERS[main.format](main.path, report, include_drafts), main.path.name, report)
    limited = limit is not None and limit < len(raw)
    if limited:
        raw = raw.iloc[:limit]  # before the photos are fetched: --limit 100 fetches 100
    images = raw.pop("image").tolist()
    skus = raw.pop("skus") if "skus" in raw else None
    products = finish_products(raw, images, main.path.parent, main.path.name, report, fetcher, progress)
    orders = [e for e in files if e.format in ORDER_FORMATS]
    if orders:
        rows = pd.concat([shopify_orders(e.path, report) for e in orders], ignore_index=True)
        rows["product_id"] = match_products(rows, products, skus, report, orders[0].path.name)
        if limited:  # as Catalog.head: the purchases of the products kept
            rows = rows[rows["product_id"].isin(products.index)]
        purchases = purchase_rows(rows, {"customer_id": "customer_id", "product_id": "product_id",
                                         "timestamp": "timestamp", "price": "price"}, products,
                                  orders[0].path.name, report)
    else:
        purchases = purchase_rows(pd.DataFrame(columns=["customer_id", "product_id"]),
                                  {"customer_id": "customer_id", "product_id": "product_id"}, products,
                                  "orders", report)
    customers = customer_rows(None, "customer_id", purchases, "orders", report)
    name = main.path.stem if spec.is_file() else spec.name
    return Catalog(f"{name} ({main.format})" + (f" (first {limit})" if limited else ""), str(spec), products,
                   customers, purchases, report)


def match_products(rows: pd.DataFrame, products: pd.DataFrame, skus: pd.Series | None, report: ValidationReport,
                   file: str) -> list[str]:
    """Each order line's product id: by its SKU where a variant has it, else by its line name ("Title - Colour /
    Size" or the title alone) against the products' titles and colours; the line's own text where neither
    matches (reported as purchases of unknown products)."""
    by_sku = {}
    if skus is not None:
        for pid, text in skus.items():
            for sku in filter(None, text.split("\n")):
                by_sku.setdefault(sku, pid)
    by_name = {}
    colours = products["colour"] if "colour" in products else pd.Series("", index=products.index)
    for pid, title, colour in zip(products.index, products["title"], colours):
        by_name.setdefault(title.casefold(), pid)
        if colour:
            by_name.setdefault(f"{title} - {colour}".casefold(), pid)
    out, by_line_name = [], 0
    for sku, line in zip(rows["sku"], rows["name"]):
        if sku and sku in by_sku:
            out.append(by_sku[sku])
            continue
        key = line.casefold()
        pid = by_name.get(key)
        if pid is None and " - " in key:  # "Title - M / Red": whichever option is a colour decides the product
            title, _, options = key.rpartition(" - ")
            pid = next((by_name[f"{title} - {o}"] for o in options.split(" / ") if f"{title} - {o}" in by_name),
                       by_name.get(title))
        by_line_name += pid is not None
        out.append(pid if pid is not None else (sku or line))
    report.add(file, "order lines matched by name, not SKU", [], "matched", count=by_line_name)
    return out

