"""Nodes of the reduce pipeline."""

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import PCA, StandardScaler
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

logger = logging.getLogger(__name__)


def fit_pca(image_features: DataFrame, reduce: dict[str, Any]) -> tuple[PipelineModel, dict]:
    """Fit StandardScaler then PCA once and choose the smallest k reaching the threshold."""
    image_count = image_features.count()
    if image_count < 2:
        raise ValueError(
            f"PCA needs at least 2 featurized images; image_features holds {image_count}. "
            "Add images (see featurize_summary.json and image_rejects.csv for what was rejected)."
        )
    feature_count = image_features.select(F.size("features")).first()[0]
    # n images span at most n - 1 directions once centred: more components explain nothing.
    fitted = min(reduce["max_components"], feature_count, image_count - 1)
    model = Pipeline(
        stages=[
            StandardScaler(inputCol="vector", outputCol="scaled", withMean=True, withStd=True),
            PCA(k=fitted, inputCol="scaled", outputCol="components"),
        ]
    ).fit(_as_vectors(image_features))
    explained = model.stages[-1].explainedVariance.toArray()
    threshold = reduce["variance_threshold"]
    k = choose_components(explained, threshold)
    cumulative = np.cumsum(explained)
    if cumulative[k - 1] < threshold:
        logger.warning(
            "The first %d components explain %.3f of the variance, below %.2f: keeping %d "
            "(raise reduce.max_components to reach the threshold).",
            fitted,
            cumulative[-1],
            threshold,
            k,
        )
    report = {
        "variance_threshold": threshold,
        "components": k,
        "cumulative_variance_at_k": float(cumulative[k - 1]),
        "threshold_reached": bool(cumulative[k - 1] >= threshold),
        "image_count": image_count,
        "feature_count": feature_count,
        "components_fitted": fitted,
        "explained_variance": [float(value) for value in explained],
        "cumulative_explained_variance": [float(value) for value in cumulative],
    }
    return model, report


def choose_components(explained_variance: np.ndarray, threshold: float) -> int:
    """Smallest k whose cumulative explained variance reaches the threshold, else all of them."""
    # A tolerance so that a share summing to exactly the threshold counts as reaching it.
    reached = np.flatnonzero(np.cumsum(explained_variance) >= threshold - 1e-12)
    return int(reached[0]) + 1 if reached.size else len(explained_variance)


def project_features(
    image_features: DataFrame, pca_model: PipelineModel, variance_report: dict
) -> pd.DataFrame:
    """Project every image onto the first k components: path, label, pc_1 ... pc_k."""
    k = variance_report["components"]
    components = vector_to_array(F.col("components"))
    return (
        pca_model.transform(_as_vectors(image_features))
        .select("path", "label", *[components[i].alias(f"pc_{i + 1}") for i in range(k)])
        .orderBy("path")
        .toPandas()
    )


def plot_cumulative_variance(variance_report: dict) -> Figure:
    """Plot the cumulative explained variance with the threshold and the chosen k."""
    cumulative = variance_report["cumulative_explained_variance"]
    k = variance_report["components"]
    # A bare Figure needs no pyplot state nor display backend.
    figure = Figure(figsize=(8, 5))
    axes = figure.subplots()
    axes.plot(range(1, len(cumulative) + 1), cumulative, marker=".", label="cumulative")
    axes.axhline(
        variance_report["variance_threshold"], color="tab:red", linestyle="--", label="threshold"
    )
    axes.axvline(k, color="tab:green", linestyle=":", label=f"k = {k}")
    axes.set_xlabel("number of principal components")
    axes.set_ylabel("cumulative explained variance")
    axes.set_ylim(0, 1.02)
    axes.set_title(
        f"PCA of {variance_report['image_count']} images: {k} components explain "
        f"{variance_report['cumulative_variance_at_k']:.1%}"
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    return figure


def _as_vectors(image_features: DataFrame) -> DataFrame:
    return image_features.select("path", "label", array_to_vector("features").alias("vector"))
