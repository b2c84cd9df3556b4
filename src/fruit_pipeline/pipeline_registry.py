"""Project pipelines."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register every pipeline folder by name; `__default__` runs featurize then reduce."""
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = pipelines["featurize"] + pipelines["reduce"]
    return pipelines
