"""The ranker's dev loop on the validation window: fit on the purchases before --cutoff (default 2020-01-01) with
config overrides (--set field=value, --cand source=N), score [cutoff, end) (default to 2020-04-01) by full ranking,
print one JSON line per model and a summary on stderr. Refuses an --end after 2020-04-01: the test window is read
once, by `python -m core evaluate`. Already-bought products stay in the lists (what validation chose for every
model). Retrievers come from the artefact cache, so a second run of a seed fits only LightGBM.

    python tools/ranker_dev.py --seed 0 [--set train_windows=3] [--cand graphsage=100] [--models ranker,graphsage]
"""
import argparse
import json
import sys
import time

import pandas as pd

sys.path.insert(0, ".")
from core.__main__ import _catalog, _embeddings  # noqa: E402
from core.cache import ArtefactCache  # noqa: E402
from core.recs.candidates import CandidateConfig  # noqa: E402
from core.recs.contract import rec_data  # noqa: E402
from core.recs.evaluate import EvalConfig, _customer_metrics, _summary, rank_customers  # noqa: E402
from core.recs.ranker import RankerConfig, RankerRecommender  # noqa: E402
from core.recs.registry import RegistryRetrievers, fitted  # noqa: E402
from core.recs.split import temporal_split  # noqa: E402

LAST_VALIDATION_DAY = pd.Timestamp("2020-04-01")  # the default split's cutoff: the test window starts here
SHOWN = ("recall_at_10", "recall_at_10_cold_items", "recall_at_10_new_customers", "recall_at_10_sparse_customers",
         "coverage_at_10", "never_bought_at_10")


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _pairs(items: list[str]) -> dict:
    return {k: _value(v) for k, v in (x.split("=", 1) for x in items)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cutoff", default="2020-01-01")
    p.add_argument("--end", default="2020-04-01")
    p.add_argument("--models", default="ranker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--catalog", default=None)
    p.add_argument("--backbone", default="auto")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--set", action="append", default=[], help="RankerConfig field=value")
    p.add_argument("--cand", action="append", default=[], help="CandidateConfig source=N")
    a = p.parse_args()
    if pd.Timestamp(a.end) > LAST_VALIDATION_DAY:
        sys.exit(f"error: --end {a.end} reaches into the test window (from {LAST_VALIDATION_DAY:%Y-%m-%d})")
    sets, cands = _pairs(a.set), _pairs(a.cand)
    catalog = _catalog(a)
    cache = ArtefactCache()
    embeddings = _embeddings(catalog, a.backbone, cache)
    split = temporal_split(catalog.purchases, a.cutoff, a.end)
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, split.cutoff, embeddings)
    cfg = EvalConfig()
    for name in a.models.split(","):
        t0 = time.perf_counter()
        if name == "ranker" and (sets or cands):
            model = RankerRecommender(RankerConfig(seed=a.seed, candidates=CandidateConfig(**cands), **sets),
                                      RegistryRetrievers(cache)).fit(data)
        else:
            model = fitted(name, data, cache, a.seed)
        fit_s = time.perf_counter() - t0
        both = _customer_metrics(rank_customers(model, data, split.test, cfg), data, cfg)
        out = {"model": name, "seed": a.seed, "set": sets, "cand": cands, "fit_s": round(fit_s, 1)}
        for way in ("including", "excluding"):
            out[way] = {k: v for k, v in _summary(both[way], cfg).items() if k in SHOWN}
        if name == "ranker":
            out["report"] = model.report_
        print(json.dumps(out))
        print(name, sets, cands, "seed", a.seed, {k: round(v, 4) for k, v in out["including"].items() if v is not None},
              file=sys.stderr)


if __name__ == "__main__":
    main()
