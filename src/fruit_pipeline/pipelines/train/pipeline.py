"""Wiring of the train pipeline."""

from kedro.pipeline import Node, Pipeline

from fruit_pipeline.pipelines.train.nodes import (
    assign_split,
    evaluate_classifier,
    export_classifier,
    identify_feature_model,
    load_imagenet_head,
    name_fruits,
    plot_confusion_matrix,
    plot_reliability,
    select_classifier,
    train_classifier,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Fruit names -> split -> candidates chosen on validation -> refit -> metrics -> export."""
    return Pipeline(
        [
            Node(
                name_fruits,
                ["image_features", "params:fruit_names", "params:train"],
                "named_features",
                name="name_fruits",
            ),
            Node(
                assign_split,
                ["named_features", "params:train"],
                "split_features",
                name="assign_split",
            ),
            Node(
                identify_feature_model,
                ["split_features", "featurize_summary"],
                "training_feature_model",
                name="identify_feature_model",
            ),
            Node(
                load_imagenet_head,
                ["training_feature_model", "params:fruit_names", "params:train"],
                "imagenet_head",
                name="load_imagenet_head",
            ),
            Node(
                select_classifier,
                ["split_features", "params:train", "imagenet_head"],
                "classifier_selection",
                name="select_classifier",
            ),
            Node(
                train_classifier,
                ["split_features", "classifier_selection", "params:train"],
                ["classifier", "classifier_inputs"],
                name="train_classifier",
            ),
            Node(
                evaluate_classifier,
                [
                    "split_features",
                    "classifier",
                    "classifier_inputs",
                    "classifier_selection",
                    "imagenet_head",
                ],
                "classification_metrics",
                name="evaluate_classifier",
            ),
            Node(
                export_classifier,
                ["classifier", "classification_metrics", "training_feature_model", "imagenet_head"],
                "classifier_export",
                name="export_classifier",
            ),
            Node(
                plot_confusion_matrix,
                "classification_metrics",
                "confusion_matrix_plot",
                name="plot_confusion_matrix",
            ),
            Node(
                plot_reliability,
                "classification_metrics",
                "reliability_plot",
                name="plot_reliability",
            ),
        ]
    )
