"""Wiring of the reduce pipeline."""

from kedro.pipeline import Node, Pipeline

from fruit_pipeline.pipelines.reduce.nodes import (
    fit_pca,
    plot_cumulative_variance,
    project_features,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Features -> scaler + PCA fitted once -> projected CSV, variance report and plot."""
    return Pipeline(
        [
            Node(
                fit_pca,
                ["image_features", "params:reduce"],
                ["pca_model", "variance_report"],
                name="fit_pca",
            ),
            Node(
                project_features,
                ["image_features", "pca_model"],
                "pca_features",
                name="project_features",
            ),
            Node(
                plot_cumulative_variance,
                "variance_report",
                "cumulative_variance_plot",
                name="plot_cumulative_variance",
            ),
        ]
    )
