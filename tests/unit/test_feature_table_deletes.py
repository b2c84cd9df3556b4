"""An update that only removes rows is one delta-rs commit, made again when another run's commit
came first; no Spark session starts."""

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from fruit_pipeline.datasets import feature_table as feature_table_dataset
from fruit_pipeline.datasets.feature_table import FeatureTableDataset
from fruit_pipeline.spark import session
from fruit_pipeline.spark.feature_table import FeatureTableUpdate

PATHS = [f"file:/images/apple/{n}.jpg" for n in range(6)]


@pytest.fixture
def table_path(tmp_path, monkeypatch) -> str:
    def no_spark(*args, **kwargs):
        raise AssertionError("a Spark session was asked for to delete rows")

    monkeypatch.setattr(session, "start_spark", no_spark)
    path = str(tmp_path / "image_features")
    write_deltalake(path, pa.table({"path": PATHS, "length": list(range(6))}))
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
