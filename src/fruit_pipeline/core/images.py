"""Turns the bytes of one image file into the RGB pixels the model expects, or says why not."""

import io

import numpy as np
from PIL import Image, ImageOps, ImageStat, UnidentifiedImageError
from pillow_heif import register_heif_opener

from fruit_pipeline.parameters import FRAMINGS, Framing

# Phones send HEIC: Pillow opens it (and HEIF) once this plug-in is registered.
register_heif_opener()

# Pillow modes that hold more than 8 bits a pixel: scaled to 0-255 instead of clipped.
_WIDE_GRAYSCALE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WHITE = (255, 255, 255, 255)
EMPTY_FILE_REASON = "empty file (0 bytes)"


class ImageRejected(Exception):
    """An input file that cannot be featurized; the message is the reason recorded for it."""


def decode_image(content: bytes | None, size: int, max_pixels: int, framing: Framing) -> np.ndarray:
    """Decode image bytes to a (size, size, 3) uint8 RGB array, framed, or raise ImageRejected."""
    return frame(open_photo(content, max_pixels), size, framing)


def open_photo(content: bytes | None, max_pixels: int) -> Image.Image:
    """Decode image bytes to an upright RGB image of their own size, or raise ImageRejected."""
    if not content:
        raise ImageRejected(EMPTY_FILE_REASON)
    try:
        with Image.open(io.BytesIO(content)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"too large: {width}x{height} pixels, above the limit of {max_pixels} "
                    "(parameter featurize.max_image_pixels)"
                )
            image.load()
            return to_rgb(ImageOps.exif_transpose(image))
    except UnidentifiedImageError:
        raise ImageRejected("not an image: its bytes are no format Pillow can read") from None
    except Image.DecompressionBombError as error:
        raise ImageRejected(f"too large: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRejected(f"corrupt or truncated image: {error}") from None


def frame(image: Image.Image, size: int, framing: Framing) -> np.ndarray:
    """An RGB image as the model's (size, size, 3) uint8 input: made square, then resized."""
    return np.asarray(
        square(image, framing).resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8
    )


def square(image: Image.Image, framing: Framing) -> Image.Image:
    """The photo as a square: padded in its mean colour, its centre cropped, or as it is."""
    width, height = image.size
    if width == height or framing == "squash":
        return image
    if framing == "crop":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return image.crop((left, top, left + side, top + side))
    if framing == "pad":
        side = max(width, height)
        mean = ImageStat.Stat(image).mean
        canvas = Image.new("RGB", (side, side), tuple(round(band) for band in mean))
        canvas.paste(image, ((side - width) // 2, (side - height) // 2))
        return canvas
    raise ValueError(f"framing {framing!r}: use one of {', '.join(FRAMINGS)}.")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency goes on white, like the Fruits-360 photos."""
    if image.mode in _WIDE_GRAYSCALE_MODES:
        wide = np.asarray(image, dtype=np.float64)
        # 16-bit samples: 65535 / 257 == 255.
        return Image.fromarray(np.clip(wide / 257.0, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        return Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, _WHITE)
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")
