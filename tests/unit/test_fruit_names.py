"""The fruit of every class folder the project may meet, from conf/base's mapping."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from fruit_pipeline.config import config_loader
from fruit_pipeline.core.fruit_names import FruitNames, UnmappedFolder, normalized
from tests.support.helpers import FRUITS_95, PROJECT_ROOT, SHARED

FRUITS_360_CLASSES = [
    line
    for line in (Path(__file__).parent / "data" / "fruits-360-classes.txt").read_text().splitlines()
    if line and not line.startswith("#")
]
REAL_PHOTOS = SHARED / "data" / "real-photos"


@pytest.fixture(scope="module")
def fruit_names() -> FruitNames:
    parameters = config_loader(PROJECT_ROOT)["parameters"]
    return FruitNames.model_validate(parameters["fruit_names"])


def test_every_class_of_both_fruits_360_releases_has_a_fruit(fruit_names):
    assert len(FRUITS_360_CLASSES) == 131 + 250
    assert fruit_names.fruits_of({name: f"{name}/0_100.jpg" for name in FRUITS_360_CLASSES})


@pytest.mark.shared
@pytest.mark.parametrize("folder", ["grocery-train", "bowl-train"])
def test_every_folder_of_the_shared_images_has_a_fruit(fruit_names, folder):
    if not REAL_PHOTOS.is_dir() or not FRUITS_95.is_dir():
        pytest.skip(f"needs the real photos at {REAL_PHOTOS} and the 95-class subset")
    names = [path.name for path in (REAL_PHOTOS / folder).iterdir() if path.is_dir()]
    names += [path.name for path in FRUITS_95.iterdir() if path.is_dir()]
    assert fruit_names.fruits_of({name: name for name in names})


@pytest.mark.parametrize(
    ("name", "fruit"),
    [
        ("Apple Red 2", "apple"),
        ("apple", "apple"),
        ("Apple_Golden-1", "apple"),
        ("Satsumas", "mandarin"),
        ("Clementine 1", "mandarin"),
        ("Maracuja", "passion fruit"),
        ("Passion-Fruit", "passion fruit"),
        ("Red-Grapefruit", "grapefruit"),
        ("Galia-Melon", "melon"),
        ("Watermelon 1", "watermelon"),
        ("Tomato 10", "tomato"),
    ],
)
def test_names_match_whatever_their_case_separators_and_variety_number(fruit_names, name, fruit):
    assert fruit_names.fruits_of({name: f"{name}/1.jpg"}) == {name: fruit}


def test_an_unlisted_folder_is_an_error_naming_it_and_a_file(fruit_names):
    with pytest.raises(UnmappedFolder, match=r"'Durian' \(e\.g\. /images/Durian/1\.jpg\)"):
        fruit_names.fruits_of(
            {"Apple Red 1": "/images/Apple Red 1/1.jpg", "Durian": "/images/Durian/1.jpg"}
        )


def test_a_name_under_two_fruits_is_refused():
    with pytest.raises(ValidationError, match="'satsumas' is listed under 'mandarin' and 'orange'"):
        FruitNames.model_validate({"mandarin": ["Satsumas"], "orange": ["satsumas"]})


def test_normalized_keeps_numbers_inside_a_name():
    assert normalized("  Peanut shell 1x 1 ") == "peanut shell 1x"
    assert normalized("Grape White 4") == "grape white"
