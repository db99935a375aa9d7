"""The GraphSAGE network of :mod:`core.recs.sage` and its configuration: standardised inputs, SAGEConv rounds per
edge type, residual content towers and a popularity prior apart from the embeddings (PyTorch Geometric)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import SAGEConv

from core.recs.graph import GraphConfig


@dataclass(frozen=True)
class SageConfig:
    graph: GraphConfig = field(default_factory=GraphConfig)
    hidden: int = 64
    out: int = 64  # the graph's vectors' width (with content apart; with residual towers, the content vectors')
    # Residual (with content_apart False): a product's vector is its content vector (photo and sentence fused) plus
    # what the graph adds, a customer's the mean content vector of what they bought plus the same; the last layer
    # starts at zero, so training starts from content similarity, which ranks never-bought products as readily as
    # bought ones.
    residual: bool = True
    # Content apart: the score is content similarity (the customer's content profile, cosine) plus the graph's own
    # affinity (cosine of vectors of width ``out``), each with its own learned scale: the graph adds to content's
    # ranking in the score rather than moving the content vectors. ``residual`` and ``affinity`` are then unused
    # (both parts are cosines). False gives the first repair's towers, with this config's other settings (the
    # first repair itself also had profile_half_life 0, negatives_on_sale False, scale_lr 1, new_prior_weights
    # as prior_weights).
    content_apart: bool = True
    # Centre the graph part of customer vectors on their mean, so it holds no direction shared by every customer
    # (what every customer gets alike belongs to the prior)
    centre: bool = True
    # The learned scales' learning rate, times ``lr``. At 1 they hardly moved within the epochs early stopping
    # leaves (content stayed about 9.5 against the graph's 1.1), so the graph's part was a tie-breaker; at 30,
    # validation Recall@10 0.0138 / 0.0130 against 0.0120 / 0.0120 at 10 and 1 (seeds 0 / 1, README), and on a
    # shop whose content vectors are noise 0.47 against 0.06
    scale_lr: float = 30.0
    graph_scale: float = 1.0  # content apart: the graph affinity's initial scale (learned); content's: 1 / temperature
    # A customer's content profile (the residual's or content_apart's mean content vector of what they bought) weighs
    # each product they bought by 0.5 ** (days since they last bought it / this), as the content baseline weighs its
    # last purchases (every one, not the last 10); 0: every product alike
    profile_half_life: float = 30.0
    layers: int = 2
    dropout: float = 0.1
    # "cosine": scale * cosine with a learned scale (no product wins on its vector's length); "dot": inner product
    affinity: str = "cosine"
    temperature: float = 0.1  # initial temperature of the cosine (learned)
    batch_size: int = 4096  # positive pairs per step; a full-graph step costs the same whatever its size
    random_negatives: int = 512  # drawn uniformly from the whole catalogue each step
    bestseller_negatives: int = 64  # drawn in proportion to purchases in the last recent_days
    neighbour_negatives: int = 64  # content neighbours of the step's positives
    epochs: int = 30  # an upper bound: early stopping on the validation window picks the epoch
    min_steps: int = 10  # steps per epoch at least, so a small catalogue still gets enough updates
    # Steps per epoch at most; past it an epoch trains on a sample of the pairs (max_steps * batch_size = 131,072) and
    # validation comes round sooner. The network has no parameter per node, so the updates it needs do not grow
    # with the catalogue, while a step costs its subgraph, which grows with it until it is the whole graph: without
    # a cap, steps an epoch (pairs / batch_size) times the step's cost grows as n^2. The H&M sample (fewer than
    # 28,006 purchases) and the simulated shop up to 100,000 products take fewer steps than this.
    max_steps: int = 32
    patience: int = 5  # epochs without a better validation criterion before stopping
    lr: float = 0.001  # validation Recall@10 0.0149 / 0.0108 (seeds 0 / 1) against 0.0026 at 0.005 (README)
    weight_decay: float = 1e-5
    item_dropout: float = 0.5  # share of a step's products (positives and negatives) whose buyers are hidden
    customer_dropout: float = 0.2  # likewise for customers: learns the attributes-only new customer
    content_only: float = 0.25  # share of steps in which no product hears its buyers (a never-bought product)
    # Whether products hear their buyers at all. Without, a product's vector comes from its content and its
    # content neighbours only, so "has buyers" cannot stand in for "sells"; customers still hear their purchases.
    buyer_messages: bool = True
    # Negatives only among the products somebody had bought by the end of the task's window (see
    # core.recs.sage_training.training_tasks); False: the whole catalogue, where a product nobody has bought yet is
    # only ever a negative and is pushed away from exactly the customers it resembles. With the residual towers it
    # was measured worse (a never-bought product drifted above everything); with content apart the graph's part
    # cannot outweigh content that way, and validation was level (README)
    negatives_on_sale: bool = True
    validation_days: float = 28.0  # the window cut from the end of the training purchases for early stopping
    # Customers of that window early stopping is measured on at most, a seeded sample past it (as the evaluation
    # measures a window: core.recs.split.SplitConfig.max_customers): each epoch scores every product for each.
    validation_customers: int = 10_000
    # weights of the popularity prior tried on the validation window (times the learned prior); with no
    # validation purchases the first is used: 0, no popularity without evidence that it helps
    prior_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    # the same for customers with no purchases, whose affinity comes from a few attributes only, so the prior may
    # have to outweigh it (the learned prior spans a few hundredths, the affinity several units)
    new_prior_weights: tuple[float, ...] = (0.0, 1.0, 4.0, 16.0, 64.0)
    # Supervision pairs drawn with weight 0.5 ** (age / half-life), so recent tastes count more (0: every
    # purchase alike); with objective "edges".
    recency_half_life: float = 0.0
    # "windows": learn to predict each window's purchases from the graph before it (the test's task);
    # "edges": reconstruct any purchase edge from the rest of the graph.
    objective: str = "windows"
    window_days: float = 28.0
    n_windows: int = 12
    # "full": full-graph message passing per step; "sampled": neighbour-sampled mini-batches; "auto": full up to
    # sampled_past products, sampled past them (see training_mode)
    mode: str = "auto"
    # Past this many products "auto" samples. A full-graph step costs as much as the graph, and an epoch takes steps
    # in proportion to the purchases, so full-graph training grows as n^2; a sampled step's message passing costs
    # its subgraph (the batch's neighbours at the fanouts), which stops growing once it is smaller than the graph.
    # (Until the subgraph is much smaller than the graph, it grows with it too: at a million products a batch's
    # subgraph at these fanouts holds a third of the products; max_steps bounds how many steps an epoch takes.)
    # Below that the two cost the same: an epoch took 3.0 s full and 3.4 s sampled at 30,000 products, 0.8 and 1.0 s
    # at 10,000 (core.bench.scale_shop's shop, 2 cores), with the same validation recall (0.156 and 0.156, 0.170 and
    # 0.168).
    sampled_past: int = 50_000
    fanouts: tuple[int, ...] = (15, 10)  # sampled mode: neighbours per node and edge type, per hop
    seed: int = 0


MODES = ("auto", "full", "sampled")


def training_mode(cfg: SageConfig, n_products: int) -> str:
    """"full" or "sampled": ``cfg.mode``, or for "auto" what suits a catalogue of ``n_products``."""
    if cfg.mode not in MODES:
        raise ValueError(f"unknown GraphSAGE mode '{cfg.mode}': one of {', '.join(MODES)}")
    if cfg.mode == "auto":
        return "sampled" if n_products > cfg.sampled_past else "full"
    return cfg.mode


def standardiser(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column means and standard deviations of ``x`` (n, f) (1 where a column is constant). Scaling by block
    instead (each block's root mean square row norm, so a rare one-hot value is not blown up) did worse on
    the validation window: Recall@10 0.0117 / 0.0041 against 0.0143 / 0.0103 (seeds 0 / 1; README)."""
    mean, std = x.mean(0), x.std(0, unbiased=False) if len(x) > 1 else torch.ones(x.shape[1])
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))


class SageModel(nn.Module):
    """Standardised inputs, input projections, then ``layers`` rounds of SAGEConv per edge type (summed per
    node type); a popularity prior apart from the embeddings.

    Shapes: ``x_c`` (n_c, f_c), ``x_p`` (n_p, f_p) static features; edges (2, E) source row, destination row;
    ``popularity`` (n_p, 2) log(1 + all-time purchases), log(1 + recent purchases).
    Returns customer (n_c, width) and product (n_p, width) vectors (width: the content vectors' plus ``out``
    with ``content_apart``, the content vectors' with ``residual``, else ``out``); affinity is their inner product
    (times :meth:`scale`), the prior :meth:`prior`.
    """

    def __init__(self, f_customer: int, f_product: int, cfg: SageConfig, f_content: int = 0):
        super().__init__()
        self.cfg = cfg
        if (cfg.residual or cfg.content_apart) and not f_content:
            raise ValueError("GraphSAGE with content (apart or residual) needs the content vectors' width (f_content)")
        for name, f in (("c", f_customer), ("p", f_product)):
            self.register_buffer(f"mean_{name}", torch.zeros(f))
            self.register_buffer(f"std_{name}", torch.ones(f))
        self.in_c = nn.Linear(f_customer, cfg.hidden)
        self.in_p = nn.Linear(f_product, cfg.hidden)
        dims = [cfg.hidden] * cfg.layers + [f_content if cfg.residual and not cfg.content_apart else cfg.out]
        self.to_customer = nn.ModuleList([SAGEConv(dims[i], dims[i + 1]) for i in range(cfg.layers)])
        self.to_product = nn.ModuleList([SAGEConv(dims[i], dims[i + 1]) for i in range(cfg.layers)])
        # content messages add to the buyer messages; the product's own (root) term is counted once
        self.similar = nn.ModuleList([SAGEConv(dims[i], dims[i + 1], root_weight=False) for i in range(cfg.layers)])
        self.variant = nn.ModuleList([SAGEConv(dims[i], dims[i + 1], root_weight=False) for i in range(cfg.layers)])
        if cfg.residual and not cfg.content_apart:  # the graph's part starts at zero: scores start as content's
            for conv in (self.to_customer[-1], self.to_product[-1], self.similar[-1], self.variant[-1]):
                for p in conv.parameters():
                    nn.init.zeros_(p)
        self.popularity = nn.Linear(2, 1, bias=False)
        nn.init.zeros_(self.popularity.weight)  # training starts from affinity alone
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature)))
        if cfg.content_apart:
            self.log_graph_scale = nn.Parameter(torch.tensor(math.log(cfg.graph_scale)))
            self.register_buffer("graph_mean_c", torch.zeros(cfg.out))

    def standardise_with(self, x_c: torch.Tensor, x_p: torch.Tensor) -> None:
        """Fit the input standardisation on the catalogue's static features."""
        for name, x in (("c", x_c), ("p", x_p)):
            mean, std = standardiser(x)
            getattr(self, f"mean_{name}").copy_(mean)
            getattr(self, f"std_{name}").copy_(std)

    def standardise(self, x_c: torch.Tensor, x_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Customer and product features standardised with the buffers (row by row, so rows of the result are
        the result for those rows)."""
        return (x_c - self.mean_c) / self.std_c, (x_p - self.mean_p) / self.std_p

    def inputs(self, x_c: torch.Tensor, x_p: torch.Tensor, standardised: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first layer's inputs from raw features, or from features already put through :meth:`standardise`
        (``standardised``: a training loop does that once rather than at every step)."""
        if not standardised:
            x_c, x_p = self.standardise(x_c, x_p)
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
                bought: torch.Tensor | None = None, variants: torch.Tensor | None = None,
                content: torch.Tensor | None = None, standardised: bool = False,
                bought_weight: torch.Tensor | None = None, profile: torch.Tensor | None = None,
                recentre: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Customer and product vectors; ``content`` (n_p, d) the products' content vectors; ``standardised``:
        ``x_c`` and ``x_p`` come from :meth:`standardise`. Customers' content profiles are the ``bought_weight``-
        weighted means of the content of what they bought (``bought``), or ``profile`` (n_c, d) when given.
        With ``centre``, training (or ``recentre``: a pass over every customer) sets the centre of the customers'
        graph vectors to this pass's."""
        h_c, h_p = self.inputs(x_c, x_p, standardised)
        for i in range(self.cfg.layers):
            h_c, h_p = self.layer(i, h_c, h_p, buys, similar, bought, variants)
        bought = buys.flip(0) if bought is None else bought
        if profile is None and content is not None:
            profile = mean_content(content, bought, len(h_c), bought_weight)
        if self.cfg.content_apart and self.cfg.centre and (self.training or recentre):
            with torch.no_grad():
                self.graph_mean_c.copy_(F.normalize(h_c, dim=-1).mean(0))
        return self.customer_tower(h_c, profile), self.product_tower(h_p, content)

    def customer_tower(self, h: torch.Tensor, profile: torch.Tensor | None) -> torch.Tensor:
        """Customer vectors from the graph's states ``h`` and ``profile`` (n, d) the mean content vector of what
        each bought (zeros for none)."""
        if self.cfg.content_apart:
            g = F.normalize(h, dim=-1)
            if self.cfg.centre:
                g = g - self.graph_mean_c
            return torch.cat([F.normalize(profile, dim=-1) * self.log_scale.exp(), g * self.log_graph_scale.exp()], -1)
        return self.finish(h + profile if self.cfg.residual else h)

    def product_tower(self, h: torch.Tensor, content: torch.Tensor | None) -> torch.Tensor:
        if self.cfg.content_apart:
            return torch.cat([content, F.normalize(h, dim=-1)], -1)
        return self.finish(h + content if self.cfg.residual else h)

    def finish(self, h: torch.Tensor) -> torch.Tensor:
        """Final vectors: unit length for cosine affinity, as they are for the inner product."""
        return F.normalize(h, dim=-1) if self.cfg.affinity == "cosine" else h

    def scale(self) -> torch.Tensor:
        """Multiplier of the affinity: the learned inverse temperature for cosine, 1 for the inner product."""
        if self.cfg.content_apart:
            return torch.ones(())  # each part's scale is in the customer's vector
        return self.log_scale.exp() if self.cfg.affinity == "cosine" else torch.ones(())

    def prior(self, popularity: torch.Tensor) -> torch.Tensor:
        """(n_p,) the customer-independent part of the score, from (n_p, 2) popularity features."""
        return self.popularity(popularity)[:, 0]


def mean_content(content: torch.Tensor, bought: torch.Tensor, n_customers: int, weight: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """(n_customers, d) each customer's mean content vector over the (2, E) product -> customer edges
    ``bought`` (zeros for a customer with none), weighted by ``weight`` (E,) if given."""
    w = torch.ones(bought.shape[1]) if weight is None else weight.float()
    total = torch.zeros(n_customers, content.shape[1]).index_add_(0, bought[1], content[bought[0]] * w[:, None])
    count = torch.zeros(n_customers).index_add_(0, bought[1], w).clamp_min(1e-12)
    return total / count[:, None]


def profile_weights(days: torch.Tensor, cfg: SageConfig, owners: torch.Tensor | None = None) -> torch.Tensor | None:
    """(E,) each purchase edge's weight in its customer's content profile from its age ``days`` (E,), or None
    (every purchase alike) without ``profile_half_life``. With ``owners`` (E,) each edge's customer, ages count
    from each customer's latest purchase: the same profile (weights are relative), but a customer whose purchases
    are all years old does not underflow to none (0.5 ** (days / 30) is 0 in float32 past about 4,400 days)."""
    if not cfg.profile_half_life:
        return None
    days = days.float()
    if owners is not None and len(days):
        latest = torch.full((int(owners.max()) + 1,), float("inf")).scatter_reduce(0, owners, days, "amin")
        days = days - latest[owners]
    return 0.5 ** (days / cfg.profile_half_life)
