"""The LightGCN baseline: PyG's LightGCN on the customer-product purchase graph, its config and its training."""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from core.embeddings.backbone import l2_normalise
from core.recs.baselines.base import Baseline, history_matrix
from core.recs.contract import SAVES_STATE, RecData


@dataclass(frozen=True)
class LightGCNConfig:
    dim: int = 64
    layers: int = 2
    # a fixed budget, ~20 s of one CPU thread for the H&M sample before 2020-04-01 (~21k distinct
    # purchases); sanity-checked on a validation window (train before 2020-01-01, validate Jan-Mar
    # 2020), never on the test window: 30 epochs were within seed noise of 20
    epochs: int = 20
    batch_size: int = 2048
    # Steps per epoch at most. Every step propagates over the whole graph, so with a fixed batch an epoch costs
    # pairs / batch_size whole-graph passes and grows as n^2; past max_steps * batch_size distinct pairs (32,768;
    # the H&M sample has fewer than its 28,006 purchases) the batch grows instead, and an epoch costs max_steps
    # passes.
    max_steps: int = 16
    lr: float = 0.005
    lambda_reg: float = 1e-4  # PyG's default L2 weight on the batch's layer-0 embeddings
    seed: int = 0


class LightGCN(Baseline):
    """PyG's LightGCN (He et al. 2020) on the bipartite customer-product graph of training purchases,
    trained with its BPR loss against negatives drawn uniformly from all products. A known customer
    with their training history is scored by their own embedding; any other history (a liked list) by
    the mean of its products' embeddings.

    After fit: ``user_`` (n_customers, dim) and ``item_`` (n_products, dim) float32 final embeddings.
    """
    name = "lightgcn"
    capabilities = frozenset({SAVES_STATE})
    id_only = True

    def __init__(self, cfg: LightGCNConfig = LightGCNConfig()):
        self.cfg = cfg

    def _fit(self, data, progress):
        report = None if progress is None else (lambda done, total: progress(self.name, done, total))
        self.user_, self.item_ = train_lightgcn(data.users, data.items, len(data.customer_ids), data.n_products,
                                                self.cfg, report)

    def _score(self, histories, customer_ids):
        rows = [self._training_row(h, c) for h, c in zip(histories, customer_ids)]
        means = history_matrix(histories, self.data_.n_products,
                               [np.full(len(h), 1.0 / len(h)) for h in histories]) @ self.item_
        vectors = np.array([self.user_[r] if r is not None else m for r, m in zip(rows, means)],
                           dtype=np.float32).reshape(len(histories), -1)
        return vectors @ self.item_.T

    def item_vectors(self) -> np.ndarray | None:
        return l2_normalise(self.item_) if self.ready_ else None

    # trained state, for core.recs.contract.fitted's artefact cache
    def cache_config(self) -> dict:
        return {"model": self.name, **asdict(self.cfg)}

    def state_arrays(self) -> dict[str, np.ndarray]:
        if not self.ready_:  # nothing was trained
            return {"user": np.empty((0, self.cfg.dim), np.float32), "item": np.empty((0, self.cfg.dim), np.float32)}
        return {"user": self.user_, "item": self.item_}

    def load_state(self, data: RecData, state: dict[str, np.ndarray]) -> "LightGCN":
        self._prepare(data)
        self.user_, self.item_ = np.asarray(state["user"], np.float32), np.asarray(state["item"], np.float32)
        return self


def train_lightgcn(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int,
                   cfg: LightGCNConfig = LightGCNConfig(),
                   progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Final LightGCN embeddings, (n_users, dim) and (n_items, dim) float32, of the bipartite graph of
    (user, item) purchase pairs ((n_purchases,) int64 rows each; repeats count once), trained for
    ``cfg.epochs`` with BPR against uniformly sampled negative items; ``progress(epoch, epochs)``."""
    import torch
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    from torch_geometric.nn.models import LightGCN as PygLightGCN

    pairs = np.unique(np.stack([users, items], axis=1), axis=0)
    user_nodes, item_nodes = torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1] + n_users)
    edge_index = torch.stack([torch.cat([user_nodes, item_nodes]), torch.cat([item_nodes, user_nodes])])
    # LightGCN's symmetric normalisation, computed once rather than by every layer of every step
    edge_index, edge_weight = gcn_norm(edge_index, None, n_users + n_items, add_self_loops=False)
    # ... as a sparse CSR matrix (PyG's LGConv propagates by a sparse-dense product then, rather than by scattering
    # messages along edges): the same embeddings (to float rounding), a training step 1.4x as fast on H&M's graph
    n_nodes = n_users + n_items
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": used here for one product
        warnings.simplefilter("ignore", UserWarning)
        adj_t = torch.sparse_coo_tensor(edge_index.flip(0), edge_weight, (n_nodes, n_nodes)).coalesce().to_sparse_csr()
    batch_size = max(cfg.batch_size, -(-len(pairs) // max(cfg.max_steps, 1)))
    threads = torch.get_num_threads()
    # One intra-op thread: the graph is small, and spinning thread pools thrash a shared 2-core CPU. Measured beside
    # other work (a synthetic graph of the sample's size, 5 epochs): 2-3 s on one thread, 23-33 s on two; on an idle
    # machine two threads are only about 1.5x faster, and the app fits models beside its pages' work.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = PygLightGCN(n_nodes, cfg.dim, cfg.layers, normalize=False)
            # fused: one pass over the (n_nodes, dim) table rather than Adam's several (a fit about 1.1x as fast; the
            # same embeddings to float rounding)
            optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
            for epoch in range(cfg.epochs):
                for batch in torch.randperm(len(pairs)).split(batch_size):
                    u, pos = user_nodes[batch], item_nodes[batch]
                    neg = torch.randint(0, n_items, (len(batch),)) + n_users
                    emb = model.get_embedding(adj_t)
                    loss = model.recommendation_loss((emb[u] * emb[pos]).sum(-1), (emb[u] * emb[neg]).sum(-1),
                                                     node_id=torch.cat([u, pos, neg]), lambda_reg=cfg.lambda_reg)
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                if progress is not None:
                    progress(epoch + 1, cfg.epochs)
            with torch.no_grad():
                emb = model.get_embedding(adj_t).numpy().astype(np.float32)
    finally:
        torch.set_num_threads(threads)
    return emb[:n_users], emb[n_users:]
