"""Readable tables and reports (issue 23): the evaluation table's main columns and the rest, the Validation
report, the backbone's fallback reason in one line, the Backbone page after evaluating, short customer ids."""
import json

import pytest
from streamlit.testing.v1 import AppTest

from core.cache import ArtefactCache
from core.embeddings.backbone import WeightsUnavailable
from core.recs.registry import LABELS
from core.recs.report import MAIN_METRICS, MORE_METRICS, EvalReport
from tests.app.test_pages import SPEC, coldstart_page, fake_evaluation, rerun_until, run_page
from tests.data.files import photo

pytestmark = pytest.mark.app


@pytest.fixture
def app_env(monkeypatch, tmp_path_factory):
    """As tests/app/test_pages.py's: the synthetic catalogue, a tiny random backbone, one warm cache."""
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path_factory.getbasetemp() / "app-cache"))
    monkeypatch.setenv("ATELIER_CATALOG", SPEC)
    monkeypatch.setenv("ATELIER_BACKBONE", "random:atelier-tiny")
    monkeypatch.setenv("ATELIER_OFFLINE", "1")

# Measured on screenshots of the H&M sample at 1400 px with the sidebar open: the main column is 930 px wide; a
# dataframe's text takes 6.1 (letters) to 7.3 (digits) px a character, plus 17 px of padding and border a cell.
PAGE_PX = 930
CHAR_PX, CELL_PX = 7.0, 17


def column_config(table) -> dict:
    """The dataframe's ``st.column_config`` as the front end gets it: column name -> its settings."""
    return json.loads(table.proto.columns)


def widest_px(frame, config: dict, longest_model: str) -> float:
    """What the table needs without scrolling sideways, from its longest cell or label per column (the model
    column as wide as the longest model name there is)."""
    px = 0.0
    for column in frame.columns:
        label = config.get(column, {}).get("label", column)
        cells = [longest_model] if column == "model" else frame[column].map(
            lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)).tolist()
        px += CHAR_PX * max(len(label), *map(len, cells)) + CELL_PX
    return px


def full_evaluation(models: list[str]) -> dict:
    """:func:`fake_evaluation` with every number of the evaluation table: Item kNN ID-only, so its never-bought
    recall is 0 for every customer (an interval of no width)."""
    result = fake_evaluation(models)
    for i, n in enumerate(models):
        m = result["models"][n]
        m |= {k: 0.0123 + i / 1000 for k in MAIN_METRICS + MORE_METRICS if k not in m}
        m |= {"recall_at_10_cold_items_ci_low": 0.0051, "recall_at_10_cold_items_ci_high": 0.0222,
              "exclude_bought": i % 2 == 0, "train_s": 12.5}
        if n == "itemknn":
            m |= {"id_only": True, "recall_at_10_cold_items": 0.0, "recall_at_10_cold_items_ci_low": 0.0,
                  "recall_at_10_cold_items_ci_high": 0.0}
    return result


def evaluation_page(monkeypatch, models: list[str]) -> AppTest:
    import core.recs.evaluate
    from app_pages.common import get_evaluation
    monkeypatch.setattr(core.recs.evaluate, "cached_evaluation",
                        lambda catalog, embeddings, names, *a: EvalReport.from_dict(full_evaluation(names)))
    get_evaluation.clear()  # not an evaluation an earlier test's session looked up (the app keeps them a minute)
    return coldstart_page(coldstart_section="How good is it", coldstart_eval_models=models)


def test_evaluation_main_columns_fit_the_page_and_the_rest_are_in_an_expander(app_env, monkeypatch):
    models = ["colour_variants", "content", "itemknn", "popularity", "two_tower"]
    at = evaluation_page(monkeypatch, models)
    main = next(d for d in at.dataframe if "recall_at_10_cold_items" in d.value.columns)
    assert list(main.value.columns) == ["model", *MAIN_METRICS]
    assert len(main.value) == len(models)
    config = column_config(main)
    assert config["recall_at_10_cold_items"]["label"] == "never-bought items (95% CI)"
    assert all(config[k].get("help") for k in MAIN_METRICS)  # what each column measures, on hover
    longest = max(LABELS.values(), key=len)  # "Popular with their segment"; the ID-only ones are short
    assert widest_px(main.value, config, longest) <= PAGE_PX

    more_box = next(e for e in at.expander if e.label.startswith("More metrics"))
    more = next(d for d in more_box.dataframe if "sampled_recall_at_10" in d.value.columns)
    assert list(more.value.columns) == ["model", *MORE_METRICS]
    assert widest_px(more.value, column_config(more), longest) <= PAGE_PX - 2 * 16  # the expander's padding
    fits = next(d for d in more_box.dataframe if "fit s" in d.value.columns)
    assert list(fits.value.columns) == ["model", "hides bought", "fit s"]
    assert list(fits.value["model"]) == list(more.value["model"]) and set(fits.value["fit s"]) == {12.5}
    hides = {LABELS[n]: i % 2 == 0 for i, n in enumerate(models)}  # as full_evaluation set them
    assert {m.removesuffix(" (ID-only)"): h for m, h in zip(fits.value["model"], fits.value["hides bought"])} == hides
    assert not any("recall_at_10_cold_items" in d.value.columns for d in more_box.dataframe)


def test_evaluation_intervals_read_as_value_low_high(app_env, monkeypatch):
    at = evaluation_page(monkeypatch, ["content", "itemknn", "popularity"])
    main = next(d.value for d in at.dataframe if "recall_at_10_cold_items" in d.value.columns).set_index("model")
    assert main.loc["Popularity", "recall_at_10"] == "0.0100 (0.0050–0.0200)"
    assert main.loc["Popularity", "recall_at_10_cold_items"] == "0.0143 (0.0051–0.0222)"
    assert main.loc["Item kNN (ID-only)", "recall_at_10_cold_items"] == "0.0000"  # no interval where none varies


# ---------------------------------------------------------------- Validation report

def test_validation_report_counts_the_never_bought_products(app_env):
    from core.data.load import load_catalog
    catalog = load_catalog(SPEC)
    never = len(catalog.never_bought())
    at = run_page("app_pages/validation.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Products"] == "40" and metrics["Never bought"] == f"{never:,}"
    assert metrics["Purchases"] == f"{len(catalog.purchases):,}" and metrics["Photos missing"] == "0"
    if never:
        assert any(f"{never:,} of 40 products" in c.value for c in at.caption)
    raw = next(e for e in at.expander if e.label == "Raw report (JSON)")
    assert json.loads(raw.json[0].proto.body)["counts"]["never_bought"] == never
    assert any("No problems found" in s.value for s in at.success)


def test_validation_report_gives_each_problem_its_count_and_examples(app_env, tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "items.csv").write_text("item_id,title,image\na,Red dress,a.jpg\na,Duplicate,a.jpg\nb,Shirt,b.jpg\n"
                                      "c,Hat,c.jpg\n")
    photo(folder / "b.jpg")
    (folder / "interactions.csv").write_text("user_id,item_id,timestamp\nu1,b,2020-03-01\n")
    at = run_page("app_pages/validation.py", app_catalog=str(folder))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Products"] == "3" and metrics["Never bought"] == "2"  # a and c; u1 bought b
    assert any("2 of 3 products (67%) were never bought" in c.value for c in at.caption)
    table = at.dataframe[0]
    problems = table.value.set_index("problem")
    assert problems.loc["duplicate item_id", "count"] == 1 and "a" in problems.loc["duplicate item_id", "examples"]
    assert column_config(table)["action"]["label"] == "what the loader did"
    raw = json.loads(next(e for e in at.expander if e.label == "Raw report (JSON)").json[0].proto.body)
    assert {p["problem"] for p in raw["problems"]} == set(problems.index)


# ---------------------------------------------------------------- Backbone

LONG = ("openclip:ViT-B-32/laion2b_s34b_b79k: pretrained weights could not be loaded. Tried the local cache: "
        "Failed to download file (open_clip_pytorch_model.bin) for laion/CLIP-ViT-B-32-laion2B-s34B-b79K; no "
        "download: cannot resolve huggingface.co. Fix: run once with internet access so the weights are cached.")
SHORT = "open_clip weights for ViT-B-32 could not be downloaded (no internet); using offline-lit"


@pytest.fixture
def no_open_clip(app_env, monkeypatch):
    """``auto`` without internet: open_clip's weights cannot be had, and the tiny random backbone stands in for
    offline-lit (whose towers take minutes to build on a busy machine; what is shown of the fallback is the same)."""
    import core.embeddings.registry
    from core.embeddings.openclip import random_backbone

    def unavailable(spec):
        raise WeightsUnavailable(LONG, "no internet")

    monkeypatch.setattr(core.embeddings.registry, "openclip_backbone", unavailable)
    monkeypatch.setattr(core.embeddings.registry, "_offline_lit", lambda spec: random_backbone("atelier-tiny"))
    monkeypatch.setenv("ATELIER_BACKBONE", "auto")


def backbone_page(name: str) -> AppTest:
    at = run_page("app_pages/backbone.py")
    return rerun_until(at, lambda at: any(m.value.startswith(f"**{name}**") for m in at.main.markdown),
                       timeout=300)


def test_the_fallback_reason_is_one_line_with_the_details_collapsed(no_open_clip):
    at = backbone_page("random:atelier-tiny")
    assert [i.value for i in at.main.info][0] == SHORT
    details = next(e for e in at.main.expander if e.label.startswith("How it was chosen"))
    assert any(LONG in c.value for c in details.caption)
    assert not any(LONG in m.value for m in [*at.main.markdown, *at.main.info, *at.main.warning])
    at = run_page()  # a new session: AppTest keeps the sidebar of a first run only
    assert SHORT in [i.value for i in at.sidebar.info]
    assert not any(LONG in w.value for w in [*at.sidebar.warning, *at.sidebar.info, *at.sidebar.markdown])
    sidebar_details = next(e for e in at.sidebar.expander if e.label.startswith("Why this backbone"))
    assert any(LONG in c.value for c in sidebar_details.caption)


@pytest.fixture
def not_evaluated(app_env):
    """No held-out evaluation in the cache, before and after (test_pages' evaluation test expects none either), nor
    in the app's finished jobs, which outlive the artefact."""
    from app_pages.common import _jobs
    ArtefactCache().clear("evaluation")
    _jobs().clear()
    yield
    ArtefactCache().clear("evaluation")
    _jobs().clear()


def test_after_evaluating_the_backbone_page_shows_the_numbers_and_no_longer_asks(not_evaluated, monkeypatch):
    monkeypatch.setenv("ATELIER_BACKBONE", "offline-lit")
    monkeypatch.setenv("ATELIER_COMPILE", "0")
    at = backbone_page("offline-lit")
    assert any("Not evaluated" in i.value for i in at.info)
    at.button(key="backbone_evaluate").click().run(timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    assert not any("Not evaluated" in i.value for i in at.info)
    at = rerun_until(at, lambda at: len(at.dataframe) > 0, timeout=300)  # a job: its progress, then the numbers
    assert not any(b.key == "backbone_evaluate" for b in at.button)
    table = at.dataframe[0]
    assert "text to image recall@10" in set(table.value["metric"])
    assert column_config(table)["reference (majority class / chance / raw ImageNet features)"]["label"] == "reference"
    assert not at.main.info  # offline-lit asked for by name: nothing stands in for anything


# ---------------------------------------------------------------- short customer ids

def test_customer_picker_shows_short_ids_with_their_purchases_and_keeps_the_full_id(app_env, tmp_path):
    long_a, long_b = "00f3a1" + "7" * 54 + "9c2e", "be11" + "0" * 56 + "aa01"
    items = "item_id,title,image,colour,pattern,product_type\n" + "".join(
        f"p{i},Product {i},img/p{i}.png,{'red' if i % 2 else 'blue'},solid,dress\n" for i in range(6))
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "items.csv").write_text(items)
    for i in range(6):
        photo(tmp_path / "shop" / "img" / f"p{i}.png", colour=(40 * i, 100, 200))
    (tmp_path / "shop" / "interactions.csv").write_text(
        "user_id,item_id,timestamp\n"
        f"{long_a},p0,2020-02-01\n{long_a},p1,2020-02-02\n{long_a},p2,2020-05-01\n{long_b},p3,2020-03-01\n")
    at = run_page("app_pages/coldstart.py", app_catalog=str(tmp_path / "shop"), coldstart_section="Existing customer")
    at = rerun_until(at, lambda at: any(s.key == "coldstart_customer" for s in at.selectbox), timeout=300)
    picker = at.selectbox(key="coldstart_customer")
    assert picker.options[0] == "00f3a1…9c2e · 2 purchases before 2020-04-01 · 1 after"  # most bought after first
    assert picker.value == long_a  # the full id is the value
    assert any(f"`{long_a}`" in c.value for c in at.caption)  # and shown whole, to copy
