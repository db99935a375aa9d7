"""The sidebar's Catalogue box with a shop's export: the format it was read as, what became what, and reading it
otherwise (drafts kept, a format named in the spec)."""
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.app
APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture(autouse=True)
def builds_finish():
    """Each catalogue the test reads starts a build in the background: let them end before the next test (a build
    thread still in native code when the interpreter exits aborts it)."""
    yield
    for thread in threading.enumerate():
        if thread.name.startswith("atelier-"):
            thread.join(300)


def test_the_sidebar_says_how_an_export_was_read_and_reads_it_otherwise(monkeypatch, tmp_path):
    from tests.data.test_exports import MERCHANT_ITEMS, SHOPIFY_COLUMNS, rows_to_csv, shopify_rows
    export = tmp_path / "products_export.csv"
    export.write_bytes(rows_to_csv(SHOPIFY_COLUMNS, [{**r, "Image Src": "", "Variant Image": ""}
                                                     for r in shopify_rows()]))
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ATELIER_CATALOG", str(export))
    monkeypatch.setenv("ATELIER_BACKBONE", "random:atelier-tiny")
    monkeypatch.setenv("ATELIER_OFFLINE", "1")
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("(shopify)" in m.value and "3 products" in m.value for m in at.sidebar.markdown)
    box = next(e for e in at.sidebar.expander if e.label == "Read as a shopify export")
    table = box.dataframe[0].value
    assert table.set_index("in the export").loc["Body (HTML)", "in Atelier"] == "description (as text)"
    at.sidebar.checkbox(key="app_export_drafts").check().run()
    assert at.session_state["app_catalog"] == f"shopify+drafts:{export}"
    assert any("(shopify)" in m.value and "4 products" in m.value for m in at.sidebar.markdown)  # the draft too
    feed = tmp_path / "odd.csv"
    feed.write_bytes(rows_to_csv(["id", "title"], [{"id": i["id"], "title": i["title"]} for i in MERCHANT_ITEMS]))
    # its header ("id,title") names no format: read as a feed only when told
    at.sidebar.text_input(key="app_catalog").input(str(feed)).run()
    assert any("not an export Atelier knows" in e.value for e in at.sidebar.error)
    at.sidebar.text_input(key="app_catalog").input(f"merchant:{feed}").run()
    assert any("(merchant)" in m.value and "2 products" in m.value for m in at.sidebar.markdown)
