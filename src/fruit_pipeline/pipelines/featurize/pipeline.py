"""Wiring of the featurize pipeline."""

from kedro.pipeline import Node, Pipeline

from fruit_pipeline.pipelines.featurize.nodes import (
    featurize_changes,
    label_images,
    plan_featurization,
    summarize_table_update,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Images -> labelled -> compared with the table -> new and changed embedded -> one commit."""
    return Pipeline(
        [
            Node(
                label_images,
                ["raw_images", "params:images_root"],
                "labelled_images",
                name="label_images",
            ),
            Node(
                plan_featurization,
                ["labelled_images", "feature_table_state", "params:featurize"],
                "featurization_plan",
                name="plan_featurization",
            ),
            Node(
                featurize_changes,
                ["labelled_images", "featurization_plan", "params:featurize"],
                ["image_features", "image_rejects"],
                name="featurize_changes",
            ),
            Node(
                summarize_table_update,
                [
                    "labelled_images",
                    "featurization_plan",
                    "image_features",
                    "image_rejects",
                    "params:featurize",
                ],
                "featurize_summary",
                name="summarize_table_update",
            ),
        ]
    )
