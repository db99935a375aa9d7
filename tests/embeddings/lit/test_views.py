"""Photo views of offline-lit: the padded photo, its grayscale, the garment's centre."""
import numpy as np
import pytest
import torch
from PIL import Image

from core.embeddings.lit.views import CentrePreprocess, GrayPreprocess, LitImagePreprocess, check_views
from tests.embeddings.lit.helpers import draw_photo


def test_preprocess_pads_a_portrait_photo_onto_white():
    img = Image.new("RGB", (128, 192), (0, 0, 0))
    x = LitImagePreprocess()(img)
    assert x.shape == (3, 224, 224)
    assert torch.all(x >= -1) and torch.all(x <= 1)
    np.testing.assert_allclose(x[:, :, :30].numpy(), 128 / 128, atol=1e-6)  # white side bands: (255-127)/128
    np.testing.assert_allclose(x[:, :, 100:124].numpy(), -127 / 128, atol=1e-6)  # the black garment, whole


def test_preprocess_values_are_those_the_stored_features_were_made_from():
    """The scaling moved from torch to numpy for speed: bit for bit the same tensor, so cached rows stay valid."""
    photo = draw_photo("checks")
    canvas = Image.new("RGB", (224, 224), (255, 255, 255))
    small = photo.resize((224, round(224 * photo.height / photo.width)) if photo.width >= photo.height
                         else (round(224 * photo.width / photo.height), 224), Image.Resampling.BICUBIC)
    canvas.paste(small, ((224 - small.width) // 2, (224 - small.height) // 2))
    before = (torch.from_numpy(np.asarray(canvas, dtype=np.float32)).permute(2, 0, 1) - 127.0) / 128.0
    x = LitImagePreprocess()(photo)
    assert x.is_contiguous() and x.dtype == torch.float32
    assert torch.equal(x, before)


def test_centre_crop_zooms_into_the_garment_and_gray_has_equal_channels():
    photo = draw_photo("solid")  # a red block on white: the crop holds garment only
    crop, full = CentrePreprocess()(photo), LitImagePreprocess()(photo)
    white = [float((x.amin(dim=0) >= 0.9).float().mean()) for x in (crop, full)]
    assert crop.shape == (3, 224, 224) and white[0] < 0.1 < white[1], white
    grey = GrayPreprocess()(photo)
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2])
    blank = draw_photo("blank")  # no garment pixels: the whole photo
    np.testing.assert_allclose(CentrePreprocess()(blank).numpy(), 1.0, atol=1e-6)


def test_check_views_names_the_known_ones():
    assert check_views(["photo", "gray"]) == ("photo", "gray")
    with pytest.raises(ValueError, match="unknown texture view"):
        check_views(["photo", "sepia"])
    with pytest.raises(ValueError, match="none given"):
        check_views([])
