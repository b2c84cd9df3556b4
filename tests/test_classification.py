"""train and predict end to end on the real Fruits-360 sample split, real and random weights."""

import json
from pathlib import Path

import pandas as pd
import pytest

from fruit_pipeline.config import config_loader
from fruit_pipeline.pipelines.train.nodes import assign_split, select_classifier
from tests.helpers import PROJECT_ROOT, SAMPLE, new_project, read_features, run


def trained_project(root: Path, weights: str | None) -> dict:
    """Featurize the sample (Training/ and Test/), train; the metrics of the test images."""
    new_project(root)
    run(root, "featurize", images_root=str(SAMPLE), featurize={"weights": weights})
    run(root, "train")
    return json.loads((root / "data/08_reporting/classification_metrics.json").read_text())


@pytest.fixture(scope="module")
def real(trained_sample_project):
    return trained_sample_project


@pytest.fixture(scope="module")
def random(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("random")
    return root, trained_project(root, None)


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
    assert len(selection["candidates"]) == 4
    assert selection["chosen"]["name"] in {c["name"] for c in selection["candidates"]}
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


def test_random_weights_complete_and_the_embedding_shows_the_difference(spark, real, random):
    _, real_metrics = real
    _, random_metrics = random
    assert random_metrics["test_images"] == real_metrics["test_images"]
    # Four colourful classes are told apart by the colour histogram alone, and even by random
    # convolutions: what the real weights buy shows in the embedding, so both are compared
    # without the histogram, on the same validation images.
    train = config_loader(PROJECT_ROOT)["parameters"]["train"]
    candidate = {"inputs": "features", "colour": False, "reg_param": 0.001}
    embedding_only = {**train, "selection": {**train["selection"], "candidates": [candidate]}}
    log_loss = {}
    for name, (root, _) in {"real": real, "random": random}.items():
        split = assign_split(read_features(spark, root), embedding_only)
        selection = select_classifier(split, embedding_only)
        log_loss[name] = selection["candidates"][0]["validation_log_loss"]
    assert log_loss["random"] > log_loss["real"]


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
