"""Nodes of the predict pipeline."""

from typing import Any

import numpy as np
import pandas as pd
from pyspark.ml import PipelineModel
from pyspark.ml.classification import LogisticRegressionModel
from pyspark.ml.feature import IndexToString
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fruit_pipeline.contracts import RAW_PREDICTION
from fruit_pipeline.core import feature_model
from fruit_pipeline.core.calibration import softmax
from fruit_pipeline.core.classifier_export import ExportedClassifier
from fruit_pipeline.parameters import FeaturizeSettings, PredictSettings
from fruit_pipeline.spark.imagenet_prior import prior_offsets
from fruit_pipeline.spark.ml_stages import stage
from fruit_pipeline.spark.pca import as_vectors

# Each image's ImageNet prior offsets, a label each (fruit_pipeline.core.imagenet_prior).
OFFSETS = "imagenet_prior_offsets"


def featurize_like_the_classifier(
    classifier_export: dict[str, Any], featurize: FeaturizeSettings
) -> FeaturizeSettings:
    """The featurize settings, photos framed as the classifier's were, no views (they are for
    training only); other weights refused."""
    exported = ExportedClassifier.from_document(classifier_export)
    expected = exported.feature_model["weights_sha256"]
    found = feature_model.identity(
        featurize.weights, featurize.engine, exported.framing, featurize.model_cache
    )
    if found["weights_sha256"] != expected:
        raise ValueError(
            f"featurize.weights={featurize.weights!r} with featurize.engine="
            f"{featurize.engine!r} (SHA-256 {found['weights_sha256']}) are not the weights the "
            f"classifier learnt from (SHA-256 {expected}, engine "
            f"{exported.feature_model['engine']!r}): set them back, or train the classifier on "
            "these."
        )
    no_views = featurize.augment.model_copy(update={"copies": 0})
    return featurize.model_copy(update={"framing": exported.framing, "augment": no_views})


def predict_labels(
    new_image_features: DataFrame,
    classifier: PipelineModel,
    classifier_selection: dict[str, Any],
    predict: PredictSettings,
    classifier_export: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Name the fruit of each image, how sure, and the top labels with their probabilities."""
    labels = stage(classifier, IndexToString).getLabels()
    top = min(predict.top_labels, len(labels))
    scored = classifier.transform(as_vectors(new_image_features))
    prior = None
    if classifier_export is not None:
        prior = ExportedClassifier.from_document(classifier_export).prior
    if prior is not None:
        columns = stage(classifier, LogisticRegressionModel).numClasses
        scored = scored.withColumn(OFFSETS, prior_offsets(prior, columns))
    probabilities = calibrated_probabilities(classifier_selection["temperature"], prior is not None)
    # (probability, label) pairs sorted by probability, highest first, all inside Spark.
    ranked = F.sort_array(
        F.arrays_zip(
            probabilities.alias("probability"),
            F.array(*[F.lit(label) for label in labels]).alias("label"),
        ),
        asc=False,
    )
    ranked_columns = [
        column
        for rank in range(top)
        for column in (
            ranked[rank]["label"].alias(f"label_{rank + 1}"),
            ranked[rank]["probability"].alias(f"probability_{rank + 1}"),
        )
    ]
    best = ranked[0]["probability"]
    return (
        scored.select(
            "path",
            ranked[0]["label"].alias("predicted_label"),
            best.alias("probability"),
            (best >= classifier_selection["unknown_threshold"]).alias("sure"),
            *ranked_columns,
        )
        .orderBy("path")
        .toPandas()
    )


def calibrated_probabilities(temperature: float, with_prior: bool) -> Column:
    """Each label's probability: the softmax of the classifier's margins divided by the
    temperature fitted in `train`, plus the ImageNet prior's offsets if it has one (the export's
    own answer, in the Python workers)."""

    @F.pandas_udf("array<double>")
    def calibrated(margins: pd.Series, offsets: pd.Series) -> pd.Series:
        if margins.empty:
            return pd.Series([], dtype=object)
        added = np.stack(offsets.to_numpy()) if with_prior else 0.0
        probabilities = softmax(np.stack(margins.to_numpy()), temperature, added)
        return pd.Series(list(probabilities), index=margins.index)

    offsets = F.col(OFFSETS) if with_prior else F.array().cast("array<double>")
    return calibrated(vector_to_array(RAW_PREDICTION), offsets)
