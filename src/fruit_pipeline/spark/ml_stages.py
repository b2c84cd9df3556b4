"""Stages of a fitted Spark ML pipeline, found by their type, never by their position."""

from typing import TypeVar

from pyspark.ml import PipelineModel, Transformer

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
