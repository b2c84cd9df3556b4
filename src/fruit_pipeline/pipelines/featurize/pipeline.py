"""Wiring of the featurize pipeline."""

from kedro.pipeline import Node, Pipeline

from fruit_pipeline.pipelines.featurize.nodes import (
    featurize_changes,
    label_listed_images,
    plan_featurization,
    summarize_table_update,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Listing -> labelled -> compared with the table's index and the last rejects -> new and
    changed embedded -> one commit -> the committed table counted. Spark starts only if there
    is an image to read."""
    return Pipeline(
        [
            Node(
                label_listed_images,
                ["raw_images", "params:images_root"],
                "labelled_images",
                name="label_images",
            ),
            Node(
                plan_featurization,
                [
                    "labelled_images",
                    "feature_table_state",
                    "previous_image_rejects",
                    "params:featurize",
                ],
                "featurization_plan",
                name="plan_featurization",
            ),
            Node(
                featurize_changes,
                ["raw_images", "featurization_plan", "params:featurize"],
                ["image_features", "image_rejects"],
                name="featurize_changes",
            ),
            Node(
                summarize_table_update,
                [
                    "featurization_plan",
                    "image_rejects",
                    "committed_feature_table",
                    "params:featurize",
                ],
                "featurize_summary",
                name="summarize_table_update",
            ),
        ]
    )
