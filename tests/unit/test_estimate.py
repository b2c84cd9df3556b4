"""`fruit-deploy estimate`: the instance-hours of each phase and the price from the conf's rates."""

from dataclasses import replace

import pytest

from fruit_pipeline.apps.deploy import estimate
from fruit_pipeline.apps.deploy.commands import main
from fruit_pipeline.apps.deploy.settings import load_settings
from tests.support.helpers import PROJECT_ROOT

# Made-up rates: the arithmetic is what is checked, not AWS' prices.
RATES = {"read_on": "2026-01-01", "hourly": {"eu-west-3": {"m5.xlarge": {"ec2": 0.2, "emr": 0.05}}}}


@pytest.fixture
def settings():
    return load_settings(PROJECT_ROOT / "conf")


def test_a_kept_cluster_bills_its_start_steps_and_idle_hour_on_every_instance(settings):
    priced = replace(settings, prices=RATES)
    lines = estimate.report(priced, run_minutes=10, transient=False).splitlines()
    assert lines[0] == "3 x m5.xlarge in eu-west-3 (kept until idle):"
    # 3 instances x (15 + 10 + 60) min = 4.25 instance-hours, at 0.25 USD each.
    assert lines[1].split()[-4:] == ["15.0", "min", "0.75", "instance-hours"]
    assert lines[3].split()[-4:] == ["60.0", "min", "3.00", "instance-hours"]
    assert lines[4].split() == ["total", "4.25", "instance-hours"]
    assert lines[5].startswith("about 1.06 USD at 0.2500 USD per instance-hour")
    assert "read on 2026-01-01" in lines[5]


def test_a_transient_cluster_has_no_idle_phase(settings):
    phases = estimate.phases(settings, run_minutes=12, transient=True)
    assert [phase.name for phase in phases] == ["start and bootstrap", "steps"]
    assert "total                                        1.35" in estimate.report(
        settings, 12, transient=True
    )


def test_without_a_rate_it_says_where_to_read_one(settings):
    text = estimate.report(settings, run_minutes=10, transient=False)
    assert "no on-demand rate for m5.xlarge in eu-west-3" in text
    assert "https://aws.amazon.com/emr/pricing/" in text


def test_a_rate_without_emrs_fee_is_refused_by_name(settings):
    partial = {"hourly": {"eu-west-3": {"m5.xlarge": {"ec2": 0.2}}}}
    with pytest.raises(ValueError, match=r"m5\.xlarge needs both `ec2` and `emr`"):
        estimate.report(replace(settings, prices=partial), run_minutes=10, transient=False)


def test_the_command_prints_it_and_refuses_a_negative_run(capsys, caplog):
    assert main(["--project", str(PROJECT_ROOT), "estimate", "--transient"]) == 0
    assert "instance-hours" in capsys.readouterr().out
    assert main(["--project", str(PROJECT_ROOT), "estimate", "--run-minutes", "-1"]) == 1
    assert "--run-minutes must be 0 or more" in caplog.text
