"""Helpers shared by the tests: where the real data is, project copies and Kedro runs."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from fruit_pipeline.config import config_loader
from fruit_pipeline.parameters import TrainSettings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NETWORK_TEMPLATE = PROJECT_ROOT / "deploy" / "cloudformation" / "network.yaml"
# Real images and MobileNetV2 weights kept beside the repository (see the README's Tests section).
SHARED = Path(os.environ.get("FRUIT_SHARED_DIR", PROJECT_ROOT.parent / "shared")).resolve()
WEIGHTS_FILE = SHARED / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
TEST1 = SHARED / "data" / "fruits-360" / "Test1"
SAMPLE = SHARED / "data" / "fruits-360" / "sample"
FRUITS_95 = SHARED / "data" / "fruits-360-95"
GROCERY = SHARED / "data" / "real-photos" / "grocery-train"


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


def image_slice(source: Path, dest: Path, step: int) -> Path:
    """Every `step`-th image of each class folder of `source` (by name), linked into `dest`."""
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (dest / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*.jpg"))[::step]:
            os.symlink(image, dest / folder.name / image.name)
    return dest


def copy_project(dest: Path) -> Path:
    """A copy of the project's sources and configuration, without data, builds or environments."""
    shutil.copytree(
        PROJECT_ROOT,
        dest,
        ignore=shutil.ignore_patterns(
            ".venv", ".keras", ".git", "data", "dist", "build", "*.egg-info", "__pycache__"
        ),
    )
    return dest


def configured_candidates() -> list[str]:
    """The names of the candidates in the project's own grid (conf/base), in their order."""
    train = TrainSettings.model_validate(config_loader(PROJECT_ROOT)["parameters"]["train"])
    return [candidate.name() for candidate in train.selection.candidates]


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
    from fruit_pipeline.spark import feature_table  # noqa: PLC0415

    return feature_table.read(spark, str(project / FEATURES_TABLE), version)


def free_port() -> int:
    """A TCP port nothing listens on, on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def moto_server(region: str, recording: Path | None = None) -> Iterator[dict[str, str]]:
    """A moto server (S3, EMR, IAM... over HTTP) on loopback, in this process' AWS environment.

    boto3, s3fs and delta-rs (the features table's index) reach it through AWS_ENDPOINT_URL;
    delta-rs takes a plain-HTTP endpoint only with AWS_ALLOW_HTTP. The environment is yielded
    for subprocesses and restored after. With `recording`, the server writes every request it
    receives there (moto's recorder: method, URL, headers and body, one JSON line each).
    """
    port = free_port()
    recorder = (
        {"MOTO_ENABLE_RECORDING": "true", "MOTO_RECORDER_FILEPATH": str(recording)}
        if recording
        else {}
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **recorder},
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
        "AWS_ALLOW_HTTP": "true",
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


def emr_ready_subnet(region: str, bucket: str) -> str:
    """The private subnet of the project's network template (`NETWORK_TEMPLATE`: it and its VPC
    tagged for EMR's managed policy, an S3 gateway endpoint on its route table, a KMS interface
    endpoint with private DNS), as a stack of its own in the AWS the environment points at."""
    import uuid  # noqa: PLC0415

    import boto3  # noqa: PLC0415

    cloudformation = boto3.client("cloudformation", region_name=region)
    name = f"fruit-network-{uuid.uuid4().hex[:8]}"
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=NETWORK_TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": "BucketName", "ParameterValue": bucket}],
    )
    cloudformation.get_waiter("stack_create_complete").wait(StackName=name)
    (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack["Outputs"]}
    subnet_id = outputs["SubnetId"]
    # moto's CloudFormation keeps the subnet's route table association apart from the table,
    # where EC2's calls do not see it: it is made again through EC2's own call.
    ec2 = boto3.client("ec2", region_name=region)
    associated = {"Name": "association.subnet-id", "Values": [subnet_id]}
    if not ec2.describe_route_tables(Filters=[associated])["RouteTables"]:
        (endpoint,) = vpc_endpoints(ec2, outputs["VpcId"], f"com.amazonaws.{region}.s3")
        (table,) = endpoint["RouteTableIds"]
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnet_id)
    return subnet_id


def vpc_endpoints(ec2, vpc_id: str, service: str) -> list[dict]:
    """The VPC's endpoints of one service (`com.amazonaws.<region>.s3`)."""
    return ec2.describe_vpc_endpoints(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "service-name", "Values": [service]},
        ]
    )["VpcEndpoints"]


def hadoop_aws_package() -> str:
    """Hadoop's S3A connector at the Hadoop version of pyspark's own jars (3.3.4 for Spark 3.5)."""
    import pyspark  # noqa: PLC0415

    jars = Path(pyspark.__file__).parent / "jars"
    version = next(jars.glob("hadoop-client-api-*.jar")).stem.removeprefix("hadoop-client-api-")
    # Its AWS SDK bundle comes with it, as a dependency.
    return f"org.apache.hadoop:hadoop-aws:{version}"


def s3a_settings(
    endpoint: str,
    region: str,
    credentials_provider: str = "com.amazonaws.auth.EnvironmentVariableCredentialsProvider",
) -> dict[str, str]:
    """Spark settings that serve `s3://` with S3A against an S3 API server, as EMRFS does on EMR."""
    return {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint": endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": region,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.aws.credentials.provider": credentials_provider,
    }


def fetch_jvm_packages() -> None:
    """Resolve into Spark's Ivy cache (~/.ivy2) the JVM packages of the project (Delta Lake) and
    of its tests (Hadoop's S3A; EMR's Delta Lake)."""
    from fruit_pipeline.config import config_loader  # noqa: PLC0415

    project_packages = config_loader(PROJECT_ROOT)["spark"]["spark.jars.packages"]
    # One JVM each: Ivy would keep only the newer of two Delta Lake versions asked together.
    for packages in dict.fromkeys((project_packages, EMR_DELTA_PACKAGE)):
        resolve = (
            "from pyspark.sql import SparkSession\n"
            "SparkSession.builder.master('local[1]')"
            f".config('spark.jars.packages', '{packages},{hadoop_aws_package()}')"
            ".getOrCreate().stop()"
        )
        subprocess.run([sys.executable, "-c", resolve], check=True)


# What EMR 7.13.0 runs (its release notes): Spark 3.5.6 and Delta Lake 3.3.2.
EMR_SPARK_VERSION = "3.5.6"
EMR_DELTA_PACKAGE = "io.delta:delta-spark_2.12:3.3.2"
IVY_JARS = Path.home() / ".ivy2" / "jars"


def emr_class_path() -> list[Path]:
    """The jars EMR puts on every node's class path instead of resolving packages: its Delta
    Lake and, standing in for EMRFS, Hadoop's S3A; taken from the Ivy cache that
    `fetch_jvm_packages` filled (files named `<group>_<artifact>-<version>.jar`)."""
    delta_group, delta_artifact, delta_version = EMR_DELTA_PACKAGE.split(":")
    s3a_group, s3a_artifact, s3a_version = hadoop_aws_package().split(":")
    patterns = (
        f"{delta_group}_{delta_artifact}-{delta_version}.jar",
        f"{delta_group}_delta-storage-{delta_version}.jar",
        "org.antlr_antlr4-runtime-*.jar",
        f"{s3a_group}_{s3a_artifact}-{s3a_version}.jar",
        "com.amazonaws_aws-java-sdk-bundle-*.jar",
        "org.wildfly.openssl_wildfly-openssl-*.jar",
    )
    jars = []
    for pattern in patterns:
        found = sorted(IVY_JARS.glob(pattern))
        if len(found) != 1:
            raise FileNotFoundError(
                f"{IVY_JARS} holds {len(found)} jars named {pattern}, not one: run "
                "tests.support.helpers.fetch_jvm_packages() (CI does)."
            )
        jars += found
    return jars


# The AWS CLI of the bootstrap action (EMR's nodes have their own; this one comes from PyPI).
AWS_CLI = "awscli==1.46.3"
DOWNLOADS = Path.home() / ".cache" / "fruit_pipeline_tests"


def emr_spark_release() -> Path:
    """PyPI's pyspark source release of EMR's Spark version (its jars, scripts and Python)."""
    archive = DOWNLOADS / f"pyspark-{EMR_SPARK_VERSION}.tar.gz"
    if not archive.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary=:all:"]
            + ["--dest", str(DOWNLOADS), f"pyspark=={EMR_SPARK_VERSION}"],
            check=True,
        )
    return archive


def emr_spark_home(dest: Path) -> Path:
    """A Spark home laid out as EMR's /usr/lib/spark (bin/, sbin/, jars/, python/, conf/), from
    the Spark release EMR ships, not from the pyspark the project is developed with."""
    with tarfile.open(emr_spark_release()) as archive:
        archive.extractall(dest, filter="tar")
    release = dest / f"pyspark-{EMR_SPARK_VERSION}"
    home = dest / "spark"
    (home / "python" / "lib").mkdir(parents=True)
    (home / "conf").mkdir()
    for folder in ("bin", "sbin", "jars"):
        (home / folder).symlink_to(release / "deps" / folder)
    (home / "python" / "pyspark").symlink_to(release / "pyspark")
    py4j = next((release / "lib").glob("py4j-*-src.zip"))
    shutil.copy(py4j, home / "python" / "lib" / py4j.name)
    # Executors put these two archives on their Python workers' path, as on EMR.
    shutil.make_archive(str(home / "python" / "lib" / "pyspark"), "zip", release, "pyspark")
    return home


def java_home() -> Path:
    """The JDK of the `java` on the PATH."""
    return Path(shutil.which("java")).resolve().parents[1]


@contextmanager
def standalone_spark(spark_home: Path, environment: dict[str, str], work: Path) -> Iterator[str]:
    """A Spark standalone master and one worker (2 cores) on 127.0.0.1, each its own JVM; the
    worker starts executors as further JVMs. Yields the master's URL."""
    port, master_ui = free_port(), free_port()
    url = f"spark://127.0.0.1:{port}"
    spark_class = str(spark_home / "bin" / "spark-class")
    work.mkdir(parents=True, exist_ok=True)
    commands = {
        "master": [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
        + ["--port", str(port), "--webui-port", str(master_ui)],
        "worker": [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1"]
        + ["--cores", "2", "--memory", "4g", "--webui-port", str(free_port())]
        + ["--work-dir", str(work / "executors"), url],
    }
    processes = []
    try:
        for name, command in commands.items():
            with (work / f"{name}.log").open("w") as log:
                processes.append(subprocess.Popen(command, env=environment, stdout=log, stderr=log))
            if name == "master":
                _wait_for(lambda: _alive_workers(master_ui) is not None, "the master")
        _wait_for(lambda: _alive_workers(master_ui) == 1, "the worker")
        yield url
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)


def _alive_workers(ui_port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as answer:
            return json.load(answer)["aliveworkers"]
    except OSError:
        return None


def _wait_for(condition, what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start in {seconds:.0f} s")
        time.sleep(0.5)
