"""MobileNetV2 features to the principal components that explain the chosen share of variance."""

from fruit_pipeline.pipelines.reduce.pipeline import create_pipeline

__all__ = ["create_pipeline"]
