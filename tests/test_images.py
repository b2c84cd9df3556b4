import numpy as np
import pytest
from PIL import Image

from fruit_pipeline.core.images import ImageRejected, decode_image, to_rgb
from tests.images import bad_files, encode, fruit, good_files

LIMIT = 25_000_000


@pytest.mark.parametrize("name", sorted(good_files()))
def test_every_good_file_decodes_to_rgb_at_the_model_size(name):
    pixels = decode_image(good_files()[name], 224, LIMIT)
    assert pixels.shape == (224, 224, 3)
    assert pixels.dtype == np.uint8


@pytest.mark.parametrize("name", sorted(bad_files()))
def test_every_bad_file_is_rejected_with_its_reason(name):
    content, reason = bad_files()[name]
    with pytest.raises(ImageRejected, match=reason):
        decode_image(content, 224, LIMIT)


def test_decoding_matches_a_plain_pillow_bilinear_resize():
    image = fruit(size=(100, 100))
    expected = np.asarray(image.resize((224, 224), Image.Resampling.BILINEAR))
    assert np.array_equal(decode_image(encode(image, "PNG"), 224, LIMIT), expected)


def test_the_pixel_limit_comes_from_the_caller():
    content = encode(fruit(size=(100, 100)), "PNG")
    with pytest.raises(ImageRejected, match="featurize.max_image_pixels"):
        decode_image(content, 224, max_pixels=100 * 100 - 1)


def test_transparent_pixels_become_white():
    transparent = Image.new("RGBA", (4, 4), (10, 200, 30, 0))
    assert to_rgb(transparent).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    wide = Image.fromarray(np.full((2, 2), 65535 // 2, dtype=np.uint16))
    assert wide.mode.startswith("I")
    assert to_rgb(wide).getpixel((0, 0)) == (127, 127, 127)


def test_cmyk_and_palette_convert_to_rgb():
    assert to_rgb(fruit(mode="CMYK")).mode == "RGB"
    assert to_rgb(fruit(mode="P")).mode == "RGB"
