"""What a cluster run costs before it starts: instance-hours of each phase, and a price from the
on-demand rates in conf/emr/deploy.yml (`prices`, with the date they were read), when given.

EMR bills each instance per second from the request to the termination: the EC2 on-demand rate
plus EMR's per-instance fee. The phases: the start and bootstrap, the steps, and the idle wait
before auto-termination (none on a transient cluster)."""

from typing import NamedTuple

from fruit_pipeline.apps.deploy.settings import Settings

PRICE_PAGES = (
    "https://aws.amazon.com/ec2/pricing/on-demand/ and https://aws.amazon.com/emr/pricing/"
)


class Phase(NamedTuple):
    name: str
    minutes: float


def phases(settings: Settings, run_minutes: float, transient: bool) -> list[Phase]:
    """The cluster's phases, each with its wall time."""
    listed = [
        Phase("start and bootstrap", settings.startup_minutes),
        Phase("steps", run_minutes),
    ]
    if not transient:
        listed.append(Phase("idle before auto-termination", settings.idle_timeout_seconds / 60))
    return listed


def hourly_rate(settings: Settings) -> float | None:
    """EC2 + EMR on-demand USD per instance-hour of the configured type and region, if given."""
    rates = (settings.prices.get("hourly") or {}).get(settings.region, {})
    rate = rates.get(settings.instance_type)
    if rate is None:
        return None
    if not {"ec2", "emr"} <= set(rate):
        raise ValueError(
            f"conf/emr/deploy.yml: prices.hourly.{settings.region}.{settings.instance_type} "
            f"needs both `ec2` and `emr` (USD per hour), not {sorted(rate)}"
        )
    return rate["ec2"] + rate["emr"]


def report(settings: Settings, run_minutes: float, transient: bool) -> str:
    """The estimate as printed: one line a phase, the total, and the price or how to get one."""
    if run_minutes < 0:
        raise ValueError(f"--run-minutes must be 0 or more, not {run_minutes}")
    instances = 1 + settings.core_instance_count
    lines = [
        f"{instances} x {settings.instance_type} in {settings.region} "
        f"({'transient' if transient else 'kept until idle'}):"
    ]
    total = 0.0
    for phase in phases(settings, run_minutes, transient):
        hours = instances * phase.minutes / 60
        total += hours
        lines.append(f"  {phase.name:<30} {phase.minutes:6.1f} min  {hours:6.2f} instance-hours")
    lines.append(f"  {'total':<30} {'':>10}  {total:6.2f} instance-hours")
    rate = hourly_rate(settings)
    if rate is None:
        lines.append(
            f"no on-demand rate for {settings.instance_type} in {settings.region} in "
            f"conf/emr/deploy.yml (prices.hourly): add its ec2 and emr USD per hour from "
            f"{PRICE_PAGES}, with the date you read them (prices.read_on)"
        )
    else:
        lines.append(
            f"about {total * rate:.2f} USD at {rate:.4f} USD per instance-hour (EC2 + EMR "
            f"on demand, read on {settings.prices.get('read_on')}), plus S3 and the stack's "
            "KMS key (1 USD a month)"
        )
    return "\n".join(lines)
