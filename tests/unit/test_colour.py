"""The colour histogram: the fruit's pixels by hue, saturation and value, not the background."""

import colorsys

import numpy as np
import pytest
from PIL import Image

from fruit_pipeline.core.colour import (
    HUE_BINS,
    SATURATION_BINS,
    SIZE,
    VALUE_BINS,
    colour_histogram,
)
from fruit_pipeline.core.images import decode_image
from tests.support.helpers import SAMPLE

WHITE, RED = (255, 255, 255), (200, 10, 10)


def picture(*colours: tuple[int, int, int]) -> np.ndarray:
    """Vertical bands of equal width, one per colour, 8 x 8 pixels each."""
    return np.concatenate([np.full((8, 8, 3), colour, dtype=np.uint8) for colour in colours], 1)


def expected_bin(rgb: tuple[int, int, int]) -> int:
    # Computed with the standard library, independently of Pillow's HSV conversion.
    hue, saturation, value = colorsys.rgb_to_hsv(*(channel / 255 for channel in rgb))
    return (
        int(hue * HUE_BINS) * SATURATION_BINS * VALUE_BINS
        + min(int(saturation * SATURATION_BINS), SATURATION_BINS - 1) * VALUE_BINS
        + min(int(value * VALUE_BINS), VALUE_BINS - 1)
    )


def test_a_red_fruit_on_white_is_all_red():
    histogram = colour_histogram(picture(WHITE, RED, WHITE))
    assert histogram.shape == (SIZE,)
    assert histogram.dtype == np.float32
    assert histogram[expected_bin(RED)] == pytest.approx(1.0)
    assert histogram.sum() == pytest.approx(1.0)


def test_the_shares_follow_the_area_of_each_colour():
    # Hues in the middle of their bins, so that rounding cannot move them.
    orange, teal = (230, 120, 30), (20, 160, 150)
    histogram = colour_histogram(picture(orange, orange, orange, teal, WHITE))
    assert histogram[expected_bin(orange)] == pytest.approx(0.75)
    assert histogram[expected_bin(teal)] == pytest.approx(0.25)


def test_grey_and_black_are_fruit_but_white_is_background():
    histogram = colour_histogram(picture((128, 128, 128), (0, 0, 0), WHITE, (250, 250, 250)))
    assert histogram.sum() == pytest.approx(1.0)
    assert histogram[expected_bin((128, 128, 128))] == pytest.approx(0.5)
    assert histogram[expected_bin((0, 0, 0))] == pytest.approx(0.5)


def test_an_all_white_image_has_no_fruit_and_an_empty_histogram():
    assert not colour_histogram(picture(WHITE, WHITE)).any()


def test_each_colour_falls_in_the_bin_of_its_pillow_hsv_unless_it_is_background():
    # The histogram looks every pixel up in a table of all colours, built once: checked here
    # colour by colour against Pillow's HSV of that one pixel, on seeded colours and on the
    # near-white ones around the background's limit.
    rng = np.random.default_rng(0)
    light = range(234, 256)
    colours = [tuple(int(channel) for channel in rgb) for rgb in rng.integers(0, 256, (500, 3))]
    colours += [(red, green, blue) for red in light for green in light for blue in (234, 236, 255)]
    for rgb in colours:
        hue, saturation, value = Image.new("RGB", (1, 1), rgb).convert("HSV").getpixel((0, 0))
        histogram = colour_histogram(np.array([[rgb]], dtype=np.uint8))
        if min(rgb) > 235 and saturation < 25.6:
            assert not histogram.any(), rgb
            continue
        expected = (
            hue * HUE_BINS // 256 * SATURATION_BINS * VALUE_BINS
            + saturation * SATURATION_BINS // 256 * VALUE_BINS
            + value * VALUE_BINS // 256
        )
        assert histogram[expected] == 1.0, rgb


@pytest.mark.shared
def test_a_real_photo_sums_to_one():
    photos = sorted((SAMPLE / "Training").rglob("*.jpg"))
    histogram = colour_histogram(decode_image(photos[0].read_bytes(), 224, 25_000_000, "pad"))
    assert histogram.sum() == pytest.approx(1.0, abs=1e-6)
    # A fruit's colours fall in a few bins, not spread over all of them.
    assert np.count_nonzero(histogram > 0.01) < SIZE / 4
