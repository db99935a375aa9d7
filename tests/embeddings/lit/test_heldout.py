"""One held-out fit of offline-lit's heads serves every held-out measurement: the backbone evaluation and the
texture report train no heads of their own."""
import numpy as np

from core.cache import ArtefactCache
from core.embeddings.pipeline import build
from core.embeddings.quality import held_out_heads, held_out_split, lit_evaluation
from core.embeddings.registry import create_backbone
from core.explore.texture import texture_report


def test_backbone_evaluation_and_texture_report_share_one_held_out_fit(catalog, tmp_path, monkeypatch):
    import core.embeddings.lit.heads as heads_module
    cache = ArtefactCache(tmp_path / "cache")
    built = build(catalog, create_backbone("offline-lit"), cache)
    fits = []
    real_fit = heads_module.fit_heads_on
    monkeypatch.setattr(heads_module, "fit_heads_on", lambda *a, **k: fits.append(a[1].copy()) or real_fit(*a, **k))

    result = lit_evaluation(catalog, cache)
    report = texture_report(built, cache, "pattern", clusters=False)
    assert len(fits) == 1  # the texture report loaded the evaluation's fit
    assert [e.kind for e in cache.entries()].count("lit-heads") == 2  # the build's heads and the held-out ones

    part = held_out_split(catalog.products["group_id"].to_numpy(str))
    has_image = built.embeddings.has_image
    np.testing.assert_array_equal(fits[0], has_image & (part == "train"))  # the fit never saw a held-out product
    assert (result.n_train, result.n_test) == ((fits[0]).sum(), (has_image & (part == "test")).sum())
    labelled = has_image & (catalog.products["pattern"].to_numpy(str) != "")
    assert report.split["test"] == (labelled & (part == "test")).sum()  # measured on the same test products
    assert report.split["train"] == (labelled & (part == "train")).sum()
    assert report.split["test_measured"] == report.split["test"]  # all of them, below REPORT_PRODUCTS

    # past REPORT_PRODUCTS the report measures a sample of whole groups (another cache entry)
    import core.explore.texture as texture_module
    monkeypatch.setattr(texture_module, "REPORT_PRODUCTS", 12)
    sampled = texture_report(built, cache, "pattern", clusters=False)
    assert sampled.split["test"] == report.split["test"] and 0 < sampled.split["test_measured"] < report.split["test"]
    assert sampled.split["validation_measured"] < report.split["validation"]
    assert set(sampled.table["kind"]) == set(report.table["kind"])

    again = held_out_heads(catalog, cache)  # loaded, with the fit's record
    assert again.epochs > 0 and again.seconds > 0 and np.isfinite(again.final_loss)
    assert len(fits) == 1
