"""Wiring of the predict pipeline: the featurize pipeline reused on new images, then the model."""

from kedro.pipeline import Node, Pipeline

from fruit_pipeline.pipelines import featurize
from fruit_pipeline.pipelines.predict.nodes import predict_labels


def create_pipeline(**kwargs) -> Pipeline:
    """New images -> features (same weights and code as featurize) -> classifier -> CSV."""
    featurize_new_images = Pipeline(
        featurize.create_pipeline(),
        namespace="predict",
        inputs={"raw_images": "new_images"},
        outputs={
            "image_features": "new_image_features",
            "image_rejects": "new_image_rejects",
            "featurize_summary": "new_images_summary",
        },
        parameters={"images_root": "new_images_root", "featurize": "featurize"},
    )
    return featurize_new_images + Pipeline(
        [
            Node(
                predict_labels,
                ["new_image_features", "classifier", "classifier_selection", "params:predict"],
                "predictions",
                name="predict_labels",
            )
        ]
    )
