"""Clustering embeddings (HDBSCAN, with DBSCAN as the baseline), agreement with labels, and cluster names."""
from __future__ import annotations

import dataclasses
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.data.catalog import PATTERN_PROMPT, TYPE_PROMPT, pattern_phrase
from core.explore.projection import sample_rows

NOISE = -1
NAME_ATTRS = ("colour", "pattern", "product_type")  # the order a name reads in: "Black striped vest top"
# A broader attribute stands in for product type when no single type dominates a cluster.
BROADER = {"product_type": ("product_group", "garment_group")}
DOMINANT = 0.5  # a value names a cluster when at least half of its products have it
# A value tells a cluster apart from clusters of the same name when at least a quarter of it holds the value,
# half as often again as the others do.
TELLING_SHARE = 0.25
TELLING_LIFT = 1.5


@dataclass(frozen=True)
class ClusterConfig:
    # 0 means "about one product in 500, at least 5": 49 on the 24,717-product H&M sample. On its
    # earlier 17,033 products, 34-60 gave 49-70 clusters with 9-10% noise on hybrid embeddings (measured; README sweep).
    min_cluster_size: int = 0
    min_samples: int = 10  # larger: more conservative, more noise; 10 held noise near 10% on H&M
    selection: str = "eom"  # HDBSCAN's excess-of-mass selection; "leaf" gives many small clusters

    def resolved(self, n: int) -> ClusterConfig:
        """This config with the automatic size filled in and both sizes fitted to ``n`` points."""
        size = self.min_cluster_size or max(5, round(n / 500))
        return ClusterConfig(max(2, min(size, n)), max(1, min(self.min_samples, n - 1)), self.selection)


@dataclass
class Clustering:
    """HDBSCAN's result on n points."""
    labels: np.ndarray  # (n,) int, cluster ids 0..k-1, NOISE (-1) for noise
    probabilities: np.ndarray  # (n,) float32 strength of membership in its own cluster, 0 for noise
    soft_labels: np.ndarray  # (n,) int, every point's most likely cluster, noise included (NOISE if none)
    soft_strength: np.ndarray  # (n,) float32 membership of soft_labels (HDBSCAN's soft clustering)

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max() + 1) if len(self.labels) else 0

    @property
    def noise_fraction(self) -> float:
        return float(np.mean(self.labels == NOISE)) if len(self.labels) else 0.0


# Past this many points HDBSCAN is fitted on a random sample of this many and the rest are placed by its
# approximate_predict: the exact fit grows faster than the points (10-d UMAP points of ``python -m core bench
# scale``, 2 cores: 0.7 s for 10,000, 151 s for 100,000).
FIT_SAMPLE_LIMIT = 50_000
PREDICT_CHUNK = 100_000  # points placed per approximate_predict call: its neighbour arrays bounded by the chunk


def hdbscan_clusters(points: np.ndarray, cfg: ClusterConfig = ClusterConfig(),
                     sample_limit: int | None = None, seed: int = 0, soft: bool = True) -> Clustering:
    """HDBSCAN on ``points`` (n, d), e.g. UMAP-reduced embeddings, with soft membership for every point (unless
    ``soft`` is False).
    Past ``sample_limit`` points (default :data:`FIT_SAMPLE_LIMIT`) it is fitted on that many drawn with
    ``seed`` (an automatic min_cluster_size resolved on the sample) and the others are placed by
    ``approximate_predict``. ``soft=False`` (within the limit) skips the soft membership, the larger part of a
    small fit's time, for a caller that reads the labels only: ``soft_labels`` are then the labels, strength 0."""
    import hdbscan
    n = len(points)
    if n < 3:
        zeros = np.zeros(n, np.float32)
        return Clustering(np.full(n, NOISE), zeros, np.full(n, NOISE), zeros)
    limit = FIT_SAMPLE_LIMIT if sample_limit is None else sample_limit
    if n > limit:
        if limit < 2 * cfg.min_samples + 2:
            raise ValueError(f"sample_limit {limit} is too small for min_samples {cfg.min_samples}")
        return _fit_sample_predict_rest(points, cfg, limit, seed)
    cfg = cfg.resolved(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hdbscan.HDBSCAN(min_cluster_size=cfg.min_cluster_size, min_samples=cfg.min_samples,
                                cluster_selection_method=cfg.selection, prediction_data=soft).fit(points)
        labels = model.labels_.astype(np.int64)
        if labels.max() < 0 or not soft:
            soft_labels, strength = labels.copy(), np.zeros(n, np.float32)
        else:
            membership = hdbscan.all_points_membership_vectors(model).reshape(n, -1)
            soft_labels, strength = membership.argmax(axis=1), membership.max(axis=1).astype(np.float32)
            soft_labels = np.where(labels >= 0, labels, soft_labels)  # a clustered point keeps its own cluster
    return Clustering(labels, model.probabilities_.astype(np.float32), soft_labels, strength)


def _fit_sample_predict_rest(points: np.ndarray, cfg: ClusterConfig, limit: int, seed: int) -> Clustering:
    """HDBSCAN fitted on ``limit`` of ``points`` drawn with ``seed``; the others get their label and strength from
    ``approximate_predict`` and the soft membership of the sampled point they connect to (its nearest in the
    sample's mutual-reachability sense). hdbscan's own ``membership_vector`` for new points runs a Python loop per
    point (minutes for 100,000 of them); the sample's memberships are computed at once."""
    import hdbscan
    n = len(points)
    rows = sample_rows(n, limit, seed)
    if cfg.min_cluster_size:  # a size asked for in products of the whole: the same share of the sample
        cfg = dataclasses.replace(cfg, min_cluster_size=max(2, round(cfg.min_cluster_size * limit / n)))
    cfg = cfg.resolved(limit)
    labels, probabilities = np.empty(n, np.int64), np.empty(n, np.float32)
    soft, strength = np.empty(n, np.int64), np.zeros(n, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hdbscan.HDBSCAN(min_cluster_size=cfg.min_cluster_size, min_samples=cfg.min_samples,
                                cluster_selection_method=cfg.selection, prediction_data=True).fit(points[rows])
        labels[rows], probabilities[rows] = model.labels_, model.probabilities_
        if model.labels_.max() < 0:
            sample_soft, sample_strength = model.labels_.astype(np.int64), np.zeros(limit, np.float32)
        else:
            membership = hdbscan.all_points_membership_vectors(model).reshape(limit, -1)
            sample_soft, sample_strength = membership.argmax(axis=1), membership.max(axis=1).astype(np.float32)
        soft[rows], strength[rows] = sample_soft, sample_strength
        rest = np.setdiff1d(np.arange(n), rows)
        for start in range(0, len(rest), PREDICT_CHUNK):
            chunk = rest[start:start + PREDICT_CHUNK]
            labels[chunk], probabilities[chunk], via = hdbscan.approximate_predict(model, points[chunk],
                                                                                   return_connecting_points=True)
            soft[chunk], strength[chunk] = sample_soft[via], sample_strength[via]
    soft = np.where(labels >= 0, labels, soft)  # a clustered point keeps its own cluster
    return Clustering(labels, probabilities, soft, strength)


def dbscan_labels(vectors: np.ndarray, eps: float, min_samples: int = 10) -> np.ndarray:
    """DBSCAN on raw embeddings (n, d) with cosine distance: (n,) labels, NOISE for noise."""
    return dbscan_runs(vectors, [eps], min_samples)[0]


def dbscan_runs(vectors: np.ndarray, grid: list[float], min_samples: int = 10) -> list[np.ndarray]:
    """DBSCAN on raw embeddings (n, d) rows L2-normalised, with cosine distance, at each eps of ``grid``: one (n,)
    labels array per eps, in the grid's order.

    Every eps-neighbourhood lies inside the largest one, so the pairs within the largest eps are found once (a
    sparse distance graph, by the same brute-force cosine search DBSCAN runs itself) and each run reads its own
    from them (``metric="precomputed"``, where only stored pairs can be neighbours; a duplicate's stored distance 0
    counts): the same labels as a search per eps, at the cost of one. Largest eps first, the graph shrinking to
    each eps in turn, so no run holds more pairs than its own search would."""
    from sklearn.cluster import DBSCAN
    from sklearn.neighbors import NearestNeighbors
    if len(vectors) == 0 or not len(grid):
        return [np.zeros(0, np.int64) for _ in grid]
    graph = NearestNeighbors(radius=max(grid), metric="cosine", algorithm="brute", n_jobs=-1).fit(vectors) \
        .radius_neighbors_graph(vectors, mode="distance")
    labels: dict[float, np.ndarray] = {}
    for eps in sorted(set(grid), reverse=True):
        graph = _within(graph, eps)
        labels[eps] = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit(graph).labels_ \
            .astype(np.int64)
    return [labels[eps] for eps in grid]


def _within(graph, eps: float):
    """The CSR distance graph with only its stored pairs at most ``eps`` apart (explicit zeros kept)."""
    from scipy.sparse import csr_matrix
    keep = graph.data <= eps
    if keep.all():
        return graph
    indptr = np.concatenate([[0], np.cumsum(keep)])[graph.indptr]
    return csr_matrix((graph.data[keep], graph.indices[keep], indptr), shape=graph.shape)


def eps_grid(neighbour_scores: np.ndarray, min_samples: int = 10,
             quantiles: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9, 0.97)) -> list[float]:
    """DBSCAN radii from the k-distance heuristic: quantiles of each point's cosine distance to its
    ``min_samples``-th neighbour. ``neighbour_scores`` (n, m) cosine similarities, best first."""
    column = min(min_samples, neighbour_scores.shape[1]) - 1
    if column < 0 or len(neighbour_scores) == 0:
        return []
    kth = 1.0 - neighbour_scores[:, column]
    return sorted({round(float(max(q, 1e-3)), 4) for q in np.quantile(kth, quantiles)})


def agreement(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """How well clusters match a catalogue label.

    ``ari``: adjusted Rand index over all points, noise counted as one more group (so a method that
    leaves most points as noise cannot score well on the few it clusters). ``ari_clustered``: the
    same over clustered points only. ``purity``: the share of clustered points whose cluster's
    commonest label is theirs (1.0 = every cluster holds one label).
    """
    from sklearn.metrics import adjusted_rand_score
    truth = np.asarray(truth).astype(str)
    clustered = labels != NOISE
    if not clustered.any():
        return {"ari": 0.0, "ari_clustered": 0.0, "purity": 0.0}
    frame = pd.DataFrame({"c": labels[clustered], "t": truth[clustered]})
    majority = frame.groupby("c")["t"].agg(lambda s: s.value_counts().iloc[0]).sum()
    return {"ari": float(adjusted_rand_score(truth, labels)),
            "ari_clustered": float(adjusted_rand_score(truth[clustered], labels[clustered])),
            "purity": float(majority / clustered.sum())}


def label_agreement(labels: np.ndarray, attributes: pd.DataFrame,
                    columns: tuple[str, ...] = NAME_ATTRS) -> dict[str, float]:
    """``agreement`` against each labelled column of ``attributes`` (rows aligned with ``labels``),
    flattened to keys like ``ari_product_type`` and ``purity_pattern``."""
    out = {}
    for column in columns:
        if column in attributes and attributes[column].astype(str).str.len().gt(0).any():
            for metric, value in agreement(labels, attributes[column].to_numpy()).items():
                out[f"{metric}_{column}"] = round(value, 4)
    return out


def _phrase(attr: str, value: str) -> str:
    return pattern_phrase(value) if attr == "pattern" else value.lower()


def metadata_names(labels: np.ndarray, attributes: pd.DataFrame) -> pd.DataFrame:
    """A readable name per cluster from the attribute values that dominate it.

    labels (n,) cluster ids (NOISE ignored); attributes (n, a) strings aligned with them.
    Returns one row per cluster id (index ``cluster``): ``size``, ``name`` (e.g. "Black striped
    vest top": the colour, pattern and type held by at least half the cluster, a broader group when
    no type dominates), ``top`` (its commonest colour / pattern / type with their shares) and
    ``distinctive`` (the value most over-represented against the whole catalogue).
    Clusters sharing a name get the value that tells them apart appended ("Denim trousers · black",
    "Denim trousers · Divided", a section: :func:`telling_values`), a count ("(2 of 3)") only when no
    attribute does.
    """
    attrs = attributes.astype(str).reset_index(drop=True)
    names = [c for c in NAME_ATTRS if c in attrs and attrs[c].str.len().gt(0).any()]
    others = [c for c in attrs.columns if c not in NAME_ATTRS and attrs[c].str.len().gt(0).any()]
    overall = {c: attrs[c].value_counts(normalize=True) for c in attrs.columns}
    rows = []
    for cluster in sorted(set(labels[labels != NOISE].tolist())):
        part = attrs[labels == cluster]
        words, top = [], []
        for attr in names:
            share = part[attr][part[attr] != ""].value_counts(normalize=True)
            if share.empty:
                continue
            value, fraction = share.index[0], float(share.iloc[0])
            top.append(f"{attr.replace('_', ' ')}: {value} {fraction:.0%}")
            if fraction >= DOMINANT:
                words.append(_phrase(attr, value))
            else:
                for broader in BROADER.get(attr, ()):
                    if broader in part:
                        b = part[broader].value_counts(normalize=True)
                        if not b.empty and b.iloc[0] >= DOMINANT and b.index[0]:
                            words.append(b.index[0].lower())
                            break
        best, best_lift = "", 0.0
        for attr in others + names:
            share = part[attr][part[attr] != ""].value_counts(normalize=True)
            lift = (share / overall[attr].reindex(share.index))[share >= 0.3]
            lift = lift[[v.lower() not in words for v in lift.index]]  # say something the name does not
            if not lift.empty and lift.max() > best_lift:
                best, best_lift = lift.idxmax(), float(lift.max())
        name = " ".join(words) if words else f"mixed, mostly {best.lower()}" if best else "mixed"
        rows.append({"cluster": cluster, "size": len(part), "name": name[:1].upper() + name[1:],
                     "top": " · ".join(top), "distinctive": best})
    frame = pd.DataFrame(rows, columns=["cluster", "size", "name", "top", "distinctive"]).set_index("cluster")
    return _disambiguate(frame, labels, attrs)


def _suffix(attr: str, value: str) -> str:
    """How a value reads after a name: "black", "striped", "Divided" (other attributes' values as they are)."""
    return _phrase(attr, value) if attr in NAME_ATTRS else value


def telling_values(labels: np.ndarray, values: np.ndarray, siblings: list[int]) -> dict[int, tuple[str, float]]:
    """For each cluster of ``siblings``, the value of one attribute most over-represented in it against the
    other siblings together, with its share of the cluster; clusters with no value held by at least
    :data:`TELLING_SHARE` of their products and at least :data:`TELLING_LIFT` times as common as among the
    other siblings are left out. labels (n,) cluster ids; values (n,) strings ("" unknown)."""
    rows = np.isin(labels, siblings) & (values != "")
    if not rows.any():
        return {}
    counts = pd.crosstab(labels[rows], values[rows])  # (clusters, values)
    size = pd.Series(labels[np.isin(labels, siblings)]).value_counts().reindex(counts.index)
    share = counts.div(size, axis=0)
    # the other siblings' share, with one pseudo-product per value so a value they never hold stays finite
    rest = (counts.sum(axis=0) - counts + 1).div(size.sum() - size + counts.shape[1], axis=0)
    lift = (share / rest).where((share >= TELLING_SHARE) & (share / rest >= TELLING_LIFT))
    out = {}
    for cluster, row in lift.iterrows():
        row = row.dropna()
        if len(row):
            best = max(row.index, key=lambda v: (row[v], share.at[cluster, v]))
            out[int(cluster)] = (str(best), float(share.at[cluster, best]))
    return out


def _tell_apart(names: pd.Series, labels: np.ndarray, attrs: pd.DataFrame, siblings: list[int],
                candidates: list[str]) -> None:
    """Gives ``siblings`` (clusters sharing one name in ``names``) distinct names, in place: the name plus the
    value of the attribute that tells most of them apart (most distinct names, then the largest mean share
    of the values appended), again with the remaining attributes for those still alike, and a count ("3 of
    5") only where no attribute separates them."""
    name = names[siblings[0]]
    best, best_score = None, (0, 0.0)
    for attr in candidates:
        picks = telling_values(labels, attrs[attr].to_numpy(), siblings)
        picks = {c: (v, s) for c, (v, s) in picks.items() if _phrase(attr, v) not in name.lower()}
        distinct = len({picks[c][0] if c in picks else None for c in siblings})
        if distinct < 2:
            continue
        score = (distinct, float(np.mean([s for _, s in picks.values()])) if picks else 0.0)
        if score > best_score:
            best, best_score = (attr, picks), score
    if best is None:
        for i, cluster in enumerate(siblings):
            names[cluster] = f"{name} ({i + 1} of {len(siblings)})"
        return
    attr, picks = best
    for cluster, (value, _) in picks.items():
        names[cluster] = f"{name} · {_suffix(attr, value)}"
    rest = [a for a in candidates if a != attr]
    for _, group in names[siblings].groupby(names[siblings]):
        if len(group) > 1:
            _tell_apart(names, labels, attrs, group.index.tolist(), rest)


def _disambiguate(frame: pd.DataFrame, labels: np.ndarray, attrs: pd.DataFrame) -> pd.DataFrame:
    names = frame["name"].copy()
    candidates = [c for c in NAME_ATTRS if c in attrs] + [c for c in attrs.columns if c not in NAME_ATTRS]
    candidates = [c for c in candidates if attrs[c].str.len().gt(0).any()]
    for _, group in frame.groupby("name"):
        if len(group) > 1:
            _tell_apart(names, labels, attrs, group.index.tolist(), candidates)
    return frame.assign(name=names)


def ctfidf_keywords(labels: np.ndarray, sentences: list[str], top: int = 5) -> dict[int, list[str]]:
    """Words that set each cluster's product sentences apart (class-based TF-IDF, as in BERTopic):
    a word's frequency in the cluster times log(1 + mean words per cluster / its catalogue frequency)."""
    from sklearn.feature_extraction.text import CountVectorizer
    clusters = sorted(set(labels[labels != NOISE].tolist()))
    if not clusters:
        return {}
    clustered = labels != NOISE
    docs = pd.Series(sentences)[clustered].groupby(labels[clustered]).agg(" ".join).reindex(clusters).tolist()
    vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z-]+\b")
    try:
        counts = vectorizer.fit_transform(docs).toarray().astype(np.float64)
    except ValueError:  # no words at all
        return {c: [] for c in clusters}
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    idf = np.log1p(counts.sum(axis=1).mean() / np.maximum(counts.sum(axis=0), 1))
    scores = tf * idf
    vocab = vectorizer.get_feature_names_out()
    return {c: [vocab[j] for j in np.argsort(-scores[i])[:top] if scores[i, j] > 0] for i, c in enumerate(clusters)}


def centroids(vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ids (k,) and their L2-normalised mean vectors (k, d)."""
    clusters = np.array(sorted(set(labels[labels != NOISE].tolist())), dtype=np.int64)
    means = np.stack([vectors[labels == c].mean(axis=0) for c in clusters]) if len(clusters) else \
        np.zeros((0, vectors.shape[1]), np.float32)
    return clusters, (means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def prompt_names(centres: np.ndarray, prompts: dict[str, tuple[list[str], np.ndarray]]) -> list[str]:
    """A name per centroid (k, d) from the best-matching text prompt of each attribute.

    ``prompts`` maps an attribute (in NAME_ATTRS order) to its candidate values and their prompt
    embeddings (m, d), L2-normalised, from the backbone's text tower; e.g. "pattern" ->
    (["stripe", "check"], vectors of "a photo of a striped garment", ...). The chosen values are
    joined as in ``metadata_names``: "Black striped vest top".
    """
    words = [[] for _ in range(len(centres))]
    for attr in NAME_ATTRS:
        if attr not in prompts or len(prompts[attr][0]) == 0:
            continue
        values, vectors = prompts[attr]
        best = np.argmax(centres @ vectors.T, axis=1)
        for i, j in enumerate(best):
            words[i].append(_phrase(attr, values[j]))
    names = [" ".join(w) for w in words]
    return [n[:1].upper() + n[1:] for n in names]


PROMPT_TEMPLATES = {"colour": PATTERN_PROMPT, "pattern": PATTERN_PROMPT, "product_type": TYPE_PROMPT}


def prompt_texts(attributes: pd.DataFrame, min_count: int = 5,
                 max_values: int = 60) -> dict[str, tuple[list[str], list[str]]]:
    """Candidate values per attribute (those held by at least ``min_count`` products, commonest first)
    and the prompt sentence for each, e.g. "pattern" -> (["Stripe"], ["a photo of a striped garment"])."""
    out = {}
    for attr in NAME_ATTRS:
        if attr not in attributes:
            continue
        counts = attributes[attr].astype(str).value_counts()
        values = [v for v, c in counts.items() if c >= min_count and v and re.search(r"[A-Za-z]", v)][:max_values]
        out[attr] = (values, [PROMPT_TEMPLATES[attr].format(_phrase(attr, v)) for v in values])
    return out
