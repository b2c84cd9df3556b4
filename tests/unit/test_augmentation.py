from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from pydantic import ValidationError

from fruit_pipeline.core.augmentation import draw_views, render, view_key, views_of
from fruit_pipeline.parameters import AugmentSettings
from tests.support.images import fruit
from tests.support.settings import PARAMETERS

AUGMENT = AugmentSettings.model_validate({**PARAMETERS["augment"], "copies": 4})
KEY = "Apple/photo_001.jpg"


def test_the_same_file_gets_the_same_views_on_every_run():
    photo = fruit(size=(348, 464), seed=3)
    first, second = views_of(photo, KEY, AUGMENT), views_of(photo, KEY, AUGMENT)
    assert len(first) == 4
    assert [view.tobytes() for view in first] == [view.tobytes() for view in second]


def test_another_file_or_seed_draws_other_views():
    size = (348, 464)
    views = draw_views(size, KEY, AUGMENT)
    assert draw_views(size, "Apple/photo_002.jpg", AUGMENT) != views
    assert draw_views(size, KEY, AUGMENT.model_copy(update={"seed": 1})) != views


def test_a_file_draws_the_same_views_wherever_the_images_live():
    # A local folder, a bucket, a split folder above the label: the label folder and file name.
    paths = [
        "file:/data/images/Apple/photo_001.jpg",
        "s3://bucket/images/Training/Apple/photo_001.jpg",
        "Apple/photo_001.jpg",
    ]
    assert {view_key(path) for path in paths} == {KEY}
    assert view_key("file:/data/images/Apple/photo_002.jpg") != KEY


def test_each_view_is_a_part_of_the_photo_at_the_drawn_scale():
    width, height = 348, 464
    for view in draw_views((width, height), KEY, AUGMENT.model_copy(update={"copies": 50})):
        left, top, right, bottom = view.box
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
        for side, whole in ((right - left, width), (bottom - top, height)):
            assert AUGMENT.min_scale * whole - 1 <= side <= AUGMENT.max_scale * whole + 1
        assert 1 - AUGMENT.jitter <= view.colour <= 1 + AUGMENT.jitter
        assert 1 - AUGMENT.jitter <= view.brightness <= 1 + AUGMENT.jitter


def test_a_view_keeps_the_photos_pixels_of_its_part():
    photo = fruit(size=(300, 240), seed=5)
    for view in draw_views(photo.size, KEY, AUGMENT):
        plain = replace(view, colour=1.0, brightness=1.0)
        left, top, right, bottom = view.box
        part = np.asarray(photo)[top:bottom, left:right]
        expected = part[:, ::-1] if view.mirrored else part
        assert np.array_equal(np.asarray(render(photo, plain)), expected)
        # The jitter changes colour and brightness only, as Pillow's enhancers do.
        jittered = ImageEnhance.Brightness(
            ImageEnhance.Color(Image.fromarray(expected)).enhance(view.colour)
        ).enhance(view.brightness)
        assert np.array_equal(np.asarray(render(photo, view)), np.asarray(jittered))


def test_a_photo_below_the_minimum_side_and_no_copies_get_no_views():
    assert views_of(fruit(size=(100, 100)), KEY, AUGMENT) == []
    assert views_of(fruit(size=(400, 199)), KEY, AUGMENT) == []
    assert views_of(fruit(size=(400, 400)), KEY, AUGMENT.model_copy(update={"copies": 0})) == []


def test_the_settings_name_what_draws_the_views_and_refuse_scales_out_of_order():
    assert AUGMENT.model_copy(update={"copies": 0}).name() == "none"
    assert AUGMENT.name() == "crops 4, seed 0, min side 200, scale 0.6-0.9, jitter 0.3"
    with pytest.raises(ValidationError, match="min_scale 0.9 is above max_scale 0.6"):
        AugmentSettings.model_validate({**AUGMENT.model_dump(), "min_scale": 0.9, "max_scale": 0.6})
