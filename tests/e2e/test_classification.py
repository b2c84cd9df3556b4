"""train and predict end to end on the real Fruits-360 sample split; real and random weights on
real photos."""

import json
from pathlib import Path

import pandas as pd
import pytest

from fruit_pipeline.config import config_loader
from fruit_pipeline.parameters import TrainSettings
from fruit_pipeline.pipelines.train.nodes import assign_split, select_classifier
from tests.support.helpers import (
    GROCERY,
    PROJECT_ROOT,
    configured_candidates,
    image_slice,
    new_project,
    read_features,
    run,
)

pytestmark = pytest.mark.shared

# A seeded slice of the real grocery-store photos: every third photo of each of its 23 fruit.
PHOTO_STEP = 3


@pytest.fixture(scope="module")
def real(trained_sample_project):
    return trained_sample_project


@pytest.fixture(scope="module")
def grocery_photos(tmp_path_factory) -> Path:
    if not GROCERY.is_dir():
        pytest.skip(f"needs the real grocery-store photos at {GROCERY}")
    return image_slice(GROCERY, tmp_path_factory.mktemp("grocery_photos"), PHOTO_STEP)


@pytest.fixture(scope="module")
def photo_features(spark, grocery_photos, tmp_path_factory) -> dict[str, Path]:
    """The grocery slice featurized twice: ImageNet weights and random ones, the photos alone
    (no views: the margin below was measured on them)."""
    roots = {}
    for name, weights in {"real": "imagenet", "random": None}.items():
        roots[name] = new_project(tmp_path_factory.mktemp(f"photos_{name}"))
        run(
            roots[name],
            "featurize",
            images_root=str(grocery_photos),
            featurize={"weights": weights, "augment": {"copies": 0}},
        )
    return roots


def test_real_weights_classify_the_sample_test_images(real):
    _, metrics = real
    assert metrics["accuracy"] >= 0.98
    assert metrics["train_images"] == 328
    assert metrics["test_images"] == 135
    assert metrics["classes"] == 4
    assert set(metrics["per_class"]) == {"apple", "lemon", "mango", "raspberry"}


def test_the_classifier_is_chosen_on_validation_images_and_calibrated(real):
    root, metrics = real
    selection = metrics["selection"]
    assert [c["name"] for c in selection["candidates"]] == configured_candidates()
    assert selection["chosen"]["name"] in configured_candidates()
    assert all(0.9 <= c["validation_accuracy"] <= 1.0 for c in selection["candidates"])
    # The validation images come out of the 328 training images, never out of the test ones.
    assert 0 < selection["validation_images"] < 328
    assert metrics["converged"] is True
    calibration = metrics["calibration"]
    assert calibration["temperature"] > 0
    assert sum(b["images"] for b in calibration["bins"]) == metrics["test_images"]
    assert 0 <= calibration["expected_calibration_error"] < 0.1
    assert 0.5 < metrics["unknown_answer"]["answered_share"] <= 1.0
    assert metrics["unknown_answer"]["answered_accuracy"] >= metrics["accuracy"]
    plot = root / "data/08_reporting/reliability.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_model_and_the_confusion_plot_are_saved(real):
    root, _ = real
    assert (root / "data/06_models/classifier/metadata").is_dir()
    plot = root / "data/08_reporting/confusion_matrix.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Measured on this slice over train.seed 0-11 and two random initialisations (docs/testing.md):
# validation accuracy 0.61-0.75 with the real weights, 0.26-0.47 with random ones, and the gap
# of each seed 0.237 or more. The margin asked is about two thirds of the smallest gap.
ACCURACY_GAP = 0.15


@pytest.mark.slow
def test_random_weights_complete_and_name_real_photos_far_worse(
    spark, photo_features, grocery_photos
):
    photos = sum(1 for _ in grocery_photos.rglob("*.jpg"))
    # The embedding alone, no colour histogram, on half the photos held out for validation: a
    # metric far from its bound on both sides, on photos where what ImageNet learnt is needed.
    train = config_loader(PROJECT_ROOT)["parameters"]["train"]
    candidate = {"inputs": "features", "colour": False, "reg_param": 0.001}
    embedding_only = TrainSettings.model_validate(
        {
            **train,
            "train_ratio": 0.5,
            "selection": {**train["selection"], "validation_ratio": 0.5, "candidates": [candidate]},
        }
    )
    accuracy = {}
    for name, root in photo_features.items():
        features = read_features(spark, root)
        assert features.count() == photos
        selection = select_classifier(assign_split(features, embedding_only), embedding_only)
        assert selection["validation_images"] >= 80
        accuracy[name] = selection["candidates"][0]["validation_accuracy"]
    assert accuracy["real"] - accuracy["random"] >= ACCURACY_GAP, accuracy


@pytest.mark.slow
def test_train_on_random_weights_runs_without_the_prior(photo_features):
    # Random weights have no ImageNet head: the train pipeline runs to its end, answers with the
    # classifier alone and exports no prior ("no head" once could not pass between two nodes).
    root = photo_features["random"]
    run(root, "train")
    metrics = json.loads((root / "data/08_reporting/classification_metrics.json").read_text())
    assert metrics["selection"]["imagenet_prior"] is None
    assert metrics["accuracy"] == metrics["accuracy_without_imagenet_prior"]
    export = json.loads((root / "data/06_models/classifier_export.json").read_text())
    assert export["imagenet_prior"] is None
    assert export["feature_model"]["weights_sha256"] is None


def test_predict_names_new_images_and_rejects_bad_ones(real, test1_images, tmp_path):
    root, _ = real
    new_images = tmp_path / "new"
    for image in test1_images.rglob("*.jpg"):
        target = new_images / "unsorted" / f"{image.parent.name}_{image.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image.read_bytes())
    (new_images / "unsorted" / "broken.jpg").write_bytes(b"not an image")

    run(root, "predict", new_images_root=str(new_images))

    predictions = pd.read_csv(root / "data/07_model_output/predictions.csv")
    assert len(predictions) == 20
    assert list(predictions.columns[:3]) == ["path", "predicted_label", "probability"]
    truth = predictions["path"].str.extract(r"/unsorted/([a-z]+)_")[0]
    assert (predictions["predicted_label"] == truth).mean() >= 0.9
    assert predictions["probability"].between(0, 1).all()
    rejects = pd.read_csv(root / "data/08_reporting/new_image_rejects.csv")
    assert [Path(p).name for p in rejects["path"]] == ["broken.jpg"]
    summary = json.loads((root / "data/08_reporting/new_images_summary.json").read_text())
    assert summary["files_listed"] == 21
    # Framed as the classifier's training photos were.
    assert summary["feature_model"]["framing"] == "pad"
