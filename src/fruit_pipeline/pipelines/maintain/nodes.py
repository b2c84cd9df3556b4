"""Nodes of the maintain pipeline."""

from typing import Any

from delta.tables import DeltaTable

from fruit_pipeline.parameters import MaintainSettings
from fruit_pipeline.spark.feature_table import compact_and_vacuum


def maintain_feature_table(feature_table: DeltaTable, maintain: MaintainSettings) -> dict[str, Any]:
    """Compact the table's small files, then vacuum the files older versions no longer need."""
    return compact_and_vacuum(feature_table, maintain.retain_hours)
