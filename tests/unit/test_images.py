import numpy as np
import pytest
from PIL import Image

from fruit_pipeline.core.images import ImageRejected, decode_image, square, to_rgb
from fruit_pipeline.parameters import FRAMINGS
from tests.support.images import bad_files, encode, fruit, good_files, photo_formats, smooth_picture

LIMIT = 25_000_000


@pytest.mark.parametrize("name", sorted(good_files()))
def test_every_good_file_decodes_to_rgb_at_the_model_size(name):
    pixels = decode_image(good_files()[name], 224, LIMIT, "pad")
    assert pixels.shape == (224, 224, 3)
    assert pixels.dtype == np.uint8


@pytest.mark.parametrize("name", sorted(bad_files()))
def test_every_bad_file_is_rejected_with_its_reason(name):
    content, reason = bad_files()[name]
    with pytest.raises(ImageRejected, match=reason):
        decode_image(content, 224, LIMIT, "pad")


def test_decoding_matches_a_plain_pillow_bilinear_resize():
    image = fruit(size=(100, 100))
    expected = np.asarray(image.resize((224, 224), Image.Resampling.BILINEAR))
    assert np.array_equal(decode_image(encode(image, "PNG"), 224, LIMIT, "pad"), expected)


def test_the_pixel_limit_comes_from_the_caller():
    content = encode(fruit(size=(100, 100)), "PNG")
    with pytest.raises(ImageRejected, match="featurize.max_image_pixels"):
        decode_image(content, 224, 100 * 100 - 1, "pad")


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
    framed = square(smooth_picture(), "pad")
    expected = np.asarray(framed.resize((224, 224), Image.Resampling.BILINEAR))
    pixels = decode_image(photo_formats()[name], 224, LIMIT, "pad")
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
    pixels = decode_image(encode(stored, "JPEG", exif=exif, quality=95), 224, LIMIT, "squash")
    top, bottom = pixels[:100].reshape(-1, 3).mean(axis=0), pixels[124:].reshape(-1, 3).mean(axis=0)
    assert top[2] > 200 > top[0]
    assert bottom[0] > 200 > bottom[2]


def three_bands(width: int, height: int) -> Image.Image:
    """Red, green and blue bands side by side (or one above the other for a portrait)."""
    image = Image.new("RGB", (width, height), (0, 255, 0))
    across = width >= height
    third = (width if across else height) // 3
    first = (0, 0, third, height) if across else (0, 0, width, third)
    last = (width - third, 0, width, height) if across else (0, height - third, width, height)
    image.paste((255, 0, 0), first)
    image.paste((0, 0, 255), last)
    return image


@pytest.mark.parametrize("size", [(300, 100), (100, 300)])
def test_crop_keeps_the_centre_square_of_the_photo(size):
    pixels = decode_image(encode(three_bands(*size), "PNG"), 224, LIMIT, "crop")
    assert np.abs(pixels.astype(int) - (0, 255, 0)).max() <= 1


@pytest.mark.parametrize("size", [(300, 100), (100, 300)])
def test_pad_keeps_the_whole_photo_in_shape_with_margins_of_its_mean_colour(size):
    photo = three_bands(*size)
    pixels = decode_image(encode(photo, "PNG"), 224, LIMIT, "pad").astype(int)
    across = size[0] > size[1]
    band = pixels if across else pixels.transpose(1, 0, 2)  # the photo along axis 1
    mean = np.asarray(photo).reshape(-1, 3).mean(axis=0)
    # The margins (a third of the square on each side, less the resampling seam) are the mean.
    assert np.abs(band[:70] - mean).max() <= 1
    assert np.abs(band[-70:] - mean).max() <= 1
    # The photo fills the middle third unsquashed: its three bands are as wide as they are tall.
    middle = band[80:144]
    assert np.abs(middle[:, :70] - (255, 0, 0)).max() <= 1
    assert np.abs(middle[:, 80:144] - (0, 255, 0)).max() <= 1
    assert np.abs(middle[:, -70:] - (0, 0, 255)).max() <= 1


def test_squash_resizes_out_of_shape_and_a_square_photo_is_the_same_in_every_framing():
    photo = three_bands(300, 100)
    squashed = decode_image(encode(photo, "PNG"), 224, LIMIT, "squash")
    assert np.array_equal(squashed, np.asarray(photo.resize((224, 224), Image.Resampling.BILINEAR)))
    content = encode(fruit(size=(100, 100)), "PNG")
    framed = [decode_image(content, 224, LIMIT, framing) for framing in FRAMINGS]
    assert all(np.array_equal(framed[0], other) for other in framed[1:])


def test_an_unknown_framing_is_refused_by_name():
    with pytest.raises(ValueError, match="framing 'stretch': use one of pad, crop, squash"):
        square(three_bands(300, 100), "stretch")


def test_a_twelve_megapixel_phone_photo_is_downscaled_not_rejected():
    photo = three_bands(4000, 3000)
    pixels = decode_image(encode(photo, "JPEG", quality=90), 224, LIMIT, "crop")
    assert pixels.shape == (224, 224, 3)
    # Its centre square (3000 wide) shows the three bands, the outer ones cut to a sixth each.
    assert np.abs(pixels[:, 100:124].astype(int) - (0, 255, 0)).max() < 12
