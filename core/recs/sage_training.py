"""Training the GraphSAGE network of :mod:`core.recs.sage`: tasks, negatives, the sampled-softmax step, validation.

:func:`train` is what :meth:`core.recs.sage.SageRecommender.fit` runs (the objective, the loss, DropoutNet and
the early stopping are described there); it returns the trained network and its training history, and the
recommender then embeds the catalogue with it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.nn.pool import MIPSKNNIndex

from core.recs.dataparallel import data_parallel, rank_zero_says, worker
from core.progress import Progress
from core.recs.contract import RecData
from core.recs.graph import (BUYS, REV_BUYS, SIMILAR, VARIANT, FeatureSpec, Graph, NeighbourSampler, build_graph,
                             content_edges, degree_features, feature_spec, purchase_edges)
from core.recs.metrics import ranking_metrics
from core.recs.sage_model import SageConfig, SageModel, mean_content, profile_weights, training_mode
from core.recs.two_tower import logq_softmax_loss


def popularity_features(buys: torch.Tensor, recent: torch.Tensor, n_customers: int, n_products: int
                        ) -> torch.Tensor:
    """(n_products, 2) float32 log(1 + purchase edges) and log(1 + recent purchase edges) per product, over
    ``buys`` (2, E) whose ``recent`` (E,) bool marks the recent ones."""
    return degree_features(buys, recent, n_customers, n_products)[1]


def heard(buys: torch.Tensor, cfg: SageConfig) -> torch.Tensor:
    """The purchase edges whose buyers products hear: all of them, or none without ``buyer_messages``."""
    return buys if cfg.buyer_messages else buys[:, :0]


def validation_recalls(top: np.ndarray, truth: list[np.ndarray], cold: np.ndarray, k: int = 10
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per customer, Recall@k over all products, and Recall@k over cold products only (``cold`` (n_products,) bool:
    nobody bought them before the window) for the customers who bought one, of top lists (q, >= k) against each
    customer's bought product rows ``truth``."""
    overall = ranking_metrics(top, truth, k)["recall"]
    cold_truth = [t[cold[t]] for t in truth]
    has = np.array([len(t) > 0 for t in cold_truth], dtype=bool)
    cold_recall = ranking_metrics(top[has], [t for t, h in zip(cold_truth, has) if h], k)["recall"] if has.any() \
        else np.zeros(0)
    return overall, cold_recall


@dataclass
class Task:
    """Training pairs to predict and the graph whose messages predict them."""
    graph: Graph
    pairs: torch.Tensor  # (2, P) customer row, product row
    own: torch.Tensor | None  # (P,) each pair's own edge in graph.buys, hidden from its messages; None: not in it
    weights: torch.Tensor | None  # (P,) sampling weights; None: uniform
    sampler: NeighbourSampler | None
    log_q: torch.Tensor | None = None  # (n_products,) log of how often each product is a positive of this task
    # (n_products,) bool: the products that may be negatives, those on sale by the task's time as far as the
    # purchases tell (somebody bought them by the end of its window); None: every product
    available: torch.Tensor | None = None
    neighbours: tuple[torch.Tensor, torch.Tensor] | None = None  # available content neighbours (see _incoming)
    # What every step shares, found once rather than at every step (each passes over every purchase or product): the
    # prior's popularity features (n_products, 2) when no pair's own edge is in the graph (else None: each step
    # hides its pairs' edges), and the available products' rows (None: every product)
    popularity: torch.Tensor | None = dataclasses.field(init=False, repr=False, compare=False)
    pool: torch.Tensor | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.popularity = None if self.own is not None else popularity_features(
            self.graph.buys, self.graph.recent, self.graph.n_customers, self.graph.n_products)
        self.pool = None if self.available is None else torch.nonzero(self.available).flatten()

    def batch(self, size: int, rng: torch.Generator) -> torch.Tensor:
        n = self.pairs.shape[1]
        if self.weights is not None:
            return torch.multinomial(self.weights, min(size, n), replacement=True, generator=rng)
        return torch.randperm(n, generator=rng)[:size]


@dataclass
class SageTraining:
    """What :func:`train` returns: the network (at its best validation epoch, or its last without validation
    purchases), what it was trained with, and the training history."""
    model: SageModel
    spec: FeatureSpec  # the graph's input features
    content: torch.Tensor  # (n_products, d) float32 the products' content vectors (``data.hybrid``)
    similar: np.ndarray  # (2, E) int64 content edges source row, destination row
    history: list[float]  # the validation criterion per epoch
    validation: dict[str, float]  # the best epoch's validation numbers (:func:`validate`) and ``epoch``


def train(data: RecData, cfg: SageConfig, progress: Progress | None = None) -> SageTraining:
    """Train the network on the purchases before the validation window, early-stopping on that window; in a
    data-parallel fit, this rank's part of it (:func:`train_worker`)."""
    if len(data.purchases) and data.purchases["timestamp"].max() >= data.cutoff:
        raise ValueError(f"purchases at or after the cutoff {data.cutoff} would leak into training; "
                         "build the data with core.recs.contract.rec_data")
    if cfg.affinity not in ("cosine", "dot"):
        raise ValueError(f"unknown affinity '{cfg.affinity}': cosine or dot")
    training_mode(cfg, data.n_products)  # an unknown mode said before any work
    # the global seed draws the initial weights and the dropout masks, ``rng`` everything else, in this order
    torch.manual_seed(cfg.seed)
    rng = torch.Generator().manual_seed(cfg.seed)
    similar = content_edges(data.hybrid, data.products["group_id"].to_numpy(str), cfg.graph)
    spec = feature_spec(data, cfg.graph)
    # train on the graph as it stood before the validation window; early-stop on that window
    train_graph = build_graph(data, cfg.graph, before_days=cfg.validation_days, similar=similar, spec=spec)
    truth = some_customers(window_truth(data, cfg.validation_days), cfg.validation_customers, cfg.seed)
    tasks = training_tasks(data, train_graph, torch.from_numpy(similar), cfg)
    content = torch.from_numpy(np.ascontiguousarray(data.hybrid, dtype=np.float32))
    model = SageModel(train_graph.x_customer.shape[1], train_graph.x_product.shape[1], cfg, content.shape[1])
    model.standardise_with(train_graph.x_customer, train_graph.x_product)
    # the scales (how far to trust content, and the graph) move scale_lr times faster than the network: they settle
    # which part leads within the epochs early stopping leaves, where content is noise as where it is most of the
    # signal
    scales = [p for n, p in model.named_parameters() if n.startswith("log_")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("log_")]
    opt = torch.optim.Adam([{"params": rest}, {"params": scales, "lr": cfg.lr * cfg.scale_lr, "weight_decay": 0.0}],
                           lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_pairs = sum(t.pairs.shape[1] for t in tasks)
    best, best_state, waited = -1.0, None, 0
    history, validation = [], {}
    # standardised once, not at every step: every task's graph shares train_graph's features (training_tasks
    # gives each its own edges only), and the standardisation does not change during the fit
    inputs = model.standardise(train_graph.x_customer, train_graph.x_product)
    # Data-parallel (core.recs.dataparallel.worker): every rank draws the same task and batch from ``rng`` and takes its
    # shard of the batch; a step's negatives, dropout and neighbour sample come from the rank's own stream, as
    # their draws depend on the shard (one rank alone: ``rng`` itself, as the local fit has always drawn them).
    # Rank 0 validates and decides when to stop, for every rank.
    rank, world = worker()
    own = rng if world == 1 else torch.Generator().manual_seed(
        int(np.random.SeedSequence([cfg.seed, rank]).generate_state(1)[0]))
    # a step may leave parameters out (no variant edges in a neighbour sample, the scale of "dot" affinity)
    step = data_parallel(model, lambda task, batch: _step(model, content, inputs, task, batch, own, cfg),
                         find_unused_parameters=True)
    for epoch in range(cfg.epochs if n_pairs else 0):  # no purchases: content alone, untrained
        model.train()
        for _ in range(steps_per_epoch(n_pairs, cfg)):
            task = tasks[int(torch.randint(len(tasks), (1,), generator=rng))]
            batch = task.batch(cfg.batch_size, rng)
            if len(batch) < world:  # a rank without pairs has no loss; every rank skips alike
                continue
            loss = step(task, batch.tensor_split(world)[rank])
            opt.zero_grad()
            loss.backward()
            opt.step()
        stop = False
        if rank == 0:
            found = validate(model, content, train_graph, inputs, truth, cfg)
            history.append(found["criterion"])
            if progress:
                progress(f"training GraphSAGE (validation recall@10 {found['recall']:.4f}, cold items "
                         f"{found['cold_recall']:.4f})", epoch + 1, cfg.epochs)
            if found["criterion"] > best or not truth:
                best, waited, validation = found["criterion"], 0, found | {"epoch": epoch + 1}
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                waited += 1
                stop = waited >= cfg.patience
        if rank_zero_says(stop):
            break
    if best_state is not None and truth:  # with no validation purchases the last epoch stands
        model.load_state_dict(best_state)
    return SageTraining(model, spec, content, similar, history, validation)


def train_worker(config: dict) -> SageTraining:
    """One worker of a data-parallel fit (:meth:`core.executor.Executor.train`; ``config``: ``cfg`` the SageConfig,
    ``data`` the RecData): :func:`train` on this rank's shards; rank 0's is the fit.

    What data parallelism changes: DDP averages the ranks' gradients, so R workers take the steps of one batch of
    ``batch_size`` pairs, but a pair's in-batch negatives are its shard's products (the sampled negatives, drawn per
    rank, stay as many), and each rank's neighbour sample is its shard's. One worker is the local fit itself (same
    draws, same steps); two or more train on other draws and stop where rank 0's validation says, as good by the
    validation criterion within the tolerance tests/distributed/test_train.py states. In "full" mode every rank
    passes messages over the whole graph for its shard, so only "sampled" mode gains from more workers."""
    return train(config["data"], config["cfg"])


def steps_per_epoch(n_pairs: int, cfg: SageConfig) -> int:
    """Steps an epoch takes: enough batches to see every pair once, at least ``cfg.min_steps``, and at most
    ``cfg.max_steps`` (then a sample of the pairs) when that is positive, which wins over ``min_steps``."""
    steps = max(math.ceil(n_pairs / cfg.batch_size), cfg.min_steps)
    return min(steps, cfg.max_steps) if cfg.max_steps > 0 else steps


def some_customers(truth: dict[int, set[int]], most: int, seed: int = 0) -> dict[int, set[int]]:
    """``truth`` with at most ``most`` of its customers, drawn at random (``seed``) when there are more (0: all)."""
    if not 0 < most < len(truth):
        return truth
    kept = np.random.default_rng(seed).choice(np.fromiter(truth, dtype=np.int64), most, replace=False)
    return {int(c): truth[int(c)] for c in np.sort(kept)}


def window_truth(data: RecData, days: float) -> dict[int, set[int]]:
    """Customer row -> products bought in the last ``days`` before the cutoff."""
    keep = data.days_ago < days
    truth: dict[int, set[int]] = {}
    for c, p in zip(data.users[keep].tolist(), data.items[keep].tolist()):
        truth.setdefault(c, set()).add(p)
    return truth


def training_tasks(data: RecData, graph: Graph, similar: torch.Tensor, cfg: SageConfig) -> list[Task]:
    """What the model learns to predict, on graphs from before the validation window.

    ``"edges"``: every purchase edge of ``graph``, its own edge hidden from its messages.
    ``"windows"``: the purchases of each of ``n_windows`` consecutive ``window_days`` windows, from the
    graph as it stood when the window opened: the task the model faces at the cutoff, repeated back
    in time; a purchase never carries messages for itself because it lies in the graph's future.

    With ``negatives_on_sale`` (the default) negatives are drawn from the products somebody bought by the end
    of the task's window: a product first bought later, or never, may not have been on sale yet, and as a
    negative it teaches the model to push down the new products a later window buys. With the first repair's
    residual towers it did worse on the validation window (README): left out of the negatives, never-bought
    products drifted above everything; with content apart the graph's part cannot outweigh content that way.
    """
    first_bought = np.full(data.n_products, -np.inf, dtype=np.float32)  # days before the cutoff; -inf: never
    np.maximum.at(first_bought, data.items, data.days_ago)
    first_bought = torch.from_numpy(first_bought)

    def on_sale(days_before_cutoff: float) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        available = first_bought >= days_before_cutoff if cfg.negatives_on_sale else torch.ones(data.n_products,
                                                                                              dtype=torch.bool)
        return available, _incoming(similar[:, available[similar[0]]], data.n_products)

    if cfg.objective == "edges":
        weights = 0.5 ** (graph.days / cfg.recency_half_life) if cfg.recency_half_life else None
        available, neighbours = on_sale(cfg.validation_days)
        return [Task(graph, graph.buys, own=torch.arange(graph.buys.shape[1]), weights=weights,
                     sampler=_sampler(graph, cfg), log_q=_log_q(graph.buys[1], weights, graph.n_products),
                     available=available, neighbours=neighbours)]
    if cfg.objective != "windows":
        raise ValueError(f"unknown objective '{cfg.objective}': edges or windows")
    tasks = []
    for k in range(cfg.n_windows):
        opens = cfg.validation_days + (k + 1) * cfg.window_days  # days before the cutoff
        inside = (data.days_ago >= opens - cfg.window_days) & (data.days_ago < opens)
        pairs = np.unique(np.stack([data.users[inside], data.items[inside]]), axis=1)
        if not pairs.shape[1]:
            continue
        buys, days = purchase_edges(data, cfg.graph, before_days=opens)
        snapshot = dataclasses.replace(graph, buys=torch.from_numpy(buys), days=torch.from_numpy(days.copy()))
        snapshot.__dict__["similar_adj"] = graph.similar_adj  # share the content adjacency
        pairs = torch.from_numpy(pairs)
        available, neighbours = on_sale(opens - cfg.window_days)
        tasks.append(Task(snapshot, pairs, own=None, weights=None, sampler=_sampler(snapshot, cfg),
                          log_q=_log_q(pairs[1], None, graph.n_products), available=available,
                          neighbours=neighbours))
    return tasks or [Task(graph, torch.empty((2, 0), dtype=torch.long), None, None, None)]


def _sampler(graph: Graph, cfg: SageConfig) -> NeighbourSampler | None:
    if training_mode(cfg, graph.n_products) != "sampled":
        return None
    return NeighbourSampler({BUYS: graph.buys, REV_BUYS: graph.buys.flip(0), **graph.product_edges()},
                            {"customer": graph.n_customers, "product": graph.n_products}, cfg.fanouts)


def negatives(task: Task, products: torch.Tensor, recent: torch.Tensor, rng: torch.Generator, cfg: SageConfig
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(M,) negative product rows, drawn uniformly over the task's available products, among recent
    bestsellers (in proportion to ``recent`` (n_products,) purchase counts) and among the available content
    neighbours of the step's positives ``products``; and (n_products,) how many times each product is
    expected among them."""
    n = len(recent)
    pool = torch.arange(n) if task.pool is None else task.pool
    if not len(pool):
        pool = torch.arange(n)
    rows = [pool[torch.randint(len(pool), (cfg.random_negatives,), generator=rng)]]
    expected = torch.zeros(n)
    expected[pool] = cfg.random_negatives / len(pool)
    if cfg.bestseller_negatives and recent.sum() > 0:
        share = recent / recent.sum()
        rows.append(torch.multinomial(share, cfg.bestseller_negatives, replacement=True, generator=rng))
        expected += cfg.bestseller_negatives * share
    offsets, sources = task.neighbours
    degree = offsets[products + 1] - offsets[products]
    if cfg.neighbour_negatives and degree.sum() > 0:
        # a random positive that has neighbours, then one of its neighbours at random
        owners = products[degree > 0]
        pick = owners[torch.randint(len(owners), (cfg.neighbour_negatives,), generator=rng)]
        start, size = offsets[pick], offsets[pick + 1] - offsets[pick]
        rows.append(sources[start + (torch.rand(len(pick), generator=rng) * size).long().clamp(max=size - 1)])
        # P(draw = j) = mean over the positives with neighbours of [j is one of theirs] / their degree
        own_degree = degree[degree > 0]
        flat = sources[torch.repeat_interleave(offsets[owners], own_degree) + _ranges(own_degree)]
        weight = torch.repeat_interleave(1.0 / own_degree.float(), own_degree) / len(owners)
        expected += cfg.neighbour_negatives * torch.zeros(n).index_add_(0, flat, weight)
    return torch.cat(rows), expected


def _step(model: SageModel, content: torch.Tensor, inputs: tuple[torch.Tensor, torch.Tensor], task: Task,
          batch: torch.Tensor, rng: torch.Generator, cfg: SageConfig) -> torch.Tensor:
    """The sampled-softmax loss of one batch of positive pairs. Every candidate's logit is its affinity
    plus the prior minus log(how many times it is expected among the candidates: as a batch positive,
    and from each negative source), so the loss estimates a softmax over the whole catalogue. ``inputs``:
    the task graph's customer and product features through :meth:`SageModel.standardise`."""
    graph, sampler = task.graph, task.sampler
    x_c, x_p = inputs
    customers, products = task.pairs[:, batch]
    own = torch.zeros(graph.buys.shape[1], dtype=torch.bool)
    if task.own is not None:
        own[task.own[batch]] = True  # a pair's own edge never carries messages for it, nor counts in the prior
        popularity = popularity_features(graph.buys[:, ~own], graph.recent[~own], graph.n_customers,
                                         graph.n_products)
    else:
        popularity = task.popularity
    drawn, expected = negatives(task, products, popularity[:, 1].expm1(), rng, cfg)
    log_expected = (expected + len(batch) * task.log_q.exp()).log()
    weights = profile_weights(graph.days, cfg, graph.buys[0])  # each purchase's weight in its customer's profile
    # DropoutNet: positives and negatives alike lose their buyers; some steps hear no buyers at all
    candidates = torch.cat([products, drawn]).unique()
    dropped_p = candidates[torch.rand(len(candidates), generator=rng) < cfg.item_dropout]
    dropped_c = customers.unique()
    dropped_c = dropped_c[torch.rand(len(dropped_c), generator=rng) < cfg.customer_dropout]
    gone_c = own | torch.isin(graph.buys[0], dropped_c)
    gone_p = gone_c | torch.isin(graph.buys[1], dropped_p)
    if float(torch.rand((), generator=rng)) < cfg.content_only or not cfg.buyer_messages:
        gone_p = torch.ones_like(gone_p)
    if sampler is None:
        h_c, h_p = model(x_c, x_p, graph.buys[:, ~gone_p], graph.similar_adj, bought=graph.buys[:, ~gone_c].flip(0),
                         variants=graph.variant_adj, content=content, standardised=True,
                         bought_weight=None if weights is None else weights[~gone_c])
        at_c, at_p = customers, torch.arange(graph.n_products)
    else:
        seed_c = customers.unique()
        sub = sampler.sample({"customer": seed_c, "product": candidates}, {BUYS: gone_p, REV_BUYS: gone_c}, rng)
        # the seeds' content profiles from every purchase they made, as full-graph steps and inference see them,
        # not from the few the sampler kept (only the seeds' vectors enter the loss)
        mine = ~gone_c & torch.isin(graph.buys[0], seed_c)
        profile = torch.zeros(len(sub.nodes["customer"]), content.shape[1])
        profile[:len(seed_c)] = mean_content(content, torch.stack([graph.buys[1, mine],
                                                                    torch.searchsorted(seed_c, graph.buys[0, mine])]),
                                             len(seed_c), None if weights is None else weights[mine])
        h_c, h_p = model(x_c[sub.nodes["customer"]], x_p[sub.nodes["product"]], sub.edges[BUYS], sub.edges[SIMILAR],
                         sub.edges[REV_BUYS], sub.edges.get(VARIANT), content[sub.nodes["product"]], standardised=True,
                         profile=profile)
        at_c = torch.searchsorted(seed_c, customers)  # seeds come first, in sorted (unique) order
        at_p = torch.full((graph.n_products,), -1, dtype=torch.long)
        at_p[candidates] = torch.arange(len(candidates))
    correction = log_expected - model.prior(popularity)
    return logq_softmax_loss(h_c[at_c] * model.scale(), h_p[at_p[products]], correction[products], 1.0,
                             h_p[at_p[drawn]], correction[drawn], products, drawn)


@torch.no_grad()
def validate(model: SageModel, content: torch.Tensor, graph: Graph, inputs: tuple[torch.Tensor, torch.Tensor],
             truth: dict[int, set[int]], cfg: SageConfig) -> dict[str, float]:
    """The validation window's Recall@10 and cold-item Recall@10 at the prior weights that maximise their
    sum (``criterion``), and those weights: one for the customers with purchases before the window
    (``prior_weight``, from ``cfg.prior_weights``) and one for those with none (``new_prior_weight``, from
    ``cfg.new_prior_weights``: with nothing known of a person but a few attributes, what sells may be worth more).
    ``inputs``: ``graph``'s features through :meth:`SageModel.standardise`."""
    model.eval()
    nothing = {"criterion": 0.0, "recall": 0.0, "cold_recall": 0.0, "prior_weight": cfg.prior_weights[0],
               "new_prior_weight": cfg.new_prior_weights[0]}
    if not truth:
        return nothing
    h_c, h_p = model(*inputs, heard(graph.buys, cfg), graph.similar_adj, bought=graph.buys.flip(0),
                     variants=graph.variant_adj, content=content, standardised=True,
                     bought_weight=profile_weights(graph.days, cfg, graph.buys[0]), recentre=True)
    popularity = popularity_features(graph.buys, graph.recent, graph.n_customers, graph.n_products)
    prior = model.prior(popularity).numpy()
    if not (torch.isfinite(h_c).all() and torch.isfinite(h_p).all() and np.isfinite(prior).all()):
        return nothing  # a diverged epoch ranks nothing: early stopping keeps an earlier one
    rows = np.fromiter(truth, dtype=np.int64)
    bought = [np.fromiter(truth[r], dtype=np.int64) for r in rows.tolist()]
    cold = popularity[:, 0].numpy() == 0
    known = torch.bincount(graph.buys[0], minlength=graph.n_customers).numpy()[rows] > 0
    best = {}
    grids = {"known": cfg.prior_weights, "new": cfg.new_prior_weights}
    for weight, top in tops_with_prior(h_c[rows] * model.scale(), h_p, torch.from_numpy(prior),
                                       tuple(sorted(set(cfg.prior_weights) | set(cfg.new_prior_weights)))).items():
        for part, keep in (("known", known), ("new", ~known)):
            if keep.any() and weight in grids[part]:
                overall, cold_recall = validation_recalls(top[keep], [b for b, k in zip(bought, keep) if k], cold)
                recall = float(overall.mean())
                cold_mean = float(cold_recall.mean()) if len(cold_recall) else 0.0
                if part not in best or recall + cold_mean > best[part][0] + best[part][1]:
                    best[part] = (recall, cold_mean, float(weight), int(keep.sum()))
    (r, rc, w, n) = best.get("known", (0.0, 0.0, cfg.prior_weights[0], 0))
    (r_new, rc_new, w_new, n_new) = best.get("new", (0.0, 0.0, cfg.new_prior_weights[0], 0))
    recall, cold_recall = (r * n + r_new * n_new) / (n + n_new), (rc * n + rc_new * n_new) / (n + n_new)
    return {"criterion": recall + cold_recall, "recall": recall, "cold_recall": cold_recall, "prior_weight": w,
            "new_prior_weight": w_new, "new_recall": r_new}


def tops_with_prior(customers: torch.Tensor, products: torch.Tensor, prior: torch.Tensor, weights: tuple[float, ...],
                    k: int = 10) -> dict[float, np.ndarray]:
    """Per prior weight w, each customer's top k product rows (q, min(k, n_products)) by ``customers`` (q, d) ·
    ``products`` (n_products, d) + w * ``prior`` (n_products,), best first.

    One exact inner-product index (FAISS through PyG's ``MIPSKNNIndex``) over [product, prior], asked with
    [customer, w]: it scores in blocks and keeps each customer's best k as it scans. Score rows sorted in NumPy
    (``top_k``, in 64 MB batches) took 45 s against 7.6 s for 2,000 customers, a million products and 4 weights
    (2 cores). The vectors must be finite (FAISS pads with -1 what it cannot rank)."""
    index = MIPSKNNIndex(torch.cat([products, prior[:, None]], 1).float())
    return {weight: index.search(torch.cat([customers, torch.full((len(customers), 1), float(weight))], 1).float(),
                                 k).index.numpy() for weight in weights}


def _log_q(products: torch.Tensor, weights: torch.Tensor | None, n_products: int) -> torch.Tensor:
    """(n_products,) log of the chance that a drawn positive is each product (uniform or ``weights`` over
    the pairs whose product rows are ``products``); never-drawn products get a finite floor."""
    w = torch.ones(len(products)) if weights is None else weights.float()
    counts = torch.zeros(n_products).index_add_(0, products, w)
    return (counts / counts.sum().clamp_min(1e-12)).clamp_min(1e-12).log()


def _incoming(edges: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each product's content neighbours: (n + 1,) offsets into (E,) source rows, grouped by destination."""
    order = torch.argsort(edges[1], stable=True)
    counts = torch.bincount(edges[1], minlength=n)
    return torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]), edges[0][order]


def _ranges(sizes: torch.Tensor) -> torch.Tensor:
    """0..size-1 for each entry of ``sizes``, laid end to end."""
    return torch.arange(int(sizes.sum())) - torch.repeat_interleave(sizes.cumsum(0) - sizes, sizes)
