"""The features table as catalog entries: a version as Spark reads it, an update to commit, and
the table's index (its files and feature models, no features) read without Spark."""

import logging
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from kedro.io import AbstractDataset
from pyspark.sql import DataFrame

from fruit_pipeline.contracts import DESCRIPTION, TABLE_ROW
from fruit_pipeline.spark import feature_table
from fruit_pipeline.spark.feature_table import FeatureTableUpdate
from fruit_pipeline.spark.session import spark

logger = logging.getLogger(__name__)


class FeatureTableDataset(AbstractDataset[FeatureTableUpdate, DataFrame]):
    """The features table (`spark.feature_table`): saving commits an update in one MERGE.

    Loading gives the table at `version_as_of` (None: the latest), the version in the metadata
    of its `features` column; with `missing_as_empty`, no table yet loads as an empty one. An
    update that only removes rows is committed with delta-rs, without Spark (`delete_rows`).
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
        try:
            return feature_table.read(spark(), self._filepath, self._version)
        except FileNotFoundError:
            if self._missing_as_empty:
                return feature_table.empty(spark())
            raise

    def save(self, data: FeatureTableUpdate) -> None:
        # An update with nothing in it, or with rows to delete only, starts no Spark session.
        if data.is_empty:
            version = None
        elif data.removes_only and DeltaTable.is_deltatable(self._filepath):
            version = delete_rows(self._filepath, data.removed)
        else:
            version = feature_table.commit(spark(), self._filepath, data)
        if version is None:
            logger.info("Features table unchanged: nothing new, changed or removed.")
        else:
            logger.info("Features table at version %d (%s).", version, self._filepath)

    def _exists(self) -> bool:
        return feature_table.exists(spark(), self._filepath)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "version": self._version}


def delete_rows(filepath: str, paths: tuple[str, ...]) -> int:
    """Delete the rows of these paths in one commit with delta-rs; return the new version.

    Spark's MERGE would start a JVM and plan a dozen jobs for what delta-rs does in a second or
    two: rewrite the files that hold those rows (docs/performance.md). A commit that meets
    another run's is made again on the newer version, as the MERGE is.
    """
    gone = pa.table({"path": pa.array(sorted(set(paths)), pa.string())})
    for attempt in range(1, feature_table.COMMIT_ATTEMPTS + 1):
        table = DeltaTable(filepath)
        try:
            table.merge(
                gone, "row.path = gone.path", source_alias="gone", target_alias="row"
            ).when_matched_delete().execute()
            return table.version()
        except CommitFailedError as conflict:
            logger.warning(
                "Another run committed to the features table during this one's delete "
                "(attempt %d of %d): %s",
                attempt,
                feature_table.COMMIT_ATTEMPTS,
                conflict,
            )
            time.sleep(attempt)
    raise feature_table.ConcurrentFeaturizeRuns(
        f"Other runs kept committing to the features table at {filepath}: this run committed "
        f"nothing after {feature_table.COMMIT_ATTEMPTS} attempts. Run it again when they are "
        "done."
    )


# The index: every column but the image descriptions (a few hundred bytes a row, not 6 KB).
INDEX_COLUMNS = tuple(column for column in TABLE_ROW if column not in DESCRIPTION)


@dataclass(frozen=True)
class FeatureTableIndex:
    """The features table's rows without their features, and the version they are of (None:
    no table yet)."""

    rows: pd.DataFrame  # INDEX_COLUMNS that the table has
    version: int | None


class FeatureTableIndexDataset(AbstractDataset[None, FeatureTableIndex]):
    """The features table's latest version as a `FeatureTableIndex`, read with delta-rs (the
    `deltalake` package): a few hundred milliseconds, no JVM. Read-only.

    With `missing_as_empty`, no table yet loads as an index of no rows; an older table that
    lacks a column of INDEX_COLUMNS loads without it.

        feature_table_state:
          type: fruit_pipeline.datasets.feature_table.FeatureTableIndexDataset
          filepath: data/04_feature/image_features
          missing_as_empty: true
    """

    def __init__(
        self,
        *,
        filepath: str,
        missing_as_empty: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = str(filepath)
        self._missing_as_empty = missing_as_empty
        self.metadata = metadata

    def load(self) -> FeatureTableIndex:
        if not DeltaTable.is_deltatable(self._filepath):
            if self._missing_as_empty:
                return FeatureTableIndex(pd.DataFrame(columns=list(INDEX_COLUMNS)), None)
            raise FileNotFoundError(
                f"No features table at {self._filepath}: run `kedro run --pipelines featurize`."
            )
        table = DeltaTable(self._filepath)
        present = set(table.schema().to_arrow().names)
        columns = [column for column in INDEX_COLUMNS if column in present]
        return FeatureTableIndex(
            table.to_pyarrow_table(columns=columns).to_pandas(), table.version()
        )

    def save(self, data: None) -> None:
        raise NotImplementedError("The index is read-only: featurize commits to the table.")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "missing_as_empty": self._missing_as_empty}
