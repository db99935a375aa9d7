"""Two-tower retrieval: a customer tower and an item tower in one space, trained on purchases.

Its settings were chosen on the validation window (see the README's two-tower table); the recommender is
``two_tower`` in :mod:`core.recs.contract`'s registry.

The loss is an in-batch sampled softmax with the log-Q correction (Yi et al., "Sampling-bias-corrected
neural modeling for large corpus item recommendations", RecSys 2019) plus random negatives drawn from the
whole catalogue (mixed negative sampling, Yang et al. 2020), so products nobody bought still appear as
negatives. These are implicit purchases with no ratings, so the towers learn by retrieval, not by
regressing a rating on the cosine.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch_geometric.utils import softmax

from core.embeddings.backbone import fuse
from core.recs.graph import GraphConfig, customer_features, feature_spec, product_features
from core.embeddings.index import IndexConfig, VectorIndex
from core.recs.contract import (ADD_PRODUCT, CUSTOMER_VECTORS, NO_REASON, PRODUCT_VECTOR, SAVES_STATE, SESSION,
                                RecData, Recommender, top_k)
from core.executor import current
from core.recs.dataparallel import data_parallel, mean_over_workers, worker
from core.progress import Progress


def logq_softmax_loss(user: torch.Tensor, item: torch.Tensor, log_q: torch.Tensor,
                      temperature: torch.Tensor | float, negatives: torch.Tensor | None = None,
                      negatives_log_q: torch.Tensor | None = None, item_ids: torch.Tensor | None = None,
                      negative_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of each customer's own purchase among the batch's candidates.

    user (B, d) and item (B, d): row i is customer i and the product they bought. Every row's candidates
    are the B batch items plus the M ``negatives`` (M, d); a candidate's logit is
    ``<user, candidate> / temperature - log_q``, where ``log_q`` (B,) and ``negatives_log_q`` (M,) are the
    log probabilities of drawing each candidate: a batch item is drawn as often as it is bought, so
    popular products would be over-penalised as negatives without the correction; a uniform negative has
    log(1 / n_products). With ``item_ids`` (B,) (and ``negative_ids`` (M,)), a candidate that is the row's
    own product in another column (an "accidental hit") is left out of that row's softmax.
    Returns a scalar tensor.
    """
    candidates, correction, ids = item, log_q, item_ids
    if negatives is not None:
        if negatives_log_q is None:
            raise ValueError("negatives need their negatives_log_q")
        candidates = torch.cat([item, negatives])
        correction = torch.cat([log_q, negatives_log_q])
        if item_ids is not None:
            if negative_ids is None:
                raise ValueError("with item_ids, negatives need their negative_ids")
            ids = torch.cat([item_ids, negative_ids])
    logits = user @ candidates.T / temperature - correction[None, :]
    rows = torch.arange(len(user))
    if ids is not None:
        hit = (ids[None, :] == item_ids[:, None])
        hit[rows, rows] = False  # the row's own column stays
        logits = logits.masked_fill(hit, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, rows)


# ---- the towers and their training

@dataclass(frozen=True)
class TwoTowerConfig:
    dim: int = 64
    hidden: int = 256
    epochs: int = 10
    batch_size: int = 512  # in-batch negatives: more is a harder task
    random_negatives: int = 512  # drawn uniformly from the whole catalogue each step
    lr: float = 2e-3
    weight_decay: float = 1e-5
    temperature: float = 0.05  # initial; learned
    # As the content baseline's profile: on the validation window these beat 60 days and 50 purchases
    # (Recall@10 0.0159 against 0.0126).
    half_life_days: float = 30.0  # a purchase this old weighs half as much in the customer's history
    max_history: int = 10  # most recent purchases pooled
    # Share of training examples whose customer attributes are hidden (set to "missing"), so the tower also
    # learns to read a customer from purchases alone, as it must for a new or anonymous customer (DropoutNet).
    attribute_dropout: float = 0.5
    # What the item tower reads. The photo does not join by default: on the validation window (three seeds)
    # sentence + attributes gave Recall@10 0.0138 and cold-item recall 0.0051 on average, with the photo too
    # 0.0131 and 0.0031.
    item_inputs: tuple[str, ...] = ("text", "attributes")
    pooling: str = "mean"  # "mean": recency-weighted mean of the history; "attention": learned weights too
    # Residual towers: an item is its content vector (photo and sentence fused, or whichever of the two
    # item_inputs names) plus a learned correction, a customer their pooled history plus one; the corrections
    # start at zero, so training starts from content similarity (dim is then the content vectors' width).
    residual: bool = True
    seed: int = 0


def _mlp(n_in: int, hidden: int, n_out: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, n_out))


class Towers(torch.nn.Module):
    """item: product features -> (dim,); customer: [recency-weighted mean of history item vectors, log(1 + n
    purchases), attribute features] -> (dim,); both L2-normalised; and the learned temperature."""

    def __init__(self, n_item: int, n_customer: int, dim: int, cfg: TwoTowerConfig):
        super().__init__()
        self.residual = cfg.residual
        self.item = _mlp(n_item, cfg.hidden, dim)
        self.customer = _mlp(dim + 1 + n_customer, cfg.hidden, dim)
        if cfg.residual:
            for mlp in (self.item, self.customer):
                torch.nn.init.zeros_(mlp[-1].weight)
                torch.nn.init.zeros_(mlp[-1].bias)
        # attention pooling: a history item's weight is softmax(<query, item vector> + log recency) in its bag
        self.query = torch.nn.Parameter(torch.zeros(dim)) if cfg.pooling == "attention" else None
        self.log_temperature = torch.nn.Parameter(torch.tensor(math.log(cfg.temperature)))

    def items(self, features: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        out = self.item(features)
        return torch.nn.functional.normalize(out + content if self.residual else out, dim=-1)

    def customers(self, pooled: torch.Tensor, counts: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        out = self.customer(torch.cat([pooled, torch.log1p(counts)[:, None], attributes], dim=1))
        return torch.nn.functional.normalize(out + pooled if self.residual else out, dim=-1)


def bag_positions(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(lengths.sum(),) int64 positions in the flat bags of :func:`history_bags` of the bags that start at
    ``starts`` with ``lengths`` (q,) each, one after another: what concatenating their slices gives."""
    before = torch.cumsum(lengths, 0) - lengths  # where each bag starts in the output
    return torch.arange(int(lengths.sum())) + torch.repeat_interleave(starts - before, lengths)


def commonest(values: np.ndarray) -> str:
    """The most frequent of some strings; ties go to the smallest (as pandas' ``mode().iloc[0]``)."""
    counts = Counter(values.tolist())
    top = max(counts.values())
    return min(v for v, n in counts.items() if n == top)


def history_bags(users: np.ndarray, items: np.ndarray, days: np.ndarray, max_history: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each purchase (time-sorted arrays users, items, days = days before the cutoff), the customer's
    purchases strictly earlier in time (at most ``max_history``, the latest): flattened ``bag_items`` (L,),
    ``bag_age`` (L,) days between that purchase and the example's, ``starts`` (P,) where each bag starts,
    ``lengths`` (P,). Nothing bought on the example's own day or later is in its bag."""
    n = len(users)
    pieces = [np.zeros(0, dtype=np.int64)] * n
    ages = [np.zeros(0, dtype=np.float32)] * n
    order = np.argsort(users, kind="stable")
    for rows in np.split(order, np.flatnonzero(np.diff(users[order])) + 1):
        for j, row in enumerate(rows):
            earlier = rows[:j][days[rows[:j]] > days[row]]  # more days ago = earlier
            earlier = earlier[max(0, len(earlier) - max_history):]
            pieces[row], ages[row] = items[earlier], (days[earlier] - days[row]).astype(np.float32)
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if n else lengths
    flat = np.concatenate(pieces).astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    return flat, (np.concatenate(ages) if n else np.zeros(0, dtype=np.float32)), starts, lengths


class TwoTowerRecommender(Recommender):
    """Customers and products in one space: an item tower over each product's content (the backbone's
    sentence and photo vectors, attribute one-hots), so a product nobody bought is placed by its content
    alone, and a customer tower over their recency-weighted purchases and attributes. Trained on purchases
    before the cutoff with :func:`logq_softmax_loss`; each example's history is what the customer bought
    before it. Recommendations are nearest item vectors by inner product in a FAISS index (``index``:
    exact by default, IVF or HNSW by factory string); a new product enters by one item-tower pass and an
    index add (:meth:`add_product`), with no retraining.

    After fit: ``item_vectors_`` (n_products, dim) and ``customer_vectors_`` (n_customers, dim) float32
    rows L2-normalised, ``product_ids_`` (n_products,) str, ``index_``, ``losses_`` (mean loss per
    epoch), ``train_s_``."""
    name = "two_tower"
    capabilities = frozenset({CUSTOMER_VECTORS, PRODUCT_VECTOR, ADD_PRODUCT, SESSION, SAVES_STATE})

    def __init__(self, cfg: TwoTowerConfig = TwoTowerConfig(), index: IndexConfig = IndexConfig()):
        self.cfg = cfg
        self.index_cfg = index

    def cache_config(self) -> dict:
        # the index layout is not trained; nor is where it trained part of the key (see core.executor.Executor.train)
        return {"model": self.name, **dataclasses.asdict(self.cfg)}

    # ------------------------------------------------------------ training

    def _prepare(self, data: RecData) -> None:
        """Features of every product and customer, and fresh (untrained) towers."""
        torch.manual_seed(self.cfg.seed)
        self.data_ = data
        self.spec_ = feature_spec(data, GraphConfig())
        self.item_features_ = torch.from_numpy(self._item_features(data.products, data.image, data.text,
                                                                   data.has_image))
        self.item_content_ = torch.from_numpy(self._content(data.image, data.text, data.has_image))
        self.customer_features_ = torch.from_numpy(customer_features(data.customers, data.customer_ids, self.spec_))
        self.missing_ = torch.from_numpy(customer_features(data.customers, np.array([""], dtype=object), self.spec_))
        # each attribute the item tower reads, as strings by product row (session mode votes on them)
        self.attribute_values_ = {c: data.products[c].astype(str).to_numpy(dtype=object)
                                  for c in self.spec_.product_vocab}
        dim = self.item_content_.shape[1] if self.cfg.residual else self.cfg.dim
        self.towers_ = Towers(self.item_features_.shape[1], self.customer_features_.shape[1], dim, self.cfg)

    def fit(self, data: RecData, progress: Progress | None = None) -> "TwoTowerRecommender":
        """Train the towers here, or data-parallel on the installed cluster's workers (:func:`core.executor.current`;
        :func:`train_worker`), whose rank 0 gives back the trained parameters."""
        if len(data.purchases) and data.purchases["timestamp"].max() >= data.cutoff:
            raise ValueError(f"purchases at or after the cutoff {data.cutoff} would leak into training; "
                             "build the data with core.recs.contract.rec_data")
        t0 = time.perf_counter()
        self._prepare(data)
        executor = current()
        if executor is None:
            self.losses_ = self._train(progress)
        else:
            self._load_params(executor.train(train_worker, {"cfg": self.cfg, "data": data}))
            if progress:
                progress("training two-tower", self.cfg.epochs, self.cfg.epochs)
        self.train_s_ = time.perf_counter() - t0
        self._finish()
        return self

    def _train(self, progress: Progress | None = None) -> list[float]:
        """Train the fresh towers of :meth:`_prepare`; the mean loss per epoch. In a data-parallel fit
        (:func:`core.recs.dataparallel.worker`) every rank draws the same order of batches and takes its shard of each,
        the gradients averaged over the ranks: with in-batch negatives a row's candidates are then its shard's
        products and its rank's own random negatives (see :func:`train_worker`)."""
        cfg, data = self.cfg, self.data_
        rank, world = worker()
        g = torch.Generator().manual_seed(cfg.seed)
        # the batches' order is drawn alike on every rank; negatives and hidden attributes from each rank's own
        # stream (one rank alone: the same stream, as the local fit has always drawn them)
        own = g if world == 1 else torch.Generator().manual_seed(int(np.random.SeedSequence([cfg.seed, rank])
                                                                         .generate_state(1)[0]))
        bag_items, bag_age, starts, lengths = history_bags(data.users, data.items, data.days_ago, cfg.max_history)
        bag_items, bag_age = torch.from_numpy(bag_items), torch.from_numpy(bag_age)
        starts, lengths = torch.from_numpy(starts), torch.from_numpy(lengths)
        targets, users = torch.from_numpy(data.items.copy()), torch.from_numpy(data.users.copy())
        counts = np.bincount(data.items, minlength=data.n_products).astype(np.float64)
        log_q = torch.from_numpy(np.log(np.maximum(counts, 1) / max(len(data.items), 1))).float()
        uniform = math.log(1.0 / data.n_products)

        def batch_loss(batch: torch.Tensor, negatives: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
            """The loss of purchase rows ``batch`` (b,) against their products and ``negatives`` (m,) product rows,
            ``hidden`` (b,) bool the rows whose customer attributes are hidden."""
            at = bag_positions(starts[batch], lengths[batch])
            member, age = bag_items[at], bag_age[at]
            needed, where = torch.unique(torch.cat([targets[batch], negatives, member]), return_inverse=True)
            vectors = self.towers_.items(self.item_features_[needed], self.item_content_[needed])
            b, m = len(batch), len(negatives)
            pooled = self._pool(vectors, where[b + m:], age, lengths[batch])
            attributes = torch.where(hidden[:, None], self.missing_, self.customer_features_[users[batch]])
            customers = self.towers_.customers(pooled, lengths[batch].float(), attributes)
            return logq_softmax_loss(customers, vectors[where[:b]], log_q[targets[batch]],
                                     self.towers_.log_temperature.exp(), vectors[where[b:b + m]],
                                     torch.full((m,), uniform), targets[batch], negatives)

        step = data_parallel(self.towers_, batch_loss)
        opt = torch.optim.AdamW(self.towers_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        losses = []
        with torch.enable_grad():
            self.towers_.train()
            for epoch in range(cfg.epochs):
                epoch_losses = []
                for batch in torch.randperm(len(targets), generator=g).split(cfg.batch_size):
                    if len(batch) < 2 * world:  # a softmax over one row learns nothing; every rank skips alike
                        continue
                    shard = batch.tensor_split(world)[rank]
                    negatives = torch.randint(data.n_products, (cfg.random_negatives,), generator=own)
                    hidden = torch.rand(len(shard), generator=own) < cfg.attribute_dropout
                    loss = step(shard, negatives, hidden)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    epoch_losses.append(float(loss.detach()))
                losses.append(mean_over_workers(float(np.mean(epoch_losses))) if epoch_losses else float("nan"))
                if progress:
                    progress("training two-tower", epoch + 1, cfg.epochs)
        return losses

    @torch.inference_mode()
    def _finish(self) -> None:
        """Item vectors of the catalogue and their index; every known customer's vector."""
        data = self.data_
        self.towers_.eval()
        self.item_vectors_ = self.towers_.items(self.item_features_, self.item_content_).numpy()
        self.product_ids_ = data.product_ids.copy()
        self.index_ = VectorIndex(self.item_vectors_, self.product_ids_, self.index_cfg)
        order = np.argsort(data.users, kind="stable")  # purchases are time-sorted, so each customer's are too
        cuts = np.searchsorted(data.users[order], np.arange(len(data.customer_ids)))
        ends = np.append(cuts[1:], len(order))
        histories = [order[max(a, b - self.cfg.max_history):b] for a, b in zip(cuts, ends)]
        self.customer_vectors_ = self.encode_customers([data.items[h] for h in histories],
                                                       [data.days_ago[h] for h in histories], data.customer_ids)

    def state_arrays(self) -> dict[str, np.ndarray]:
        state = {f"param.{k}": v.numpy() for k, v in self.towers_.state_dict().items()}
        return state | {"losses": np.asarray(self.losses_, dtype=np.float64), "train_s": np.float64(self.train_s_)}

    def load_state(self, data: RecData, arrays: dict[str, np.ndarray]) -> "TwoTowerRecommender":
        self._prepare(data)
        self._load_params(arrays)
        self.train_s_ = float(arrays["train_s"])
        self._finish()
        return self

    def _load_params(self, arrays: dict[str, np.ndarray]) -> None:
        """The towers' parameters (``param.*``) and ``losses`` from :meth:`state_arrays` or :func:`train_worker`."""
        self.towers_.load_state_dict({k[len("param."):]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
                                      if k.startswith("param.")})
        self.losses_ = np.asarray(arrays["losses"]).tolist()

    # ------------------------------------------------------------ the towers on new input

    def _item_features(self, products: pd.DataFrame, image: np.ndarray, text: np.ndarray,
                       has_image: np.ndarray) -> np.ndarray:
        """(n, f) float32 item-tower inputs: the parts of :func:`core.recs.graph.product_features` in ``item_inputs``."""
        inputs, none = self.cfg.item_inputs, np.zeros((len(products), 0), dtype=np.float32)
        spec = self.spec_ if "attributes" in inputs else dataclasses.replace(self.spec_, product_vocab={})
        return product_features(products, image if "image" in inputs else none, text if "text" in inputs else none,
                                has_image, spec)

    def _content(self, image: np.ndarray, text: np.ndarray, has_image: np.ndarray) -> np.ndarray:
        """(n, d) float32 rows L2-normalised: the content vector the residual item tower starts from."""
        inputs = self.cfg.item_inputs
        if "image" in inputs and "text" in inputs:
            return fuse(image, text, self.data_.hybrid_weight, has_image).astype(np.float32)
        return np.ascontiguousarray(image if "image" in inputs else text, dtype=np.float32)

    def _pool(self, vectors: torch.Tensor, members: torch.Tensor, age: torch.Tensor,
              lengths: torch.Tensor) -> torch.Tensor:
        """(q, dim) weighted mean of each bag's item vectors (zeros for an empty bag); ``members`` index
        ``vectors``, bags laid end to end with ``lengths`` (q,). The weights are the recency weights, or
        with attention pooling softmax(<query, item> + log recency) within the bag."""
        bag = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
        log_w = -math.log(2.0) * age / self.cfg.half_life_days
        if self.towers_.query is not None:
            log_w = log_w + vectors[members] @ self.towers_.query
        weights = softmax(log_w, bag, num_nodes=len(lengths)) if len(bag) else log_w
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(lengths, 0)[:-1]])
        return torch.nn.functional.embedding_bag(members, vectors, offsets, mode="sum", per_sample_weights=weights)

    @torch.inference_mode()
    def encode_customers(self, histories: Sequence[np.ndarray], ages: Sequence[np.ndarray],
                         customer_ids: Sequence[str | None] | None = None) -> np.ndarray:
        """(q, dim) customer vectors from product rows (of ``item_vectors_``, so added products count) and
        their ages in days (0: now); an id not in the data (or None) has every attribute missing."""
        given = customer_ids if customer_ids is not None else [None] * len(histories)
        ids = [c if c is not None else "" for c in given]
        lengths = torch.tensor([len(h) for h in histories], dtype=torch.int64)
        members = torch.from_numpy(np.concatenate([np.asarray(h, dtype=np.int64) for h in histories])
                                   if len(histories) else np.zeros(0, dtype=np.int64))
        age = torch.from_numpy(np.concatenate([np.asarray(a, dtype=np.float32) for a in ages])
                               if len(ages) else np.zeros(0, dtype=np.float32))
        pooled = self._pool(torch.from_numpy(self.item_vectors_), members, age, lengths)
        if any(ids):
            attributes = torch.from_numpy(customer_features(self.data_.customers, np.asarray(ids, dtype=object),
                                                            self.spec_))
        else:  # new customers only (the serving case): nothing known about any of them
            attributes = self.missing_.expand(len(ids), -1)
        return self.towers_.customers(pooled, lengths.float(), attributes).numpy()

    @torch.inference_mode()
    def product_vector(self, image: np.ndarray | None, text: np.ndarray | None,
                       attributes: dict[str, str] | None = None, has_image: bool = True,
                       hide_row: int | None = None) -> np.ndarray:
        """(dim,) item vector of a product outside the catalogue: one item-tower pass over its (d,) backbone
        photo and sentence vectors and its attributes (unknown values count as "other"). ``hide_row`` (a
        catalogue product to leave out of the new one's neighbourhood, for GraphSAGE) changes nothing here:
        the item tower reads only the product's own features."""
        if text is None and image is None:
            raise ValueError("a product needs a photo or a sentence vector")
        d = self.data_.text.shape[1]
        has_image = has_image and image is not None
        image = np.asarray(image, np.float32)[None] if has_image else np.zeros((1, d), np.float32)
        # the backbone embeds photos and sentences in one space, so a photo alone stands in for its sentence
        text = np.asarray(text if text is not None else image[0], np.float32)[None]
        frame = pd.DataFrame({c: [str((attributes or {}).get(c, ""))] for c in self.spec_.product_vocab})
        flags = np.array([has_image])
        features = self._item_features(frame, image, text, flags)
        content = self._content(image, text, flags)
        return self.towers_.items(torch.from_numpy(features), torch.from_numpy(content))[0].numpy()

    def add_product(self, product_id: str, image: np.ndarray | None, text: np.ndarray | None,
                    attributes: dict[str, str] | None = None, has_image: bool = True) -> int:
        """Put a new product in the index without retraining: its :meth:`product_vector` is appended to
        ``item_vectors_`` and added to ``index_``. Returns its row (results and scores now include it)."""
        if product_id in self.index_.row:
            raise ValueError(f"product {product_id!r} is already in the index")
        vector = self.product_vector(image, text, attributes, has_image)
        self.index_.add(vector[None], np.array([product_id]))
        self.item_vectors_ = np.vstack([self.item_vectors_, vector[None]])
        self.product_ids_ = np.append(self.product_ids_, product_id)
        return len(self.product_ids_) - 1

    def session_vector(self, image: np.ndarray | None = None, text: np.ndarray | None = None,
                       n_read: int = 5) -> np.ndarray:
        """(dim,) vector of an anonymous customer whose only signal is a typed description or a photo
        (their (d,) backbone vectors): the customer tower over a one-item history, that item being what
        the words or the photo describe, liked now, with every customer attribute missing. The item tower
        was trained on products with attributes, so the described product's are read from the ``n_read``
        catalogue products nearest to it in content (the commonest value of each)."""
        if text is None and image is None:
            raise ValueError("a session needs a photo or a sentence vector")
        query = np.asarray(text if text is not None else image, np.float32)
        near = top_k((self.item_content_.numpy() @ query)[None], n_read)[0][0]
        attributes = {c: commonest(values[near]) for c, values in self.attribute_values_.items()}
        item = self.product_vector(image, text, attributes, has_image=image is not None)
        with torch.inference_mode():
            return self.towers_.customers(torch.from_numpy(item[None]), torch.ones(1), self.missing_)[0].numpy()

    # ------------------------------------------------------------ recommending

    def search(self, vectors: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows (q, k) int64 and scores (q, k) float32 of (q, dim) customer vectors from the FAISS
        index, ``exclude[i]`` rows left out of list i (fewer than k only if the catalogue runs out)."""
        extra = max((len(np.unique(e)) for e in exclude), default=0) if exclude is not None else 0
        scores, rows = self.index_.search(vectors, k + extra)
        out_rows = np.full((len(rows), min(k, len(self.index_))), -1, dtype=np.int64)
        out_scores = np.full(out_rows.shape, -np.inf, dtype=np.float32)
        for i in range(len(rows)):
            keep = rows[i] >= 0
            if exclude is not None and len(exclude[i]):
                keep &= ~np.isin(rows[i], exclude[i])
            r, s = rows[i][keep][:out_rows.shape[1]], scores[i][keep][:out_rows.shape[1]]
            out_rows[i, :len(r)], out_scores[i, :len(r)] = r, s
        return out_rows, out_scores

    def query_vectors(self, customer_ids: Sequence[str]) -> np.ndarray:
        """(q, dim) vectors of customers by id; an unknown id is a customer with nothing known."""
        rows = [self.data_.customer_row.get(c) for c in customer_ids]
        out = np.empty((len(rows), self.item_vectors_.shape[1]), dtype=np.float32)
        known = [i for i, r in enumerate(rows) if r is not None]
        out[known] = self.customer_vectors_[[rows[i] for i in known]]
        unknown = [i for i, r in enumerate(rows) if r is None]
        if unknown:
            out[unknown] = self.encode_customers([np.zeros(0, np.int64)] * len(unknown),
                                                 [np.zeros(0, np.float32)] * len(unknown))
        return out

    def score(self, customer_ids: Sequence[str]) -> np.ndarray:
        return self.query_vectors(customer_ids) @ self.item_vectors_.T

    def recommend(self, customer_ids, k, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k from the FAISS index for known customers (their purchases before the cutoff, dated)."""
        return self.search(self.query_vectors(customer_ids), k, exclude)

    def _histories(self, histories: Sequence[np.ndarray], customer_ids) -> np.ndarray:
        latest = [np.asarray(h, np.int64)[-self.cfg.max_history:] for h in histories]
        return self.encode_customers(latest, [np.zeros(len(h), np.float32) for h in latest],  # liked now
                                     customer_ids)

    def score_histories(self, histories, customer_ids=None) -> np.ndarray:
        return self._histories(histories, customer_ids) @ self.item_vectors_.T

    def recommend_histories(self, histories, k, customer_ids=None, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        return self.search(self._histories(histories, customer_ids), k, exclude)

    def item_vectors(self) -> np.ndarray:
        return self.item_vectors_

    def explain(self, history: np.ndarray, rows: np.ndarray, customer_id: str | None = None) -> np.ndarray:
        """The pooled history product contributing most to each of ``rows``' scores: a history product's
        contribution is its pooling weight in the customer tower (recency weight for a known customer's own
        purchases; equal weights for products liked now) times <its item vector, the product's>, a product
        pooled twice adding up. Only the latest ``max_history`` products are pooled; the tower's learned
        correction, which reads the pooled vector as a whole, is not split among them. An empty history:
        :data:`~core.recs.contract.NO_REASON`. (len(rows),) int64."""
        history, rows = np.asarray(history, np.int64), np.asarray(rows, np.int64)
        latest = history[-self.cfg.max_history:]
        if not len(latest) or not len(rows):
            return np.full(len(rows), NO_REASON, dtype=np.int64)
        vectors = self.item_vectors_
        log_w = -math.log(2.0) * self._ages(latest, customer_id) / self.cfg.half_life_days  # as _pool weighs them
        if self.towers_.query is not None:
            with torch.inference_mode():
                log_w = log_w + vectors[latest] @ self.towers_.query.numpy()
        w = np.exp(log_w - log_w.max())
        w /= w.sum()
        liked, where = np.unique(latest, return_inverse=True)
        contribution = np.zeros((len(rows), len(liked)), dtype=np.float64)
        np.add.at(contribution.T, where, (vectors[latest] @ vectors[rows].T) * w[:, None])
        return liked[np.argmax(contribution, axis=1)]

    def _ages(self, latest: np.ndarray, customer_id: str | None) -> np.ndarray:
        """(len(latest),) float32 days before the cutoff of pooled products: a known customer's own latest
        purchases as the customer tower pooled them, else 0 (liked now)."""
        row = self.data_.customer_row.get(customer_id) if customer_id is not None else None
        if row is not None:
            own = np.flatnonzero(self.data_.users == row)[-self.cfg.max_history:]  # purchases are time-sorted
            if np.array_equal(self.data_.items[own], latest):
                return self.data_.days_ago[own].astype(np.float32)
        return np.zeros(len(latest), dtype=np.float32)

    def customer_vectors(self) -> np.ndarray:
        """(n_customers, dim) every known customer's vector (rows of ``data_.customer_ids``)."""
        return self.customer_vectors_


def train_worker(config: dict) -> dict[str, np.ndarray]:
    """One worker of a data-parallel fit (:meth:`core.executor.Executor.train`; ``config``: ``cfg`` the
    TwoTowerConfig, ``data`` the RecData): the towers trained on this rank's shards, as :meth:`TwoTowerRecommender.
    state_arrays` holds them (``param.*``, ``losses``: each epoch's mean loss over every rank).

    What data parallelism changes: DDP averages the ranks' gradients, so R workers take the steps of one batch of
    ``batch_size`` rows, but each row's in-batch negatives are its shard's ``batch_size / R`` products (and its
    rank's ``random_negatives``), not the whole batch's. One worker is the local fit itself (same draws, same
    steps: bit-identical on the cluster tests' shop, float rounding at most, a worker having one thread); two or
    more train an easier softmax and end elsewhere, about 0.013 lower in Recall@10 on that shop, within its seed
    spread (tests/distributed/test_train.py states the tolerances)."""
    model = TwoTowerRecommender(config["cfg"])
    model._prepare(config["data"])
    losses = model._train()
    return {f"param.{k}": v.numpy() for k, v in model.towers_.state_dict().items()} | {"losses": np.asarray(losses)}
