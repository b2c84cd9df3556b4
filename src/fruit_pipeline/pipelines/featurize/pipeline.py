"""Wiring of the featurize pipeline."""

from kedro.pipeline import Node, Pipeline

from fruit_pipeline.pipelines.featurize.nodes import (
    featurize_images,
    label_images,
    summarize_featurization,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Images -> labelled images -> features and rejects -> summary."""
    return Pipeline(
        [
            Node(
                label_images,
                ["raw_images", "params:images_root"],
                "labelled_images",
                name="label_images",
            ),
            Node(
                featurize_images,
                ["labelled_images", "params:featurize"],
                ["image_features", "image_rejects"],
                name="featurize_images",
            ),
            Node(
                summarize_featurization,
                ["raw_images", "image_features", "image_rejects", "params:featurize"],
                "featurize_summary",
                name="summarize_featurization",
            ),
        ]
    )
