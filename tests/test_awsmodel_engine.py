"""The stack engine of the AWS model, driven directly (no boto3): the committed templates and one test per rule."""

from __future__ import annotations

import pickle
import re

import pytest

from stacksets.awsmodel.engine import RULES, DefaultEnvironment, Registry, StackEngine, StackRefused
from stacksets.naming import storage_outputs
from tests.conftest import TEMPLATES

ACCOUNT, REGION = "111111111111", "eu-west-1"
INSTANCES = ("dev", "prod")
# what stands before the instances' delegations and compute: every StackSet that takes no parameters
BEFORE_INSTANCES = ["rstudio-bootstrap", "rstudio-central", "rstudio-data", "rstudio-logs",
                    *(f"rstudio-{i}-{part}" for part in ("zone", "data", "storage") for i in INSTANCES)]
INTRINSIC = re.compile(r"Fn::|\bRef\b|\$\{")
# What the welcome function answers when every mail went out (its handler runs under AwsModel, not here).
WELCOME_MAIL_SENT = {"WelcomeEmail": {"Undelivered": "{}"}}


def body(name: str) -> str:
    return (TEMPLATES / f"{name}.yaml").read_text(encoding="utf-8")


def stored(stacks: dict[str, object], instance: str) -> dict[str, str]:
    """The compute's parameters: the instance storage stack's outputs of the same names (stacksets/plan.py)."""
    storage = stacks[f"rstudio-{instance}-storage"]
    return {key: value for key, value in storage.outputs.items() if key in storage_outputs(True)}


def storage_for(engine: StackEngine, instance: str) -> dict[str, str]:
    """The instance's storage stack created in the account; the compute's parameters from its outputs."""
    name = f"rstudio-{instance}-storage"
    return stored({name: engine.create(name, ACCOUNT, REGION, body(name), {})}, instance)


def world(engine: StackEngine) -> dict[str, object]:
    """Every committed template created in one account, in plan order; the stacks by template name."""
    stacks = {name: engine.create(name, ACCOUNT, REGION, body(name), {}) for name in BEFORE_INSTANCES}
    for i in INSTANCES:
        name_servers = {"NameServers": stacks[f"rstudio-{i}-zone"].outputs["NameServers"]}
        stacks[f"rstudio-{i}-delegation"] = engine.create(f"rstudio-{i}-delegation", ACCOUNT, REGION,
                                                          body(f"rstudio-{i}-delegation"), name_servers)
    for i in INSTANCES:
        stacks[f"rstudio-{i}"] = engine.create(f"rstudio-{i}", ACCOUNT, REGION, body(f"rstudio-{i}"), stored(stacks, i))
    return stacks


@pytest.fixture(scope="module")
def committed() -> dict[str, object]:
    return world(StackEngine(DefaultEnvironment(custom_data=WELCOME_MAIL_SENT)))


def test_every_committed_template_creates_with_string_outputs(committed):
    assert sorted(committed) == sorted(path.stem for path in TEMPLATES.glob("*.yaml"))
    for name, stack in committed.items():
        assert stack.status == "CREATE_COMPLETE", (name, stack.status_reason)
        assert bool(stack.outputs) == (name != "rstudio-logs"), name  # the logs stack holds one policy, no outputs
        for key, value in stack.outputs.items():
            assert isinstance(value, str) and not INTRINSIC.search(value), (name, key, value)
    # three per-user servers, each with its own role, grant and alarm; the alarm topic, its policy, two subscriptions
    # and the DataSync failure rule; eleven alarms in all
    assert len(committed["rstudio-prod"].resources) == 189
    assert len(committed["rstudio-prod-storage"].resources) == 10  # key, file system, secrets: outlive the compute


def test_events_run_oldest_first_with_a_complete_pair_per_resource(committed):
    stack = committed["rstudio-dev"]
    assert stack.events[0].status == "CREATE_IN_PROGRESS" and stack.events[-1].status == "CREATE_COMPLETE"
    completed = [e.logical_id for e in stack.events if e.status == "CREATE_COMPLETE" and e.logical_id != stack.name]
    assert sorted(completed) == sorted(stack.resources)
    position = {lid: i for i, lid in enumerate(completed)}
    assert position["InternetGatewayAttachment"] < position["PublicDefaultRoute"]  # DependsOn
    assert position["Vpc"] < position["PublicSubnetA"]  # Ref


def test_zone_name_servers_are_four_and_differ_between_zones(committed):
    dev = committed["rstudio-dev-zone"].resources["HostedZone"].attributes["NameServers"]
    prod = committed["rstudio-prod-zone"].resources["HostedZone"].attributes["NameServers"]
    assert len(dev) == len(prod) == 4
    assert set(dev).isdisjoint(prod)
    assert all(re.fullmatch(r"ns-\d+\.awsdns-\d\d\.(com|net|org|co\.uk)", n) for n in dev)
    assert committed["rstudio-dev-zone"].resources["HostedZone"].physical_id.startswith("Z")


def test_ref_and_getatt_shapes_follow_the_resource_reference(committed):
    prod = committed["rstudio-prod"]
    lb = prod.resources["LoadBalancer"]
    assert lb.physical_id.startswith(f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/")
    assert lb.attributes["LoadBalancerFullName"].startswith("app/")
    assert lb.attributes["CanonicalHostedZoneID"] == "Z32O12XQLNTSW2"
    assert prod.resources["Vpc"].physical_id.startswith("vpc-")
    subnet = prod.resources["PublicSubnetA"].properties
    assert subnet["AvailabilityZone"] == f"{REGION}a" and subnet["Ipv6CidrBlock"].endswith("::/64")
    bucket = committed["rstudio-data"].resources
    assert any(r.physical_id == r.name for r in bucket.values() if r.resource_type == "AWS::S3::Bucket")


def test_parameters_are_checked_before_the_stack_starts():
    engine = StackEngine(DefaultEnvironment())
    with pytest.raises(StackRefused, match=r"Parameters: \[NameServers\] must have values"):
        engine.create("net", ACCOUNT, REGION, body("rstudio-dev-delegation"), {})
    with pytest.raises(StackRefused, match=r"Parameters: \[CookieKeySecretArns, FileSystemId, InstanceKeyArn, "
                                           r"PasswordSecretArns\] must have values"):  # the storage's outputs
        engine.create("dev", ACCOUNT, REGION, body("rstudio-dev"), {})
    with pytest.raises(StackRefused, match=r"Parameters: \[Nope\] do not exist in the template"):
        engine.create("boot", ACCOUNT, REGION, body("rstudio-bootstrap"), {"Nope": "x"})
    with pytest.raises(StackRefused, match="No export named rstudio-dev-zone-HostedZoneId found"):
        engine.create("dev", ACCOUNT, REGION, body("rstudio-dev"), storage_for(engine, "dev"))
    with pytest.raises(StackRefused) as refused:
        engine.create("bad", ACCOUNT, REGION, "Resources: [", {})
    assert refused.value.code == "ValidationError"


def test_unknown_getatt_on_a_known_type_is_refused():
    template = "Resources:\n  B:\n    Type: AWS::S3::Bucket\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n" \
               "      QueueName: !GetAtt B.NoSuchThing\n"
    with pytest.raises(StackRefused, match="resource B does not support attribute type NoSuchThing"):
        StackEngine(DefaultEnvironment()).create("s", ACCOUNT, REGION, template, {})


NAMED = """
Resources:
  Logs:
    Type: AWS::S3::Bucket
    DeletionPolicy: {policy}
    Properties:
      BucketName: fixed-name-logs
  Broken:
    Type: AWS::SQS::Queue
    DependsOn: Logs
"""


def failing_env() -> DefaultEnvironment:
    return DefaultEnvironment(faults={"Broken": [1, "Internal failure."]})


def test_retained_bucket_of_a_failed_create_blocks_the_retry():
    engine = StackEngine(failing_env())
    first = engine.create("s", ACCOUNT, REGION, NAMED.format(policy="Retain"), {})
    assert first.status == "ROLLBACK_COMPLETE"
    assert first.status_reason == "The following resource(s) failed to create: [Broken]. Rollback requested by user."
    assert ("Logs", "DELETE_SKIPPED") in [(e.logical_id, e.status) for e in first.events]
    assert [r.name for r in engine.retained(ACCOUNT)] == ["fixed-name-logs"]
    second = engine.create("s", ACCOUNT, REGION, NAMED.format(policy="Retain"), {})
    assert second.status == "ROLLBACK_COMPLETE"
    failure = next(e for e in second.events if e.status == "CREATE_FAILED")
    assert (failure.logical_id, failure.reason) == ("Logs", "fixed-name-logs already exists")


def test_retain_except_on_create_frees_the_name_on_rollback():
    engine = StackEngine(failing_env())
    assert engine.create("s", ACCOUNT, REGION, NAMED.format(policy="RetainExceptOnCreate"), {}).status == \
        "ROLLBACK_COMPLETE"
    assert engine.retained() == []
    again = engine.create("s", ACCOUNT, REGION, NAMED.format(policy="RetainExceptOnCreate"), {})
    assert again.status == "CREATE_COMPLETE"  # the fault was used up: fault once, then success
    engine.delete(again)
    assert again.status == "DELETE_COMPLETE" and [r.name for r in engine.retained()] == ["fixed-name-logs"]


def test_a_failure_cancels_the_rest_of_its_wave():
    template = "Resources:\n  A:\n    Type: AWS::SQS::Queue\n  B:\n    Type: AWS::SQS::Queue\n"
    stack = StackEngine(DefaultEnvironment(faults={"A": [1, "boom"]})).create("s", ACCOUNT, REGION, template, {})
    statuses = [(e.logical_id, e.status, e.reason) for e in stack.events]
    assert ("A", "CREATE_FAILED", "boom") in statuses
    assert ("B", "CREATE_FAILED", "Resource creation cancelled") in statuses
    assert stack.status == "ROLLBACK_COMPLETE" and stack.resources == {}


def test_names_are_unique_per_account_and_region_but_buckets_per_partition():
    template = "Resources:\n  G:\n    Type: AWS::Logs::LogGroup\n    Properties:\n      LogGroupName: /x\n"
    bucket = "Resources:\n  B:\n    Type: AWS::S3::Bucket\n    Properties:\n      BucketName: shared\n"
    engine = StackEngine(DefaultEnvironment())
    assert engine.create("a", ACCOUNT, REGION, template, {}).status == "CREATE_COMPLETE"
    assert engine.create("b", ACCOUNT, "us-east-1", template, {}).status == "CREATE_COMPLETE"
    clash = engine.create("c", ACCOUNT, REGION, template, {})
    assert "Resource of type 'AWS::Logs::LogGroup' with identifier '/x' already exists." in \
        [e.reason for e in clash.events]
    assert engine.create("d", ACCOUNT, REGION, bucket, {}).status == "CREATE_COMPLETE"
    assert engine.create("e", "222222222222", "us-east-1", bucket, {}).status == "ROLLBACK_COMPLETE"


def test_alb_deletion_protection_fails_the_delete_but_the_rest_proceeds(committed):
    engine = StackEngine(DefaultEnvironment(custom_data=WELCOME_MAIL_SENT))
    stacks = world(engine)
    dev = stacks["rstudio-dev"]
    engine.delete(dev)
    assert dev.status == "DELETE_FAILED"
    failure = next(e for e in dev.events if e.status == "DELETE_FAILED" and e.logical_id == "LoadBalancer")
    assert failure.reason.startswith(f"Load balancer '{dev.resources['LoadBalancer'].physical_id}' cannot be deleted")
    assert "LoadBalancer" in dev.resources and "Vpc" in dev.resources  # the ALB still needs its network
    assert "Cluster" not in dev.resources  # unrelated resources were deleted


def test_eleventh_logs_resource_policy_in_an_account_and_region_fails():
    template = "Resources:\n  P:\n    Type: AWS::Logs::ResourcePolicy\n    Properties:\n      PolicyDocument: '{}'\n"
    engine = StackEngine(DefaultEnvironment())
    assert all(engine.create(f"s{i}", ACCOUNT, REGION, template, {}).status == "CREATE_COMPLETE" for i in range(10))
    eleventh = engine.create("s10", ACCOUNT, REGION, template, {})
    assert eleventh.status == "ROLLBACK_COMPLETE"
    assert any(e.reason.startswith("Resource limit exceeded.") for e in eleventh.events)
    assert engine.create("other", ACCOUNT, "us-east-1", template, {}).status == "CREATE_COMPLETE"


RESERVING = """
Resources:
  Role: {Type: AWS::IAM::Role, Properties: {AssumeRolePolicyDocument: {}}}
  Fn:
    Type: AWS::Lambda::Function
    Properties: {Role: !GetAtt Role.Arn, Runtime: python3.12, Handler: index.handler, Code: {ZipFile: x},
                 ReservedConcurrentExecutions: %d}
"""


@pytest.mark.parametrize(("quota", "reserved", "status"), [(10, 1, "ROLLBACK_COMPLETE"), (1000, 900, "CREATE_COMPLETE"),
                                                          (1000, 901, "ROLLBACK_COMPLETE")])  # fmt: skip
def test_lambda_reservations_against_the_account_quota(quota, reserved, status):
    engine = StackEngine(DefaultEnvironment(quotas={"lambda_concurrent_executions": quota}))
    stack = engine.create("reserving", ACCOUNT, REGION, RESERVING % reserved, {})
    assert stack.status == status
    if status == "ROLLBACK_COMPLETE":
        assert any(f"below its minimum value of [{min(quota, 100)}]" in e.reason for e in stack.events)


def test_reservations_of_earlier_stacks_count_against_the_same_account_and_region():
    engine = StackEngine(DefaultEnvironment())
    assert engine.create("first", ACCOUNT, REGION, RESERVING % 500, {}).status == "CREATE_COMPLETE"
    assert engine.create("second", ACCOUNT, REGION, RESERVING % 500, {}).status == "ROLLBACK_COMPLETE"
    assert engine.create("elsewhere", ACCOUNT, "us-east-1", RESERVING % 500, {}).status == "CREATE_COMPLETE"


# What stacksets/actions/deploy.py creates new instances without: a failed first create whose rollback cannot delete
# the ALB (deletion protection) ends ROLLBACK_FAILED, and its retry cannot start.
@pytest.mark.parametrize(("protection", "status"), [("true", "ROLLBACK_FAILED"), ("false", "ROLLBACK_COMPLETE")])
def test_a_failed_create_rolls_back_only_an_unprotected_load_balancer(protection, status):
    engine = StackEngine(DefaultEnvironment(faults={"HttpsListener": [1, "Internal failure."]},
                                            custom_data=WELCOME_MAIL_SENT))
    engine.create("rstudio-prod-zone", ACCOUNT, REGION, body("rstudio-prod-zone"), {})
    parameters = {**storage_for(engine, "prod"), "LoadBalancerDeletionProtection": protection}
    stack = engine.create("rstudio-prod", ACCOUNT, REGION, body("rstudio-prod"), parameters)
    assert stack.status == status
    assert ("LoadBalancer" in stack.resources) == (protection == "true")


RACY_NETWORK = """
Resources:
  Vpc: {Type: AWS::EC2::VPC, Properties: {CidrBlock: 10.0.0.0/16}}
  Gateway: {Type: AWS::EC2::InternetGateway}
  Attachment: {Type: AWS::EC2::VPCGatewayAttachment, Properties: {VpcId: !Ref Vpc, InternetGatewayId: !Ref Gateway}}
  Subnet: {Type: AWS::EC2::Subnet, Properties: {VpcId: !Ref Vpc, CidrBlock: 10.0.0.0/24}}
  Route:
    Type: AWS::EC2::Route
    DependsOn: Attachment
    Properties: {RouteTableId: !Ref Table, DestinationCidrBlock: 0.0.0.0/0, GatewayId: !Ref Gateway}
  Table: {Type: AWS::EC2::RouteTable, Properties: {VpcId: !Ref Vpc}}
  NatAddressA: {Type: AWS::EC2::EIP, Properties: {Domain: vpc}}
  NatGatewayA:
    Type: AWS::EC2::NatGateway
    Properties: {AllocationId: !GetAtt NatAddressA.AllocationId, SubnetId: !Ref Subnet}
"""


def test_strict_order_fails_what_does_not_wait_for_the_gateway_attachment_and_lax_order_warns():
    strict = StackEngine(DefaultEnvironment(strict_creation_order=True))
    stack = strict.create("racy", ACCOUNT, REGION, RACY_NETWORK, {})
    assert stack.status == "ROLLBACK_COMPLETE"
    failures = {e.logical_id: e.reason for e in stack.events if e.status == "CREATE_FAILED"}
    assert "not attached to any internet gateway" in failures["NatAddressA"]
    lax = StackEngine(DefaultEnvironment())
    stack = lax.create("racy", ACCOUNT, REGION, RACY_NETWORK, {})
    assert stack.status == "CREATE_COMPLETE"
    assert stack.warnings[0].endswith("(add DependsOn): NatAddressA, NatGatewayA")  # the Route waits: DependsOn


def test_the_committed_instance_templates_wait_for_the_gateway_attachment():
    strict = StackEngine(DefaultEnvironment(strict_creation_order=True, custom_data=WELCOME_MAIL_SENT))
    for i in INSTANCES:
        strict.create(f"rstudio-{i}-zone", ACCOUNT, REGION, body(f"rstudio-{i}-zone"), {})
        stack = strict.create(f"rstudio-{i}", ACCOUNT, REGION, body(f"rstudio-{i}"), storage_for(strict, i))
        assert stack.status == "CREATE_COMPLETE" and not stack.warnings, (i, stack.status_reason)


def test_acm_dns_validation_needs_the_delegation_in_the_world():
    registry = Registry()
    engine = StackEngine(DefaultEnvironment(dns_registry=registry), registry)
    engine.create("rstudio-dev-zone", ACCOUNT, REGION, body("rstudio-dev-zone"), {})
    parameters = storage_for(engine, "dev")
    early = engine.create("rstudio-dev", ACCOUNT, REGION, body("rstudio-dev"), parameters)
    assert early.status == "ROLLBACK_COMPLETE"
    assert "DNS validation" in next(e.reason for e in early.events if e.logical_id == "Certificate"
                                    and e.status == "CREATE_FAILED")
    engine.delete(early)
    engine.create("rstudio-dev-delegation", "222222222222", REGION, body("rstudio-dev-delegation"),
                  {"NameServers": "a,b"})
    assert engine.create("rstudio-dev", ACCOUNT, REGION, body("rstudio-dev"), parameters).status == "CREATE_COMPLETE"


def test_custom_resource_failure_carries_the_handler_reason():
    template = "Resources:\n  Mail:\n    Type: Custom::WelcomeEmail\n    Properties:\n      ServiceToken: arn:x\n"
    env = DefaultEnvironment(custom_failures={"Mail": "SES identity not verified"})
    stack = StackEngine(env).create("s", ACCOUNT, REGION, template, {})
    assert "Received response status [FAILED] from custom resource. Message returned: SES identity not verified" in \
        [e.reason for e in stack.events]


CUSTOM_CHAIN = """
Resources:
  Topic: {Type: AWS::SNS::Topic}
  First:
    Type: Custom::Probe
    Properties: {ServiceToken: arn:x, Topic: !Ref Topic}
  Second:
    Type: Custom::Probe
    DependsOn: First
    Properties: {ServiceToken: arn:x}
"""


def test_deleting_a_stack_sends_custom_resources_delete_requests_dependents_first():
    env = DefaultEnvironment()
    engine = StackEngine(env)
    stack = engine.create("s", ACCOUNT, REGION, CUSTOM_CHAIN, {})
    engine.delete(stack)
    assert stack.status == "DELETE_COMPLETE"
    assert env.custom_requests == [("Create", "First"), ("Create", "Second"), ("Delete", "Second"),
                                   ("Delete", "First")]  # fmt: skip


def test_a_failed_delete_answer_fails_that_resource_and_keeps_what_it_depends_on():
    env = DefaultEnvironment(custom_delete_failures={"First": "group still protected"})
    engine = StackEngine(env)
    stack = engine.create("s", ACCOUNT, REGION, CUSTOM_CHAIN, {})
    engine.delete(stack)
    assert stack.status == "DELETE_FAILED" and set(stack.resources) == {"Topic", "First"}
    failed = [(e.logical_id, e.reason) for e in stack.events if e.status == "DELETE_FAILED" and e.logical_id != "s"]
    assert failed == [("First", "Received response status [FAILED] from custom resource. Message returned: group "
                                "still protected")]  # fmt: skip


def test_the_rollback_of_a_failed_create_sends_delete_to_the_custom_resources_it_created():
    env = DefaultEnvironment(faults={"Second": [1, "Throttled"]})
    stack = StackEngine(env).create("s", ACCOUNT, REGION, CUSTOM_CHAIN, {})
    assert stack.status == "ROLLBACK_COMPLETE"
    assert env.custom_requests == [("Create", "First"), ("Delete", "First")]


UPDATABLE = """
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: {queue}
      DelaySeconds: {delay}
Outputs:
  Url:
    Value: !Ref Queue
"""


def test_failed_update_rolls_back_to_the_previous_resources_and_outputs():
    env = DefaultEnvironment()
    engine = StackEngine(env)
    stack = engine.create("s", ACCOUNT, REGION, UPDATABLE.format(queue="q1", delay=0), {})
    before = (dict(stack.resources), dict(stack.outputs))
    env.faults["Queue"] = [1, "Throttled"]
    engine.update(stack, UPDATABLE.format(queue="q2", delay=5), {})
    assert stack.status == "UPDATE_ROLLBACK_COMPLETE"
    assert (stack.resources, stack.outputs) == before
    assert stack.template_body == UPDATABLE.format(queue="q1", delay=0)
    engine.update(stack, UPDATABLE.format(queue="q2", delay=5), {})  # replacement: new name, old queue removed
    assert stack.status == "UPDATE_COMPLETE" and stack.outputs["Url"].endswith("/q2")
    assert engine.create("t", ACCOUNT, REGION, UPDATABLE.format(queue="q1", delay=0), {}).status == "CREATE_COMPLETE"


def test_update_of_a_rolled_back_stack_is_refused():
    engine = StackEngine(failing_env())
    stack = engine.create("s", ACCOUNT, REGION, NAMED.format(policy="Delete"), {})
    with pytest.raises(StackRefused, match=r"is in ROLLBACK_COMPLETE state and can not be updated\."):
        engine.update(stack, NAMED.format(policy="Delete"), {})


def test_the_world_pickles_and_rules_name_their_sources(committed):
    engine = StackEngine(DefaultEnvironment(custom_data=WELCOME_MAIL_SENT))
    world(engine)
    restored = pickle.loads(pickle.dumps(engine))
    assert len(restored.registry.stacks) == len(committed)
    assert len({rule for rule, _, _ in RULES}) == len(RULES) and all(source for _, _, source in RULES)


def test_static_subtrees_are_only_nodes_of_kept_templates():
    """`_STATIC` remembers template subtrees by id; an id of anything freed (a temporary `{}` for a resource
    without Properties) is reused by later objects, which were then taken for static and left unevaluated (an
    Fn::ImportValue read as a literal dict, seen as a flaky test)."""
    from stacksets.awsmodel import intrinsics

    intrinsics.parse("Resources:\n  Topic: {Type: AWS::SNS::Topic}\n")

    def ids(node, found):
        if isinstance(node, (dict, list)):
            found.add(id(node))
            for child in node.values() if isinstance(node, dict) else node:
                ids(child, found)
        return found

    kept = set()
    for template in intrinsics._PARSED.values():
        if not isinstance(template, intrinsics.TemplateError):
            ids(template.resources, kept)
    assert set(intrinsics._STATIC) <= kept
