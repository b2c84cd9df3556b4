"""The benchmark runs end to end at a tiny size and prints its figures (no timing is asserted)."""

import re
import subprocess
import sys

import pytest

from tests.helpers import PROJECT_ROOT


def test_the_benchmark_prints_its_table_overhead_memory_and_projection(test1_images):
    result = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "benchmarks" / "featurize_benchmark.py"),
            "--source",
            str(test1_images),
            "--sizes",
            "8",
            "24",
            "--weights",
            "null",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    output = result.stdout
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
    result = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "benchmarks" / "train_benchmark.py"),
            "--project",
            str(sample_project),
            "--sizes",
            "0",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    rows = re.findall(
        r"^\s+463 \| (.+?)\s+\|\s+([\d.]+) \|\s+([\d.]+) \| (.+)$", result.stdout, re.M
    )
    assert rows, result.stdout
    assert rows[0][0].startswith("pure Java")
    assert all(float(seconds) > 0 and float(accuracy) >= 0.98 for _, seconds, accuracy, _ in rows)


@pytest.mark.slow
def test_the_feature_options_are_scored_on_validation_images(test1_images, keras_home):
    result = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "benchmarks" / "feature_options.py"),
            "--images",
            str(test1_images),
            "--cache",
            str(keras_home / "onnx"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    lines = re.findall(
        r"^\s*(base|mirror|hsv) \| .+ \| validation accuracy ([\d.]+)", result.stdout, re.M
    )
    assert [name for name, _ in lines] == ["base"] * 4 + ["mirror"] * 4 + ["hsv"] * 4
    assert all(0 <= float(accuracy) <= 1 for _, accuracy in lines)
