"""The density image of a map too large to draw point by point (core.explore.density): each pixel in the colour of
its points' commonest group, more opaque where more points fall, groups over noise, empty pixels transparent, north
up."""
import base64
import io

import numpy as np
from PIL import Image

from core.explore.density import MIN_ALPHA, NONE, density_image, map_extent, png_data_uri

RED, BLUE, GREY = "#ff0000", "#0000ff", "#808080"


def test_pixels_take_their_group_colour_and_empty_ones_stay_transparent():
    # group 0 in the bottom-left corner, group 1 in the top-right, on a 10 x 10 image of the square [0, 10]^2
    x = np.array([0.5, 0.5, 9.5])
    y = np.array([0.5, 0.5, 9.5])
    image = density_image(x, y, np.array([0, 0, 1]), [RED, BLUE], 10, 10, (0, 10, 0, 10))
    assert image.shape == (10, 10, 4) and image.dtype == np.uint8
    assert tuple(image[9, 0, :3]) == (255, 0, 0)  # bottom-left: row 9 (row 0 is the top)
    assert tuple(image[0, 9, :3]) == (0, 0, 255)
    assert image[9, 0, 3] == 255 and image[0, 9, 3] == MIN_ALPHA  # two points: the densest; one point: the least
    assert (image[..., 3] > 0).sum() == 2  # every other pixel empty


def test_a_group_shows_over_noise_in_the_same_pixel_and_noise_alone_is_grey():
    x = np.array([1.5, 1.5, 1.5, 7.5])
    y = np.array([1.5, 1.5, 1.5, 7.5])
    image = density_image(x, y, np.array([NONE, NONE, 0, NONE]), [RED], 10, 10, (0, 10, 0, 10), none_colour=GREY)
    assert tuple(image[8, 1, :3]) == (255, 0, 0)
    assert tuple(image[2, 7, :3]) == (128, 128, 128)


def test_the_commonest_group_colours_a_shared_pixel_and_ties_go_to_the_smaller_id():
    x = y = np.full(6, 0.5)
    three_blue = density_image(x, y, np.array([1, 1, 1, 0, 0, NONE]), [RED, BLUE], 1, 1, (0, 1, 0, 1))
    assert tuple(three_blue[0, 0]) == (0, 0, 255, 255)
    tie = density_image(x[:4], y[:4], np.array([1, 1, 0, 0]), [RED, BLUE], 1, 1, (0, 1, 0, 1))
    assert tuple(tie[0, 0, :3]) == (255, 0, 0)


def test_a_dense_middle_an_outside_point_and_a_degenerate_extent():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=20_000), rng.normal(size=20_000)
    image = density_image(x, y, (x > 0).astype(np.int32), [RED, BLUE], 60, 40)
    assert image[18:22, 28:32, 3].min() > 200  # the dense middle is near opaque
    assert tuple(image[20, 10, :3]) == (255, 0, 0) and tuple(image[20, 50, :3]) == (0, 0, 255)
    assert (image[..., 3] > 0).sum() > 0.3 * 60 * 40  # a Gaussian fills less than half of its bounding box
    # the extreme points are drawn (the far edges belong to the last pixel), a point outside the extent is not
    edge = density_image(np.array([0.0, 1.0, 5.0]), np.array([0.0, 1.0, 5.0]), np.zeros(3, np.int32), [RED], 2, 2,
                         (0, 1, 0, 1))
    assert edge[1, 0, 3] > 0 and edge[0, 1, 3] > 0 and (edge[..., 3] > 0).sum() == 2
    assert map_extent(np.ones(5), np.arange(5.0)) == (0.5, 1.5, 0.0, 4.0)  # a flat axis widened to 1
    one = density_image(np.ones(5), np.ones(5), np.zeros(5, np.int32), [RED], 4, 4)  # all points on one spot
    assert (one[..., 3] > 0).sum() == 1


def test_the_data_uri_decodes_to_the_same_pixels():
    image = density_image(np.arange(5.0), np.arange(5.0), np.arange(5), [RED, BLUE, RED, BLUE, RED], 5, 5)
    uri = png_data_uri(image)
    assert uri.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    np.testing.assert_array_equal(decoded, image)
