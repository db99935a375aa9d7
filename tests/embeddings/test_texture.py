"""The texture-aware embedding on products whose pattern the photo embedding cannot see."""
from __future__ import annotations

import numpy as np

from core.embeddings.quality import label_agreement, neighbours
from tests.vectors import synthetic, unit


def _pattern_blind_photo(n: int = 600, seed: int = 0):
    """A photo embedding that sees type and colour but not pattern, and descriptors (n, 64) that carry the
    pattern (plus noise): the situation the texture kind is for."""
    photo, patterns, groups, types, colours, _ = synthetic(n, pattern_weight=0.0, seed=seed)
    rng = np.random.default_rng(seed + 1)
    codes = np.unique(patterns, return_inverse=True)[1]
    descriptors = rng.standard_normal((3, 64))[codes] + 0.7 * rng.standard_normal((n, 64))
    return photo, descriptors.astype(np.float32) ** 2, patterns, groups, types, colours


def test_fused_cosine_is_the_weighted_sum_of_block_cosines():
    from core.embeddings.texture import TextureConfig, TextureModel
    photo, descriptors, patterns, *_ = _pattern_blind_photo(200)
    cfg = TextureConfig(pca_dim=16, photo_weight=0.6, texture_weight=0.4, head_weight=0.0)
    model = TextureModel(cfg).fit(photo, descriptors)
    fused = model.transform(photo, descriptors)
    blocks = {k: unit(v) for k, v in model.blocks(photo, descriptors).items()}
    want = 0.6 * blocks["photo"] @ blocks["photo"].T + 0.4 * blocks["texture"] @ blocks["texture"].T
    np.testing.assert_allclose(fused @ fused.T, want, atol=1e-5)
    assert np.allclose(np.linalg.norm(fused, axis=1), 1, atol=1e-5)


def test_rows_without_a_photo_stay_zero_and_text_queries_rank_as_the_photo_space():
    from core.embeddings.texture import TextureConfig, TextureModel
    photo, descriptors, patterns, *_ = _pattern_blind_photo(200)
    descriptors[:5] = 0  # no photo
    model = TextureModel(TextureConfig(pca_dim=16)).fit(photo, descriptors, patterns)
    fused = model.transform(photo, descriptors)
    assert np.all(fused[:5] == 0) and np.allclose(np.linalg.norm(fused[5:], axis=1), 1, atol=1e-5)
    query = unit(np.random.default_rng(3).standard_normal(photo.shape[1]))
    by_fused = np.argsort(-(fused[5:] @ model.text_query(query)), kind="stable")
    by_photo = np.argsort(-(photo[5:] @ query), kind="stable")
    assert by_fused[:20].tolist() == by_photo[:20].tolist()


def test_selected_weights_repair_a_pattern_blind_photo_embedding_and_keep_type():
    from core.embeddings.texture import TextureConfig, select_weights
    photo, descriptors, patterns, groups, types, _ = _pattern_blind_photo(900)
    cfg, table = select_weights(photo, descriptors, patterns, groups, types, TextureConfig(pca_dim=16, min_class=5))
    base = table[(table["texture"] == 0) & (table["head"] == 0)].iloc[0]
    best = table[table["chosen"]].iloc[0]
    assert table["chosen"].sum() == 1
    assert cfg.texture_weight + cfg.head_weight > 0  # the photo alone is not chosen
    assert best["pattern_agreement"] >= base["pattern_agreement"] + 0.3  # blind photo: ~1/3 by chance
    assert best["type_agreement"] >= base["type_agreement"] - 0.02


def test_texture_state_round_trips_through_arrays(tmp_path):
    from core.embeddings.texture import TextureConfig, TextureModel, fit_texture_model
    photo, descriptors, patterns, groups, types, _ = _pattern_blind_photo(600)
    state = fit_texture_model(photo, descriptors, patterns, groups, types, TextureConfig(pca_dim=16, min_class=5))
    assert all(isinstance(v, np.ndarray) for v in state.values())
    model, table = TextureModel.from_state(state)
    assert table["chosen"].sum() == 1 and len(model.classes_) == 3
    again, _ = TextureModel.from_state({k: v.copy() for k, v in state.items()})
    np.testing.assert_allclose(model.transform(photo, descriptors), again.transform(photo, descriptors), atol=1e-6)
    # no pattern labels: no head, and the configured weights; the state still loads back from the cache
    from core.cache import ArtefactCache
    cache = ArtefactCache(tmp_path / "cache")
    unlabelled = fit_texture_model(photo, descriptors, None, groups, None, TextureConfig(pca_dim=16))
    cache.save("texture-model", "k", unlabelled, {})
    loaded = cache.load("texture-model", "k")
    assert loaded is not None and set(loaded) == set(unlabelled)
    plain, table = TextureModel.from_state(loaded)
    assert len(plain.classes_) == 0 and table.empty


def _garment_photo(pattern: str, rng: np.random.Generator, size=(150, 224)):
    """One silhouette and colour on white; the garment drawn at a random scale (as catalogue photos frame
    garments differently) with the pattern at a fixed period in pixels: 4-6 px stripes, checks, melange
    noise, or solid at the patterns' mean tone."""
    from PIL import Image

    from core.data.synthetic import garment_mask
    width, height = size
    scale = rng.uniform(0.35, 1.0)
    w, h = int(width * scale), int(height * scale)
    yy, xx = np.mgrid[:h, :w]
    period, phase = int(rng.integers(4, 7)), int(rng.integers(6))
    amount = {"solid": lambda: np.full((h, w), 0.5),
              "stripe": lambda: ((yy + phase) % period < period / 2).astype(float),
              "check": lambda: (((yy + phase) % period < period / 2).astype(float)
                                + ((xx + phase) % period < period / 2)) / 2.0,
              "melange": lambda: rng.random((h, w))}[pattern]()
    colour, light = np.array([200, 35, 45]) + rng.integers(-10, 11, 3), np.array([245, 220, 222])
    pixels = np.where(garment_mask("t-shirt", (w, h))[..., None], light + amount[..., None] * (colour - light), 255)
    canvas = Image.new("RGB", size, (255, 255, 255))
    canvas.paste(Image.fromarray(np.uint8(np.clip(pixels, 0, 255))), ((width - w) // 2, (height - h) // 2))
    return canvas


def test_texture_embedding_separates_patterns_of_one_garment_where_the_pooled_vector_does_not():
    import torch

    from core.embeddings.lit.towers import FeatureTower, image_tower
    from core.embeddings.lit.views import LitImagePreprocess
    from core.embeddings.texture import TextureConfig, TextureModel
    rng = np.random.default_rng(0)
    patterns = np.repeat(["solid", "stripe", "check", "melange"], 8)
    x = torch.stack([LitImagePreprocess()(_garment_photo(p, rng)) for p in patterns])
    with torch.inference_mode():
        pooled, *texture = (o.numpy() for o in FeatureTower(image_tower()).eval()(x))
    descriptors = np.concatenate(texture, axis=1)
    fused = TextureModel(TextureConfig(pca_dim=8, photo_weight=0.5, texture_weight=0.5, head_weight=0.0)
                         ).fit(pooled, descriptors).transform(pooled, descriptors)
    groups = np.arange(len(patterns)).astype(str)

    def agreement(vectors):
        rows, _ = neighbours(unit(vectors), groups, 3)
        return label_agreement(rows, patterns, 3, min_class=3)

    plain, aware = agreement(pooled), agreement(fused)
    # the pooled vector averages over the white background too, so the garment's size pulls it around
    assert aware["micro"] >= plain["micro"] + 0.08, (plain, aware)
    assert aware["per_class"]["stripe"] > plain["per_class"]["stripe"]
    assert aware["micro"] >= 0.8


def test_weights_are_chosen_on_a_sample_of_groups_and_the_model_fitted_on_a_sample(monkeypatch):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    from core.embeddings import texture
    from core.embeddings.texture import TextureConfig, select_weights
    photo, descriptors, patterns, groups, types, _ = _pattern_blind_photo(900)
    searched, fitted, heads = [], [], []
    search, fit, head = texture.neighbours, PCA.fit, LogisticRegression.fit
    monkeypatch.setattr(texture, "neighbours", lambda v, g, k: searched.append(len(v)) or search(v, g, k))
    monkeypatch.setattr(PCA, "fit", lambda self, x, *a: fitted.append(len(x)) or fit(self, x, *a))
    monkeypatch.setattr(LogisticRegression, "fit", lambda self, x, y: heads.append(len(x)) or head(self, x, y))
    select_weights(photo, descriptors, patterns, groups, types, TextureConfig(pca_dim=16, min_class=5))
    assert min(searched) > 100 and min(fitted) > 300 and min(heads) > 300  # a fifth and three fifths of 900
    searched.clear(), fitted.clear(), heads.clear()
    cfg, table = select_weights(photo, descriptors, patterns, groups, types,
                                TextureConfig(pca_dim=16, min_class=5, selection_products=100, fit_sample=300))
    assert max(searched) <= 100 and fitted == [300] and heads == [300]
    best = table[table["chosen"]].iloc[0]  # the sample still finds the texture blocks' worth
    assert cfg.texture_weight + cfg.head_weight > 0
    assert best["pattern_agreement"] >= table.iloc[0]["pattern_agreement"] + 0.2


def test_descriptors_are_projected_a_chunk_at_a_time_as_all_at_once(monkeypatch):
    from core.embeddings import texture
    from core.embeddings.texture import TextureConfig, TextureModel, described
    photo, descriptors, patterns, *_ = _pattern_blind_photo(300)
    descriptors[::7] = 0  # no photo
    model = TextureModel(TextureConfig(pca_dim=16)).fit(photo, descriptors, patterns)
    whole = model.transform(photo, descriptors)
    monkeypatch.setattr(texture, "CHUNK", 32)
    np.testing.assert_allclose(model.transform(photo, descriptors), whole, atol=1e-6)
    assert (described(descriptors) == (np.abs(descriptors).sum(axis=1) > 0)).all()
    assert (whole[::7] == 0).all()
