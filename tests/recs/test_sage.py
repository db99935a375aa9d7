"""GraphSAGE (its graph: test_graph.py): a hand-built 4-customer / 6-product graph with known answers, the neighbour
sampler against the full forward pass, inductive embeddings of new products and customers, caching."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from core.cache import ArtefactCache
from core.recs.graph import BUYS, REV_BUYS, SIMILAR, GraphConfig, NeighbourSampler, build_graph
from core.recs.contract import RecData, rank_in_lists, top_k
from core.recs.registry import fitted
from core.recs.sage import SageRecommender
from core.recs.sage_model import SageConfig, SageModel

CUTOFF = pd.Timestamp("2020-04-01")


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def two_blocks(n_per_block: int = 3, never_bought: int = 1, seed: int = 0) -> RecData:
    """Customers c0, c1 buy block A (products a0..), c2, c3 block B; block A items look alike (content),
    as do block B's. c0 has not bought a2 yet: it is the right recommendation for c0. ``never_bought``
    extra products of each block nobody bought."""
    rng = np.random.default_rng(seed)
    ids = [f"a{i}" for i in range(n_per_block + never_bought)] + [f"b{i}" for i in range(n_per_block + never_bought)]
    block = np.array([0] * (n_per_block + never_bought) + [1] * (n_per_block + never_bought))
    centre = np.eye(8, dtype=np.float32)[block * 4]
    image = unit(centre + 0.1 * rng.normal(size=centre.shape))
    products = pd.DataFrame({"group_id": ids, "product_type": np.where(block == 0, "Dress", "Trousers"),
                             "colour": "Black", "pattern": "Solid", "image_path": "", "description": ""},
                            index=pd.Index(ids, name="product_id"))
    customers = pd.DataFrame({"age": ["25", "31", "45", ""], "club_member_status": ["ACTIVE"] * 4},
                             index=pd.Index([f"c{i}" for i in range(4)], name="customer_id"))
    bought = {"c0": ["a0", "a1"], "c1": ["a0", "a1", "a2"], "c2": ["b0", "b1", "b2"], "c3": ["b0", "b1"]}
    rows = [(c, p, CUTOFF - pd.Timedelta(days=60 - 3 * j)) for c, ps in bought.items() for j, p in enumerate(ps)]
    purchases = pd.DataFrame(rows, columns=["customer_id", "product_id", "timestamp"])
    purchases["price"] = np.nan
    return RecData(products, customers, purchases.sort_values("timestamp").reset_index(drop=True), CUTOFF,
                   image, image.copy(), np.ones(len(ids), dtype=bool))


# batches of 4 of the 10 purchase edges: the other edges carry messages while a batch's own are hidden
TINY = SageConfig(graph=GraphConfig(content_k=2, variant_cap=0, attributes=("product_type",)), hidden=16, out=16,
                  epochs=20, batch_size=4, lr=0.02, validation_days=0, dropout=0.0, objective="edges", seed=0)


@pytest.fixture(scope="module")
def blocks_model():
    data = two_blocks()
    return data, SageRecommender(TINY).fit(data)


def test_learns_the_missing_purchase_of_a_block(blocks_model):
    data, model = blocks_model
    scores = model.score(["c0", "c3"])
    bought = [data.history("c0"), data.history("c3")]
    top, _ = top_k(scores, 1, exclude=bought)
    assert data.product_ids[top[0, 0]] in ("a2", "a3")  # c0: the rest of block A
    assert data.product_ids[top[1, 0]] in ("b2", "b3")


def test_never_bought_product_gets_a_real_vector_and_is_recommended(blocks_model):
    data, model = blocks_model
    vectors = model.item_vectors()
    a3 = data.product_row["a3"]  # nobody bought a3
    assert np.linalg.norm(vectors[a3]) > 1e-3
    assert not np.allclose(vectors[a3], vectors[data.product_row["b3"]], atol=1e-3)
    rank = np.argsort(-model.score(["c1"])[0]).tolist()
    assert rank.index(a3) < min(rank.index(data.product_row[p]) for p in ("b0", "b1", "b2", "b3"))


def test_new_customer_from_liked_products_and_from_attributes_alone(blocks_model):
    data, model = blocks_model
    liked = np.array([data.product_row["b0"], data.product_row["b1"]])
    scores = model.score_histories([liked, np.empty(0, dtype=np.int64)], [None, None])
    assert scores.shape == (2, data.n_products) and scores.dtype == np.float32
    top, _ = top_k(scores[:1], 3, exclude=[liked])
    # the rest of block B first, bought (b2) or not (b3: never a negative, as it was not on sale)
    assert set(data.product_ids[top[0, :2]]) == {"b2", "b3"}
    for p in ("b2", "b3"):
        assert scores[0, data.product_row[p]] > scores[0, [data.product_row[a] for a in ("a0", "a1", "a2", "a3")]].max()
    assert np.isfinite(scores[1]).all()  # nothing liked, no attributes: still a ranking
    _, state, profile, _ = model._leaf(data.history("c2"), "c2")
    leaf = model._customer_row(model.model_.customer_tower(state, profile), np.array([True]))
    np.testing.assert_allclose(leaf[0], model.customer_vectors()[data.customer_row["c2"]], atol=1e-5)


def test_the_score_is_content_similarity_plus_a_centred_graph_affinity(blocks_model):
    """content_apart: [content scale x recency-weighted profile, graph scale x (graph vector - mean customer's)]."""
    data, model = blocks_model
    d, vectors = data.hybrid.shape[1], model.customer_vectors()
    row = data.customer_row["c2"]  # bought b0, b1, b2 at 60, 57 and 54 days before the cutoff
    weights = 0.5 ** (np.array([60.0, 57.0, 54.0]) / TINY.profile_half_life)
    profile = weights @ data.hybrid[[data.product_row[p] for p in ("b0", "b1", "b2")]]
    content_scale = float(model.model_.log_scale.detach().exp())
    np.testing.assert_allclose(vectors[row, :d], content_scale * profile / np.linalg.norm(profile), atol=1e-5)
    np.testing.assert_allclose(model.item_vectors()[:, :d], data.hybrid, atol=1e-6)  # products: their content
    graph_part = vectors[:, d:-1] / float(model.model_.log_graph_scale.detach().exp())
    np.testing.assert_allclose(graph_part.mean(0), 0.0, atol=1e-5)  # no direction every customer shares
    assert np.linalg.norm(graph_part, axis=1).max() > 0.1


def test_product_added_from_content_reaches_the_customers_whose_taste_it_matches(blocks_model):
    data, model = blocks_model
    vector = model.product_vector(data.image[data.product_row["a0"]] * 0.9 + 0.1 / np.sqrt(8),
                                  data.text[data.product_row["a0"]], {"product_type": "Dress"})
    customers = model.customer_vectors()
    scores, new = customers @ model.item_vectors().T, customers @ vector
    block_b = [data.product_row[p] for p in ("b0", "b1", "b2", "b3")]
    without_b = np.delete(scores, block_b, axis=1)
    for c in ("c0", "c1"):  # block-A customers: it ranks above every block-B product
        row = data.customer_row[c]
        assert rank_in_lists(scores[[row]], new[[row]])[0] == rank_in_lists(without_b[[row]], new[[row]])[0]
    for c in ("c2", "c3"):  # block-B customers: below every block-B product
        row = data.customer_row[c]
        assert rank_in_lists(scores[[row]], new[[row]])[0] >= 4


def test_training_sees_only_purchases_before_the_cutoff():
    data = two_blocks()
    late = pd.DataFrame({"customer_id": ["c0"], "product_id": ["b3"], "timestamp": [CUTOFF], "price": [np.nan]})
    leaky = RecData(data.products, data.customers, pd.concat([data.purchases, late], ignore_index=True), CUTOFF,
                    data.image, data.text, data.has_image)
    with pytest.raises(ValueError, match="leak"):  # RecData built by hand with a purchase at the cutoff
        SageRecommender(TINY).fit(leaky)


def test_sampler_with_large_fanouts_equals_the_full_forward_pass():
    data = two_blocks(n_per_block=5, never_bought=2, seed=1)
    graph = build_graph(data, GraphConfig(content_k=3, variant_cap=0, attributes=("product_type",)))
    x_c, x_p = graph.x_customer, graph.x_product
    torch.manual_seed(0)
    model = SageModel(x_c.shape[1], x_p.shape[1], SageConfig(hidden=8, out=8, dropout=0.0, residual=False,
                                                             content_apart=False)).eval()
    full_c, full_p = model(x_c, x_p, graph.buys, graph.similar)
    sampler = NeighbourSampler({BUYS: graph.buys, REV_BUYS: graph.buys.flip(0), SIMILAR: graph.similar},
                               {"customer": graph.n_customers, "product": graph.n_products}, fanouts=(100, 100))
    seeds = {"customer": torch.tensor([0, 2]), "product": torch.tensor([1, 5, 9])}
    sub = sampler.sample(seeds, generator=torch.Generator().manual_seed(0))
    h_c, h_p = model(x_c[sub.nodes["customer"]], x_p[sub.nodes["product"]], sub.edges[BUYS], sub.edges[SIMILAR],
                     sub.edges[REV_BUYS])
    torch.testing.assert_close(h_c[:2], full_c[seeds["customer"]], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h_p[:3], full_p[seeds["product"]], atol=1e-5, rtol=1e-4)


def test_sampled_mode_trains():
    data = two_blocks()
    model = SageRecommender(SageConfig(**{**TINY.__dict__, "mode": "sampled", "fanouts": (5, 5)})).fit(data)
    top, _ = top_k(model.score(["c1"]), 3)
    assert sum(data.product_ids[r].startswith("a") for r in top[0]) >= 2


def test_early_stopping_on_the_validation_window():
    data = two_blocks()
    model = SageRecommender(SageConfig(**{**TINY.__dict__, "validation_days": 56, "epochs": 8, "patience": 2}))
    model.fit(data)
    assert 1 <= len(model.history_) <= 8 and model.best_epoch_ == int(np.argmax(model.history_)) + 1
    assert model.graph_.buys.shape[1] == 10  # the final embedding uses every purchase before the cutoff


def test_trained_model_is_a_cache_artefact(isolated_env, monkeypatch):
    data = two_blocks()
    cache = ArtefactCache(isolated_env)
    first = fitted("graphsage", data, cache)
    monkeypatch.setattr(SageRecommender, "fit", lambda *a, **k: pytest.fail("trained again"))
    import core.recs.sage as sage
    real_edges = sage.content_edges
    monkeypatch.setattr(sage, "content_edges", lambda *a: pytest.fail("content edges found again"))
    second = fitted("graphsage", data, cache)  # its content edges come with its state
    np.testing.assert_allclose(first.item_vectors(), second.item_vectors(), atol=1e-6)
    np.testing.assert_allclose(first.customer_vectors(), second.customer_vectors(), atol=1e-6)
    assert torch.equal(first.graph_.similar, second.graph_.similar)
    monkeypatch.setattr(sage, "content_edges", real_edges)
    older = {k: v for k, v in first.state_arrays().items() if k != "similar"}  # stored before the edges were
    third = SageRecommender(first.cfg).load_state(data, older)
    np.testing.assert_allclose(first.item_vectors(), third.item_vectors(), atol=1e-6)


def test_recovers_simulated_tastes_better_than_popularity(tmp_path):
    """Synthetic customers buy mostly one hidden (pattern, colour); GraphSAGE sees the attributes and
    purchases (the content vectors here are noise), and must beat popularity on the later months."""
    from core.embeddings.pipeline import Embeddings
    from core.recs.evaluate import EvalConfig, evaluate
    from core.recs.split import SplitConfig
    from core.data.synthetic import make_catalog
    catalog = make_catalog(300, seed=1, image_dir=tmp_path / "photos")
    rng = np.random.default_rng(0)
    noise = unit(rng.normal(size=(len(catalog.products), 16)))
    embeddings = Embeddings(catalog.products.index.to_numpy(str), noise, noise.copy(),
                            np.ones(len(noise), dtype=bool))
    cfg = EvalConfig(split=SplitConfig(cutoff="2020-05-01", end="2020-07-01"), exclude_bought="yes",
                     n_bootstrap=50)
    result = evaluate(catalog, embeddings, ["graphsage", "popularity"], cfg).to_dict()["models"]
    assert result["graphsage"]["recall_at_10"] > result["popularity"]["recall_at_10"] + 0.05


def test_the_evaluation_ranks_through_the_faiss_index_as_through_every_score(tmp_path):
    """Customers with no purchase before the cutoff among them: their vectors are leaves, as their scores are."""
    import dataclasses
    from core.embeddings.pipeline import Embeddings
    from core.data.synthetic import make_catalog
    from core.recs.contract import rec_data
    from core.recs.split import temporal_split
    from tests.recs.test_evaluate import assert_index_ranks_as_scores
    catalog = make_catalog(300, seed=1, image_dir=tmp_path / "photos")
    noise = unit(np.random.default_rng(0).normal(size=(len(catalog.products), 16)))
    embeddings = Embeddings(catalog.products.index.to_numpy(str), noise, noise.copy(), np.ones(len(noise), bool))
    split = temporal_split(catalog.purchases, "2020-05-01", "2020-07-01")
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, split.cutoff, embeddings)
    assert any(not len(data.history(c)) for c in split.test["customer_id"].unique())
    model = SageRecommender(dataclasses.replace(TINY, batch_size=512, epochs=5)).fit(data)
    assert_index_ranks_as_scores(model, data, split.test)


def test_an_id_not_in_the_data_is_a_leaf_without_history(blocks_model):
    data, model = blocks_model
    np.testing.assert_allclose(model.query_vectors(["nobody", "c0"]),
                               np.stack([model.customer_vector(np.zeros(0, np.int64), "nobody"),
                                         model.customer_vectors()[data.customer_row["c0"]]]), atol=1e-6)
    np.testing.assert_allclose(model.recommend(["nobody"], 3)[1], top_k(model.score(["nobody"]), 3)[1], rtol=1e-5)


def test_a_list_faiss_returns_short_is_ranked_from_every_score(blocks_model, monkeypatch):
    """PyG asks FAISS for at most 2,048 products, so a customer excluding more gets a short list (-1 padded)."""
    import copy
    data, model = blocks_model
    model = copy.copy(model)
    model.index_ = copy.copy(model.index_)
    search = model.index_.search

    def capped(emb, k, exclude_links=None):  # what PyG returns past its cap: the first customer's list runs out
        out = search(emb, k, exclude_links)
        out.index[0, 1:] = -1
        out.score[0, 1:] = float("-inf")
        return out
    monkeypatch.setattr(model.index_, "search", capped)
    ids = ["c0", "c1"]
    bought = [data.history(c) for c in ids]
    rows, scores = model.recommend(ids, 3, exclude=bought)
    _, want_scores = top_k(model.score(ids), 3, exclude=bought)
    assert (rows >= 0).all()
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5)


def test_faiss_recommendations_equal_the_full_scores(blocks_model):
    data, model = blocks_model
    ids = ["c0", "c1", "c2", "c3"]
    bought = [data.history(c) for c in ids]
    rows, scores = model.recommend(ids, 3, exclude=bought)
    expected_rows, expected_scores = top_k(model.score(ids), 3, exclude=bought)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    for got, want, b in zip(rows, expected_rows, bought):
        assert set(got.tolist()) == set(want.tolist()) and not set(got.tolist()) & set(b.tolist())
    liked = [np.array([data.product_row["b0"]])]
    np.testing.assert_allclose(model.recommend_histories(liked, 2)[1], top_k(model.score_histories(liked), 2)[1],
                               rtol=1e-5)


@pytest.mark.parametrize("variant_relation", [False, True])
def test_a_never_bought_product_removed_and_added_back_gets_its_own_vector(variant_relation):
    """product_vector builds exactly the node a catalogue product is: its content neighbours, its colour
    variants, every attribute, no buyers."""
    import dataclasses
    data = two_blocks()
    products = data.products.copy()
    products.loc[["a3", "b0"], "group_id"] = "g"  # a3 is a colour variant of b0, in the other block
    data = RecData(products, data.customers, data.purchases, CUTOFF, data.image, data.text, data.has_image)
    graph_cfg = GraphConfig(content_k=2, variant_cap=2, variant_relation=variant_relation,
                            attributes=("product_type", "colour"))
    model = SageRecommender(dataclasses.replace(TINY, graph=graph_cfg, epochs=3)).fit(data)
    for product in ("a3", "b3"):  # with a colour variant, and without one
        row = data.product_row[product]
        given = {c: str(products.at[product, c]) for c in ("product_type", "colour", "group_id")}
        again = model.product_vector(data.image[row], data.text[row], given, hide_row=row)
        np.testing.assert_allclose(again, model.item_vectors()[row], atol=1e-5)
    row = data.product_row["a3"]
    given = {c: str(products.at["a3", c]) for c in ("product_type", "colour", "group_id")}
    alone = model.product_vector(data.image[row], data.text[row], {**given, "group_id": ""}, hide_row=row)
    assert not np.allclose(alone, model.item_vectors()[row], atol=1e-4)  # its variant edge counted


def test_explanations_name_the_liked_product_whose_part_of_the_score_is_largest(blocks_model):
    data, model = blocks_model
    liked = np.array([data.product_row["a0"], data.product_row["b0"], data.product_row["b1"]])
    rows, messages, rest = model.parts(liked)
    np.testing.assert_allclose(messages.sum(0) + rest, model.customer_vector(liked)[:-1], atol=1e-4)
    products = np.arange(data.n_products)
    share = model.item_vectors()[:, :-1] @ messages.T  # each liked product's part of each product's affinity
    expected = rows[share.argmax(axis=1)]
    model_prior = model.prior_ * model.prior_weight_
    expected = np.where((model_prior > 0) & (model_prior > share.max(axis=1)), -1, expected)
    np.testing.assert_array_equal(model.explain(liked, products), expected)
    # a known customer's own purchases, weighted by recency: the content block is wholly theirs, nothing in the rest
    d = data.hybrid.shape[1]
    rows, messages, rest = model.parts(data.history("c2"), "c2")
    np.testing.assert_allclose(messages.sum(0) + rest, model.customer_vectors()[data.customer_row["c2"], :-1],
                               atol=1e-4)
    np.testing.assert_allclose(rest[:d], 0.0, atol=1e-5)


def test_the_popularity_prior_is_a_part_of_its_own():
    """Degree counts are not inputs; the prior is the last coordinate of the score, weighted per customer."""
    import dataclasses
    data = two_blocks()
    model = SageRecommender(dataclasses.replace(TINY, epochs=2)).fit(data)
    graph = build_graph(data, model.cfg.graph)
    assert model.model_.in_p.in_features == graph.x_product.shape[1]  # static features only
    assert model.model_.in_c.in_features == graph.x_customer.shape[1]
    from core.recs.sage import popularity_features
    counts = popularity_features(graph.buys, graph.recent, graph.n_customers, graph.n_products)
    assert counts[data.product_row["a0"], 0] == pytest.approx(np.log1p(2))  # a0 was bought by c0 and c1
    prior = model.model_.prior(counts).detach().numpy()
    model.prior_weight_, model.new_prior_weight_ = 2.0, 5.0
    liked, nothing = np.array([data.product_row["a0"]]), np.empty(0, dtype=np.int64)
    scores = model.score_histories([liked, nothing])
    model.prior_weight_ = model.new_prior_weight_ = 0.0
    affinity = model.score_histories([liked, nothing])
    np.testing.assert_allclose(scores[0] - affinity[0], 2.0 * prior, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores[1] - affinity[1], 5.0 * prior, rtol=1e-5, atol=1e-5)


def test_an_added_product_can_be_liked_and_named_as_a_reason():
    data = two_blocks()
    model = SageRecommender(TINY).fit(data)
    a0 = data.product_row["a0"]
    row = model.add_product("new", data.image[a0], data.text[a0], {"product_type": "Dress"})
    scores = model.score_histories([np.array([row])])
    assert scores.shape == (1, data.n_products + 1) and np.isfinite(scores).all()
    assert model.explain(np.array([row]), np.arange(data.n_products + 1)).tolist() == [row] * (data.n_products + 1)
    named = model.explain(np.array([row, data.product_row["b0"]]), np.arange(data.n_products + 1))
    assert set(named.tolist()) <= {row, data.product_row["b0"]}


def test_no_card_says_popular_when_the_prior_has_no_weight():
    data = two_blocks()
    model = SageRecommender(TINY).fit(data)
    model.prior_weight_ = model.new_prior_weight_ = 0.0
    liked = np.array([data.product_row["a0"]])
    assert (model.explain(liked, np.arange(data.n_products)) >= 0).all()
    assert (model.explain(np.empty(0, dtype=np.int64), np.arange(data.n_products)) == -2).all()
