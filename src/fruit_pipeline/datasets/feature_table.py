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


# An incremental update of up to this many rows is committed from the driver with delta-rs
# (a studio frame's row is about 6 KB, a photo's with its views about 30 KB: at most some
# 300 MB); a larger one with Spark's MERGE, which costs a cold JVM's first Delta queries and a
# dozen jobs (about 10 s, docs/performance.md) but keeps the rows in the executors.
DRIVER_COMMIT_ROWS = 10_000
# The source's column that marks a path to delete.
DELETE = "_delete"


class FeatureTableDataset(AbstractDataset[FeatureTableUpdate, DataFrame]):
    """The features table (`spark.feature_table`): saving commits an update in one commit.

    Loading gives the table at `version_as_of` (None: the latest), the version in the metadata
    of its `features` column; with `missing_as_empty`, no table yet loads as an empty one. The
    first version and a full refresh are written by Spark; an update of an existing table is
    merged with delta-rs from the driver (`merge_rows`), or with Spark's MERGE when it has more
    than DRIVER_COMMIT_ROWS rows. An update that only removes rows starts no Spark session.
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
        if data.is_empty:
            version = None
        elif data.replace_all or not DeltaTable.is_deltatable(self._filepath):
            version = feature_table.commit(spark(), self._filepath, data)
        elif data.rows is None:
            version = merge_rows(self._filepath, None, data.removed)
        elif data.rows.count() <= DRIVER_COMMIT_ROWS:
            rows = feature_table.collect_rows(data.rows)
            version = merge_rows(self._filepath, rows, data.removed)
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


def merge_rows(filepath: str, rows: pd.DataFrame | None, removed: tuple[str, ...]) -> int:
    """Insert or replace the rows (`collect_rows`' frame; None: none) and delete the rows of
    the removed paths, in one commit with delta-rs; return the new version.

    Spark's MERGE of the same update costs a cold JVM's first Delta queries and a dozen small
    jobs; delta-rs rewrites the files that hold replaced or deleted rows in a second or two
    (docs/performance.md). A commit that meets another run's is made again on the newer
    version, as Spark's MERGE is: keyed on the path, it gives the same rows.
    """
    for attempt in range(1, feature_table.COMMIT_ATTEMPTS + 1):
        table = DeltaTable(filepath)
        changes = _changes(pa.schema(table.schema().to_arrow()), rows, removed)
        try:
            (
                table.merge(changes, "row.path = change.path", "change", "row")
                .when_matched_delete(f"change.{DELETE}")
                .when_matched_update_all(f"NOT change.{DELETE}", except_cols=[DELETE])
                .when_not_matched_insert_all(f"NOT change.{DELETE}", except_cols=[DELETE])
                .execute()
            )
            return table.version()
        except CommitFailedError as conflict:
            logger.warning(
                "Another run committed to the features table during this one's commit "
                "(attempt %d of %d): %s",
                attempt,
                feature_table.COMMIT_ATTEMPTS,
                conflict,
            )
            time.sleep(attempt)
    raise feature_table.ConcurrentFeaturizeRuns(
        f"Other runs kept committing to the features table at {filepath}: this run committed "
        f"nothing after {feature_table.COMMIT_ATTEMPTS} attempts. Run it again when they are "
        "done; it embeds only what is still missing."
    )


def _changes(schema: pa.Schema, rows: pd.DataFrame | None, removed: tuple[str, ...]) -> pa.Table:
    # The rows in the table's own types (timestamps come as microseconds since the epoch), then
    # one row a removed path, marked, its other columns null.
    gone = sorted(set(removed))
    written = pa.Table.from_arrays(
        [_as_type([] if rows is None else rows[field.name], field.type) for field in schema],
        schema=schema,
    )
    deleted = pa.Table.from_arrays(
        [
            pa.array(gone, field.type) if field.name == "path" else pa.nulls(len(gone), field.type)
            for field in schema
        ],
        schema=schema,
    )
    marks = pa.array([False] * written.num_rows + [True] * len(gone), pa.bool_())
    return pa.concat_tables([written, deleted]).append_column(DELETE, marks)


def _as_type(values: pd.Series | list, kind: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(kind):
        return pa.array(pd.Series(values, dtype="int64").to_numpy(), pa.int64()).cast(kind)
    return pa.array(values, kind, from_pandas=True)


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
