"""Nodes of the reduce pipeline."""

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruit_pipeline.pca import as_vectors, choose_components, fit_scaled_pca

logger = logging.getLogger(__name__)


def fit_pca(image_features: DataFrame, reduce: dict[str, Any]) -> tuple[PipelineModel, dict]:
    """Fit StandardScaler then PCA once and choose the smallest k reaching the threshold."""
    vectors = as_vectors(image_features)
    image_count = vectors.count()
    model, explained = fit_scaled_pca(vectors, image_count, reduce["max_components"])
    threshold = reduce["variance_threshold"]
    k = choose_components(explained, threshold)
    cumulative = np.cumsum(explained)
    if cumulative[k - 1] < threshold:
        logger.warning(
            "The first %d components explain %.3f of the variance, below %.2f: keeping %d "
            "(raise reduce.max_components to reach the threshold).",
            len(explained),
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
        "feature_count": model.stages[0].mean.size,
        "components_fitted": len(explained),
        "explained_variance": [float(value) for value in explained],
        "cumulative_explained_variance": [float(value) for value in cumulative],
    }
    return model, report


def project_features(
    image_features: DataFrame, pca_model: PipelineModel, variance_report: dict
) -> pd.DataFrame:
    """Project every image onto the first k components: path, label, pc_1 ... pc_k."""
    k = variance_report["components"]
    components = vector_to_array(F.col("components"))
    return (
        pca_model.transform(as_vectors(image_features))
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
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
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
