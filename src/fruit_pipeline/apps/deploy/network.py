"""The cluster's subnet, checked before `RunJobFlow`: what EMR's managed policy and S3 need.

EMR's scoped service policy (AmazonEMRServicePolicy_v2) launches into a subnet, and creates its
default security groups in a VPC, only when they carry the tag
for-use-with-amazon-emr-managed-policies=true. The nodes have no internet (private subnets): they
reach the bucket, EMR's own log and repository buckets and Amazon Linux' repositories through a
route to S3, an S3 gateway endpoint on the subnet's route table (or a default route through a NAT
gateway). The clusters' security configuration encrypts the nodes' local disks with the stack's
KMS key, which each node asks KMS for when it starts: the VPC needs a KMS interface endpoint with
private DNS (or that NAT route). A cluster that lacks any of these fails minutes after it was
asked for; this says why first. A subnet routed to an internet gateway is public: the nodes
would be reachable from and reach the internet, which the project's design rules out.
"""

import ipaddress
from typing import Any

EMR_MANAGED_POLICY_TAG = {"for-use-with-amazon-emr-managed-policies": "true"}
HTTPS_PORT = 443


class NetworkNotReady(ValueError):
    """The subnet or its VPC cannot take the cluster: the message says what to do."""


def check_subnet(ec2: Any, subnet_id: str | None, region: str) -> None:
    """Refuse a missing or untagged subnet, an untagged VPC, or a subnet with no route to S3 or
    to KMS."""
    if not subnet_id:
        raise NetworkNotReady(
            "conf/emr/deploy.yml: subnet_id is not set. Set it to a private subnet of the region "
            f"{region} (without it EMR picks a public subnet of the default VPC); docs/emr.md, "
            "'Network', says what it needs."
        )
    subnets = ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": [subnet_id]}])
    if not subnets["Subnets"]:
        raise NetworkNotReady(f"subnet {subnet_id} does not exist in {region} (deploy.yml).")
    (subnet,) = subnets["Subnets"]
    vpc_id = subnet["VpcId"]
    (vpc,) = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
    tag = ",".join(f"Key={key},Value={value}" for key, value in EMR_MANAGED_POLICY_TAG.items())
    for kind, resource, tags in (
        ("subnet", subnet_id, subnet.get("Tags", [])),
        ("VPC", vpc_id, vpc.get("Tags", [])),
    ):
        if not EMR_MANAGED_POLICY_TAG.items() <= {(t["Key"], t["Value"]) for t in tags}:
            raise NetworkNotReady(
                f"{kind} {resource} is not tagged for EMR's managed policy, which then refuses "
                f"to launch the cluster: `aws ec2 create-tags --resources {resource} --tags {tag}`."
            )
    tables = _route_tables(ec2, subnet_id, vpc_id)
    gateways = sorted(_internet_gateways(tables))
    if gateways:
        raise NetworkNotReady(
            f"subnet {subnet_id} is public: its route table sends traffic to the internet gateway "
            f"{', '.join(gateways)}. The nodes run in a private subnet (no internet): give "
            "deploy.yml's subnet_id a subnet without that route (deploy/cloudformation/"
            "network.yaml makes one)."
        )
    if not (_has_s3_endpoint(ec2, vpc_id, region, tables) or _has_default_route(tables)):
        raise NetworkNotReady(
            f"subnet {subnet_id} has no route to S3: the nodes could not read the bucket nor "
            "install anything. Add an S3 gateway endpoint on its route table: `aws ec2 "
            f"create-vpc-endpoint --vpc-id {vpc_id} --service-name com.amazonaws.{region}.s3 "
            f"--route-table-ids {' '.join(t['RouteTableId'] for t in tables)}`."
        )
    kms_endpoints = _kms_endpoints(ec2, vpc_id, region)
    if not (kms_endpoints or _has_default_route(tables)):
        raise NetworkNotReady(
            f"subnet {subnet_id} has no route to KMS: the nodes could not get the keys of their "
            "encrypted local disks (the stack's security configuration) and would not start. "
            "Add a KMS interface endpoint with private DNS, in a security group that allows "
            f"HTTPS from the subnet: `aws ec2 create-vpc-endpoint --vpc-endpoint-type Interface "
            f"--vpc-id {vpc_id} --service-name com.amazonaws.{region}.kms --subnet-ids "
            f"{subnet_id} --security-group-ids <group> --private-dns-enabled`."
        )
    # With private DNS, KMS' name resolves to the endpoint, NAT or not: its groups decide.
    if kms_endpoints and not any(
        _admits_https(ec2, endpoint, subnet["CidrBlock"]) for endpoint in kms_endpoints
    ):
        groups = sorted({g["GroupId"] for e in kms_endpoints for g in e.get("Groups", [])})
        raise NetworkNotReady(
            f"the KMS endpoint's security groups ({', '.join(groups) or 'none'}) let no HTTPS in "
            f"from subnet {subnet_id} ({subnet['CidrBlock']}): the nodes could not get their "
            "disks' keys and would not start. `aws ec2 authorize-security-group-ingress "
            f"--group-id {groups[0] if groups else '<group>'} --protocol tcp --port 443 --cidr "
            f"{subnet['CidrBlock']}`."
        )


def _route_tables(ec2: Any, subnet_id: str, vpc_id: str) -> list[dict[str, Any]]:
    # A subnet without a table of its own uses its VPC's main route table.
    for filters in (
        [{"Name": "association.subnet-id", "Values": [subnet_id]}],
        [{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "association.main", "Values": ["true"]}],
    ):
        tables = ec2.describe_route_tables(Filters=filters)["RouteTables"]
        if tables:
            return tables
    return []


def _has_s3_endpoint(ec2: Any, vpc_id: str, region: str, tables: list[dict[str, Any]]) -> bool:
    endpoints = ec2.describe_vpc_endpoints(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "service-name", "Values": [f"com.amazonaws.{region}.s3"]},
        ]
    )["VpcEndpoints"]
    wanted = {table["RouteTableId"] for table in tables}
    return any(
        endpoint.get("VpcEndpointType") == "Gateway"
        and endpoint.get("State") == "available"
        and wanted & set(endpoint.get("RouteTableIds", []))
        for endpoint in endpoints
    )


def _kms_endpoints(ec2: Any, vpc_id: str, region: str) -> list[dict[str, Any]]:
    # With private DNS, KMS' own name resolves to the endpoint from every subnet of the VPC.
    endpoints = ec2.describe_vpc_endpoints(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "service-name", "Values": [f"com.amazonaws.{region}.kms"]},
        ]
    )["VpcEndpoints"]
    return [
        endpoint
        for endpoint in endpoints
        if endpoint.get("VpcEndpointType") == "Interface"
        and endpoint.get("State") == "available"
        and endpoint.get("PrivateDnsEnabled")
    ]


def _admits_https(ec2: Any, endpoint: dict[str, Any], subnet_cidr: str) -> bool:
    # A rule naming another group (EMR's, made with the first cluster) cannot be checked before
    # the cluster exists: it counts.
    group_ids = [group["GroupId"] for group in endpoint.get("Groups", [])]
    if not group_ids:
        return False
    subnet = ipaddress.ip_network(subnet_cidr)
    for group in ec2.describe_security_groups(GroupIds=group_ids)["SecurityGroups"]:
        for rule in group.get("IpPermissions", []):
            https = rule.get("IpProtocol") == "-1" or (
                rule.get("IpProtocol") == "tcp"
                and rule.get("FromPort", 0) <= HTTPS_PORT <= rule.get("ToPort", -1)
            )
            sources = [ipaddress.ip_network(r["CidrIp"]) for r in rule.get("IpRanges", [])]
            if https and (
                rule.get("UserIdGroupPairs") or any(subnet.subnet_of(s) for s in sources)
            ):
                return True
    return False


def _has_default_route(tables: list[dict[str, Any]]) -> bool:
    # Through a NAT gateway: the subnet stays private.
    return any(
        route.get("DestinationCidrBlock") == "0.0.0.0/0"
        and route.get("NatGatewayId")
        and route.get("State", "active") == "active"
        for table in tables
        for route in table.get("Routes", [])
    )


def _internet_gateways(tables: list[dict[str, Any]]) -> set[str]:
    return {
        route["GatewayId"]
        for table in tables
        for route in table.get("Routes", [])
        if route.get("GatewayId", "").startswith("igw-")
    }
