"""Image files to MobileNetV2 features, with every rejected file and its reason."""

from fruit_pipeline.pipelines.featurize.pipeline import create_pipeline

__all__ = ["create_pipeline"]
