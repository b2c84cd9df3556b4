"""Labelled features to a fitted classifier (scaler + PCA + logistic regression) and its metrics."""

from fruit_pipeline.pipelines.train.pipeline import create_pipeline

__all__ = ["create_pipeline"]
