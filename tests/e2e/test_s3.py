"""The emr environment on an S3 API: Spark through Hadoop's S3A connector, mapped onto `s3://`
as EMRFS serves it on EMR, against a moto server on 127.0.0.1. featurize, reduce, train and
predict run on it, the features table grows incrementally on S3, and every output is listed."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pandas as pd
import pytest
import yaml

from fruit_pipeline.config import config_loader
from tests.support.helpers import (
    PROJECT_ROOT,
    SAMPLE,
    WEIGHTS_FILE,
    hadoop_aws_package,
    moto_server,
    new_project,
    s3a_settings,
)

pytestmark = pytest.mark.shared

REGION = "eu-west-3"
BUCKET, PREFIX = "fruit-pipeline-s3-test", "fruit_pipeline"
SAMPLE_SIZE = 463  # the labelled sample split: 328 Training and 135 Test images


@pytest.fixture(scope="module")
def s3(test1_images):
    """The moto server with the bucket, the images and the weights as `fruit-deploy` lays them:
    the labelled sample split under images/, the 20 Test1 images under new_images/."""
    if not SAMPLE.is_dir():
        pytest.skip(f"needs the Fruits-360 sample at {SAMPLE}")
    with moto_server(REGION) as environment:
        client = boto3.client("s3")
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        for image in sorted(SAMPLE.rglob("*.jpg")):
            key = f"{PREFIX}/images/{image.relative_to(SAMPLE).as_posix()}"
            client.upload_file(str(image), BUCKET, key)
        for image in sorted(test1_images.rglob("*.jpg")):
            key = f"{PREFIX}/new_images/{image.parent.name}/{image.name}"
            client.upload_file(str(image), BUCKET, key)
        client.upload_file(str(WEIGHTS_FILE), BUCKET, f"{PREFIX}/models/{WEIGHTS_FILE.name}")
        yield client, environment


@pytest.fixture(scope="module")
def project(s3, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A project copy whose emr environment also says how Spark reaches the S3 API server."""
    _, aws = s3
    project = new_project(tmp_path_factory.mktemp("project"))
    spark_s3a = s3a_settings(aws["AWS_ENDPOINT_URL"], REGION)
    (project / "conf/emr/spark_s3a.yml").write_text(yaml.safe_dump(spark_s3a))
    packages = config_loader(PROJECT_ROOT)["spark"]["spark.jars.packages"]
    environment = {
        **os.environ,
        **aws,
        "FRUIT_PIPELINE_BUCKET": BUCKET,
        "FRUIT_PIPELINE_PREFIX": PREFIX,
        "FRUIT_PIPELINE_SPARK_MASTER": "local[2]",
        # EMR's own Delta Lake, and Hadoop's S3A connector in EMRFS' place.
        "FRUIT_PIPELINE_SPARK_PACKAGES": f"{packages},{hadoop_aws_package()}",
    }
    return project, environment


def kedro_run(project: Path, environment: dict[str, str], *arguments: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--env=emr", *arguments],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]


def keys(client, under: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=under)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def read_json(client, key: str) -> dict:
    return json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def first_run(s3, project):
    client, _ = s3
    kedro_run(*project)
    return client


def test_featurize_and_reduce_write_every_output_to_the_bucket(first_run):
    client = first_run
    data = f"{PREFIX}/data"
    written = keys(client, data)
    table = f"{data}/04_feature/image_features"
    assert f"{table}/_delta_log/00000000000000000000.json" in written
    assert any(key.startswith(f"{table}/part-") and key.endswith(".parquet") for key in written)
    for output in (
        "05_model_input/pca_features.csv",
        "08_reporting/featurize_summary.json",
        "08_reporting/image_rejects.csv",
        "08_reporting/variance_report.json",
        "08_reporting/cumulative_variance.png",
    ):
        assert f"{data}/{output}" in written
    assert any(key.startswith(f"{data}/06_models/feature_model_cache/") for key in written)
    # Atomic writes leave no temporary object behind.
    assert not [key for key in written if key.endswith(".partial")]
    summary = read_json(client, f"{data}/08_reporting/featurize_summary.json")
    assert summary["files_listed"] == summary["featurized"] == summary["table_rows"] == SAMPLE_SIZE
    assert summary["feature_model"]["weights"].startswith(f"s3://{BUCKET}/")
    report = read_json(client, f"{data}/08_reporting/variance_report.json")
    assert report["features_version"] == 0
    assert report["image_count"] == SAMPLE_SIZE
    body = client.get_object(Bucket=BUCKET, Key=f"{data}/05_model_input/pca_features.csv")["Body"]
    projected = pd.read_csv(body)
    assert len(projected) == SAMPLE_SIZE
    assert projected["path"].str.startswith(f"s3://{BUCKET}/{PREFIX}/images/").all()


def test_train_and_predict_write_the_model_and_their_outputs_to_the_bucket(first_run, project):
    client = first_run
    kedro_run(*project, "--pipelines", "train")
    kedro_run(*project, "--pipelines", "predict")
    data = f"{PREFIX}/data"
    written = keys(client, data)
    assert any(key.startswith(f"{data}/06_models/classifier/stages/") for key in written)
    for output in (
        "06_models/classifier_export.json",
        "08_reporting/classifier_selection.json",
        "08_reporting/classification_metrics.json",
        "08_reporting/confusion_matrix.png",
        "08_reporting/reliability.png",
        "08_reporting/new_images_summary.json",
        "08_reporting/new_image_rejects.csv",
        "07_model_output/predictions.csv",
    ):
        assert f"{data}/{output}" in written
    assert not [key for key in written if key.endswith(".partial")]
    metrics = read_json(client, f"{data}/08_reporting/classification_metrics.json")
    assert metrics["features_version"] == 0
    assert (metrics["train_images"], metrics["test_images"]) == (328, 135)
    assert metrics["accuracy"] >= 0.98
    body = client.get_object(Bucket=BUCKET, Key=f"{data}/07_model_output/predictions.csv")["Body"]
    predictions = pd.read_csv(body)
    assert len(predictions) == 20
    expected = predictions["path"].str.extract(r"/new_images/([^/]+)/")[0]
    assert (predictions["predicted_label"] == expected).mean() >= 0.9


def test_the_table_on_s3_grows_by_one_merge(first_run, project, test1_images, tmp_path):
    client = first_run
    images = f"{PREFIX}/images/Training"
    for image in sorted((test1_images / "lemon").glob("*.jpg"))[:2]:
        copy = tmp_path / f"new_{image.name}"
        shutil.copy(image, copy)
        client.upload_file(str(copy), BUCKET, f"{images}/lemon/{copy.name}")
    client.delete_object(Bucket=BUCKET, Key=keys(client, f"{images}/apple/")[0])
    kedro_run(*project, "--pipelines", "featurize")
    summary = read_json(client, f"{PREFIX}/data/08_reporting/featurize_summary.json")
    assert (summary["files_new"], summary["files_removed"], summary["featurized"]) == (2, 1, 2)
    assert summary["files_unchanged"] == SAMPLE_SIZE - 1
    assert summary["table_rows"] == SAMPLE_SIZE + 1
    assert summary["table_version"] == 1
    log = keys(client, f"{PREFIX}/data/04_feature/image_features/_delta_log/")
    assert f"{PREFIX}/data/04_feature/image_features/_delta_log/00000000000000000001.json" in log
