"""Standardization + PCA with Spark ML, shared by the reduce and train pipelines."""

import numpy as np
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import PCA, StandardScaler
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def as_vectors(image_features: DataFrame) -> DataFrame:
    """The `features` arrays as the ML vector column `vector`, other columns kept."""
    return image_features.withColumn("vector", array_to_vector("features")).drop("features")


def fit_scaled_pca(
    vectors: DataFrame, image_count: int, max_components: int
) -> tuple[PipelineModel, np.ndarray]:
    """Fit StandardScaler then PCA once, with as many components as the data can explain."""
    if image_count < 2:
        raise ValueError(
            f"PCA needs at least 2 featurized images; the data holds {image_count}. "
            "Add images (see featurize_summary.json and image_rejects.csv for what was rejected)."
        )
    feature_count = vectors.select(F.col("vector")).first()[0].size
    # n images span at most n - 1 directions once centred: more components explain nothing.
    fitted = min(max_components, feature_count, image_count - 1)
    model = Pipeline(
        stages=[
            StandardScaler(inputCol="vector", outputCol="scaled", withMean=True, withStd=True),
            PCA(k=fitted, inputCol="scaled", outputCol="components"),
        ]
    ).fit(vectors)
    return model, model.stages[-1].explainedVariance.toArray()


def choose_components(explained_variance: np.ndarray, threshold: float) -> int:
    """Smallest k whose cumulative explained variance reaches the threshold, else all of them."""
    # A tolerance so that a share summing to exactly the threshold counts as reaching it.
    reached = np.flatnonzero(np.cumsum(explained_variance) >= threshold - 1e-12)
    return int(reached[0]) + 1 if reached.size else len(explained_variance)
