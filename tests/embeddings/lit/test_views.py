"""Photo views of offline-lit: the padded photo, its grayscale, the garment's centre."""
import numpy as np
import pytest
import torch
from PIL import Image

from core.embeddings.lit.views import CentrePreprocess, GrayPreprocess, LitImagePreprocess, canvas_of, \
    check_views
from tests.embeddings.lit.helpers import draw_photo


def test_preprocess_pads_a_portrait_photo_onto_white_up_to_a_multiple_of_32():
    img = Image.new("RGB", (128, 192), (0, 0, 0))  # 2:3 -> 149 x 224, on a 160 x 224 canvas
    x = LitImagePreprocess()(img)
    assert x.shape == (3, 224, 160)
    assert torch.all(x >= -1) and torch.all(x <= 1)
    np.testing.assert_allclose(x[:, :, :5].numpy(), 128 / 128, atol=1e-6)  # white side bands: (255-127)/128
    np.testing.assert_allclose(x[:, :, -6:].numpy(), 128 / 128, atol=1e-6)
    np.testing.assert_allclose(x[:, :, 6:153].numpy(), -127 / 128, atol=1e-6)  # the black garment, whole


@pytest.mark.parametrize("size, shape", [((300, 300), (224, 224)), ((300, 200), (160, 224)),
                                         ((1000, 50), (32, 224)), ((224, 225), (224, 224))])
def test_canvas_keeps_the_photo_shape_sides_multiples_of_32(size, shape):
    x = LitImagePreprocess()(Image.new("RGB", size, (10, 20, 30)))
    assert tuple(x.shape[1:]) == shape and canvas_of(*size) == shape[::-1]  # (width, height) from the header


def test_preprocess_values_are_the_resized_photo_centred_on_white():
    """Bit for bit the photo resized as PIL does (bicubic), centred on white and scaled: the tower sees the
    same pixels whichever path (bulk, query, service) preprocessed them."""
    photo = draw_photo("checks")
    small = photo.resize((224, round(224 * photo.height / photo.width)) if photo.width >= photo.height
                         else (round(224 * photo.width / photo.height), 224), Image.Resampling.BICUBIC)
    side = [-(-v // 32) * 32 for v in small.size]
    canvas = Image.new("RGB", tuple(side), (255, 255, 255))
    canvas.paste(small, ((side[0] - small.width) // 2, (side[1] - small.height) // 2))
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
