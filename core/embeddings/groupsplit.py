"""The group-wise split of products into train, validation and test: colour variants never straddle two parts.
Every held-out measurement and every choice made on held-out products draws its parts here."""
from __future__ import annotations

import numpy as np

SPLITS = ("train", "validation", "test")


def held_out_split(groups: np.ndarray, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                   seed: int = 0) -> np.ndarray:
    """(n,) str array of "train" / "validation" / "test": a seeded split of the distinct groups in
    the given proportions (of groups, not rows), so colour variants never straddle two parts."""
    unique, inverse = np.unique(groups, return_inverse=True)
    position = np.random.default_rng(seed).permutation(len(unique))  # each group's place in a shuffled order
    share = np.asarray(fractions, dtype=np.float64) / np.sum(fractions)
    ends = np.round(np.cumsum(share) * len(unique)).astype(int)
    part = np.searchsorted(ends, position, side="right")  # place -> part 0, 1 or 2
    return np.asarray(SPLITS)[part][inverse.ravel()]


def some_groups(groups: np.ndarray, rows: np.ndarray, most: int, seed: int = 0) -> np.ndarray:
    """(n,) bool: ``rows`` ((n,) bool) where they hold at most ``most`` products (0: no limit), else whole groups of
    them drawn at random (``seed``) while they fit in ``most`` (the first one drawn even if it alone does not), so a
    product's colour variants come with it (the held-out measurements leave a product's own group out of its
    neighbours)."""
    rows = np.asarray(rows, dtype=bool)
    if not 0 < most < rows.sum():
        return rows
    unique, inverse, counts = np.unique(np.asarray(groups)[rows], return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    taken = np.zeros(len(unique), dtype=bool)
    taken[order[np.cumsum(counts[order]) <= most]] = True
    taken[order[0]] = True
    out = np.zeros_like(rows)
    out[np.flatnonzero(rows)[taken[inverse.ravel()]]] = True
    return out
