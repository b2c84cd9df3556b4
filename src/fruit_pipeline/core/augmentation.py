"""Views of a photo for training: crops of a random part of it, mirrored and colour-jittered.

A classifier trained on whole photos of one source learns how that source frames its fruit; real
photos elsewhere show it smaller, off-centre, cut by the edge, in other light. Views of each
training photo show it so (measured on held-out real photos: docs/real-photos.md). Each view is
drawn from the seed and the file's own key (its folder and name), never from the run: the same
file gives the same views on every run and on every machine.
"""

import re
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

from fruit_pipeline.contracts import LABELLED_FILE
from fruit_pipeline.parameters import AugmentSettings


@dataclass(frozen=True)
class View:
    """Where a view lies in the photo (left, top, right, bottom) and how it is changed."""

    box: tuple[int, int, int, int]
    mirrored: bool
    colour: float  # saturation factor (1: as it is)
    brightness: float  # brightness factor (1: as it is)


def view_key(path: str) -> str:
    """What draws a file's views: its label folder and file name, the same wherever the images
    live (a folder, a bucket)."""
    labelled = re.search(LABELLED_FILE, path)
    return labelled.group(1) if labelled else path


def draw_views(size: tuple[int, int], key: str, settings: AugmentSettings) -> list[View]:
    """The views of a photo of this (width, height): none when its shorter side is below
    `min_side`, else `copies` of them, drawn from the seed and the file's key."""
    width, height = size
    if not settings.copies or min(width, height) < settings.min_side:
        return []
    rng = np.random.default_rng([settings.seed, zlib.crc32(key.encode())])
    views = []
    for _ in range(settings.copies):
        scale = rng.uniform(settings.min_scale, settings.max_scale)
        crop_width, crop_height = round(width * scale), round(height * scale)
        left = int(rng.integers(0, width - crop_width + 1))
        top = int(rng.integers(0, height - crop_height + 1))
        views.append(
            View(
                box=(left, top, left + crop_width, top + crop_height),
                mirrored=bool(rng.random() < 0.5),
                colour=float(rng.uniform(1 - settings.jitter, 1 + settings.jitter)),
                brightness=float(rng.uniform(1 - settings.jitter, 1 + settings.jitter)),
            )
        )
    return views


def render(photo: Image.Image, view: View) -> Image.Image:
    """The view's pixels: its part of the photo, mirrored if drawn so, then jittered."""
    part = photo.crop(view.box)
    if view.mirrored:
        part = part.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    part = ImageEnhance.Color(part).enhance(view.colour)
    return ImageEnhance.Brightness(part).enhance(view.brightness)


def views_of(photo: Image.Image, key: str, settings: AugmentSettings) -> list[Image.Image]:
    """Every view of a photo, rendered (none for a photo below `min_side`)."""
    return [render(photo, view) for view in draw_views(photo.size, key, settings)]
