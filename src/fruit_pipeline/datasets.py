"""Catalog datasets kedro-datasets does not have: fitted Spark ML pipelines, the features table,
and any file dataset saved atomically."""

import logging
import uuid
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from kedro.io import AbstractDataset
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession

from fruit_pipeline import feature_table
from fruit_pipeline.feature_table import FeatureTableUpdate

logger = logging.getLogger(__name__)


class SparkMLModelDataset(AbstractDataset[PipelineModel, PipelineModel]):
    """Saves a `PipelineModel` with Spark ML's own writer and loads it back.

    The path is any URI Spark writes to: a local folder, `s3://` on EMR. The model is written
    beside the folder first and put in its place once whole, so a save that dies while Spark
    writes leaves the previous model as it was.
    """

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
        _replace_folder(filesystem, staging_path, target)

    def _exists(self) -> bool:
        filesystem, path = fsspec.core.url_to_fs(self._filepath)
        return filesystem.exists(path)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath}


def _replace_folder(filesystem: fsspec.AbstractFileSystem, staged: str, target: str) -> None:
    """Put a staged folder in the target's place.

    On a local disk, two renames: the old folder stays whole until the new one is in place. On
    an object store, which has no rename, the old files are deleted and the staged ones copied
    (s3fs's recursive move failed on the files Spark writes, so they are copied one by one).
    """
    if isinstance(filesystem, LocalFileSystem):
        if filesystem.exists(target):
            previous = f"{target.rstrip('/')}.{uuid.uuid4().hex}.previous"
            filesystem.mv(target, previous, recursive=True)
            filesystem.mv(staged, target, recursive=True)
            filesystem.rm(previous, recursive=True)
        else:
            filesystem.mv(staged, target, recursive=True)
        return
    # Spark wrote these files behind fsspec's back: forget any listing it keeps.
    filesystem.invalidate_cache()
    if filesystem.exists(target):
        filesystem.rm(target, recursive=True)
    files = filesystem.find(staged)
    filesystem.copy(files, [target + file.removeprefix(staged) for file in files])
    filesystem.rm(staged, recursive=True)


class FeatureTableDataset(AbstractDataset[FeatureTableUpdate, DataFrame]):
    """The features table (fruit_pipeline.feature_table): saving commits an update in one MERGE.

    Loading gives the table at `version_as_of` (None: the latest), the version in the metadata
    of its `features` column; with `missing_as_empty`, no table yet loads as an empty one.
    """

    def __init__(
        self,
        *,
        filepath: str,
        version_as_of: int | None = None,
        missing_as_empty: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = str(filepath)
        self._version = version_as_of
        self._missing_as_empty = missing_as_empty
        self.metadata = metadata

    def load(self) -> DataFrame:
        spark = SparkSession.builder.getOrCreate()
        try:
            return feature_table.read(spark, self._filepath, self._version)
        except FileNotFoundError:
            if self._missing_as_empty:
                return feature_table.empty(spark)
            raise

    def save(self, data: FeatureTableUpdate) -> None:
        spark = SparkSession.builder.getOrCreate()
        version = feature_table.commit(spark, self._filepath, data)
        if version is None:
            logger.info("Features table unchanged: nothing new, changed or removed.")
        else:
            logger.info("Features table at version %d (%s).", version, self._filepath)

    def _exists(self) -> bool:
        return feature_table.exists(SparkSession.builder.getOrCreate(), self._filepath)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "version": self._version}


class AtomicDataset(AbstractDataset[Any, Any]):
    """A one-file dataset (CSV, JSON, plot) saved beside its path, then renamed onto it.

    A run killed while saving leaves the previous file whole, never half of a new one: a rename
    within a folder is atomic on a local disk, and an S3 object is only ever seen whole.
    """

    def __init__(
        self, *, filepath: str, dataset: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> None:
        self._filepath = str(filepath)
        self._dataset = dataset
        self._target = self._at(self._filepath)
        self.metadata = metadata

    def _at(self, filepath: str) -> AbstractDataset:
        return AbstractDataset.from_config(filepath, {**self._dataset, "filepath": filepath})

    def load(self) -> Any:
        return self._target.load()

    def save(self, data: Any) -> None:
        folder, _, name = self._filepath.rpartition("/")
        partial = f"{folder}/.{name}.{uuid.uuid4().hex}.partial"
        filesystem, target = fsspec.core.url_to_fs(self._filepath)
        _, partial_path = fsspec.core.url_to_fs(partial)
        try:
            self._at(partial).save(data)
            filesystem.mv(partial_path, target)
        finally:
            if filesystem.exists(partial_path):
                filesystem.rm(partial_path)

    def _exists(self) -> bool:
        return self._target.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "dataset": self._dataset.get("type")}
