"""The classification engine on a slice of the 95-class subset: every 3rd image of every class."""

import json

import pytest

from tests.support.helpers import FRUITS_95, configured_candidates, image_slice, new_project, run

pytestmark = pytest.mark.shared

# Measured on this slice (2,083 images, seeded split, 409 test images), with the colour
# histogram: accuracy 0.990, macro F1 0.991, ECE 0.009. The floors leave a few images of slack.
ACCURACY_FLOOR = 0.975
MACRO_F1_FLOOR = 0.975
ECE_CEILING = 0.03


@pytest.fixture(scope="module")
def metrics(spark, tmp_path_factory) -> dict:
    if not FRUITS_95.is_dir():
        pytest.skip(f"needs the 95-class subset at {FRUITS_95}")
    images = image_slice(FRUITS_95, tmp_path_factory.mktemp("fruits_95_slice"), 3)
    root = new_project(tmp_path_factory.mktemp("fruits_95"))
    run(root, "featurize", images_root=str(images))
    # The varieties, as Fruits-360 names them: 95 classes, some of one fruit (Apple Red 1, 2, 3).
    run(root, "train", train={"label_level": "variety"})
    result = json.loads((root / "data/08_reporting/classification_metrics.json").read_text())
    export = json.loads((root / "data/06_models/classifier_export.json").read_text())
    return {
        **result,
        "slice_images": sum(1 for _ in images.rglob("*.jpg")),
        "known_labels": len(export["labels"]),
    }


@pytest.mark.slow
def test_95_classes_are_told_apart(metrics):
    assert metrics["known_labels"] == 95
    # About 7 images a class fall in the test split: a small class may draw none.
    assert metrics["classes"] >= 90
    assert metrics["accuracy"] >= ACCURACY_FLOOR
    assert metrics["macro_f1"] >= MACRO_F1_FLOOR
    assert metrics["calibration"]["expected_calibration_error"] < ECE_CEILING


@pytest.mark.slow
def test_the_choice_used_validation_images_only(metrics):
    selection = metrics["selection"]
    assert [c["name"] for c in selection["candidates"]] == configured_candidates()
    assert all(candidate["converged"] for candidate in selection["candidates"])
    best = max(c["validation_accuracy"] for c in selection["candidates"])
    chosen = next(c for c in selection["candidates"] if c["name"] == selection["chosen"]["name"])
    assert chosen["validation_accuracy"] == best
    # Validation images come out of the training side; the chosen model is refitted on all of it.
    assert metrics["train_images"] + metrics["test_images"] == metrics["slice_images"]
    assert 0 < selection["validation_images"] < metrics["train_images"]
