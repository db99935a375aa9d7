"""The ranking stage (core.recs.candidates, core.recs.rank_features, core.recs.ranker) on a tiny shop whose
purchases one feature decides: every customer buys only products of their favourite colour."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.cache import ArtefactCache
from core.recs.candidates import CandidateConfig, candidate_recall, known_customers, liked_customers, propose
from core.recs.contract import REASONS, RecData
from core.recs.rank_features import FeatureContext, feature_names
from core.recs.ranker import RankerConfig, RankerRecommender
from core.recs.registry import RegistryRetrievers, create_recommender

COLOURS = ("black", "white", "red", "blue", "green", "yellow")
PER_COLOUR = 30
CUTOFF = pd.Timestamp("2020-06-01")
# cheap sources only (no two-tower or GraphSAGE training in the fast suite): content, bestsellers, history.
# EVERY makes every product a candidate (recent bestsellers past the catalogue's size): the ranker alone orders;
# FEW leaves most products out, so a list is a reordering of a few candidates.
CHEAP = CandidateConfig(two_tower=0, graphsage=0, content=20, colour_variants=5, repurchase=5, recent_popularity=200,
                        segment_popularity=20, new_arrivals=5)
FEW = CandidateConfig(two_tower=0, graphsage=0, content=8, colour_variants=5, repurchase=5, recent_popularity=8,
                      segment_popularity=8, new_arrivals=3)


def shop(seed: int = 0, n_customers: int = 48, days: int = 150) -> RecData:
    """180 products, 30 of each colour, content vectors that know nothing of colour; customers who buy 3 products
    of their favourite colour a month (the bestsellers of every colour are equally bought: popularity cannot
    tell the colours apart), from ``days`` before the cutoff."""
    rng = np.random.default_rng(seed)
    n = len(COLOURS) * PER_COLOUR
    ids = [f"p{i:02d}" for i in range(n)]
    colour = np.repeat(COLOURS, PER_COLOUR)
    products = pd.DataFrame({"title": [f"{c} item {i}" for i, c in enumerate(colour)], "colour": colour,
                             "product_type": "top", "section": "women", "group_id": ids}, index=pd.Index(ids,
                                                                                                         name="product_id"))
    customers = pd.DataFrame({"age": rng.integers(18, 70, n_customers).astype(str)},
                             index=pd.Index([f"c{i:02d}" for i in range(n_customers)], name="customer_id"))
    favourite = rng.integers(0, len(COLOURS), n_customers)
    rows = []
    start = CUTOFF - pd.Timedelta(days=days)
    for c in range(n_customers):
        for month in range(days // 30):
            for _ in range(3):
                p = favourite[c] * PER_COLOUR + rng.integers(0, PER_COLOUR)
                when = start + pd.Timedelta(days=30 * month + int(rng.integers(0, 30)), hours=int(rng.integers(0, 24)))
                rows.append((f"c{c:02d}", ids[p], when, 10.0 + p % 7))
    purchases = pd.DataFrame(rows, columns=["customer_id", "product_id", "timestamp", "price"])
    purchases = purchases[purchases["timestamp"] < CUTOFF].sort_values("timestamp", kind="stable").reset_index(drop=True)
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    data = RecData(products, customers, purchases, CUTOFF, vectors, vectors, np.ones(n, bool))
    data.favourite = {f"c{i:02d}": COLOURS[f] for i, f in enumerate(favourite)}
    return data


def ranker(seed: int = 0, **cfg) -> RankerRecommender:
    return RankerRecommender(RankerConfig(seed=seed, **{"window_days": 30, "candidates": CHEAP, **cfg}),
                             RegistryRetrievers())


@pytest.fixture(scope="module")
def data() -> RecData:
    return shop()


@pytest.fixture(scope="module")
def fitted_ranker(data) -> RankerRecommender:
    return ranker().fit(data)


def test_the_ranker_learns_the_one_feature_that_decides(data, fitted_ranker):
    customers = sorted(data.favourite)
    top = fitted_ranker.recommend(customers, 10, exclude=[data.history(c) for c in customers])[0]
    colours = data.products["colour"].to_numpy()
    share = np.mean([np.mean(colours[t] == data.favourite[c]) for c, t in zip(customers, top)])
    assert share >= 0.9  # by chance 1 in 6; popularity cannot tell the colours apart
    assert fitted_ranker.booster_ is not None
    gain = dict(zip(fitted_ranker.booster_.feature_name(), fitted_ranker.booster_.feature_importance("gain")))
    assert max(gain, key=gain.get) == "same_colour_share"
    # its windows: trained on two, early-stopped on the last, which ends at the cutoff
    windows = fitted_ranker.report_["windows"]
    assert len(windows) == 3 and windows[-1]["end"] == str(CUTOFF.date())
    assert fitted_ranker.report_["chosen"]["rounds"] >= 1 and fitted_ranker.report_["grid"]


@pytest.fixture(scope="module")
def few_ranker(data) -> RankerRecommender:
    return ranker(candidates=FEW).fit(data)


def test_its_list_is_a_reordering_of_its_candidates(data, few_ranker):
    customers = sorted(data.favourite)[:8]
    candidates, _, scores = few_ranker.ranked(known_customers(data, customers))
    full = few_ranker.score(customers)
    prior = data.popularity()
    for i, c in enumerate(customers):
        mine = candidates.of(i)
        assert 0 < len(mine) < data.n_products // 2
        top = few_ranker.recommend([c], len(mine))[0][0]
        mine_scores = scores[candidates.stops[i]:candidates.stops[i + 1]]
        assert top.tolist() == mine[np.lexsort((mine, -mine_scores))].tolist()  # its candidates, by its scores
        others = np.setdiff1d(np.arange(data.n_products), mine)
        assert full[i, others].max() < full[i, mine].min()
        # a list longer than the candidates goes on with the other products, bestsellers first
        longer = few_ranker.recommend([c], len(mine) + 5)[0][0][len(mine):]
        assert set(longer) <= set(others.tolist())
        assert (np.diff(prior[longer]) <= 0).all()


def test_candidates_and_features_never_read_the_window_being_predicted(data):
    """A window's candidates and features come from the purchases before it: other purchases in the window (other
    products, more of them, by the same customers) change its labels, never its candidates or features."""
    start, end = CUTOFF - pd.Timedelta(days=30), CUTOFF
    early = data.purchases[data.purchases["timestamp"] < start]
    later = data.purchases[data.purchases["timestamp"] >= start]
    moved = later.assign(product_id=np.roll(later["product_id"].to_numpy(), 7))  # other products bought
    more = later.assign(product_id=np.roll(later["product_id"].to_numpy(), 3))  # and more purchases
    altered = RecData(data.products, data.customers, pd.concat([early, moved, more]).sort_values(
        "timestamp", kind="stable").reset_index(drop=True), CUTOFF, data.image, data.text, data.has_image)
    model = ranker(candidates=FEW)
    ids_a, ca, xa, ya, _ = model.window_pairs(data, start, end)
    ids_b, cb, xb, yb, _ = model.window_pairs(altered, start, end)
    assert ids_a.tolist() == ids_b.tolist() and len(ids_a) == len(data.favourite)
    assert np.array_equal(ca.product, cb.product) and np.array_equal(ca.customer, cb.customer)
    np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(ya, yb)  # the window did change


def test_a_windows_groups_hold_a_purchase_each_and_label_never_bought_ones_two(data):
    start, end = CUTOFF - pd.Timedelta(days=30), CUTOFF
    w = ranker(candidates=CHEAP)._window(data, start, end, None)
    assert w.groups.sum() == len(w.labels) == len(w.features) and (w.groups > 0).all()
    owner = np.repeat(np.arange(len(w.groups)), w.groups)
    assert (np.bincount(owner, w.labels > 0) > 0).all()
    before = data.before(start)
    assert set(np.unique(w.labels)) <= {0.0, 1.0, 2.0}
    names = list(feature_names(CHEAP.sizes()))
    never = w.features[:, names.index("product_never_bought")] == 1
    assert (w.labels[never & (w.labels > 0)] == 2).all() and (w.labels[~never & (w.labels > 0)] == 1).all()
    assert before.popularity().sum() == len(before.purchases)


def test_a_liked_list_and_an_unknown_id_are_ranked_too(data, fitted_ranker):
    colours = data.products["colour"].to_numpy()
    reds = np.flatnonzero(colours == "red")[:3]
    top = fitted_ranker.recommend_histories([reds], 10, exclude=[reds])[0][0]
    assert np.mean(colours[top] == "red") >= 0.8  # what they liked decides, as for a known customer
    unknown = fitted_ranker.score(["nobody"])
    assert np.isfinite(unknown).all()
    np.testing.assert_allclose(unknown, fitted_ranker.score_histories([np.empty(0, np.int64)]))


def test_the_seed_changes_the_fit(data, fitted_ranker):
    other = ranker(seed=1).fit(data)
    assert other.booster_.model_to_string() != fitted_ranker.booster_.model_to_string()
    again = ranker(seed=0).fit(data)
    assert again.booster_.model_to_string() == fitted_ranker.booster_.model_to_string()


def test_candidates_are_the_union_of_each_sources_top_n(data):
    parts = RegistryRetrievers()
    retrievers = {n: parts.fit(n, data, 0) for n in set(CHEAP.models())}
    batch = known_customers(data, ["c00", "c01"])
    candidates = propose(retrievers, batch, CHEAP)
    proposed = candidates.proposed()
    assert proposed.any(axis=1).all()  # every candidate has a source
    for j, source in enumerate(candidates.sources):
        n = CHEAP.sizes()[source]
        for i in range(2):
            mine = slice(candidates.stops[i], candidates.stops[i + 1])
            assert proposed[mine, j].sum() <= n
            ranks = candidates.ranks[mine, j][proposed[mine, j]]
            assert sorted(ranks.tolist()) == list(range(len(ranks)))  # places 0..len-1 of its list
    # repurchase proposes only what they bought; colour variants nothing here (every product its own group)
    rep = candidates.sources.index("repurchase")
    for i, c in enumerate(["c00", "c01"]):
        mine = slice(candidates.stops[i], candidates.stops[i + 1])
        assert set(candidates.product[mine][proposed[mine, rep]]) <= set(data.history(c).tolist())
    assert not proposed[:, candidates.sources.index("colour_variants")].any()
    # a new customer (no history) still gets candidates, from the sources that need none
    new = propose(retrievers, liked_customers([np.empty(0, np.int64)]), CHEAP)
    assert len(new) == min(CHEAP.recent_popularity, data.n_products)  # its bestsellers, at least


def test_candidate_recall_counts_pairs_in_the_candidates():
    from core.recs.candidates import Candidates
    c = Candidates(("a", "b"), np.array([0, 0, 1]), np.array([1, 2, 5]),
                   np.zeros((3, 2), np.float32), np.array([[0, np.nan], [1, 0], [np.nan, 0]], np.float32),
                   np.array([0, 2, 3]))
    cold = np.zeros(8, bool)
    cold[[2, 6]] = True
    r = candidate_recall(c, [np.array([2, 3]), np.array([5, 6])], cold)
    assert (r.pairs, r.cold_pairs) == (4, 2)
    assert r.merged == 0.5 and r.merged_cold == 0.5  # 2 and 5 proposed; of the cold 2 and 6, 2
    assert r.per_source == {"a": 0.25, "b": 0.5} and r.per_source_cold == {"a": 0.5, "b": 0.5}
    assert r.best_top10() == ("b", 0.5)


def test_features_have_a_meaning_each_and_the_expected_values(data, fitted_ranker):
    names = feature_names(CHEAP.sizes())
    assert all(isinstance(m, str) and m for m in names.values())
    batch = known_customers(data, ["c00"])
    candidates, x, _ = fitted_ranker.ranked(batch)
    assert x.shape == (len(candidates), len(names))
    col = {n: j for j, n in enumerate(names)}
    history = data.history("c00")
    for j, p in enumerate(candidates.product):
        assert x[j, col["times_bought"]] == np.sum(history == p)
        same = np.mean(data.products["colour"].to_numpy()[history] == data.products["colour"].iat[p])
        assert x[j, col["same_colour_share"]] == pytest.approx(same)
        assert x[j, col["customer_purchases"]] == len(history)
        assert x[j, col["product_sales_all"]] == data.popularity()[p]


def test_reasons_name_the_sources_and_the_features_that_lifted(data, fitted_ranker):
    assert fitted_ranker.supports(REASONS)
    history = data.history("c00")
    rows = fitted_ranker.recommend(["c00"], 5)[0][0]
    why = fitted_ranker.reasons_for(history, rows, "c00")
    assert len(why) == 5 and all(w.startswith("proposed by ") for w in why)
    sources, contrib = fitted_ranker.contributions(history, rows, "c00")
    # LightGBM's contributions add up to the score, less its bias
    candidates, x, scores = fitted_ranker.ranked(known_customers(data, ["c00"]))
    at = {int(p): j for j, p in enumerate(candidates.product)}
    full = fitted_ranker.booster_.predict(x[[at[int(r)] for r in rows]], pred_contrib=True)
    np.testing.assert_allclose(contrib.sum(axis=1) + full[:, -1], scores[[at[int(r)] for r in rows]], atol=1e-4)
    assert fitted_ranker.reasons_for(history, np.array([data.n_products - 1]), "c00")[0] in (
        "not among its candidates",) or data.n_products - 1 in candidates.product


def test_the_ranker_is_saved_and_loaded_through_the_cache(tmp_path, data):
    cache = ArtefactCache(tmp_path)
    model = RankerRecommender(RankerConfig(candidates=CHEAP, window_days=30), RegistryRetrievers(cache))
    state = cache.get_or_compute("recommender-ranker", model.cache_config(), "fp",
                                 lambda: model.fit(data).state_arrays())
    again = RankerRecommender(RankerConfig(candidates=CHEAP, window_days=30), RegistryRetrievers(cache)).load_state(
        data, state)
    ids = sorted(data.favourite)[:5]
    np.testing.assert_allclose(again.score(ids), model.score(ids), atol=1e-5)
    assert again.report_ == model.report_


def test_a_short_shop_shortens_the_windows():
    small = shop(seed=1, n_customers=20, days=60)
    model = ranker(window_days=91)
    spans = model.windows(small)
    assert len(spans) == 3 and spans[-1][1] == CUTOFF
    assert all(e - s < pd.Timedelta(days=91) for s, e in spans)  # 60 days of purchases: windows of 15 days
    assert spans[0][0] > small.purchases["timestamp"].min()  # the oldest window has purchases before it
    fitted_small = model.fit(small)
    assert fitted_small.score(["c00"]).shape == (1, small.n_products)


def test_a_shop_with_nothing_to_learn_from_orders_candidates_by_fusion():
    """Every purchase made hours before the cutoff: no window has purchases before it, so there is nothing to
    train on, and the candidates come in reciprocal-rank-fusion order of the sources."""
    data = shop(n_customers=6, days=30)
    same_day = data.purchases.assign(timestamp=CUTOFF - pd.Timedelta(hours=2))
    only = RecData(data.products, data.customers, same_day, CUTOFF, data.image, data.text, data.has_image)
    model = ranker().fit(only)
    assert model.booster_ is None and "chosen" not in model.report_
    candidates, _, scores = model.ranked(known_customers(only, ["c00"]))
    fusion = np.nansum(1.0 / (60.0 + candidates.ranks), axis=1)
    np.testing.assert_allclose(scores, fusion, rtol=1e-6)
    assert np.isfinite(model.score(["c00", "nobody"])).all()


def test_the_registry_makes_a_seeded_cached_ranker(tmp_path):
    model = create_recommender("ranker", seed=3)
    assert model.cfg.seed == 3 and model.supports(REASONS)
    assert model.cache_config()["retrievers"]["graphsage"]["model"] == "graphsage"  # its parts' configs in its key
    assert create_recommender("ranker", seed=4).cache_config() != model.cache_config()
