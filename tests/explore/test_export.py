"""The export: one row per product that pandas and pyarrow read back as written, its embeddings fixed-size
float32 lists, its neighbours the build's, its texture flag counted from its photo neighbours' patterns."""
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.cache import ArtefactCache
from core.embeddings.pipeline import build
from core.explore.clustermap import MapConfig, cluster_map
from core.explore.export import export_table, write_export


@pytest.fixture(scope="module")
def exported(synthetic_catalog, tiny_backbone, tmp_path_factory):
    cache = ArtefactCache(tmp_path_factory.mktemp("export-cache"))
    built = build(synthetic_catalog, tiny_backbone, cache)
    table = export_table(built, cluster_map(built, cache, MapConfig()))
    return built, table, tmp_path_factory.mktemp("export")


def test_parquet_holds_every_product_with_fixed_size_embeddings_and_the_build_s_neighbours(exported):
    built, table, folder = exported
    path = write_export(table, folder / "catalogue.parquet")
    schema = pq.read_schema(path)
    for kind in built.kinds:
        width = built.embeddings.matrix(kind, built.cfg.hybrid_weight)[0].shape[1]
        assert str(schema.field(f"embedding_{kind}").type) == f"fixed_size_list<element: float>[{width}]"
    back = pd.read_parquet(path)
    assert list(back["product_id"]) == list(built.catalog.products.index)
    first = back.iloc[3]
    want = built.neighbours(first["product_id"], "hybrid", 10)
    assert list(first["neighbours_hybrid"]) == want["product_id"].tolist()
    assert np.allclose(first["neighbour_scores_hybrid"], want["score"], atol=1e-5)
    matrix, ids = built.embeddings.matrix("hybrid", built.cfg.hybrid_weight)
    row = list(ids).index(first["product_id"])
    assert np.array_equal(np.asarray(first["embedding_hybrid"], np.float32), matrix[row])
    assert back["cluster_id"].dtype == np.int64 and set(back["map_kind"]) == {"hybrid"}
    assert back["x"].notna().all() and (back["cluster_name"] != "").all()


def test_the_texture_flag_is_the_share_of_photo_neighbours_with_another_pattern(exported):
    built, table, _ = exported
    patterns = built.catalog.products["pattern"].str.lower()
    for _, row in table.head(10).iterrows():
        near = row["neighbours_image"]
        share = float((patterns[near].to_numpy() != patterns[row["product_id"]]).mean())
        assert row["texture_confusion"] == pytest.approx(share, abs=1e-3)
        assert row["texture_confused"] == (share > 0.5)


def test_csv_keeps_the_lists_as_json_and_a_wrong_suffix_is_refused(exported):
    built, table, folder = exported
    back = pd.read_csv(write_export(table, folder / "catalogue.csv"))
    assert json.loads(back.loc[0, "neighbours_text"]) == table.loc[0, "neighbours_text"]
    assert np.allclose(json.loads(back.loc[0, "embedding_text"]), table.loc[0, "embedding_text"], atol=1e-6)
    with pytest.raises(ValueError, match="parquet or .csv"):
        write_export(table, folder / "catalogue.xlsx")
    assert not (folder / "catalogue.xlsx").exists()
