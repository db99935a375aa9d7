"""Before / after gains of the texture-aware embedding, on a build whose two photo spaces have known neighbours."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data.catalog import ValidationReport
from core.embeddings.index import IndexConfig, VectorIndex, neighbour_table
from core.embeddings.pipeline import BuildConfig, BuildStats, Built, Embeddings
from core.explore.texture import before_after_gains, same_label_counts


def test_same_label_counts_by_hand():
    rows = np.array([[1, 2], [0, -1], [1, 0]])
    labels = np.array(["a", "a", "b"])
    assert same_label_counts(rows, labels).tolist() == [1, 1, 0]  # -1 (no neighbour) never counts


@pytest.fixture
def two_spaces(synthetic_catalog):
    """The 60 synthetic products with two photo spaces: "image" ignores the pattern (random directions),
    "texture" separates the patterns (one axis each, a little noise). Two products have no photo."""
    products = synthetic_catalog.products
    ids = products.index.to_numpy(str)
    rng = np.random.default_rng(0)
    codes, _ = pd.factorize(products["pattern"])

    def normalised(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    image = normalised(rng.standard_normal((len(ids), 16)))
    texture = normalised(np.eye(16)[codes] + 0.05 * rng.standard_normal((len(ids), 16)))
    has = np.ones(len(ids), bool)
    has[[5, 17]] = False
    emb = Embeddings(ids, image, image, has, texture)
    indexes = {kind: VectorIndex(vectors[has], ids[has], IndexConfig()) for kind, vectors in
               (("image", image), ("texture", texture))}
    tables = {kind: neighbour_table(indexes[kind], vectors[has], 20) for kind, vectors in
              (("image", image), ("texture", texture))}
    return Built(synthetic_catalog, None, BuildConfig(), emb, indexes, tables, BuildStats(), ValidationReport())


def test_gains_are_the_neighbours_the_page_shows(two_spaces):
    built, k = two_spaces, 6
    gains = before_after_gains(built, "pattern", k)
    products = built.catalog.products
    assert len(gains) == 58 and not {products.index[5], products.index[17]} & set(gains["product_id"])
    for row in gains.itertuples():
        own = products.at[row.product_id, "pattern"]
        for kind, count in (("image", row.before), ("texture", row.after)):
            near = built.neighbours(row.product_id, kind, k)["product_id"]
            assert count == (products.loc[near, "pattern"] == own).sum()
        assert row.gain == row.after - row.before and row.label == own
    # the texture space separates the patterns: every neighbour shares it where the class is large enough
    sizes = products["pattern"].value_counts()
    big = gains["label"].map(sizes) > k + 2
    assert (gains.loc[big, "after"] == k).all() and gains["gain"].mean() > 0
    assert gains["gain"].is_monotonic_decreasing  # the largest gain first
    assert (gains["gain"] < 0).sum() == (gains["after"] < gains["before"]).sum()


def test_gains_refuse_more_neighbours_than_tabulated(two_spaces):
    with pytest.raises(ValueError, match="20 neighbours"):
        before_after_gains(two_spaces, "pattern", 21)
