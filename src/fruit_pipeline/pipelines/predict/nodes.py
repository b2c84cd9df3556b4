"""Nodes of the predict pipeline."""

from typing import Any

import pandas as pd
from pyspark.ml import PipelineModel
from pyspark.ml.feature import IndexToString
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruit_pipeline.columns import PREDICTED_LABEL, PROBABILITY, stage
from fruit_pipeline.pca import as_vectors


def predict_labels(
    new_image_features: DataFrame, classifier: PipelineModel, predict: dict[str, Any]
) -> pd.DataFrame:
    """Name the fruit of each image with its probability, and the top labels with theirs."""
    labels = stage(classifier, IndexToString).getLabels()
    top = min(predict["top_labels"], len(labels))
    scored = classifier.transform(as_vectors(new_image_features))
    # (probability, label) pairs sorted by probability, highest first, all inside Spark.
    ranked = F.sort_array(
        F.arrays_zip(
            vector_to_array(PROBABILITY).alias("probability"),
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
    return (
        scored.select(
            "path",
            PREDICTED_LABEL,
            F.array_max(vector_to_array(PROBABILITY)).alias("probability"),
            *ranked_columns,
        )
        .orderBy("path")
        .toPandas()
    )
