"""Starts Spark only when a pipeline runs, with the active environment's `spark*.yml`."""

from typing import Any

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl

from fruit_pipeline import spark_session


class SparkHooks:
    """Keeps `kedro viz` and `kedro catalog` free of Spark; a run gets a configured session."""

    def __init__(self) -> None:
        self._spark_conf: dict[str, Any] = {}

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        self._spark_conf = dict(context.config_loader["spark"])

    @hook_impl
    def before_pipeline_run(self) -> None:
        spark_session.start_spark(self._spark_conf)

    @hook_impl
    def after_pipeline_run(self) -> None:
        spark_session.release_cached_data()

    @hook_impl
    def on_pipeline_error(self) -> None:
        spark_session.release_cached_data()
