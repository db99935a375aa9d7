"""The warm-up's stages: which a catalogue gets, in which order, and a failing stage leaving the others to run."""
import dataclasses

import pandas as pd
import pytest

from core.cache import ArtefactCache
from core.embeddings.pipeline import build
from core.warmup import Task, run_tasks, warm_stages


@pytest.fixture(scope="module")
def built(tmp_path_factory, synthetic_catalog, tiny_backbone):
    return build(synthetic_catalog, tiny_backbone, ArtefactCache(tmp_path_factory.mktemp("warm") / "cache"))


def names(tasks: list[Task]) -> list[str]:
    return [t.name for t in tasks]


def test_stages_come_in_the_order_pages_need_them(built):
    tasks = warm_stages(built, built.cache)
    assert names(tasks) == ["cluster map (hybrid)", "photo thumbnails", "DBSCAN comparison (hybrid)",
                            "texture report",
                            "GraphSAGE on the purchases before 2020-04-01", "Two-tower on the purchases before 2020-04-01",
                            "evaluation (first, one seed)", "cluster map (image)", "cluster map (text)",
                            "cluster map (texture)", "evaluation"]
    assert {t.page for t in tasks} == {"Clusters", "Texture failures", "Cold start"}  # offline-lit adds Backbone
    assert tasks[-1].key[0] == "evaluation" and len(tasks[-1].key) == 4  # the key the Cold start page looks up
    assert tasks[6].key == tasks[-1].key + ((0,),)  # the first evaluation: one seed, a key of its own
    assert all(t.state == "queued" and t.seconds() == 0 for t in tasks)  # made, not run


def test_only_what_the_catalogue_can_have(built):
    assert names(warm_stages(built, built.cache, models=[], map_kinds=["hybrid"])) == [
        "cluster map (hybrid)", "photo thumbnails", "DBSCAN comparison (hybrid)", "texture report"]
    assert names(warm_stages(built, built.cache, models=["content"], map_kinds=[]))[-2:] == [
        "evaluation (first, one seed)", "evaluation"]  # no learned model named: none fitted for the demo
    no_purchases = dataclasses.replace(built.catalog, purchases=built.catalog.purchases.iloc[:0])
    plain = dataclasses.replace(built.catalog, products=built.catalog.products.drop(columns="pattern"))
    assert names(warm_stages(dataclasses.replace(built, catalog=no_purchases), built.cache, map_kinds=[])) == [
        "texture report"]
    assert "texture report" not in names(warm_stages(dataclasses.replace(built, catalog=plain), built.cache,
                                                     models=[], map_kinds=[]))
    later = built.catalog.purchases.assign(timestamp=pd.Timestamp("2021-01-01"))  # nothing before the cutoff
    assert not any(t.page == "Cold start" for t in warm_stages(
        dataclasses.replace(built, catalog=dataclasses.replace(built.catalog, purchases=later)), built.cache))


def test_a_failing_stage_is_reported_and_the_next_one_runs():
    seen = []

    def fail(progress):
        progress("halfway", 1, 2)
        raise ValueError("no such column")
    tasks = [Task("first", fail), Task("second", lambda progress: seen.append("ran") or 42)]
    seconds = run_tasks(tasks, lambda step, done, total: seen.append((step, done, total)))
    assert [t.state for t in tasks] == ["failed", "done"]
    assert tasks[0].error == "ValueError: no such column" and tasks[1].result == 42
    assert seen == [("first: halfway", 1, 2), "ran"] and set(seconds) == {"first", "second"}
    assert (tasks[0].step, tasks[0].done, tasks[0].total) == ("halfway", 1, 2)
