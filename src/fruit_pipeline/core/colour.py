"""The colour descriptor of an image: an HSV histogram of the fruit, the white background left out.

Computed beside the embedding from the same decoded pixels (featurize, the prediction service),
so it costs no second read of the image. MobileNetV2's ImageNet features see shapes more than
shades; close varieties (apples, peaches) differ mostly by colour, and the histogram adds it.
"""

import numpy as np
from PIL import Image

HUE_BINS, SATURATION_BINS, VALUE_BINS = 12, 4, 4
SIZE = HUE_BINS * SATURATION_BINS * VALUE_BINS
# Fruits-360 photos sit on white: near-white (every channel above 235), unsaturated (saturation
# under 0.1, i.e. under 25.6 of 255) pixels are background.
_WHITE_LEVEL, _WHITE_SATURATION = 235, 25.6


def colour_histogram(pixels: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> SIZE float32: share of the fruit's pixels in each HSV bin."""
    hsv = np.asarray(Image.fromarray(pixels).convert("HSV"))
    hue, saturation, value = (hsv[..., channel].astype(np.int32) for channel in range(3))
    # Pillow's channels run 0-255: bin = floor(channel / 256 * bins), in integers.
    bins = (
        ((hue * HUE_BINS) >> 8) * SATURATION_BINS * VALUE_BINS
        + ((saturation * SATURATION_BINS) >> 8) * VALUE_BINS
        + ((value * VALUE_BINS) >> 8)
    )
    darkest = np.minimum(np.minimum(pixels[..., 0], pixels[..., 1]), pixels[..., 2])
    background = (darkest > _WHITE_LEVEL) & (saturation < _WHITE_SATURATION)
    # Background pixels are counted in one extra bin, then left out.
    counts = np.bincount(np.where(background, SIZE, bins).ravel(), minlength=SIZE + 1)[:SIZE]
    return (counts / max(counts.sum(), 1)).astype(np.float32)
