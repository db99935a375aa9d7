"""Paired differences between any two evaluated models (``python -m core evaluate`` compares every model with the
baselines only): the models exactly as the stored evaluation served them (its settings, its new-customer path,
its way with already-bought products, its seeds, every fit from the artefact cache), the per-customer values
averaged over seeds, then the 95% paired bootstrap of model minus each other model, over the same customers.
Fits nothing and chooses nothing: it refuses when the default evaluation is not in the cache.

    python tools/paired_models.py --model ranker --against graphsage,two_tower,content
"""
import argparse
import json
import sys

sys.path.insert(0, ".")
from core.__main__ import _catalog, _embeddings  # noqa: E402
from core.cache import ArtefactCache  # noqa: E402
from core.recs.evaluate import (EvalConfig, CustomerMetrics, _customer_metrics, _prepare, as_evaluated,  # noqa: E402
                                cached_evaluation, paired_values, rank_customers)
from core.recs.paired import paired_difference  # noqa: E402
from core.recs.registry import list_recommenders  # noqa: E402


def values_of(name, result, data, split, cfg, cache) -> dict:
    """The per-customer paired values of ``name`` as the evaluation served it, averaged over its seeds."""
    entry = result.models[name]
    way = "excluding" if entry.exclude_bought else "including"
    per_seed = [_customer_metrics(rank_customers(as_evaluated(name, data, result, cache, seed), data, split.test,
                                                 cfg), data, cfg)[way]
                for seed in (entry.seeds or list(cfg.seeds[:1]))]
    return paired_values(CustomerMetrics.average(per_seed), cfg.k)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="ranker")
    p.add_argument("--against", default="graphsage,two_tower,content")
    p.add_argument("--catalog", default=None)
    p.add_argument("--backbone", default="auto")
    p.add_argument("--limit", type=int, default=None)
    a = p.parse_args()
    catalog = _catalog(a)
    cache = ArtefactCache()
    embeddings = _embeddings(catalog, a.backbone, cache)
    cfg = EvalConfig()
    result = cached_evaluation(catalog, embeddings, list_recommenders(), cfg, cache)
    if result is None:
        sys.exit("error: no stored default evaluation for this catalogue: run `python -m core evaluate` first")
    split, data, _, _ = _prepare(catalog, embeddings, list_recommenders(), cfg)
    mine = values_of(a.model, result, data, split, cfg, cache)
    for other in a.against.split(","):
        theirs = values_of(other, result, data, split, cfg, cache)
        diffs = {key: paired_difference(mine[key], theirs[key], cfg.n_bootstrap, cfg.seed) for key in mine}
        print(json.dumps({"model": a.model, "minus": other,
                          **{key: {"diff": d.diff, "low": d.low, "high": d.high, "n": d.n} for key, d in diffs.items()}}))


if __name__ == "__main__":
    main()
