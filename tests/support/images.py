"""Image files made in the tests: good ones in several modes and the bad ones a folder can hold."""

import io
from functools import cache

import numpy as np
from PIL import Image

import fruit_pipeline.core.images  # noqa: F401  (registers the HEIC opener for encode)


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    """The bytes of an image saved in a format."""
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def fruit(size: tuple[int, int] = (100, 100), mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A random but repeatable picture in any 8-bit Pillow mode."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


@cache
def good_files() -> dict[str, bytes]:
    """Files that must be featurized, after conversion where needed."""
    sixteen_bit = Image.fromarray(np.full((100, 100), 40000, dtype=np.uint16))
    return {
        "rgb.jpg": encode(fruit(), "JPEG"),
        "grayscale.jpg": encode(fruit(mode="L"), "JPEG"),
        "cmyk.jpg": encode(fruit(mode="CMYK"), "JPEG"),
        "not_100x100.jpg": encode(fruit(size=(37, 80)), "JPEG"),
        "png_named.jpg": encode(fruit(mode="RGBA"), "PNG"),
        "gif_named.jpg": encode(fruit(mode="P"), "GIF"),
        "sixteen_bit.jpg": encode(sixteen_bit, "PNG"),
    }


@cache
def bad_files() -> dict[str, tuple[bytes, str]]:
    """Files that must be rejected, with a word their reason must contain."""
    whole = encode(fruit(), "JPEG")
    bomb = encode(Image.new("1", (30000, 30000)), "PNG")
    return {
        "truncated.jpg": (whole[: len(whole) // 2], "truncated"),
        "text.jpg": (b"this is not an image\n", "not an image"),
        "empty.jpg": (b"", "empty"),
        "bomb.jpg": (bomb, "too large"),
    }


def smooth_picture() -> Image.Image:
    """A 64x48 colour gradient: lossy codecs keep it close, unlike random noise."""
    x, y = np.meshgrid(np.linspace(0, 1, 64), np.linspace(0, 1, 48))
    channels = np.stack([x, y, 1 - x * y], axis=-1)
    return Image.fromarray((channels * 255).astype(np.uint8), "RGB")


@cache
def photo_formats() -> dict[str, bytes]:
    """One picture in each format phones and the web send, named by its own suffix."""
    picture = smooth_picture()
    return {
        "photo.jpg": encode(picture, "JPEG", quality=95),
        "photo.PNG": encode(picture, "PNG"),
        "photo.webp": encode(picture, "WEBP", lossless=True),
        "photo.heic": encode(picture, "HEIF", quality=-1),
    }
