"""An update of an existing table is one delta-rs commit from the driver (rows inserted,
replaced and deleted together), made again when another run's commit came first; one that only
removes rows starts no Spark session; a large one goes to Spark's MERGE."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from fruit_pipeline.contracts import TABLE_ROW
from fruit_pipeline.datasets import feature_table as feature_table_dataset
from fruit_pipeline.datasets.feature_table import FeatureTableDataset, merge_rows
from fruit_pipeline.spark import session
from fruit_pipeline.spark.feature_table import FeatureTableUpdate

PATHS = [f"file:/images/apple/{n}.jpg" for n in range(6)]
ARROW_TYPES = {
    "string": pa.string(),
    "long": pa.int64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "array<float>": pa.list_(pa.float32()),
    "array<array<float>>": pa.list_(pa.list_(pa.float32())),
}
SCHEMA = pa.schema([(column, ARROW_TYPES[kind]) for column, kind in TABLE_ROW.items()])
# 2023-11-14 and 2027-01-15, as `collect_rows` gives them: microseconds since the epoch.
BEFORE, AFTER = 1_700_000_000_000_000, 1_800_000_000_000_000


def collected(paths: list[str], modified: int, value: float) -> pd.DataFrame:
    """Rows as `collect_rows` gives them: one per path, every column of the table's row."""
    count = len(paths)
    return pd.DataFrame(
        {
            "path": paths,
            "label": ["apple"] * count,
            "length": [100] * count,
            "modificationTime": [modified] * count,
            "features": [np.full(4, value, np.float32)] * count,
            "colour": [np.zeros(2, np.float32)] * count,
            "views": [[np.full(4, value, np.float32)] * 2] * count,
            "view_colours": [[np.zeros(2, np.float32)] * 2] * count,
            "weights_sha256": ["0" * 64] * count,
            "engine": ["onnxruntime"] * count,
            "framing": ["pad"] * count,
            "augmentation": ["none"] * count,
        }
    )


@pytest.fixture
def table_path(tmp_path, monkeypatch) -> str:
    def no_spark(*args, **kwargs):
        raise AssertionError("a Spark session was asked for")

    monkeypatch.setattr(session, "start_spark", no_spark)
    path = str(tmp_path / "image_features")
    first = collected(PATHS, BEFORE, 1.0)
    first["modificationTime"] = pd.to_datetime(first["modificationTime"], unit="us", utc=True)
    write_deltalake(path, pa.Table.from_pandas(first, schema=SCHEMA, preserve_index=False))
    return path


def paths_in(table_path: str) -> list[str]:
    return sorted(DeltaTable(table_path).to_pyarrow_table(columns=["path"])["path"].to_pylist())


def removal(*paths: str) -> FeatureTableUpdate:
    return FeatureTableUpdate(rows=None, removed=paths, replace_all=False)


def test_removed_paths_leave_the_table_in_one_commit(table_path):
    # A path the table does not hold is no error: another run may have removed it first.
    FeatureTableDataset(filepath=table_path).save(removal(PATHS[1], PATHS[4], "file:/gone.jpg"))
    table = DeltaTable(table_path)
    assert table.version() == 1
    assert paths_in(table_path) == [PATHS[0], PATHS[2], PATHS[3], PATHS[5]]
    assert table.history(1)[0]["operation"] == "MERGE"


def test_a_delete_that_meets_another_runs_commit_is_made_again(table_path, monkeypatch):
    merge = DeltaTable.merge
    calls = []

    def another_run_commits_first(self, *args, **kwargs):
        # The first attempt read the table before another run committed its own delete.
        if not calls:
            DeltaTable(table_path).delete(f"path = '{PATHS[0]}'")
        calls.append(self.version())
        return merge(self, *args, **kwargs)

    monkeypatch.setattr(feature_table_dataset.DeltaTable, "merge", another_run_commits_first)
    monkeypatch.setattr(feature_table_dataset.time, "sleep", lambda seconds: None)
    FeatureTableDataset(filepath=table_path).save(removal(PATHS[0], PATHS[3]))
    assert paths_in(table_path) == [PATHS[1], PATHS[2], PATHS[4], PATHS[5]]
    assert DeltaTable(table_path).version() == 2
    # delta-rs refused the first commit (the other run removed a file it read); the second
    # attempt read the newer version.
    assert calls == [0, 1]


def test_rows_are_inserted_replaced_and_deleted_in_one_commit(table_path):
    # PATHS[2] changed (a new version of its file), two files are new, PATHS[5] is gone.
    rows = collected([PATHS[2], "file:/images/pear/0.jpg", "file:/images/pear/1.jpg"], AFTER, 2.0)
    assert merge_rows(table_path, rows, (PATHS[5],)) == 1
    table = DeltaTable(table_path)
    assert table.history(1)[0]["operationMetrics"]["num_target_rows_inserted"] == 2
    written = table.to_pandas().set_index("path").sort_index()
    assert list(written.index) == sorted(
        [*PATHS[:5], "file:/images/pear/0.jpg", "file:/images/pear/1.jpg"]
    )
    replaced = written.loc[[PATHS[2], "file:/images/pear/0.jpg"]]
    assert (replaced["modificationTime"] == pd.Timestamp(AFTER, unit="us", tz="UTC")).all()
    assert all(list(values) == [2.0] * 4 for values in replaced["features"])
    assert all([list(view) for view in views] == [[2.0] * 4] * 2 for views in replaced["views"])
    kept = written.loc[PATHS[0]]
    assert kept["modificationTime"] == pd.Timestamp(BEFORE, unit="us", tz="UTC")
    assert list(kept["features"]) == [1.0] * 4
    assert DeltaTable(table_path).schema().to_arrow().names == list(TABLE_ROW)


class CountedRows:
    """Stands for the update's Spark rows: only their number is asked for."""

    def __init__(self, count: int) -> None:
        self._count = count

    def count(self) -> int:
        return self._count


@pytest.mark.parametrize("count, committed_by", [(3, "delta-rs"), (4, "spark")])
def test_an_update_of_more_rows_than_the_driver_takes_is_sparks_merge(
    table_path, monkeypatch, count, committed_by
):
    calls = []
    monkeypatch.setattr(feature_table_dataset, "DRIVER_COMMIT_ROWS", 3)
    monkeypatch.setattr(feature_table_dataset, "spark", lambda: "session")
    monkeypatch.setattr(feature_table_dataset.feature_table, "collect_rows", lambda rows: None)
    monkeypatch.setattr(
        feature_table_dataset.feature_table, "commit", lambda *args: calls.append("spark") or 1
    )
    monkeypatch.setattr(
        feature_table_dataset, "merge_rows", lambda *args: calls.append("delta-rs") or 1
    )
    update = FeatureTableUpdate(rows=CountedRows(count), removed=(PATHS[0],), replace_all=False)
    FeatureTableDataset(filepath=table_path).save(update)
    assert calls == [committed_by]
