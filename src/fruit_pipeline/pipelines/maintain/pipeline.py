"""Wiring of the maintain pipeline."""

from kedro.pipeline import Node, Pipeline

from fruit_pipeline.pipelines.maintain.nodes import maintain_feature_table


def create_pipeline(**kwargs) -> Pipeline:
    """Features table -> compacted and vacuumed -> report."""
    return Pipeline(
        [
            Node(
                maintain_feature_table,
                ["feature_table", "params:maintain"],
                "feature_table_maintenance",
                name="maintain_feature_table",
            )
        ]
    )
