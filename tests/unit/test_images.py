import numpy as np
import pytest
from PIL import Image

from fruit_pipeline.core.images import ImageRejected, decode_image, to_rgb
from tests.support.images import bad_files, encode, fruit, good_files, photo_formats, smooth_picture

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


@pytest.mark.parametrize("name", sorted(photo_formats()))
def test_jpeg_png_webp_and_heic_photos_decode_to_the_same_picture(name):
    expected = np.asarray(smooth_picture().resize((224, 224), Image.Resampling.BILINEAR))
    pixels = decode_image(photo_formats()[name], 224, LIMIT)
    if name.endswith(("PNG", "webp")):  # lossless
        assert np.array_equal(pixels, expected)
    else:  # JPEG and HEIC are lossy: close on a smooth picture
        assert np.abs(pixels.astype(int) - expected).mean() < 4


def test_the_exif_orientation_turns_the_photo_upright():
    # A phone stores a portrait photo as landscape pixels with EXIF orientation 6 (turn 90 deg).
    upright = Image.new("RGB", (40, 80), (255, 0, 0))
    upright.paste((0, 0, 255), (0, 0, 40, 40))  # blue on the top half
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    pixels = decode_image(encode(stored, "JPEG", exif=exif, quality=95), 224, LIMIT)
    top, bottom = pixels[:100].reshape(-1, 3).mean(axis=0), pixels[124:].reshape(-1, 3).mean(axis=0)
    assert top[2] > 200 > top[0]
    assert bottom[0] > 200 > bottom[2]
