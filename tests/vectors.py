"""Hand-made unit vectors for the measure tests: products on a circle whose neighbours are worked out by hand,
and products built from type, colour and pattern directions."""
from __future__ import annotations

import numpy as np

# Eight products on the unit circle; with every angle gap under 180 degrees, the nearer angle is the
# more similar product. Products 0/1 and 6/7 are colour variants (one group each).
ANGLES = np.array([0, 10, 25, 45, 70, 100, 140, 150])


GROUPS = np.array(["g1", "g1", "g2", "g3", "g4", "g5", "g6", "g6"])


TYPES = np.array(["Top"] * 6 + ["Dress"] * 2)


COLOURS = np.array(["Black", "White", "Black", "Black", "White", "White", "Black", "White"])


PATTERNS = np.array(["Stripe", "Stripe", "Solid", "Stripe", "Solid", "Check", "Solid", "Solid"])


# Strata: Top|Black = {0, 2, 3}, Top|White = {1, 4, 5}, Dress|Black = {6}, Dress|White = {7}.
# Two nearest products outside the own group, by angle gap:
NEAREST_2 = np.array([[2, 3], [2, 3], [1, 3], [2, 4], [3, 5], [4, 6], [5, 4], [5, 4]])


def circle(angles: np.ndarray) -> np.ndarray:
    rad = np.deg2rad(angles)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def cos(degrees: float) -> float:
    return float(np.cos(np.deg2rad(degrees)))


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(n: int = 300, pattern_weight: float = 1.5, seed: int = 0):
    """n products of 3 types x 4 colours x 3 patterns; a group is one type and pattern in 1-3 colours.
    Vectors = type + colour + ``pattern_weight`` x pattern direction + noise, unit rows (d = 32).
    Returns vectors, patterns, groups, types, colours and the unit pattern directions (3, d)."""
    rng = np.random.default_rng(seed)
    names = {"type": ["Top", "Dress", "Trousers"], "colour": ["Black", "White", "Red", "Blue"],
             "pattern": ["Solid", "Stripe", "Check"]}
    rows = []
    g = 0
    while len(rows) < n:
        t, p = rng.integers(3), rng.integers(3)
        for c in rng.choice(4, size=rng.integers(1, 4), replace=False):
            rows.append((t, c, p, f"g{g}"))
        g += 1
    t, c, p, groups = (np.array(x) for x in zip(*rows[:n]))
    d = 32
    direction = {k: unit(rng.standard_normal((len(v), d))) for k, v in names.items()}
    x = (2.0 * direction["type"][t] + 1.5 * direction["colour"][c] + pattern_weight * direction["pattern"][p]
         + 0.08 * rng.standard_normal((n, d)))
    return (unit(x), np.array(names["pattern"])[p], groups, np.array(names["type"])[t],
            np.array(names["colour"])[c], direction["pattern"])


def blobs(n_per: int = 100, k: int = 3, d: int = 32, spread: float = 0.05, seed: int = 0):
    """k well-separated unit-norm blobs: vectors (k * n_per, d) and their true labels."""
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[:k]
    truth = np.repeat(np.arange(k), n_per)
    x = centres[truth] + spread * rng.standard_normal((len(truth), d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), truth
