"""Nodes of the train pipeline."""

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pyspark.ml import PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import IndexToString, StringIndexer
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruit_pipeline.columns import (
    COMPONENTS,
    LABEL,
    LABEL_INDEX,
    PREDICTED_LABEL,
    PREDICTION_INDEX,
    PROBABILITY,
    SCALED,
)
from fruit_pipeline.pca import as_vectors, fit_scaled_pca, fit_standardizer

logger = logging.getLogger(__name__)


def assign_split(image_features: DataFrame, train: dict[str, Any]) -> DataFrame:
    """Add `split` (train/test): the data set's own split folders, else a seeded random split."""
    split_folder = F.regexp_extract("path", r"([^/]+)/[^/]+/[^/]+$", 1)
    folders = train["split_folders"]
    from_folders = F.when(split_folder == folders["train"], "train").when(
        split_folder == folders["test"], "test"
    )
    if image_features.where(from_folders.isNull()).isEmpty():
        return image_features.withColumn("split", from_folders)
    logger.info(
        "Not every image sits under %s/ or %s/: splitting at random (seed %s, %.0f%% train).",
        folders["train"],
        folders["test"],
        train["seed"],
        100 * train["train_ratio"],
    )
    # A hash of the path, not rand(): each image keeps its split whatever the partitioning.
    draw = F.abs(F.xxhash64("path", F.lit(train["seed"]))) % 1_000_000 / 1_000_000
    return image_features.withColumn(
        "split", F.when(draw < train["train_ratio"], "train").otherwise("test")
    )


def train_classifier(
    split_features: DataFrame, train: dict[str, Any]
) -> tuple[PipelineModel, dict[str, Any]]:
    """Fit standardization, PCA and multinomial logistic regression on the training images only."""
    training = as_vectors(split_features.where(F.col("split") == "train"))
    labels = StringIndexer(inputCol=LABEL, outputCol=LABEL_INDEX, handleInvalid="keep")
    label_indexer = labels.fit(training)
    if train["use_pca"]:
        fit = fit_scaled_pca(training, train["variance_threshold"], train["max_components"])
        inputs_model, inputs_column = fit.model, COMPONENTS
        inputs = {
            "inputs": "pca",
            "components": fit.components,
            "constant_features_dropped": fit.constant_features,
            "explained_variance": [float(share) for share in fit.explained_variance],
            "train_images": fit.image_count,
        }
    else:
        inputs_model, inputs_column = fit_standardizer(training), SCALED
        inputs = {"inputs": "features", "components": None, "train_images": training.count()}
    stages: list[Any] = [label_indexer, *inputs_model.stages]
    regression = train["logistic_regression"]
    classifier = LogisticRegression(
        featuresCol=inputs_column,
        labelCol=LABEL_INDEX,
        predictionCol=PREDICTION_INDEX,
        family="multinomial",
        maxIter=regression["max_iter"],
        regParam=regression["reg_param"],
        elasticNetParam=regression["elastic_net_param"],
    ).fit(PipelineModel(stages).transform(training))
    names = IndexToString(
        inputCol=PREDICTION_INDEX, outputCol=PREDICTED_LABEL, labels=label_indexer.labels
    )
    return PipelineModel([*stages, classifier, names]), inputs


def evaluate_classifier(
    split_features: DataFrame, classifier: PipelineModel, classifier_inputs: dict[str, Any]
) -> dict[str, Any]:
    """Accuracy, macro F1 and per-class figures of the classifier on the test images."""
    test = as_vectors(split_features.where(F.col("split") == "test"))
    scored = classifier.transform(test)
    pairs = scored.groupBy(LABEL, PREDICTED_LABEL).count().collect()
    if not pairs:
        raise ValueError("No test images: the split left every image in training.")
    counts = pd.DataFrame(pairs, columns=["label", "predicted_label", "count"])
    # The probability given to the true label (0 for a label unknown to the classifier).
    true_probability = F.coalesce(
        vector_to_array(PROBABILITY)[F.col(LABEL_INDEX).cast("int")], F.lit(0.0)
    )
    confidence = scored.select(
        F.avg(-F.log(F.greatest(true_probability, F.lit(1e-15)))).alias("log_loss"),
        F.avg(true_probability).alias("mean_true_label_probability"),
    ).first()
    return {
        **classification_metrics(counts),
        "log_loss": float(confidence["log_loss"]),
        "mean_true_label_probability": float(confidence["mean_true_label_probability"]),
        "train_images": classifier_inputs["train_images"],
        "inputs": classifier_inputs["inputs"],
        "pca_components": classifier_inputs["components"],
        "pca_explained_variance": classifier_inputs.get("explained_variance"),
        "constant_features_dropped": classifier_inputs.get("constant_features_dropped"),
    }


def classification_metrics(counts: pd.DataFrame) -> dict[str, Any]:
    """Metrics from (label, predicted_label, count) rows: one row per pair that occurred."""
    classes = sorted(set(counts["label"]) | set(counts["predicted_label"]))
    confusion = (
        counts.pivot_table(
            index="label", columns="predicted_label", values="count", aggfunc="sum", fill_value=0
        )
        .reindex(index=classes, columns=classes, fill_value=0)
        .to_numpy()
    )
    true_positives = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = np.divide(
        true_positives, predicted, out=np.zeros(len(classes)), where=predicted > 0
    )
    recall = np.divide(true_positives, support, out=np.zeros(len(classes)), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(len(classes)), where=total > 0)
    has_support = support > 0
    return {
        "accuracy": float(true_positives.sum() / confusion.sum()),
        "macro_f1": float(f1[has_support].mean()),
        "test_images": int(confusion.sum()),
        "classes": int(has_support.sum()),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(classes)
        },
        "confusion_matrix": {"labels": classes, "counts": confusion.tolist()},
    }


def plot_confusion_matrix(classification_metrics: dict[str, Any]) -> Figure:
    """Row-normalised confusion matrix, classes sorted by name, readable up to hundreds of them."""
    labels = classification_metrics["confusion_matrix"]["labels"]
    counts = np.asarray(classification_metrics["confusion_matrix"]["counts"], dtype=float)
    support = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)
    size = max(6.0, 0.12 * len(labels) + 3)
    font = max(3.0, min(10.0, 500 / len(labels)))
    figure = Figure(figsize=(size, size * 0.9))
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=font)
    axes.set_yticks(range(len(labels)), labels, fontsize=font)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    if len(labels) <= 30:
        for row, column in zip(*np.nonzero(counts), strict=True):
            axes.text(
                column,
                row,
                f"{shares[row, column]:.2f}",
                ha="center",
                va="center",
                fontsize=font,
                color="white" if shares[row, column] > 0.5 else "black",
            )
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true label")
    axes.set_title(
        f"Test accuracy {classification_metrics['accuracy']:.3f}, macro F1 "
        f"{classification_metrics['macro_f1']:.3f} ({classification_metrics['test_images']} images)"
    )
    figure.tight_layout()
    return figure
