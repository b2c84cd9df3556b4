"""Starts Spark only when a pipeline runs, with the active environment's `spark*.yml`."""

from types import ModuleType
from typing import Any

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl


def _spark_session() -> ModuleType:
    # Imported when a pipeline runs: the settings, and so every configuration reader
    # (fruit-serve, fruit-deploy, fruit-images), load without pyspark.
    from fruit_pipeline.spark import session as spark_session  # noqa: PLC0415

    return spark_session


class SparkHooks:
    """Keeps `kedro viz` and `kedro catalog` free of Spark; a run gets a configured session."""

    def __init__(self) -> None:
        self._spark_conf: dict[str, Any] = {}

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        self._spark_conf = dict(context.config_loader["spark"])

    @hook_impl
    def before_pipeline_run(self) -> None:
        _spark_session().start_spark(self._spark_conf)

    @hook_impl
    def after_pipeline_run(self) -> None:
        _spark_session().release_cached_data()

    @hook_impl
    def on_pipeline_error(self) -> None:
        _spark_session().release_cached_data()
