"""The evaluation table's columns: the main ones and the rest cover every number a model is evaluated on."""
from __future__ import annotations

from core.recs.evaluate import EvalConfig, evaluate_model
from core.recs.contract import rec_data
from core.recs.report import MAIN_METRICS, MORE_METRICS
from tests.recs.test_evaluate import Loyal, _catalog, _embeddings


def test_main_and_more_metrics_split_every_number_evaluate_model_reports():
    catalog = _catalog()
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, "2020-04-01", _embeddings())
    test = catalog.purchases[catalog.purchases["timestamp"] >= "2020-04-01"]
    out = evaluate_model(Loyal().fit(data), data, test, EvalConfig(n_bootstrap=10), exclude_bought=True)
    numbers = {k for k in out if not k.endswith(("_ci_low", "_ci_high", "_excluding", "_including"))
               and k not in ("exclude_bought", "id_only")}
    assert not set(MAIN_METRICS) & set(MORE_METRICS)
    assert set(MAIN_METRICS) | set(MORE_METRICS) == numbers  # a new metric must be placed in one or the other
    assert MAIN_METRICS[0] == "recall_at_10" and "recall_at_10_cold_items" in MAIN_METRICS
    assert len(MAIN_METRICS) <= 5  # with the model's name and two intervals, what 1400 px holds
