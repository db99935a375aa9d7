"""GraphSAGE's dev loop on the validation window: fit on the purchases before --cutoff (default 2020-01-01)
with config overrides, score [cutoff, end) (default to 2020-04-01) by full ranking, print one JSON line per
run. Never run it on the test window: that is read once, by `python -m core evaluate`. Already-bought
products stay in the lists (what the validation window chose for every model), so its numbers compare
with evaluate's on the same window only where evaluate kept them too."""
import argparse
import ast
import json
import sys
import time

import numpy as np

sys.path.insert(0, ".")
from core.__main__ import _embeddings  # noqa: E402
from core.cache import ArtefactCache  # noqa: E402
from core.data.load import default_catalog_spec, load_catalog
from core.recs.graph import GraphConfig  # noqa: E402
from core.recs.split import customer_slice, temporal_split
from core.recs.metrics import coverage, ranking_metrics
from core.recs.contract import rec_data, top_k  # noqa: E402
from core.recs.sage import SageRecommender
from core.recs.sage_model import SageConfig
from core.recs.baselines.content import Content


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cutoff", default="2020-01-01")
    p.add_argument("--end", default="2020-04-01")
    p.add_argument("--seeds", default="0")
    p.add_argument("--set", action="append", default=[], help="field=value (python literal), graph.field=value")
    p.add_argument("--content", action="store_true", help="also print the content baseline on the same window")
    args = p.parse_args()
    catalog = load_catalog(default_catalog_spec())
    embeddings = _embeddings(catalog, "auto", ArtefactCache())
    split = temporal_split(catalog.purchases, args.cutoff, args.end)
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, split.cutoff, embeddings)
    over, graph_over = {}, {}
    for item in args.set:
        key, value = item.split("=", 1)
        (graph_over if key.startswith("graph.") else over)[key.removeprefix("graph.")] = ast.literal_eval(value)
    test = split.test
    customers = np.unique(test["customer_id"].astype(str))
    rows = test["product_id"].astype(str).map(data.product_row)
    truth = [np.unique(rows[(test["customer_id"].astype(str) == c).to_numpy()].dropna().astype(np.int64).to_numpy())
             for c in customers]
    cold = data.popularity() == 0
    slices = customer_slice(np.array([len(data.history(c)) for c in customers]))

    def measured(scores: np.ndarray) -> dict:
        top = top_k(scores, 12)[0]
        recall = ranking_metrics(top, truth, 10)["recall"]
        cold_truth = [t[cold[t]] for t in truth]
        has = np.array([len(t) > 0 for t in cold_truth])
        cold_recall = ranking_metrics(top[has], [t for t, h in zip(cold_truth, has) if h], 10)["recall"]
        return {"recall_at_10": round(float(recall.mean()), 4), "cold_items": round(float(cold_recall.mean()), 4),
                **{f"{s}_customers": round(float(recall[slices == s].mean()), 4) for s in ("new", "sparse", "warm")},
                "coverage_at_10": round(coverage(top, data.n_products, 10), 4)}

    if args.content:
        print(json.dumps({"model": "content", **measured(Content().fit(data).score(customers.tolist()))}), flush=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        cfg = SageConfig(**{**over, "graph": GraphConfig(**graph_over), "seed": seed})
        t0 = time.perf_counter()
        model = SageRecommender(cfg).fit(data)
        train_s = time.perf_counter() - t0
        print(json.dumps({"set": args.set, "seed": seed, **measured(model.score(customers.tolist())),
                          "prior_weight": model.prior_weight_, "new_prior_weight": model.new_prior_weight_,
                          "best_epoch": model.best_epoch_,
                          "scales": {n: round(float(w.detach().exp()), 3) for n, w in model.model_.named_parameters()
                                     if n.startswith("log_")},
                          "inner_validation": {k: round(v, 4) for k, v in model.validation_.items()},
                          "train_s": round(train_s, 1)}), flush=True)


if __name__ == "__main__":
    main()
