"""The benchmark runs end to end at a tiny size and prints its figures (no timing is asserted)."""

import re
import subprocess
import sys

import pytest

from tests.support.helpers import PROJECT_ROOT, configured_candidates


def run_benchmark(script: str, *arguments: str) -> str:
    """Run a benchmark script as its own process; its output (it must exit with 0)."""
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / script), *arguments]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=900).stdout


def test_the_benchmark_prints_its_table_overhead_memory_and_projection(test1_images, weights_file):
    # A weights file, not random weights: its ONNX model is converted once and then found in
    # the benchmark's cache by every loop and run, as in a real measurement.
    output = run_benchmark(
        "featurize_benchmark.py",
        "--source",
        str(test1_images),
        "--sizes",
        "8",
        "24",
        "--weights",
        str(weights_file),
    )
    rows = re.findall(r"^\s+(\d+) \|\s+([\d.]+) \|\s+([\d.]+) \|\s+([\d.]+) \|", output, re.M)
    assert [int(row[0]) for row in rows] == [8, 24]
    assert all(float(value) > 0 for row in rows for value in row[1:])
    assert re.search(r"ONNX conversion .*: [\d.]+ s", output)
    assert re.search(r"marginal rate -?[\d.]+ img/s = -?[\d.]+ of the onnx loop", output)
    assert "fixed overhead" in output
    assert re.search(r"peak RSS at 24 / at 8: [\d.]+", output)
    assert re.search(r"reduce at 24 images: [\d.]+ s", output)
    # Tiny sizes make the fitted rates noisy (even negative): only the shape is checked.
    assert re.search(r"projection: 90483 images on 8 cores .*: -?[\d.]+ min", output)


@pytest.mark.slow
def test_the_train_benchmark_times_train_with_the_jvms_blas(sample_project):
    # The pure-Java run, the one that needs the benchmark's own library path: the native one is
    # the plain environment every other train test runs in. A grid of one candidate given on
    # the command line, alone: the project's grid is the train tests' own.
    grid = "[{inputs: features, colour: true, reg_param: 0.01}]"
    output = run_benchmark(
        "train_benchmark.py",
        *("--project", str(sample_project), "--sizes", "0", "--blas", "pure", "--grids", grid),
    )
    rows = re.findall(r"^\s+463 \| (.+?)\s+\|\s+([\d.]+) \|\s+([\d.]+) \| (.+)$", output, re.M)
    assert len(rows) == 1, output
    ((used, seconds, accuracy, chosen),) = rows
    assert used.startswith("pure Java") and used.endswith("| grid 0")
    assert float(seconds) > 0 and float(accuracy) >= 0.98
    (candidates,) = re.findall(r"\(candidates: (.+)\)$", chosen)
    assert candidates.startswith("features + colour, reg_param 0.01 ")
    assert candidates.count("validation") == 1


@pytest.mark.slow
def test_the_feature_options_are_scored_on_validation_images(test1_images, keras_home):
    output = run_benchmark(
        "feature_options.py", "--images", str(test1_images), "--cache", str(keras_home / "onnx")
    )
    lines = re.findall(r"^\s*(base|mirror) \| (.+?) +\| validation accuracy ([\d.]+)", output, re.M)
    # The pipeline's own candidates, on each embedding option.
    grid = len(configured_candidates())
    assert [name for name, _, _ in lines] == ["base"] * grid + ["mirror"] * grid
    assert all("+ colour" in candidate for _, candidate, _ in lines)
    assert all(0 <= float(accuracy) <= 1 for _, _, accuracy in lines)


@pytest.mark.slow
def test_the_incremental_benchmark_times_each_kind_of_rerun(test1_images, keras_home):
    output = run_benchmark(
        "incremental_benchmark.py",
        "--source",
        str(test1_images),
        "--sizes",
        "16",
        "--change-share",
        "0.25",
        "--cache",
        str(keras_home / "onnx"),
    )
    pattern = r"^\s*(full|unchanged|added|removed) \|(.+)$"
    rows = {name: figures.split("|") for name, figures in re.findall(pattern, output, re.M)}
    assert list(rows) == ["full", "unchanged", "added", "removed"], output
    # Columns after the run's name: wall s, of full, target, peak MiB, then the summary's counts.
    new, changed, removed, featurized, version = (
        [int(row[column]) for row in rows.values()] for column in range(4, 9)
    )
    assert new == [16, 0, 4, 0]
    assert removed == [0, 0, 0, 4]
    assert featurized == [16, 0, 4, 0]
    assert changed == [0, 0, 0, 0]
    assert version == [0, 0, 1, 2]
    assert re.search(
        r"^a run with nothing new: [\d.]+ s \(target 8 s: (met|not met)\)$", output, re.M
    )
