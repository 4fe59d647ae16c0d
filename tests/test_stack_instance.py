"""The instance StackSet's foundation: the roles and bus policy the data account's template relies on, and the
instance key it takes from the storage StackSet (generator/stacks/storage.py), which keeps the key when the compute
goes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from generator import naming
from generator.iam import role_arn
from generator.stacks import storage
from generator.stacks.instance import build
from stacksets.config import MAX_PER_USER_SERVERS, Config, parse_config
from stacksets.naming import instance_stackset
from stacksets.template_checks import check_template, lint_template
from tests.instance_parts import IMAGE_TAGS

DATA_ACCOUNT = "444444444444"
PROD_USERS = ("alice", "bob", "chen")  # per-user mode in the example config
FOUNDATION = ("RStudioTaskRole", "DataSyncRole", "DataAccountEventBusPolicy")
KEY = ("InstanceKey", "InstanceKeyAlias")  # in the storage StackSet


def resources(cfg: Config, instance: str) -> dict[str, Any]:
    return build(cfg, instance, IMAGE_TAGS).to_dict()["Resources"]


def stored(cfg: Config, instance: str) -> dict[str, Any]:
    """The storage StackSet's resources: the key the compute's parameter InstanceKeyArn names."""
    return storage.build(cfg, instance).to_dict()["Resources"]


def sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def trust(role: dict[str, Any]) -> dict[str, Any]:
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    return statement


def rstudio_task_roles(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in found.items() if r["Type"] == "AWS::IAM::Role" and name.endswith("RStudioTaskRole")}


def test_role_names_are_the_ones_the_data_account_trusts(cfg):
    names = {name: r["Properties"]["RoleName"] for name, r in rstudio_task_roles(resources(cfg, "dev")).items()}
    assert names == {"RStudioTaskRole": "rstudio-dev-rstudio-task"}
    # Per-user mode: a role per server, no shared one.
    prod = resources(cfg, "prod")
    names = {name: r["Properties"]["RoleName"] for name, r in rstudio_task_roles(prod).items()}
    assert names == {f"{user.title()}RStudioTaskRole": f"rstudio-prod-user-{user}" for user in PROD_USERS}
    assert prod["DataSyncRole"]["Properties"]["RoleName"] == "rstudio-prod-datasync-s3"
    for instance in ("dev", "prod"):
        found = resources(cfg, instance)
        assert found["DataSyncRole"]["Properties"]["RoleName"] == naming.role_name(instance, naming.DATASYNC_ROLE)


def test_the_longest_names_the_config_allows_still_fit_iam_role_names(example_data):
    instance, user = "i" * 16, "u" * 32
    # Short DNS names, so that u...u.rstudio.i...i.a.b.io fits ACM's 64 characters.
    example_data["dns"].update(subdomain="a", base_domain="b.io")
    example_data["instances"][instance] = example_data["instances"].pop("prod")
    example_data["instances"][instance]["users"] = {user: {"uid": 3001, "email": "u@example.com"}}
    names = [r["Properties"]["RoleName"] for r in rstudio_task_roles(resources(parse_config(example_data),
                                                                                 instance)).values()]  # fmt: skip
    assert names == [f"rstudio-{instance}-user-{user}"] and len(names[0]) <= 64


@pytest.mark.slow
def test_the_most_per_user_servers_the_config_allows_fit_in_one_template(example_data):
    """Each server brings its own task role, EFS grant and alarm; the cap must still leave the template under 500
    resources and 1 MB, on the EC2 launch type with the bastion (the example's prod), the larger variant."""
    example_data["instances"]["prod"]["users"] = {f"user{i:02d}": {"email": f"u{i}@example.com", "uid": 3001 + i}
                                                  for i in range(MAX_PER_USER_SERVERS)}  # fmt: skip
    template = build(parse_config(example_data), "prod", IMAGE_TAGS)
    findings = [f for f in check_template("rstudio-prod", template.to_yaml()) if f.rule == "size"]
    assert findings == [] and len(template.resources) > 400  # the cap is not far too low either


@pytest.mark.parametrize("instance,role", [("dev", "RStudioTaskRole"), ("prod", "AliceRStudioTaskRole")])
def test_task_role_is_trusted_by_ecs_tasks_of_this_account_and_region_only(cfg, instance, role):
    statement = trust(resources(cfg, instance)[role])
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert statement["Action"] == ["sts:AssumeRole"]
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        "ArnLike": {"aws:SourceArn": sub("arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:*")},
    }


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_task_role_may_assume_only_the_athena_role_of_its_own_instance(cfg, instance):
    expected = role_arn(DATA_ACCOUNT, naming.role_name(instance, naming.ATHENA_ROLE)).to_dict()
    assert expected == sub(f"arn:${{AWS::Partition}}:iam::{DATA_ACCOUNT}:role/rstudio-{instance}-athena")
    actions = ["sts:AssumeRole", "sts:SetSourceIdentity"]
    roles = rstudio_task_roles(resources(cfg, instance))
    assert len(roles) == (1 if instance == "dev" else len(PROD_USERS))
    for role in roles.values():
        (statement,) = statements(role)
        assert statement == {"Effect": "Allow", "Action": actions, "Resource": [expected]}


def test_datasync_role_is_trusted_by_datasync_resources_of_this_account_as_aws_documents(cfg):
    statement = trust(resources(cfg, "prod")["DataSyncRole"])
    assert statement["Principal"] == {"Service": "datasync.amazonaws.com"}
    assert statement["Action"] == ["sts:AssumeRole"]
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        # the DataSync user guide's pattern: which ARN DataSync presents when it checks a location's role is not
        # documented, so task/* or location/* alone could refuse it
        "ArnLike": {"aws:SourceArn": sub("arn:${AWS::Partition}:datasync:${AWS::Region}:${AWS::AccountId}:*")},
    }


def test_datasync_role_reaches_only_its_instance_upload_bucket(cfg):
    by_sid = {s["Sid"]: s for s in statements(resources(cfg, "prod")["DataSyncRole"])}
    bucket = "arn:${AWS::Partition}:s3:::rstudio-prod-uploads-444444444444-eu-west-1"
    assert bucket.endswith(naming.upload_bucket_name("prod", DATA_ACCOUNT, "eu-west-1"))
    assert by_sid["UploadBucket"]["Resource"] == [sub(bucket)]
    assert set(by_sid["UploadBucket"]["Action"]) == {
        "s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"
    }  # fmt: skip
    assert by_sid["UploadObjects"]["Resource"] == [sub(f"{bucket}/hourly/*"), sub(f"{bucket}/instant/*")]
    assert set(by_sid["UploadObjects"]["Action"]) == {
        "s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectVersion",
        "s3:GetObjectVersionTagging", "s3:ListMultipartUploadParts", "s3:PutObject", "s3:PutObjectTagging",
    }  # fmt: skip
    key = by_sid["UploadBucketKey"]
    assert key["Action"] == ["kms:Decrypt", "kms:DescribeKey"]
    assert key["Resource"] == [sub("arn:${AWS::Partition}:kms:eu-west-1:444444444444:key/*")]
    assert key["Condition"] == {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}
    assert set(by_sid) == {"UploadBucket", "UploadObjects", "UploadBucketKey"}
    assert "rstudio-dev" not in json.dumps(by_sid)


def test_cross_account_names_follow_the_config(example_data):
    """Another data account and an instance in another region: the data side stays in the default region."""
    example_data["accounts"]["data"] = "777777777777"
    example_data["instances"]["prod"]["region"] = "us-east-1"
    found = resources(parse_config(example_data), "prod")
    (assume,) = statements(found["AliceRStudioTaskRole"])
    assert assume["Resource"] == [sub("arn:${AWS::Partition}:iam::777777777777:role/rstudio-prod-athena")]
    by_sid = {s["Sid"]: s for s in statements(found["DataSyncRole"])}
    assert by_sid["UploadBucket"]["Resource"] == [
        sub("arn:${AWS::Partition}:s3:::rstudio-prod-uploads-777777777777-eu-west-1")
    ]
    assert by_sid["UploadBucketKey"]["Condition"]["StringEquals"]["kms:ViaService"] == "s3.eu-west-1.amazonaws.com"
    bus = found["DataAccountEventBusPolicy"]["Properties"]["Statement"]
    assert bus["Principal"] == {"AWS": sub("arn:${AWS::Partition}:iam::777777777777:root")}


def test_event_bus_policy_admits_exactly_the_data_account(cfg):
    policy = resources(cfg, "prod")["DataAccountEventBusPolicy"]["Properties"]
    assert policy["EventBusName"] == "default"
    assert policy["Statement"] == {
        "Effect": "Allow",
        "Principal": {"AWS": sub(f"arn:${{AWS::Partition}}:iam::{DATA_ACCOUNT}:root")},
        "Action": ["events:PutEvents"],
        "Resource": [sub("arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default")],
    }


def test_instances_sharing_a_bus_get_their_own_statement(cfg):
    ids = {resources(cfg, name)["DataAccountEventBusPolicy"]["Properties"]["StatementId"] for name in ("dev", "prod")}
    assert ids == {"rstudio-dev-data-account", "rstudio-prod-data-account"}
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", statement_id) for statement_id in ids)


def test_key_is_retained_rotated_and_aliased_per_instance(cfg):
    compute = build(cfg, "prod", IMAGE_TAGS).to_dict()
    assert not [name for name, r in compute["Resources"].items() if r["Type"].startswith("AWS::KMS::")]
    assert compute["Parameters"]["InstanceKeyArn"]["Type"] == "String"
    found = stored(cfg, "prod")
    key = found["InstanceKey"]
    # Kept with the data it encrypts; deleted only when a first create rolls back.
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
    assert key["Properties"]["EnableKeyRotation"] is True
    assert found["InstanceKeyAlias"]["Properties"] == {
        "AliasName": "alias/rstudio-prod", "TargetKeyId": {"Ref": "InstanceKey"}
    }  # fmt: skip


def test_key_policy_lets_only_this_accounts_iam_log_groups_dead_letters_and_alarms_use_the_key(cfg):
    policy = stored(cfg, "dev")["InstanceKey"]["Properties"]["KeyPolicy"]["Statement"]
    account = {"AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")}
    events = {"Service": "events.amazonaws.com"}
    logs = {"Service": sub("logs.${AWS::Region}.amazonaws.com")}
    alarms = {"Service": "cloudwatch.amazonaws.com"}
    assert [s["Principal"] for s in policy] == [account, account, events, logs, alarms]
    # What CloudWatch needs to publish to the encrypted alarm topic, for this instance's alarms only.
    assert policy[4]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert policy[4]["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        "ArnLike": {"aws:SourceArn": sub("arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}"
                                         ":alarm:rstudio-dev-*")},
    }  # fmt: skip
    # EventBridge's KMS requests carry no source keys: the queue and topic policies name the rule instead.
    assert "Condition" not in policy[2]
    assert all(s["Effect"] == "Allow" for s in policy)
    actions = [action for s in policy for action in s["Action"]]
    assert "kms:*" not in actions and "*" not in actions
    assert "kms:Put*" in actions  # without it the account could lock itself out of the key
    assert policy[3]["Condition"] == {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": sub(
                "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"
            )
        }
    }


def test_ec2_launch_type_adds_only_the_auto_scaling_role_to_the_key_policy(cfg):
    dev = stored(cfg, "dev")["InstanceKey"]["Properties"]["KeyPolicy"]["Statement"]
    prod = stored(cfg, "prod")["InstanceKey"]["Properties"]["KeyPolicy"]["Statement"]
    # The alarm statement names each instance's own alarms.
    assert prod[: len(dev)] == json.loads(json.dumps(dev).replace(":alarm:rstudio-dev-*", ":alarm:rstudio-prod-*"))
    assert len(prod) > len(dev)
    role = sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/autoscaling.amazonaws.com/"
               "AWSServiceRoleForAutoScaling")  # fmt: skip
    for statement in prod[len(dev):]:
        assert statement["Condition"]["ArnEquals"] == {"aws:PrincipalArn": role}


def test_dev_and_prod_differ_only_in_the_instance_name(example_data):
    # On the same launch type: EC2 capacity adds the Auto Scaling role to the key policy (tested above).
    example_data["instances"]["prod"]["rstudio"].update(launch_type="fargate", cpu=4096, memory=16384, mode="shared")
    del example_data["instances"]["prod"]["rstudio"]["ec2_instance_type"]
    cfg = parse_config(example_data)

    def foundation(instance: str) -> str:
        found, key = resources(cfg, instance), stored(cfg, instance)
        text = json.dumps({**{name: found[name] for name in FOUNDATION}, **{name: key[name] for name in KEY}},
                          sort_keys=True)  # fmt: skip
        text = text.replace(instance_stackset(instance), "rstudio-INSTANCE")
        return text.replace(f"instance {instance}", "instance X")  # role and key descriptions

    dev, prod = foundation("dev"), foundation("prod")
    assert "dev" not in dev and "prod" not in prod
    assert dev == prod


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_template_is_partition_safe_and_holds_no_instance_account_id(cfg, instance):
    text = build(cfg, instance, IMAGE_TAGS).to_json()
    assert not re.search(r"arn:aws[a-z-]*:", text)
    assert cfg.instances[instance].account not in text  # the same template fits any account it is deployed to


def test_outputs_name_both_roles_and_the_urls_users_open(cfg):
    # The key's ARN is the storage StackSet's output (InstanceKeyArn), which this stack takes as a parameter.
    assert storage.build(cfg, "dev").to_dict()["Outputs"]["InstanceKeyArn"]["Value"] == {
        "Fn::GetAtt": ["InstanceKey", "Arn"]}
    outputs = build(cfg, "dev", IMAGE_TAGS).to_dict()["Outputs"]
    assert {name: output["Value"] for name, output in outputs.items()} == {
        "RStudioTaskRoleArn": {"Fn::GetAtt": ["RStudioTaskRole", "Arn"]},
        "DataSyncRoleArn": {"Fn::GetAtt": ["DataSyncRole", "Arn"]},
        "ShinyUrl": "https://shiny.dev.analytics.example.com/",
        "RStudioUrl": "https://rstudio.dev.analytics.example.com/",
    }
    prod = build(cfg, "prod", IMAGE_TAGS).to_dict()["Outputs"]
    assert prod["BobRStudioUrl"]["Value"] == "https://bob.rstudio.prod.analytics.example.com/"
    assert not any("Export" in output for output in outputs.values())


@pytest.mark.slow
@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_cfn_lint_finds_nothing(cfg, instance):
    assert lint_template(instance, build(cfg, instance, IMAGE_TAGS).to_json(), cfg.regions) == []


def test_unknown_instance_is_refused(cfg):
    with pytest.raises(ValueError, match="unknown instance 'staging'"):
        build(cfg, "staging", IMAGE_TAGS)


# ------------------------------------------------------------------------------------------------------------------
# The contract with the data account's template: both halves of each cross-account grant, built from one config.


def data_resources(cfg: Config) -> dict[str, dict[str, Any]]:
    from generator.stacks import (
        instance_data,  # here, so a broken data module fails only the contract tests
    )

    return {logical_id: resource for name in sorted(cfg.instances)
            for logical_id, resource in instance_data.build(cfg, name).to_dict()["Resources"].items()}  # fmt: skip


def all_statements(node: Any) -> list[dict[str, Any]]:
    """Every policy statement anywhere under node (key policies, bucket policies, role policies, trust policies)."""
    if isinstance(node, list):
        return [s for value in node for s in all_statements(value)]
    if not isinstance(node, dict):
        return []
    own = node.get("Statement")
    found = own if isinstance(own, list) else [own] if isinstance(own, dict) else []
    return found + [s for key, value in node.items() if key != "Statement" for s in all_statements(value)]


def literal_bucket_arns(node: Any, buckets: dict[str, str]) -> Any:
    """Rewrite the data template's GetAtt/`${Bucket.Arn}` references into the literal ARNs the instance side uses."""
    if isinstance(node, list):
        return [literal_bucket_arns(value, buckets) for value in node]
    if not isinstance(node, dict):
        return node
    if list(node) == ["Fn::GetAtt"] and node["Fn::GetAtt"][0] in buckets:
        return sub(f"arn:${{AWS::Partition}}:s3:::{buckets[node['Fn::GetAtt'][0]]}")
    if list(node) == ["Fn::Sub"] and isinstance(node["Fn::Sub"], str):
        text = node["Fn::Sub"]
        for logical_id, name in buckets.items():
            text = text.replace(f"${{{logical_id}.Arn}}", f"arn:${{AWS::Partition}}:s3:::{name}")
        return sub(text)
    return {key: literal_bucket_arns(value, buckets) for key, value in node.items()}


def data_statements_for(cfg: Config, principal_role_arn: dict[str, str]) -> list[dict[str, Any]]:
    """Every data-template statement granting exactly this instance-account role (named_role_principal form)."""
    resources_ = data_resources(cfg)
    buckets = {name: r["Properties"]["BucketName"] for name, r in resources_.items() if r["Type"] == "AWS::S3::Bucket"}
    return [literal_bucket_arns(s, buckets) for s in all_statements(list(resources_.values()))
            if s.get("Condition", {}).get("ArnEquals", {}).get("aws:PrincipalArn") == principal_role_arn]  # fmt: skip


def instance_role_arn(cfg: Config, instance: str, role: dict[str, Any]) -> dict[str, str]:
    return role_arn(cfg.instances[instance].account, role["Properties"]["RoleName"]).to_dict()


def s3_grants(statements_: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(action, json.dumps(resource, sort_keys=True)) for s in statements_ for action in s["Action"]
            if action.startswith("s3:") for resource in s["Resource"]}  # fmt: skip


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_data_account_grants_the_datasync_role_what_it_asks_for(cfg, instance):
    role = resources(cfg, instance)["DataSyncRole"]
    granted = data_statements_for(cfg, instance_role_arn(cfg, instance, role))
    assert s3_grants(statements(role)) and s3_grants(statements(role)) == s3_grants(granted)
    (key,) = [s for s in granted if "kms:Decrypt" in s["Action"]]
    (asked,) = [s for s in statements(role) if "kms:Decrypt" in s["Action"]]
    assert set(asked["Action"]) <= set(key["Action"])
    assert key["Condition"]["StringEquals"]["kms:ViaService"] == sub("s3.${AWS::Region}.amazonaws.com")
    assert asked["Condition"]["StringEquals"]["kms:ViaService"] == f"s3.{cfg.default_region}.amazonaws.com"


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_data_account_athena_role_trusts_the_task_roles_for_what_they_ask(cfg, instance):
    task_roles = list(rstudio_task_roles(resources(cfg, instance)).values())
    athena_name = naming.role_name(instance, naming.ATHENA_ROLE)
    (athena,) = [r for r in data_resources(cfg).values() if r["Properties"].get("RoleName") == athena_name]
    (trusted,) = athena["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    arns = [instance_role_arn(cfg, instance, role) for role in task_roles]
    assert trusted["Condition"]["ArnEquals"]["aws:PrincipalArn"] == (arns if len(arns) > 1 else arns[0])
    for task_role in task_roles:
        (asked,) = statements(task_role)
        assert set(asked["Action"]) == set(trusted["Action"])
        assert asked["Resource"] == [role_arn(cfg.accounts.data, athena_name).to_dict()]


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_data_account_forwards_to_the_bus_this_policy_opens(cfg, instance):
    bus_statement = resources(cfg, instance)["DataAccountEventBusPolicy"]["Properties"]["Statement"]
    rules = [r for r in data_resources(cfg).values() if r["Type"] == "AWS::Events::Rule"]
    account, region = cfg.instances[instance].account, cfg.region_of(instance)
    bus = sub(f"arn:${{AWS::Partition}}:events:{region}:{account}:event-bus/default")
    targets = [target for rule in rules for target in rule["Properties"]["Targets"] if target["Arn"] == bus]
    assert len(targets) == 1
    assert bus_statement["Principal"] == {"AWS": sub(f"arn:${{AWS::Partition}}:iam::{cfg.accounts.data}:root")}


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_every_role_the_data_account_trusts_is_created_by_the_instance_stackset(cfg, instance):
    """Cross-account grants name roles by ARN; each must be a role this instance's template creates, same name."""
    from generator.stacks import instance_data

    account = cfg.instances[instance].account
    prefix = f"arn:${{AWS::Partition}}:iam::{account}:role/"
    data = instance_data.build(cfg, instance).to_dict()["Resources"]
    named = [statement["Condition"]["ArnEquals"]["aws:PrincipalArn"]
             for statement in all_statements(list(data.values()))
             if "aws:PrincipalArn" in statement.get("Condition", {}).get("ArnEquals", {})]  # fmt: skip
    arns = [arn["Fn::Sub"] for value in named for arn in (value if isinstance(value, list) else [value])]
    trusted = {arn.removeprefix(prefix) for arn in arns if arn.startswith(prefix)}
    created = {r["Properties"]["RoleName"] for r in resources(cfg, instance).values()
               if r["Type"] == "AWS::IAM::Role" and "RoleName" in r["Properties"]}  # fmt: skip
    rstudio = ({f"rstudio-{instance}-rstudio-task"} if instance == "dev" else
               {f"rstudio-prod-user-{user}" for user in PROD_USERS})  # fmt: skip
    assert trusted == {f"rstudio-{instance}-datasync-s3", *rstudio}
    assert trusted <= created
