"""The features table as a catalog entry: loading reads a version, saving commits an update."""

import logging
from typing import Any

from kedro.io import AbstractDataset
from pyspark.sql import DataFrame, SparkSession

from fruit_pipeline.spark import feature_table
from fruit_pipeline.spark.feature_table import FeatureTableUpdate

logger = logging.getLogger(__name__)


class FeatureTableDataset(AbstractDataset[FeatureTableUpdate, DataFrame]):
    """The features table (`spark.feature_table`): saving commits an update in one MERGE.

    Loading gives the table at `version_as_of` (None: the latest), the version in the metadata
    of its `features` column; with `missing_as_empty`, no table yet loads as an empty one.
    """

    # Spark objects cannot be handed to another process (kedro-datasets' Spark datasets say so).
    _SINGLE_PROCESS = True

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
