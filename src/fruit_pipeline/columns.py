"""The Spark ML contract: column names of the fitted models and how their stages are found."""

from typing import TypeVar

from pyspark.ml import PipelineModel, Transformer

# Input rows: the 1280 floats of an image's embedding as an array, and the same as an ML vector;
# its colour histogram (fruit_pipeline.colour) likewise; what a classifier takes, assembled.
FEATURES = "features"
VECTOR = "vector"
COLOUR = "colour"
COLOUR_VECTOR = "colour_vector"
DESCRIPTORS = "descriptors"
# The feature model that made a row: its weights file's SHA-256 (null: random) and its engine.
WEIGHTS_SHA256 = "weights_sha256"
ENGINE = "engine"
# The table's array column behind each vector column.
ARRAY_OF_VECTOR = {VECTOR: FEATURES, COLOUR_VECTOR: COLOUR}
# The standardization and PCA stages (fruit_pipeline.pca).
INFORMATIVE = "informative"
SCALED = "scaled"
COMPONENTS = "components"
# The classifier (train pipeline).
LABEL = "label"
LABEL_INDEX = "label_index"
PREDICTION_INDEX = "prediction_index"
PREDICTED_LABEL = "predicted_label"
RAW_PREDICTION = "rawPrediction"
# Which images train, choose and test the classifier.
SPLIT = "split"
TRAIN, VALIDATION, TEST = "train", "validation", "test"

StageType = TypeVar("StageType", bound=Transformer)


def stage(model: PipelineModel, stage_type: type[StageType]) -> StageType:
    """The one stage of a fitted pipeline that has the given type (nested pipelines included)."""
    found = [
        candidate
        for candidate in _flattened(model)
        if isinstance(candidate, stage_type) and not isinstance(candidate, PipelineModel)
    ]
    if len(found) != 1:
        raise LookupError(
            f"The model holds {len(found)} stages of type {stage_type.__name__}, not one: "
            f"{[type(candidate).__name__ for candidate in _flattened(model)]}."
        )
    return found[0]


def _flattened(model: PipelineModel) -> list[Transformer]:
    stages: list[Transformer] = []
    for candidate in model.stages:
        stages += _flattened(candidate) if isinstance(candidate, PipelineModel) else [candidate]
    return stages
