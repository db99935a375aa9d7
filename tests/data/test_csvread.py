"""Tests of CSV reading: the record reader agrees with pandas, unreadable files name the real cause."""
from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from core.data.catalog import CatalogError
from core.data.load import load_catalog


def test_record_reader_reads_a_sound_file_as_pandas_does(tmp_path):
    from core.data.csvread import _read_by_record, _read_fast
    text = ('id,name,name,,note\n1,"a, b",x,,"say ""hi"""\n2,c,"",y,\n3,"",z,,\n')
    fast = _read_fast(text.encode())
    slow, broken = _read_by_record(text, tmp_path / "f.csv", "")
    assert fast is not None and broken == []
    pd.testing.assert_frame_equal(slow, fast, check_index_type=False)
    assert fast.columns.tolist() == ["id", "name", "name.1", "Unnamed: 3", "note"]
    assert fast.loc[0, "note"] == 'say "hi"'


@pytest.mark.parametrize("content, words", [
    (b"", "items.csv: empty file"),
    (b"\n \n", "items.csv: empty file"),
    ("item_id,title\na,Cr\u00e8me\n".encode("latin-1"), "items.csv: not a CSV: not UTF-8 text (byte 0xe8 on line 2)"),
    ("item_id,title\na,A\n".encode("utf-16"), "items.csv: not a CSV: UTF-16 text"),
    (b'item_id,"title,colour\na,A,red\n', "items.csv: line 1 (the header) cannot be read: unterminated quote"),
    (b"item_id;title;colour\na;A;red\n", "items.csv: not a CSV: its header reads as one column"),
    (b"item_id,title\na,A,\nb,B,\n", "items.csv: every row is broken (2), e.g. line 2: 3 fields, expected 2"),
], ids=["empty", "blank-lines", "latin-1", "utf-16", "header-quote", "semicolons", "every-row-broken"])
def test_unreadable_items_csv_names_the_real_cause(tmp_path, content, words):
    root = tmp_path / "shop"
    root.mkdir()
    (root / "items.csv").write_bytes(content)
    with pytest.raises(CatalogError) as e:
        load_catalog(root)
    assert words in str(e.value)
    assert "required column" not in str(e.value) and "needs" not in str(e.value)


def test_binary_items_csv_names_the_real_cause(tmp_path):
    root = tmp_path / "shop"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "items.csv", format="PNG")
    with pytest.raises(CatalogError, match=r"items\.csv: not a CSV: binary data") as e:
        load_catalog(root)
    assert "item_id" not in str(e.value)
