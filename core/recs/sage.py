"""GraphSAGE recommender on the customer–product graph (its network: :mod:`core.recs.sage_model`).

Inductive throughout: products are embedded from their content features, content edges and buyers;
customers from their attributes and what they bought; there are no id embeddings, so a product
nobody bought, a product added from a photo and a sentence, and a customer with no purchases all
get vectors by a forward pass, with no retraining.

A score has two parts (:class:`SageModel`):

- **personal affinity**: customer vector · product vector (cosine with a learned temperature by
  default, or the raw inner product), from inputs that say nothing about how often anything sold:
  content, attributes and the graph's messages, each input column standardised on the catalogue;
- **a popularity prior**, the same for every customer: a learned weighting of log(1 + all-time
  purchases) and log(1 + purchases in the last ``recent_days``), weighted at inference by
  ``prior_weight_`` for customers with purchases and ``new_prior_weight_`` for those without, both
  chosen on the validation window (0 drops it).

Before this split the degree counts were inputs beside unit-norm content vectors, and BPR against
uniform negatives learned "sold lately" as one customer-independent direction: every list held the
same ~30 recent sellers and a never-bought product could not climb past them.

Training (:meth:`SageRecommender.fit`):

- supervision: by default each 4-week window's purchases predicted from the graph as it stood when
  the window opened (``objective="windows"``, the task at the cutoff, repeated back in time);
- loss: a sampled softmax over the batch's products (in-batch negatives) plus negatives drawn
  uniformly from the catalogue, recent bestsellers and content neighbours of the positives (hard
  negatives), each candidate's logit corrected by the log of how many times it is expected among the
  candidates (log-Q, :func:`core.recs.two_tower.logq_softmax_loss`); the prior is added to every logit, so
  the affinity is free to learn taste rather than popularity;
- residual towers (default): a product is its content vector plus what the graph adds, a customer the
  mean content vector of what they bought plus the same, the graph's part starting at zero;
- DropoutNet: a share of the products in a step (positives and negatives alike) and of its customers
  lose their purchase neighbourhood, and a share of the steps runs with no buyer messages to any
  product at all, which is how a never-bought product looks at test time;
- early stopping and the prior's weight are chosen together on a validation window cut from the end
  of the training purchases, by Recall@10 plus Recall@10 on the products nobody had bought before it
  (so a list of bestsellers alone does not win). The final model then embeds everything with every
  purchase before the cutoff as messages, which an inductive model can do without retraining.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch_geometric.nn.pool import MIPSKNNIndex

from core.embeddings.backbone import fuse
from core.recs.graph import (BUYS, REV_BUYS, SIMILAR, VARIANT, Graph, NeighbourSampler, build_graph,
                        content_edges, customer_features, degree_features, feature_spec, new_node_sources,
                        product_features, purchase_edges)
from core.recs.metrics import ranking_metrics
from core.recs.contract import (ADD_PRODUCT, CUSTOMER_VECTORS, NO_REASON, POPULAR, PRODUCT_VECTOR, SAVES_STATE,
                                RecData, Recommender, top_k)
from core.progress import Progress
from core.recs.sage_model import SageConfig, SageModel, mean_content
from core.recs.two_tower import logq_softmax_loss


def popularity_features(buys: torch.Tensor, recent: torch.Tensor, n_customers: int, n_products: int
                        ) -> torch.Tensor:
    """(n_products, 2) float32 log(1 + purchase edges) and log(1 + recent purchase edges) per product, over
    ``buys`` (2, E) whose ``recent`` (E,) bool marks the recent ones."""
    return degree_features(buys, recent, n_customers, n_products)[1]


def validation_score(scores: np.ndarray, truth: list[np.ndarray], cold: np.ndarray, k: int = 10
                     ) -> tuple[float, float]:
    """Recall@k over all products and over cold products only (``cold`` (n_products,) bool: nobody bought
    them before the window; averaged over the customers who bought one), of (q, n_products) ``scores``
    against each customer's bought product rows ``truth``."""
    top, _ = top_k(scores, k)
    overall = ranking_metrics(top, truth, k)["recall"]
    cold_truth = [t[cold[t]] for t in truth]
    has = np.array([len(t) > 0 for t in cold_truth], dtype=bool)
    cold_recall = ranking_metrics(top[has], [t for t, h in zip(cold_truth, has) if h], k)["recall"] if has.any() \
        else np.zeros(0)
    return float(overall.mean()) if len(overall) else 0.0, float(cold_recall.mean()) if len(cold_recall) else 0.0


@dataclass
class _Task:
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

    def batch(self, size: int, rng: torch.Generator) -> torch.Tensor:
        n = self.pairs.shape[1]
        if self.weights is not None:
            return torch.multinomial(self.weights, min(size, n), replacement=True, generator=rng)
        return torch.randperm(n, generator=rng)[:size]


class SageRecommender(Recommender):
    """GraphSAGE recommendations: affinity (customer vector · product vector) plus the popularity prior.

    After :meth:`fit`: ``customer_vectors_`` (n_customers, width + 1) and ``product_vectors_`` (n_products,
    width + 1) float32, rows as in ``data_``, laid out so that their inner product is the whole score: the
    customer's is [scale * vector, prior weight], the product's [vector, prior]; ``prior_`` (n_products,)
    the learned prior; ``prior_weight_`` and ``new_prior_weight_`` (customers with and without purchases),
    chosen on the validation window; ``history_`` the validation
    criterion per epoch (Recall@10 + cold-item Recall@10 at the epoch's best prior weight) and ``validation_``
    the best epoch's numbers; ``best_epoch_``; ``train_s_``.
    """
    name = "graphsage"
    capabilities = frozenset({CUSTOMER_VECTORS, PRODUCT_VECTOR, ADD_PRODUCT, SAVES_STATE})

    def __init__(self, cfg: SageConfig = SageConfig()):
        self.cfg = cfg

    def cache_config(self) -> dict:
        return {"model": self.name, **asdict(self.cfg)}

    # ------------------------------------------------------------ training

    def fit(self, data: RecData, progress: Progress | None = None) -> "SageRecommender":
        cfg = self.cfg
        if len(data.purchases) and data.purchases["timestamp"].max() >= data.cutoff:
            raise ValueError(f"purchases at or after the cutoff {data.cutoff} would leak into training; "
                             "build the data with core.recs.contract.rec_data")
        if cfg.affinity not in ("cosine", "dot"):
            raise ValueError(f"unknown affinity '{cfg.affinity}': cosine or dot")
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed)
        rng = torch.Generator().manual_seed(cfg.seed)
        similar = content_edges(data.hybrid, data.products["group_id"].to_numpy(str), cfg.graph)
        self.spec_ = feature_spec(data, cfg.graph)
        # train on the graph as it stood before the validation window; early-stop on that window
        train_graph = build_graph(data, cfg.graph, before_days=cfg.validation_days, similar=similar, spec=self.spec_)
        truth = self._window_truth(data, cfg.validation_days)
        tasks = self._tasks(data, train_graph, torch.from_numpy(similar))
        self.content_ = torch.from_numpy(np.ascontiguousarray(data.hybrid, dtype=np.float32))
        self.model_ = SageModel(train_graph.x_customer.shape[1], train_graph.x_product.shape[1], cfg,
                                self.content_.shape[1])
        self.model_.standardise_with(train_graph.x_customer, train_graph.x_product)
        opt = torch.optim.Adam(self.model_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n_pairs = sum(t.pairs.shape[1] for t in tasks)
        best, best_state, waited = -1.0, None, 0
        self.history_, self.validation_, self.prior_weight_ = [], {}, 0.0
        for epoch in range(cfg.epochs if n_pairs else 0):  # no purchases: content alone, untrained
            self.model_.train()
            for _ in range(max(math.ceil(n_pairs / cfg.batch_size), cfg.min_steps)):
                task = tasks[int(torch.randint(len(tasks), (1,), generator=rng))]
                loss = self._step(task, task.batch(cfg.batch_size, rng), rng)
                opt.zero_grad()
                loss.backward()
                opt.step()
            found = self._validate(train_graph, truth)
            self.history_.append(found["criterion"])
            if progress:
                progress(f"training GraphSAGE (validation recall@10 {found['recall']:.4f}, cold items "
                         f"{found['cold_recall']:.4f})", epoch + 1, cfg.epochs)
            if found["criterion"] > best or not truth:
                best, waited, self.validation_ = found["criterion"], 0, found | {"epoch": epoch + 1}
                best_state = {k: v.detach().clone() for k, v in self.model_.state_dict().items()}
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
        if best_state is not None and truth:  # with no validation purchases the last epoch stands
            self.model_.load_state_dict(best_state)
        self.prior_weight_ = float(self.validation_.get("prior_weight", self.cfg.prior_weights[0]))
        self.new_prior_weight_ = float(self.validation_.get("new_prior_weight", self.cfg.prior_weights[0]))
        self.best_epoch_ = int(np.argmax(self.history_)) + 1 if self.history_ else 0
        self.validation_recall_ = float(self.validation_.get("recall", 0.0))
        self._embed(data, similar)
        if progress:
            progress("training GraphSAGE", cfg.epochs, cfg.epochs)
        self.train_s_ = time.perf_counter() - t0
        return self

    @staticmethod
    def _window_truth(data: RecData, days: float) -> dict[int, set[int]]:
        """Customer row -> products bought in the last ``days`` before the cutoff."""
        keep = data.days_ago < days
        truth: dict[int, set[int]] = {}
        for c, p in zip(data.users[keep].tolist(), data.items[keep].tolist()):
            truth.setdefault(c, set()).add(p)
        return truth

    def _tasks(self, data: RecData, graph: Graph, similar: torch.Tensor) -> list["_Task"]:
        """What the model learns to predict, on graphs from before the validation window.

        ``"edges"``: every purchase edge of ``graph``, its own edge hidden from its messages.
        ``"windows"``: the purchases of each of ``n_windows`` consecutive ``window_days`` windows, from the
        graph as it stood when the window opened: the task the model faces at the cutoff, repeated back
        in time; a purchase never carries messages for itself because it lies in the graph's future.

        With ``negatives_on_sale`` negatives are drawn from the products somebody bought by the end of the
        task's window: a product first bought later, or never, may not have been on sale yet, and as a
        negative it teaches the model to push down the new products a later window buys. Measured on the
        validation window it did worse (README): left out of the negatives, never-bought products, which
        have no buyers to hear, drift above everything. Off by default.
        """
        cfg = self.cfg
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
            return [_Task(graph, graph.buys, own=torch.arange(graph.buys.shape[1]), weights=weights,
                          sampler=self._sampler(graph), log_q=_log_q(graph.buys[1], weights, graph.n_products),
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
            tasks.append(_Task(snapshot, pairs, own=None, weights=None, sampler=self._sampler(snapshot),
                               log_q=_log_q(pairs[1], None, graph.n_products), available=available,
                               neighbours=neighbours))
        return tasks or [_Task(graph, torch.empty((2, 0), dtype=torch.long), None, None, None)]

    def _sampler(self, graph: Graph) -> NeighbourSampler | None:
        if self.cfg.mode != "sampled":
            return None
        return NeighbourSampler({BUYS: graph.buys, REV_BUYS: graph.buys.flip(0), **graph.product_edges()},
                                {"customer": graph.n_customers, "product": graph.n_products}, self.cfg.fanouts)

    def _negatives(self, task: "_Task", products: torch.Tensor, recent: torch.Tensor, rng: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(M,) negative product rows, drawn uniformly over the task's available products, among recent
        bestsellers (in proportion to ``recent`` (n_products,) purchase counts) and among the available content
        neighbours of the step's positives ``products``; and (n_products,) how many times each product is
        expected among them."""
        cfg, n = self.cfg, len(recent)
        pool = torch.arange(n) if task.available is None else torch.nonzero(task.available).flatten()
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

    def _step(self, task: "_Task", batch: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """The sampled-softmax loss of one batch of positive pairs. Every candidate's logit is its affinity
        plus the prior minus log(how many times it is expected among the candidates: as a batch positive,
        and from each negative source), so the loss estimates a softmax over the whole catalogue."""
        cfg, graph, sampler = self.cfg, task.graph, task.sampler
        customers, products = task.pairs[:, batch]
        own = torch.zeros(graph.buys.shape[1], dtype=torch.bool)
        if task.own is not None:
            own[task.own[batch]] = True  # a pair's own edge never carries messages for it, nor counts in the prior
        popularity = popularity_features(graph.buys[:, ~own], graph.recent[~own], graph.n_customers,
                                         graph.n_products)
        negatives, expected = self._negatives(task, products, popularity[:, 1].expm1(), rng)
        log_expected = (expected + len(batch) * task.log_q.exp()).log()
        # DropoutNet: positives and negatives alike lose their buyers; some steps hear no buyers at all
        candidates = torch.cat([products, negatives]).unique()
        dropped_p = candidates[torch.rand(len(candidates), generator=rng) < cfg.item_dropout]
        dropped_c = customers.unique()
        dropped_c = dropped_c[torch.rand(len(dropped_c), generator=rng) < cfg.customer_dropout]
        gone_c = own | torch.isin(graph.buys[0], dropped_c)
        gone_p = gone_c | torch.isin(graph.buys[1], dropped_p)
        if float(torch.rand((), generator=rng)) < cfg.content_only or not cfg.buyer_messages:
            gone_p = torch.ones_like(gone_p)
        if sampler is None:
            h_c, h_p = self.model_(graph.x_customer, graph.x_product, graph.buys[:, ~gone_p], graph.similar_adj,
                                   bought=graph.buys[:, ~gone_c].flip(0), variants=graph.variant_adj,
                                   content=self.content_)
            at_c, at_p = customers, torch.arange(graph.n_products)
        else:
            seed_c = customers.unique()
            sub = sampler.sample({"customer": seed_c, "product": candidates}, {BUYS: gone_p, REV_BUYS: gone_c}, rng)
            h_c, h_p = self.model_(graph.x_customer[sub.nodes["customer"]], graph.x_product[sub.nodes["product"]],
                                   sub.edges[BUYS], sub.edges[SIMILAR], sub.edges[REV_BUYS], sub.edges.get(VARIANT),
                                   self.content_[sub.nodes["product"]])
            at_c = torch.searchsorted(seed_c, customers)  # seeds come first, in sorted (unique) order
            at_p = torch.full((graph.n_products,), -1, dtype=torch.long)
            at_p[candidates] = torch.arange(len(candidates))
        correction = log_expected - self.model_.prior(popularity)
        return logq_softmax_loss(h_c[at_c] * self.model_.scale(), h_p[at_p[products]], correction[products], 1.0,
                                 h_p[at_p[negatives]], correction[negatives], products, negatives)

    def _heard(self, buys: torch.Tensor) -> torch.Tensor:
        """The purchase edges whose buyers products hear: all of them, or none without ``buyer_messages``."""
        return buys if self.cfg.buyer_messages else buys[:, :0]

    @torch.no_grad()
    def _validate(self, graph: Graph, truth: dict[int, set[int]]) -> dict[str, float]:
        """The validation window's Recall@10 and cold-item Recall@10 at the prior weights that maximise their
        sum (``criterion``), and those weights: one for the customers with purchases before the window
        (``prior_weight``) and one for those with none (``new_prior_weight``: with nothing known of a person
        but a few attributes, what sells may be worth more)."""
        self.model_.eval()
        if not truth:
            return {"criterion": 0.0, "recall": 0.0, "cold_recall": 0.0, "prior_weight": self.cfg.prior_weights[0],
                    "new_prior_weight": self.cfg.prior_weights[0]}
        h_c, h_p = self.model_(graph.x_customer, graph.x_product, self._heard(graph.buys), graph.similar_adj,
                               bought=graph.buys.flip(0), variants=graph.variant_adj, content=self.content_)
        popularity = popularity_features(graph.buys, graph.recent, graph.n_customers, graph.n_products)
        prior = self.model_.prior(popularity).numpy()
        rows = np.fromiter(truth, dtype=np.int64)
        affinity = (h_c[rows] @ h_p.T * self.model_.scale()).numpy()
        bought = [np.fromiter(truth[r], dtype=np.int64) for r in rows.tolist()]
        cold = popularity[:, 0].numpy() == 0
        known = torch.bincount(graph.buys[0], minlength=graph.n_customers).numpy()[rows] > 0
        best = {}
        for weight in self.cfg.prior_weights:
            scores = affinity + weight * prior[None, :]
            for part, keep in (("known", known), ("new", ~known)):
                if keep.any():
                    recall, cold_recall = validation_score(scores[keep], [b for b, k in zip(bought, keep) if k], cold)
                    if part not in best or recall + cold_recall > best[part][0] + best[part][1]:
                        best[part] = (recall, cold_recall, float(weight), int(keep.sum()))
        fallback = (0.0, 0.0, self.cfg.prior_weights[0], 0)
        (r, rc, w, n), (r_new, rc_new, w_new, n_new) = best.get("known", fallback), best.get("new", fallback)
        recall, cold_recall = (r * n + r_new * n_new) / (n + n_new), (rc * n + rc_new * n_new) / (n + n_new)
        return {"criterion": recall + cold_recall, "recall": recall, "cold_recall": cold_recall, "prior_weight": w,
                "new_prior_weight": w_new, "new_recall": r_new}

    @torch.no_grad()
    def _embed(self, data: RecData, similar: np.ndarray) -> None:
        """Every vector with every purchase before the cutoff as messages; keeps each layer's product
        states so a new customer is embedded without a full forward pass."""
        self.data_ = data
        self.graph_ = build_graph(data, self.cfg.graph, similar=similar, spec=self.spec_)
        self.groups_ = data.products["group_id"].to_numpy(str)
        # a customer nobody knows: every attribute missing
        self.new_customer_x_ = torch.from_numpy(customer_features(data.customers.iloc[:0], np.array([""]), self.spec_))
        self.model_.eval()
        graph = self.graph_
        h_c, h_p = self.model_.inputs(graph.x_customer, graph.x_product)
        self.product_states_ = [h_p]
        for i in range(self.cfg.layers):
            h_c, h_p = self.model_.layer(i, h_c, h_p, self._heard(graph.buys), graph.similar_adj,
                                         bought=graph.buys.flip(0), variants=graph.variant_adj)
            self.product_states_.append(h_p)
        if self.cfg.residual:
            h_c, h_p = h_c + mean_content(self.content_, graph.buys.flip(0), len(h_c)), h_p + self.content_
        popularity = popularity_features(graph.buys, graph.recent, graph.n_customers, graph.n_products)
        self.scale_ = float(self.model_.scale())
        self.prior_ = self.model_.prior(popularity).numpy().astype(np.float32)
        has_purchases = torch.bincount(graph.buys[0], minlength=graph.n_customers).numpy() > 0
        self.customer_vectors_ = self._customer_row(self.model_.finish(h_c), has_purchases)
        self.product_vectors_ = np.hstack([self.model_.finish(h_p).numpy(), self.prior_[:, None]]).astype(np.float32)
        self.index_ = MIPSKNNIndex(torch.from_numpy(self.product_vectors_))

    def _customer_row(self, vectors: torch.Tensor, has_purchases: np.ndarray) -> np.ndarray:
        """(q, width + 1) float32 [scale * vector, prior weight]: the customer's side of the whole score, the
        weight ``prior_weight_`` for a customer with purchases (``has_purchases`` (q,) bool), else
        ``new_prior_weight_``."""
        weight = np.where(has_purchases, self.prior_weight_, self.new_prior_weight_).astype(np.float32)
        return np.hstack([vectors.numpy() * self.scale_, weight[:, None]]).astype(np.float32)

    # ------------------------------------------------------------ cache

    def state_arrays(self) -> dict[str, np.ndarray]:
        state = {f"param.{k}": v.numpy() for k, v in self.model_.state_dict().items()}
        return state | {"history": np.asarray(self.history_, dtype=np.float32), "train_s": np.float64(self.train_s_),
                        "prior_weight": np.float64(self.prior_weight_),
                        "new_prior_weight": np.float64(self.new_prior_weight_),
                        "validation": np.array([self.validation_.get(k, np.nan) for k in VALIDATION_KEYS])}

    def load_state(self, data: RecData, arrays: dict[str, np.ndarray]) -> "SageRecommender":
        params = {k[len("param."):]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
                  if k.startswith("param.")}
        similar = content_edges(data.hybrid, data.products["group_id"].to_numpy(str), self.cfg.graph)
        self.spec_ = feature_spec(data, self.cfg.graph)
        graph = build_graph(data, self.cfg.graph, similar=similar, spec=self.spec_)
        self.content_ = torch.from_numpy(np.ascontiguousarray(data.hybrid, dtype=np.float32))
        self.model_ = SageModel(graph.x_customer.shape[1], graph.x_product.shape[1], self.cfg, self.content_.shape[1])
        self.model_.load_state_dict(params)
        self.history_ = arrays["history"].tolist()
        self.best_epoch_ = int(np.argmax(self.history_)) + 1 if self.history_ else 0
        self.prior_weight_ = float(arrays["prior_weight"])
        self.new_prior_weight_ = float(arrays["new_prior_weight"])
        self.validation_ = {k: float(v) for k, v in zip(VALIDATION_KEYS, arrays["validation"]) if np.isfinite(v)}
        self.validation_recall_ = float(self.validation_.get("recall", 0.0))
        self.train_s_ = float(arrays["train_s"])
        self._embed(data, similar)
        return self

    # ------------------------------------------------------------ inference

    def item_vectors(self) -> np.ndarray:
        return self.product_vectors_

    def customer_vectors(self) -> np.ndarray:
        return self.customer_vectors_

    @torch.no_grad()
    def _leaf(self, history: np.ndarray, customer_id: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """A customer as a new leaf node over liked product rows (product states stay as they are): the
        distinct liked rows and the customer's state (1, out) (with the residual mean content of the liked
        products), before :meth:`SageModel.finish`."""
        row = self.data_.customer_row.get(customer_id) if customer_id is not None else None
        liked = torch.as_tensor(np.unique(np.asarray(history, dtype=np.int64)))
        static = self.graph_.x_customer[[row]] if row is not None else self.new_customer_x_
        h_c = self.model_.inputs(static, self.graph_.x_product[:0])[0]
        for i in range(self.cfg.layers):
            h_c = self.model_.to_customer[i]((self.product_states_[i][liked], h_c), _to_one(len(liked)))
            if i < self.cfg.layers - 1:
                h_c = F.relu(h_c)
        if self.cfg.residual and len(liked):
            h_c = h_c + self.content_[liked].mean(0, keepdim=True)
        return liked, h_c

    def customer_vector(self, history: np.ndarray, customer_id: str | None = None) -> np.ndarray:
        """(width + 1,) vector of a customer given as liked product rows (may be empty) and, if known, their id
        (attributes). A known customer with their own history is a lookup; anyone else is embedded as a
        new leaf node, their likes as purchases."""
        row = self.data_.customer_row.get(customer_id) if customer_id is not None else None
        if row is not None and np.array_equal(np.unique(np.asarray(history, dtype=np.int64)),
                                              np.unique(self.data_.history(customer_id))):
            return self.customer_vectors_[row]
        liked, h = self._leaf(history, customer_id)
        return self._customer_row(self.model_.finish(h), np.array([len(liked) > 0]))[0]

    @torch.no_grad()
    def explain(self, history: np.ndarray, rows: np.ndarray, customer_id: str | None = None) -> np.ndarray:
        """The score's parts (:meth:`parts`): each liked product's share of a product's affinity is exact; the
        prior is the other named part. The liked product with the largest share, or :data:`POPULAR` where the
        weighted prior lifts the product more than every share; :data:`NO_REASON` where there is no history
        and the prior adds nothing."""
        rows = np.asarray(rows, dtype=np.int64)
        liked, messages, _ = self.parts(history, customer_id)
        prior = self.prior_[rows] * (self.prior_weight_ if len(liked) else self.new_prior_weight_)
        if not len(liked):
            return np.where(prior > 0, POPULAR, NO_REASON).astype(np.int64)
        share = self.product_vectors_[rows, :-1] @ messages.T  # (len(rows), n_liked)
        best = share.argmax(axis=1)
        popular = (prior > 0) & (prior > share[np.arange(len(rows)), best])  # the prior lifted it more than any like
        return np.where(popular, POPULAR, liked[best]).astype(np.int64)

    @torch.no_grad()
    def parts(self, history: np.ndarray, customer_id: str | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A customer's side of the affinity split by where it comes from: the distinct liked rows (n,), each
        one's part (n, width) and the rest (width,) (attributes, earlier layers, biases); parts and rest sum
        to the customer's vector before its prior weight (``customer_vector(...)[:-1]``). The last layer's
        message from each liked product, and its share of the residual mean content, are linear in that
        product's state, and the cosine's normalisation is one factor for all of them."""
        liked, h = self._leaf(history, customer_id)
        factor = self.scale_ / float(h.norm().clamp_min(1e-12)) if self.cfg.affinity == "cosine" else 1.0
        if not len(liked):
            return liked.numpy(), np.zeros((0, h.shape[1]), np.float32), (h[0] * factor).numpy()
        last = self.model_.to_customer[self.cfg.layers - 1]
        messages = self.product_states_[-2][liked] @ last.lin_l.weight.T
        if self.cfg.residual:
            messages = messages + self.content_[liked]  # the residual mean of the liked products' content
        messages = messages / len(liked)  # mean aggregation: each liked product's part of the customer's state
        rest = h[0] - messages.sum(0)
        return liked.numpy(), (messages * factor).numpy(), (rest * factor).numpy()

    def recommend(self, customer_ids, k, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by the whole score through FAISS (PyG's ``MIPSKNNIndex``), excluded rows dropped."""
        rows = [self.data_.customer_row.get(c) for c in customer_ids]
        if any(r is None for r in rows):
            return super().recommend(customer_ids, k, exclude)
        return self._search(self.customer_vectors_[rows], k, exclude)

    def recommend_histories(self, histories, k, customer_ids=None, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        ids = list(customer_ids) if customer_ids is not None else [None] * len(histories)
        return self._search(np.stack([self.customer_vector(h, c) for h, c in zip(histories, ids)]), k, exclude)

    def _search(self, vectors: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        links = None
        if exclude is not None:
            pairs = [(i, int(r)) for i, rows in enumerate(exclude) for r in np.unique(rows)]
            links = torch.tensor(pairs, dtype=torch.long).T if pairs else None
        out = self.index_.search(torch.from_numpy(np.ascontiguousarray(vectors, np.float32)), k, exclude_links=links)
        return out.index.numpy().astype(np.int64), out.score.numpy().astype(np.float32)

    def score(self, customer_ids) -> np.ndarray:
        rows = [self.data_.customer_row.get(c) for c in customer_ids]
        if all(r is not None for r in rows):
            return self.customer_vectors_[rows] @ self.product_vectors_.T
        return super().score(customer_ids)

    def score_histories(self, histories, customer_ids=None) -> np.ndarray:
        ids = list(customer_ids) if customer_ids is not None else [None] * len(histories)
        vectors = np.stack([self.customer_vector(h, c) for h, c in zip(histories, ids)])
        return vectors @ self.product_vectors_.T

    def product_vector(self, image: np.ndarray | None, text: np.ndarray, attributes: dict[str, str] | None = None,
                       has_image: bool = True, hide_row: int | None = None) -> np.ndarray:
        """(width + 1,) vector of a product added from a photo and a sentence (their (d,) backbone vectors) and
        its attributes (``group_id`` among them when it is a colour variant of a catalogue product): a new
        node with exactly the edges a catalogue product gets (:func:`core.recs.graph.new_node_sources`) and no
        buyers; its prior is a never-bought product's. ``hide_row`` leaves a catalogue product out of the
        new node's neighbours, so that product can be removed and added back (its vector is then
        reproduced when nobody bought it; the other products' states still carry what it told them)."""
        return self._new_node(image, text, attributes, has_image, hide_row)[0]

    @torch.no_grad()
    def _new_node(self, image: np.ndarray | None, text: np.ndarray, attributes: dict[str, str] | None,
                  has_image: bool, hide_row: int | None) -> tuple[np.ndarray, list[torch.Tensor], np.ndarray]:
        """The new node's vector (see :meth:`product_vector`), its state after each layer (1, hidden), as in
        ``product_states_``, and its (d,) content vector."""
        data, cfg = self.data_, self.cfg.graph
        attributes = attributes or {}
        image = np.asarray(image, np.float32)[None] if has_image else np.zeros((1, data.image.shape[1]), np.float32)
        text = np.asarray(text, np.float32)[None]
        frame = pd.DataFrame({c: [str(attributes.get(c, ""))] for c in self.spec_.product_vocab})
        x_p = torch.from_numpy(product_features(frame, image, text, np.array([has_image]), self.spec_))
        hybrid = fuse(image, text, data.hybrid_weight, np.array([has_image]))[0].astype(np.float32)
        content, siblings = new_node_sources(data.hybrid, hybrid, self.groups_, str(attributes.get("group_id", "")),
                                             cfg, hide_row)
        h = self.model_.inputs(self.graph_.x_customer[:0], x_p)[1]
        states, no_buyers = [h], torch.empty((2, 0), dtype=torch.long)
        for i in range(self.cfg.layers):
            h = self.model_.to_product[i]((torch.zeros(0, h.shape[1]), h), no_buyers) + \
                self.model_.similar[i]((self.product_states_[i][torch.as_tensor(content)], h), _to_one(len(content)))
            if cfg.variant_relation:  # the catalogue's pass adds the variant term (its bias at least) to every product
                h = h + self.model_.variant[i]((self.product_states_[i][torch.as_tensor(siblings)], h),
                                               _to_one(len(siblings)))
            if i < self.cfg.layers - 1:
                h = F.relu(h)
            states.append(h)
        if self.cfg.residual:
            h = h + torch.from_numpy(hybrid[None])
        never_bought = float(self.model_.prior(torch.zeros(1, 2))[0])
        vector = np.append(self.model_.finish(h)[0].numpy(), np.float32(never_bought)).astype(np.float32)
        return vector, states, hybrid

    def add_product(self, product_id: str, image: np.ndarray | None, text: np.ndarray | None,
                    attributes: dict[str, str] | None = None, has_image: bool = True) -> int:
        """Put a new product among the candidates without retraining: its :meth:`product_vector` is appended
        to ``product_vectors_`` and the FAISS index, its states to ``product_states_`` (so it can be liked and
        named as a reason). Returns its row (results and scores now include it); the caller maps rows past the
        catalogue to ``product_id`` (two-tower's signature, so both add alike). The graph and the other
        products' vectors stay as trained: the new node has no buyers yet."""
        if text is None and image is None:
            raise ValueError("a product needs a photo or a sentence vector")
        has_image = has_image and image is not None
        text = text if text is not None else image  # photos and sentences share the backbone's space
        vector, states, hybrid = self._new_node(image if has_image else None, text, attributes, has_image, None)
        self.index_.add(torch.from_numpy(vector[None].astype(np.float32)))
        self.product_vectors_ = np.vstack([self.product_vectors_, vector[None]])
        self.prior_ = np.append(self.prior_, vector[-1]).astype(np.float32)
        self.product_states_ = [torch.cat([known, new]) for known, new in zip(self.product_states_, states)]
        self.content_ = torch.cat([self.content_, torch.from_numpy(hybrid[None])])
        return len(self.product_vectors_) - 1


VALIDATION_KEYS = ("criterion", "recall", "cold_recall", "prior_weight", "new_prior_weight", "new_recall", "epoch")


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


def _to_one(n: int) -> torch.Tensor:
    """Edges (2, n) from n source rows into one destination node."""
    return torch.stack([torch.arange(n), torch.zeros(n, dtype=torch.long)])
