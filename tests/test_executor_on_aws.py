"""Orchestrator bugs the review found against real AWS behaviour, each reproduced through the AWS model.

Every test here failed on the code before its fix (review: /shared/reference/review/stacksets_api.md, B1-B6 and the
risks R1-R13 it confirmed).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from stacksets.config import Config
from stacksets.plan import Override, Plan, Targets, build_plan, declared_parameters
from stacksets.results import State
from tests.awsmodel_helpers import executor_for, live_stackset, model_for, scenario
from tests.conftest import TEMPLATES

WORKLOADS, SHARED = "ou-ab12-11111111", "ou-ab12-22222222"
DEV, PROD = "555555555555", "666666666666"


@pytest.fixture(scope="module")
def plan(cfg: Config) -> Plan:
    return build_plan(cfg, TEMPLATES)


def messages(report) -> dict[str, str]:
    return {name: result.message for name, result in report.results.items()}


def test_b1_a_suspended_account_in_a_bootstrap_ou_is_skipped_not_failed(cfg, plan, tmp_path):
    model = model_for(cfg, scenario(accounts={"777777777777": {"ou": WORKLOADS, "state": "SUSPENDED"}}))
    events = []
    report = executor_for(model, cfg, tmp_path, events).deploy(plan.only(["rstudio-bootstrap"]))
    assert report.ok, messages(report)
    bootstrap = model.world.stacksets.sets[(model.world.organization.management_account, cfg.default_region,
                                            "rstudio-bootstrap")]  # fmt: skip
    assert ("777777777777", cfg.default_region) not in bootstrap.instances
    said = [e.message for e in events if e.stackset == "rstudio-bootstrap"]
    assert any("777777777777" in m and "SUSPENDED" in m for m in said), said


def test_b4_the_management_account_in_a_bootstrap_ou_is_not_a_target(cfg, plan, tmp_path):
    model = model_for(cfg, scenario(management_account={"ou": SHARED}))
    events = []
    report = executor_for(model, cfg, tmp_path, events).deploy(plan.only(["rstudio-bootstrap"]))
    assert report.ok, messages(report)
    said = [e.message for e in events if e.stackset == "rstudio-bootstrap"]
    assert any("999999999999" in m and "management account" in m for m in said), said
    again = executor_for(model, cfg, tmp_path).deploy(plan.only(["rstudio-bootstrap"]))
    assert again.ok and not again.calls


def test_b5_drift_lists_the_drifted_resources_without_the_reader_role(cfg, plan, tmp_path):
    model = model_for(cfg)
    executor_for(model, cfg, tmp_path).deploy(plan.only(["rstudio-data"]))
    model.drift("rstudio-data", cfg.accounts.data, cfg.default_region, "AccessLogBucket", "AWS::S3::Bucket")
    report = executor_for(model, cfg, tmp_path).drift(plan.only(["rstudio-data"]))
    [drifted] = report.results["rstudio-data"].drifted
    assert drifted.resources == ("AccessLogBucket (AWS::S3::Bucket): MODIFIED",)
    assert not [call for call in model.log if call.api == "describe_stack_resource_drifts"]


def test_b6_an_internal_failure_of_drift_detection_fails_the_check(cfg, plan, tmp_path):
    model = model_for(cfg)
    executor_for(model, cfg, tmp_path).deploy(plan.only(["rstudio-bootstrap"]))
    model.fail_next("detect_stack_set_drift", "InternalFailure", times=1000)
    report = executor_for(model, cfg, tmp_path).drift(plan.only(["rstudio-bootstrap"]))
    result = report.results["rstudio-bootstrap"]
    assert result.state is State.FAILED and "InternalFailure" in result.message
    assert not report.ok


def test_r3_a_failed_first_create_is_retried_by_creating_the_instance_again(cfg, plan, tmp_path):
    model = model_for(cfg)
    model.fail_resource("rstudio-dev-zone", DEV, "HostedZone", times=1)
    first = executor_for(model, cfg, tmp_path).deploy(plan.only(["rstudio-dev-zone"]))
    assert first.results["rstudio-dev-zone"].state is State.FAILED
    second = executor_for(model, cfg, tmp_path).deploy(plan.only(["rstudio-dev-zone"]))
    assert second.ok, messages(second)
    assert second.calls["create_stack_instances"] == 1 and not second.calls["update_stack_instances"]


def test_r1_instances_are_deleted_by_the_ou_they_were_created_for(cfg, plan, tmp_path):
    """An OU leaves the config: its accounts' instances can only be reached through that OU."""
    model = model_for(cfg, scenario(accounts={DEV: {"ou": SHARED}}))
    executor_for(model, cfg, tmp_path).deploy(plan.only(["rstudio-dev-zone"]))
    zone = plan.nodes["rstudio-dev-zone"]
    narrowed = Plan({zone.name: replace(zone, targets=Targets(regions=zone.targets.regions, accounts=(DEV,),
                                                               organizational_units=(WORKLOADS,)))})  # fmt: skip
    report = executor_for(model, cfg, tmp_path).destroy(narrowed)
    assert report.ok, messages(report)


def test_r10_delete_stack_set_waits_out_another_operation(cfg, plan, tmp_path):
    model = model_for(cfg)
    executor_for(model, cfg, tmp_path).deploy(plan.only(["rstudio-data"]))
    model.fail_next("delete_stack_set", "OperationInProgressException", times=2)
    report = executor_for(model, cfg, tmp_path).destroy(plan.only(["rstudio-data"]))
    assert report.ok, messages(report)


def test_r11_an_access_error_while_reattaching_keeps_the_recorded_operation(cfg, plan, tmp_path):
    model = model_for(cfg)
    executor = executor_for(model, cfg, tmp_path)
    executor.deploy(plan.only(["rstudio-data"]))
    state = tmp_path / "state.json"
    state.write_text('{"operations": {"rstudio-data": {"operation_id": "op-1", "action": "update_stack_set", '
                     '"recorded_at": 0}}}\n')  # fmt: skip
    model.fail_next("describe_stack_set_operation", "AccessDeniedException", times=1)
    report = executor_for(model, cfg, tmp_path).deploy(plan.only(["rstudio-data"]))
    assert report.results["rstudio-data"].state is State.FAILED
    assert "op-1" in state.read_text()


def test_r5_outputs_are_read_from_the_instance_stack_by_its_id(cfg, plan, tmp_path):
    model = model_for(cfg)
    report = executor_for(model, cfg, tmp_path).deploy(plan.only(["rstudio-dev-delegation"]))
    assert report.ok, messages(report)
    reads = [call.params for call in model.log if call.api == "describe_stacks"]
    assert reads and all(params["StackName"].startswith("arn:aws:cloudformation:") for params in reads)
    assert not [call for call in model.log if call.api == "list_stacks"]


def test_r13_large_templates_are_staged_on_the_partition_host(cfg, plan):
    from stacksets.run import Options, Run
    from stacksets.staging import TemplateStaging
    from tests.awsmodel_helpers import clients_for

    model = model_for(cfg)
    run = Run(clients_for(model, "cn-north-1"), Options(), clock=model.clock, sleep=model.clock.sleep,
              random=lambda: 0.5, on_event=lambda event: None, total=1)  # fmt: skip
    url = TemplateStaging(run).template_argument(plan.nodes["rstudio-prod"])["TemplateURL"]
    assert ".s3.cn-north-1.amazonaws.com.cn/templates/" in url
    cfn = run.clients.client("cloudformation")
    cfn.create_stack_set(StackSetName="staged", TemplateURL=url, Capabilities=["CAPABILITY_NAMED_IAM"])


def test_a_deploy_of_the_example_config_converges(cfg, plan, tmp_path):
    model = model_for(cfg)
    first = executor_for(model, cfg, tmp_path).deploy(plan)
    assert first.ok, messages(first)
    again = executor_for(model, cfg, tmp_path).deploy(plan)
    assert again.ok and not again.calls, dict(again.calls)
    reads = sum(sum(counter.values()) for counter in again.calls_by_stackset.values())
    assert reads <= 3 * len(plan.steps()) + 2, again.calls_by_stackset


def test_suspended_and_management_accounts_with_slow_throttled_operations(cfg, plan, tmp_path):
    """The acceptance scenario: a suspended account and the management account in the bootstrap OUs, 40-minute
    operations and a burst of 20 throttled polls; the deploy succeeds and says what it skipped and why."""
    rehearsal = Path(__file__).resolve().parent.parent / "examples" / "scenarios" / "slow-and-throttled.yaml"
    from stacksets.awsmodel.scenario import load_scenario

    model = model_for(cfg, load_scenario(rehearsal))
    events = []
    report = executor_for(model, cfg, tmp_path, events).deploy(plan)
    assert report.ok, messages(report)
    assert report.elapsed >= 4 * 2400
    said = " ".join(e.message for e in events if e.stackset == "rstudio-bootstrap")
    assert "management account" in said and "SUSPENDED" in said


def test_r2_an_instance_whose_stack_cannot_be_deleted_is_reported_with_its_way_out(cfg, plan, tmp_path):
    """The dev zone's exports are imported by the dev instance stack, so destroying the zone alone fails: the
    instance is INOPERABLE, and the report says what StackSets allows from there instead of failing the same way
    without a word."""
    model = model_for(cfg)
    assert executor_for(model, cfg, tmp_path).deploy(plan.only(["rstudio-dev"])).ok
    only_zone = Plan({"rstudio-dev-zone": plan.nodes["rstudio-dev-zone"]})
    first = executor_for(model, cfg, tmp_path).destroy(only_zone)
    [failure] = first.results["rstudio-dev-zone"].failures
    assert any("in use" in event or "import" in event.lower() for event in failure.events), failure.events
    assert "INOPERABLE" in failure.reason and "RetainStacks" in failure.reason

def test_the_welcome_mail_runs_the_deployed_handler_against_ses(cfg, plan, tmp_path):
    """The prod template's WelcomeEmail custom resource runs the inline handler the template deploys, in the
    environment the template gives it; SES refuses an unverified recipient, and the instance deploys all the same,
    its result naming the address, SES's reason and the function that resends."""
    rehearsal = scenario(ses={PROD: {"verified": ["rstudio-admin@example.com", "alice@example.com",
                                                  "bob@example.com"]}})  # fmt: skip
    model = model_for(cfg, rehearsal)
    report = executor_for(model, cfg, tmp_path).deploy(plan.only(["rstudio-prod"]))
    assert report.ok, messages(report)
    [mail] = report.results["rstudio-prod"].mail
    [(user, address, why)] = mail.undelivered
    assert (mail.account, mail.region, user, address) == (PROD, cfg.default_region, "chen", "chen.wei@example.com")
    assert why.startswith("MessageRejected: Email address is not verified") and "chen.wei@example.com" in why
    stack = live_stackset(model, "rstudio-prod").instances[(PROD, cfg.default_region)].stack
    assert mail.function == stack.resources["WelcomeEmailFunction"].physical_id
    assert sorted(recipient for _, _, (recipient,) in model.world.sent_mail) == ["alice@example.com",
                                                                                "bob@example.com"]  # fmt: skip


def test_an_update_that_does_not_run_the_welcome_mail_reports_none(cfg, plan, tmp_path):
    """The stack output keeps what the mail said when it last ran; a later update of the instance that leaves the
    custom resource alone must not report (and invite a resend of) that old news again."""
    rehearsal = scenario(ses={PROD: {"verified": ["rstudio-admin@example.com"]}})
    model = model_for(cfg, rehearsal)
    first = executor_for(model, cfg, tmp_path).deploy(plan.only(["rstudio-prod"]))
    assert first.ok and first.results["rstudio-prod"].mail
    prod = plan.nodes["rstudio-prod"]
    body = prod.template_body.replace("Description: Shiny Server", "Description: Shiny Server of prod")
    changed = Plan({**plan.only(["rstudio-prod"]).nodes, "rstudio-prod": replace(prod, template_body=body,
                                                                                  template_sha256="changed")},
                   plan.images)  # fmt: skip
    again = executor_for(model, cfg, tmp_path).deploy(changed)
    assert again.ok and again.calls["update_stack_set"] == 1
    assert again.results["rstudio-prod"].mail == []


def test_a_certificate_waits_for_its_zone_to_be_delegated(cfg, plan, tmp_path):
    """ACM validates by DNS, which resolves only once the network account delegates the instance zone: the
    instance StackSet comes after rstudio-dev-delegation for this reason, and without it the certificate fails."""
    model = model_for(cfg)
    alone = plan.only(["rstudio-dev"])
    assert "rstudio-dev-delegation" in alone.nodes["rstudio-dev"].depends_on
    early = Plan({name: replace(node, depends_on=tuple(d for d in node.depends_on if d != "rstudio-dev-delegation"))
                  for name, node in alone.nodes.items() if name != "rstudio-dev-delegation"}, alone.images)  # fmt: skip
    report = executor_for(model, cfg, tmp_path).deploy(early)
    [failure] = report.results["rstudio-dev"].failures
    assert any(e.startswith("Certificate (AWS::CertificateManager::Certificate) CREATE_FAILED") for e in failure.events)


def test_r4_an_override_of_a_parameter_the_new_template_drops_is_narrowed_first(cfg, plan, tmp_path):
    """A live instance overrides a parameter the new template no longer declares (here an older delegation template
    that took its TTL per account): the overrides are narrowed first, then the template is updated (CloudFormation
    refuses a stack update with a parameter its template does not declare)."""
    current = plan.only(["rstudio-dev-delegation"])
    node = current.nodes["rstudio-dev-delegation"]
    ttl = "  Ttl:\n    Default: '3600'\n    Type: String\n"
    body = node.template_body.replace("Parameters:\n", "Parameters:\n" + ttl, 1)
    network = (cfg.accounts.network, cfg.default_region)
    older = replace(node, template_body=body, template_sha256=hashlib.sha256(body.encode()).hexdigest(),
                    declared=tuple(sorted(declared_parameters(body).items())),
                    overrides=(Override(*network, (("Ttl", "300"),)),))  # fmt: skip
    model = model_for(cfg)
    assert executor_for(model, cfg, tmp_path).deploy(Plan({**current.nodes, older.name: older})).ok
    [delegation] = [s for (_, _, name), s in model.world.stacksets.sets.items() if name == "rstudio-dev-delegation"]
    assert delegation.instances[network].overrides == {"Ttl": "300"}

    report = executor_for(model, cfg, tmp_path).deploy(current)
    assert report.ok, messages(report)
    [instance] = delegation.instances.values()
    assert instance.overrides == {} and instance.stack.status == "UPDATE_COMPLETE"
    assert "Ttl" not in instance.stack.parameters
    writes = [call.api for call in model.log if call.api in ("update_stack_instances", "update_stack_set")]
    assert writes[-2:] == ["update_stack_instances", "update_stack_set"]


def test_the_example_config_deploys_when_creation_order_follows_only_references(cfg, tmp_path):
    """CloudFormation orders resources by Ref, GetAtt and DependsOn only: an Elastic IP, a NAT gateway or an
    internet-facing load balancer created before the internet gateway is attached fails (intermittently on AWS,
    always under the scenario's strict_creation_order)."""
    model = model_for(cfg, scenario(strict_creation_order=True))
    report = executor_for(model, cfg, tmp_path).deploy(build_plan(cfg, TEMPLATES))
    assert report.ok, messages(report)
    stacks = [i.stack for s in model.world.stacksets.sets.values() for i in s.instances.values()]
    assert not [warning for stack in stacks for warning in stack.warnings]
