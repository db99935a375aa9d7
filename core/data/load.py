"""Loading a catalogue by its spec: a folder in the H&M or the generic layout, or a synthetic catalogue."""
from __future__ import annotations

import os
from pathlib import Path

from core.config import PROJECT_ROOT, cache_root
from core.data import synthetic
from core.data.catalog import Catalog, CatalogError
from core.data.exports import export_files, load_export, parse_spec
from core.data.generic import load_generic
from core.data.hm import load_hm
from core.data.photofetch import PhotoFetcher
from core.progress import Progress

DEFAULT_HM_DIR = PROJECT_ROOT.parent / "shared" / "data" / "hm"
CATALOG_ENV = "ATELIER_CATALOG"


def default_catalog_spec() -> str:
    """``$ATELIER_CATALOG``, else ../shared/data/hm if it exists, else the synthetic catalogue."""
    env = os.environ.get(CATALOG_ENV, "").strip()
    if env:
        return env
    return str(DEFAULT_HM_DIR) if (DEFAULT_HM_DIR / "articles.csv").is_file() else "synthetic"


def load_catalog(spec: str | Path | None = None, limit: int | None = None,
                 synthetic_dir: Path | None = None, columns: dict[str, str] | None = None,
                 fmt: str | None = None, include_drafts: bool = False, fetch_photos: bool = True,
                 progress: Progress | None = None) -> Catalog:
    """Load a catalogue by spec: a directory (H&M or generic layout, told apart by their files, or a shop's
    export files), a shop's export file itself (Shopify, WooCommerce, Merchant Center: :mod:`core.data.exports`),
    or ``synthetic[:n_products[:seed]]``. ``None`` means :func:`default_catalog_spec`.
    ``synthetic_dir`` is where generated photos are written (default: the artefact cache);
    ``columns`` maps a generic catalogue's columns to roles (see :func:`load_generic`); ``fmt`` names an
    export's format instead of its header; ``include_drafts`` keeps an export's unpublished products;
    ``fetch_photos`` fetches an export's photos given as web addresses into the artefact cache (only what
    changed since the last time: :mod:`core.data.photofetch`), with ``progress``."""
    spec = str(spec) if spec is not None else default_catalog_spec()
    synthetic_spec = spec == "synthetic" or spec.startswith("synthetic:")
    if columns is not None and (synthetic_spec or (Path(spec).expanduser() / "articles.csv").is_file()):
        raise CatalogError(f"'{spec}': columns= maps the columns of a generic catalogue (items.csv); this one's "
                           "columns are fixed. Fix: drop columns=")
    if synthetic_spec:
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
    named, drafts, path = parse_spec(spec)
    if named is not None:  # "merchant:<path>", "shopify+drafts:<path>": the format named in the spec
        fmt, include_drafts, spec = fmt or named, include_drafts or drafts, path
    root = Path(spec).expanduser()
    if root.is_file() or fmt is not None:
        return load_export(root, fmt, include_drafts, PhotoFetcher() if fetch_photos else None, progress, limit)
    if not root.is_dir():
        raise CatalogError(f"{root}: no such file or folder. Fix: pass --catalog (or set {CATALOG_ENV}) to a folder "
                           "with articles.csv (H&M) or items.csv (generic), a shop's export file, or 'synthetic'")
    if (root / "articles.csv").is_file():
        return load_hm(root).head(limit)
    if (root / "items.csv").is_file():
        return load_generic(root, columns).head(limit)
    if export_files(root):
        return load_export(root, None, include_drafts, PhotoFetcher() if fetch_photos else None, progress, limit)
    raise CatalogError(f"{root}: neither articles.csv (H&M layout), items.csv (generic layout) nor a shop's "
                       "export (Shopify, WooCommerce, Merchant Center) found. Fix: point --catalog at the folder "
                       "that holds them, or at the export file; see README 'Your own catalogue'")

