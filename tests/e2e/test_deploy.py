"""`fruit-deploy` against a moto server on 127.0.0.1: real HTTP S3, EMR, IAM and CloudFormation
APIs."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import replace

import boto3
import numpy as np
import pandas as pd
import pytest
from botocore.stub import Stubber
from cfnlint.decode import decode
from kedro.io import DataCatalog

from fruit_pipeline.apps.deploy import staging
from fruit_pipeline.apps.deploy.commands import (
    STACK_TEMPLATE,
    Deployment,
    DeploymentFailed,
    main,
    step_command,
)
from fruit_pipeline.apps.deploy.network import (
    EMR_MANAGED_POLICY_TAG,
    NetworkNotReady,
    check_subnet,
)
from fruit_pipeline.apps.deploy.settings import EU_REGIONS, Settings, check_region, load_settings
from fruit_pipeline.config import config_loader
from fruit_pipeline.core import feature_model
from fruit_pipeline.core.classifier_export import ExportedClassifier
from fruit_pipeline.pipelines.reduce.nodes import plot_cumulative_variance
from tests.support.helpers import (
    NETWORK_TEMPLATE,
    PROJECT_ROOT,
    emr_ready_subnet,
    moto_server,
    new_project,
    vpc_endpoints,
)

REGION = "eu-west-3"


@pytest.fixture(scope="module")
def aws():
    """A moto server process on loopback; boto3 and s3fs reach it through AWS_ENDPOINT_URL."""
    with moto_server(REGION) as environment:
        yield environment


@pytest.fixture(scope="module")
def ready_subnet(aws) -> str:
    """The network template's subnet, made once: the tests that change a network make their own."""
    return emr_ready_subnet(REGION, "fruit-deploy-tests")


@pytest.fixture
def settings(aws, ready_subnet, monkeypatch) -> Settings:
    """The project's emr settings with a bucket, a stack and roles of this test's own."""
    name = f"fruit-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("FRUIT_PIPELINE_BUCKET", name)
    return replace(
        load_settings(PROJECT_ROOT / "conf"),
        stack_name=name,
        service_role=f"{name}-service",
        instance_profile=f"{name}-ec2",
        subnet_id=ready_subnet,
    )


@pytest.fixture
def deployment(settings) -> Deployment:
    created = Deployment(settings)
    created.apply_stack(PROJECT_ROOT / STACK_TEMPLATE)
    return created


TEMPLATE = PROJECT_ROOT / STACK_TEMPLATE


def template_resources() -> dict:
    """The template's resources as CloudFormation reads them (cfn-lint's own parser)."""
    template, problems = decode(str(TEMPLATE))
    assert not problems
    return template["Resources"]


def test_the_templates_pass_cfn_lint():
    subprocess.run(["cfn-lint", str(TEMPLATE), str(NETWORK_TEMPLATE)], check=True)


def test_the_network_template_makes_a_private_subnet_the_preflight_takes(settings):
    ec2 = boto3.client("ec2", region_name=REGION)
    subnet_id = emr_ready_subnet(REGION, settings.bucket)
    check_subnet(ec2, subnet_id, REGION)
    (subnet,) = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
    vpc = {"Name": "vpc-id", "Values": [subnet["VpcId"]]}
    # Private: no public addresses (moto's CloudFormation does not set them: the template does),
    # no way out but the two endpoints.
    network, problems = decode(str(NETWORK_TEMPLATE))
    assert not problems
    assert network["Resources"]["PrivateSubnet"]["Properties"]["MapPublicIpOnLaunch"] is False
    assert not ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [subnet["VpcId"]]}]
    )["InternetGateways"]
    assert not ec2.describe_nat_gateways(Filters=[vpc])["NatGateways"]
    endpoints = {
        endpoint["ServiceName"].rsplit(".", 1)[1]: endpoint
        for endpoint in ec2.describe_vpc_endpoints(Filters=[vpc])["VpcEndpoints"]
    }
    assert sorted(endpoints) == ["kms", "s3"]
    # The gateway reaches the project's bucket and EMR 7's repositories, no other bucket.
    # moto gives the document as Python writes a dict, not as JSON.
    policy = ast.literal_eval(endpoints["s3"]["PolicyDocument"])
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == {
        f"arn:aws:s3:::{settings.bucket}",
        f"arn:aws:s3:::{settings.bucket}/*",
        f"arn:aws:s3:::al2023-repos-{REGION}-de612dc2/*",
        f"arn:aws:s3:::repo.{REGION}.emr.amazonaws.com/*",
    }
    (group,) = ec2.describe_security_groups(GroupIds=[endpoints["kms"]["Groups"][0]["GroupId"]])[
        "SecurityGroups"
    ]
    (https,) = group["IpPermissions"]
    assert (https["FromPort"], https["ToPort"]) == (443, 443)
    assert https["IpRanges"][0]["CidrIp"] == subnet["CidrBlock"]


def test_the_stack_creates_the_bucket_and_roles_in_the_eu(deployment, settings):
    s3 = boto3.client("s3", region_name=REGION)
    bucket = settings.bucket
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == REGION
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert {"Key": "project", "Value": "fruit_pipeline"} in s3.get_bucket_tagging(Bucket=bucket)[
        "TagSet"
    ]
    iam = boto3.client("iam")
    profile = iam.get_instance_profile(InstanceProfileName=settings.instance_profile)
    assert [role["RoleName"] for role in profile["InstanceProfile"]["Roles"]] == [
        settings.instance_profile
    ]
    trust = iam.get_role(RoleName=settings.service_role)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "elasticmapreduce.amazonaws.com"}
    # moto's CloudFormation does not attach managed policies: check what the template attaches.
    service_role = template_resources()["EmrServiceRole"]["Properties"]
    assert service_role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"}
    ]
    # Applying it again is an update with nothing to do.
    deployment.apply_stack(TEMPLATE)


def test_the_bucket_is_private_tls_only_with_lifecycle_rules_and_no_versioning():
    # moto's CloudFormation leaves these bucket properties out: check what the template says.
    bucket = template_resources()["DataBucket"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert "VersioningConfiguration" not in bucket
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }
    assert rules["expire-cluster-logs"]["Prefix"] == {"Fn::Sub": "${LogsPrefix}/"}
    (statement,) = template_resources()["DataBucketPolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == (
        "Deny",
        "*",
        "s3:*",
    )
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def policy_statements(document: dict | str) -> dict[str, dict]:
    """The statements of a policy document by Sid."""
    if isinstance(document, str):
        # moto's CloudFormation stores an inline policy as the repr of the template's mapping.
        document = ast.literal_eval(document)
    return {statement["Sid"]: statement for statement in document["Statement"]}


def test_the_instance_role_lists_the_bucket_and_reads_folder_markers(deployment, settings):
    iam = boto3.client("iam")
    document = iam.get_role_policy(
        RoleName=settings.instance_profile, PolicyName="fruit-pipeline-data"
    )["PolicyDocument"]
    statements = policy_statements(document)
    listing = statements["ListAndLocateTheBucket"]
    # Unconditioned: with a prefix condition, S3 answers 403 instead of 404 for a missing key.
    assert "Condition" not in listing
    assert {"s3:ListBucket", "s3:GetBucketLocation"} <= set(listing["Action"])
    assert listing["Resource"] == f"arn:aws:s3:::{settings.bucket}"
    assert statements["ReadTheProject"]["Resource"] == [
        f"arn:aws:s3:::{settings.bucket}/{settings.prefix}",
        f"arn:aws:s3:::{settings.bucket}/{settings.prefix}_$folder$",
        f"arn:aws:s3:::{settings.bucket}/{settings.prefix}/*",
    ]
    assert statements["WriteOutputsAndLogs"]["Resource"] == [
        f"arn:aws:s3:::{settings.bucket}/{settings.prefix}/data*",
        f"arn:aws:s3:::{settings.bucket}/{settings.prefix}/logs*",
    ]


def test_the_operator_acts_only_on_the_projects_clusters_and_creates_emrs_linked_role(
    deployment, settings
):
    iam = boto3.client("iam")
    outputs = deployment.apply_stack(TEMPLATE)
    policy = iam.get_policy(PolicyArn=outputs["OperatorPolicyArn"])["Policy"]
    document = iam.get_policy_version(
        PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"]
    )["PolicyVersion"]["Document"]
    statements = policy_statements(document)
    create = statements["CreateTaggedClusters"]
    assert create["Action"] == ["elasticmapreduce:RunJobFlow"]
    assert create["Condition"]["StringEquals"] == {
        "aws:RequestedRegion": REGION,
        "elasticmapreduce:RequestTag/project": settings.tags["project"],
    }
    clusters = statements["ActOnTheProjectsClusters"]
    assert {
        "elasticmapreduce:AddJobFlowSteps",
        "elasticmapreduce:TerminateJobFlows",
        "elasticmapreduce:PutAutoTerminationPolicy",
    } <= set(clusters["Action"])
    assert clusters["Resource"] == f"arn:aws:elasticmapreduce:{REGION}:123456789012:cluster/*"
    assert clusters["Condition"] == {
        "StringEquals": {"elasticmapreduce:ResourceTag/project": settings.tags["project"]}
    }
    # create-cluster reads the security configuration's name from this stack only.
    outputs_read = statements["ReadTheStacksOutputs"]
    assert outputs_read["Action"] == "cloudformation:DescribeStacks"
    assert outputs_read["Resource"].startswith(
        f"arn:aws:cloudformation:{REGION}:123456789012:stack/{settings.stack_name}/"
    )
    # Every EMR action is in one of the two statements, none on every cluster.
    actions = [statement["Action"] for statement in statements.values()]
    emr_actions = [
        action
        for listed in actions
        for action in ([listed] if isinstance(listed, str) else listed)
        if action.startswith("elasticmapreduce:")
    ]
    assert sorted(emr_actions) == sorted(create["Action"] + clusters["Action"])
    linked = statements["EmrServiceLinkedRole"]
    assert linked["Action"] == "iam:CreateServiceLinkedRole"
    assert linked["Condition"] == {
        "StringLike": {"iam:AWSServiceName": "elasticmapreduce.amazonaws.com"}
    }
    linked_policy = statements["EmrServiceLinkedRolePolicy"]
    assert linked_policy["Action"] == "iam:PutRolePolicy"
    assert linked_policy["Resource"] == linked["Resource"]
    assert "Condition" not in linked_policy
    assert "s3:*" not in json.dumps(document)


def test_the_stack_gives_the_clusters_a_security_configuration(deployment):
    outputs = deployment.apply_stack(TEMPLATE)
    resources = boto3.client("cloudformation").list_stack_resources(
        StackName=deployment.settings.stack_name
    )["StackResourceSummaries"]
    (made,) = [r for r in resources if r["ResourceType"] == "AWS::EMR::SecurityConfiguration"]
    assert outputs["SecurityConfigurationName"] == made["PhysicalResourceId"]
    assert outputs["ClusterDiskKeyArn"].startswith(f"arn:aws:kms:{REGION}:123456789012:key/")
    # moto's server does not show what its CloudFormation made to its EMR and KMS APIs: check
    # what the template says.
    template = template_resources()
    configuration = template["ClusterSecurityConfiguration"]["Properties"]["SecurityConfiguration"]
    assert configuration["InstanceMetadataServiceConfiguration"] == {
        "MinimumInstanceMetadataServiceVersion": 2,
        "HttpPutResponseHopLimit": 1,
    }
    encryption = configuration["EncryptionConfiguration"]
    assert encryption["EnableAtRestEncryption"] is True
    at_rest = encryption["AtRestEncryptionConfiguration"]
    assert at_rest["LocalDiskEncryptionConfiguration"] == {
        "EncryptionKeyProviderType": "AwsKms",
        "AwsKmsKey": {"Fn::GetAtt": ["ClusterDiskKey", "Arn"]},
        "EnableEbsEncryption": True,
    }
    assert at_rest["S3EncryptionConfiguration"] == {"EncryptionMode": "SSE-S3"}
    # The nodes (their data keys) and EMR's service role (the grants of encrypted EBS volumes)
    # use the key; moto keeps the key policy but does not evaluate it.
    statements = {
        statement["Sid"]: statement
        for statement in template["ClusterDiskKey"]["Properties"]["KeyPolicy"]["Statement"]
    }
    users = statements["TheNodesAndEmrUseTheKey"]
    assert users["Principal"]["AWS"] == [
        {"Fn::GetAtt": ["ClusterInstanceRole", "Arn"]},
        {"Fn::GetAtt": ["EmrServiceRole", "Arn"]},
    ]
    assert {"kms:GenerateDataKey*", "kms:Decrypt"} <= set(users["Action"])
    grants = statements["EmrAttachesEncryptedVolumes"]
    assert grants["Principal"]["AWS"] == {"Fn::GetAtt": ["EmrServiceRole", "Arn"]}
    assert "kms:CreateGrant" in grants["Action"]
    assert grants["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": True}}


def test_create_cluster_refuses_a_stack_without_the_security_configuration(settings):
    sent = []
    unready = Deployment(replace(settings, stack_name="not-applied"))
    unready.emr.meta.events.register(
        "provide-client-params.emr.RunJobFlow", lambda params, **_: sent.append(params)
    )
    with pytest.raises(DeploymentFailed, match="not-applied .*`fruit-deploy apply-stack` first"):
        unready.create_cluster("fruit_pipeline test", wait=False)
    assert not sent


def test_a_stack_that_fails_names_the_resources_and_why(settings, tmp_path):
    deployment = Deployment(settings)
    stack_id = f"arn:aws:cloudformation:{REGION}:123456789012:stack/{settings.stack_name}/1"
    failed_event = {
        "StackId": stack_id,
        "EventId": "1",
        "StackName": settings.stack_name,
        "LogicalResourceId": "DataBucket",
        "ResourceStatus": "CREATE_FAILED",
        "ResourceStatusReason": f"{settings.bucket} already exists",
        "Timestamp": "2026-01-01T00:00:00Z",
    }
    deleted = {
        "Stacks": [
            {
                "StackId": stack_id,
                "StackName": settings.stack_name,
                "StackStatus": "DELETE_COMPLETE",
                "CreationTime": "2026-01-01T00:00:00Z",
            }
        ]
    }
    with Stubber(deployment.cloudformation) as cloudformation:
        cloudformation.add_client_error(
            "describe_stacks", service_message=f"Stack with id {settings.stack_name} does not exist"
        )
        cloudformation.add_response("create_stack", {"StackId": stack_id})
        cloudformation.add_response("describe_stacks", deleted, {"StackName": stack_id})
        cloudformation.add_response(
            "describe_stack_events", {"StackEvents": [failed_event]}, {"StackName": stack_id}
        )
        with pytest.raises(DeploymentFailed) as raised:
            deployment.apply_stack(TEMPLATE)
    assert str(raised.value) == (
        f"stack {settings.stack_name}: DataBucket CREATE_FAILED: {settings.bucket} already exists"
    )


def test_remove_stack_keeps_a_bucket_with_data_unless_asked(deployment, settings):
    s3 = boto3.client("s3")
    s3.put_object(Bucket=settings.bucket, Key=f"{settings.prefix}/data/x.csv", Body=b"1")
    with pytest.raises(ValueError, match="--empty-bucket"):
        deployment.remove_stack(empty_bucket=False)
    assert s3.head_bucket(Bucket=settings.bucket)
    deployment.remove_stack(empty_bucket=True)
    assert settings.bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    with pytest.raises(boto3.client("iam").exceptions.NoSuchEntityException):
        boto3.client("iam").get_role(RoleName=settings.service_role)


def test_a_region_outside_the_eu_is_refused(aws, caplog):
    assert main(["--project", str(PROJECT_ROOT), "--region", "us-east-1", "apply-stack"]) == 1
    assert "outside the EU" in caplog.text
    assert "--allow-outside-eu" in caplog.text


def test_images_are_uploaded_once(deployment, settings, test1_images, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(test1_images, images)
    assert deployment.upload_images(images) == (20, 0)
    assert deployment.upload_images(images) == (0, 20)
    (images / "apple" / "54_100.jpg").write_bytes(b"changed")
    assert deployment.upload_images(images) == (1, 19)
    keys = boto3.client("s3").list_objects_v2(Bucket=settings.bucket, Prefix="fruit_pipeline/")
    assert f"{settings.prefix}/images/apple/54_100.jpg" in {o["Key"] for o in keys["Contents"]}


@pytest.mark.usefixtures("deployment")
def test_package_refuses_a_model_cache_with_another_conversion_of_the_weights(
    settings, weights_file, packaged_project, monkeypatch, caplog
):
    monkeypatch.setenv("FRUIT_PIPELINE_BUCKET", settings.bucket)
    checksum = feature_model.weights_sha256(str(weights_file))
    # What another Keras or tf2onnx version would have cached: the nodes could not tell which.
    other = f"mobilenet_v2_features-{checksum[:16]}-{'0' * 16}.onnx"
    assert feature_model.is_conversion_of(other, checksum)
    cache = settings.key(settings.model_cache)
    boto3.client("s3").put_object(Bucket=settings.bucket, Key=f"{cache}/{other}", Body=b"x")
    arguments = ["--dist", str(packaged_project / "dist"), "--weights", str(weights_file)]
    assert main(["--project", str(packaged_project), "package", *arguments]) == 1
    assert f"holds other ONNX models of these weights ({other})" in caplog.text
    assert "aws s3 rm" in caplog.text
    # Refused before anything was staged.
    listed = boto3.client("s3").list_objects_v2(Bucket=settings.bucket, Prefix=settings.prefix)
    assert [item["Key"] for item in listed["Contents"]] == [f"{cache}/{other}"]


@pytest.mark.usefixtures("deployment")
def test_package_says_the_weights_need_the_keras_extra_to_convert(
    settings, weights_file, packaged_project, monkeypatch, caplog
):
    monkeypatch.setenv("FRUIT_PIPELINE_BUCKET", settings.bucket)
    monkeypatch.setattr(feature_model, "can_convert", lambda: False)
    arguments = ["--dist", str(packaged_project / "dist"), "--weights", str(weights_file)]
    assert main(["--project", str(packaged_project), "package", *arguments]) == 1
    assert "pip install 'fruit_pipeline[keras]'" in caplog.text
    missing = ["--dist", str(packaged_project / "dist"), "--weights", "no/such.h5"]
    assert main(["--project", str(packaged_project), "package", *missing]) == 1
    assert "package --weights no/such.h5: no such file" in caplog.text


def test_the_cluster_request_carries_the_bootstrap_sizes_logs_and_idle_stop(deployment, settings):
    sent = {}
    deployment.emr.meta.events.register(
        "provide-client-params.emr.RunJobFlow", lambda params, **_: sent.update(params)
    )
    cluster_id = deployment.create_cluster("fruit_pipeline test")
    emr = boto3.client("emr")
    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["ReleaseLabel"] == settings.release_label
    assert cluster["LogUri"] == f"s3://{settings.bucket}/{settings.prefix}/logs/"
    assert {"Key": "project", "Value": "fruit_pipeline"} in cluster["Tags"]
    groups = {
        g["InstanceGroupType"]: g
        for g in emr.list_instance_groups(ClusterId=cluster_id)["InstanceGroups"]
    }
    assert groups["MASTER"]["RequestedInstanceCount"] == 1
    assert groups["CORE"]["RequestedInstanceCount"] == 2
    assert {g["InstanceType"] for g in groups.values()} == {"m5.xlarge"}
    assert {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"} in cluster["Tags"]
    assert cluster["Status"]["State"] == "WAITING"
    bootstrap = emr.list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"]
    deploy = f"s3://{settings.bucket}/{settings.prefix}/deploy"
    assert bootstrap[0]["ScriptPath"] == f"{deploy}/bootstrap.sh"
    assert bootstrap[0]["Args"] == [f"{deploy}/staged.env", "/opt/fruit_pipeline"]
    configurations = {c["Classification"]: c for c in cluster["Configurations"]}
    (exports,) = configurations["spark-env"]["Configurations"]
    assert exports["Properties"] == {
        "PYSPARK_PYTHON": "/opt/fruit_pipeline/venv/bin/python",
        "PYSPARK_DRIVER_PYTHON": "/opt/fruit_pipeline/venv/bin/python",
        "JDK_JAVA_OPTIONS": "--add-modules=jdk.incubator.vector",
    }
    assert configurations["delta-defaults"]["Properties"] == {"delta.enabled": "true"}
    # moto keeps no auto-termination policy: check what the request carried.
    assert sent["AutoTerminationPolicy"] == {"IdleTimeout": settings.idle_timeout_seconds}
    assert sent["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert sent["EbsRootVolumeSize"] == settings.ebs_root_volume_gib == 30
    assert sent["MonitoringConfiguration"]["S3LoggingConfiguration"]["LogTypeUploadPolicy"] == {
        "system-logs": "on-customer-s3only",
        "application-logs": "on-customer-s3only",
        "persistent-ui-logs": "disabled",
    }
    outputs = deployment.apply_stack(TEMPLATE)
    assert sent["SecurityConfiguration"] == outputs["SecurityConfigurationName"]


def _unready_subnet(undo: str) -> str:
    """A ready subnet with one thing undone: its privacy (a route to an internet gateway), the
    subnet's tag, the VPC's tag, the S3 or the KMS endpoint, HTTPS into the KMS endpoint."""
    ec2 = boto3.client("ec2", region_name=REGION)
    subnet_id = emr_ready_subnet(REGION, "fruit-bucket")
    (subnet,) = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
    tag = [{"Key": key} for key in EMR_MANAGED_POLICY_TAG]
    if undo == "private":
        (table,) = ec2.describe_route_tables(
            Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}]
        )["RouteTables"]
        gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=subnet["VpcId"])
        ec2.create_route(
            RouteTableId=table["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway
        )
    elif undo == "KMS group":
        (endpoint,) = vpc_endpoints(ec2, subnet["VpcId"], f"com.amazonaws.{REGION}.kms")
        (group,) = endpoint["Groups"]
        (rules,) = ec2.describe_security_groups(GroupIds=[group["GroupId"]])["SecurityGroups"]
        ec2.revoke_security_group_ingress(
            GroupId=group["GroupId"], IpPermissions=rules["IpPermissions"]
        )
    elif undo == "subnet tag":
        ec2.delete_tags(Resources=[subnet_id], Tags=tag)
    elif undo == "VPC tag":
        ec2.delete_tags(Resources=[subnet["VpcId"]], Tags=tag)
    else:
        service = f"com.amazonaws.{REGION}.{undo.removesuffix(' route').lower()}"
        (endpoint,) = vpc_endpoints(ec2, subnet["VpcId"], service)
        ec2.delete_vpc_endpoints(VpcEndpointIds=[endpoint["VpcEndpointId"]])
    return subnet_id


@pytest.mark.parametrize(
    ("undo", "refusal"),
    [
        ("private", r"subnet subnet-\w+ is public: .* internet gateway igw-\w+\. .*network\.yaml"),
        ("subnet tag", r"subnet subnet-\w+ is not tagged for EMR's managed policy.*create-tags"),
        ("VPC tag", r"VPC vpc-\w+ is not tagged for EMR's managed policy.*create-tags"),
        ("S3 route", r"no route to S3.*create-vpc-endpoint --vpc-id vpc-\w+ --service-name "),
        ("KMS route", r"no route to KMS.*--service-name com\.amazonaws\.eu-\w+-\d\.kms "),
        ("KMS group", r"security groups \(sg-\w+\) let no HTTPS in .*--port 443 --cidr 10\.42\."),
    ],
)
def test_create_cluster_refuses_a_subnet_emr_s3_or_kms_cannot_use(deployment, undo, refusal):
    sent = []
    unready = Deployment(replace(deployment.settings, subnet_id=_unready_subnet(undo)))
    unready.emr.meta.events.register(
        "provide-client-params.emr.RunJobFlow", lambda params, **_: sent.append(params)
    )
    with pytest.raises(NetworkNotReady, match=refusal):
        unready.create_cluster("fruit_pipeline test", wait=False)
    assert not sent


def test_a_private_subnet_routed_through_a_nat_gateway_needs_no_endpoint(aws):
    ec2 = boto3.client("ec2", region_name=REGION)
    subnet_id = emr_ready_subnet(REGION, "fruit-deploy-tests")
    (subnet,) = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
    vpc = {"Name": "vpc-id", "Values": [subnet["VpcId"]]}
    endpoints = ec2.describe_vpc_endpoints(Filters=[vpc])["VpcEndpoints"]
    ec2.delete_vpc_endpoints(VpcEndpointIds=[e["VpcEndpointId"] for e in endpoints])
    (table,) = ec2.describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}]
    )["RouteTables"]
    # The NAT gateway lives in a public subnet of its own, which the nodes' subnet routes to.
    public = ec2.create_subnet(VpcId=subnet["VpcId"], CidrBlock="10.42.16.0/24")["Subnet"]
    address = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=public["SubnetId"], AllocationId=address)["NatGateway"]
    ec2.create_route(
        RouteTableId=table["RouteTableId"],
        DestinationCidrBlock="0.0.0.0/0",
        NatGatewayId=nat["NatGatewayId"],
    )
    check_subnet(ec2, subnet_id, REGION)


def test_create_cluster_refuses_a_cluster_without_a_subnet(settings):
    settings = replace(settings, subnet_id=None)
    with pytest.raises(NetworkNotReady, match="subnet_id is not set"):
        Deployment(settings).create_cluster("fruit_pipeline test", wait=False)


def test_create_cluster_refuses_a_subnet_that_does_not_exist(settings):
    settings = replace(settings, subnet_id="subnet-0123456789abcdef0")
    with pytest.raises(NetworkNotReady, match="subnet-0123456789abcdef0 does not exist in eu-"):
        Deployment(settings).create_cluster("fruit_pipeline test", wait=False)


def test_run_adds_a_kedro_run_step_then_status_and_terminate(deployment, settings):
    cluster_id = deployment.create_cluster("fruit_pipeline test")
    step_id = deployment.run(cluster_id, "reduce", "reduce.variance_threshold=0.9", wait=False)
    step = boto3.client("emr").describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]
    args = step["Config"]["Args"]
    assert step["Config"]["Jar"] == "command-runner.jar"
    assert args[:2] == ["bash", "-c"]
    assert (
        "kedro run --env=emr --pipelines reduce --params reduce.variance_threshold=0.9" in args[2]
    )
    assert deployment.step_logs(cluster_id, step_id).startswith(f"s3://{settings.bucket}/")
    status = deployment.status(cluster_id)
    assert status["steps"][0]["id"] == step_id
    deployment.terminate(cluster_id)
    state = boto3.client("emr").describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
    assert state == "TERMINATED"


def test_a_cluster_that_fails_to_start_says_why_and_where_the_bootstrap_log_is(settings):
    deployment = Deployment(settings)
    failed = {
        "Cluster": {
            "Id": "j-1",
            "Name": "fruit_pipeline",
            "Status": {
                "State": "TERMINATED_WITH_ERRORS",
                "StateChangeReason": {
                    "Code": "BOOTSTRAP_FAILURE",
                    "Message": "On the master instance (i-0abc), bootstrap action 1 returned a "
                    "non-zero return code",
                },
            },
        }
    }
    with Stubber(deployment.emr) as emr:
        emr.add_response("describe_cluster", failed, {"ClusterId": "j-1"})
        emr.add_response("describe_cluster", failed, {"ClusterId": "j-1"})
        with pytest.raises(DeploymentFailed) as raised:
            deployment.wait_for_cluster("j-1")
    message = str(raised.value)
    assert "TERMINATED_WITH_ERRORS" in message and "BOOTSTRAP_FAILURE" in message
    logs = f"s3://{settings.bucket}/{settings.prefix}/logs/j-1/node/"
    assert f"{logs}<instance id>/bootstrap-actions/1/stderr.gz" in message


def test_a_transient_cluster_is_asked_to_run_its_steps_then_terminate(deployment, settings):
    sent = {}
    deployment.emr.meta.events.register(
        "provide-client-params.emr.RunJobFlow", lambda params, **_: sent.update(params)
    )
    cluster_id = deployment.create_cluster(
        "fruit_pipeline test", wait=False, transient=[None, "train"], params="train.seed=3"
    )
    assert sent["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False
    steps = boto3.client("emr").list_steps(ClusterId=cluster_id)["Steps"][::-1]
    assert [step["Name"] for step in steps] == ["kedro run __default__", "kedro run train"]
    assert {step["ActionOnFailure"] for step in steps} == {"TERMINATE_CLUSTER"}
    assert [step["Config"]["Args"] for step in steps] == [
        step_command(settings, None, "train.seed=3"),
        step_command(settings, "train", "train.seed=3"),
    ]


def test_a_transient_cluster_whose_step_failed_is_an_error_with_its_log(settings):
    deployment = Deployment(settings)
    step = {"Id": "s-2", "Name": "kedro run train", "Status": {"State": "FAILED"}}
    done = {"Id": "s-1", "Name": "kedro run __default__", "Status": {"State": "COMPLETED"}}
    with Stubber(deployment.emr) as emr:
        emr.add_response(
            "describe_cluster",
            {"Cluster": {"Id": "j-1", "Name": "c", "Status": {"State": "TERMINATED"}}},
            {"ClusterId": "j-1"},
        )
        emr.add_response("list_steps", {"Steps": [step, done]}, {"ClusterId": "j-1"})
        with pytest.raises(
            DeploymentFailed, match=r"step s-2 \(kedro run train\) FAILED, its logs: s3://.*/j-1/"
        ):
            deployment.wait_for_transient_cluster("j-1")


def test_create_cluster_takes_pipelines_only_for_a_transient_cluster(settings, caplog):
    assert main(["--project", str(PROJECT_ROOT), "create-cluster", "--pipeline", "train"]) == 1
    assert "only with --transient" in caplog.text


def test_a_failed_step_is_an_error_with_its_log(settings):
    deployment = Deployment(settings)
    with Stubber(deployment.emr) as emr:
        emr.add_response("add_job_flow_steps", {"StepIds": ["s-1"]})
        emr.add_response(
            "describe_step",
            {"Step": {"Id": "s-1", "Name": "kedro run", "Status": {"State": "FAILED"}}},
            {"ClusterId": "j-1", "StepId": "s-1"},
        )
        with pytest.raises(DeploymentFailed, match="step s-1 FAILED; its logs: s3://.*/logs/j-1/"):
            deployment.run("j-1", None, None, wait=True, poll_seconds=0)


def test_the_step_command_quotes_what_the_user_gives(settings):
    script = step_command(settings, "featurize", "images_root=s3://b/my images")[-1]
    assert (
        "kedro run --env=emr --pipelines featurize --params 'images_root=s3://b/my images'"
        in script
    )


def test_the_step_runs_kedro_with_the_bucket_prefix_and_region_deployed_to(settings, tmp_path):
    # The step's shell has the node's environment, not the operator's: run it with none.
    (tmp_path / "venv/bin").mkdir(parents=True)
    kedro = tmp_path / "venv/bin/kedro"
    kedro.write_text(
        '#!/bin/sh\necho "$FRUIT_PIPELINE_BUCKET $FRUIT_PIPELINE_PREFIX $AWS_DEFAULT_REGION $*"\n'
    )
    kedro.chmod(0o755)
    (tmp_path / "spark_env.sh").write_text("")
    script = step_command(settings, None, None)[-1].replace(settings.node_home, str(tmp_path))
    result = subprocess.run(
        ["env", "-i", "PATH=/usr/bin:/bin", "bash", "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == [
        settings.bucket,
        settings.prefix,
        settings.region,
        "run",
        "--env=emr",
    ]


def test_settings_without_the_project_tag_are_refused(tmp_path):
    conf = shutil.copytree(PROJECT_ROOT / "conf", tmp_path / "conf")
    deploy = conf / "emr" / "deploy.yml"
    deploy.write_text(deploy.read_text().replace("  project: fruit_pipeline", "  team: fruit"))
    with pytest.raises(ValueError, match="tags must give `project`"):
        load_settings(conf)


@pytest.mark.parametrize("region", ["eu-west-2", "eu-central-2", "us-east-1"])
def test_only_regions_of_eu_member_states_pass(region):
    with pytest.raises(ValueError, match=f"region {region} is outside the EU"):
        check_region(region, allow_outside_eu=False)
    check_region(region, allow_outside_eu=True)
    for region_in_the_eu in EU_REGIONS:
        check_region(region_in_the_eu, allow_outside_eu=False)


def test_fetch_brings_the_tables_and_reports_home(deployment, settings, tmp_path):
    s3 = boto3.client("s3")
    data = f"{settings.prefix}/data"
    for key in (
        "05_model_input/pca_features.csv",
        "08_reporting/variance_report.json",
        "08_reporting/featurize_summary.json",
        "08_reporting/confusion_matrix.png",
        "06_models/classifier_export.json",
        "06_models/classifier/metadata/part-00000",
        "04_feature/image_features/part-0.parquet",
        "08_reporting/notes.txt",
    ):
        s3.put_object(Bucket=settings.bucket, Key=f"{data}/{key}", Body=key.encode())
    written = deployment.fetch(tmp_path)
    # The catalog's whole-file outputs (its factories included), not the features or the model.
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "05_model_input/pca_features.csv",
        "06_models/classifier_export.json",
        "08_reporting/confusion_matrix.png",
        "08_reporting/featurize_summary.json",
        "08_reporting/variance_report.json",
    ]
    assert (
        tmp_path / "05_model_input/pca_features.csv"
    ).read_text() == "05_model_input/pca_features.csv"


def emr_catalog() -> DataCatalog:
    return DataCatalog.from_config(config_loader(PROJECT_ROOT, env="emr")["catalog"])


def test_the_emr_catalog_round_trips_through_s3(deployment, settings, monkeypatch, weights_file):
    monkeypatch.setenv("FRUIT_PIPELINE_BUCKET", settings.bucket)
    catalog = emr_catalog()
    root = f"s3://{settings.bucket}/{settings.prefix}"
    assert catalog["image_features"]._describe()["filepath"] == (
        f"{root}/data/04_feature/image_features"
    )
    table = pd.DataFrame({"path": ["s3://b/apple/1.jpg"], "label": ["apple"], "pc_1": [0.5]})
    catalog.save("pca_features", table)
    pd.testing.assert_frame_equal(catalog.load("pca_features"), table)
    report = {"components": 3, "cumulative_variance_at_k": 0.81}
    catalog.save("variance_report", report)
    assert catalog.load("variance_report") == report
    catalog.save(
        "cumulative_variance_plot",
        plot_cumulative_variance(
            {
                "cumulative_explained_variance": [0.5, 0.81, 0.9],
                "components": 2,
                "variance_threshold": 0.8,
                "image_count": 4,
                "cumulative_variance_at_k": 0.81,
            }
        ),
    )
    s3 = boto3.client("s3")
    plot = s3.get_object(
        Bucket=settings.bucket, Key=f"{settings.prefix}/data/08_reporting/cumulative_variance.png"
    )
    assert plot["Body"].read()[:8] == b"\x89PNG\r\n\x1a\n"
    key = f"{settings.prefix}/models/{weights_file.name}"
    s3.upload_file(str(weights_file), settings.bucket, key)
    from_s3 = feature_model.load_feature_weights(f"s3://{settings.bucket}/{key}")
    from_file = feature_model.load_feature_weights(str(weights_file))
    np.testing.assert_array_equal(from_s3[0], from_file[0])


def test_kedro_run_env_emr_end_to_end_with_the_root_on_a_local_folder(
    test1_images, weights_file, tmp_path
):
    (tmp_path / "project").mkdir()
    project = new_project(tmp_path / "project")
    root = tmp_path / "bucket"
    shutil.copytree(test1_images, root / "images")
    environment = {
        **os.environ,
        "FRUIT_PIPELINE_ROOT": str(root),
        "FRUIT_PIPELINE_SPARK_MASTER": "local[2]",
        # What EMR's delta-defaults classification puts on the cluster's classpath.
        "FRUIT_PIPELINE_SPARK_PACKAGES": config_loader(PROJECT_ROOT)["spark"][
            "spark.jars.packages"
        ],
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--env=emr",
            "--params",
            f"featurize.weights={weights_file}",
        ],
        cwd=project,
        env=environment,
        check=True,
        timeout=900,
    )
    summary = json.loads((root / "data/08_reporting/featurize_summary.json").read_text())
    assert summary["featurized"] == summary["files_listed"] == 20
    table = pd.read_csv(root / "data/05_model_input/pca_features.csv")
    assert len(table) == 20
    assert (root / "data/04_feature/image_features/_delta_log").is_dir()
    assert not (project / "data").exists()


BOOTSTRAP = PROJECT_ROOT / "deploy" / "emr" / "bootstrap.sh"


def test_the_bootstrap_script_passes_bash_and_shellcheck():
    subprocess.run(["bash", "-n", str(BOOTSTRAP)], check=True)
    subprocess.run(["shellcheck", str(BOOTSTRAP)], check=True)


def test_the_bootstrap_takes_every_staged_name_from_the_manifest():
    script = BOOTSTRAP.read_text()
    roles = [line.split("=", 1)[0] for line in staging.manifest("a.whl").splitlines()]
    assert set(re.findall(r"\$\{staged\[(\w+)\]\}", script)) == set(roles)
    # Every staged file is fetched by the name the manifest gives, none by one of its own.
    assert "$deploy_uri/" in script
    assert not re.findall(r"\$deploy_uri/(?!\$\{staged\[)", script)


def test_the_classifier_export_is_read_from_s3(deployment, settings, trained_sample_project):
    project, _ = trained_sample_project
    export = project / "data/06_models/classifier_export.json"
    key = f"{settings.prefix}/data/06_models/classifier_export.json"
    boto3.client("s3").upload_file(str(export), settings.bucket, key)
    from_s3 = ExportedClassifier.load(f"s3://{settings.bucket}/{key}")
    from_file = ExportedClassifier.load(str(export))
    width = int(from_file.selected_features.max()) + 1
    features = np.random.default_rng(0).normal(size=(3, width))
    np.testing.assert_array_equal(
        from_s3.probabilities(features), from_file.probabilities(features)
    )
    assert from_s3.labels == from_file.labels
