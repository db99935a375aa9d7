"""GraphSAGE training (core/recs/sage_training.py) on the hand-built 4-customer / 6-product graph of test_sage.py:
the validation window's truth, the window tasks, the negative draws against their expected counts, the loop."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core.recs.graph import build_graph
from core.recs.sage_model import SageConfig
from core.recs.sage_training import negatives, some_customers, train, training_tasks, window_truth
from tests.recs.test_sage import TINY, two_blocks


def test_window_truth_holds_the_purchases_of_the_last_days():
    data = two_blocks()  # purchases 60, 57 and 54 days before the cutoff; only c1 and c2 bought at 54
    c1, c2, a2, b2 = data.customer_row["c1"], data.customer_row["c2"], data.product_row["a2"], data.product_row["b2"]
    assert window_truth(data, 55) == {c1: {a2}, c2: {b2}}
    assert window_truth(data, 0) == {}


def test_validation_measures_a_seeded_sample_of_a_large_window():
    truth = {c: {c % 7} for c in range(50)}
    assert some_customers(truth, 50) is truth and some_customers(truth, 0) is truth  # all of them, or no limit
    some = some_customers(truth, 10, seed=1)
    assert len(some) == 10 and all(truth[c] == some[c] for c in some)
    assert some == some_customers(truth, 10, seed=1) and some != some_customers(truth, 10, seed=2)


def test_window_tasks_predict_each_window_from_the_graph_before_it():
    data = two_blocks()  # purchases 60, 57 and 54 days before the cutoff
    cfg = SageConfig(**{**TINY.__dict__, "objective": "windows", "window_days": 5, "n_windows": 20})
    graph = build_graph(data, cfg.graph)
    tasks = training_tasks(data, graph, graph.similar, cfg)
    assert [t.pairs.shape[1] for t in tasks] == [2, 4, 4]  # windows [50, 55), [55, 60), [60, 65) days back
    for task in tasks:
        bought = {(int(c), int(p)) for c, p in task.pairs.T}
        days = data.days_ago[[i for i, pair in enumerate(zip(data.users, data.items)) if pair in bought]]
        opened = days.max()  # the window opened no later than its oldest purchase
        messages = {(int(c), int(p)) for c, p in task.graph.buys.T}
        assert not messages & bought  # nothing a window predicts carries messages
        assert task.graph.buys.shape[1] == int((data.days_ago > opened).sum())


def test_negative_draws_match_their_expected_counts():
    """The log-Q correction subtracts log(expected count): the counts must be what the draws give."""
    data = two_blocks()
    graph = build_graph(data, TINY.graph)
    task = training_tasks(data, graph, graph.similar, TINY)[0]
    rng = torch.Generator().manual_seed(0)
    products = task.pairs[1, :4]
    recent = torch.tensor([3.0, 0, 1, 0, 0, 2, 0, 0])
    counts, draws = torch.zeros(data.n_products), 2000
    for _ in range(draws):
        rows, expected = negatives(task, products, recent, rng, TINY)
        counts += torch.bincount(rows, minlength=data.n_products)
    torch.testing.assert_close(counts / draws, expected, atol=0.6, rtol=0.02)
    assert expected.sum() == pytest.approx(len(rows))


def test_training_keeps_the_best_validation_epoch():
    data = two_blocks()
    run = train(data, dataclasses.replace(TINY, validation_days=56, epochs=8, patience=2))
    assert 1 <= len(run.history) <= 8
    assert run.validation["epoch"] == int(np.argmax(run.history)) + 1
    assert run.validation["criterion"] == max(run.history)
    assert run.similar.shape[0] == 2 and run.content.shape == data.hybrid.shape


def test_auto_mode_trains_on_sampled_mini_batches_past_its_limit():
    from core.recs.sage_model import training_mode
    limit = SageConfig().sampled_past
    assert training_mode(SageConfig(), limit) == "full" and training_mode(SageConfig(), limit + 1) == "sampled"
    assert training_mode(SageConfig(mode="full"), 10**7) == "full"  # asked for: kept
    with pytest.raises(ValueError, match="unknown GraphSAGE mode 'fast'"):
        train(two_blocks(), dataclasses.replace(TINY, mode="fast"))
    data = two_blocks()
    cfg = dataclasses.replace(TINY, mode="auto", epochs=3)
    graph = build_graph(data, cfg.graph)
    assert all(t.sampler is None for t in training_tasks(data, graph, graph.similar, cfg))
    cfg = dataclasses.replace(cfg, sampled_past=data.n_products - 1)
    tasks = training_tasks(data, graph, graph.similar, cfg)
    assert tasks and all(t.sampler is not None for t in tasks)
    run = train(data, cfg)  # trains through the sampler
    assert len(run.history) == 3 and all(np.isfinite(run.history))


def test_validation_through_the_index_is_validation_over_every_score():
    from core.recs.contract import top_k
    from core.recs.sage_model import profile_weights
    from core.recs.sage_training import heard, popularity_features, validate, validation_recalls
    data = two_blocks()
    cfg = dataclasses.replace(TINY, validation_days=56, epochs=2)  # the window holds c1's and c2's last purchases
    run = train(data, cfg)
    graph = build_graph(data, cfg.graph, before_days=cfg.validation_days, similar=run.similar, spec=run.spec)
    inputs = run.model.standardise(graph.x_customer, graph.x_product)
    truth = window_truth(data, cfg.validation_days)
    assert len(truth) == 2
    found = validate(run.model, run.content, graph, inputs, truth, cfg)
    assert all(isinstance(v, float) for v in found.values())
    # the same recalls from every product's score, sorted, at the weights validation chose
    with torch.no_grad():
        h_c, h_p = run.model(*inputs, heard(graph.buys, cfg), graph.similar_adj, bought=graph.buys.flip(0),
                             variants=graph.variant_adj, content=run.content, standardised=True,
                             bought_weight=profile_weights(graph.days, cfg, graph.buys[0]), recentre=True)
        popularity = popularity_features(graph.buys, graph.recent, graph.n_customers, graph.n_products)
        prior = run.model.prior(popularity).numpy()
        affinity = (h_c @ h_p.T * run.model.scale()).numpy()
    known = torch.bincount(graph.buys[0], minlength=graph.n_customers).numpy() > 0
    recalls, cold = [], popularity[:, 0].numpy() == 0
    for row, bought in truth.items():
        weight = found["prior_weight"] if known[row] else found["new_prior_weight"]
        top = top_k(affinity[[row]] + weight * prior[None, :], 10)[0]
        recalls.append(validation_recalls(top, [np.fromiter(bought, dtype=np.int64)], cold)[0][0])
    assert found["recall"] == pytest.approx(float(np.mean(recalls))) and found["recall"] > 0


def test_an_epoch_takes_at_most_max_steps_steps(monkeypatch):
    from core.recs import sage_training
    from core.recs.sage_training import steps_per_epoch
    cfg = SageConfig()
    assert steps_per_epoch(10 * cfg.batch_size + 1, cfg) == 11  # every pair once
    assert steps_per_epoch(1, cfg) == cfg.min_steps
    assert steps_per_epoch(10**7, cfg) == cfg.max_steps  # then an epoch trains on a sample of the pairs
    assert steps_per_epoch(10**7, dataclasses.replace(cfg, max_steps=0)) == -(-10**7 // cfg.batch_size)
    steps = []
    step = sage_training._step
    monkeypatch.setattr(sage_training, "_step", lambda *args: steps.append(1) or step(*args))
    run = train(two_blocks(), dataclasses.replace(TINY, epochs=2, patience=5, min_steps=10, max_steps=3))
    assert len(run.history) == 2 and len(steps) == 2 * 3


@pytest.mark.parametrize("customers", [5, 50])  # FAISS scores fewer than 20 queries one way, more through BLAS
def test_tops_with_prior_are_the_best_whole_scores(customers):
    from core.recs.contract import top_k
    from core.recs.sage_training import tops_with_prior
    gen = torch.Generator().manual_seed(0)
    c, p, prior = (torch.randn(customers, 8, generator=gen), torch.randn(300, 8, generator=gen),
                   torch.randn(300, generator=gen))
    tops = tops_with_prior(c, p, prior, (0.0, 2.0))
    for weight, top in tops.items():
        expected = top_k((c @ p.T + weight * prior).numpy(), 10)[0]
        assert top.shape == (customers, 10) and (top == expected).all()
    assert not (tops[0.0] == tops[2.0]).all()  # the prior's weight moves the lists
    few = tops_with_prior(c, p[:6], prior[:6], (1.0,))[1.0]  # fewer products than k: all of them, no padding
    assert few.shape == (customers, 6) and (np.sort(few, axis=1) == np.arange(6)).all()


def test_a_diverged_epoch_validates_as_nothing_rather_than_stopping_the_fit():
    from core.recs.sage_training import validate
    data = two_blocks()
    cfg = dataclasses.replace(TINY, validation_days=56, epochs=1)
    run = train(data, cfg)
    graph = build_graph(data, cfg.graph, before_days=cfg.validation_days, similar=run.similar, spec=run.spec)
    inputs = run.model.standardise(graph.x_customer, graph.x_product)
    truth = window_truth(data, cfg.validation_days)
    assert validate(run.model, run.content, graph, inputs, truth, cfg)["recall"] > 0
    with torch.no_grad():
        run.model.in_p.weight.fill_(float("nan"))
    found = validate(run.model, run.content, graph, inputs, truth, cfg)
    assert found["criterion"] == 0.0 and found["recall"] == 0.0
