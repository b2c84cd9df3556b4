"""`fruit-deploy` (or `python -m fruit_pipeline.deploy`): run the pipelines on AWS EMR, EU only.

Sub-commands, in the order a user runs them from a laptop:
  create-bucket   EU bucket with default encryption, Block Public Access and ACLs disabled
  upload-images   a local folder of class folders to s3://<bucket>/<prefix>/images/, skipping
                  files already there with the same size
  package         project wheel, configuration, pinned requirements, bootstrap script and the
                  weights file to s3://<bucket>/<prefix>/deploy/
  create-cluster  EMR cluster with the bootstrap action, logs in the bucket, idle auto-termination
  run             a step running `kedro run --env=emr` on the primary node; waits and reports
  status          the cluster's state and its latest steps
  fetch           the CSV outputs and reports to a local folder
  terminate       the cluster
  policies        the IAM policy documents of deploy/iam/, filled in for this bucket

Run it from the project folder (or pass --project). Settings: conf/emr/deploy.yml and the bucket
and prefix of conf/emr/globals.yml. Credentials come from boto3's usual chain (environment,
~/.aws, SSO); AWS_ENDPOINT_URL points it elsewhere.
"""

import argparse
import logging
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from string import Template
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from fruit_pipeline.config import config_loader

logger = logging.getLogger("fruit_pipeline.deploy")

APP_DIR = "/home/hadoop/fruit_pipeline"
# Outputs worth bringing home: the tables and reports, not the 1280-d features.
FETCHED_FOLDERS = ("05_model_input", "07_model_output", "08_reporting")
FINAL_STEP_STATES = {"COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED"}


@dataclass(frozen=True)
class Settings:
    """Where and how to deploy: the bucket, the region and the cluster's shape."""

    bucket: str
    prefix: str
    region: str
    release_label: str
    instance_type: str
    core_instance_count: int
    idle_timeout_seconds: int
    service_role: str
    instance_profile: str
    key_name: str | None
    subnet_id: str | None
    tags: dict[str, str]

    @property
    def deploy_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/deploy"

    @property
    def log_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/logs/"


def load_settings(conf_source: Path) -> Settings:
    """Read conf/emr: the bucket and prefix from globals.yml, the rest from deploy.yml."""
    loader = config_loader(conf_source.parent, env="emr")
    found = loader["globals"]
    deploy = loader["deploy"]
    return Settings(bucket=found["bucket"], prefix=found["prefix"], **deploy)


# AWS regions in EU member states. Not eu-west-2 (London) nor eu-central-2 (Zurich): their
# names start with eu- but the United Kingdom and Switzerland are not in the EU.
EU_REGIONS = {
    "eu-central-1": "Frankfurt",
    "eu-north-1": "Stockholm",
    "eu-south-1": "Milan",
    "eu-south-2": "Spain",
    "eu-west-1": "Ireland",
    "eu-west-3": "Paris",
}


def check_region(region: str, allow_outside_eu: bool) -> None:
    """Refuse regions outside the EU unless explicitly allowed (GDPR)."""
    if region not in EU_REGIONS and not allow_outside_eu:
        choices = ", ".join(f"{name} ({city})" for name, city in sorted(EU_REGIONS.items()))
        raise ValueError(
            f"region {region} is outside the EU: images and computation must stay in the EU "
            f"(GDPR). Choose one of {choices} (default eu-west-3), or pass "
            "--allow-outside-eu if you really mean it."
        )


class Deployment:
    """The AWS calls of each sub-command."""

    def __init__(self, settings: Settings, session: boto3.session.Session | None = None) -> None:
        self.settings = settings
        session = session or boto3.session.Session(region_name=settings.region)
        self.s3 = session.client("s3", region_name=settings.region)
        self.emr = session.client("emr", region_name=settings.region)

    def create_bucket(self) -> None:
        """Create the bucket in the region, encrypted, private, tagged; reuse it if it is ours."""
        bucket = self.settings.bucket
        # us-east-1, S3's default region, is the one that takes no location constraint.
        location = (
            {}
            if self.settings.region == "us-east-1"
            else {"CreateBucketConfiguration": {"LocationConstraint": self.settings.region}}
        )
        try:
            self.s3.create_bucket(Bucket=bucket, ObjectOwnership="BucketOwnerEnforced", **location)
            logger.info("created s3://%s in %s", bucket, self.settings.region)
        except ClientError as error:
            if error.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
                raise
            logger.info("s3://%s exists and is yours: settings applied again", bucket)
        self.s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                        "BucketKeyEnabled": True,
                    }
                ]
            },
        )
        self.s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        self.s3.put_bucket_ownership_controls(
            Bucket=bucket,
            OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        )
        self.s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": self._tag_set()})

    def upload_images(self, folder: Path) -> tuple[int, int]:
        """Upload the image files under folder (class folders kept); skip same-size ones."""
        if not folder.is_dir():
            raise ValueError(f"{folder}: no such folder")
        prefix = f"{self.settings.prefix}/images/"
        present = self._object_sizes(prefix)
        uploaded = skipped = 0
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if path.suffix.lower() not in {".jpg", ".jpeg"}:
                continue
            key = prefix + path.relative_to(folder).as_posix()
            if present.get(key) == path.stat().st_size:
                skipped += 1
                continue
            self.s3.upload_file(str(path), self.settings.bucket, key)
            uploaded += 1
        logger.info("images: %d uploaded, %d already there", uploaded, skipped)
        return uploaded, skipped

    def package(self, project: Path, dist: Path, weights: Path | None) -> list[str]:
        """Upload the wheel, conf archive, pinned versions, bootstrap script and weights."""
        wheels = sorted(dist.glob("fruit_pipeline-*.whl"))
        archives = sorted(dist.glob("conf-fruit_pipeline.tar.gz"))
        if not wheels or not archives:
            raise ValueError(f"{dist} holds no wheel or conf archive: run `kedro package` first")
        # pip wants the wheel's own file name; wheel.txt tells the bootstrap action which it is.
        wheel_name = project / "dist" / "wheel.txt"
        wheel_name.write_text(wheels[-1].name)
        files = {
            wheels[-1].name: wheels[-1],
            "wheel.txt": wheel_name,
            "conf-fruit_pipeline.tar.gz": archives[-1],
            "constraints.txt": project / "constraints.txt",
            # `kedro run` wants a project folder: this file and conf/ make the primary node's.
            "pyproject.toml": project / "pyproject.toml",
            "bootstrap.sh": project / "deploy" / "emr" / "bootstrap.sh",
        }
        if weights is not None:
            files[f"models/{weights.name}"] = weights
        keys = []
        for name, path in files.items():
            key = f"{self.settings.prefix}/deploy/{name}"
            self.s3.upload_file(str(path), self.settings.bucket, key)
            keys.append(key)
        if weights is not None:
            # conf/emr reads featurize.weights from the models/ folder of the prefix too.
            key = f"{self.settings.prefix}/models/{weights.name}"
            self.s3.upload_file(str(weights), self.settings.bucket, key)
            keys.append(key)
        logger.info("uploaded %s", ", ".join(keys))
        return keys

    def create_cluster(self, name: str) -> str:
        """Start the cluster: 1 primary + N core nodes, the bootstrap action, logs, idle stop."""
        instances: dict[str, Any] = {
            "InstanceGroups": [
                {
                    "Name": "primary",
                    "InstanceRole": "MASTER",
                    "InstanceType": self.settings.instance_type,
                    "InstanceCount": 1,
                },
                {
                    "Name": "core",
                    "InstanceRole": "CORE",
                    "InstanceType": self.settings.instance_type,
                    "InstanceCount": self.settings.core_instance_count,
                },
            ],
            "KeepJobFlowAliveWhenNoSteps": True,
            "TerminationProtected": False,
        }
        if self.settings.key_name:
            instances["Ec2KeyName"] = self.settings.key_name
        if self.settings.subnet_id:
            instances["Ec2SubnetId"] = self.settings.subnet_id
        response = self.emr.run_job_flow(
            Name=name,
            ReleaseLabel=self.settings.release_label,
            LogUri=self.settings.log_uri,
            Applications=[{"Name": "Spark"}],
            # The features table is a Delta Lake table: EMR's own Delta on every node.
            Configurations=[
                {"Classification": "delta-defaults", "Properties": {"delta.enabled": "true"}}
            ],
            Instances=instances,
            BootstrapActions=[
                {
                    "Name": "fruit_pipeline",
                    "ScriptBootstrapAction": {
                        "Path": f"{self.settings.deploy_uri}/bootstrap.sh",
                        "Args": [self.settings.deploy_uri],
                    },
                }
            ],
            AutoTerminationPolicy={"IdleTimeout": self.settings.idle_timeout_seconds},
            ServiceRole=self.settings.service_role,
            JobFlowRole=self.settings.instance_profile,
            VisibleToAllUsers=True,
            Tags=self._tag_set(),
        )
        cluster_id = response["JobFlowId"]
        logger.info("cluster %s starting (bootstrap takes a few minutes)", cluster_id)
        return cluster_id

    def run(
        self,
        cluster_id: str,
        pipeline: str | None,
        params: str | None,
        wait: bool,
        poll_seconds: float = 30,
    ) -> str:
        """Add the `kedro run --env=emr` step; wait for it with progress if asked."""
        command = step_command(self.settings, pipeline, params)
        response = self.emr.add_job_flow_steps(
            JobFlowId=cluster_id,
            Steps=[
                {
                    "Name": f"kedro run {pipeline or '__default__'}",
                    "ActionOnFailure": "CONTINUE",
                    "HadoopJarStep": {"Jar": "command-runner.jar", "Args": command},
                }
            ],
        )
        step_id = response["StepIds"][0]
        logger.info("step %s added: %s", step_id, command[-1])
        if wait:
            state = self.wait_for_step(cluster_id, step_id, poll_seconds)
            logger.info("step %s %s; logs: %s", step_id, state, self.step_logs(cluster_id, step_id))
        return step_id

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
        return f"{self.settings.log_uri}{cluster_id}/steps/{step_id}/"

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
        """Download the tables and reports of the last run into dest, keeping their folders."""
        written = []
        for folder in FETCHED_FOLDERS:
            prefix = f"{self.settings.prefix}/data/{folder}/"
            for key in self._object_sizes(prefix):
                target = dest / key.removeprefix(f"{self.settings.prefix}/data/")
                target.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(self.settings.bucket, key, str(target))
                written.append(target)
        logger.info("fetched %d files into %s", len(written), dest)
        return written

    def terminate(self, cluster_id: str) -> None:
        self.emr.terminate_job_flows(JobFlowIds=[cluster_id])
        logger.info("cluster %s terminating", cluster_id)

    def _object_sizes(self, prefix: str) -> dict[str, int]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.settings.bucket, Prefix=prefix
        )
        return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}

    def _tag_set(self) -> list[dict[str, str]]:
        return [{"Key": key, "Value": str(value)} for key, value in self.settings.tags.items()]


def step_command(settings: Settings, pipeline: str | None, params: str | None) -> list[str]:
    """command-runner.jar arguments: `kedro run --env=emr` from the project on the primary node."""
    # The bucket and prefix the operator deployed to: conf/emr/globals.yml reads them from the
    # environment, and a step's environment is the node's, not the operator's.
    location = [
        f"FRUIT_PIPELINE_BUCKET={settings.bucket}",
        f"FRUIT_PIPELINE_PREFIX={settings.prefix}",
    ]
    kedro = ["env", *location, "venv/bin/kedro", "run", "--env=emr"]
    if pipeline:
        kedro += ["--pipelines", pipeline]
    if params:
        kedro += ["--params", params]
    # spark_env.sh, written by the bootstrap action, puts EMR's own pyspark on the path.
    script = f"cd {APP_DIR} && . ./spark_env.sh && {shlex.join(kedro)}"
    return ["bash", "-c", script]


def build_package(project: Path) -> Path:
    """`kedro package`: the wheel and the conf archive in dist/."""
    subprocess.run([sys.executable, "-m", "kedro", "package"], cwd=project, check=True)
    return project / "dist"


def render_policies(project: Path, settings: Settings, account_id: str) -> dict[str, str]:
    """The IAM policy documents of deploy/iam/ with this bucket, prefix, region and account."""
    values = {
        "bucket": settings.bucket,
        "prefix": settings.prefix,
        "region": settings.region,
        "account_id": account_id,
    }
    return {
        path.name: Template(path.read_text()).substitute(values)
        for path in sorted((project / "deploy" / "iam").glob("*.json"))
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one sub-command."""
    parser = argparse.ArgumentParser(prog="fruit-deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="the project folder")
    parser.add_argument("--region", help="overrides conf/emr/deploy.yml")
    parser.add_argument("--allow-outside-eu", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("create-bucket")
    upload = commands.add_parser("upload-images")
    upload.add_argument("folder", type=Path)
    package = commands.add_parser("package")
    package.add_argument("--dist", type=Path, help="use this dist/ instead of `kedro package`")
    package.add_argument("--weights", type=Path, help="the MobileNetV2 .h5 file to stage")
    create = commands.add_parser("create-cluster")
    create.add_argument("--name", default="fruit_pipeline")
    run = commands.add_parser("run")
    run.add_argument("cluster_id")
    run.add_argument("--pipeline")
    run.add_argument("--params")
    run.add_argument("--no-wait", dest="wait", action="store_false")
    run.add_argument("--poll-seconds", type=float, default=30)
    for name in ("status", "terminate"):
        commands.add_parser(name).add_argument("cluster_id")
    fetch = commands.add_parser("fetch")
    fetch.add_argument("--dest", type=Path, default=Path("results"))
    policies = commands.add_parser("policies")
    policies.add_argument("--account-id", required=True)
    policies.add_argument("--dest", type=Path, default=Path("build/iam"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:
        settings = load_settings(args.project / "conf")
        if args.region:
            settings = replace(settings, region=args.region)
        check_region(settings.region, args.allow_outside_eu)
        _dispatch(Deployment(settings), args)
    except (ValueError, ClientError, BotoCoreError, S3UploadFailedError) as error:
        logger.error("fruit-deploy %s: %s", args.command, error)
        return 1
    return 0


def _dispatch(deployment: Deployment, args: argparse.Namespace) -> None:
    if args.command == "create-bucket":
        deployment.create_bucket()
    elif args.command == "upload-images":
        deployment.upload_images(args.folder)
    elif args.command == "package":
        dist = args.dist or build_package(args.project)
        deployment.package(args.project, dist, args.weights)
    elif args.command == "create-cluster":
        print(deployment.create_cluster(args.name))  # noqa: T201
    elif args.command == "run":
        step_id = deployment.run(
            args.cluster_id, args.pipeline, args.params, args.wait, args.poll_seconds
        )
        print(step_id)  # noqa: T201
    elif args.command == "status":
        print(deployment.status(args.cluster_id))  # noqa: T201
    elif args.command == "fetch":
        deployment.fetch(args.dest)
    elif args.command == "terminate":
        deployment.terminate(args.cluster_id)
    elif args.command == "policies":
        args.dest.mkdir(parents=True, exist_ok=True)
        documents = render_policies(args.project, deployment.settings, args.account_id)
        for name, document in documents.items():
            (args.dest / name).write_text(document)
        logger.info("wrote %s into %s", ", ".join(documents), args.dest)


if __name__ == "__main__":
    sys.exit(main())
