"""Housekeeping of the features table: compaction and vacuum."""

from fruit_pipeline.pipelines.maintain.pipeline import create_pipeline

__all__ = ["create_pipeline"]
