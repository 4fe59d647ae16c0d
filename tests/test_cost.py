"""`deploy.py cost` and the plan's monthly delta against figures worked out by hand from stacksets/prices.json.

The expected numbers are written as the arithmetic a reviewer would do with the price table open (eu-west-1,
730 hours a month), never computed by the code under test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import deploy
from generator.render import render_all
from stacksets.config import Config
from stacksets.cost import CostError, load_prices, plan_cost, stack_cost, stackset_delta
from stacksets.plan import build_plan
from tests.conftest import ROOT, TEMPLATES

H = 730  # hours a month
# eu-west-1 prices of stacksets/prices.json, repeated so that a changed table fails these tests on purpose
VCPU, GB = 0.04048, 0.004445  # Fargate Linux/x86 per vCPU-hour, per GB-hour
R6I_2XL, GP3 = 0.564, 0.088  # r6i.2xlarge per hour, gp3 per GB-month
NAT, IPV4, ALB, LCU = 0.048, 0.005, 0.0252, 0.008  # per hour
KMS, SECRET, ZONE, ACL, RULE, ALARM, SFTP = 1.0, 0.40, 0.50, 5.0, 1.0, 0.10, 0.30

# --- the example config -------------------------------------------------------------------------------------------
# dev: RStudio 1 task x 2 vCPU / 8 GB, Shiny 2 tasks x 0.5 vCPU / 2 GB (the autoscaling minimum), one NAT and its EIP,
# an ALB in 2 AZs (1 LCU assumed, 2 public IPv4), a web ACL with 6 rules, 3 target-tracking policies x 2 alarms
DEV_COMPUTE = (2 * VCPU * H + 8 * GB * H                # 59.1008 + 25.9588
               + 1 * VCPU * H + 4 * GB * H              # 29.5504 + 12.9794
               + NAT * H + IPV4 * H                     # 35.04 + 3.65
               + ALB * H + LCU * H + 2 * IPV4 * H       # 18.396 + 5.84 + 7.30
               + ACL + 6 * RULE + 6 * ALARM             # 11 + 0.60
               # the instance's alarms, billed per metric: ALB and target 5xx (2 metrics each), DataSync failed,
               # dead letters, the DataSync trigger's errors (1 each), RStudio and Shiny unavailable (3 each)
               + (2 + 2 + 1 + 1 + 1 + 3 + 3) * ALARM)   # 1.30  -> 210.7154
DEV = DEV_COMPUTE + ZONE + KMS + (KMS + 4 * SECRET)     # zone, data key, storage key + 4 secrets -> 214.8154
# prod: 3 per-user servers of 4 vCPU / 56 GiB, one per r6i.2xlarge (62259 MiB registered for tasks), 100 GB gp3 each;
# Shiny 3 tasks x 1 vCPU / 4 GB; the bastion 0.25 vCPU / 0.5 GB with a public IPv4; NAT and EIP in 3 AZs; ALB in 3 AZs
PROD_COMPUTE = (3 * R6I_2XL * H + 3 * 100 * GP3         # 1235.16 + 26.40
                + 3 * VCPU * H + 12 * GB * H            # 88.6512 + 38.9382
                + 0.25 * VCPU * H + 0.5 * GB * H + IPV4 * H  # 7.3876 + 1.622425 + 3.65
                + 3 * NAT * H + 3 * IPV4 * H            # 105.12 + 10.95
                + ALB * H + LCU * H + 3 * IPV4 * H      # 18.396 + 5.84 + 10.95
                + ACL + 6 * RULE + 6 * ALARM            # 11 + 0.60
                # alarms: ALB and target 5xx (2 metrics each), DataSync failed, dead letters, three Lambdas' errors
                # (1 each), each of the 3 RStudio servers and Shiny unavailable (3 each)
                + (2 + 2 + 1 + 1 + 3 + 4 * 3) * ALARM)  # 2.10  -> 1566.765425
PROD = PROD_COMPUTE + ZONE + (KMS + SFTP * H) + (KMS + 7 * SECRET)  # zone, data key + SFTP, storage -> 1791.065425
CENTRAL = KMS + SECRET                                  # the image build key and the Docker Hub secret -> 1.40


def _write(rendered, directory: Path) -> Path:
    directory.mkdir()
    for name, body in rendered.templates.items():
        (directory / name).write_bytes(body)
    return directory


def _config(data: dict, path: Path) -> Config:
    from stacksets.config import load_config

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path)


def test_the_example_config_costs_what_the_hand_computed_figures_say(cfg):
    report = plan_cost(build_plan(cfg, TEMPLATES), cfg)
    groups = {group.name: group for group in report.groups}
    assert groups["dev"].monthly == pytest.approx(214.8154) == pytest.approx(DEV)
    assert groups["prod"].monthly == pytest.approx(1791.065425) == pytest.approx(PROD)
    assert groups["rstudio-central"].monthly == pytest.approx(CENTRAL)
    assert [groups[name].monthly for name in ("rstudio-bootstrap", "rstudio-data", "rstudio-logs")] == [0, 0, 0]
    assert report.monthly == pytest.approx(2007.280825)
    [ec2] = [item for item in groups["prod"].stacksets[0].items if item.price.key == "ec2_r6i.2xlarge_hour"]
    assert ec2.count == 3 and ec2.monthly == pytest.approx(1235.16)
    assert any("ShinyService: 2 task(s), the minimum of ShinyScalableTarget" in text for text in report.assumptions())


def test_a_prod_like_config_with_nat_per_az_and_two_servers_per_instance(example_data, tmp_path):
    dev, prod = example_data["instances"]["dev"], example_data["instances"]["prod"]
    dev["network"].update(availability_zones=3, nat="per_az")
    prod["rstudio"]["memory"] = 28672  # two servers fit an r6i.2xlarge (8192 CPU units, 62259 MiB registered)
    prod["users"]["dave"] = {"email": "dave@example.com", "uid": 3004}
    prod["bastion"] = {"enabled": False}
    prod["sftp"] = {"enabled": False}
    cfg = _config(example_data, tmp_path / "config.yaml")
    templates = _write(render_all(cfg, ROOT / "container"), tmp_path / "templates")
    groups = {group.name: group for group in plan_cost(build_plan(cfg, templates, ROOT / "container"), cfg).groups}
    # dev: as the example, but 3 NAT gateways and EIPs and the ALB's public IPv4 in 3 AZs
    dev_compute = (2 * VCPU * H + 8 * GB * H + 1 * VCPU * H + 4 * GB * H  # 85.0596 + 42.5298
                   + 3 * NAT * H + 3 * IPV4 * H                          # 105.12 + 10.95
                   + ALB * H + LCU * H + 3 * IPV4 * H                    # 18.396 + 5.84 + 10.95
                   + ACL + 6 * RULE + 6 * ALARM                          # 11.60
                   + (2 + 2 + 1 + 1 + 1 + 3 + 3) * ALARM)                # the example's alarms, 1.30 -> 291.7454
    assert groups["dev"].monthly == pytest.approx(291.7454 + 0.5 + 1 + 2.6) == pytest.approx(
        dev_compute + ZONE + KMS + KMS + 4 * SECRET)
    # prod: 4 servers on 2 instances, no bastion (nor its key secret), no SFTP endpoint; 4 users x 2 secrets
    prod_compute = (2 * R6I_2XL * H + 2 * 100 * GP3                      # 823.44 + 17.60
                    + 3 * VCPU * H + 12 * GB * H                         # 127.5894
                    + 3 * NAT * H + 3 * IPV4 * H                         # 105.12 + 10.95
                    + ALB * H + LCU * H + 3 * IPV4 * H                   # 35.186
                    + ACL + 6 * RULE + 6 * ALARM                         # 11.60
                    # alarms: 5xx (2 + 2 metrics), DataSync, dead letters, 3 Lambdas (1 each), 4 servers and Shiny (3)
                    + (2 + 2 + 1 + 1 + 3 + 5 * 3) * ALARM)               # 2.40 -> 1133.8854
    assert groups["prod"].monthly == pytest.approx(1133.8854 + 0.5 + 1 + 4.2) == pytest.approx(
        prod_compute + ZONE + KMS + KMS + 8 * SECRET)


def test_the_cost_command_prints_items_totals_and_usage_prices_apart(workdir, capsys):
    assert deploy.main(["cost"]) == 0
    out = capsys.readouterr().out
    assert "instance dev (555555555555, eu-west-1): $214.82/mo" in out
    assert "instance prod (666666666666, eu-west-1): $1,791.07/mo" in out
    assert "total: $2,007.28/mo" in out
    assert "rstudio-prod ContainerInstanceGroup: EC2 r6i.2xlarge on-demand (Linux)" in out
    assert "3 x $0.564/instance-hour x 730 h" in out and "$1,235.16" in out
    usage = out[out.index("usage-priced, not in the total"):]
    assert "eu-west-1 athena_tb_scanned" in usage and "$5 per TB scanned" in usage
    assert "datasync_gb" in usage and "nat_processing_gb" in usage and "s3_standard_gb_month" in usage


def test_the_cost_json_has_one_line_per_item_that_adds_up(workdir, capsys):
    assert deploy.main(["cost", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {"date", "currency", "hours_per_month", "groups", "monthly", "assumptions", "usage"} <= set(payload)
    assert payload["monthly"] == pytest.approx(2007.280825, abs=1e-3)
    for group in payload["groups"]:
        items = [item for stackset in group["stacksets"] for item in stackset["items"]]
        assert group["monthly"] == pytest.approx(sum(item["monthly"] for item in items), abs=1e-3)
        for item in items:
            assert {"what", "count", "unit", "unit_price", "monthly", "source", "status"} <= set(item)
            hours = item["hours"] or 1
            expected = item["count"] * item["unit_price"] * hours * item["stacks"]
            assert item["monthly"] == pytest.approx(expected, abs=1e-6)
    assert {entry["price"] for entry in payload["usage"]} >= {"athena_tb_scanned", "datasync_gb", "nat_processing_gb"}


GENERIC = """
Resources:
  Endpoint: {Type: AWS::EC2::VPCEndpoint, Properties: {VpcEndpointType: Interface, SubnetIds: [a, b, c]}}
  S3Endpoint: {Type: AWS::EC2::VPCEndpoint, Properties: {VpcEndpointType: Gateway}}
  Alarm: {Type: AWS::CloudWatch::Alarm, Properties: {}}
  Task:
    Type: AWS::ECS::TaskDefinition
    Properties: {Cpu: "1024", Memory: "3072", RuntimePlatform: {CpuArchitecture: ARM64}}
  Service:
    Type: AWS::ECS::Service
    Properties:
      DesiredCount: {Ref: Count}
      TaskDefinition: {Ref: Task}
      CapacityProviderStrategy: [{CapacityProvider: FARGATE, Weight: 1}]
Parameters:
  Count: {Type: Number, Default: 2}
"""


def test_generic_rules_price_endpoints_alarms_and_arm_fargate_by_their_properties():
    cost = stack_cost("rstudio-x", GENERIC, {"eu-west-1": 2}, load_prices())
    by_resource = {}
    for item in cost.items:
        by_resource[item.resource] = by_resource.get(item.resource, 0) + item.monthly
    assert by_resource["Endpoint"] == pytest.approx(3 * 0.011 * H * 2)  # 3 AZs x 2 stacks -> 48.18
    assert by_resource["Alarm"] == pytest.approx(0.10 * 2)
    # 2 tasks (the parameter's default) x 1 vCPU / 3 GB on Graviton, in each of 2 stacks -> 2 x 65.2824
    assert by_resource["Service"] == pytest.approx(2 * (2 * 0.03238 * H + 6 * 0.00356 * H))
    assert "S3Endpoint" not in by_resource
    planned = stack_cost("rstudio-x", GENERIC, {"eu-west-1": 1}, load_prices(), {"Count": "3"})
    [vcpu] = [item for item in planned.items if item.price.key == "fargate_linux_arm_vcpu_hour"]
    assert vcpu.count == 3  # the value the plan passes wins over the parameter's default


def test_every_price_is_dated_and_names_its_aws_pricing_page(cfg):
    table = json.loads((ROOT / "stacksets" / "prices.json").read_text())
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table["date"]) and table["hours_per_month"] == 730
    entries = [entry for region in table["regions"].values() for section in ("fixed", "usage")
               for entry in region[section].values()]  # fmt: skip
    assert entries and all(entry["source"].startswith("https://aws.amazon.com/") for entry in entries)
    assert {entry["status"] for entry in entries} <= {"confirmed", "unconfirmed"}
    assert set(cfg.regions) <= set(table["regions"])  # every Region the example config deploys to


def test_a_region_or_instance_type_without_a_price_is_named_with_the_file_to_extend():
    body = (TEMPLATES / "rstudio-dev.yaml").read_text()
    with pytest.raises(CostError, match=r"stacksets/prices.json has no prices for ap-south-2 \(needed by "
                                        r"rstudio-dev.yaml "):  # fmt: skip
        stack_cost("rstudio-dev", body, {"ap-south-2": 1}, load_prices())
    prod = (TEMPLATES / "rstudio-prod.yaml").read_text().replace("r6i.2xlarge", "r7i.2xlarge")
    with pytest.raises(CostError, match="no eu-west-1 price 'ec2_r7i.2xlarge_hour' .*ContainerInstanceGroup"):
        stack_cost("rstudio-prod", prod, {"eu-west-1": 1}, load_prices())


def test_a_missing_price_leaves_the_plan_whole_and_says_why_its_cost_is_unknown(workdir, capsys, monkeypatch):
    table = json.loads((ROOT / "stacksets" / "prices.json").read_text())
    table["regions"] = {"eu-central-1": table["regions"]["eu-west-1"]}
    (workdir / "prices.json").write_text(json.dumps(table))
    monkeypatch.setattr("stacksets.prices.PRICES", workdir / "prices.json")
    assert deploy.main(["plan", "--sandbox", "--sandbox-state", "none"]) == 0
    out = capsys.readouterr().out
    assert "14 of 14 StackSets change" in out
    assert f"monthly cost: unknown ({workdir / 'prices.json'} has no prices for eu-west-1 (needed by " in out
    assert deploy.main(["cost"]) == 2
    assert "covers eu-central-1: add the Region's block" in capsys.readouterr().err


def test_the_delta_of_adding_a_per_user_server_is_one_instance_its_volume_and_two_secrets(example_data, tmp_path):
    example_data["instances"]["prod"]["users"]["dave"] = {"email": "dave@example.com", "uid": 3004}
    cfg = _config(example_data, tmp_path / "config.yaml")
    rendered = render_all(cfg, ROOT / "container").templates
    pair = [("666666666666", "eu-west-1")]
    prices = load_prices()
    compute = stackset_delta("rstudio-prod", rendered["rstudio-prod.yaml"].decode(), pair,
                             (TEMPLATES / "rstudio-prod.yaml").read_text(), pair, prices)  # fmt: skip
    assert compute.monthly == pytest.approx(R6I_2XL * H + 100 * GP3 + 3 * ALARM)  # 411.72 + 8.80 + its alarm 0.30
    assert compute.changes[0].label.startswith("ContainerInstanceGroup: EC2 r6i.2xlarge")
    storage = stackset_delta("rstudio-prod-storage", rendered["rstudio-prod-storage.yaml"].decode(), pair,
                             (TEMPLATES / "rstudio-prod-storage.yaml").read_text(), pair, prices)  # fmt: skip
    assert storage.monthly == pytest.approx(2 * SECRET)  # DavePassword, DaveRStudioCookieKey
    new = stackset_delta("rstudio-prod-storage", rendered["rstudio-prod-storage.yaml"].decode(), pair, None, (),
                         prices)  # fmt: skip
    assert new.before == 0 and new.monthly == pytest.approx(KMS + 9 * SECRET)  # nothing deployed: all of it is new


@pytest.mark.slow
def test_plan_after_adding_a_user_shows_the_monthly_delta(workdir, capsys):
    assert deploy.main(["deploy", "--sandbox", "--yes"]) == 0
    capsys.readouterr()
    assert deploy.main(["plan", "--sandbox"]) == 0
    assert "monthly cost: no change (committed templates vs deployed ones)" in capsys.readouterr().out
    data = yaml.safe_load((workdir / "config.yaml").read_text())
    data["instances"]["prod"]["users"]["dave"] = {"email": "dave@example.com", "uid": 3004}
    (workdir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert deploy.main(["render"]) == 0
    capsys.readouterr()
    assert deploy.main(["plan", "--sandbox"]) == 0
    out = capsys.readouterr().out
    # one r6i.2xlarge (0.564 x 730 = 411.72) with its 100 GB gp3 volume (8.80), its alarm of 3 metrics (0.30), and
    # two secrets (0.80)
    assert "monthly cost: +$421.62/mo" in out
    assert "  rstudio-prod: +$420.82/mo: ContainerInstanceGroup: EC2 r6i.2xlarge on-demand (Linux) +$411.72/mo" in out
    assert "  rstudio-prod-storage: +$0.80/mo: " in out
    assert deploy.main(["plan", "--sandbox", "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["cost"]
    assert cost["monthly"] == pytest.approx(421.62, abs=1e-3)
    assert {entry["stackset"] for entry in cost["stacksets"]} == {"rstudio-prod", "rstudio-prod-storage"}
