"""Where and how `fruit-deploy` deploys: read from conf/emr (globals.yml says where things live,
deploy.yml how the cluster is shaped), and the EU-only rule."""

import re
from dataclasses import dataclass
from pathlib import Path

from fruit_pipeline.apps.deploy import staging
from fruit_pipeline.config import config_loader

# The cluster tag the operator's policy (deploy/cloudformation/account.yaml) scopes every EMR
# action to: a cluster without it cannot be created, stepped or terminated with that policy.
PROJECT_TAG = "project"


@dataclass(frozen=True)
class Settings:
    """The bucket, the locations on S3 and on the nodes, the region and the cluster's shape."""

    bucket: str
    prefix: str
    data_root: str
    images_root: str
    new_images_root: str
    models_root: str
    # featurize.model_cache of the emr environment: the nodes read the converted model there.
    model_cache: str
    deploy_root: str
    logs_root: str
    node_home: str
    jvm_options: str
    region: str
    release_label: str
    instance_type: str
    core_instance_count: int
    idle_timeout_seconds: int
    startup_minutes: float
    prices: dict
    ebs_root_volume_gib: int
    stack_name: str
    service_role: str
    instance_profile: str
    key_name: str | None
    subnet_id: str | None
    tags: dict[str, str]
    # The files the catalog writes whole (its AtomicDataset entries, factories with `*` for
    # `{name}`): the tables, reports and plots `fruit-deploy fetch` brings home.
    outputs: tuple[str, ...]

    def key(self, uri: str) -> str:
        """The object key (or key prefix) of an s3:// location in the bucket."""
        within = f"s3://{self.bucket}/"
        if not uri.startswith(within):
            raise ValueError(
                f"{uri} is not in s3://{self.bucket}: unset FRUIT_PIPELINE_ROOT to deploy"
            )
        return uri.removeprefix(within)

    @property
    def node_python(self) -> str:
        return f"{self.node_home}/{staging.VENV}/bin/python"


_LOCATIONS = (
    "bucket",
    "prefix",
    "data_root",
    "images_root",
    "new_images_root",
    "models_root",
    "deploy_root",
    "logs_root",
    "node_home",
    "jvm_options",
)


def load_settings(conf_source: Path) -> Settings:
    """Read conf/emr: the locations from globals.yml (and the featurize parameters' model cache),
    the rest from deploy.yml."""
    loader = config_loader(conf_source.parent, env="emr")
    found = loader["globals"]
    deploy = loader["deploy"]
    if not deploy.get("tags", {}).get(PROJECT_TAG):
        raise ValueError(
            f"conf/emr/deploy.yml: tags must give `{PROJECT_TAG}`, the tag the operator's policy "
            "allows EMR actions on (deploy/cloudformation/account.yaml, ProjectTag)."
        )
    outputs = tuple(
        re.sub(r"\{[^}]*\}", "*", entry["filepath"])
        for entry in loader["catalog"].values()
        if entry.get("type", "").endswith(".AtomicDataset")
    )
    return Settings(
        **{name: found[name] for name in _LOCATIONS},
        model_cache=loader["parameters"]["featurize"]["model_cache"],
        **deploy,
        outputs=outputs,
    )


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
