"""Two-tower retrieval: a customer tower and an item tower in one space, trained on purchases.

In progress (issue 11): the loss, the towers and their training are here and tested on synthetic data;
the model is not in the recommender registry yet (not tuned on a validation window, not evaluated).

The loss is an in-batch sampled softmax with the log-Q correction (Yi et al., "Sampling-bias-corrected
neural modeling for large corpus item recommendations", RecSys 2019) plus random negatives drawn from the
whole catalogue (mixed negative sampling, Yang et al. 2020), so products nobody bought still appear as
negatives. These are implicit purchases with no ratings, so the towers learn by retrieval, not by
regressing a rating on the cosine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from core.graph import GraphConfig, customer_features, feature_spec, product_features
from core.recommend import Progress, RecData, Recommender


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


# ---- the towers and their training (not yet in the recommender registry: see issue 11)

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
    half_life_days: float = 60.0  # a purchase this old weighs half as much in the customer's history
    max_history: int = 50  # most recent purchases pooled
    # Share of training examples whose customer attributes are hidden (set to "missing"), so the tower also
    # learns to read a customer from purchases alone, as it must for a new or anonymous customer (DropoutNet).
    attribute_dropout: float = 0.5
    seed: int = 0


def _mlp(n_in: int, hidden: int, n_out: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, n_out))


class Towers(torch.nn.Module):
    """item: product features -> (dim,); customer: [recency-weighted mean of history item vectors, log(1 + n
    purchases), attribute features] -> (dim,); both L2-normalised; and the learned temperature."""

    def __init__(self, n_item: int, n_customer: int, cfg: TwoTowerConfig):
        super().__init__()
        self.item = _mlp(n_item, cfg.hidden, cfg.dim)
        self.customer = _mlp(cfg.dim + 1 + n_customer, cfg.hidden, cfg.dim)
        self.log_temperature = torch.nn.Parameter(torch.tensor(math.log(cfg.temperature)))

    def items(self, features: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.item(features), dim=-1)

    def customers(self, pooled: torch.Tensor, counts: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        x = torch.cat([pooled, torch.log1p(counts)[:, None], attributes], dim=1)
        return torch.nn.functional.normalize(self.customer(x), dim=-1)


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


def _recency(age: torch.Tensor, half_life: float) -> torch.Tensor:
    return torch.exp(-math.log(2.0) * age / half_life)


class TwoTowerRecommender(Recommender):
    """Customers and products in one space: an item tower over each product's content (photo and sentence
    vectors, attribute one-hots), so a product nobody bought is placed by its content alone, and a
    customer tower over their recency-weighted purchases and attributes. Trained on purchases before the
    cutoff with :func:`logq_softmax_loss`; each example's history is what the customer bought before it.
    After fit: ``item_vectors_`` (n_products, dim) float32."""
    name = "two_tower"

    def __init__(self, cfg: TwoTowerConfig = TwoTowerConfig()):
        self.cfg = cfg

    def fit(self, data: RecData, progress: Progress | None = None) -> "TwoTowerRecommender":
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        g = torch.Generator().manual_seed(cfg.seed)
        self.data_ = data
        self.spec_ = feature_spec(data, GraphConfig())
        self.item_features_ = torch.from_numpy(product_features(data.products, data.image, data.text,
                                                                data.has_image, self.spec_))
        self.customer_features_ = torch.from_numpy(customer_features(data.customers, data.customer_ids, self.spec_))
        missing = torch.from_numpy(customer_features(data.customers, np.array([""], dtype=object), self.spec_))
        self.towers_ = Towers(self.item_features_.shape[1], self.customer_features_.shape[1], cfg)
        bag_items, bag_age, starts, lengths = history_bags(data.users, data.items, data.days_ago, cfg.max_history)
        bag_items, bag_age = torch.from_numpy(bag_items), torch.from_numpy(bag_age)
        starts, lengths = torch.from_numpy(starts), torch.from_numpy(lengths)
        targets, users = torch.from_numpy(data.items), torch.from_numpy(data.users)
        counts = np.bincount(data.items, minlength=data.n_products).astype(np.float64)
        log_q = torch.from_numpy(np.log(np.maximum(counts, 1) / max(len(data.items), 1))).float()
        uniform = math.log(1.0 / data.n_products)
        opt = torch.optim.AdamW(self.towers_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.losses_ = []
        with torch.enable_grad():
            self.towers_.train()
            for epoch in range(cfg.epochs):
                epoch_losses = []
                for batch in torch.randperm(len(targets), generator=g).split(cfg.batch_size):
                    if len(batch) < 2:
                        continue
                    negatives = torch.randint(data.n_products, (cfg.random_negatives,), generator=g)
                    member = torch.cat([bag_items[starts[i]:starts[i] + lengths[i]] for i in batch.tolist()])
                    age = torch.cat([bag_age[starts[i]:starts[i] + lengths[i]] for i in batch.tolist()])
                    needed, where = torch.unique(torch.cat([targets[batch], negatives, member]), return_inverse=True)
                    vectors = self.towers_.items(self.item_features_[needed])
                    b, m = len(batch), len(negatives)
                    pooled = self._pool(vectors, where[b + m:], age, lengths[batch])
                    attributes = self.customer_features_[users[batch]]
                    hidden = torch.rand(len(batch), generator=g) < cfg.attribute_dropout
                    attributes = torch.where(hidden[:, None], missing, attributes)
                    customers = self.towers_.customers(pooled, lengths[batch].float(), attributes)
                    loss = logq_softmax_loss(customers, vectors[where[:b]], log_q[targets[batch]],
                                             self.towers_.log_temperature.exp(), vectors[where[b:b + m]],
                                             torch.full((m,), uniform), targets[batch], negatives)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    epoch_losses.append(float(loss.detach()))
                self.losses_.append(float(np.mean(epoch_losses)) if epoch_losses else float("nan"))
                if progress:
                    progress("training two-tower", epoch + 1, cfg.epochs)
        self.towers_.eval()
        with torch.inference_mode():
            self.item_vectors_ = self.towers_.items(self.item_features_).numpy()
        return self

    def _pool(self, vectors: torch.Tensor, members: torch.Tensor, age: torch.Tensor,
              lengths: torch.Tensor) -> torch.Tensor:
        """(q, dim) recency-weighted mean of each bag's item vectors (zeros for an empty bag); ``members``
        index ``vectors``, bags laid end to end with ``lengths`` (q,)."""
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(lengths, 0)[:-1]])
        weights = _recency(age, self.cfg.half_life_days)
        totals = torch.zeros(len(lengths)).index_add_(0, torch.repeat_interleave(torch.arange(len(lengths)),
                                                                                lengths), weights)
        weights = weights / totals.clamp_min(1e-12).repeat_interleave(lengths)
        return torch.nn.functional.embedding_bag(members, vectors, offsets, mode="sum", per_sample_weights=weights,
                                                 include_last_offset=False)

    @torch.inference_mode()
    def customer_vectors(self, histories: Sequence[np.ndarray], ages: Sequence[np.ndarray],
                         customer_ids: Sequence[str | None] | None = None) -> np.ndarray:
        """(q, dim) customer vectors from product rows and their ages in days (0: now); an id not in the
        data (or None) has every attribute missing."""
        ids = [c if c is not None else "" for c in (customer_ids or [None] * len(histories))]
        lengths = torch.tensor([len(h) for h in histories], dtype=torch.int64)
        members = torch.from_numpy(np.concatenate([np.asarray(h, dtype=np.int64) for h in histories])
                                   if len(histories) else np.zeros(0, dtype=np.int64))
        age = torch.from_numpy(np.concatenate([np.asarray(a, dtype=np.float32) for a in ages])
                               if len(ages) else np.zeros(0, dtype=np.float32))
        pooled = self._pool(torch.from_numpy(self.item_vectors_), members, age, lengths)
        attributes = torch.from_numpy(customer_features(self.data_.customers, np.asarray(ids, dtype=object),
                                                        self.spec_))
        return self.towers_.customers(pooled, lengths.float(), attributes).numpy()

    def score_histories(self, histories: Sequence[np.ndarray],
                        customer_ids: Sequence[str | None] | None = None) -> np.ndarray:
        ages = [np.zeros(len(h), dtype=np.float32) for h in histories]  # liked now
        return self.customer_vectors(histories, ages, customer_ids) @ self.item_vectors_.T

    def score(self, customer_ids: Sequence[str]) -> np.ndarray:
        data = self.data_
        histories, ages = [], []
        for c in customer_ids:
            rows = np.flatnonzero(data.users == data.customer_row.get(c, -1))[-self.cfg.max_history:]
            histories.append(data.items[rows])
            ages.append(data.days_ago[rows])
        return self.customer_vectors(histories, ages, list(customer_ids)) @ self.item_vectors_.T

    def item_vectors(self) -> np.ndarray:
        return self.item_vectors_
