"""Files written by pandas, JSON and matplotlib, and the Spark ML model folder, are whole or
absent, never half-written."""

import uuid
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from kedro.io import DatasetError
from pyspark.ml import Pipeline
from pyspark.ml.feature import VectorAssembler

from fruit_pipeline.config import config_loader
from fruit_pipeline.datasets.atomic import AtomicDataset
from fruit_pipeline.datasets.folders import replace_folder
from fruit_pipeline.datasets.spark_ml_model import SparkMLModelDataset
from tests.support.helpers import PROJECT_ROOT

CSV = {"type": "pandas.CSVDataset", "save_args": {"index": False}}


class Unprintable:
    """A value that cannot be written: the CSV writer fails on it, past the first rows."""

    def __str__(self) -> str:
        raise RuntimeError("the run stops here")


def test_a_save_round_trips(tmp_path):
    dataset = AtomicDataset(filepath=str(tmp_path / "table.csv"), dataset=CSV)
    table = pd.DataFrame({"path": ["a.jpg", "b.jpg"], "pc_1": [0.5, -1.25]})
    dataset.save(table)
    pd.testing.assert_frame_equal(dataset.load(), table)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_a_save_that_fails_midway_leaves_the_previous_file_whole(tmp_path):
    target = tmp_path / "table.csv"
    dataset = AtomicDataset(filepath=str(target), dataset=CSV)
    dataset.save(pd.DataFrame({"path": ["a.jpg"], "pc_1": [0.5]}))
    previous = target.read_bytes()
    # Thousands of good rows are written before the bad one stops the writer.
    rows = [f"{i}.jpg" for i in range(5000)] + [Unprintable()]
    with pytest.raises(DatasetError, match="the run stops here"):
        dataset.save(pd.DataFrame({"path": rows, "pc_1": 1.0}))
    assert target.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_every_pandas_json_and_plot_output_of_the_catalog_is_atomic():
    catalog = config_loader(PROJECT_ROOT)["catalog"]
    file_types = {"pandas.CSVDataset", "json.JSONDataset", "matplotlib.MatplotlibDataset"}
    written = {name for name, entry in catalog.items() if entry["type"] in file_types}
    assert not written, f"not atomic: {sorted(written)}"
    atomic = [entry for entry in catalog.values() if entry["type"].endswith("AtomicDataset")]
    assert {entry["dataset"]["type"] for entry in atomic} == file_types


class DiesWhileWriting:
    """A model whose writer leaves part of a folder behind, then stops the run."""

    def write(self) -> "DiesWhileWriting":
        return self

    def save(self, path: str) -> None:
        Path(path, "metadata").mkdir(parents=True)
        raise RuntimeError("the run stops here")


def test_a_model_save_that_fails_midway_leaves_the_previous_model(spark, tmp_path):
    frame = spark.createDataFrame([(0.0, 1.0), (1.0, 3.0)], ["x", "y"])
    model = Pipeline(stages=[VectorAssembler(inputCols=["x", "y"], outputCol="v")]).fit(frame)
    dataset = SparkMLModelDataset(filepath=str(tmp_path / "classifier"))
    dataset.save(model)
    dataset.save(model)  # a second save replaces the first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier"]
    with pytest.raises(DatasetError, match="the run stops here"):
        dataset.save(DiesWhileWriting())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier"]
    loaded = dataset.load()
    assert loaded.stages[0].getInputCols() == ["x", "y"]
    assert loaded.transform(frame).count() == 2


def test_on_an_object_store_the_staged_model_replaces_every_old_file():
    # fsspec's in-memory filesystem has no rename, like S3: the object-store branch.
    store = fsspec.filesystem("memory")
    root = f"/model-replace-{uuid.uuid4().hex}"
    store.pipe({f"{root}/classifier/metadata/part-0": b"old", f"{root}/classifier/stale": b"old"})
    staged = f"{root}/classifier.run.partial"
    store.pipe({f"{staged}/metadata/part-0": b"new", f"{staged}/stages/0/data": b"new"})
    replace_folder(store, staged, f"{root}/classifier")
    assert sorted(store.find(root)) == [
        f"{root}/classifier/metadata/part-0",
        f"{root}/classifier/stages/0/data",
    ]
    assert store.cat(f"{root}/classifier/metadata/part-0") == b"new"
