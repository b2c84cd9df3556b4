"""Shared fixtures: one Spark session for the whole run, the real images and weights."""

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support.helpers import (
    PROJECT_ROOT,
    SAMPLE,
    SHARED,
    TEST1,
    WEIGHTS_FILE,
    copy_project,
    hide_native_blas_lapack,
    new_project,
    run,
)

# Fixtures that read the real images or weights: a test using one needs `../shared` as well.
SHARED_FIXTURES = {"weights_file", "test1_images", "sample_project", "trained_sample_project"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `shared` every test that needs the real data (so `-m "not shared"` leaves it out),
    and skip it, saying what is missing, on a machine without it."""
    missing = [str(path) for path in (WEIGHTS_FILE, TEST1) if not path.exists()]
    for item in items:
        if SHARED_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.shared)
        if missing and item.get_closest_marker("shared"):
            item.add_marker(
                pytest.mark.skip(
                    reason=f"needs the real images and weights: {', '.join(missing)} not found "
                    f"(FRUIT_SHARED_DIR names another folder than {SHARED})"
                )
            )


@pytest.fixture(scope="session", autouse=True)
def keras_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Keras cache holding the ImageNet weights, so `weights: imagenet` works offline."""
    home = tmp_path_factory.mktemp("keras_home")
    (home / "models").mkdir()
    for weights in (SHARED / "models").glob("*.h5"):
        shutil.copy(weights, home / "models" / weights.name)
    # Keras reads KERAS_HOME when it is first imported, which the tests do only after this.
    os.environ["KERAS_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def spark(keras_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """The one Spark session of the test run, local settings, the JVM's pure-Java BLAS and LAPACK.

    They are what a machine without native ones runs, and the pure-Java LAPACK gave Spark ML's
    own PCA a wrong decomposition: every result of the tests is checked under them.
    """
    from fruit_pipeline.config import config_loader  # noqa: PLC0415
    from fruit_pipeline.spark import session as spark_session  # noqa: PLC0415

    settings = dict(config_loader(PROJECT_ROOT)["spark"])
    settings.update({"spark.master": "local[2]", "spark.ui.enabled": False})
    machine_environment = dict(os.environ)
    # The JVM takes the environment it starts with; subprocesses of the tests get the machine's.
    placeholders = tmp_path_factory.mktemp("no_native_blas_lapack")
    os.environ.update(hide_native_blas_lapack(placeholders, machine_environment))
    try:
        session = spark_session.start_spark(settings)
    finally:
        os.environ.clear()
        os.environ.update(machine_environment)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def weights_file() -> Path:
    """The MobileNetV2 ImageNet weights file (with its top) in Keras' format."""
    return WEIGHTS_FILE


@pytest.fixture(scope="session")
def test1_images() -> Path:
    """Twenty real Fruits-360 images, five in each of four class folders."""
    return TEST1


@pytest.fixture(scope="session")
def sample_project(spark, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project that featurized the labelled sample split (Training/ and Test/), real weights."""
    root = new_project(tmp_path_factory.mktemp("sample"))
    run(root, "featurize", images_root=str(SAMPLE), featurize={"weights": "imagenet"})
    return root


@pytest.fixture(scope="session")
def trained_sample_project(sample_project: Path) -> tuple[Path, dict]:
    """The sample project after `train`: its folder and the metrics of the test images."""
    run(sample_project, "train")
    metrics = sample_project / "data" / "08_reporting" / "classification_metrics.json"
    return sample_project, json.loads(metrics.read_text())


@pytest.fixture(scope="session")
def packaged_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project after `kedro package`: dist/ holds the wheel and conf archive."""
    from fruit_pipeline.apps.deploy.commands import build_package  # noqa: PLC0415

    project = copy_project(tmp_path_factory.mktemp("packaged") / "project")
    build_package(project)
    return project
