"""What Atelier computed about a catalogue, one row per product, in a file data tools open as is (Parquet with
fixed-size float32 list columns, or CSV): attributes, every embedding kind, the map's coordinates and cluster,
the nearest neighbours per kind, and the texture-confusion flag."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.embeddings.pipeline import Built
from core.explore.clustermap import ClusterMap

NEIGHBOURS = 10
LABEL = "pattern"  # the texture flag's label: where photo neighbours disagree with it, the photo space confuses it
FORMATS = (".parquet", ".csv")


def _vectors(built: Built, kind: str) -> list[np.ndarray | None]:
    """Each catalogue product's ``kind`` vector (float32), None where it has none (no readable photo)."""
    matrix, ids = built.embeddings.matrix(kind, built.cfg.hybrid_weight)
    at = dict(zip(ids.tolist(), range(len(ids))))
    return [matrix[at[p]].astype(np.float32) if p in at else None for p in built.catalog.products.index]


def _neighbours(built: Built, kind: str, k: int) -> tuple[list[list[str] | None], list[list[float] | None]]:
    """Each product's ``k`` nearest products in ``kind`` (itself excluded), ids and cosine scores."""
    index = built.indexes[kind]
    ids, scores = [], []
    for pid in built.catalog.products.index:
        row = index.row.get(pid)
        if row is None:
            ids.append(None)
            scores.append(None)
            continue
        rows, s = built.nearest_rows(kind, row, k)
        ids.append(index.ids[rows].tolist())
        scores.append([round(float(x), 5) for x in s])
    return ids, scores


def texture_confusion(built: Built, neighbours: list[list[str] | None], label: str = LABEL
                      ) -> tuple[list[float | None], list[bool | None]]:
    """Per product, the share of its photo neighbours whose ``label`` (pattern) differs from its own, and the flag
    that most of them do (the photo space confuses, say, striped with plain there); None without a label or a
    photo."""
    products = built.catalog.products
    if label not in products:
        return [None] * len(products), [None] * len(products)
    labels = products[label].astype(str).str.strip().str.lower()
    shares, flags = [], []
    for own, near in zip(labels, neighbours):
        if not own or not near:
            shares.append(None)
            flags.append(None)
            continue
        theirs = labels.reindex(near).fillna("")
        known = theirs[theirs != ""]
        share = float((known != own).mean()) if len(known) else None
        shares.append(None if share is None else round(share, 3))
        flags.append(None if share is None else bool(share > 0.5))
    return shares, flags


def export_table(built: Built, cmap: ClusterMap, k: int = NEIGHBOURS) -> pd.DataFrame:
    """One row per product: ``product_id``, ``title``, its attributes, ``image_path``; ``embedding_<kind>`` for
    every kind built (float32 arrays, None without a photo); ``x``, ``y``, ``cluster_id`` (-1: noise) and
    ``cluster_name`` on the ``cmap`` kind's map; ``neighbours_<kind>`` and ``neighbour_scores_<kind>``
    (``k`` each); ``texture_confusion`` and ``texture_confused`` (:func:`texture_confusion`, photo space)."""
    products = built.catalog.products
    out = pd.DataFrame({"product_id": products.index.to_numpy(), "title": products["title"].to_numpy()})
    for column in built.catalog.attribute_columns:
        out[column] = products[column].astype(str).to_numpy()
    out["image_path"] = products["image_path"].to_numpy()
    for kind in built.kinds:
        out[f"embedding_{kind}"] = _vectors(built, kind)
    where = cmap.export(products).set_index("product_id").reindex(products.index)
    out["x"] = where["x"].to_numpy(np.float32)
    out["y"] = where["y"].to_numpy(np.float32)
    out["cluster_id"] = where["cluster_id"].fillna(-1).astype(np.int64).to_numpy()
    out["cluster_name"] = where["cluster_name"].fillna("").to_numpy()
    out["map_kind"] = cmap.kind
    for kind in built.kinds:
        ids, scores = _neighbours(built, kind, k)
        out[f"neighbours_{kind}"], out[f"neighbour_scores_{kind}"] = ids, scores
    photo = "image" if "image" in built.kinds else built.kinds[0]
    out["texture_confusion"], out["texture_confused"] = texture_confusion(built, out[f"neighbours_{photo}"])
    return out


def write_export(table: pd.DataFrame, path: str | Path) -> Path:
    """``table`` to ``path``: Parquet (embeddings as fixed-size float32 lists, neighbours as lists of strings) or
    CSV (each list as JSON text). The file is written whole beside its destination, then moved into place."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{path}: the export is written as {' or '.join(FORMATS)}; name the file so")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        columns = {}
        for name in table.columns:
            values = table[name].tolist()
            if name.startswith("embedding_"):
                width = next((len(v) for v in values if v is not None), 0)
                missing = np.array([v is None for v in values], dtype=bool)
                flat = np.zeros((len(values), width), np.float32)
                for i, v in enumerate(values):
                    if v is not None:
                        flat[i] = v
                columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), width,
                                                                  mask=pa.array(missing))
            elif name.startswith("neighbours_"):
                columns[name] = pa.array(values, pa.list_(pa.string()))
            elif name.startswith("neighbour_scores_"):
                columns[name] = pa.array(values, pa.list_(pa.float32()))
            else:
                columns[name] = pa.array(values)
        pq.write_table(pa.table(columns), tmp)
    else:
        text = table.copy()
        for name in text.columns:
            if name.startswith(("embedding_", "neighbours_", "neighbour_scores_")):
                text[name] = [None if v is None else json.dumps(np.asarray(v).tolist() if name.startswith(
                    "embedding_") else v) for v in text[name]]
        text.to_csv(tmp, index=False)
    tmp.replace(path)
    return path
