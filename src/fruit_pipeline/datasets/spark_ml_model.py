"""A fitted Spark ML pipeline, saved with Spark ML's own writer and put in place once whole."""

import uuid
from typing import Any

import fsspec
from kedro.io import AbstractDataset
from pyspark.ml import PipelineModel

from fruit_pipeline.datasets.folders import replace_folder


class SparkMLModelDataset(AbstractDataset[PipelineModel, PipelineModel]):
    """Saves a `PipelineModel` with Spark ML's own writer and loads it back.

    The path is any URI Spark writes to: a local folder, `s3://` on EMR. The model is written
    beside the folder first and put in its place once whole, so a save that dies while Spark
    writes leaves the previous model as it was.
    """

    # Spark objects cannot be handed to another process (kedro-datasets' Spark datasets say so).
    _SINGLE_PROCESS = True

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = str(filepath)
        self.metadata = metadata

    def load(self) -> PipelineModel:
        return PipelineModel.load(self._filepath)

    def save(self, data: PipelineModel) -> None:
        filesystem, target = fsspec.core.url_to_fs(self._filepath)
        staging = f"{self._filepath.rstrip('/')}.{uuid.uuid4().hex}.partial"
        _, staging_path = fsspec.core.url_to_fs(staging)
        try:
            data.write().save(staging)
        except Exception:
            if filesystem.exists(staging_path):
                filesystem.rm(staging_path, recursive=True)
            raise
        replace_folder(filesystem, staging_path, target)

    def _exists(self) -> bool:
        filesystem, path = fsspec.core.url_to_fs(self._filepath)
        return filesystem.exists(path)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath}
