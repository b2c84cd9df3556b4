"""Wiring of the predict pipeline: new images featurized like the training ones, then the model."""

from kedro.pipeline import Node, Pipeline

from fruit_pipeline.pipelines.featurize.nodes import (
    featurize_images,
    label_images,
    summarize_featurization,
)
from fruit_pipeline.pipelines.predict.nodes import featurize_like_the_classifier, predict_labels


def create_pipeline(**kwargs) -> Pipeline:
    """New images -> features (same weights and code as featurize) -> classifier -> CSV."""
    return Pipeline(
        [
            Node(
                label_images,
                ["new_images", "params:new_images_root"],
                "labelled_new_images",
                name="label_new_images",
            ),
            Node(
                featurize_like_the_classifier,
                ["classifier_export", "params:featurize"],
                "new_images_featurize",
                name="featurize_like_the_classifier",
            ),
            Node(
                featurize_images,
                ["labelled_new_images", "new_images_featurize"],
                ["new_image_features", "new_image_rejects"],
                name="featurize_new_images",
            ),
            Node(
                summarize_featurization,
                ["new_images", "new_image_features", "new_image_rejects", "new_images_featurize"],
                "new_images_summary",
                name="summarize_new_images",
            ),
            Node(
                predict_labels,
                [
                    "new_image_features",
                    "classifier",
                    "classifier_selection",
                    "params:predict",
                    "classifier_export",
                ],
                "predictions",
                name="predict_labels",
            ),
        ]
    )
