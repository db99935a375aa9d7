"""Synthetic catalogue: generated product photos with known ground truth, and simulated customers."""
from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from core.cache import write_atomic
from core.data.catalog import Catalog, ValidationReport, product_sentences

DEFAULT_N = 200
IMAGE_SIZE = (128, 192)  # (width, height): 2:3 portrait, like a shop photo
# Bump when drawing changes, so photos cached by an older version are redrawn.
DRAWING_VERSION = 1
MARKER_NAME = "synthetic.json"

# Garment outlines as polygons in unit coordinates: (x, y), x right, y down, both in [0, 1].
OUTLINES: dict[str, tuple[tuple[float, float], ...]] = {
    "t-shirt": ((0.36, 0.14), (0.44, 0.14), (0.50, 0.19), (0.56, 0.14), (0.64, 0.14), (0.90, 0.27),
                (0.82, 0.41), (0.74, 0.36), (0.74, 0.86), (0.26, 0.86), (0.26, 0.36), (0.18, 0.41),
                (0.10, 0.27)),
    "dress": ((0.40, 0.08), (0.46, 0.08), (0.50, 0.14), (0.54, 0.08), (0.60, 0.08), (0.66, 0.20),
              (0.63, 0.38), (0.84, 0.92), (0.16, 0.92), (0.37, 0.38), (0.34, 0.20)),
    "trousers": ((0.30, 0.08), (0.70, 0.08), (0.76, 0.92), (0.57, 0.92), (0.50, 0.34), (0.43, 0.92),
                 (0.24, 0.92)),
    "skirt": ((0.32, 0.22), (0.68, 0.22), (0.84, 0.78), (0.16, 0.78)),
    "jacket": ((0.36, 0.10), (0.50, 0.38), (0.64, 0.10), (0.76, 0.14), (0.88, 0.30), (0.94, 0.80),
               (0.84, 0.81), (0.78, 0.42), (0.76, 0.88), (0.24, 0.88), (0.22, 0.42), (0.16, 0.81),
               (0.06, 0.80), (0.12, 0.30), (0.24, 0.14)),
}
SILHOUETTES = tuple(OUTLINES)
# No white: the photos are on a white background.
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (30, 30, 30),
    "red": (200, 35, 45),
    "blue": (45, 100, 205),
    "green": (40, 140, 70),
    "yellow": (235, 195, 40),
    "navy": (25, 35, 95),
}
PATTERNS = ("solid", "stripe", "check", "dot")
PATTERN_DESCRIPTIONS = {
    "solid": "in one flat colour",
    "stripe": "with horizontal stripes",
    "check": "in a gingham check",
    "dot": "with a polka-dot print",
}
PATTERN_TITLES = {"solid": "plain", "stripe": "striped", "check": "checked", "dot": "dotted"}
BASE_PRICES = {"t-shirt": 12.99, "dress": 34.99, "trousers": 29.99, "skirt": 24.99, "jacket": 59.99}
SECTION = "Simulated womenswear"
INDEX_GROUP = "Synthetic"

LIGHT_MIX = 0.8  # the light ground of stripe/check/dot: 80% white, 20% the garment colour
TASTE_SHARE = 0.8  # share of a simulated customer's purchases that follow their hidden taste
PURCHASES_PER_CUSTOMER = (3, 12)  # inclusive range
PURCHASE_START = np.datetime64("2020-01-01T00:00:00", "s")
PURCHASE_END = np.datetime64("2020-07-01T00:00:00", "s")  # exclusive: purchases fall in 2020-01-01..06-30


# ---------------------------------------------------------------- drawing

@functools.lru_cache(maxsize=64)
def garment_mask(silhouette: str, size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """Where the garment is: ``(height, width)`` bool, read-only. No randomness, so tests know it exactly."""
    if silhouette not in OUTLINES:
        raise ValueError(f"unknown silhouette {silhouette!r}; expected one of {SILHOUETTES}")
    width, height = size
    canvas = Image.new("L", size, 0)
    points = [(x * (width - 1), y * (height - 1)) for x, y in OUTLINES[silhouette]]
    ImageDraw.Draw(canvas).polygon(points, fill=255)
    mask = np.asarray(canvas) > 0
    mask.setflags(write=False)
    return mask


def _pattern_amount(pattern: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """How much garment colour each pixel takes: ``(height, width)`` float32, 1 = full colour,
    0 = the light ground. Period and phase are jittered by ``rng``."""
    yy = np.arange(height)[:, None]
    xx = np.arange(width)[None, :]
    if pattern == "solid":
        return np.ones((height, width), np.float32)
    if pattern == "stripe":
        period = int(rng.integers(12, 21))
        band = (yy + rng.integers(period)) % period < period // 2
        return np.broadcast_to(band, (height, width)).astype(np.float32)
    if pattern == "check":
        period = int(rng.integers(14, 23))
        rows = (yy + rng.integers(period)) % period < period // 2
        cols = (xx + rng.integers(period)) % period < period // 2
        # gingham: both bands full colour, one band half, neither the light ground
        return (rows.astype(np.float32) + cols.astype(np.float32)) / 2
    if pattern == "dot":
        spacing = int(rng.integers(13, 19))
        radius = rng.uniform(0.2, 0.28) * spacing
        y = yy + rng.integers(spacing)
        x = xx + rng.integers(spacing) + (y // spacing % 2) * (spacing // 2)  # staggered rows
        dy = y % spacing - spacing / 2
        dx = x % spacing - spacing / 2
        return (dx * dx + dy * dy <= radius * radius).astype(np.float32)
    raise ValueError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}")


def draw_product(silhouette: str, colour: tuple[int, int, int], pattern: str, rng: np.random.Generator,
                 size: tuple[int, int] = IMAGE_SIZE) -> Image.Image:
    """A product photo: the garment ``silhouette`` filled with ``pattern`` in ``colour`` on white.

    ``size`` is ``(width, height)``; the result is an RGB image of that size. ``rng`` jitters the
    colour slightly and the pattern's period and phase; the garment outline is fixed
    (:func:`garment_mask`).
    """
    width, height = size
    mask = garment_mask(silhouette, size)
    rgb = np.clip(np.asarray(colour, np.float32) + rng.integers(-8, 9, 3), 0, 255)
    light = LIGHT_MIX * 255 + (1 - LIGHT_MIX) * rgb
    amount = _pattern_amount(pattern, height, width, rng)[..., None]
    garment = light + amount * (rgb - light)  # (height, width, 3)
    pixels = np.where(mask[..., None], garment, np.float32(255))
    return Image.fromarray(np.rint(pixels).astype(np.uint8), "RGB")


# ---------------------------------------------------------------- files

def _marker(n_products: int, seed: int) -> dict:
    return {"version": DRAWING_VERSION, "n_products": n_products, "seed": seed}


def _read_marker(image_dir: Path) -> dict | None:
    try:
        return json.loads((image_dir / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


def _write_images(products: pd.DataFrame, paths: list[Path], seed: int, image_dir: Path) -> None:
    """Draw the photos that ``image_dir`` lacks. A folder whose marker names the same
    (version, n, seed) keeps its files; any other folder is redrawn in full, marker last."""
    image_dir.mkdir(parents=True, exist_ok=True)
    marker = _marker(len(products), seed)
    complete = _read_marker(image_dir) == marker
    if not complete:
        (image_dir / MARKER_NAME).unlink(missing_ok=True)
    # one stream per product, so any one photo can be redrawn alone and comes out the same
    streams = np.random.SeedSequence(seed).spawn(3)[2].spawn(len(products))
    for path, stream, (silhouette, colour, pattern) in zip(
            paths, streams, products[["product_type", "colour", "pattern"]].itertuples(index=False)):
        if complete and path.is_file() and path.stat().st_size > 0:
            continue
        image = draw_product(silhouette, COLOURS[colour], pattern, np.random.default_rng(stream))
        write_atomic(path, lambda f, image=image: image.save(f, format="PNG"))
    if not complete:
        write_atomic(image_dir / MARKER_NAME, lambda f: f.write(json.dumps(marker).encode()))


# ---------------------------------------------------------------- catalogue

def _product_frame(n_products: int, rng: np.random.Generator) -> pd.DataFrame:
    """Products cycling over every (silhouette, colour, pattern) in a fresh shuffled order each
    cycle, so all combinations appear once ``n_products >= len(combinations)``."""
    combos = list(itertools.product(SILHOUETTES, COLOURS, PATTERNS))
    order = np.concatenate([rng.permutation(len(combos)) for _ in range(-(-n_products // len(combos)))])
    chosen = [combos[i] for i in order[:n_products]]
    ids = [f"syn{i:05d}" for i in range(n_products)]
    products = pd.DataFrame({
        "title": [f"{c.capitalize()} {PATTERN_TITLES[p]} {s}" for s, c, p in chosen],
        "description": [f"A {c} {s} {PATTERN_DESCRIPTIONS[p]}." for s, c, p in chosen],
        "image_path": "",
        "group_id": ids,
        "product_type": [s for s, _, _ in chosen],
        "colour": [c for _, c, _ in chosen],
        "pattern": [p for _, _, p in chosen],
        "section": SECTION,
        "index_group": INDEX_GROUP,
    }, index=pd.Index(ids, name="product_id"))
    return products


def _simulate(products: pd.DataFrame, n_customers: int, rng: np.random.Generator
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customers with a hidden taste (one pattern and one colour) and their purchases.

    A customer buys 3..12 distinct products; each purchase is, with probability
    ``TASTE_SHARE``, a product of exactly their pattern and colour (while any is left
    unbought) and otherwise any product. Tastes are drawn from the (pattern, colour) pairs
    the catalogue has, so every taste can be bought.
    """
    pattern = products["pattern"].to_numpy(dtype=object)
    colour = products["colour"].to_numpy(dtype=object)
    list_price = np.round(products["product_type"].map(BASE_PRICES).to_numpy(float)
                          * rng.uniform(0.8, 1.2, len(products)), 2)
    pairs = sorted(set(zip(pattern, colour)))
    ids = [f"sim-cust-{i:04d}" for i in range(n_customers)]
    tastes = [pairs[i] for i in rng.integers(len(pairs), size=n_customers)]
    buyer, bought = [], []
    for cid, (taste_pattern, taste_colour) in zip(ids, tastes):
        liked = np.flatnonzero((pattern == taste_pattern) & (colour == taste_colour))
        k = min(int(rng.integers(PURCHASES_PER_CUSTOMER[0], PURCHASES_PER_CUSTOMER[1] + 1)), len(products))
        n_liked = min(int((rng.random(k) < TASTE_SHARE).sum()), len(liked))
        picks = rng.choice(liked, n_liked, replace=False)
        rest = np.setdiff1d(np.arange(len(products)), picks)
        picks = np.concatenate([picks, rng.choice(rest, k - n_liked, replace=False)])
        buyer += [cid] * k
        bought += picks.tolist()
    span = int((PURCHASE_END - PURCHASE_START) / np.timedelta64(1, "s"))
    seconds = rng.integers(span, size=len(bought)).astype("timedelta64[s]")
    purchases = pd.DataFrame({
        "customer_id": buyer,
        "product_id": products.index[bought].astype(str),
        "timestamp": (PURCHASE_START + seconds).astype("datetime64[ns]"),
        "price": list_price[bought].astype(float),
    }).sort_values("timestamp", kind="stable").reset_index(drop=True)
    customers = pd.DataFrame({
        "taste_pattern": [p for p, _ in tastes],
        "taste_colour": [c for _, c in tastes],
        "simulated": "yes",
    }, index=pd.Index(ids, name="customer_id"))
    return customers, purchases


def make_catalog(n_products: int = DEFAULT_N, seed: int = 0, *, image_dir: str | Path,
                 n_customers: int | None = None) -> Catalog:
    """A synthetic catalogue, the same for the same ``(n_products, seed)``.

    Products ``syn00000``.. cover every silhouette x colour x pattern once ``n_products`` is at
    least their number (120); their photos are PNGs in ``image_dir``, reused when the folder
    already holds this ``(n_products, seed)``'s set and redrawn where missing.
    ``n_customers`` (default ``max(10, n_products // 2)``) simulated customers
    ``sim-cust-0000``.. buy products that follow a hidden taste, kept in the customers'
    ``taste_pattern`` and ``taste_colour`` columns.
    """
    if n_products < 1:
        raise ValueError(f"n_products must be at least 1, got {n_products}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    n_customers = max(10, n_products // 2) if n_customers is None else n_customers
    product_stream, customer_stream, _ = np.random.SeedSequence(seed).spawn(3)  # the third draws photos

    products = _product_frame(n_products, np.random.default_rng(product_stream))
    image_dir = Path(image_dir).resolve()
    paths = [image_dir / f"{pid}.png" for pid in products.index]
    _write_images(products, paths, seed, image_dir)
    products["image_path"] = [str(p) for p in paths]
    products["sentence"] = product_sentences(products)

    customers, purchases = _simulate(products, n_customers, np.random.default_rng(customer_stream))
    return Catalog(
        name=f"Synthetic catalogue (simulated customers, {n_products} products)",
        source=f"synthetic:{n_products}:{seed}",
        products=products,
        customers=customers,
        purchases=purchases,
        report=ValidationReport(),
        simulated=True,
    )
