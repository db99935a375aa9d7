"""One product's facts on a hand-built catalogue whose answers are known: neighbours with names, typical scores,
purchase counts, the texture-confusion verdict and the cluster looked up without computing a map."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.cache import ArtefactCache
from core.data.catalog import Catalog, ValidationReport, product_sentences
from core.embeddings.index import IndexConfig, VectorIndex, neighbour_table
from core.embeddings.pipeline import KINDS, BuildConfig, BuildStats, Built, Embeddings
from core.explore.cluster import NOISE, ClusterConfig
from core.explore.clustermap import MapConfig, cluster_map
from core.explore.product import (ProductConfig, cluster_place, neighbour_frame, product_facts, purchase_counts,
                                  score_meaning, stored_cluster_map, texture_check, typical_scores)

# Striped tops s0..s3 (s0b: s0 in another colour, same group), plain tops p0..p5, and u0 whose pattern is unknown.
# Photos: s0 sits among the plain tops (a texture confusion); s1..s3 sit apart. Texture-aware: stripes together.
IDS = ["s0", "s0b", "s1", "s2", "s3", "p0", "p1", "p2", "p3", "p4", "p5", "u0"]
PATTERN = ["Stripe"] * 5 + ["Solid"] * 6 + ["Unknown"]
GROUP = ["gs0", "gs0", "gs1", "gs2", "gs3", "gp0", "gp1", "gp2", "gp3", "gp4", "gp5", "gu0"]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def vectors(axis: list[int], seed: int, dim: int = 64) -> np.ndarray:
    """(12, dim): each product near the basis vector ``axis[i]``, with a little noise so ranks are strict."""
    rng = np.random.default_rng(seed)
    return unit(np.eye(dim)[axis] + 0.05 * rng.standard_normal((len(axis), dim)))


@pytest.fixture(scope="module")
def built(tiny_backbone) -> Built:
    products = pd.DataFrame({
        "title": [f"Top {i}" for i in IDS], "description": "", "group_id": GROUP,
        "product_type": "T-shirt", "colour": ["Black"] * 11 + ["White"], "pattern": PATTERN,
        "section": "Womens", "image_path": ""}, index=pd.Index(IDS, name="product_id"))
    products["sentence"] = product_sentences(products)
    days = pd.to_datetime(["2020-01-01", "2020-06-01", "2020-06-10", "2020-06-30", "2020-06-30"])
    purchases = pd.DataFrame({"customer_id": ["c1", "c1", "c2", "c2", "c3"],
                              "product_id": ["s0", "s0", "s0", "p0", "s0"], "timestamp": days, "price": 0.01})
    catalog = Catalog("hand-made", "test", products, pd.DataFrame(index=pd.Index(["c1", "c2", "c3"],
                                                                                  name="customer_id")), purchases)
    assert tiny_backbone.dim == 64  # the cluster names' prompts are in the backbone's space
    image = vectors([0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 2], seed=0)  # s0 (and its variant) among the plain tops
    texture = vectors([3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 5], seed=1)  # stripes together
    image[1], texture[1] = unit(image[:1] + 0.01)[0], unit(texture[:1] + 0.01)[0]  # s0b: s0's photo, recoloured
    ids = np.array(IDS)
    emb = Embeddings(ids, image, image.copy(), np.ones(len(IDS), bool), texture)
    indexes, tables = {}, {}
    for kind in KINDS:
        matrix, kind_ids = emb.matrix(kind, 0.4)
        indexes[kind] = VectorIndex(matrix, kind_ids, IndexConfig())
        tables[kind] = neighbour_table(indexes[kind], matrix, 50)
    return Built(catalog, tiny_backbone, BuildConfig(), emb, indexes, tables, BuildStats(), ValidationReport())


def test_neighbour_frame_names_each_neighbour(built):
    frame = neighbour_frame(built, "s0", "image", 3)
    assert frame["product_id"].tolist()[0] == "s0b"  # its colour variant is shown: it is its nearest photo
    assert list(frame.columns) == ["product_id", "score", "title", "product_type", "colour", "pattern"]
    assert frame["title"].tolist() == [f"Top {p}" for p in frame["product_id"]]
    assert (frame["pattern"].iloc[1:] == "Solid").all()
    assert frame["score"].is_monotonic_decreasing


def test_typical_scores_are_medians_of_the_tables(built):
    ranges = typical_scores(built, k=5)
    assert set(ranges) == set(KINDS)
    for kind, r in ranges.items():
        scores = built.tables[kind]["scores"]
        assert r.first == pytest.approx(float(np.median(scores[:, 0])))
        assert r.kth == pytest.approx(float(np.median(scores[:, 4])))
        assert r.k == 5 and r.first >= r.kth


def test_purchase_counts_all_time_and_the_last_four_weeks_of_the_data():
    purchases = pd.DataFrame({"product_id": ["a", "a", "a", "b", "c"], "timestamp": pd.to_datetime(
        ["2020-01-01", "2020-06-02", "2020-06-03", "2020-06-30", "2020-05-01"])})
    counts = purchase_counts(purchases, weeks=4)
    assert counts.until == pd.Timestamp("2020-06-30") and counts.since == pd.Timestamp("2020-06-03")
    assert counts.of("a") == (3, 1)  # 06-02 is a day before the 28 days that end on 06-30
    assert counts.of("b") == (1, 1) and counts.of("c") == (1, 0) and counts.of("never") == (0, 0)
    assert counts.rank("a") == 1 and counts.rank("b") == counts.rank("c") == 2  # ties share a rank
    assert counts.rank("never") is None


def test_purchase_counts_without_purchases():
    counts = purchase_counts(pd.DataFrame({"product_id": pd.Series(dtype=str),
                                           "timestamp": pd.Series(dtype="datetime64[ns]")}))
    assert counts.of("a") == (0, 0) and counts.until is None


def test_purchase_counts_of_purchases_without_dates():
    counts = purchase_counts(pd.DataFrame({"product_id": ["a", "a", "b"], "timestamp": pd.to_datetime([None] * 3)}))
    assert counts.of("a") == (2, 0) and counts.rank("a") == 1 and counts.until is None and counts.since is None


def test_a_striped_top_among_plain_photos_is_a_texture_confusion_fixed_by_texture(built):
    check = texture_check(built, "s0", k=4)
    assert check.value == "Stripe"
    assert (check.photo.same, check.photo.total) == (0, 4)  # its variant s0b is left out, plains come next
    assert (check.photo.commonest_other, check.photo.commonest_other_n) == ("Solid", 4)
    assert check.confused and check.fixed
    assert (check.texture.same, check.texture.total) == (3, 4)  # s1..s3, then a plain one
    assert check.summary().startswith("Texture confusion: only 0 of its 4 nearest photos share its pattern (Stripe)")
    assert "4 are Solid, the commonest other. Fixed by the texture-aware space: 3 of its 4 nearest there share it." \
        in check.summary()


def test_a_striped_top_among_stripes_is_no_confusion(built):
    check = texture_check(built, "s1", k=2)
    assert (check.photo.same, check.photo.total) == (2, 2)
    assert not check.confused and not check.fixed
    assert check.summary().startswith("No texture confusion: 2 of its 2 nearest photos")


def test_no_verdict_without_a_label_or_a_label_column(built):
    assert texture_check(built, "u0") is None  # "Unknown" says nothing
    assert texture_check(built, "s0", label="fabric") is None


def test_product_facts_gathers_everything(built):
    counts = purchase_counts(built.catalog.purchases)
    facts = product_facts(built.catalog, "s0", counts, built, None, ProductConfig(k=3))
    assert facts.title == "Top s0" and facts.attributes["pattern"] == "Stripe" and facts.attributes["group_id"] == "gs0"
    assert set(facts.attributes) == {"group_id", *built.catalog.attribute_columns}
    assert facts.bought == (4, 2)  # the last four weeks: 2020-06-03 to 2020-06-30 (06-01 is before)
    assert facts.rank == 1
    assert set(facts.neighbours) == set(KINDS) and all(len(f) == 3 for f in facts.neighbours.values())
    assert facts.texture is not None and facts.texture.confused
    assert not facts.map_computed and facts.cluster is None
    unbuilt = product_facts(built.catalog, "p3", counts)  # the build still computing: what the catalogue knows
    assert unbuilt.neighbours == {} and unbuilt.texture is None and unbuilt.bought == (0, 0)
    with pytest.raises(KeyError):
        product_facts(built.catalog, "nope", counts)


def test_the_cluster_comes_from_a_stored_map_and_none_is_computed(built, tmp_path, monkeypatch):
    import core.explore.clustermap as clustermap
    calls = []

    def project(vectors, dims, *args):  # UMAP stood in for: the lookup, not the projection, is under test
        calls.append(dims)
        return np.ascontiguousarray(vectors[:, :dims], dtype=np.float32)
    monkeypatch.setattr(clustermap, "umap_project", project)
    cache = ArtefactCache(tmp_path)
    assert stored_cluster_map(built, cache) is None and calls == []  # nothing stored: nothing computed
    assert not list(tmp_path.rglob("*.npz"))
    loose = MapConfig(cluster=ClusterConfig(min_cluster_size=2, min_samples=2))  # hybrid, as the app looks up
    cmap = cluster_map(built, cache, loose)
    assert stored_cluster_map(built, cache) is None  # another setting's map is not this one
    stored = stored_cluster_map(built, cache, loose)
    assert len(calls) == 2  # the two projections of the one computed map, and no more
    np.testing.assert_array_equal(stored.clustering.labels, cmap.clustering.labels)
    place = cluster_place(stored, "s2")
    label = int(cmap.clustering.labels[list(cmap.ids).index("s2")])
    assert place.cluster == label
    if label != NOISE:
        assert place.name == cmap.clusters.at[label, "name"] and place.size == cmap.clusters.at[label, "size"]
    else:
        assert place.name == "noise" and place.size == 0
    assert cluster_place(stored, "not-on-the-map") is None


def test_score_meaning_names_the_space_and_the_query():
    assert score_meaning("image") == "cosine similarity of the two products' photo embeddings"
    assert score_meaning("text", "your words'") == ("cosine similarity of your words' embedding and the product's "
                                                    "product-sentence embedding")
    assert "texture-aware" in score_meaning("texture")


def test_a_confusion_the_texture_space_does_not_fix_says_so(built):
    from core.explore.product import LabelShare, TextureCheck
    photo = LabelShare(1, 10, "Solid", 8)
    helps = TextureCheck("pattern", "Stripe", photo, LabelShare(4, 10, "Solid", 6))
    worse = TextureCheck("pattern", "Stripe", photo, LabelShare(0, 10, "Solid", 10))
    assert helps.confused and not helps.fixed and "helps but does not fix it: 4 of its 10" in helps.summary()
    assert "does not fix it: 0 of its 10" in worse.summary() and "helps" not in worse.summary()
    assert TextureCheck("pattern", "Stripe", photo, None).summary().endswith("the commonest other.")


def test_liked_products_that_share_a_title_are_told_apart():
    from core.explore.product import distinct_titles
    products = pd.DataFrame({"title": ["Petar Sweater", "Petar Sweater", "Petar Sweater", "Luna jeans"],
                             "product_type": ["Sweater"] * 3 + ["Trousers"],
                             "colour": ["Yellow", "Dark Green", "Yellow", "Blue"]},
                            index=pd.Index(["p1", "p2", "p3", "j1"], name="product_id"))
    # one title alone is its title; twins take the first attribute that tells them apart, else their id
    assert distinct_titles(products, ["p1", "j1"]) == {"p1": "Petar Sweater", "j1": "Luna jeans"}
    assert distinct_titles(products, ["p1", "p2"]) == {"p1": "Petar Sweater, Yellow", "p2": "Petar Sweater, Dark Green"}
    assert distinct_titles(products, ["p1", "p3", "p1"]) == {"p1": "Petar Sweater, p1", "p3": "Petar Sweater, p3"}
