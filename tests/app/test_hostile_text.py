"""A shop's text is never rendered as HTML: a catalogue whose titles and descriptions carry a <script> and an
<img onerror>, through every page that shows product text; each element that shows it must not allow HTML (then
Streamlit shows the tags as text), and no raw-HTML element is drawn at all."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.test_pages import rerun_until, wait_for_build
from tests.data.files import photo

pytestmark = pytest.mark.app
APP = str(Path(__file__).resolve().parents[2] / "app.py")
SCRIPT = '<script>alert("title")</script>'
IMG = '<img src=x onerror="alert(1)">'
PIXEL = "![seen](http://tracker.example/p.png) [win $5](javascript:alert(1))"  # markdown would draw them
TEXT_ELEMENTS = ("markdown", "caption", "subheader", "header", "title", "info", "warning", "error", "success")


@pytest.fixture
def hostile_env(monkeypatch, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-shop")
    rows = ["item_id,title,description,image,colour,pattern,product_type"]
    quoted = lambda text: text.replace('"', '""')  # noqa: E731 (a CSV field's quotes, doubled)
    for i in range(16):
        photo(root / "img" / f"{i}.png", colour=(15 * i, 90, 200 - 10 * i))
        rows.append(f'p{i:02d},"Dress {i} {quoted(SCRIPT)} {PIXEL}","Soft {quoted(IMG)} {PIXEL} cotton",'
                    f'img/{i}.png,{["red", "blue"][i % 2]},{["stripe", "solid"][i % 2]},dress {PIXEL}')
    (root / "items.csv").write_text("\n".join(rows) + "\n")
    (root / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "".join(
        f"u{i % 5},p{i:02d},2020-0{1 + i % 6}-1{i % 9} 10:00:00\n" for i in range(16)))
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path_factory.getbasetemp() / "hostile-cache"))
    monkeypatch.setenv("ATELIER_CATALOG", str(root))
    monkeypatch.setenv("ATELIER_BACKBONE", "random:atelier-tiny")
    monkeypatch.setenv("ATELIER_OFFLINE", "1")


def shown_text(at: AppTest) -> list[tuple[str, str, bool]]:
    """(kind, text, allows HTML) of every text element drawn, the sidebar and dialogs included."""
    out = []
    for kind in TEXT_ELEMENTS:
        for e in at.get(kind):
            out.append((kind, str(e.value), bool(getattr(e.proto, "allow_html", False))))
    return out


def check(at: AppTest) -> list[str]:
    """The text of every element, as it reads on screen (markdown's escapes undone), after checking that no element
    allows HTML, no raw-HTML element is drawn, and no shop text reaches markdown unescaped (a link, an image, a
    formula)."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.get("html"), "a raw-HTML element was drawn"
    texts = shown_text(at)
    assert not [t for t in texts if t[2]], "an element allows HTML"
    raw = [t for _, t, _ in texts if "tracker.example" in t]
    unescaped = [t for t in raw if re.search(r"(?<!\\)!(?<!\\)\[seen|(?<!\\)\$5", t)]
    assert not unescaped, unescaped  # the shop's markdown escaped wherever it is shown
    return [re.sub(r"\\(.)", r"\1", t) for _, t, _ in texts]


@pytest.mark.parametrize("page", ["app_pages/catalogue.py", "app_pages/neighbours.py", "app_pages/coldstart.py",
                                  "app_pages/validation.py", "app_pages/texture.py", "app_pages/clusters.py"])
def test_no_page_renders_a_shop_s_text_as_html(hostile_env, page):
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["coldstart_model"] = "content"
    at.session_state["coldstart_liked"] = ["p01", "p02"]
    at.run()
    at.switch_page(page)
    at = wait_for_build(at.run())
    at = rerun_until(at, lambda at: not any("Fitting" in i.value or "still" in i.value for i in at.info))
    texts = check(at)
    if page in ("app_pages/catalogue.py", "app_pages/neighbours.py", "app_pages/coldstart.py"):
        assert any(SCRIPT in t for t in texts), "the page did not show the titles (as text)"
    if page == "app_pages/catalogue.py":  # the product view shows the description too
        at.button(key=next(b.key for b in at.main.button if b.key and b.key.startswith("product_open_"))).click()
        texts = check(at.run())
        assert any(IMG in t for t in texts), "the view did not show the description (as text)"

