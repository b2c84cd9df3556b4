"""The features table: a Delta Lake table that only moves from one complete version to the next.

Each row is one image file: what identifies the file (`path`, Spark's `length` and
`modificationTime`), its `label`, its embedding and colour histogram, and the feature model that
made them (`weights_sha256`, `engine`). A featurize run changes the table in one commit: a MERGE
on `path` that inserts new files, replaces changed ones and deletes gone ones together, or, for a
full refresh, one overwrite. This module writes with Spark; an update small enough for the driver
is merged with delta-rs instead (`fruit_pipeline.datasets.feature_table`). A run killed before
its commit leaves the previous version as it was; files it wrote without committing are never
read and VACUUM removes them.

Why Delta Lake: atomic commits and history on a plain folder or S3 prefix, MERGE, time travel,
and EMR 7 ships it (`delta-defaults` classification). kedro-datasets' Delta datasets load a table
or overwrite and append to it; none merges, hence the catalog's own `FeatureTableDataset`
(`fruit_pipeline.datasets.feature_table`) on top of this module.
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
from delta import exceptions as delta_errors
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fruit_pipeline.contracts import FEATURES, TABLE_ROW, ddl

logger = logging.getLogger(__name__)

SCHEMA = ddl(TABLE_ROW)
COLUMNS = tuple(TABLE_ROW)
# Kept in the metadata of the `features` column of every loaded table: the version it shows.
VERSION_KEY = "features_table_version"
# A MERGE that meets another run's commit is tried again this many times (it is keyed on path:
# running it again on the newer version gives the same rows).
COMMIT_ATTEMPTS = 3
# Delta Lake's conflicts of concurrent commits (no common base class but CapturedException).
_CONFLICTS = (
    delta_errors.ConcurrentAppendException,
    delta_errors.ConcurrentDeleteDeleteException,
    delta_errors.ConcurrentDeleteReadException,
    delta_errors.ConcurrentTransactionException,
    delta_errors.ConcurrentWriteException,
    delta_errors.MetadataChangedException,
    delta_errors.ProtocolChangedException,
)


class ConcurrentFeaturizeRuns(RuntimeError):
    """Another run kept committing to the features table: this run wrote nothing."""


@dataclass(frozen=True)
class FeatureTableUpdate:
    """One featurize run's change to the table: rows to insert or replace, paths to delete."""

    rows: DataFrame | None  # COLUMNS, one row per path; None: no row to write
    removed: tuple[str, ...]  # the paths of the rows to delete
    replace_all: bool  # full refresh: the table becomes `rows`, nothing else

    @property
    def is_empty(self) -> bool:
        """Nothing to write, delete or replace: the table stays as it is."""
        return self.rows is None and not self.removed and not self.replace_all


def exists(spark: SparkSession, path: str) -> bool:
    """Whether a Delta table lives at the path."""
    return DeltaTable.isDeltaTable(spark, path)


def current_version(spark: SparkSession, path: str) -> int | None:
    """The table's latest version, None when there is no table yet."""
    if not exists(spark, path):
        return None
    return DeltaTable.forPath(spark, path).history(1).select("version").head()[0]


def read(spark: SparkSession, path: str, version: int | None = None) -> DataFrame:
    """The table at a version (latest: None), pinned to it, the version in its metadata."""
    latest = current_version(spark, path)
    if latest is None:
        raise FileNotFoundError(
            f"No features table at {path}: run `kedro run --pipelines featurize` first."
        )
    if version is not None and not 0 <= version <= latest:
        raise ValueError(
            f"features_version={version}, but the features table at {path} has versions 0 to "
            f"{latest} (`DESCRIBE HISTORY delta.`{path}`` lists them)."
        )
    pinned = latest if version is None else version
    frame = spark.read.format("delta").option("versionAsOf", pinned).load(path)
    return frame.withMetadata(FEATURES, {**frame.schema[FEATURES].metadata, VERSION_KEY: pinned})


def empty(spark: SparkSession) -> DataFrame:
    """A table with no rows (before the first featurize run)."""
    return spark.createDataFrame([], SCHEMA)


def version_of(table: DataFrame) -> int | None:
    """The version a frame read by `read` shows (None for any other frame)."""
    return table.schema[FEATURES].metadata.get(VERSION_KEY)


def commit(spark: SparkSession, path: str, update: FeatureTableUpdate) -> int | None:
    """Apply an update in one commit; return the new version, None when there was nothing to do."""
    rows = (empty(spark) if update.rows is None else update.rows).select(*COLUMNS)
    if not exists(spark, path) or update.replace_all:
        rows.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)
        return current_version(spark, path)
    if update.rows is None and not update.removed:
        return None
    deletions = spark.createDataFrame([(p,) for p in sorted(set(update.removed))], "path string")
    changes = rows.withColumn("_delete", F.lit(False)).unionByName(
        deletions.withColumn("_delete", F.lit(True)), allowMissingColumns=True
    )
    values = {column: f"change.{column}" for column in COLUMNS}
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            (
                DeltaTable.forPath(spark, path)
                .alias("row")
                .merge(changes.alias("change"), "row.path = change.path")
                .whenMatchedDelete(condition="change._delete")
                .whenMatchedUpdate(condition="NOT change._delete", set=values)
                .whenNotMatchedInsert(condition="NOT change._delete", values=values)
                .execute()
            )
            return current_version(spark, path)
        except _CONFLICTS as conflict:
            logger.warning(
                "Another run committed to the features table during this one's MERGE "
                "(attempt %d of %d): %s",
                attempt,
                COMMIT_ATTEMPTS,
                type(conflict).__name__,
            )
            time.sleep(attempt)
    raise ConcurrentFeaturizeRuns(
        f"Other runs kept committing to the features table at {path}: this run committed "
        f"nothing after {COMMIT_ATTEMPTS} attempts. Run it again when they are done; it embeds "
        "only what is still missing."
    )


def collect_rows(rows: DataFrame) -> pd.DataFrame:
    """The rows on the driver, COLUMNS in order, each timestamp as microseconds since the epoch.

    `toPandas` gives timestamps in the session's time zone without saying which: as integers
    they name the same instant whatever the zone.
    """
    exact = [
        F.unix_micros(F.col(column)).alias(column) if kind == "timestamp" else F.col(column)
        for column, kind in TABLE_ROW.items()
    ]
    return rows.select(*exact).toPandas()


def history(spark: SparkSession, path: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The table's commits, latest first: version, time, operation and its figures."""
    table = DeltaTable.forPath(spark, path)
    commits = table.history(limit).select("version", "timestamp", "operation", "operationMetrics")
    return [row.asDict() for row in commits.collect()]


def compact_and_vacuum(table: DeltaTable, retain_hours: float) -> dict[str, Any]:
    """Rewrite small files into large ones, then delete files no version in the retention uses."""
    files_before = table.detail().select("numFiles").head()[0]
    compaction = table.optimize().executeCompaction().select("metrics").head()[0]
    table.vacuum(retain_hours)
    # VACUUM records itself in the history (VACUUM START, VACUUM END): its figures are there.
    vacuum = table.history(1).select("operation", "operationMetrics", "version").head()
    return {
        "data_files_before": files_before,
        "data_files_after": table.detail().select("numFiles").head()[0],
        "files_compacted": compaction["numFilesRemoved"],
        "files_written": compaction["numFilesAdded"],
        "files_vacuumed": int(vacuum["operationMetrics"].get("numDeletedFiles", 0))
        if vacuum["operation"] == "VACUUM END"
        else 0,
        "retain_hours": retain_hours,
        "version": vacuum["version"],
    }
