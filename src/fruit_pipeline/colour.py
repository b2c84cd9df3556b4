"""The colour descriptor of an image: an HSV histogram of the fruit, the white background left out.

Computed beside the embedding from the same decoded pixels (featurize, the prediction service),
so it costs no second read of the image. MobileNetV2's ImageNet features see shapes more than
shades; close varieties (apples, peaches) differ mostly by colour, and the histogram adds it.
"""

import numpy as np
from PIL import Image

HUE_BINS, SATURATION_BINS, VALUE_BINS = 12, 4, 4
SIZE = HUE_BINS * SATURATION_BINS * VALUE_BINS
# Fruits-360 photos sit on white: near-white, unsaturated pixels are background.
_WHITE_LEVEL, _WHITE_SATURATION = 235, 0.1


def colour_histogram(pixels: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> SIZE float32: share of the fruit's pixels in each HSV bin."""
    hsv = np.asarray(Image.fromarray(pixels).convert("HSV"), dtype=np.float64) / 256.0
    fruit = ~((pixels.min(axis=2) > _WHITE_LEVEL) & (hsv[..., 1] < _WHITE_SATURATION))
    bins = (
        (hsv[..., 0] * HUE_BINS).astype(int) * SATURATION_BINS * VALUE_BINS
        + (hsv[..., 1] * SATURATION_BINS).astype(int) * VALUE_BINS
        + (hsv[..., 2] * VALUE_BINS).astype(int)
    )[fruit]
    counts = np.bincount(bins, minlength=SIZE)
    return (counts / max(counts.sum(), 1)).astype(np.float32)
