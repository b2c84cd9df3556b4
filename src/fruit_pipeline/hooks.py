"""Starts Spark only when a run needs it, with the active environment's `spark*.yml`."""

from types import ModuleType
from typing import Any

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog


def _spark_session() -> ModuleType:
    # Imported when a pipeline runs: the settings, and so every configuration reader
    # (fruit-serve, fruit-deploy, fruit-images), load without pyspark.
    from fruit_pipeline.spark import session as spark_session  # noqa: PLC0415

    return spark_session


def _is_kedro_datasets_spark(dataset: Any) -> bool:
    return type(dataset).__module__.startswith("kedro_datasets.spark")


class SparkHooks:
    """Keeps `kedro viz` and `kedro catalog` free of Spark; a run gets a configured session
    when it first needs one, and a run that needs none starts no JVM."""

    def __init__(self) -> None:
        self._spark_conf: dict[str, Any] = {}
        self._catalog: DataCatalog | None = None

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        self._spark_conf = dict(context.config_loader["spark"])

    @hook_impl
    def after_catalog_created(self, catalog: DataCatalog) -> None:
        self._catalog = catalog

    @hook_impl
    def before_pipeline_run(self) -> None:
        _spark_session().configure(self._spark_conf)

    @hook_impl
    def before_dataset_loaded(self, dataset_name: str) -> None:
        self._start_for(dataset_name)

    @hook_impl
    def before_dataset_saved(self, dataset_name: str) -> None:
        self._start_for(dataset_name)

    @hook_impl
    def after_pipeline_run(self) -> None:
        _spark_session().release_cached_data()

    @hook_impl
    def on_pipeline_error(self) -> None:
        _spark_session().release_cached_data()

    def _start_for(self, dataset_name: str) -> None:
        # kedro-datasets' Spark datasets take whatever session is active (getOrCreate): this
        # run's must be started first. The project's own datasets start it themselves.
        if self._catalog is not None and _is_kedro_datasets_spark(self._catalog.get(dataset_name)):
            _spark_session().spark()
