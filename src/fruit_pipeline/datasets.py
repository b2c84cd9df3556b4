"""A catalog dataset for fitted Spark ML pipelines, which kedro-datasets does not have."""

from typing import Any

import fsspec
from kedro.io import AbstractDataset
from pyspark.ml import PipelineModel


class SparkMLModelDataset(AbstractDataset[PipelineModel, PipelineModel]):
    """Saves a `PipelineModel` with Spark ML's own writer (overwriting) and loads it back.

    The path is any URI Spark writes to: a local folder, `s3://` on EMR.
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = str(filepath)
        self.metadata = metadata

    def load(self) -> PipelineModel:
        return PipelineModel.load(self._filepath)

    def save(self, data: PipelineModel) -> None:
        data.write().overwrite().save(self._filepath)

    def _exists(self) -> bool:
        filesystem, path = fsspec.core.url_to_fs(self._filepath)
        return filesystem.exists(path)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath}
