"""reduce and train give numpy's PCA on real features, whichever LAPACK the JVM finds.

The case: the 328 training images of the sample split (17 of their 1280 features constant),
on which Spark ML's own PCA, under netlib's pure-Java LAPACK, returned a wrong decomposition.
"""

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.helpers import FEATURES_TABLE, new_project, numpy_pca_shares, read_features, run

REPORT = Path("data/08_reporting/variance_report.json")
SUMMARY = Path("data/08_reporting/featurize_summary.json")


def numpy_k(shares: np.ndarray, threshold: float) -> int:
    """The smallest number of components whose shares add up to the threshold."""
    return int(np.flatnonzero(np.cumsum(shares) >= threshold)[0]) + 1


@pytest.fixture(scope="module")
def training_features(spark, sample_project):
    """Features of the sample's Training/ images, as featurize wrote them."""
    features = read_features(spark, sample_project)
    return features.where(features.path.contains("/Training/"))


@pytest.fixture(scope="module")
def reference(training_features) -> dict:
    """numpy's PCA of the standardized training features."""
    matrix = np.stack(training_features.toPandas()["features"])
    return {
        "images": len(matrix),
        "constant": int((matrix.std(axis=0) == 0).sum()),
        "shares": numpy_pca_shares(matrix),
    }


@pytest.fixture(scope="module")
def reduce_project(training_features, tmp_path_factory) -> Path:
    """A project holding the training images' features only, after the reduce pipeline."""
    root = new_project(tmp_path_factory.mktemp("reduce_training"))
    training_features.write.format("delta").save(str(root / FEATURES_TABLE))
    run(root, "reduce")
    return root


def test_the_test_session_runs_the_pure_java_blas_and_lapack(spark):
    netlib = spark.sparkContext._jvm.dev.ludovic.netlib
    lapack = netlib.lapack.LAPACK.getInstance().getClass().getName()
    blas = netlib.blas.BLAS.getInstance().getClass().getName()
    assert lapack == "dev.ludovic.netlib.lapack.F2jLAPACK"
    assert blas in {"dev.ludovic.netlib.blas.F2jBLAS", "dev.ludovic.netlib.blas.VectorBLAS"}


def test_the_case_holds_constant_features(reference):
    assert reference["images"] == 328
    assert reference["constant"] > 0


def test_reduce_gives_numpys_explained_variance_and_k(reduce_project, reference):
    report = json.loads((reduce_project / REPORT).read_text())
    fitted = report["components_fitted"]
    assert fitted == min(400, 1280 - reference["constant"], 328 - 1)
    np.testing.assert_allclose(
        report["explained_variance"], reference["shares"][:fitted], rtol=0, atol=1e-6
    )
    assert report["components"] == numpy_k(reference["shares"], 0.8)
    assert report["constant_features_dropped"] == reference["constant"]
    assert report["image_count"] == 328


@pytest.fixture(scope="module")
def pca_trained_metrics(sample_project, tmp_path_factory) -> dict:
    """`train` on the sample with PCA inputs only: the chosen model's PCA is on all 328 images."""
    root = new_project(tmp_path_factory.mktemp("train_pca"))
    for output in (FEATURES_TABLE, SUMMARY):
        (root / output).parent.mkdir(parents=True)
        os.symlink(sample_project / output, root / output)
    candidates = [{"inputs": "pca", "colour": False, "reg_param": 0.01}]
    run(root, "train", train={"selection": {"candidates": candidates}})
    return json.loads((root / "data/08_reporting/classification_metrics.json").read_text())


def test_train_gives_numpys_explained_variance_and_k(pca_trained_metrics, reference):
    metrics = pca_trained_metrics
    assert metrics["selection"]["chosen"]["inputs"] == "pca"
    shares = metrics["pca_explained_variance"]
    np.testing.assert_allclose(shares, reference["shares"][: len(shares)], rtol=0, atol=1e-6)
    assert metrics["pca_components"] == numpy_k(reference["shares"], 0.8)
    assert metrics["constant_features_dropped"] == reference["constant"]
    assert metrics["accuracy"] >= 0.98


def native_lapack_loads() -> bool:
    try:
        ctypes.CDLL("liblapack.so.3")
    except OSError:
        return False
    return True


def test_a_jvm_with_the_machines_native_lapack_gives_the_same_pca(reduce_project, tmp_path):
    if not native_lapack_loads():
        if os.environ.get("CI") == "true":
            pytest.fail("CI installs a native LAPACK (liblapack3): it must load here.")
        pytest.skip("no native LAPACK on this machine (Debian: apt-get install liblapack3)")
    (tmp_path / "project").mkdir()
    project = new_project(tmp_path / "project")
    (project / FEATURES_TABLE).parent.mkdir(parents=True)
    os.symlink(reduce_project / FEATURES_TABLE, project / FEATURES_TABLE)
    subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--pipelines", "reduce"],
        cwd=project,
        check=True,
        timeout=600,
    )
    native = json.loads((project / REPORT).read_text())
    pure_java = json.loads((reduce_project / REPORT).read_text())
    assert native["components"] == pure_java["components"]
    np.testing.assert_allclose(
        native["explained_variance"], pure_java["explained_variance"], rtol=0, atol=1e-12
    )
