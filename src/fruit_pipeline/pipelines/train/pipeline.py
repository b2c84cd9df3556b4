"""Wiring of the train pipeline."""

from kedro.pipeline import Node, Pipeline

from fruit_pipeline.pipelines.train.nodes import (
    assign_split,
    evaluate_classifier,
    plot_confusion_matrix,
    train_classifier,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Features -> split -> classifier fitted on train -> metrics on test -> confusion plot."""
    return Pipeline(
        [
            Node(
                assign_split,
                ["image_features", "params:train"],
                "split_features",
                name="assign_split",
            ),
            Node(
                train_classifier,
                ["split_features", "params:train"],
                ["classifier", "classifier_inputs"],
                name="train_classifier",
            ),
            Node(
                evaluate_classifier,
                ["split_features", "classifier", "classifier_inputs"],
                "classification_metrics",
                name="evaluate_classifier",
            ),
            Node(
                plot_confusion_matrix,
                "classification_metrics",
                "confusion_matrix_plot",
                name="plot_confusion_matrix",
            ),
        ]
    )
