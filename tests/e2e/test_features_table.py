"""The features table grows with the images: only new and changed files are embedded, one commit
a run, each listed file once; other weights are refused; earlier versions stay readable."""

import hashlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from fruit_pipeline.apps.tools import features_history
from fruit_pipeline.config import config_loader
from fruit_pipeline.core import feature_model
from fruit_pipeline.spark import embedding, feature_table, session
from tests.support.helpers import (
    FEATURES_TABLE,
    FRUITS_95,
    PROJECT_ROOT,
    SAMPLE,
    new_project,
    read_features,
    run,
)

pytestmark = pytest.mark.shared

SUMMARY = Path("data/08_reporting/featurize_summary.json")
REPORT = Path("data/08_reporting/variance_report.json")


def test_the_delta_jars_are_those_of_the_delta_python_package():
    packages = config_loader(PROJECT_ROOT)["spark"]["spark.jars.packages"]
    assert packages == f"io.delta:delta-spark_2.12:{importlib.metadata.version('delta-spark')}"


def copy_images(source: Path, target: Path, per_class: int) -> list[Path]:
    """The first `per_class` images of each class folder of `source`, copied under `target`."""
    copied = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (target / folder.name).mkdir(parents=True, exist_ok=True)
        for image in sorted(folder.glob("*.jpg"))[:per_class]:
            copied.append(Path(shutil.copy2(image, target / folder.name / image.name)))
    return copied


def featurize(project: Path, images: Path, **featurize_params) -> dict:
    run(project, "featurize", images_root=str(images), featurize=featurize_params)
    return json.loads((project / SUMMARY).read_text())


def table(spark, project: Path, version: int | None = None) -> pd.DataFrame:
    return read_features(spark, project, version).toPandas().set_index("path").sort_index()


def file_uri(path: Path) -> str:
    return f"file:{path}"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    if not SAMPLE.is_dir():
        pytest.skip(f"needs the Fruits-360 sample at {SAMPLE}")
    folder = tmp_path_factory.mktemp("images")
    copy_images(SAMPLE / "Training", folder, per_class=8)
    return folder


@pytest.fixture(scope="module")
def first_run(spark, images, tmp_path_factory) -> tuple[Path, dict]:
    project = new_project(tmp_path_factory.mktemp("project"))
    return project, featurize(project, images)


def test_a_first_run_embeds_every_file_into_version_0(spark, first_run, images):
    project, summary = first_run
    files = sorted(images.rglob("*.jpg"))
    assert summary["files_listed"] == summary["files_new"] == summary["featurized"] == len(files)
    assert summary["table_version"] == 0
    rows = table(spark, project)
    assert list(rows.reset_index().columns) == list(feature_table.COLUMNS)
    assert list(rows.index) == [file_uri(f) for f in files]
    # What identifies each source file is Spark's listing of it: its size and modification time.
    assert list(rows["length"]) == [f.stat().st_size for f in files]
    assert [t.timestamp() for t in rows["modificationTime"]] == pytest.approx(
        [f.stat().st_mtime for f in files], abs=1e-3
    )
    assert set(rows["weights_sha256"]) == {summary["feature_model"]["weights_sha256"]}
    assert set(rows["engine"]) == {"onnxruntime"}


def test_an_unchanged_rerun_starts_no_engine_nor_spark_and_commits_nothing(
    spark, first_run, images, monkeypatch
):
    project, _ = first_run

    def no_engine(*args, **kwargs):
        raise AssertionError("an inference engine was started with nothing to embed")

    def no_spark(*args, **kwargs):
        raise AssertionError("a Spark session was asked for with nothing to read")

    monkeypatch.setattr(embedding, "load_worker_model", no_engine)
    monkeypatch.setattr(session, "start_spark", no_spark)
    summary = featurize(project, images)
    assert summary["files_unchanged"] == summary["files_listed"]
    assert summary["featurized"] == summary["files_new"] == summary["files_changed"] == 0
    # No empty commit either: the table stays at its version.
    assert summary["table_version"] == 0
    assert feature_table.current_version(spark, str(project / FEATURES_TABLE)) == 0


@pytest.fixture(scope="module")
def grown(spark, first_run, images) -> tuple[Path, dict, dict[str, Path]]:
    """The first run's images with files added, one changed in place, two removed; featurized."""
    project, _ = first_run
    added = copy_images(SAMPLE / "Test", images / "added", per_class=2)
    lemon = sorted((images / "lemon").glob("*.jpg"))
    changed, removed = lemon[0], lemon[1:3]
    # Same path, new bytes: the photo of a mango (another size, a later modification time).
    source = sorted((images / "mango").glob("*.jpg"))[0]
    changed.write_bytes(source.read_bytes() + b"\0" * 7)
    os.utime(changed, (changed.stat().st_atime, changed.stat().st_mtime + 10))
    for path in removed:
        path.unlink()
    summary = featurize(project, images)
    return project, summary, {"changed": changed, "source": source, "added": added}


def test_added_changed_and_removed_files_make_one_merge(spark, grown, images):
    project, summary, files = grown
    assert summary["files_new"] == len(files["added"]) == 8
    assert summary["files_changed"] == 1
    assert summary["files_removed"] == 2
    assert summary["featurized"] == 9
    assert summary["table_version"] == 1
    # Nine rows come to the driver: delta-rs commits them (the history says so in its words).
    (last,) = DeltaTable(str(project / FEATURES_TABLE)).history(1)
    assert last["operation"] == "MERGE"
    assert last["clientVersion"].startswith("delta-rs.")
    assert last["operationMetrics"]["num_target_rows_inserted"] == 8
    assert last["operationMetrics"]["num_target_rows_updated"] == 1
    assert last["operationMetrics"]["num_target_rows_deleted"] == 2
    rows = table(spark, project)
    assert list(rows.index) == [file_uri(f) for f in sorted(images.rglob("*.jpg"))]


def test_a_changed_file_gets_the_features_of_its_new_bytes(spark, grown):
    project, _, files = grown
    rows = table(spark, project)
    changed, source = rows.loc[file_uri(files["changed"])], rows.loc[file_uri(files["source"])]
    assert changed["label"] == "lemon"
    assert changed["length"] == files["changed"].stat().st_size
    np.testing.assert_allclose(changed["features"], source["features"], rtol=0, atol=1e-6)
    before = table(spark, project, version=0).loc[file_uri(files["changed"])]
    assert np.abs(np.asarray(before["features"]) - np.asarray(changed["features"])).max() > 0.1


def test_unchanged_rows_are_kept_as_they_were(spark, grown):
    project, _, _ = grown
    before, after = table(spark, project, version=0), table(spark, project)
    kept = before.index.intersection(after.index).drop(file_uri(grown[2]["changed"]))
    assert len(kept) == len(before) - 3
    np.testing.assert_array_equal(
        np.stack(before.loc[kept, "features"]), np.stack(after.loc[kept, "features"])
    )


def test_time_travel_reads_an_earlier_version_and_the_report_names_it(spark, grown):
    project, summary, _ = grown
    run(project, "reduce", features_version=0)
    earlier = json.loads((project / REPORT).read_text())
    run(project, "reduce")
    latest = json.loads((project / REPORT).read_text())
    assert earlier["features_version"] == 0
    assert earlier["image_count"] == len(table(spark, project, version=0))
    assert latest["features_version"] == summary["table_version"] == 1
    assert latest["image_count"] == summary["table_rows"]


def test_a_version_the_table_does_not_have_is_refused_by_name(grown):
    project, _, _ = grown
    with pytest.raises(Exception, match=r"features_version=7, but .* has versions 0 to 1"):
        run(project, "reduce", features_version=7)


def test_maintain_compacts_the_table_and_keeps_its_history(spark, grown):
    project, _, _ = grown
    run(project, "maintain")
    report = json.loads((project / "data/08_reporting/feature_table_maintenance.json").read_text())
    assert report["data_files_after"] == 1
    if report["data_files_before"] > 1:
        assert report["files_compacted"] == report["data_files_before"]
    # Within the retention nothing is vacuumed: every version is still readable.
    assert report["files_vacuumed"] == 0
    assert report["retain_hours"] == 168
    for version in range(report["version"] + 1):
        assert len(table(spark, project, version)) > 0


def test_fruit_features_prints_the_history_latest_first(grown, capsys):
    project, _, _ = grown
    assert features_history.main(["--project", str(project)]) == 0
    lines = capsys.readouterr().out.splitlines()
    versions = [int(line.split()[0]) for line in lines]
    assert versions == sorted(versions, reverse=True)
    assert "MERGE" in lines[-2]
    assert "WRITE" in lines[-1]


def test_the_weights_checksum_is_read_once_per_version_of_the_file(tmp_path, monkeypatch):
    weights = tmp_path / "weights.h5"
    weights.write_bytes(b"first")
    reads = []
    read = feature_model._sha256
    monkeypatch.setattr(feature_model, "_sha256", lambda path: reads.append(path) or read(path))
    for _ in range(3):
        assert feature_model.weights_sha256(str(weights)) == hashlib.sha256(b"first").hexdigest()
    assert len(reads) == 1
    weights.write_bytes(b"second version")
    assert feature_model.identity(str(weights), "onnxruntime", "pad")["weights_sha256"] == (
        hashlib.sha256(b"second version").hexdigest()
    )
    assert len(reads) == 2
    with pytest.raises(FileNotFoundError, match="is not a file"):
        feature_model.weights_sha256(str(tmp_path / "missing.h5"))


def test_other_weights_are_refused_and_the_table_kept(spark, grown, images):
    project, _, _ = grown
    version = feature_table.current_version(spark, str(project / FEATURES_TABLE))
    with pytest.raises(Exception, match="full_refresh=true"):
        featurize(project, images, weights=None)
    assert feature_table.current_version(spark, str(project / FEATURES_TABLE)) == version


def test_a_full_refresh_embeds_everything_again_in_one_commit(spark, grown, images):
    project, _, _ = grown
    before = table(spark, project)
    version = feature_table.current_version(spark, str(project / FEATURES_TABLE))
    summary = featurize(project, images, full_refresh=True)
    assert summary["full_refresh"] is True
    assert summary["featurized"] == summary["files_listed"] == len(before)
    assert summary["table_version"] == version + 1
    last = feature_table.history(spark, str(project / FEATURES_TABLE), limit=1)[0]
    assert last["operation"] == "WRITE"
    after = table(spark, project)
    assert list(after.index) == list(before.index)
    np.testing.assert_allclose(
        np.stack(after["features"]), np.stack(before["features"]), rtol=0, atol=1e-6
    )


def test_a_run_that_only_removes_files_deletes_their_rows_without_spark(
    spark, grown, images, monkeypatch
):
    project, _, _ = grown
    path = str(project / FEATURES_TABLE)
    before, version = table(spark, project), feature_table.current_version(spark, path)
    removed = sorted((images / "mango").glob("*.jpg"))[-2:]
    for file in removed:
        file.unlink()

    def no_spark(*args, **kwargs):
        raise AssertionError("a Spark session was asked for to delete rows")

    monkeypatch.setattr(session, "start_spark", no_spark)
    summary = featurize(project, images)
    assert (summary["files_removed"], summary["featurized"]) == (2, 0)
    assert summary["table_version"] == version + 1
    after = table(spark, project)
    assert list(after.index) == [file_uri(f) for f in sorted(images.rglob("*.jpg"))]
    assert set(before.index) - set(after.index) == {file_uri(f) for f in removed}
    # Spark reads the version delta-rs wrote, every kept row as it was.
    assert (after.dtypes == before.dtypes).all()
    np.testing.assert_array_equal(
        np.stack(after["features"]), np.stack(before.loc[after.index, "features"])
    )


def kedro_featurize(project: Path, images: Path, log: Path) -> subprocess.Popen:
    """`kedro run --pipelines featurize` as its own process group (a JVM and Python workers)."""
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "kedro", "run", "--pipelines", "featurize"]
            + ["--params", f"images_root={images}"],
            cwd=project,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Wide enough that the log never wraps a line.
            env={**os.environ, "COLUMNS": "300"},
        )


def wait_for(process: subprocess.Popen, log: Path, condition, what: str) -> None:
    deadline = time.monotonic() + 600
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the run ended before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)


def kill(process: subprocess.Popen) -> None:
    """SIGKILL to the run and everything it started, as a lost node would stop."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def data_files(project: Path) -> int:
    return len(list((project / FEATURES_TABLE).glob("*.parquet")))


def python_workers(process: subprocess.Popen) -> bool:
    """Whether Spark's Python workers (the embedding) run in the process group."""
    workers = subprocess.run(
        ["pgrep", "-g", str(process.pid), "-f", "pyspark.daemon"], capture_output=True, check=False
    )
    return workers.returncode == 0


class CrashStart(NamedTuple):
    project: Path  # a project whose table holds the first 24 images
    images: Path  # those 24 images and 600 more
    expected: pd.DataFrame  # the table one uninterrupted run makes of all 624


@pytest.fixture(scope="module")
def crash_start(spark, tmp_path_factory) -> CrashStart:
    """Made once: the crash tests each start from a copy of its project."""
    if not FRUITS_95.is_dir():
        pytest.skip(f"needs the 95-class subset at {FRUITS_95}")
    scratch = tmp_path_factory.mktemp("crash")
    images = scratch / "images"
    copy_images(SAMPLE / "Training", images, per_class=6)
    (scratch / "project").mkdir()
    project = new_project(scratch / "project")
    featurize(project, images)
    for folder in sorted(p for p in FRUITS_95.iterdir() if p.is_dir())[:20]:
        copy_images_of(folder, images / folder.name, 30)
    (scratch / "reference").mkdir()
    reference = new_project(scratch / "reference")
    featurize(reference, images)
    return CrashStart(project, images, table(spark, reference))


@pytest.fixture
def crash_case(crash_start, tmp_path) -> tuple[Path, Path, pd.DataFrame]:
    """A copy of the project with a table of 24 images, the folder with 600 more; and the table
    one uninterrupted run makes of them all."""
    project = shutil.copytree(crash_start.project, tmp_path / "project")
    return project, crash_start.images, crash_start.expected


def copy_images_of(folder: Path, target: Path, count: int) -> None:
    target.mkdir(parents=True)
    for image in sorted(folder.glob("*.jpg"))[:count]:
        shutil.copy2(image, target / image.name)


def assert_same_table(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(actual.index) == list(expected.index)
    np.testing.assert_allclose(
        np.stack(actual["features"]), np.stack(expected["features"]), rtol=0, atol=1e-6
    )


class RunToKill(NamedTuple):
    process: subprocess.Popen
    log: Path
    table_before: pd.DataFrame
    files_before: int


def start_run_to_kill(spark, project: Path, images: Path, scratch: Path) -> RunToKill:
    """The table and its data files as they are, then a featurize run started to be killed."""
    table_before, files_before = table(spark, project), data_files(project)
    log = scratch / "killed.log"
    return RunToKill(kedro_featurize(project, images, log), log, table_before, files_before)


@pytest.mark.slow
def test_a_run_killed_while_embedding_leaves_the_table_whole_and_the_next_finishes(
    spark, crash_case, tmp_path
):
    project, images, expected = crash_case
    run = start_run_to_kill(spark, project, images, tmp_path)
    wait_for(run.process, run.log, lambda: python_workers(run.process), "the embedding started")
    time.sleep(1)
    assert data_files(project) == run.files_before, "killed too late: the commit had begun"
    kill(run.process)
    assert feature_table.current_version(spark, str(project / FEATURES_TABLE)) == 0
    assert_same_table(table(spark, project), run.table_before)
    summary = featurize(project, images)
    assert summary["files_new"] == 600
    assert summary["table_version"] == 1
    assert_same_table(table(spark, project), expected)


@pytest.mark.slow
def test_a_run_killed_while_committing_leaves_one_whole_version_and_the_next_finishes(
    spark, crash_case, tmp_path
):
    project, images, expected = crash_case
    run = start_run_to_kill(spark, project, images, tmp_path)
    # The MERGE writes its data files first, then commits them in one log entry.
    commit_began = lambda: data_files(project) > run.files_before  # noqa: E731
    wait_for(run.process, run.log, commit_began, "the commit began")
    kill(run.process)
    version = feature_table.current_version(spark, str(project / FEATURES_TABLE))
    assert version in {0, 1}
    assert_same_table(table(spark, project), run.table_before if version == 0 else expected)
    featurize(project, images)
    assert_same_table(table(spark, project), expected)


@pytest.mark.slow
def test_two_runs_at_once_lose_and_duplicate_nothing(spark, crash_case, tmp_path):
    project, images, expected = crash_case
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    processes = [kedro_featurize(project, images, log) for log in logs]
    for process in processes:
        process.wait(timeout=900)
    outcomes = [log.read_text() for log in logs]
    for process, output in zip(processes, outcomes, strict=True):
        # Each run commits (after a retry if the other committed first) or says why it did not.
        assert process.returncode == 0 or "Other runs kept committing" in output, output[-3000:]
    assert any(process.returncode == 0 for process in processes)
    assert_same_table(table(spark, project), expected)
