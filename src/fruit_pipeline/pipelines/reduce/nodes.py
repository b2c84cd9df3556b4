"""Nodes of the reduce pipeline."""

import logging

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pyspark.ml import PipelineModel
from pyspark.ml.feature import PCAModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruit_pipeline.contracts import COMPONENTS, FEATURES, LABEL
from fruit_pipeline.core.figures import finish_line_chart
from fruit_pipeline.parameters import ReduceSettings
from fruit_pipeline.spark.feature_table import version_of
from fruit_pipeline.spark.ml_stages import stage
from fruit_pipeline.spark.pca import as_vectors, fit_scaled_pca

logger = logging.getLogger(__name__)


def fit_pca(image_features: DataFrame, reduce: ReduceSettings) -> tuple[PipelineModel, dict]:
    """Fit the standardization and PCA once and keep the smallest k reaching the threshold."""
    threshold = reduce.variance_threshold
    # The PCA is of the embedding alone: the colour histogram is not read.
    embeddings = as_vectors(image_features.select(FEATURES))
    fit = fit_scaled_pca(embeddings, threshold, reduce.max_components)
    explained = fit.explained_variance
    k = fit.components
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
        # The version of the features table the PCA was fitted on (`--params features_version`).
        "features_version": version_of(image_features),
        "variance_threshold": threshold,
        "components": k,
        "cumulative_variance_at_k": float(cumulative[k - 1]),
        "threshold_reached": bool(cumulative[k - 1] >= threshold),
        "image_count": fit.image_count,
        "feature_count": fit.feature_count,
        "constant_features_dropped": fit.constant_features,
        "components_fitted": len(explained),
        "explained_variance": [float(value) for value in explained],
        "cumulative_explained_variance": [float(value) for value in cumulative],
    }
    return fit.model, report


def project_features(image_features: DataFrame, pca_model: PipelineModel) -> pd.DataFrame:
    """Project every image onto the k kept components: path, label, pc_1 ... pc_k."""
    k = stage(pca_model, PCAModel).getK()
    components = vector_to_array(F.col(COMPONENTS))
    return (
        pca_model.transform(as_vectors(image_features.select("path", LABEL, FEATURES)))
        .select("path", LABEL, *[components[i].alias(f"pc_{i + 1}") for i in range(k)])
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
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    title = (
        f"PCA of {variance_report['image_count']} images: {k} components explain "
        f"{variance_report['cumulative_variance_at_k']:.1%}"
    )
    labels = ("number of principal components", "cumulative explained variance")
    finish_line_chart(axes, labels, title, "lower right", y_limits=(0, 1.02))
    return figure
