"""The EMR path as the cluster runs it, on this machine: `fruit-deploy` creates the account's stack,
uploads the images and the package (with its wheelhouse) to an S3 API server (moto on 127.0.0.1),
and asks for a cluster and three steps (featurize + reduce, train, predict). Then a node plays
them: the bootstrap action the cluster request names, with its arguments, installs from the bucket
with no package index; each step's own command runs under `env -i` (PATH, HOME, JAVA_HOME: what a
node has) against a Spark standalone master and worker (separate JVMs, as YARN's executors are),
with the Spark and Delta Lake releases of EMR 7.13.0, Spark reaching the bucket through S3A on
`s3://`."""

import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import boto3
import pandas as pd
import pytest

from fruit_pipeline.apps.deploy.commands import Deployment, main
from fruit_pipeline.apps.deploy.settings import load_settings
from fruit_pipeline.core import feature_model
from tests.support.helpers import (
    AWS_CLI,
    EMR_SPARK_VERSION,
    PROJECT_ROOT,
    SAMPLE,
    TEST1,
    WEIGHTS_FILE,
    emr_class_path,
    emr_ready_subnet,
    emr_spark_home,
    java_home,
    moto_server,
    s3a_settings,
    standalone_spark,
)
from tests.support.permissions import (
    Resources,
    denied,
    iam_requests,
    recorded_requests,
    signed_as,
    stack_policies,
    statement_actions,
    without_statement,
)

pytestmark = [pytest.mark.slow, pytest.mark.shared]


class StepRun(NamedTuple):
    deployment: Deployment
    outputs: Path  # what `fruit-deploy fetch` downloaded after the three steps
    written: list[str]  # every key under the data root after the three steps
    rerun: dict  # the featurize summary of the first step run again on changed images
    applications: list[list[dict]]  # the event log of each step's Spark application
    driver_logs: list[str]
    executor_logs: list[str]


REGION = "eu-west-3"
BUCKET = "fruit-pipeline-node-test"
DATA = "fruit_pipeline/data"
SAMPLE_SIZE = 463  # the labelled sample split: 328 Training and 135 Test images
# The access keys that sign each principal's requests: the stack's administrator, the operator
# (fruit-deploy) and the cluster's nodes (the instance profile). The harness' own calls sign
# with the server's default key and are not evaluated.
ADMINISTRATOR, OPERATOR, NODE = "administrator", "operator", "cluster-node"
# The node's marker in EMR's own Java options, which the project's settings must not replace.
NODE_JAVA_OPTIONS = "-Dfruit.node.defaults=kept -XX:OnOutOfMemoryError='kill -9 %p'"


def node_variables(node: Path) -> dict[str, str]:
    """What a node's environment has: PATH, HOME and JAVA_HOME."""
    return {
        "PATH": f"{node / 'bin'}:/usr/bin:/bin",
        "HOME": str(node / "home"),
        "JAVA_HOME": str(java_home()),
    }


def node_environment(node: Path, **extra: str) -> list[str]:
    """`env -i` with only the node's variables (and what a test adds)."""
    variables = {**node_variables(node), **extra}
    return ["env", "-i", *(f"{name}={value}" for name, value in variables.items())]


@pytest.fixture(scope="module")
def operator(packaged_project, tmp_path_factory):
    """What the operator does from a laptop, against the S3, EMR and CloudFormation APIs; an
    administrator creates the stack first. The server records every request."""
    if not (TEST1.is_dir() and SAMPLE.is_dir()):
        pytest.skip(f"needs the Fruits-360 images at {TEST1} and {SAMPLE}")
    project = packaged_project
    recording = tmp_path_factory.mktemp("aws") / "requests.jsonl"
    with moto_server(REGION, recording) as aws:
        os.environ["FRUIT_PIPELINE_BUCKET"] = BUCKET
        try:
            dist = project / "dist"
            arguments = ["--project", str(project)]
            with signed_as(ADMINISTRATOR):
                assert main([*arguments, "apply-stack"]) == 0
            settings = load_settings(project / "conf")
            settings = replace(settings, subnet_id=emr_ready_subnet(REGION, settings.bucket))
            with signed_as(OPERATOR):
                assert main([*arguments, "upload-images", str(SAMPLE)]) == 0
                assert main([*arguments, "upload-images", "--new", str(TEST1)]) == 0
                assert (
                    main(
                        [*arguments, "package", "--dist", str(dist), "--weights", str(WEIGHTS_FILE)]
                    )
                    == 0
                )
                deployment = Deployment(settings)
            cluster_id = deployment.create_cluster("node-test", wait=False)
            for pipeline in (None, "train", "predict"):
                deployment.run(cluster_id, pipeline, None, wait=False)
            yield deployment, cluster_id, aws, recording
        finally:
            del os.environ["FRUIT_PIPELINE_BUCKET"]


@pytest.fixture(scope="module")
def node(operator, tmp_path_factory):
    """A primary node: EMR's Spark home and configuration (from the cluster's request), the
    instance profile's credentials, the AWS CLI; then the bootstrap action, run as EMR runs it."""
    deployment, cluster_id, aws, _ = operator
    emr = boto3.client("emr")
    root = tmp_path_factory.mktemp("node")
    (root / "bin").mkdir()
    (root / "home" / ".aws").mkdir(parents=True)
    # The instance profile's credentials and the S3 API's address, for the AWS CLI and boto3.
    (root / "home" / ".aws" / "config").write_text(
        f"[default]\nregion = {REGION}\nendpoint_url = {aws['AWS_ENDPOINT_URL']}\n"
    )
    (root / "home" / ".aws" / "credentials").write_text(
        f"[default]\naws_access_key_id = {NODE}\naws_secret_access_key = testing\n"
    )
    subprocess.run(["python3.11", "-m", "venv", str(root / "aws-cli")], check=True)
    subprocess.run([str(root / "aws-cli" / "bin" / "pip"), "install", "-q", AWS_CLI], check=True)
    (root / "bin" / "aws").symlink_to(root / "aws-cli" / "bin" / "aws")
    (root / "instance.json").write_text('{"isMaster": true}')

    spark_home = emr_spark_home(root)
    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    exports = next(
        inner["Properties"]
        for outer in cluster["Configurations"]
        if outer["Classification"] == "spark-env"
        for inner in outer["Configurations"]
        if inner["Classification"] == "export"
    )
    action = emr.list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"][0]
    script = root / "bootstrap.sh"
    boto3.client("s3").download_file(
        BUCKET, action["ScriptPath"].removeprefix(f"s3://{BUCKET}/"), str(script)
    )
    node_home = Path(action["Args"][1])
    # The node's home for the project is /opt/fruit_pipeline on EMR; here, a folder of the test.
    assert node_home == Path(deployment.settings.node_home) == Path("/opt/fruit_pipeline")
    local_home = root / node_home.relative_to("/")
    # What EMR writes from the spark-env classification, the node's home moved with the test's.
    (spark_home / "conf" / "spark-env.sh").write_text(
        "".join(
            f"export {name}={value.replace(str(node_home), str(local_home))}\n"
            for name, value in exports.items()
        )
    )
    command = node_environment(
        root,
        FRUIT_PIPELINE_SPARK_HOME=str(spark_home),
        FRUIT_PIPELINE_INSTANCE_INFO=str(root / "instance.json"),
    ) + ["bash", str(script), action["Args"][0], str(local_home)]
    bootstrap = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert bootstrap.returncode == 0, bootstrap.stdout[-3000:] + bootstrap.stderr[-3000:]
    return root, spark_home, local_home, command, bootstrap.stdout


def test_the_package_is_built_and_uploaded_with_the_bootstrap_and_weights(
    operator, packaged_project
):
    # The operator's own `package` (with the weights) above: one wheelhouse for this module.
    settings = operator[0].settings
    with tarfile.open(packaged_project / "dist" / "conf-fruit_pipeline.tar.gz") as archive:
        names = archive.getnames()
    assert any(name.endswith("emr/spark.yml") for name in names)
    assert not any("/local/" in name and name.endswith(".yml") for name in names)
    keys = set(bucket_keys(settings.prefix))
    deploy = f"{settings.prefix}/deploy"
    wheelhouse = {
        key.removeprefix(f"{deploy}/wheelhouse/") for key in keys if "/wheelhouse/" in key
    }
    # The nodes' wheels: CPython 3.11 on x86_64 Linux, source-only releases built into wheels;
    # never pyspark (EMR's own serves) nor the keras extra (the weights come converted), nor
    # kedro-viz (a laptop's).
    assert any(name.startswith("onnxruntime-1.") and "cp311" in name for name in wheelhouse)
    assert {"hdfs-2.7.3-py3-none-any.whl", "delta_spark-3.3.2-py3-none-any.whl"} <= wheelhouse
    assert "fruit_pipeline-0.1.0-py3-none-any.whl" in wheelhouse
    unwanted = ("pyspark", "tensorflow", "keras", "tf2onnx", "kedro_viz")
    assert not [name for name in wheelhouse if name.startswith(unwanted)]
    # The weights' ONNX model, in the model cache the cluster's featurize reads.
    cache = settings.key(settings.model_cache)
    assert cache == f"{settings.prefix}/data/06_models/feature_model_cache"
    checksum = feature_model.weights_sha256(str(WEIGHTS_FILE))
    (converted,) = (
        key
        for key in keys
        if feature_model.is_conversion_of(key.removeprefix(f"{cache}/"), checksum)
    )
    assert converted.startswith(f"{cache}/")
    assert boto3.client("s3").head_object(Bucket=BUCKET, Key=converted)["ContentLength"] > 1e6
    assert all(name.endswith(".whl") for name in wheelhouse)
    assert {
        f"{deploy}/fruit_pipeline-0.1.0-py3-none-any.whl",
        f"{deploy}/staged.env",
        f"{deploy}/conf-fruit_pipeline.tar.gz",
        f"{deploy}/constraints.txt",
        f"{deploy}/pyproject.toml",
        f"{deploy}/bootstrap.sh",
        f"{deploy}/models/{WEIGHTS_FILE.name}",
        f"{settings.prefix}/models/{WEIGHTS_FILE.name}",
    } <= keys
    # The manifest the bootstrap action reads: each staged file's name, the wheel's its own.
    manifest = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"{deploy}/staged.env")
    staged = dict(line.split("=", 1) for line in manifest["Body"].read().decode().splitlines())
    assert staged["wheel"] == "fruit_pipeline-0.1.0-py3-none-any.whl"
    for role in ("wheel", "constraints", "conf_archive", "pyproject"):
        assert f"{deploy}/{staged[role]}" in keys
    assert any(key.startswith(f"{deploy}/{staged['wheelhouse']}/") for key in keys)
    assert f"{deploy}/{staged['models']}/{WEIGHTS_FILE.name}" in keys


def test_the_bootstrap_installs_from_the_bucket_with_no_index(node):
    _, _, home, command, log = node
    assert "done" in log.splitlines()[-1]
    python = home / "venv" / "bin" / "python"
    versions = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, fruit_pipeline, onnxruntime, numpy; "
            "print(numpy.__version__, m.version('delta-spark'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert versions.stdout.split() == ["2.4.6", "3.3.2"]
    # EMR's own pyspark serves: none in the virtual environment.
    assert not list((home / "venv" / "lib").glob("python3.11/site-packages/pyspark"))
    assert (home / "keras" / "models" / WEIGHTS_FILE.name).is_file()
    assert (home / "conf" / "emr" / "spark.yml").is_file()
    # Everyone may read and run it: YARN's containers run as another user.
    assert python.resolve().stat().st_mode & 0o005 == 0o005
    assert (home / "venv").stat().st_mode & 0o005 == 0o005
    # No TensorFlow, even on the primary: the featurize driver reads the model `package`
    # converted.
    site_packages = home / "venv" / "lib" / "python3.11" / "site-packages"
    assert not [
        name for name in ("tensorflow", "keras", "tf2onnx") if (site_packages / name).exists()
    ]
    # The staged wheelhouse does not stay on the root volume.
    assert not (home / "staging" / "wheelhouse").exists()
    # A second run (a node rebooted, an action retried) changes nothing and succeeds.
    again = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not (home / "staging" / "wheelhouse").exists()


@pytest.fixture(scope="module")
def step_run(operator, node, test1_images, tmp_path_factory):
    """The step's command, exactly as the cluster holds it, on a standalone Spark cluster."""
    deployment, cluster_id, aws, _ = operator
    root, spark_home, home, _, _ = node
    work = tmp_path_factory.mktemp("standalone")
    events = work / "events"
    events.mkdir()
    class_path = ":".join(str(jar) for jar in emr_class_path())
    defaults = {
        # EMR's spark-defaults.conf: its master, Java options, event log and Delta Lake.
        "spark.driver.extraJavaOptions": NODE_JAVA_OPTIONS,
        "spark.executor.extraJavaOptions": NODE_JAVA_OPTIONS,
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": f"file://{events}",
        # Jars on the class path of every JVM, as EMR's own are: nothing resolved or shipped.
        "spark.driver.extraClassPath": class_path,
        "spark.executor.extraClassPath": class_path,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        # EMRFS's place: S3A, with the credentials the instance profile stands for.
        **s3a_settings(
            aws["AWS_ENDPOINT_URL"],
            REGION,
            credentials_provider="org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        ),
        "spark.hadoop.fs.s3a.access.key": NODE,
        "spark.hadoop.fs.s3a.secret.key": aws["AWS_SECRET_ACCESS_KEY"],
    }
    daemons = {**node_variables(root), "SPARK_HOME": str(spark_home)}
    with standalone_spark(spark_home, daemons, work) as master:
        defaults["spark.master"] = master
        (spark_home / "conf" / "spark-defaults.conf").write_text(
            "".join(f"{key} {value}\n" for key, value in defaults.items())
        )
        # The steps as the cluster holds them (newest first), run in the order they were added.
        steps = boto3.client("emr").list_steps(ClusterId=cluster_id)["Steps"][::-1]
        driver_logs = [run_step(step, deployment, root, home, aws) for step in steps]
        outputs = work / "outputs"
        deployment.fetch(outputs)
        written = bucket_keys(DATA)
        change_the_images(test1_images, work)
        # The first step (featurize and reduce) submitted again: one MERGE into the table on S3.
        driver_logs.append(run_step(steps[0], deployment, root, home, aws))
        rerun = json.loads(
            boto3.client("s3")
            .get_object(Bucket=BUCKET, Key=f"{DATA}/08_reporting/featurize_summary.json")["Body"]
            .read()
        )
    applications = [
        [json.loads(line) for line in log.read_text().splitlines()] for log in events.iterdir()
    ]
    assert len(applications) == len(steps) + 1 == 4
    # What the JVMs wrote to their standard error: the driver's is the step's.
    executor_logs = [log.read_text() for log in (work / "executors").glob("app-*/*/stderr")]
    return StepRun(deployment, outputs, written, rerun, applications, driver_logs, executor_logs)


def run_step(step: dict, deployment: Deployment, root: Path, home: Path, aws: dict) -> str:
    """One step's command, as the cluster holds it, in the node's environment; its stderr."""
    command = step["Config"]["Args"]
    assert command[:2] == ["bash", "-c"]
    script = command[2].replace(deployment.settings.node_home, str(home))
    # delta-rs (the features table's index) reads neither ~/.aws/config nor ~/.aws/credentials:
    # on EMR it asks the instance metadata service, which a test machine does not have. The S3
    # API server's address and the instance profile's stand-in credentials are given to it as
    # variables.
    s3_api = {
        **{
            name: aws[name]
            for name in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_SECRET_ACCESS_KEY")
        },
        "AWS_ACCESS_KEY_ID": NODE,
    }
    result = subprocess.run(
        node_environment(root, **s3_api) + ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert result.returncode == 0, step["Name"] + result.stdout[-5000:] + result.stderr[-5000:]
    return result.stderr


def bucket_keys(under: str) -> list[str]:
    pages = (
        boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=under)
    )
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def change_the_images(test1_images: Path, scratch: Path) -> None:
    """Two lemon photos added to the training images, one apple photo removed."""
    client, training = boto3.client("s3"), "fruit_pipeline/images/Training"
    for image in sorted((test1_images / "lemon").glob("*.jpg"))[:2]:
        copy = scratch / f"new_{image.name}"
        shutil.copy(image, copy)
        client.upload_file(str(copy), BUCKET, f"{training}/lemon/{copy.name}")
    client.delete_object(Bucket=BUCKET, Key=bucket_keys(f"{training}/apple/")[0])


def test_the_steps_featurize_reduce_train_and_predict_into_the_bucket(step_run):
    outputs = step_run.outputs
    summary = json.loads((outputs / "08_reporting" / "featurize_summary.json").read_text())
    assert summary["files_listed"] == summary["featurized"] == summary["table_rows"] == SAMPLE_SIZE
    assert summary["table_version"] == 0
    assert summary["feature_model"]["weights"].startswith(f"s3://{BUCKET}/fruit_pipeline/models/")
    report = json.loads((outputs / "08_reporting" / "variance_report.json").read_text())
    assert (report["features_version"], report["image_count"]) == (0, SAMPLE_SIZE)
    projected = pd.read_csv(outputs / "05_model_input" / "pca_features.csv")
    assert len(projected) == SAMPLE_SIZE
    assert projected["path"].str.startswith(f"s3://{BUCKET}/fruit_pipeline/images/").all()
    metrics = json.loads((outputs / "08_reporting" / "classification_metrics.json").read_text())
    assert metrics["features_version"] == 0
    assert (metrics["train_images"], metrics["test_images"]) == (328, 135)
    assert metrics["accuracy"] >= 0.98
    predictions = pd.read_csv(outputs / "07_model_output" / "predictions.csv")
    assert len(predictions) == 20
    expected = predictions["path"].str.extract(r"/new_images/([^/]+)/")[0]
    assert (predictions["predicted_label"] == expected).mean() >= 0.9


def test_every_output_is_in_the_bucket_and_no_partial_write_is_left(step_run):
    table = f"{DATA}/04_feature/image_features"
    written = step_run.written
    assert f"{table}/_delta_log/00000000000000000000.json" in written
    assert any(key.startswith(f"{table}/part-") and key.endswith(".parquet") for key in written)
    assert any(key.startswith(f"{DATA}/06_models/feature_model_cache/") for key in written)
    assert any(key.startswith(f"{DATA}/06_models/classifier/stages/") for key in written)
    outputs = {
        f"{DATA}/{path.relative_to(step_run.outputs)}"
        for path in step_run.outputs.rglob("*")
        if path.is_file()
    }
    assert outputs <= set(written)
    assert {key.removeprefix(f"{DATA}/") for key in outputs} >= {
        "05_model_input/pca_features.csv",
        "06_models/classifier_export.json",
        "07_model_output/predictions.csv",
        "08_reporting/featurize_summary.json",
        "08_reporting/image_rejects.csv",
        "08_reporting/variance_report.json",
        "08_reporting/cumulative_variance.png",
        "08_reporting/classifier_selection.json",
        "08_reporting/classification_metrics.json",
        "08_reporting/confusion_matrix.png",
        "08_reporting/reliability.png",
        "08_reporting/new_images_summary.json",
        "08_reporting/new_image_rejects.csv",
    }
    # Atomic writes leave no temporary object behind.
    assert not [key for key in written if key.endswith(".partial")]


def test_the_step_run_again_merges_the_changed_images_into_the_table_on_s3(step_run):
    summary = step_run.rerun
    assert (summary["files_new"], summary["files_removed"], summary["featurized"]) == (2, 1, 2)
    assert summary["files_unchanged"] == SAMPLE_SIZE - 1
    assert summary["table_rows"] == SAMPLE_SIZE + 1
    assert summary["table_version"] == 1
    log = f"{DATA}/04_feature/image_features/_delta_log"
    assert f"{log}/00000000000000000001.json" in bucket_keys(f"{log}/")
    # Three rows: merged from the driver by delta-rs, which commits to S3 with conditional writes.
    entry = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"{log}/00000000000000000001.json")
    actions = [json.loads(line) for line in entry["Body"].read().decode().splitlines()]
    (commit,) = [action["commitInfo"] for action in actions if "commitInfo" in action]
    assert commit["operation"] == "MERGE"
    assert commit["clientVersion"].startswith("delta-rs.")


def test_the_work_ran_in_executor_jvms_of_emrs_spark_release(step_run):
    for events in step_run.applications:
        (started,) = [event for event in events if event["Event"] == "SparkListenerLogStart"]
        assert started["Spark Version"] == EMR_SPARK_VERSION
        executors = {
            event["Executor ID"]
            for event in events
            if event["Event"] == "SparkListenerExecutorAdded"
        }
        assert executors and "driver" not in executors
        ran_on = {
            event["Task Info"]["Executor ID"]
            for event in events
            if event["Event"] == "SparkListenerTaskEnd"
        }
        assert ran_on and ran_on <= executors


def test_the_node_java_options_are_kept_and_the_projects_added(step_run):
    jvm_options = load_settings(PROJECT_ROOT / "conf").jvm_options
    for events in step_run.applications:
        (environment,) = [e for e in events if e["Event"] == "SparkListenerEnvironmentUpdate"]
        properties = environment["Spark Properties"]
        for role in ("driver", "executor"):
            # Spark itself puts its --add-opens first.
            java_options = properties[f"spark.{role}.extraJavaOptions"]
            assert java_options.endswith(NODE_JAVA_OPTIONS)
            assert jvm_options not in java_options
        assert properties["spark.executorEnv.JDK_JAVA_OPTIONS"] == jvm_options
    # The java launcher says so when JDK_JAVA_OPTIONS adds options: the drivers took them from
    # the cluster's spark-env.sh, the executors from their environment.
    picked_up = f"Picked up JDK_JAVA_OPTIONS: {jvm_options}"
    assert all(picked_up in log for log in step_run.driver_logs)
    assert len(step_run.executor_logs) >= 3
    assert all(picked_up in log for log in step_run.executor_logs)


# Statements no request of this test exercises, and why: each is granted for a caller that does
# not run here.
NOT_EXERCISED = {
    # EMR's own agents on the nodes (instance state, the cluster's description), not the project.
    (NODE, "EmrNodeAgents"),
    # EMR creates its clean-up role on an account's first cluster; moto's EMR does not.
    (OPERATOR, "EmrServiceLinkedRole"),
    (OPERATOR, "EmrServiceLinkedRolePolicy"),
}


@pytest.fixture(scope="module")
def authorizations(operator, step_run):
    """Every request the operator and the nodes signed, as IAM requests, with the policies the
    stack template gives each principal and the bucket, for the stack `apply-stack` made."""
    deployment, cluster_id, _, recording = operator
    deployment.terminate(cluster_id)  # the operator's last call, after the tests above
    settings = deployment.settings
    (stack,) = boto3.client("cloudformation").describe_stacks(StackName=settings.stack_name)[
        "Stacks"
    ]
    cluster = boto3.client("emr").describe_cluster(ClusterId=cluster_id)["Cluster"]
    resources = Resources(
        cluster_tags={cluster_id: {tag["Key"]: tag["Value"] for tag in cluster["Tags"]}},
        stack_ids={stack["StackName"]: stack["StackId"]},
    )
    requests = [
        request
        for entry in recorded_requests(recording, (OPERATOR, NODE))
        for request in iam_requests(entry, resources)
    ]
    policies = stack_policies(
        PROJECT_ROOT / "deploy" / "cloudformation" / "account.yaml",
        deployment.stack_parameters(),
        settings.region,
        settings.stack_name,
    )
    return requests, {OPERATOR: policies.operator, NODE: policies.node}, {BUCKET: policies.bucket}


def test_every_call_of_the_operator_and_the_nodes_is_allowed_by_the_stacks_policies(
    authorizations,
):
    requests, policies, buckets = authorizations
    made = {(request.principal, request.action) for request in requests}
    assert {
        (OPERATOR, "s3:PutObject"),
        (OPERATOR, "s3:ListBucket"),
        (OPERATOR, "s3:GetObject"),
        (OPERATOR, "ec2:DescribeSubnets"),
        (OPERATOR, "cloudformation:DescribeStacks"),
        (OPERATOR, "elasticmapreduce:RunJobFlow"),
        (OPERATOR, "iam:PassRole"),
        (OPERATOR, "elasticmapreduce:AddJobFlowSteps"),
        (OPERATOR, "elasticmapreduce:TerminateJobFlows"),
        (NODE, "s3:GetObject"),
        (NODE, "s3:ListBucket"),
        (NODE, "s3:PutObject"),
        (NODE, "s3:DeleteObject"),
    } <= made
    refused = denied(requests, policies, buckets)
    assert not refused, "\n".join(
        f"{request.principal}: {request.action} on {request.resource} ({request.http}): {answer}"
        for request, answer in refused[:40]
    )
    # The bucket's policy is part of the evaluation: without TLS, every S3 request is refused.
    s3_requests = [request for request in requests if request.action.startswith("s3:")]
    plain_http = [
        replace(
            request,
            context=tuple(
                (key, "false" if key == "aws:SecureTransport" else value)
                for key, value in request.context
            ),
        )
        for request in s3_requests
    ]
    refused = denied(plain_http, policies, buckets)
    assert len(refused) == len(set(plain_http))
    assert {answer for _, answer in refused} == {"ExplicitlyDenied"}


def test_each_statement_is_needed_and_its_removal_refuses_its_actions(authorizations):
    requests, policies, buckets = authorizations
    exercised = set()
    for principal, policy in policies.items():
        for statement in policy["Statement"]:
            actions = statement_actions(statement)
            concerned = [
                request
                for request in requests
                if request.principal == principal and request.action in actions
            ]
            if not concerned:
                continue
            exercised.add((principal, statement["Sid"]))
            refused = denied(
                concerned, {principal: without_statement(policy, statement["Sid"])}, buckets
            )
            assert refused, f"{principal}: nothing needs {statement['Sid']} alone"
            assert {request.action for request, _ in refused} <= actions
    every = {
        (principal, statement["Sid"])
        for principal, policy in policies.items()
        for statement in policy["Statement"]
    }
    assert every - exercised == NOT_EXERCISED
