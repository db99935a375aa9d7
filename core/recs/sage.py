"""GraphSAGE recommender on the customer–product graph (its network: :mod:`core.recs.sage_model`).

Inductive throughout: products are embedded from their content features, content edges and buyers;
customers from their attributes and what they bought; there are no id embeddings, so a product
nobody bought, a product added from a photo and a sentence, and a customer with no purchases all
get vectors by a forward pass, with no retraining.

A score has three parts (:class:`SageModel`), in one inner product:

- **content similarity**: the cosine between the product's content vector and the customer's content
  profile, the recency-weighted mean of what they bought (``profile_half_life``), times a learned scale;
- **graph affinity**: the cosine of the graph's customer and product vectors (content, attributes and
  the graph's messages, each input column standardised on the catalogue; nothing that says how often
  anything sold), times its own learned scale, the customer's vector centred on the mean customer so
  that no direction shared by every customer lives in it (``content_apart``; without it, residual
  towers as in the first repair: one cosine of content vectors moved by the graph);
- **a popularity prior**, the same for every customer: a learned weighting of log(1 + all-time
  purchases) and log(1 + purchases in the last ``recent_days``), weighted at inference by
  ``prior_weight_`` for customers with purchases and ``new_prior_weight_`` for those without, both
  chosen on the validation window (0 drops it).

Before the prior was split off, the degree counts were inputs beside unit-norm content vectors, and BPR against
uniform negatives learned "sold lately" as one customer-independent direction: every list held the
same ~30 recent sellers and a never-bought product could not climb past them. The residual towers that
followed still let training wear the content ranking away (README: 0.0029 on the test window).

Training (:meth:`SageRecommender.fit`, run by :func:`core.recs.sage_training.train`):

- supervision: by default each 4-week window's purchases predicted from the graph as it stood when
  the window opened (``objective="windows"``, the task at the cutoff, repeated back in time);
- loss: a sampled softmax over the batch's products (in-batch negatives) plus negatives drawn
  uniformly from the catalogue, recent bestsellers and content neighbours of the positives (hard
  negatives), each candidate's logit corrected by the log of how many times it is expected among the
  candidates (log-Q, :func:`core.recs.two_tower.logq_softmax_loss`); the prior is added to every logit, so
  the affinity is free to learn taste rather than popularity;
- negatives among the products on sale by the task's window (somebody had bought them by its end), so a
  product nobody has bought yet is not taught to be unwanted by the customers it resembles;
- DropoutNet: a share of the products in a step (positives and negatives alike) and of its customers
  lose their purchase neighbourhood, and a share of the steps runs with no buyer messages to any
  product at all, which is how a never-bought product looks at test time;
- early stopping and the prior's weight are chosen together on a validation window cut from the end
  of the training purchases, by Recall@10 plus Recall@10 on the products nobody had bought before it
  (so a list of bestsellers alone does not win). The final model then embeds everything with every
  purchase before the cutoff as messages, which an inductive model can do without retraining.
"""
from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch_geometric.nn.pool import MIPSKNNIndex

from core.embeddings.backbone import fuse
from core.executor import current
from core.progress import Progress
from core.recs.contract import (ADD_PRODUCT, CUSTOMER_VECTORS, NO_REASON, POPULAR, PRODUCT_VECTOR, SAVES_STATE,
                                RecData, Recommender, top_k)
from core.recs.graph import build_graph, content_edges, customer_features, feature_spec, new_node_sources, \
    product_features
from core.recs.sage_model import SageConfig, SageModel, mean_content, profile_weights
from core.recs.sage_training import heard, popularity_features, train, train_worker


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
        # where it trained is not (see core.executor.Executor.train); the training code's revision is
        return {"model": self.name, "revision": REVISION, **asdict(self.cfg)}

    # ------------------------------------------------------------ training

    def fit(self, data: RecData, progress: Progress | None = None) -> "SageRecommender":
        """Train the network (:func:`core.recs.sage_training.train`; data-parallel on the installed cluster's workers
        when :func:`core.executor.current` names one), then embed everything with every purchase before the cutoff as
        messages."""
        t0 = time.perf_counter()
        executor = current()
        if executor is None:
            run = train(data, self.cfg, progress)
        else:
            run = executor.train(train_worker, {"cfg": self.cfg, "data": data})
            run.similar = np.array(run.similar)  # Ray's object store hands arrays back read-only
        self.spec_, self.content_, self.model_ = run.spec, run.content, run.model
        self.history_, self.validation_ = run.history, run.validation
        self.prior_weight_ = float(self.validation_.get("prior_weight", self.cfg.prior_weights[0]))
        self.new_prior_weight_ = float(self.validation_.get("new_prior_weight", self.cfg.new_prior_weights[0]))
        self.best_epoch_ = int(np.argmax(self.history_)) + 1 if self.history_ else 0
        self.validation_recall_ = float(self.validation_.get("recall", 0.0))
        self._embed(data, run.similar)
        if progress:
            progress("training GraphSAGE", self.cfg.epochs, self.cfg.epochs)
        self.train_s_ = time.perf_counter() - t0
        return self

    # ------------------------------------------------------------ embedding

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
            h_c, h_p = self.model_.layer(i, h_c, h_p, heard(graph.buys, self.cfg), graph.similar_adj,
                                         bought=graph.buys.flip(0), variants=graph.variant_adj)
            self.product_states_.append(h_p)
        profile = mean_content(self.content_, graph.buys.flip(0), len(h_c),
                               profile_weights(graph.days, self.cfg, graph.buys[0]))
        if self.cfg.content_apart and self.cfg.centre:  # the centre of every customer as finally embedded
            self.model_.graph_mean_c.copy_(F.normalize(h_c, dim=-1).mean(0))
        h_c, h_p = self.model_.customer_tower(h_c, profile), self.model_.product_tower(h_p, self.content_)
        popularity = popularity_features(graph.buys, graph.recent, graph.n_customers, graph.n_products)
        self.scale_ = float(self.model_.scale())
        self.prior_ = self.model_.prior(popularity).numpy().astype(np.float32)
        has_purchases = torch.bincount(graph.buys[0], minlength=graph.n_customers).numpy() > 0
        self.customer_vectors_ = self._customer_row(h_c, has_purchases)
        self.product_vectors_ = np.hstack([h_p.numpy(), self.prior_[:, None]]).astype(np.float32)
        self.index_ = MIPSKNNIndex(torch.from_numpy(self.product_vectors_))

    def _customer_row(self, vectors: torch.Tensor, has_purchases: np.ndarray) -> np.ndarray:
        """(q, width + 1) float32 [scale * vector, prior weight]: the customer's side of the whole score, the
        weight ``prior_weight_`` for a customer with purchases (``has_purchases`` (q,) bool), else
        ``new_prior_weight_``."""
        weight = np.where(has_purchases, self.prior_weight_, self.new_prior_weight_).astype(np.float32)
        return np.hstack([vectors.detach().numpy() * self.scale_, weight[:, None]]).astype(np.float32)

    # ------------------------------------------------------------ cache

    def state_arrays(self) -> dict[str, np.ndarray]:
        state = {f"param.{k}": v.numpy() for k, v in self.model_.state_dict().items()}
        return state | {"similar": self.graph_.similar.numpy(),  # the content edges: 2 s to find again on H&M
                        "history": np.asarray(self.history_, dtype=np.float32), "train_s": np.float64(self.train_s_),
                        "prior_weight": np.float64(self.prior_weight_),
                        "new_prior_weight": np.float64(self.new_prior_weight_),
                        "validation": np.array([self.validation_.get(k, np.nan) for k in VALIDATION_KEYS])}

    def load_state(self, data: RecData, arrays: dict[str, np.ndarray]) -> "SageRecommender":
        params = {k[len("param."):]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
                  if k.startswith("param.")}
        similar = np.asarray(arrays.get("similar", np.empty((0, 0))), dtype=np.int64)
        if similar.ndim != 2 or similar.shape[0] != 2 or (similar.size and similar.max() >= data.n_products):
            # stored before the edges were, or not for these products: found again (2 s on H&M)
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
    def _leaf(self, history: np.ndarray, customer_id: str | None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A customer as a new leaf node over liked product rows (product states stay as they are): the
        distinct liked rows, the customer's graph state (1, out), their content profile (1, d), the weighted mean
        content vector of the liked products (zeros for none), and those weights (1, n) (:meth:`_profile_weights`);
        :meth:`SageModel.customer_tower` makes the vector."""
        row = self.data_.customer_row.get(customer_id) if customer_id is not None else None
        liked = torch.as_tensor(np.unique(np.asarray(history, dtype=np.int64)))
        static = self.graph_.x_customer[[row]] if row is not None else self.new_customer_x_
        h_c = self.model_.inputs(static, self.graph_.x_product[:0])[0]
        for i in range(self.cfg.layers):
            h_c = self.model_.to_customer[i]((self.product_states_[i][liked], h_c), _to_one(len(liked)))
            if i < self.cfg.layers - 1:
                h_c = F.relu(h_c)
        weights = self._profile_weights(liked, row)
        profile = weights @ self.content_[liked] if len(liked) else torch.zeros(1, self.content_.shape[1])
        return liked, h_c, profile, weights

    def _profile_weights(self, liked: torch.Tensor, row: int | None) -> torch.Tensor:
        """(1, n) each liked product's weight in the customer's content profile, summing to 1: by the age of the
        customer's latest purchase of it (``row``, None for a customer the data does not know) at
        ``profile_half_life``, as the catalogue's customers are embedded; a product not bought before is
        liked now (age 0)."""
        ages = torch.zeros(len(liked))
        if row is not None and self.cfg.profile_half_life and len(liked):
            data = self.data_
            own = data.users == row
            latest = pd.Series(data.days_ago[own]).groupby(data.items[own]).min()
            ages = torch.tensor(latest.reindex(liked.numpy()).fillna(0.0).to_numpy(np.float32))
        weights = profile_weights(ages, self.cfg, torch.zeros(len(ages), dtype=torch.long))
        weights = torch.ones(len(liked)) if weights is None else weights
        return (weights / weights.sum().clamp_min(1e-12))[None]

    @torch.no_grad()
    def customer_vector(self, history: np.ndarray, customer_id: str | None = None) -> np.ndarray:
        """(width + 1,) vector of a customer given as liked product rows (may be empty) and, if known, their id
        (attributes). A known customer with their own history is a lookup; anyone else is embedded as a
        new leaf node, their likes as purchases."""
        row = self.data_.customer_row.get(customer_id) if customer_id is not None else None
        if row is not None and np.array_equal(np.unique(np.asarray(history, dtype=np.int64)),
                                              np.unique(self.data_.history(customer_id))):
            return self.customer_vectors_[row]
        liked, h, profile, _ = self._leaf(history, customer_id)
        return self._customer_row(self.model_.customer_tower(h, profile), np.array([len(liked) > 0]))[0]

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
        to the customer's vector before its prior weight (``customer_vector(...)[:-1]``). Each liked product's
        share of the content profile, and the last layer's message from it, are linear in that product's content
        vector and state. With content apart, each block's normalisation is one factor for all of that block's
        shares (the centre is in the rest); with residual towers, the cosine's is one factor for all."""
        liked, h, profile, weights = self._leaf(history, customer_id)
        vector = self.model_.customer_tower(h, profile)[0] * self.scale_  # customer_vector(...)[:-1]
        if not len(liked):
            return liked.numpy(), np.zeros((0, len(vector)), np.float32), vector.numpy()
        last = self.model_.to_customer[self.cfg.layers - 1]
        # mean aggregation: each liked product's part of the graph state, and of the content profile
        messages = self.product_states_[-2][liked] @ last.lin_l.weight.T / len(liked)
        contents = self.content_[liked] * weights[0][:, None]
        if self.cfg.content_apart:  # [content scale * profile / |profile|, graph scale * state / |state| - centre]
            each = torch.cat([contents * self.model_.log_scale.exp() / profile.norm().clamp_min(1e-12),
                              messages * self.model_.log_graph_scale.exp() / h.norm().clamp_min(1e-12)], 1)
        else:
            whole = h + profile if self.cfg.residual else h
            if self.cfg.residual:
                messages = messages + contents
            factor = self.scale_ / float(whole.norm().clamp_min(1e-12)) if self.cfg.affinity == "cosine" else 1.0
            each = messages * factor
        return liked.numpy(), each.numpy(), (vector - each.sum(0)).numpy()

    def query_vectors(self, customer_ids) -> np.ndarray:
        """(q, width + 1) vectors of customers by id: a customer of the data (with purchases before the cutoff or
        not) is a lookup; an id not in the data is a new leaf with no history (:meth:`customer_vector`)."""
        rows = [self.data_.customer_row.get(c) for c in customer_ids]
        if all(r is not None for r in rows):
            return self.customer_vectors_[rows]
        return np.stack([self.customer_vectors_[r] if r is not None else self.customer_vector(self.data_.history(c), c)
                         for r, c in zip(rows, customer_ids)])

    def recommend(self, customer_ids, k, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by the whole score through FAISS (PyG's ``MIPSKNNIndex``), excluded rows dropped."""
        return self._search(self.query_vectors(customer_ids), k, exclude)

    def recommend_histories(self, histories, k, customer_ids=None, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        ids = list(customer_ids) if customer_ids is not None else [None] * len(histories)
        return self._search(np.stack([self.customer_vector(h, c) for h, c in zip(histories, ids)]), k, exclude)

    def _search(self, vectors: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        links = None
        if exclude is not None:
            pairs = [(i, int(r)) for i, rows in enumerate(exclude) for r in np.unique(rows)]
            links = torch.tensor(pairs, dtype=torch.long).T if pairs else None
        # PyG imports this (FAISS answering torch queries with tensors, as its search expects) when it adds rows; a
        # model unpickled in another process, a cluster's worker, has added none there
        import faiss.contrib.torch_utils  # noqa: F401 (imported for its effect)
        out = self.index_.search(torch.from_numpy(np.ascontiguousarray(vectors, np.float32)), k, exclude_links=links)
        rows, scores = out.index.numpy().astype(np.int64), out.score.numpy().astype(np.float32)
        if exclude is not None and len(rows):
            # PyG asks FAISS for at most 2,048: past that many exclusions a list comes back short (-1); such a
            # customer's list from every score, unless the catalogue itself runs out
            n = len(self.product_vectors_)
            short = [i for i in np.flatnonzero((rows < 0).any(axis=1)) if n - len(np.unique(exclude[i])) >= k]
            if short:
                rows[short], scores[short] = top_k(vectors[short] @ self.product_vectors_.T, k,
                                                   [exclude[i] for i in short])
        return rows, scores

    def score(self, customer_ids) -> np.ndarray:
        return self.query_vectors(customer_ids) @ self.product_vectors_.T

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
        never_bought = float(self.model_.prior(torch.zeros(1, 2))[0])
        vector = np.append(self.model_.product_tower(h, torch.from_numpy(hybrid[None]))[0].numpy(),
                           np.float32(never_bought)).astype(np.float32)
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


# Raised when training or embedding changes what a config fits, so cached fits (and evaluations) are not served:
# 2, the second repair's review mends (validation centres its customers as serving does; sampled profiles).
REVISION = 2
VALIDATION_KEYS = ("criterion", "recall", "cold_recall", "prior_weight", "new_prior_weight", "new_recall", "epoch")


def _to_one(n: int) -> torch.Tensor:
    """Edges (2, n) from n source rows into one destination node."""
    return torch.stack([torch.arange(n), torch.zeros(n, dtype=torch.long)])
