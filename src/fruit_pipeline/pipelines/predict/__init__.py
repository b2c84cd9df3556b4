"""New images to predicted fruit labels, through the same featurization and the saved classifier."""

from fruit_pipeline.pipelines.predict.pipeline import create_pipeline

__all__ = ["create_pipeline"]
