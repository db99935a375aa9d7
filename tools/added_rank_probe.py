"""How high can content scoring place a re-added never-bought product for the buyers of its look-alikes?
A probe for `bench demo`'s added_product_rank target (median < 200), on the VALIDATION window only (fit
before 2020-01-01, score Jan-Mar 2020): the content baseline (mean of the last 10 purchases) against
nearest-purchase scoring (a product's score is its highest cosine to any of the customer's purchases),
with the same draws as core.recs.demo.added_product_rank. A content-only product vector is the product's own
hybrid vector, so no re-adding is needed. Run: python tools/added_rank_probe.py"""
import sys, time, json
import numpy as np
sys.path.insert(0, ".")
from core.__main__ import _embeddings
from core.cache import ArtefactCache
from core.data.load import default_catalog_spec, load_catalog
from core.recs.split import temporal_split
from core.recs.metrics import coverage, ranking_metrics
from core.recs.contract import rec_data, top_k, rank_in_lists
from core.recs.demo import nearest_bought, DemoConfig
from core.recs.baselines.content import Content, ContentConfig

catalog = load_catalog(default_catalog_spec())
emb = _embeddings(catalog, "auto", ArtefactCache())
split = temporal_split(catalog.purchases, "2020-01-01", "2020-04-01")
data = rec_data(catalog.products, catalog.customers, catalog.purchases, split.cutoff, emb)
H = np.ascontiguousarray(data.hybrid, np.float32)
test = split.test
customers = np.unique(test["customer_id"].astype(str))
rows = test["product_id"].astype(str).map(data.product_row)
truth = [np.unique(rows[(test["customer_id"].astype(str) == c).to_numpy()].dropna().astype(np.int64).to_numpy()) for c in customers]
cold = data.popularity() == 0

def maxsim_scores(ids, last_n=None, topm=1):
    out = np.empty((len(ids), data.n_products), np.float32)
    for i, c in enumerate(ids):
        h = data.history(c)
        if last_n: h = h[-last_n:]
        if len(h) == 0:
            out[i] = 0; continue
        s = H[np.unique(h)] @ H.T  # (m, n)
        if topm == 1: out[i] = s.max(0)
        else:
            m = min(topm, len(s)); out[i] = np.sort(s, 0)[-m:].mean(0)
    return out

def report(name, scorer):
    t0 = time.time()
    top = np.concatenate([top_k(scorer(customers[i:i+100].tolist()), 12)[0] for i in range(0, len(customers), 100)])
    rec = ranking_metrics(top, truth, 10)["recall"]
    ct = [t[cold[t]] for t in truth]; has = np.array([len(t) > 0 for t in ct])
    crec = ranking_metrics(top[has], [t for t, h in zip(ct, has) if h], 10)["recall"]
    # added product rank: content vector is the product's own vector
    cfg = DemoConfig(); rng = np.random.default_rng(cfg.seed + 2)
    bought = data.popularity() > 0; never = np.flatnonzero(~bought)
    chosen = np.sort(rng.choice(never, size=100, replace=False)); meds = []
    for row in chosen.tolist():
        near = nearest_bought(H, row, bought, 5)
        buyers = np.unique(data.customer_ids[data.users[np.isin(data.items, near)]])
        if len(buyers) > 200: buyers = np.sort(rng.choice(buyers, 200, replace=False))
        if not len(buyers): continue
        sc = scorer(buyers.tolist()); own = sc[:, row].copy(); sc[:, row] = -np.inf
        meds.append(np.median(rank_in_lists(sc, own)))
    print(json.dumps({"name": name, "recall": round(float(rec.mean()), 4), "cold": round(float(crec.mean()), 4),
        "coverage": round(coverage(top, data.n_products, 10), 4), "added_rank": float(np.median(meds)),
        "share_under_200": float(np.mean(np.array(meds) < 200)), "s": round(time.time() - t0, 1)}), flush=True)

content = Content(ContentConfig()).fit(data)
report("content_mean_last10", lambda ids: content.score(ids))
for n, m in [(10, 1), (None, 1), (None, 3), (20, 1)]:
    report(f"maxsim_last{n}_top{m}", lambda ids, n=n, m=m: maxsim_scores(ids, n, m))
