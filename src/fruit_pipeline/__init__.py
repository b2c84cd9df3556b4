"""fruit_pipeline: MobileNetV2 features of fruit images on Spark, reduced with PCA."""

__version__ = "0.1.0"
