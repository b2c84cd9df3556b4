"""Recorded HTTP requests become the authorizations AWS makes for them, evaluated as IAM does."""

import base64
import json

import pytest

from tests.support.helpers import PROJECT_ROOT
from tests.support.permissions import Resources, denied, iam_requests, stack_policies

BUCKET = "a-bucket"
CLUSTER = "j-1ABCDEF"
RESOURCES = Resources(
    cluster_tags={CLUSTER: {"project": "fruit_pipeline"}},
    stack_ids={
        "fruit-pipeline": "arn:aws:cloudformation:eu-west-3:123456789012:stack/fruit-pipeline/1"
    },
)


def entry(method: str, path: str, service: str, body: bytes = b"", **headers: str) -> dict:
    """A moto recorder entry signed by `someone` for `service` in eu-west-3."""
    authorization = (
        f"AWS4-HMAC-SHA256 Credential=someone/20261205/eu-west-3/{service}/aws4_request, "
        "SignedHeaders=host, Signature=0"
    )
    return {
        "method": method,
        "url": f"http://127.0.0.1:5000{path}",
        "headers": {"Authorization": authorization, **headers},
        "body": base64.b64encode(body).decode(),
        "body_encoded": True,
    }


def named(recorded: dict) -> list[tuple[str, str, dict]]:
    return [
        (request.action, request.resource, dict(request.context))
        for request in iam_requests(recorded, RESOURCES)
    ]


def test_s3_requests_name_the_action_and_the_object_or_bucket():
    key = f"/{BUCKET}/fruit_pipeline/images/apple/a%20b.jpg"
    assert named(entry("HEAD", key, "s3"))[0][:2] == (
        "s3:GetObject",
        f"arn:aws:s3:::{BUCKET}/fruit_pipeline/images/apple/a b.jpg",
    )
    assert named(entry("PUT", f"{key}?partNumber=2&uploadId=x", "s3"))[0][0] == "s3:PutObject"
    assert named(entry("DELETE", f"{key}?uploadId=x", "s3"))[0][0] == "s3:AbortMultipartUpload"
    (listing,) = named(entry("GET", f"/{BUCKET}/?list-type=2&prefix=fruit_pipeline%2F", "s3"))
    assert listing[:2] == ("s3:ListBucket", f"arn:aws:s3:::{BUCKET}")
    assert listing[2]["s3:prefix"] == "fruit_pipeline/"
    assert listing[2]["aws:RequestedRegion"] == "eu-west-3"
    copy = named(entry("PUT", key, "s3", **{"x-amz-copy-source": f"/{BUCKET}/other.jpg"}))
    assert [action for action, _, _ in copy] == ["s3:PutObject", "s3:GetObject"]
    assert copy[1][1] == f"arn:aws:s3:::{BUCKET}/other.jpg"


def test_deleting_several_objects_authorizes_each_key():
    body = b"<Delete><Object><Key>data/a</Key></Object><Object><Key>data/b</Key></Object></Delete>"
    deletes = named(entry("POST", f"/{BUCKET}/?delete", "s3", body))
    assert [(action, resource) for action, resource, _ in deletes] == [
        ("s3:DeleteObject", f"arn:aws:s3:::{BUCKET}/data/a"),
        ("s3:DeleteObject", f"arn:aws:s3:::{BUCKET}/data/b"),
    ]


def test_run_job_flow_carries_its_tags_and_passes_both_roles():
    body = json.dumps(
        {
            "ServiceRole": "emr-service",
            "JobFlowRole": "emr-ec2",
            "Tags": [{"Key": "project", "Value": "fruit_pipeline"}],
        }
    ).encode()
    run, *passed = named(
        entry(
            "POST", "/", "elasticmapreduce", body, **{"X-Amz-Target": "ElasticMapReduce.RunJobFlow"}
        )
    )
    assert run[:2] == ("elasticmapreduce:RunJobFlow", "*")
    assert run[2]["elasticmapreduce:RequestTag/project"] == "fruit_pipeline"
    assert [(action, resource) for action, resource, _ in passed] == [
        ("iam:PassRole", "arn:aws:iam::123456789012:role/emr-service"),
        ("iam:PassRole", "arn:aws:iam::123456789012:role/emr-ec2"),
    ]
    steps = named(
        entry(
            "POST",
            "/",
            "elasticmapreduce",
            json.dumps({"JobFlowId": CLUSTER, "Steps": []}).encode(),
            **{"X-Amz-Target": "ElasticMapReduce.AddJobFlowSteps"},
        )
    )
    assert steps[0][1] == f"arn:aws:elasticmapreduce:eu-west-3:123456789012:cluster/{CLUSTER}"
    assert steps[0][2]["elasticmapreduce:ResourceTag/project"] == "fruit_pipeline"


def test_a_request_without_a_mapping_fails_instead_of_passing_unevaluated():
    with pytest.raises(ValueError, match="no IAM mapping"):
        named(entry("PUT", f"/{BUCKET}/key?tagging", "s3"))
    with pytest.raises(ValueError, match="no IAM mapping for ec2:RunInstances"):
        named(entry("POST", "/", "ec2", b"Action=RunInstances&Version=2016-11-15"))


def test_the_simulator_allows_within_the_template_and_refuses_outside_it():
    parameters = {
        "BucketName": BUCKET,
        "ProjectPrefix": "fruit_pipeline",
        "DataPrefix": "fruit_pipeline/data",
        "LogsPrefix": "fruit_pipeline/logs",
        "ServiceRoleName": "emr-service",
        "InstanceProfileName": "emr-ec2",
        "ProjectTag": "fruit_pipeline",
    }
    policies = stack_policies(
        PROJECT_ROOT / "deploy" / "cloudformation" / "account.yaml",
        parameters,
        "eu-west-3",
        "fruit-pipeline",
    )
    write = f"/{BUCKET}/fruit_pipeline/data/out.csv"
    requests = [
        *iam_requests(entry("PUT", write, "s3"), RESOURCES),
        *iam_requests(entry("PUT", f"/{BUCKET}/fruit_pipeline/images/x.jpg", "s3"), RESOURCES),
    ]
    refused = denied(requests, {"someone": policies.node}, {BUCKET: policies.bucket})
    # The nodes write outputs, not images.
    assert [(request.resource, answer) for request, answer in refused] == [
        (f"arn:aws:s3:::{BUCKET}/fruit_pipeline/images/x.jpg", "ImplicitlyDenied")
    ]
    tagged_elsewhere = Resources({CLUSTER: {"project": "another"}}, RESOURCES.stack_ids)
    terminate = entry(
        "POST",
        "/",
        "elasticmapreduce",
        json.dumps({"JobFlowIds": [CLUSTER]}).encode(),
        **{"X-Amz-Target": "ElasticMapReduce.TerminateJobFlows"},
    )
    operator = {"someone": policies.operator}
    assert not denied(iam_requests(terminate, RESOURCES), operator, {})
    assert denied(iam_requests(terminate, tagged_elsewhere), operator, {})
