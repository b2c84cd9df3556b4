"""Project pipelines."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

DEFAULT_PIPELINES = ("featurize", "reduce")


def register_pipelines() -> dict[str, Pipeline]:
    """Register every pipeline folder by name; `__default__` runs featurize then reduce."""
    pipelines = find_pipelines(raise_errors=True)
    # Kedro may discover only the pipelines a run asks for: combine those that were found.
    pipelines["__default__"] = sum(
        (pipelines[name] for name in DEFAULT_PIPELINES if name in pipelines), Pipeline([])
    )
    return pipelines
