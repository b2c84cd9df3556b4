"""`fruit-deploy`: run the pipelines on AWS EMR, EU only.

Sub-commands, in the order a user runs them from a laptop:
  apply-stack     the account's resources (deploy/cloudformation/account.yaml): the bucket with
                  its policies, the cluster's roles and instance profile, its security
                  configuration (encrypted disks, IMDSv2 only), the operator's policy
  upload-images   a local folder of class folders to the images location (--new: the new images
                  location, for predict), in parallel, skipping files already there, same size
  package         project wheel, configuration, pinned requirements, a wheelhouse for the nodes,
                  the bootstrap script and the weights file to the deploy location, and the
                  weights converted to ONNX to featurize's model cache (the nodes have no Keras)
  create-cluster  EMR cluster with the bootstrap action, logs in the bucket, idle auto-termination;
                  waits until it is ready, or says why it failed and where the bootstrap log is;
                  --transient --pipeline P ...: runs those steps and terminates when they end
  run             a step running `kedro run --env=emr` on the primary node; waits and reports
  status          the cluster's state and its latest steps
  fetch           the tables, reports, plots and classifier export to a local folder
  terminate       the cluster, waiting until it is terminated
  estimate        instance-hours of a cluster run (--run-minutes, --transient) and its price
  remove-stack    the account's resources (the bucket only when empty, or with --empty-bucket)

Run it from the project folder (or pass --project). Settings: conf/emr/globals.yml (where things
live) and conf/emr/deploy.yml. Credentials come from boto3's usual chain (environment, ~/.aws,
SSO); AWS_ENDPOINT_URL points it elsewhere.
"""

import argparse
import fnmatch
import logging
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from fruit_pipeline.apps.deploy import estimate, model_cache, staging
from fruit_pipeline.apps.deploy.network import EMR_MANAGED_POLICY_TAG, check_subnet
from fruit_pipeline.apps.deploy.settings import PROJECT_TAG, Settings, check_region, load_settings
from fruit_pipeline.apps.deploy.wheelhouse import WheelhouseError, build_wheelhouse
from fruit_pipeline.contracts import IMAGE_SUFFIXES

logger = logging.getLogger("fruit_pipeline.apps.deploy.commands")

FINAL_STEP_STATES = {"COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED"}
STACK_TEMPLATE = Path("deploy") / "cloudformation" / "account.yaml"
BOOTSTRAP_SCRIPT = Path("deploy") / "emr" / "bootstrap.sh"
# Many small files (images) go up in parallel, each in one request; large ones (wheels, weights)
# in a few parts at once each.
UPLOAD_WORKERS = 16
SMALL_FILES = TransferConfig(use_threads=False)
LARGE_FILES = TransferConfig(max_concurrency=4)


# The stack's output that names the clusters' security configuration (account.yaml).
SECURITY_CONFIGURATION_OUTPUT = "SecurityConfigurationName"
# The cluster's logs go to `logs_root` only, not also to EMR's own buckets (its default,
# `emr-managed`): they stay in the project's bucket and region, and the private subnet's S3
# endpoint needs no other bucket for them. Persistent application UIs read EMR's copy only:
# they are off.
LOG_UPLOADS = {
    "system-logs": "on-customer-s3only",
    "application-logs": "on-customer-s3only",
    "persistent-ui-logs": "disabled",
}


class DeploymentFailed(RuntimeError):
    """A cluster or a step ended in failure; the message says where its log is."""


def cluster_configurations(settings: Settings) -> list[dict[str, Any]]:
    """The cluster's application configurations (RunJobFlow's Configurations)."""
    return [
        # The features table is a Delta Lake table: EMR's own Delta on every node.
        {"Classification": "delta-defaults", "Properties": {"delta.enabled": "true"}},
        # spark-env.sh on every node: the project's Python for PySpark, and the project's JVM
        # options added to whatever EMR sets (JDK_JAVA_OPTIONS is read by every java launch).
        {
            "Classification": "spark-env",
            "Properties": {},
            "Configurations": [
                {
                    "Classification": "export",
                    "Properties": {
                        "PYSPARK_PYTHON": settings.node_python,
                        "PYSPARK_DRIVER_PYTHON": settings.node_python,
                        "JDK_JAVA_OPTIONS": settings.jvm_options,
                    },
                }
            ],
        },
    ]


class Deployment:
    """The AWS calls of each sub-command."""

    def __init__(self, settings: Settings, session: boto3.session.Session | None = None) -> None:
        self.settings = settings
        session = session or boto3.session.Session(region_name=settings.region)
        self.s3 = session.client(
            "s3",
            region_name=settings.region,
            config=Config(
                max_pool_connections=UPLOAD_WORKERS * LARGE_FILES.max_request_concurrency
            ),
        )
        self.emr = session.client("emr", region_name=settings.region)
        self.cloudformation = session.client("cloudformation", region_name=settings.region)
        self.ec2 = session.client("ec2", region_name=settings.region)

    def stack_parameters(self) -> dict[str, str]:
        """The template's parameters, from conf/emr: the stack names no location of its own."""
        settings = self.settings
        return {
            "BucketName": settings.bucket,
            "ProjectPrefix": settings.prefix,
            "DataPrefix": settings.key(settings.data_root),
            "LogsPrefix": settings.key(settings.logs_root),
            "ServiceRoleName": settings.service_role,
            "InstanceProfileName": settings.instance_profile,
            "ProjectTag": settings.tags[PROJECT_TAG],
        }

    def apply_stack(self, template: Path) -> dict[str, str]:
        """Create the account's stack, or update it; wait for it and return its outputs."""
        name = self.settings.stack_name
        arguments = {
            "StackName": name,
            "TemplateBody": template.read_text(),
            "Parameters": [
                {"ParameterKey": key, "ParameterValue": value}
                for key, value in self.stack_parameters().items()
            ],
            # The template names its roles and instance profile (conf/emr/deploy.yml).
            "Capabilities": ["CAPABILITY_NAMED_IAM"],
            "Tags": self._tag_set(),
        }
        if self._stack_exists(name):
            try:
                self.cloudformation.update_stack(**arguments)
            except ClientError as error:
                if "No updates are to be performed" not in str(error):
                    raise
                logger.info("stack %s is up to date", name)
            else:
                self._wait_for_stack("stack_update_complete", name)
        else:
            created = self.cloudformation.create_stack(**arguments, OnFailure="DELETE")
            # By its id: a failed creation deletes the stack, and its name then finds nothing.
            self._wait_for_stack("stack_create_complete", created["StackId"])
        outputs = self._stack_outputs(name)
        logger.info("stack %s: %s", name, outputs)
        return outputs

    def _stack_outputs(self, name: str) -> dict[str, str]:
        stack = self.cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        return {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}

    def remove_stack(self, empty_bucket: bool) -> None:
        """Delete the account's stack; the bucket goes with it only empty (or emptied here)."""
        name = self.settings.stack_name
        if not self._stack_exists(name):
            raise ValueError(f"no stack {name} in {self.settings.region}")
        keys = list(self._object_sizes(""))
        if keys and not empty_bucket:
            raise ValueError(
                f"s3://{self.settings.bucket} holds {len(keys)} objects: download what you need "
                "(fruit-deploy fetch), then pass --empty-bucket to delete them with the stack"
            )
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.s3.delete_objects(Bucket=self.settings.bucket, Delete={"Objects": batch})
        stack_id = self.cloudformation.describe_stacks(StackName=name)["Stacks"][0]["StackId"]
        self.cloudformation.delete_stack(StackName=name)
        self._wait_for_stack("stack_delete_complete", stack_id)
        logger.info("stack %s deleted (%d objects deleted first)", name, len(keys))

    def upload_images(
        self, folder: Path, new: bool = False, workers: int = UPLOAD_WORKERS
    ) -> tuple[int, int]:
        """Upload the image files under folder (class folders kept) to the images location (or
        the new images', to name with predict); skip files already there with the same size."""
        if not folder.is_dir():
            raise ValueError(f"{folder}: no such folder")
        root = self.settings.new_images_root if new else self.settings.images_root
        prefix = self.settings.key(root) + "/"
        present = self._object_sizes(prefix)
        images = sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        missing = {}
        for path in images:
            key = prefix + path.relative_to(folder).as_posix()
            if present.get(key) != path.stat().st_size:
                missing[key] = path
        started = time.monotonic()
        self._upload(missing, SMALL_FILES, workers)
        seconds = time.monotonic() - started
        rate = len(missing) / seconds if missing else 0.0
        logger.info(
            "images: %d uploaded (%.0f files/s), %d already there",
            len(missing),
            rate,
            len(images) - len(missing),
        )
        return len(missing), len(images) - len(missing)

    def package(self, project: Path, dist: Path, weights: Path | None) -> list[str]:
        """Upload the wheel, conf, pinned versions, wheelhouse, bootstrap script and weights, and
        the weights' ONNX model to the model cache."""
        wheels = sorted(dist.glob("fruit_pipeline-*.whl"))
        archives = sorted(dist.glob(staging.CONF_ARCHIVE))
        if not wheels or not archives:
            raise ValueError(f"{dist} holds no wheel or conf archive: run `kedro package` first")
        deploy = self.settings.key(self.settings.deploy_root)
        with tempfile.TemporaryDirectory() as scratch:
            # First: without the keras extra it fails at once, not after the wheelhouse's download.
            model = {} if weights is None else self._feature_model_upload(weights, Path(scratch))
            manifest = Path(scratch) / staging.MANIFEST
            manifest.write_text(staging.manifest(wheels[-1].name))
            wheelhouse = build_wheelhouse(
                wheels[-1], project / staging.CONSTRAINTS, Path(scratch) / staging.WHEELHOUSE
            )
            files = {
                wheels[-1].name: wheels[-1],
                staging.MANIFEST: manifest,
                staging.CONF_ARCHIVE: archives[-1],
                staging.CONSTRAINTS: project / staging.CONSTRAINTS,
                staging.PYPROJECT: project / staging.PYPROJECT,
                staging.BOOTSTRAP: project / BOOTSTRAP_SCRIPT,
                **{f"{staging.WHEELHOUSE}/{wheel.name}": wheel for wheel in wheelhouse},
            }
            uploads = {f"{deploy}/{name}": path for name, path in files.items()} | model
            if weights is not None:
                # The Keras cache of the nodes, and the models location featurize.weights reads.
                uploads[f"{deploy}/{staging.MODELS}/{weights.name}"] = weights
                uploads[f"{self.settings.key(self.settings.models_root)}/{weights.name}"] = weights
            self._upload(uploads, LARGE_FILES)
        logger.info(
            "uploaded %d files (%d wheels) to s3://%s/%s/",
            len(uploads),
            len(wheelhouse),
            self.settings.bucket,
            deploy,
        )
        return sorted(uploads)

    def _feature_model_upload(self, weights: Path, scratch: Path) -> dict[str, Path]:
        """The weights' ONNX model for the model cache, unless the cache holds it already."""
        converted = model_cache.convert(weights, scratch / "model_cache")
        cache = self.settings.key(self.settings.model_cache)
        cached = {key.removeprefix(f"{cache}/") for key in self._object_sizes(f"{cache}/")}
        others = model_cache.other_conversions(cached, converted, weights)
        if others:
            raise ValueError(
                f"{self.settings.model_cache} holds other ONNX models of these weights "
                f"({', '.join(others)}), converted by other Keras or tf2onnx versions; the nodes "
                "take the only one there is. Delete them (aws s3 rm) and package again."
            )
        if converted.name in cached:
            logger.info("the model cache holds the weights' ONNX model already")
            return {}
        return {f"{cache}/{converted.name}": converted}

    def create_cluster(
        self,
        name: str,
        wait: bool = True,
        transient: Sequence[str | None] = (),
        params: str | None = None,
    ) -> str:
        """Start the cluster: 1 primary + N core nodes, the bootstrap action, logs, idle stop.

        With `transient` pipelines (None: the default one), the cluster runs them as its steps,
        one after the other, and terminates when they end (or at the first that fails): no idle
        hour is billed. Waiting then waits for the termination and checks every step.
        """
        settings = self.settings
        check_subnet(self.ec2, settings.subnet_id, settings.region)
        security_configuration = self._security_configuration()
        instances: dict[str, Any] = {
            "InstanceGroups": [
                {
                    "Name": "primary",
                    "InstanceRole": "MASTER",
                    "InstanceType": settings.instance_type,
                    "InstanceCount": 1,
                },
                {
                    "Name": "core",
                    "InstanceRole": "CORE",
                    "InstanceType": settings.instance_type,
                    "InstanceCount": settings.core_instance_count,
                },
            ],
            "KeepJobFlowAliveWhenNoSteps": not transient,
            "TerminationProtected": False,
        }
        if settings.key_name:
            instances["Ec2KeyName"] = settings.key_name
        instances["Ec2SubnetId"] = settings.subnet_id
        response = self.emr.run_job_flow(
            Name=name,
            ReleaseLabel=settings.release_label,
            LogUri=f"{settings.logs_root}/",
            MonitoringConfiguration={
                "S3LoggingConfiguration": {"LogTypeUploadPolicy": LOG_UPLOADS}
            },
            Applications=[{"Name": "Spark"}],
            Configurations=cluster_configurations(settings),
            Instances=instances,
            BootstrapActions=[
                {
                    "Name": "fruit_pipeline",
                    "ScriptBootstrapAction": {
                        "Path": f"{settings.deploy_root}/{staging.BOOTSTRAP}",
                        "Args": [f"{settings.deploy_root}/{staging.MANIFEST}", settings.node_home],
                    },
                }
            ],
            AutoTerminationPolicy={"IdleTimeout": settings.idle_timeout_seconds},
            ServiceRole=settings.service_role,
            JobFlowRole=settings.instance_profile,
            SecurityConfiguration=security_configuration,
            VisibleToAllUsers=True,
            EbsRootVolumeSize=settings.ebs_root_volume_gib,
            Steps=[self._step(pipeline, params, "TERMINATE_CLUSTER") for pipeline in transient],
            Tags=self._tag_set(EMR_MANAGED_POLICY_TAG),
        )
        cluster_id = response["JobFlowId"]
        logger.info("cluster %s starting (bootstrap takes a few minutes)", cluster_id)
        if wait and transient:
            self.wait_for_transient_cluster(cluster_id)
        elif wait:
            self.wait_for_cluster(cluster_id)
        return cluster_id

    def wait_for_transient_cluster(self, cluster_id: str) -> None:
        """Wait until the cluster has run its steps and terminated; a step that did not
        complete is an error with its log."""
        self.emr.get_waiter("cluster_terminated").wait(
            ClusterId=cluster_id, WaiterConfig={"Delay": 60, "MaxAttempts": 24 * 60}
        )
        steps = self.emr.list_steps(ClusterId=cluster_id)["Steps"][::-1]
        for step in steps:
            logger.info("step %s (%s): %s", step["Id"], step["Name"], step["Status"]["State"])
        failed = [step for step in steps if step["Status"]["State"] != "COMPLETED"]
        if failed:
            raise DeploymentFailed(
                "; ".join(
                    f"step {step['Id']} ({step['Name']}) {step['Status']['State']}, its logs: "
                    f"{self.step_logs(cluster_id, step['Id'])}stderr.gz"
                    for step in failed
                )
            )
        logger.info("cluster %s ran its %d steps and terminated", cluster_id, len(steps))

    def _security_configuration(self) -> str:
        """The name of the stack's EMR security configuration (encrypted disks, IMDSv2 only),
        which CloudFormation chose; a stack without one is refused before RunJobFlow."""
        name = self.settings.stack_name
        outputs = self._stack_outputs(name) if self._stack_exists(name) else {}
        if SECURITY_CONFIGURATION_OUTPUT not in outputs:
            raise DeploymentFailed(
                f"stack {name} in {self.settings.region} gives no EMR security configuration "
                "(encrypted disks, IMDSv2 only): run `fruit-deploy apply-stack` first"
            )
        return outputs[SECURITY_CONFIGURATION_OUTPUT]

    def wait_for_cluster(self, cluster_id: str) -> None:
        """Wait until the cluster takes steps; if it fails, say why and where its logs are."""
        try:
            self.emr.get_waiter("cluster_running").wait(
                ClusterId=cluster_id, WaiterConfig={"Delay": 30, "MaxAttempts": 120}
            )
        except WaiterError:
            status = self.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
            reason = status.get("StateChangeReason", {})
            raise DeploymentFailed(
                f"cluster {cluster_id} is {status['State']}: {reason.get('Code', '')} "
                f"{reason.get('Message', '')}. Bootstrap logs: "
                f"{self.bootstrap_logs(cluster_id)}<instance id>/bootstrap-actions/1/stderr.gz"
            ) from None
        logger.info("cluster %s is ready", cluster_id)

    def bootstrap_logs(self, cluster_id: str) -> str:
        return f"{self.settings.logs_root}/{cluster_id}/node/"

    def run(
        self,
        cluster_id: str,
        pipeline: str | None,
        params: str | None,
        wait: bool,
        poll_seconds: float = 30,
    ) -> str:
        """Add the `kedro run --env=emr` step; wait for it with progress if asked."""
        step = self._step(pipeline, params, "CONTINUE")
        response = self.emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step])
        step_id = response["StepIds"][0]
        logger.info("step %s added: %s", step_id, step["HadoopJarStep"]["Args"][-1])
        if wait:
            state = self.wait_for_step(cluster_id, step_id, poll_seconds)
            logs = self.step_logs(cluster_id, step_id)
            if state != "COMPLETED":
                raise DeploymentFailed(f"step {step_id} {state}; its logs: {logs}stderr.gz")
            logger.info("step %s %s; logs: %s", step_id, state, logs)
        return step_id

    def _step(self, pipeline: str | None, params: str | None, on_failure: str) -> dict[str, Any]:
        """An EMR step that runs `kedro run --env=emr` (command-runner.jar) on the primary."""
        return {
            "Name": f"kedro run {pipeline or '__default__'}",
            "ActionOnFailure": on_failure,
            "HadoopJarStep": {
                "Jar": "command-runner.jar",
                "Args": step_command(self.settings, pipeline, params),
            },
        }

    def wait_for_step(self, cluster_id: str, step_id: str, poll_seconds: float) -> str:
        """Poll the step until it ends, logging each change of state."""
        state, started = None, time.monotonic()
        while state not in FINAL_STEP_STATES:
            step = self.emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]
            if step["Status"]["State"] != state:
                state = step["Status"]["State"]
                logger.info("%5.0f s  step %s: %s", time.monotonic() - started, step_id, state)
            if state not in FINAL_STEP_STATES:
                time.sleep(poll_seconds)
        return state

    def step_logs(self, cluster_id: str, step_id: str) -> str:
        return f"{self.settings.logs_root}/{cluster_id}/steps/{step_id}/"

    def status(self, cluster_id: str) -> dict[str, Any]:
        """The cluster's state, primary node and latest steps."""
        cluster = self.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
        steps = self.emr.list_steps(ClusterId=cluster_id)["Steps"][:10]
        return {
            "cluster": cluster_id,
            "state": cluster["Status"]["State"],
            "primary": cluster.get("MasterPublicDnsName"),
            "steps": [
                {"id": s["Id"], "name": s["Name"], "state": s["Status"]["State"]} for s in steps
            ],
        }

    def fetch(self, dest: Path) -> list[Path]:
        """Download the catalog's tables, reports, plots and classifier export (not the 1280-d
        features, nor the Spark model) into dest, keeping their folders under the data root."""
        data = self.settings.key(self.settings.data_root)
        patterns = [self.settings.key(output) for output in self.settings.outputs]
        folders = sorted({pattern.rsplit("/", 1)[0] for pattern in patterns})
        written = []
        for folder in folders:
            for key in self._object_sizes(f"{folder}/"):
                if not any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns):
                    continue
                target = dest / key.removeprefix(f"{data}/")
                target.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(self.settings.bucket, key, str(target))
                written.append(target)
        logger.info("fetched %d files into %s", len(written), dest)
        return written

    def terminate(self, cluster_id: str, wait: bool = True) -> None:
        """Terminate the cluster and, unless told not to, wait until it is (the bill stops)."""
        self.emr.terminate_job_flows(JobFlowIds=[cluster_id])
        logger.info("cluster %s terminating", cluster_id)
        if wait:
            self._wait("cluster_terminated", f"cluster {cluster_id}", ClusterId=cluster_id)
            logger.info("cluster %s terminated", cluster_id)

    def _upload(
        self, files: dict[str, Path], config: TransferConfig, workers: int = UPLOAD_WORKERS
    ) -> None:
        """Upload {key: path} with several requests in flight; the first failure is raised."""

        def upload(item: tuple[str, Path]) -> None:
            key, path = item
            self.s3.upload_file(str(path), self.settings.bucket, key, Config=config)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(upload, files.items()):
                pass

    def _wait(self, waiter: str, what: str, **arguments: str) -> None:
        try:
            self.emr.get_waiter(waiter).wait(
                **arguments, WaiterConfig={"Delay": 10, "MaxAttempts": 360}
            )
        except WaiterError as error:
            raise DeploymentFailed(f"{what}: {error}") from None

    def _wait_for_stack(self, waiter: str, stack: str) -> None:
        """Wait for the stack; if it fails, say which resources failed and why."""
        try:
            self.cloudformation.get_waiter(waiter).wait(
                StackName=stack, WaiterConfig={"Delay": 10, "MaxAttempts": 360}
            )
        except WaiterError as error:
            events = self.cloudformation.describe_stack_events(StackName=stack)["StackEvents"]
            failed = [
                f"{event['LogicalResourceId']} {event['ResourceStatus']}: "
                f"{event.get('ResourceStatusReason', '')}"
                for event in events
                if event["ResourceStatus"].endswith("FAILED")
            ]
            raise DeploymentFailed(
                f"stack {self.settings.stack_name}: {'; '.join(failed) or error}"
            ) from None

    def _stack_exists(self, name: str) -> bool:
        try:
            stacks = self.cloudformation.describe_stacks(StackName=name)["Stacks"]
        except ClientError as error:
            if "does not exist" in str(error):
                return False
            raise
        return any(stack["StackStatus"] != "DELETE_COMPLETE" for stack in stacks)

    def _object_sizes(self, prefix: str) -> dict[str, int]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.settings.bucket, Prefix=prefix
        )
        return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}

    def _tag_set(self, extra: dict[str, str] | None = None) -> list[dict[str, str]]:
        tags = {**self.settings.tags, **(extra or {})}
        return [{"Key": key, "Value": str(value)} for key, value in tags.items()]


def step_command(settings: Settings, pipeline: str | None, params: str | None) -> list[str]:
    """command-runner.jar arguments: `kedro run --env=emr` from the project on the primary node."""
    # The bucket and prefix the operator deployed to: conf/emr/globals.yml reads them from the
    # environment, and a step's environment is the node's, not the operator's.
    # And the region: a step's environment names none, nor need the node's AWS configuration.
    location = [
        f"FRUIT_PIPELINE_BUCKET={settings.bucket}",
        f"FRUIT_PIPELINE_PREFIX={settings.prefix}",
        f"AWS_DEFAULT_REGION={settings.region}",
    ]
    kedro = ["env", *location, f"{staging.VENV}/bin/kedro", "run", "--env=emr"]
    if pipeline:
        kedro += ["--pipelines", pipeline]
    if params:
        kedro += ["--params", params]
    # The step's environment file, written by the bootstrap action, puts EMR's own pyspark on
    # the path.
    script = (
        f"cd {shlex.quote(settings.node_home)} && . ./{staging.STEP_ENVIRONMENT} && "
        f"{shlex.join(kedro)}"
    )
    return ["bash", "-c", script]


def build_package(project: Path) -> Path:
    """`kedro package`: the wheel and the conf archive in dist/."""
    subprocess.run([sys.executable, "-m", "kedro", "package"], cwd=project, check=True)
    return project / "dist"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one sub-command."""
    parser = argparse.ArgumentParser(prog="fruit-deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="the project folder")
    parser.add_argument("--region", help="overrides conf/emr/deploy.yml")
    parser.add_argument("--allow-outside-eu", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("apply-stack")
    remove = commands.add_parser("remove-stack")
    remove.add_argument("--empty-bucket", action="store_true", help="delete every object first")
    upload = commands.add_parser("upload-images")
    upload.add_argument("folder", type=Path)
    upload.add_argument("--new", action="store_true", help="images for predict to name")
    package = commands.add_parser("package")
    package.add_argument("--dist", type=Path, help="use this dist/ instead of `kedro package`")
    package.add_argument("--weights", type=Path, help="the MobileNetV2 .h5 file to stage")
    create = commands.add_parser("create-cluster")
    create.add_argument("--name", default="fruit_pipeline")
    create.add_argument("--no-wait", dest="wait", action="store_false")
    create.add_argument(
        "--transient",
        action="store_true",
        help="run the --pipeline steps (default: featurize + reduce), then terminate",
    )
    create.add_argument("--pipeline", action="append", dest="pipelines", help="repeatable")
    create.add_argument("--params")
    run = commands.add_parser("run")
    run.add_argument("cluster_id")
    run.add_argument("--pipeline")
    run.add_argument("--params")
    run.add_argument("--no-wait", dest="wait", action="store_false")
    run.add_argument("--poll-seconds", type=float, default=30)
    commands.add_parser("status").add_argument("cluster_id")
    terminate = commands.add_parser("terminate")
    terminate.add_argument("cluster_id")
    terminate.add_argument("--no-wait", dest="wait", action="store_false")
    cost = commands.add_parser("estimate")
    cost.add_argument("--run-minutes", type=float, default=10, help="the steps' wall time")
    cost.add_argument("--transient", action="store_true", help="no idle wait")
    fetch = commands.add_parser("fetch")
    fetch.add_argument("--dest", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:
        settings = load_settings(args.project / "conf")
        if args.region:
            settings = replace(settings, region=args.region)
        check_region(settings.region, args.allow_outside_eu)
        _dispatch(Deployment(settings), args)
    except (
        ValueError,
        DeploymentFailed,
        WheelhouseError,
        # `kedro package` or pip failed: their own output says why.
        subprocess.CalledProcessError,
        ClientError,
        BotoCoreError,
        S3UploadFailedError,
    ) as error:
        logger.error("fruit-deploy %s: %s", args.command, error)
        return 1
    return 0


def _dispatch(deployment: Deployment, args: argparse.Namespace) -> None:
    if args.command == "apply-stack":
        deployment.apply_stack(args.project / STACK_TEMPLATE)
    elif args.command == "remove-stack":
        deployment.remove_stack(args.empty_bucket)
    elif args.command == "upload-images":
        deployment.upload_images(args.folder, args.new)
    elif args.command == "package":
        dist = args.dist or build_package(args.project)
        deployment.package(args.project, dist, args.weights)
    elif args.command == "create-cluster":
        if args.pipelines and not args.transient:
            raise ValueError("create-cluster takes --pipeline only with --transient; else `run`")
        transient = (args.pipelines or [None]) if args.transient else []
        cluster_id = deployment.create_cluster(args.name, args.wait, transient, args.params)
        print(cluster_id)  # noqa: T201
    elif args.command == "run":
        step_id = deployment.run(
            args.cluster_id, args.pipeline, args.params, args.wait, args.poll_seconds
        )
        print(step_id)  # noqa: T201
    elif args.command == "status":
        print(deployment.status(args.cluster_id))  # noqa: T201
    elif args.command == "estimate":
        print(estimate.report(deployment.settings, args.run_minutes, args.transient))  # noqa: T201
    elif args.command == "fetch":
        deployment.fetch(args.dest)
    elif args.command == "terminate":
        deployment.terminate(args.cluster_id, args.wait)


if __name__ == "__main__":
    sys.exit(main())
