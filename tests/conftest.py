"""Shared fixtures: one Spark session for the whole run, the real images and weights."""

import os
import shutil
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Real images and MobileNetV2 weights kept beside the repository (see the README's Tests section).
SHARED = Path(os.environ.get("FRUIT_SHARED_DIR", PROJECT_ROOT.parent / "shared")).resolve()
WEIGHTS_FILE = SHARED / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
TEST1 = SHARED / "data" / "fruits-360" / "Test1"

if not (WEIGHTS_FILE.is_file() and TEST1.is_dir()):
    raise RuntimeError(
        f"The tests need the real images and weights under {SHARED} (models/ and "
        "data/fruits-360/); set FRUIT_SHARED_DIR to where they are."
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
def spark(keras_home: Path):
    """The one Spark session of the test run, with the project's local settings."""
    from fruit_pipeline import engine  # noqa: PLC0415

    settings = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "spark.yml").read_text())
    settings.update({"spark.master": "local[2]", "spark.ui.enabled": False})
    session = engine.start_spark(settings)
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
