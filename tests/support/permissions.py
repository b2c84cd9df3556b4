"""AWS requests recorded by the S3 API server, evaluated as IAM would evaluate them.

moto's own IAM enforcement checks S3 requests by resource but every other service's against "*",
and it denies a statement whose conditions it cannot fill: it cannot say whether a tag-scoped
policy allows a call. So the moto server records every request (its recorder), each is turned
here into the IAM request(s) AWS authorizes for it (action, resource ARN, the condition keys the
policies use), and a policy simulator that evaluates conditions and resource ARNs
(@cloud-copilot/iam-simulate, in iam_simulator/, `npm ci` there) gives the answer for the
principal that signed it. An HTTP request this module cannot name an action for fails the test:
nothing the project sends goes unevaluated.
"""

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse
from xml.etree import ElementTree

SIMULATOR = Path(__file__).parent / "iam_simulator"
ACCOUNT = "123456789012"  # moto's account
PARTITION = "aws"
_SPACE = re.compile(r"\s*")
_CREDENTIAL = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


@dataclass(frozen=True)
class IamRequest:
    """One authorization AWS makes: who, what, on which resource, with which condition keys."""

    principal: str  # the access key that signed the HTTP request
    action: str
    resource: str
    context: tuple[tuple[str, str | tuple[str, ...]], ...] = ()
    http: str = field(default="", compare=False)  # "METHOD path", to say what was refused

    def simulation(self, identity_policy: dict, resource_policy: dict | None) -> dict:
        """The simulator's input for this request under one principal's policy."""
        context = {
            key: list(value) if isinstance(value, tuple) else value for key, value in self.context
        }
        simulation = {
            "identityPolicies": [{"name": "the-principals-policy", "policy": identity_policy}],
            "request": {
                "action": self.action,
                "principal": f"arn:{PARTITION}:iam::{ACCOUNT}:user/{self.principal}",
                "resource": {"accountId": ACCOUNT, "resource": self.resource},
                "contextVariables": context,
            },
        }
        if resource_policy is not None:
            simulation["resourcePolicy"] = resource_policy
        return simulation


@contextmanager
def signed_as(access_key: str) -> Iterator[None]:
    """boto3 clients made inside sign with `access_key` (and keep it after)."""
    saved = os.environ.get("AWS_ACCESS_KEY_ID")
    os.environ["AWS_ACCESS_KEY_ID"] = access_key
    try:
        yield
    finally:
        if saved is None:
            del os.environ["AWS_ACCESS_KEY_ID"]
        else:
            os.environ["AWS_ACCESS_KEY_ID"] = saved


def recorded_requests(recording: Path, principals: Iterable[str]) -> Iterator[dict]:
    """The recorder's entries signed by one of `principals` (the harness' own calls are not).

    The server records from several threads at once: an entry's newline can land after another
    entry, so the entries are read one JSON value after the other, not line by line.
    """
    wanted, text, decoder, at = set(principals), recording.read_text(), json.JSONDecoder(), 0
    while (at := _SPACE.match(text, at).end()) < len(text):
        entry, at = decoder.raw_decode(text, at)
        signer = _credential(entry["headers"])
        if signer and signer[0] in wanted:
            yield entry


@dataclass(frozen=True)
class Resources:
    """What the authorizations need to know of the resources the requests name."""

    cluster_tags: dict[str, dict[str, str]]  # EMR cluster id -> its tags
    stack_ids: dict[str, str]  # CloudFormation stack name -> its ARN


def iam_requests(entry: dict, resources: Resources) -> list[IamRequest]:
    """The authorizations AWS makes for one recorded HTTP request."""
    principal, region, service = _credential(entry["headers"])
    url = urlparse(entry["url"])
    http = f"{entry['method']} {url.path}{'?' + url.query if url.query else ''}"
    common = (("aws:RequestedRegion", region), ("aws:SecureTransport", "true"))
    if service == "s3":
        named = _s3_actions(entry, url)
    elif service == "elasticmapreduce":
        named = _emr_actions(entry, region, resources.cluster_tags)
    elif service in ("ec2", "cloudformation"):
        named = _query_actions(service, entry, resources.stack_ids)
    else:
        raise ValueError(f"no IAM mapping for a {service} request: {http}")
    return [
        IamRequest(principal, action, resource, tuple(sorted((*common, *context))), http)
        for action, resource, context in named
    ]


def denied(
    requests: Iterable[IamRequest],
    identity_policies: dict[str, dict],
    resource_policies: dict[str, dict],
) -> list[tuple[IamRequest, str]]:
    """The requests the principal's policy (and the resource's, for a bucket) does not allow."""
    unique = sorted(
        set(requests), key=lambda request: (request.principal, request.action, request.resource)
    )
    simulations = [
        request.simulation(
            identity_policies[request.principal], _resource_policy(request, resource_policies)
        )
        for request in unique
    ]
    answers = simulate(simulations)
    return [
        (request, answer["result"] if answer["result"] != "Error" else json.dumps(answer["errors"]))
        for request, answer in zip(unique, answers, strict=True)
        if answer["result"] != "Allowed"
    ]


def simulate(simulations: list[dict]) -> list[dict]:
    """The simulator's answers ('Allowed', 'ImplicitlyDenied', 'ExplicitlyDenied' or 'Error')."""
    if not (SIMULATOR / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir():
        raise RuntimeError(
            f"the IAM simulator is not installed: `npm ci --prefix {SIMULATOR}` (needs Node.js)"
        )
    result = subprocess.run(
        ["node", str(SIMULATOR / "simulate.mjs")],
        input=json.dumps(simulations),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def without_statement(policy: dict, sid: str) -> dict:
    """The policy without its statement `sid` (which must be there)."""
    kept = [statement for statement in policy["Statement"] if statement.get("Sid") != sid]
    assert len(kept) == len(policy["Statement"]) - 1, f"no statement {sid}"
    return {**policy, "Statement": kept}


def statement_actions(statement: dict) -> set[str]:
    """The actions a statement names (a string or a list)."""
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def _credential(headers: dict) -> tuple[str, str, str] | None:
    match = _CREDENTIAL.search(headers.get("Authorization", ""))
    return (match.group(1), match.group(2), match.group(3)) if match else None


def _body(entry: dict) -> bytes:
    body = entry.get("body") or ""
    return base64.b64decode(body) if entry.get("body_encoded") else body.encode()


def _resource_policy(request: IamRequest, resource_policies: dict[str, dict]) -> dict | None:
    if not request.action.startswith("s3:"):
        return None
    bucket = request.resource.removeprefix(f"arn:{PARTITION}:s3:::").split("/")[0]
    return resource_policies.get(bucket)


def _s3_actions(entry: dict, url) -> list[tuple[str, str, tuple]]:
    # Path-style addressing (the endpoint is an address): /bucket/key?subresource.
    bucket, _, key = url.path.lstrip("/").partition("/")
    key, method = unquote(key), entry["method"]
    query = parse_qs(url.query, keep_blank_values=True)
    bucket_arn = f"arn:{PARTITION}:s3:::{bucket}"
    if key:
        action = _s3_object_action(method, query)
        copy_source = {name.lower(): value for name, value in entry["headers"].items()}.get(
            "x-amz-copy-source"
        )
        if action and copy_source:  # CopyObject, UploadPartCopy: the source is read too
            source = f"arn:{PARTITION}:s3:::{unquote(copy_source).lstrip('/')}"
            return [(action, f"{bucket_arn}/{key}", ()), ("s3:GetObject", source, ())]
        if action:
            return [(action, f"{bucket_arn}/{key}", ())]
    elif method == "POST" and "delete" in query:  # DeleteObjects: each key is authorized
        keys = [
            element.text or ""
            for element in ElementTree.fromstring(_body(entry)).iter()
            if element.tag.rsplit("}", 1)[-1] == "Key"
        ]
        return [("s3:DeleteObject", f"{bucket_arn}/{name}", ()) for name in keys]
    elif action := _s3_bucket_action(method, query):
        listing = tuple(
            (f"s3:{name}", query[name][0]) for name in ("prefix", "delimiter") if name in query
        )
        return [(action, bucket_arn, listing if action == "s3:ListBucket" else ())]
    raise ValueError(f"no IAM mapping for the S3 request {method} {url.path}?{url.query}")


def _s3_object_action(method: str, query: dict) -> str | None:
    if method in ("GET", "HEAD"):
        if "uploadId" in query:
            return "s3:ListMultipartUploadParts"
        return None if query.keys() - {"partNumber", "response-content-type"} else "s3:GetObject"
    if method == "DELETE":
        if "uploadId" in query:
            return "s3:AbortMultipartUpload"
        return None if query else "s3:DeleteObject"
    # PutObject, and each step of a multipart upload (create, parts, complete).
    uploading = not query.keys() - {"uploads", "uploadId", "partNumber"}
    return "s3:PutObject" if method in ("PUT", "POST") and uploading else None


def _s3_bucket_action(method: str, query: dict) -> str | None:
    if method == "GET" and "location" in query:
        return "s3:GetBucketLocation"
    if method == "GET" and "uploads" in query:
        return "s3:ListBucketMultipartUploads"
    if method in ("GET", "HEAD") and not query.keys() - _LIST_PARAMETERS:
        return "s3:ListBucket"
    return None


_LIST_PARAMETERS = {
    "list-type",
    "prefix",
    "delimiter",
    "max-keys",
    "continuation-token",
    "start-after",
    "marker",
    "encoding-type",
    "fetch-owner",
}


def _emr_actions(
    entry: dict, region: str, cluster_tags: dict[str, dict[str, str]]
) -> list[tuple[str, str, tuple]]:
    operation = entry["headers"]["X-Amz-Target"].removeprefix("ElasticMapReduce.")
    action = f"elasticmapreduce:{operation}"
    body = json.loads(_body(entry) or b"{}")
    if operation == "RunJobFlow":
        tags = {tag["Key"]: tag["Value"] for tag in body.get("Tags", [])}
        requested = (
            *((f"elasticmapreduce:RequestTag/{key}", value) for key, value in tags.items()),
            *((f"aws:RequestTag/{key}", value) for key, value in tags.items()),
            ("aws:TagKeys", tuple(tags)),
        )
        # EMR is handed two roles: its own service role and the nodes' (the instance profile's).
        passed = [
            (
                "iam:PassRole",
                f"arn:{PARTITION}:iam::{ACCOUNT}:role/{role}",
                (("iam:PassedToService", "elasticmapreduce.amazonaws.com"),),
            )
            for role in (body["ServiceRole"], body["JobFlowRole"])
        ]
        return [(action, "*", requested), *passed]
    cluster_ids = body.get("JobFlowIds") or [
        body.get("JobFlowId") or body.get("ClusterId") or body.get("ResourceId")
    ]
    named = []
    for cluster_id in cluster_ids:
        if not cluster_id:
            raise ValueError(f"no IAM mapping for {action} without a cluster: {body}")
        tags = cluster_tags[cluster_id]
        on_cluster = tuple(
            (f"elasticmapreduce:ResourceTag/{key}", value) for key, value in tags.items()
        )
        arn = f"arn:{PARTITION}:elasticmapreduce:{region}:{ACCOUNT}:cluster/{cluster_id}"
        named.append((action, arn, on_cluster))
    return named


def _query_actions(
    service: str, entry: dict, stack_ids: dict[str, str]
) -> list[tuple[str, str, tuple]]:
    form = parse_qs(_body(entry).decode())
    operation = form["Action"][0]
    if service == "ec2" and operation.startswith("Describe"):
        return [(f"ec2:{operation}", "*", ())]
    if service == "cloudformation" and operation == "DescribeStacks":
        name = form["StackName"][0]
        return [("cloudformation:DescribeStacks", stack_ids.get(name, name), ())]
    raise ValueError(f"no IAM mapping for {service}:{operation}")


@dataclass(frozen=True)
class StackPolicies:
    """The policies a stack template gives, resolved for one stack's parameters."""

    operator: dict  # the operator's managed policy
    node: dict  # the cluster instance role's inline policies, as one
    bucket: dict  # the data bucket's policy


def stack_policies(
    template: Path, parameters: dict[str, str], region: str, stack_name: str
) -> StackPolicies:
    """The template's policies with its parameters, pseudo-parameters and ARNs filled in, as
    CloudFormation would (moto's CloudFormation makes no bucket policy, so the template is read)."""
    from cfnlint.decode import cfn_yaml  # noqa: PLC0415

    resources = cfn_yaml.load(str(template))["Resources"]
    names = {
        **parameters,
        "AWS::AccountId": ACCOUNT,
        "AWS::Region": region,
        "AWS::Partition": PARTITION,
        "AWS::StackName": stack_name,
    }
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::S3::Bucket":
            bucket = _resolve(properties["BucketName"], names)
            names[f"{logical_id}.Arn"] = f"arn:{PARTITION}:s3:::{bucket}"
        elif resource["Type"] == "AWS::IAM::Role":
            role = _resolve(properties["RoleName"], names)
            names[f"{logical_id}.Arn"] = f"arn:{PARTITION}:iam::{ACCOUNT}:role/{role}"
    (operator,) = (r for r in resources.values() if r["Type"] == "AWS::IAM::ManagedPolicy")
    (bucket_policy,) = (r for r in resources.values() if r["Type"] == "AWS::S3::BucketPolicy")
    (instance_profile,) = (
        r for r in resources.values() if r["Type"] == "AWS::IAM::InstanceProfile"
    )
    (role_reference,) = instance_profile["Properties"]["Roles"]
    node_statements = [
        statement
        for policy in resources[role_reference["Ref"]]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    return StackPolicies(
        operator=_resolve(operator["Properties"]["PolicyDocument"], names),
        node={"Version": "2012-10-17", "Statement": _resolve(node_statements, names)},
        bucket=_resolve(bucket_policy["Properties"]["PolicyDocument"], names),
    )


def _resolve(node, names: dict[str, str]):
    # Ref, Fn::GetAtt and Fn::Sub over the names above: a function or name the template adds
    # later fails here (KeyError) instead of being evaluated wrong.
    if isinstance(node, dict) and len(node) == 1:
        ((function, argument),) = node.items()
        if function == "Ref":
            return names[argument]
        if function == "Fn::GetAtt":
            return names[".".join(argument)]
        if function == "Fn::Sub":
            return re.sub(r"\$\{([^}]+)\}", lambda match: names[match.group(1)], argument)
    if isinstance(node, dict):
        return {str(key): _resolve(value, names) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item, names) for item in node]
    return str(node) if isinstance(node, str) else node
