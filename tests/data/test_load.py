"""Tests of loading by spec: layouts told apart, fatal input named, synthetic specs, limits."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.data.catalog import CatalogError
from core.data.load import load_catalog
from tests.data.files import GENERIC_ITEMS, HM_HEADER, write_generic, write_hm


def test_columns_argument_is_refused_for_a_fixed_layout(tmp_path):
    with pytest.raises(CatalogError, match="columns="):
        load_catalog(write_hm(tmp_path / "hm"), columns={"colour": "colour_group_name"})


def test_folder_without_catalogue_files_names_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogError, match="articles.csv") as e:
        load_catalog(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value)
    assert "items.csv" in str(e.value)


def test_nonexistent_folder_names_it(tmp_path):
    with pytest.raises(CatalogError, match="no such file or folder") as e:
        load_catalog(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value)


@pytest.mark.parametrize("layout", ["hm", "generic"])
def test_missing_id_column_names_the_file(tmp_path, layout):
    if layout == "hm":
        root = write_hm(tmp_path / "hm", header=HM_HEADER.replace("article_id", "id", 1))
        file, column = "articles.csv", "article_id"
    else:
        root = write_generic(tmp_path / "shop", GENERIC_ITEMS.replace("item_id", "sku", 1))
        file, column = "items.csv", "item_id"
    with pytest.raises(CatalogError) as e:
        load_catalog(root)
    assert str(root.resolve() / file) in str(e.value)
    assert column in str(e.value)


def test_layout_is_told_apart_by_its_files(tmp_path):
    assert load_catalog(write_hm(tmp_path / "hm")).products.index[0] == "0108775015"
    assert load_catalog(write_generic(tmp_path / "shop", GENERIC_ITEMS)).products.index.tolist() == ["a", "b"]


def test_limit_keeps_the_first_products(tmp_path):
    cat = load_catalog(write_hm(tmp_path / "hm"), limit=2)
    assert cat.products.index.tolist() == ["0108775015", "0108775044"]
    assert cat.purchases["product_id"].isin(cat.products.index).all()
    assert len(cat.purchases) == 2


def test_synthetic_spec_loads_into_the_cache(isolated_env):
    cat = load_catalog("synthetic:30")
    assert len(cat.products) == 30 and cat.simulated
    paths = [Path(p) for p in cat.products["image_path"]]
    assert all(p.is_file() for p in paths)
    assert all(isolated_env in p.parents for p in paths)


@pytest.mark.parametrize("spec", ["synthetic:abc", "synthetic:0", "synthetic:5:-1", "synthetic:5:0:9",
                                  "synthetic:5:x"])
def test_bad_synthetic_spec_raises(spec):
    with pytest.raises(CatalogError, match="synthetic"):
        load_catalog(spec)


@pytest.mark.parametrize("name", ["synthetic_shop", "synthetic-2024"])
def test_folder_named_like_synthetic_is_loaded_as_a_folder(tmp_path, monkeypatch, name):
    write_generic(tmp_path / name, GENERIC_ITEMS)
    monkeypatch.chdir(tmp_path)
    cat = load_catalog(name)
    assert not cat.simulated
    assert cat.products.index.tolist() == ["a", "b"]
