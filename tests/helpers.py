"""Helpers shared by the tests: where the real data is, project copies and Kedro runs."""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Real images and MobileNetV2 weights kept beside the repository (see the README's Tests section).
SHARED = Path(os.environ.get("FRUIT_SHARED_DIR", PROJECT_ROOT.parent / "shared")).resolve()
WEIGHTS_FILE = SHARED / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
TEST1 = SHARED / "data" / "fruits-360" / "Test1"
SAMPLE = SHARED / "data" / "fruits-360" / "sample"
FRUITS_95 = SHARED / "data" / "fruits-360-95"


def new_project(root: Path) -> Path:
    """A copy of the project's settings and configuration, with its own empty data folder."""
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copy(PROJECT_ROOT / ".telemetry", root / ".telemetry")
    # Every environment (base, emr) but the machine-specific conf/local.
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    # Kedro wants the source folder; the package itself is the installed one.
    (root / "src").mkdir()
    return root


def run(project: Path, pipeline: str | None = None, **runtime_params) -> None:
    """One `kedro run` of a pipeline (all by default) in this process, with runtime parameters."""
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=runtime_params) as session:
        session.run(pipeline_names=[pipeline] if pipeline else None)


def local_path(uri: str) -> Path:
    """The local path of a `file:` URI as Spark writes it."""
    return Path(unquote(urlparse(uri).path))


def hide_native_blas_lapack(folder: Path, environment: dict[str, str]) -> dict[str, str]:
    """The environment with placeholder libblas.so.3 and liblapack.so.3 first on the library path.

    netlib (Spark ML's BLAS and LAPACK) loads the system's libraries by name; empty files found
    first make that fail, so a JVM started with this environment runs netlib's pure-Java BLAS
    and LAPACK, as on a machine without them, whatever this one has installed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for library in ("libblas.so.3", "liblapack.so.3"):
        (folder / library).write_bytes(b"")
    library_path = [str(folder), *filter(None, [environment.get("LD_LIBRARY_PATH")])]
    return {**environment, "LD_LIBRARY_PATH": os.pathsep.join(library_path)}


def numpy_pca_shares(features: np.ndarray) -> np.ndarray:
    """Explained-variance shares of the standardized features, computed by numpy alone."""
    matrix = features.astype(np.float64)
    spread = matrix.std(axis=0, ddof=1)
    informative = matrix[:, spread > 0]
    standardized = (informative - informative.mean(axis=0)) / informative.std(axis=0, ddof=1)
    eigenvalues = np.linalg.eigvalsh(np.cov(standardized, rowvar=False))[::-1]
    return eigenvalues / eigenvalues.sum()


FEATURES_TABLE = Path("data/04_feature/image_features")


def read_features(spark, project: Path, version: int | None = None):
    """The features table a project's featurize runs wrote, at a version (latest: None)."""
    from fruit_pipeline import feature_table  # noqa: PLC0415

    return feature_table.read(spark, str(project / FEATURES_TABLE), version)


def free_port() -> int:
    """A TCP port nothing listens on, on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def moto_server(region: str) -> Iterator[dict[str, str]]:
    """A moto server (S3, EMR, IAM... over HTTP) on loopback, in this process' AWS environment.

    boto3 and s3fs reach it through AWS_ENDPOINT_URL; the environment is yielded for
    subprocesses and restored after.
    """
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("the moto server did not start") from None
            time.sleep(0.2)
    environment = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
    }
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        yield environment
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.terminate()
        server.wait(timeout=10)


def hadoop_aws_package() -> str:
    """Hadoop's S3A connector at the Hadoop version of pyspark's own jars (3.3.4 for Spark 3.5)."""
    import pyspark  # noqa: PLC0415

    jars = Path(pyspark.__file__).parent / "jars"
    version = next(jars.glob("hadoop-client-api-*.jar")).stem.removeprefix("hadoop-client-api-")
    # Its AWS SDK bundle comes with it, as a dependency.
    return f"org.apache.hadoop:hadoop-aws:{version}"


def s3a_settings(endpoint: str, region: str) -> dict[str, str]:
    """Spark settings that serve `s3://` with S3A against an S3 API server, as EMRFS does on EMR."""
    return {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint": endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": region,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "com.amazonaws.auth.EnvironmentVariableCredentialsProvider"
        ),
    }


def fetch_jvm_packages() -> None:
    """Resolve the JVM packages the project and its tests use into Spark's Ivy cache (~/.ivy2)."""
    from fruit_pipeline.config import config_loader  # noqa: PLC0415
    from fruit_pipeline.spark_session import start_spark  # noqa: PLC0415

    settings = dict(config_loader(PROJECT_ROOT)["spark"])
    packages = f"{settings['spark.jars.packages']},{hadoop_aws_package()}"
    start_spark({**settings, "spark.jars.packages": packages, "spark.master": "local[1]"}).stop()
