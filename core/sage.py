"""GraphSAGE recommender on the customer–product graph (PyTorch Geometric ``SAGEConv``), trained with BPR.

Inductive throughout: products are embedded from their content features, content edges and buyers;
customers from their attributes and what they bought; there are no id embeddings, so a product
nobody bought, a product added from a photo and a sentence, and a customer with no purchases all
get vectors by a forward pass, with no retraining.

Training (:meth:`SageRecommender.fit`):

- positives are purchase edges; each BPR pair has ``n_negatives`` products drawn uniformly from the
  whole catalogue, so never-bought products are negatives, not merely absent;
- a training pair's own purchase never carries messages for it (removed from the message graph, as
  PinSage's sampler does);
- DropoutNet-style, a share of the batch's products and customers lose their whole purchase
  neighbourhood for that step, so an embedding from content (or attributes) alone is what the model
  learns to handle: that is how a never-bought product or a new customer looks at test time;
- the weights are chosen on a validation window cut from the end of the training purchases (early
  stopping on its Recall@10, full ranking); the supervision and message graph stop before that window.
  The final model then embeds everything with every purchase before the cutoff as messages, which an
  inductive model can do without retraining.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import SAGEConv
from torch_geometric.nn.pool import MIPSKNNIndex

from core.embed import fuse
from core.graph import (BUYS, REV_BUYS, SIMILAR, VARIANT, Graph, GraphConfig, NeighbourSampler, build_graph,
                        content_edges, customer_features, degree_features, feature_spec, product_features,
                        purchase_edges)
from core.receval import ranking_metrics
from core.recommend import Progress, RecData, Recommender, top_k


@dataclass(frozen=True)
class SageConfig:
    graph: GraphConfig = field(default_factory=GraphConfig)
    hidden: int = 64
    out: int = 64
    layers: int = 2
    dropout: float = 0.1
    loss: str = "bpr"  # "bpr" or "bce"
    n_negatives: int = 4  # uniform negatives over the whole catalogue per positive
    batch_size: int = 4096  # positive edges per step; a full-graph step costs the same whatever its size
    epochs: int = 30  # an upper bound: early stopping on the validation window picks the epoch
    min_steps: int = 10  # steps per epoch at least, so a small catalogue still gets enough updates
    patience: int = 5  # epochs without a better validation Recall@10 before stopping
    lr: float = 0.005
    weight_decay: float = 1e-5
    item_dropout: float = 0.5  # share of a batch's products whose purchase neighbourhood is hidden (DropoutNet)
    customer_dropout: float = 0.2  # likewise for customers: learns the attributes-only new customer
    validation_days: float = 28.0  # the window cut from the end of the training purchases for early stopping
    # Supervision pairs drawn with weight 0.5 ** (age / half-life), so recent tastes and sellers count more
    # (0: every purchase alike). Chosen on the validation window (README).
    recency_half_life: float = 0.0  # with objective "edges"
    # "windows": learn to predict each window's purchases from the graph before it (the test's task);
    # "edges": reconstruct any purchase edge from the rest of the graph. Chosen on the validation window.
    objective: str = "windows"
    window_days: float = 28.0
    n_windows: int = 12
    cosine_scale: float = 0.0  # 0: scores are inner products; else scale * cosine
    mode: str = "full"  # "full": full-graph message passing per step; "sampled": neighbour-sampled mini-batches
    fanouts: tuple[int, ...] = (15, 10)  # sampled mode: neighbours per node and edge type, per hop
    seed: int = 0


class SageModel(nn.Module):
    """Input projections, then ``layers`` rounds of SAGEConv per edge type (summed per node type).

    Shapes: ``x_c`` (n_c, f_c), ``x_p`` (n_p, f_p); edges (2, E) source row, destination row.
    Returns customer (n_c, out) and product (n_p, out) vectors; a score is their inner product.
    """

    def __init__(self, f_customer: int, f_product: int, cfg: SageConfig):
        super().__init__()
        self.cfg = cfg
        self.in_c = nn.Linear(f_customer, cfg.hidden)
        self.in_p = nn.Linear(f_product, cfg.hidden)
        dims = [cfg.hidden] * cfg.layers + [cfg.out]
        self.to_customer = nn.ModuleList([SAGEConv(dims[i], dims[i + 1]) for i in range(cfg.layers)])
        self.to_product = nn.ModuleList([SAGEConv(dims[i], dims[i + 1]) for i in range(cfg.layers)])
        # content messages add to the buyer messages; the product's own (root) term is counted once
        self.similar = nn.ModuleList([SAGEConv(dims[i], dims[i + 1], root_weight=False) for i in range(cfg.layers)])
        self.variant = nn.ModuleList([SAGEConv(dims[i], dims[i + 1], root_weight=False) for i in range(cfg.layers)])

    def inputs(self, x_c: torch.Tensor, x_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.relu(self.in_c(x_c)), F.relu(self.in_p(x_p))

    def layer(self, i: int, h_c: torch.Tensor, h_p: torch.Tensor, buys: torch.Tensor, similar: torch.Tensor,
              bought: torch.Tensor | None = None, variants: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """One round: customers hear the products they bought (``bought``, product -> customer; by default
        ``buys`` reversed); products hear their buyers (``buys``), content neighbours (``similar``) and
        colour variants (``variants``, if given)."""
        new_c = self.to_customer[i]((h_p, h_c), buys.flip(0) if bought is None else bought)
        new_p = self.to_product[i]((h_c, h_p), buys) + self.similar[i]((h_p, h_p), similar)
        if variants is not None:
            new_p = new_p + self.variant[i]((h_p, h_p), variants)
        if i < self.cfg.layers - 1:
            new_c = F.dropout(F.relu(new_c), self.cfg.dropout, self.training)
            new_p = F.dropout(F.relu(new_p), self.cfg.dropout, self.training)
        return new_c, new_p

    def forward(self, x_c: torch.Tensor, x_p: torch.Tensor, buys: torch.Tensor, similar: torch.Tensor,
                bought: torch.Tensor | None = None, variants: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h_c, h_p = self.inputs(x_c, x_p)
        for i in range(self.cfg.layers):
            h_c, h_p = self.layer(i, h_c, h_p, buys, similar, bought, variants)
        return self.finish(h_c), self.finish(h_p)

    def finish(self, h: torch.Tensor) -> torch.Tensor:
        """Final vectors: as they are (scores are inner products), or on a sphere of radius
        sqrt(cosine_scale) (scores are scaled cosines, so no product wins on its vector's length)."""
        return F.normalize(h, dim=-1) * self.cfg.cosine_scale ** 0.5 if self.cfg.cosine_scale else h


def _features(graph: Graph, buys: torch.Tensor, recent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Static features with the degree features of the message-carrying purchase edges ``buys``."""
    deg_c, deg_p = degree_features(buys, recent, graph.n_customers, graph.n_products)
    return torch.cat([graph.x_customer, deg_c], 1), torch.cat([graph.x_product, deg_p], 1)


def pair_loss(pos: torch.Tensor, neg: torch.Tensor, kind: str = "bpr") -> torch.Tensor:
    """Ranking loss for (B,) positive and (B, n) negative scores: BPR, -log σ(pos - neg), or BCE."""
    if kind == "bpr":
        return -F.logsigmoid(pos[:, None] - neg).mean()
    if kind == "bce":
        return F.softplus(-pos).mean() + F.softplus(neg).mean()
    raise ValueError(f"unknown loss '{kind}': bpr or bce")


def recall_at_k(customer_vectors: np.ndarray, product_vectors: np.ndarray, truth: dict[int, set[int]],
                k: int = 10) -> float:
    """Mean over customers in ``truth`` of |top-k ∩ bought| / |bought|, ranking every product."""
    if not truth:
        return 0.0
    rows = np.fromiter(truth, dtype=np.int64)
    top, _ = top_k(customer_vectors[rows] @ product_vectors.T, k)
    bought = [np.fromiter(truth[r], dtype=np.int64) for r in rows.tolist()]
    return float(ranking_metrics(top, bought, k)["recall"].mean())


@dataclass
class _Task:
    """Training pairs to predict and the graph whose messages predict them."""
    graph: Graph
    pairs: torch.Tensor  # (2, P) customer row, product row
    own: torch.Tensor | None  # (P,) each pair's own edge in graph.buys, hidden from its messages; None: not in it
    weights: torch.Tensor | None  # (P,) sampling weights; None: uniform
    sampler: NeighbourSampler | None

    def batch(self, size: int, rng: torch.Generator) -> torch.Tensor:
        n = self.pairs.shape[1]
        if self.weights is not None:
            return torch.multinomial(self.weights, min(size, n), replacement=True, generator=rng)
        return torch.randperm(n, generator=rng)[:size]


class SageRecommender(Recommender):
    """GraphSAGE recommendations: (customer vector) · (product vector) over every product.

    After :meth:`fit`: ``customer_vectors_`` (n_customers, out) and ``product_vectors_`` (n_products, out)
    float32, rows as in ``data_``; ``history_`` of validation Recall@10 per epoch; ``best_epoch_``;
    ``train_s_``.
    """
    name = "graphsage"

    def __init__(self, cfg: SageConfig = SageConfig()):
        self.cfg = cfg

    def cache_config(self) -> dict:
        return {"model": self.name, **asdict(self.cfg)}

    # ------------------------------------------------------------ training

    def fit(self, data: RecData, progress: Progress | None = None) -> "SageRecommender":
        cfg = self.cfg
        if len(data.purchases) and data.purchases["timestamp"].max() >= data.cutoff:
            raise ValueError(f"purchases at or after the cutoff {data.cutoff} would leak into training; "
                             "build the data with core.recommend.rec_data")
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed)
        rng = torch.Generator().manual_seed(cfg.seed)
        similar = content_edges(data.hybrid, data.products["group_id"].to_numpy(str), cfg.graph)
        self.spec_ = feature_spec(data, cfg.graph)
        # train on the graph as it stood before the validation window; early-stop on that window
        train_graph = build_graph(data, cfg.graph, before_days=cfg.validation_days, similar=similar, spec=self.spec_)
        truth = self._window_truth(data, cfg.validation_days)
        tasks = self._tasks(data, train_graph)
        x_c, x_p = _features(train_graph, train_graph.buys, train_graph.recent)
        self.model_ = SageModel(x_c.shape[1], x_p.shape[1], cfg)
        opt = torch.optim.Adam(self.model_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n_pairs = sum(t.pairs.shape[1] for t in tasks)
        best, best_state, waited = -1.0, None, 0
        self.history_ = []
        for epoch in range(cfg.epochs if n_pairs else 0):  # no purchases: content alone, untrained
            self.model_.train()
            for _ in range(max(math.ceil(n_pairs / cfg.batch_size), cfg.min_steps)):
                task = tasks[int(torch.randint(len(tasks), (1,), generator=rng))]
                loss = self._step(task, task.batch(cfg.batch_size, rng), rng)
                opt.zero_grad()
                loss.backward()
                opt.step()
            score = self._validate(train_graph, truth)
            self.history_.append(score)
            if progress:
                progress(f"training GraphSAGE (validation recall@10 {score:.4f})", epoch + 1, cfg.epochs)
            if score > best or not truth:
                best, waited = score, 0
                best_state = {k: v.detach().clone() for k, v in self.model_.state_dict().items()}
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
        if best_state is not None and truth:  # with no validation purchases the last epoch stands
            self.model_.load_state_dict(best_state)
        self.best_epoch_ = int(np.argmax(self.history_)) + 1 if self.history_ else 0
        self.validation_recall_ = max(self.history_, default=0.0)
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

    def _tasks(self, data: RecData, graph: Graph) -> list["_Task"]:
        """What the model learns to predict, on graphs from before the validation window.

        ``"edges"``: every purchase edge of ``graph``, its own edge hidden from its messages.
        ``"windows"``: the purchases of each of ``n_windows`` consecutive ``window_days`` windows, from the
        graph as it stood when the window opened: the task the model faces at the cutoff, repeated back
        in time; a purchase never carries messages for itself because it lies in the graph's future.
        """
        cfg = self.cfg
        if cfg.objective == "edges":
            weights = 0.5 ** (graph.days / cfg.recency_half_life) if cfg.recency_half_life else None
            return [_Task(graph, graph.buys, own=torch.arange(graph.buys.shape[1]), weights=weights,
                          sampler=self._sampler(graph))]
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
            tasks.append(_Task(snapshot, torch.from_numpy(pairs), own=None, weights=None,
                               sampler=self._sampler(snapshot)))
        return tasks or [_Task(graph, torch.empty((2, 0), dtype=torch.long), None, None, None)]

    def _sampler(self, graph: Graph) -> NeighbourSampler | None:
        if self.cfg.mode != "sampled":
            return None
        return NeighbourSampler({BUYS: graph.buys, REV_BUYS: graph.buys.flip(0), **graph.product_edges()},
                                {"customer": graph.n_customers, "product": graph.n_products}, self.cfg.fanouts)

    def _step(self, task: "_Task", batch: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        cfg, graph, sampler = self.cfg, task.graph, task.sampler
        customers, products = task.pairs[:, batch]
        negatives = torch.randint(graph.n_products, (len(batch), cfg.n_negatives), generator=rng)
        hidden = torch.zeros(graph.buys.shape[1], dtype=torch.bool)
        if task.own is not None:
            hidden[task.own[batch]] = True  # a pair's own edge never carries messages for it
        dropped_p = products[torch.rand(len(products), generator=rng) < cfg.item_dropout]
        dropped_c = customers[torch.rand(len(customers), generator=rng) < cfg.customer_dropout]
        hidden |= torch.isin(graph.buys[1], dropped_p) | torch.isin(graph.buys[0], dropped_c)
        buys = graph.buys[:, ~hidden]
        x_c, x_p = _features(graph, buys, graph.recent[~hidden])
        if sampler is None:
            h_c, h_p = self.model_(x_c, x_p, buys, graph.similar_adj, variants=graph.variant_adj)
            pos = (h_c[customers] * h_p[products]).sum(-1)
            neg = (h_c[customers][:, None, :] * h_p[negatives]).sum(-1)
            return pair_loss(pos, neg, cfg.loss)
        seed_c = customers.unique()
        seed_p = torch.cat([products, negatives.flatten()]).unique()
        sub = sampler.sample({"customer": seed_c, "product": seed_p}, {BUYS: hidden, REV_BUYS: hidden}, rng)
        h_c, h_p = self.model_(x_c[sub.nodes["customer"]], x_p[sub.nodes["product"]], sub.edges[BUYS],
                               sub.edges[SIMILAR], sub.edges[REV_BUYS], sub.edges.get(VARIANT))
        lc = torch.searchsorted(seed_c, customers)  # seeds come first, in sorted (unique) order
        pos = (h_c[lc] * h_p[torch.searchsorted(seed_p, products)]).sum(-1)
        neg = (h_c[lc][:, None, :] * h_p[torch.searchsorted(seed_p, negatives)]).sum(-1)
        return pair_loss(pos, neg, cfg.loss)

    @torch.no_grad()
    def _validate(self, graph: Graph, truth: dict[int, set[int]]) -> float:
        self.model_.eval()
        x_c, x_p = _features(graph, graph.buys, graph.recent)
        h_c, h_p = self.model_(x_c, x_p, graph.buys, graph.similar_adj, variants=graph.variant_adj)
        return recall_at_k(h_c.numpy(), h_p.numpy(), truth)

    @torch.no_grad()
    def _embed(self, data: RecData, similar: np.ndarray) -> None:
        """Every vector with every purchase before the cutoff as messages; keeps each layer's product
        states so a new customer is embedded without a full forward pass."""
        self.data_ = data
        self.graph_ = build_graph(data, self.cfg.graph, similar=similar, spec=self.spec_)
        # a customer nobody knows: every attribute missing
        self.new_customer_x_ = torch.from_numpy(customer_features(data.customers.iloc[:0], np.array([""]), self.spec_))
        self.model_.eval()
        x_c, x_p = _features(self.graph_, self.graph_.buys, self.graph_.recent)
        h_c, h_p = self.model_.inputs(x_c, x_p)
        self.product_states_ = [h_p]
        for i in range(self.cfg.layers):
            h_c, h_p = self.model_.layer(i, h_c, h_p, self.graph_.buys, self.graph_.similar_adj,
                                         variants=self.graph_.variant_adj)
            self.product_states_.append(h_p)
        self.customer_vectors_ = self.model_.finish(h_c).numpy().astype(np.float32)
        self.product_vectors_ = self.model_.finish(h_p).numpy().astype(np.float32)
        self.index_ = MIPSKNNIndex(torch.from_numpy(self.product_vectors_))

    # ------------------------------------------------------------ cache

    def state_arrays(self) -> dict[str, np.ndarray]:
        state = {f"param.{k}": v.numpy() for k, v in self.model_.state_dict().items()}
        return state | {"history": np.asarray(self.history_, dtype=np.float32),
                        "train_s": np.float64(self.train_s_)}

    def load_state(self, data: RecData, arrays: dict[str, np.ndarray]) -> "SageRecommender":
        params = {k[len("param."):]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
                  if k.startswith("param.")}
        similar = content_edges(data.hybrid, data.products["group_id"].to_numpy(str), self.cfg.graph)
        self.spec_ = feature_spec(data, self.cfg.graph)
        graph = build_graph(data, self.cfg.graph, similar=similar, spec=self.spec_)
        x_c, x_p = _features(graph, graph.buys, graph.recent)
        self.model_ = SageModel(x_c.shape[1], x_p.shape[1], self.cfg)
        self.model_.load_state_dict(params)
        self.history_ = arrays["history"].tolist()
        self.best_epoch_ = int(np.argmax(self.history_)) + 1 if self.history_ else 0
        self.validation_recall_ = max(self.history_, default=0.0)
        self.train_s_ = float(arrays["train_s"])
        self._embed(data, similar)
        return self

    # ------------------------------------------------------------ inference

    def item_vectors(self) -> np.ndarray:
        return self.product_vectors_

    def customer_vectors(self) -> np.ndarray:
        return self.customer_vectors_

    @torch.no_grad()
    def customer_vector(self, history: np.ndarray, customer_id: str | None = None) -> np.ndarray:
        """(out,) vector of a customer given as liked product rows (may be empty) and, if known, their id
        (attributes). A known customer with their own history is a lookup; anyone else is embedded as a
        new leaf node (product states stay as they are), their likes counted as recent purchases."""
        row = self.data_.customer_row.get(customer_id) if customer_id is not None else None
        liked = torch.as_tensor(np.unique(np.asarray(history, dtype=np.int64)))
        if row is not None and torch.equal(liked, torch.as_tensor(np.unique(self.data_.history(customer_id)))):
            return self.customer_vectors_[row]
        static = self.graph_.x_customer[[row]] if row is not None else self.new_customer_x_
        n = float(len(liked))
        x_c = torch.cat([static, torch.log1p(torch.tensor([[n, n]]))], 1)
        h_c = F.relu(self.model_.in_c(x_c))
        edges = torch.stack([torch.arange(len(liked)), torch.zeros(len(liked), dtype=torch.long)])
        for i in range(self.cfg.layers):
            h_c = self.model_.to_customer[i]((self.product_states_[i][liked], h_c), edges)
            if i < self.cfg.layers - 1:
                h_c = F.relu(h_c)
        return self.model_.finish(h_c)[0].numpy()

    def recommend(self, customer_ids, k, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product through FAISS (PyG's ``MIPSKNNIndex``), excluded rows dropped."""
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

    @torch.no_grad()
    def product_vector(self, image: np.ndarray, text: np.ndarray, attributes: dict[str, str] | None = None,
                       has_image: bool = True) -> np.ndarray:
        """(out,) vector of a product added from a photo and a sentence (their (d,) backbone vectors) and
        its attributes: a new node with content edges to its ``content_k`` nearest products, variant edges
        to the products sharing its ``group_id`` attribute if it names one, and no buyers."""
        data, cfg = self.data_, self.cfg.graph
        image = np.asarray(image, np.float32)[None] if has_image else np.zeros((1, data.image.shape[1]), np.float32)
        text = np.asarray(text, np.float32)[None]
        frame = pd.DataFrame({c: [str((attributes or {}).get(c, ""))] for c in self.spec_.product_vocab})
        x_static = product_features(frame, image, text, np.array([has_image]), self.spec_)
        x_p = torch.cat([torch.from_numpy(x_static), torch.zeros(1, 2)], 1)  # no buyers: both degrees 0
        hybrid = fuse(image, text, data.hybrid_weight, np.array([has_image]))[0]
        neighbours = torch.as_tensor(np.argsort(-(data.hybrid @ hybrid), kind="stable")[:cfg.content_k])
        edges = torch.stack([torch.arange(len(neighbours)), torch.zeros(len(neighbours), dtype=torch.long)])
        group = str((attributes or {}).get("group_id", ""))
        siblings = torch.as_tensor(np.flatnonzero(data.products["group_id"].to_numpy(str) == group)[:cfg.variant_cap]
                                   if group and cfg.variant_relation else np.empty(0, dtype=np.int64))
        sibling_edges = torch.stack([torch.arange(len(siblings)), torch.zeros(len(siblings), dtype=torch.long)])
        no_buyers = torch.empty((2, 0), dtype=torch.long)
        h = F.relu(self.model_.in_p(x_p))
        for i in range(self.cfg.layers):
            nobody = torch.zeros(0, h.shape[1])
            h = self.model_.to_product[i]((nobody, h), no_buyers) + \
                self.model_.similar[i]((self.product_states_[i][neighbours], h), edges)
            if len(siblings):
                h = h + self.model_.variant[i]((self.product_states_[i][siblings], h), sibling_edges)
            if i < self.cfg.layers - 1:
                h = F.relu(h)
        return self.model_.finish(h)[0].numpy()

    def add_product(self, product_id: str, image: np.ndarray | None, text: np.ndarray | None,
                    attributes: dict[str, str] | None = None, has_image: bool = True) -> int:
        """Put a new product among the candidates without retraining: its :meth:`product_vector` is appended
        to ``product_vectors_`` and the FAISS index. Returns its row (results and scores now include it); the
        caller maps rows past the catalogue to ``product_id`` (two-tower's signature, so both add alike).
        The graph and the other products' vectors stay as trained: the new node has no buyers yet."""
        if text is None and image is None:
            raise ValueError("a product needs a photo or a sentence vector")
        has_image = has_image and image is not None
        text = text if text is not None else image  # photos and sentences share the backbone's space
        vector = self.product_vector(image if has_image else None, text, attributes, has_image)
        self.index_.add(torch.from_numpy(vector[None].astype(np.float32)))
        self.product_vectors_ = np.vstack([self.product_vectors_, vector[None]])
        return len(self.product_vectors_) - 1
