import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from pydantic import ValidationError
from pyspark.ml.classification import LogisticRegressionModel
from pyspark.ml.feature import PCAModel, StandardScalerModel, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F

from fruit_pipeline.contracts import COLOUR_VECTOR, VECTOR
from fruit_pipeline.core.calibration import softmax
from fruit_pipeline.core.classifier_export import ExportedClassifier
from fruit_pipeline.core.fruit_names import FruitNames, UnmappedFolder
from fruit_pipeline.core.imagenet_prior import ImagenetHead
from fruit_pipeline.parameters import PredictSettings, TrainSettings
from fruit_pipeline.pipelines.predict.nodes import predict_labels
from fruit_pipeline.pipelines.train.nodes import (
    NO_PRIOR,
    PriorHead,
    assign_split,
    classification_metrics,
    evaluate_classifier,
    export_classifier,
    identify_feature_model,
    load_imagenet_head,
    name_fruits,
    plot_confusion_matrix,
    precision_threshold,
    score,
    select_classifier,
    train_classifier,
)
from fruit_pipeline.spark.ml_stages import stage
from fruit_pipeline.spark.pca import as_vectors
from tests.support.helpers import numpy_pca_shares

PARAMETERS = {
    "label_level": "variety",
    "split_folders": {"train": "Training", "test": "Test"},
    "seed": 42,
    "train_ratio": 0.8,
    "variance_threshold": 0.8,
    "max_components": 50,
    "selection": {
        "validation_ratio": 0.25,
        "validation_source": None,
        "candidates": [
            {"inputs": "pca", "colour": False, "reg_param": 0.01},
            {"inputs": "features", "colour": False, "reg_param": 0.01},
        ],
        "max_iter": 100,
        "tol": 1e-4,
        "elastic_net_param": 0.0,
        "block_size_mb": 32.0,
        "calibration_min_errors": 5,
    },
    "keep_correct": 0.99,
    "answer_precision": None,
    "imagenet_prior": {"beta": 0.5, "classes": {"lemon": [951]}},
}
TRAIN = TrainSettings.model_validate(PARAMETERS)


def with_candidates(*candidates: dict, **selection) -> TrainSettings:
    """The test's train settings with these candidates (and selection settings) instead."""
    return TrainSettings.model_validate(
        {
            **PARAMETERS,
            "selection": {**PARAMETERS["selection"], "candidates": candidates, **selection},
        }
    )


PCA_ONLY = with_candidates({"inputs": "pca", "colour": False, "reg_param": 0.01})
SCHEMA = "path string, label string, features array<float>, colour array<float>"


def clustered_features(
    spark, split_folders: bool = True, separation: float = 6.0, colour_separation: float = 0.0
):
    """Three classes in 16 dimensions (apart by default), 30 training and 10 test images each;
    a 4-bin `colour` column whose class centres are `colour_separation` apart (none by default)."""
    rng = np.random.default_rng(3)
    centres = rng.normal(scale=separation, size=(3, 16))
    colours = rng.normal(scale=colour_separation, size=(3, 4))
    rows = []
    for label, centre, colour in zip(["kiwi", "lemon", "plum"], centres, colours, strict=True):
        for index in range(40):
            split = "Training" if index < 30 else "Test"
            folder = f"{split}/{label}" if split_folders else label
            vector = centre + rng.normal(size=16)
            histogram = colour + rng.normal(size=4)
            rows.append(
                (
                    f"file:/images/{folder}/{index}.jpg",
                    label,
                    vector.tolist(),
                    histogram.tolist(),
                )
            )
    return spark.createDataFrame(rows, SCHEMA)


@pytest.fixture(scope="module")
def trained(spark):
    split_features = assign_split(clustered_features(spark), PCA_ONLY)
    selection = select_classifier(split_features, PCA_ONLY)
    classifier, inputs = train_classifier(split_features, selection, PCA_ONLY)
    return split_features, classifier, inputs, selection


def test_split_comes_from_the_folders_and_validation_from_the_training_side(trained):
    split_features, _, _, _ = trained
    splits = {row["path"]: row["split"] for row in split_features.collect()}
    assert all(
        split in (("train", "validation") if "/Training/" in path else ("test",))
        for path, split in splits.items()
    )
    validation = list(splits.values()).count("validation") / 90
    assert 0.1 < validation < 0.4


def test_a_single_split_folder_falls_back_to_the_seeded_split(spark):
    features = clustered_features(spark).where("path LIKE '%/Training/%'")
    splits = [row["split"] for row in assign_split(features, TRAIN).collect()]
    assert {"train", "validation", "test"} == set(splits)


def test_without_split_folders_the_random_split_is_seeded_and_keeps_the_ratio(spark):
    features = clustered_features(spark, split_folders=False)
    first = {r["path"]: r["split"] for r in assign_split(features, TRAIN).collect()}
    again = {r["path"]: r["split"] for r in assign_split(features.repartition(5), TRAIN).collect()}
    other_seed = {
        r["path"]: r["split"]
        for r in assign_split(features, TRAIN.model_copy(update={"seed": 7})).collect()
    }
    assert first == again
    assert first != other_seed
    # The same images in another folder (or bucket) get the same split.
    moved = features.withColumn("path", F.regexp_replace("path", "^file:/images/", "s3://b/x/"))
    elsewhere = {
        r["path"].replace("s3://b/x/", "file:/images/"): r["split"]
        for r in assign_split(moved, TRAIN).collect()
    }
    assert elsewhere == first
    training_side = [split for split in first.values() if split != "test"]
    assert 0.65 < len(training_side) / len(first) < 0.95


def test_scaler_and_pca_see_the_training_images_only(trained):
    split_features, classifier, inputs, _ = trained
    # The chosen candidate is refitted on every training image, validation ones included.
    training = np.stack(
        [row["features"] for row in split_features.where("split != 'test'").collect()]
    )
    scaler = stage(classifier, StandardScalerModel)
    np.testing.assert_allclose(scaler.mean.toArray(), training.mean(axis=0), rtol=1e-5, atol=1e-5)
    assert inputs["inputs"] == "pca"
    assert inputs["train_images"] == 90
    assert inputs["constant_features_dropped"] == 0
    k = inputs["components"]
    assert 1 <= k <= 16
    assert stage(classifier, PCAModel).getK() == k
    shares = numpy_pca_shares(training)
    np.testing.assert_allclose(inputs["explained_variance"], shares[:16], rtol=0, atol=1e-9)
    assert np.cumsum(shares)[k - 1] >= 0.8 > (np.cumsum(shares)[k - 2] if k > 1 else 0)


def test_separable_classes_are_all_recognised(trained):
    split_features, classifier, inputs, selection = trained
    metrics = evaluate_classifier(split_features, classifier, inputs, selection)
    assert metrics["accuracy"] == 1.0
    assert metrics["macro_f1"] == 1.0
    assert 0 <= metrics["log_loss"] < 0.1
    assert 0.9 < metrics["mean_true_label_probability"] <= 1.0
    # Separable classes: no validation error, so no temperature is fitted.
    assert selection["validation_errors"] == 0
    assert selection["temperature_fitted"] is False
    assert metrics["calibration"]["temperature"] == selection["temperature"] == 1.0
    assert 0 <= metrics["calibration"]["expected_calibration_error"] < 0.1
    assert metrics["unknown_answer"]["answered_accuracy"] == 1.0
    assert metrics["converged"] is True
    regression = stage(classifier, LogisticRegressionModel)
    assert regression.getMaxBlockSizeInMB() == TRAIN.selection.block_size_mb
    assert regression.getTol() == TRAIN.selection.tol
    assert metrics["test_images"] == 30
    assert metrics["train_images"] == 90
    assert metrics["classes"] == 3
    assert metrics["per_class"]["lemon"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "support": 10,
    }


def test_the_block_size_stacks_rows_differently_and_fits_the_same_model(spark):
    split_features = assign_split(clustered_features(spark), TRAIN)
    features_only = {"inputs": "features", "colour": False, "reg_param": 0.01}
    fitted = {}
    # 0.001 MB holds a few of these 16-feature rows: the 90 training rows take many blocks. A
    # tolerance far below the project's lets both fits reach the optimum, which is one model.
    for block_size_mb in (32.0, 0.001):
        settings = with_candidates(features_only, block_size_mb=block_size_mb, tol=1e-12)
        selection = select_classifier(split_features, settings)
        classifier, _ = train_classifier(split_features, selection, settings)
        fitted[block_size_mb] = classifier
    large, small = (stage(fitted[size], LogisticRegressionModel) for size in (32.0, 0.001))
    assert small.getMaxBlockSizeInMB() == 0.001
    assert large.summary.totalIterations < PARAMETERS["selection"]["max_iter"]
    assert small.summary.totalIterations < PARAMETERS["selection"]["max_iter"]
    np.testing.assert_allclose(
        small.coefficientMatrix.toArray(), large.coefficientMatrix.toArray(), rtol=0, atol=1e-6
    )
    # The intercept of the slot kept for unknown labels, which no row has, falls without bound
    # (intercepts are not penalized): the probabilities are what must agree.
    test = as_vectors(split_features.where("split = 'test'"))
    probabilities = {size: softmax(score(fitted[size], test, None).margins) for size in fitted}
    np.testing.assert_allclose(probabilities[0.001], probabilities[32.0], rtol=0, atol=1e-6)


def test_every_candidate_is_scored_on_validation_and_the_best_is_chosen(spark):
    split_features = assign_split(clustered_features(spark), TRAIN)
    selection = select_classifier(split_features, TRAIN)
    assert [c["name"] for c in selection["candidates"]] == [
        "pca, reg_param 0.01",
        "features, reg_param 0.01",
    ]
    assert selection["chosen"]["colour"] is False
    best = max(
        selection["candidates"], key=lambda c: (c["validation_accuracy"], -c["validation_log_loss"])
    )
    assert selection["chosen"]["name"] == best["name"]
    assert all(c["converged"] and c["seconds"] > 0 for c in selection["candidates"])
    assert selection["validation_images"] == split_features.where("split = 'validation'").count()
    classifier, inputs = train_classifier(split_features, selection, TRAIN)
    assert inputs["chosen"] == best["name"]
    metrics = evaluate_classifier(split_features, classifier, inputs, selection)
    assert metrics["accuracy"] == 1.0
    assert metrics["selection"] == selection


def test_with_validation_errors_a_temperature_is_fitted(spark):
    overlapping = with_candidates(*PARAMETERS["selection"]["candidates"], calibration_min_errors=2)
    split_features = assign_split(clustered_features(spark, separation=0.5), overlapping)
    selection = select_classifier(split_features, overlapping)
    assert selection["validation_errors"] >= 2
    assert selection["temperature_fitted"] is True
    assert selection["temperature"] != 1.0
    chosen = next(c for c in selection["candidates"] if c["name"] == selection["chosen"]["name"])
    assert selection["validation_log_loss_calibrated"] <= chosen["validation_log_loss"]


def test_metrics_from_a_known_confusion():
    counts = pd.DataFrame(
        [("a", "a", 8), ("a", "b", 2), ("b", "b", 5), ("c", "a", 5)],
        columns=["label", "predicted_label", "count"],
    )
    metrics = classification_metrics(counts)
    assert metrics["accuracy"] == pytest.approx(13 / 20)
    assert metrics["per_class"]["a"]["precision"] == pytest.approx(8 / 13)
    assert metrics["per_class"]["a"]["recall"] == pytest.approx(0.8)
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(5 / 7)
    assert metrics["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 5}
    f1_a = 2 * (8 / 13) * 0.8 / (8 / 13 + 0.8)
    f1_b = 2 * (5 / 7) * 1.0 / (5 / 7 + 1.0)
    assert metrics["macro_f1"] == pytest.approx((f1_a + f1_b + 0) / 3)
    assert metrics["confusion_matrix"] == {
        "labels": ["a", "b", "c"],
        "counts": [[8, 2, 0], [0, 5, 0], [5, 0, 0]],
    }


def test_the_confusion_plot_names_every_class_even_with_a_hundred_and_twenty():
    labels = [f"Fruit {i:03d}" for i in range(120)]
    counts = pd.DataFrame(
        [(label, label, 9) for label in labels] + [(labels[0], labels[1], 1)],
        columns=["label", "predicted_label", "count"],
    )
    figure = plot_confusion_matrix(classification_metrics(counts))
    assert isinstance(figure, Figure)
    axes = figure.axes[0]
    assert [tick.get_text() for tick in axes.get_yticklabels()] == labels
    assert [tick.get_text() for tick in axes.get_xticklabels()] == labels
    shares = axes.images[0].get_array()
    assert shares[0, 0] == pytest.approx(0.9)
    assert shares[5, 5] == pytest.approx(1.0)


def test_predictions_give_the_label_its_probability_and_the_top_three(trained):
    split_features, classifier, _, selection = trained
    new_images = split_features.where("split = 'test'").drop("split")
    predictions = predict_labels(new_images, classifier, selection, PredictSettings(top_labels=3))
    assert list(predictions.columns) == [
        "path",
        "predicted_label",
        "probability",
        "sure",
        "label_1",
        "probability_1",
        "label_2",
        "probability_2",
        "label_3",
        "probability_3",
    ]
    assert len(predictions) == 30
    assert (predictions["predicted_label"] == predictions["label_1"]).all()
    np.testing.assert_allclose(predictions["probability"], predictions["probability_1"])
    assert (predictions["probability_1"] >= predictions["probability_2"]).all()
    assert (predictions["probability_2"] >= predictions["probability_3"]).all()
    totals = predictions[["probability_1", "probability_2", "probability_3"]].sum(axis=1)
    np.testing.assert_allclose(totals, 1.0, rtol=1e-6)
    expected = predictions["path"].str.extract(r"/Test/([^/]+)/")[0]
    assert (predictions["predicted_label"] == expected).all()
    # The calibrated probability: softmax of the margins over the temperature, by numpy.
    margins = np.stack(
        classifier.transform(as_vectors(new_images))
        .orderBy("path")
        .select(vector_to_array("rawPrediction").alias("m"))
        .toPandas()["m"]
    )
    expected_top = softmax(margins, selection["temperature"]).max(axis=1)
    np.testing.assert_allclose(predictions["probability"], expected_top, rtol=1e-9)
    assert (predictions["sure"] == (expected_top >= selection["unknown_threshold"])).all()


WITH_COLOUR = with_candidates(
    {"inputs": "features", "colour": False, "reg_param": 0.01},
    {"inputs": "features", "colour": True, "reg_param": 0.01},
)


def test_the_colour_histogram_is_chosen_when_it_tells_the_classes_apart(spark):
    # Embeddings that overlap, colours far apart: only the candidate with colour can tell.
    features = clustered_features(spark, separation=0.3, colour_separation=8.0)
    split_features = assign_split(features, WITH_COLOUR)
    selection = select_classifier(split_features, WITH_COLOUR)
    accuracy = {c["name"]: c["validation_accuracy"] for c in selection["candidates"]}
    assert accuracy["features + colour, reg_param 0.01"] == 1.0
    assert accuracy["features, reg_param 0.01"] < 0.9
    assert selection["chosen"] == {
        "name": "features + colour, reg_param 0.01",
        "inputs": "features",
        "colour": True,
        "reg_param": 0.01,
    }
    classifier, inputs = train_classifier(split_features, selection, WITH_COLOUR)
    assert stage(classifier, VectorAssembler).getInputCols() == [VECTOR, COLOUR_VECTOR]
    # 16 embedding + 4 colour features, standardized together.
    assert stage(classifier, StandardScalerModel).mean.size == 20
    metrics = evaluate_classifier(split_features, classifier, inputs, selection)
    assert metrics["accuracy"] == 1.0
    assert metrics["colour"] is True
    new_images = split_features.where("split = 'test'").drop("split")
    predictions = predict_labels(new_images, classifier, selection, PredictSettings(top_labels=1))
    expected = predictions["path"].str.extract(r"/Test/([^/]+)/")[0]
    assert (predictions["predicted_label"] == expected).all()


def test_a_colour_candidate_on_features_without_colour_says_to_featurize_again(spark):
    features = assign_split(clustered_features(spark).drop("colour"), WITH_COLOUR)
    with pytest.raises(ValueError, match="no `colour` column.*featurize.full_refresh=true"):
        select_classifier(features, WITH_COLOUR)


def test_a_candidate_without_its_colour_key_is_refused_by_name():
    with pytest.raises(
        ValidationError, match=r"selection\.candidates\.0\.colour\n  Field required"
    ):
        with_candidates({"inputs": "pca", "reg_param": 0.1})


def test_an_embedding_candidate_with_the_colour_histogram_is_refused_with_what_to_use():
    with pytest.raises(ValidationError, match=r"inputs: embedding, colour: true.*inputs: features"):
        with_candidates({"inputs": "embedding", "colour": True, "reg_param": 0.001})


def rows_of_models(spark, *models: tuple[str | None, str, str]):
    """Two feature-table rows for each (weights checksum, engine, framing)."""
    rows = [
        (f"/images/kiwi/{i}_{n}.jpg", "kiwi", *model)
        for n, model in enumerate(models)
        for i in range(2)
    ]
    return spark.createDataFrame(
        rows, "path string, label string, weights_sha256 string, engine string, framing string"
    )


REAL_SHA = "a" * 64
OTHER_SHA = "b" * 64


def test_the_export_names_the_feature_model_of_the_rows_it_learnt_from(spark):
    summary = {"feature_model": {"weights": "imagenet", "weights_sha256": REAL_SHA}}
    rows = rows_of_models(spark, (REAL_SHA, "onnxruntime", "pad"))
    assert identify_feature_model(rows, summary) == {
        "weights": "imagenet",
        "weights_sha256": REAL_SHA,
        "engine": "onnxruntime",
        "framing": "pad",
        "input_size": 224,
        "feature_size": 1280,
    }
    # A table made before framing was recorded holds squashed photos.
    unrecorded = identify_feature_model(rows.drop("framing"), summary)
    assert unrecorded["framing"] == "squash"


def test_rows_of_other_weights_than_the_last_featurize_keep_their_own_checksum(spark):
    # `features_version` read an older table version than the latest featurize run describes.
    latest_run = {"feature_model": {"weights": "/models/other.h5", "weights_sha256": OTHER_SHA}}
    rows = rows_of_models(spark, (REAL_SHA, "keras", "crop"))
    identity = identify_feature_model(rows, latest_run)
    assert identity["weights_sha256"] == REAL_SHA
    assert (identity["engine"], identity["framing"]) == ("keras", "crop")
    assert identity["weights"] is None


@pytest.mark.parametrize(
    "other", [(OTHER_SHA, "onnxruntime", "pad"), (REAL_SHA, "onnxruntime", "crop")]
)
def test_rows_of_two_feature_models_are_refused(spark, other):
    mixed = rows_of_models(spark, (REAL_SHA, "onnxruntime", "pad"), other)
    with pytest.raises(ValueError, match="2 feature models, not one"):
        identify_feature_model(mixed, {})


FRUIT_NAMES = FruitNames.model_validate(
    {"apple": ["Apple Red", "Apple Golden"], "pear": ["Pear Abate"], "mandarin": ["Satsumas"]}
)


def labelled_paths(spark, *labels: str):
    rows = [(f"file:/images/{label}/{i}.jpg", label) for label in labels for i in range(2)]
    return spark.createDataFrame(rows, "path string, label string")


def test_each_image_gets_its_fruit_and_variety_and_learns_the_level_asked(spark):
    images = labelled_paths(spark, "Apple Red 2", "apple", "Pear_Abate", "SATSUMAS", "Apple-golden")
    by_fruit = name_fruits(images, FRUIT_NAMES, TRAIN.model_copy(update={"label_level": "fruit"}))
    rows = {row["variety"]: (row["label"], row["fruit"]) for row in by_fruit.collect()}
    assert rows == {
        "Apple Red 2": ("apple", "apple"),
        "apple": ("apple", "apple"),
        "Pear_Abate": ("pear", "pear"),
        "SATSUMAS": ("mandarin", "mandarin"),
        "Apple-golden": ("apple", "apple"),
    }
    by_variety = name_fruits(images, FRUIT_NAMES, TRAIN)
    assert {(row["label"], row["fruit"]) for row in by_variety.collect()} == {
        ("Apple Red 2", "apple"),
        ("apple", "apple"),
        ("Pear_Abate", "pear"),
        ("SATSUMAS", "mandarin"),
        ("Apple-golden", "apple"),
    }
    assert by_variety.count() == images.count()


def test_a_folder_without_a_fruit_name_is_refused_with_the_folder_and_a_file(spark):
    images = labelled_paths(spark, "Apple Red 1", "Durian", "Pear Abate")
    with pytest.raises(UnmappedFolder, match=r"'Durian' \(e\.g\. file:/images/Durian/0\.jpg\)"):
        name_fruits(images, FRUIT_NAMES, TRAIN)


def test_an_embedding_candidate_keeps_the_features_scale_and_is_exported_as_spark_scores(spark):
    raw = with_candidates({"inputs": "embedding", "colour": False, "reg_param": 0.01})
    split_features = assign_split(clustered_features(spark, separation=1.0), raw)
    selection = select_classifier(split_features, raw)
    classifier, inputs = train_classifier(split_features, selection, raw)
    assert inputs["inputs"] == "embedding"
    assert stage(classifier, StandardScalerModel).getWithStd() is False
    assert stage(classifier, LogisticRegressionModel).getStandardization() is False
    metrics = evaluate_classifier(split_features, classifier, inputs, selection)
    export = ExportedClassifier.from_document(export_classifier(classifier, metrics, {}))
    assert np.array_equal(export.std, np.ones(16))
    test = split_features.where("split = 'test'").orderBy("path")
    scored = score(classifier, as_vectors(test), None)
    spark_probabilities = softmax(scored.margins, selection["temperature"])
    features = np.stack(test.select("features").toPandas()["features"]).astype(np.float64)
    np.testing.assert_allclose(
        export.probabilities(features), spark_probabilities, rtol=0, atol=1e-9
    )
    # Not saturated: the comparison says something.
    assert 0.05 < spark_probabilities.max(axis=1).min() < 0.99


def test_each_image_gets_the_source_that_holds_its_label_or_split_folder(spark):
    rows = [
        ("file:/data/grocery-train/Apple/1.jpg", "Apple"),
        ("s3://bucket/images/bowl-train/apple/apple_1.jpg", "apple"),
        ("file:/data/fruits-360/Training/Apple Red 1/r_1_100.jpg", "Apple Red 1"),
        ("file:/data/fruits-360/Test/Apple Red 1/2_100.jpg", "Apple Red 1"),
    ]
    images = spark.createDataFrame(rows, "path string, label string")
    sources = [row["source"] for row in name_fruits(images, FRUIT_NAMES, TRAIN).collect()]
    assert sources == ["grocery-train", "bowl-train", "fruits-360", "fruits-360"]


VIEWS_SCHEMA = f"{SCHEMA}, views array<array<float>>, view_colours array<array<float>>"


def with_views_of_each_photo(features, copies: int, shift: float):
    """Each photo with `copies` views: its own features shifted by `shift` (a view of a photo of
    the test or validation side that leaked into training or scoring would show)."""
    rows = [
        (*row, [[value + shift for value in row[2]]] * copies, [row[3]] * copies)
        for row in features.collect()
    ]
    return features.sparkSession.createDataFrame(rows, VIEWS_SCHEMA)


def test_views_train_beside_their_photo_and_never_choose_or_test(spark):
    photos = with_views_of_each_photo(clustered_features(spark), copies=2, shift=0.5)
    split_features = assign_split(photos, PCA_ONLY)
    selection = select_classifier(split_features, PCA_ONLY)
    validation = split_features.where("split = 'validation'").count()
    assert selection["validation_images"] == validation
    classifier, inputs = train_classifier(split_features, selection, PCA_ONLY)
    assert (inputs["train_images"], inputs["training_rows"]) == (90, 270)
    # The scaler's mean is that of the training photos and their views, shifted by a third.
    training = np.stack(
        [row["features"] for row in split_features.where("split != 'test'").collect()]
    )
    scaler = stage(classifier, StandardScalerModel)
    np.testing.assert_allclose(scaler.mean.toArray(), training.mean(axis=0) + 1 / 3, atol=1e-5)
    metrics = evaluate_classifier(split_features, classifier, inputs, selection)
    assert metrics["test_images"] == 30
    assert (metrics["train_images"], metrics["training_rows"]) == (90, 270)


def test_the_metrics_are_given_for_each_source(spark):
    features = clustered_features(spark).withColumn(
        "path",
        F.when(
            F.col("label") == "plum", F.regexp_replace("path", "^file:/images/", "file:/web/x/")
        ).otherwise(F.col("path")),
    )
    split_features = assign_split(name_fruits(features, FRUIT_NAMES_OF_CLUSTERS, TRAIN), PCA_ONLY)
    selection = select_classifier(split_features, PCA_ONLY)
    classifier, inputs = train_classifier(split_features, selection, PCA_ONLY)
    metrics = evaluate_classifier(split_features, classifier, inputs, selection)
    per_source = metrics["per_source"]
    assert {source: figures["images"] for source, figures in per_source.items()} == {
        "images": 20,
        "x": 10,
    }
    for figures in per_source.values():
        assert figures["accuracy"] == 1.0
        assert figures["right"] == figures["answered_share"]
        assert figures["answered_accuracy"] == 1.0


FRUIT_NAMES_OF_CLUSTERS = FruitNames.model_validate({"kiwi": [], "lemon": [], "plum": []})


def with_a_second_source(spark):
    """The clustered images, 10 training images of each class moved to a source of their own
    (`shop`, with no split folder); named, at the fruit level."""
    features = clustered_features(spark).withColumn(
        "path",
        F.when(
            F.regexp_extract("path", r"/Training/\w+/(\d+)\.jpg$", 1).cast("int") >= 20,
            F.regexp_replace("path", "^file:/images/Training/", "file:/photos/shop/"),
        ).otherwise(F.col("path")),
    )
    return name_fruits(features, FRUIT_NAMES_OF_CLUSTERS, TRAIN)


def test_a_validation_source_chooses_and_sets_the_threshold_and_is_fitted_only_in_the_refit(spark):
    settings = with_candidates(
        {"inputs": "features", "colour": False, "reg_param": 0.01},
        {"inputs": "features", "colour": False, "reg_param": 0.1},
        validation_source="shop",
    ).model_copy(update={"answer_precision": 0.95})
    split_features = assign_split(with_a_second_source(spark), settings)
    sides = {
        (row["source"], row["split"]): row["count"]
        for row in split_features.groupBy("source", "split").count().collect()
    }
    # Every shop photo validates; the Fruits-360 layout keeps its folders, with no validation.
    assert sides == {("shop", "validation"): 30, ("images", "train"): 60, ("images", "test"): 30}
    selection = select_classifier(split_features, settings)
    assert selection["validation_images"] == 30
    assert selection["validation_source"] == "shop"
    assert selection["unknown_rule"]["answer_precision"] == 0.95
    assert selection["unknown_rule"]["precision_reached"]
    classifier, inputs = train_classifier(split_features, selection, settings)
    assert inputs["train_images"] == 90
    metrics = evaluate_classifier(split_features, classifier, inputs, selection)
    assert metrics["test_images"] == 30
    assert set(metrics["per_source"]) == {"images"}
    assert metrics["unknown_answer"]["chosen_on"] == "validation images (source shop)"
    assert metrics["unknown_answer"]["answer_precision"] == 0.95
    assert metrics["calibration"]["fitted_on"] == "validation images (source shop)"


def test_a_validation_source_the_images_do_not_have_is_refused_with_theirs(spark):
    settings = with_candidates(*PARAMETERS["selection"]["candidates"], validation_source="market")
    message = r"'market' is not a source of the images: they come from \['images', 'shop'\]"
    with pytest.raises(ValueError, match=message):
        assign_split(with_a_second_source(spark), settings)


def test_a_validation_source_that_is_the_only_one_is_refused(spark):
    settings = with_candidates(*PARAMETERS["selection"]["candidates"], validation_source="images")
    only_studio = name_fruits(clustered_features(spark), FRUIT_NAMES_OF_CLUSTERS, TRAIN)
    with pytest.raises(ValueError, match="'images' is the images' only source: nothing would"):
        assign_split(only_studio, settings)


def test_the_precision_threshold_answers_the_most_images_whose_answers_reach_it():
    top = np.array([0.99, 0.95, 0.9, 0.8, 0.6, 0.5])
    correct = np.array([True, True, False, True, False, True])
    # The answers above each top probability are right 1, 1, 2/3, 3/4, 3/5, 4/6 of the time.
    reaching = precision_threshold(top, correct, precision=0.75)
    assert (reaching["threshold"], reaching["precision_reached"]) == (0.8, True)
    assert reaching["answered_share"] == pytest.approx(4 / 6)
    assert reaching["answered_accuracy"] == 0.75
    assert precision_threshold(top, correct, precision=0.9)["threshold"] == 0.95
    assert precision_threshold(top[::-1], correct[::-1], precision=0.9)["threshold"] == 0.95


def test_equal_top_probabilities_are_answered_together_and_an_unreached_precision_says_so():
    top = np.array([0.9, 0.9, 0.8])
    correct = np.array([True, False, True])
    # Cutting between the two 0.9s is not a threshold: 1/2 above 0.9, 2/3 above 0.8.
    assert precision_threshold(top, correct, precision=0.6)["threshold"] == 0.8
    best = precision_threshold(top, correct, precision=0.9)
    assert (best["threshold"], best["precision_reached"]) == (0.8, False)
    assert best["answered_accuracy"] == pytest.approx(2 / 3)


# Each cluster as a fruit ImageNet has a class for.
CLASS_OF_CLUSTER = {"kiwi": 948, "lemon": 951, "plum": 950}
WITH_PRIOR = TrainSettings.model_validate(
    {
        **PARAMETERS,
        "selection": {**PARAMETERS["selection"], "candidates": [PCA_ONLY.selection.candidates[0]]},
        "imagenet_prior": {
            "beta": 0.5,
            "classes": {fruit: [index] for fruit, index in CLASS_OF_CLUSTER.items()},
        },
    }
)


def random_head(scale: float, lemon_bias: float = 0.0) -> ImagenetHead:
    """A seeded 16-feature ImageNet head (its lemon class raised by `lemon_bias`)."""
    rng = np.random.default_rng(7)
    bias = np.zeros(1000, dtype=np.float32)
    bias[CLASS_OF_CLUSTER["lemon"]] = lemon_bias
    return ImagenetHead(rng.normal(scale=scale, size=(16, 1000)).astype(np.float32), bias)


@pytest.fixture(scope="module")
def trained_with_a_prior(spark):
    split_features = assign_split(
        name_fruits(clustered_features(spark), FRUIT_NAMES_OF_CLUSTERS, TRAIN), WITH_PRIOR
    )
    head = random_head(scale=0.1)
    selection = select_classifier(split_features, WITH_PRIOR, PriorHead(head))
    classifier, inputs = train_classifier(split_features, selection, WITH_PRIOR)
    return split_features, classifier, inputs, selection


def test_the_imagenet_prior_is_recorded_and_moves_the_answers_towards_its_classes(
    trained_with_a_prior,
):
    split_features, classifier, inputs, selection = trained_with_a_prior
    assert selection["imagenet_prior"] == {
        "beta": 0.5,
        "label_classes": {fruit: [index] for fruit, index in CLASS_OF_CLUSTER.items()},
    }
    alone = evaluate_classifier(split_features, classifier, inputs, selection)
    assert alone["accuracy"] == 1.0
    # A head sure that every image is a lemon: beta log q is 0 for lemon, 0.5 log 1e-6 for the
    # others, more than the classifier's margins between its clusters.
    lemons = evaluate_classifier(
        split_features, classifier, inputs, selection, PriorHead(random_head(0.0, lemon_bias=50.0))
    )
    assert lemons["accuracy_without_imagenet_prior"] == 1.0
    assert lemons["accuracy"] == pytest.approx(1 / 3)
    assert lemons["confusion_matrix"]["counts"] == [[0, 10, 0], [0, 10, 0], [0, 10, 0]]


def test_the_export_and_predict_answer_with_the_prior_as_train_measured(trained_with_a_prior):
    split_features, classifier, inputs, selection = trained_with_a_prior
    head = random_head(scale=0.1)
    metrics = evaluate_classifier(split_features, classifier, inputs, selection, PriorHead(head))
    document = export_classifier(classifier, metrics, {}, PriorHead(head))
    export = ExportedClassifier.from_document(document)
    assert set(export.prior.label_classes) == {(948,), (950,), (951,)}
    test = split_features.where("split = 'test'").orderBy("path")
    features = np.stack(test.select("features").toPandas()["features"]).astype(np.float64)
    probabilities = export.probabilities(features)
    labels = np.array(export.labels)[probabilities.argmax(axis=1)]
    truth = np.array([row["label"] for row in test.select("label").collect()])
    assert np.mean(labels == truth) == pytest.approx(metrics["accuracy"])
    predictions = predict_labels(
        test.drop("split"), classifier, selection, PredictSettings(top_labels=3), document
    )
    assert list(predictions["predicted_label"]) == list(labels)
    np.testing.assert_allclose(predictions["probability"], probabilities.max(axis=1), rtol=1e-6)
    # The same model without its prior answers otherwise: the prior is applied, not ignored.
    plain = ExportedClassifier.from_document({**document, "imagenet_prior": None})
    assert not np.allclose(plain.probabilities(features), probabilities, atol=1e-3)


def test_the_imagenet_head_is_read_from_the_features_weights_file_or_left_out_with_reason(
    tmp_path, caplog
):
    names = FRUIT_NAMES_OF_CLUSTERS
    off = TrainSettings.model_validate({**PARAMETERS, "imagenet_prior": {"beta": 0, "classes": {}}})
    assert (
        load_imagenet_head({"weights": "imagenet", "weights_sha256": "a" * 64}, names, off)
        == NO_PRIOR
    )
    random = {"weights": None, "weights_sha256": None}
    assert load_imagenet_head(random, names, TRAIN) == NO_PRIOR
    assert "random weights" in caplog.text
    with pytest.raises(ValueError, match="does not name"):
        load_imagenet_head({"weights": None, "weights_sha256": "a" * 64}, names, TRAIN)
    with pytest.raises(FileNotFoundError, match="not a file"):
        load_imagenet_head(
            {"weights": str(tmp_path / "x.h5"), "weights_sha256": "a" * 64}, names, TRAIN
        )
    # A fruit of the prior's classes that the names file does not give is refused, by its name.
    misspelt = TrainSettings.model_validate(
        {**PARAMETERS, "imagenet_prior": {"beta": 0.5, "classes": {"lemmon": [951]}}}
    )
    with pytest.raises(ValueError, match=r"\['lemmon'\].*does not list as fruits"):
        load_imagenet_head({"weights": "imagenet", "weights_sha256": "a" * 64}, names, misspelt)
