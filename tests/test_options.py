"""Issue 12's per-instance options: an instance without Shiny, a per-user server size, and EC2 sizes checked against
the instance type. Templates are built from the example config with one change; the deploys run through
`deploy.main` against the sandbox, as an operator would."""

from __future__ import annotations

import json
from typing import Any

import pytest

import deploy
from generator.stacks import instance as instance_stack
from generator.stacks import storage as storage_stack
from stacksets.config import ConfigError, parse_config
from stacksets.ec2_types import INSTANCE_TYPES
from tests.test_lifecycle import edit_config, sandbox, stack_of

TAGS = {"rstudio": "r", "shiny": "s", "bastion": "b"}


def resources(data: dict[str, Any], instance: str) -> dict[str, Any]:
    return instance_stack.build(parse_config(data), instance, TAGS).to_dict()


def without_shiny(data: dict[str, Any]) -> dict[str, Any]:
    for settings in data["instances"].values():
        settings["shiny"] = {"enabled": False}
    return data


# --------------------------------------------------------------------------------------------------------------------
# shiny.enabled


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_an_instance_without_shiny_has_no_shiny_resource_but_the_app_folder(example_data, instance):
    with_shiny = resources(example_data, instance)
    template = resources(without_shiny(example_data), instance)
    gone = {lid for lid in set(with_shiny["Resources"]) - set(template["Resources"])}
    # what Shiny had to itself: service, task definition, roles, log group, routing, DNS, scaling, SG rules, home
    assert {"ShinyService", "ShinyTaskDefinition", "ShinyTaskRole", "ShinyExecutionRole", "ShinyLogGroup",
            "ShinyTargetGroup", "ShinyListenerRule", "ShinyDnsRecords", "ShinyScalableTarget",
            "ShinyCpuScalingPolicy", "ShinySecurityGroup", "AlbToShiny", "ShinyFromAlb", "FileSystemNfsFromShiny",
            "ShinyHomeAccessPoint", "ShinyTaskRoleEfsPolicy"} <= gone  # fmt: skip
    left = [lid for lid in template["Resources"] if "Shiny" in lid]
    assert left == ["ShinyAppsAccessPoint"]  # RStudio users keep their apps there
    text = json.dumps(template)
    assert "shiny." not in text.replace("shiny.enabled", "")  # no host name anywhere: certificate, rules, records
    assert "ShinyUrl" not in template["Outputs"] and "ShinyUrl" in with_shiny["Outputs"]
    names = [r["Properties"]["DomainName"] for r in template["Resources"].values()
             if r["Type"] == "AWS::CertificateManager::Certificate"]  # fmt: skip
    assert names and not [n for n in names if n.startswith("shiny.")]


def test_the_file_system_admits_the_shiny_role_only_while_the_instance_runs_shiny(example_data):
    def admitted(data: dict[str, Any]) -> list[str]:
        fs = storage_stack.build(parse_config(data), "prod").to_dict()["Resources"]["FileSystem"]
        [deny] = [s for s in fs["Properties"]["FileSystemPolicy"]["Statement"]
                  if s["Sid"] == "DenyAllButTheInstanceRoles"]  # fmt: skip
        return [json.dumps(arn) for arn in deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]]

    on = admitted(example_data)
    assert len([a for a in on if "shiny-task" in a]) == 1
    off = admitted(without_shiny(example_data))
    # the same RStudio and DataSync roles, without Shiny's
    assert not [a for a in off if "shiny-task" in a] and sorted(off) == sorted(a for a in on if "shiny-task" not in a)


@pytest.mark.slow
def test_a_sandbox_deploy_without_shiny_succeeds_and_creates_no_shiny_service(workdir, capsys):
    edit_config(workdir, without_shiny)
    assert deploy.main(["deploy", "--sandbox", "--yes"]) == 0
    model = sandbox(workdir)
    for stackset in ("rstudio-dev", "rstudio-prod"):
        stack = stack_of(model, stackset)
        assert stack.status.endswith("COMPLETE") and not stack.status.startswith(("ROLLBACK", "DELETE"))
        kinds = {r.logical_id: r.resource_type for r in stack.resources.values()}
        assert "ShinyService" not in kinds and "ShinyTaskRole" not in kinds
        assert any(lid.endswith("RStudioService") for lid in kinds)
    assert deploy.main(["validate"]) == 0


# --------------------------------------------------------------------------------------------------------------------
# Per-user server sizes

BIG = {"cpu": 8192, "memory": 65536}  # 8 vCPU, 64 GiB: more memory than Fargate gives 8 vCPU


def big_alice(data: dict[str, Any], instance_type: str = "r6i.4xlarge") -> dict[str, Any]:
    data["instances"]["prod"]["rstudio"]["ec2_instance_type"] = instance_type
    data["instances"]["prod"]["users"]["alice"]["rstudio"] = dict(BIG)
    return data


def sizes(template: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {lid: (r["Properties"]["Cpu"], r["Properties"]["Memory"]) for lid, r in template["Resources"].items()
            if lid.endswith("RStudioTaskDefinition")}  # fmt: skip


def test_a_users_own_size_sizes_that_users_server_only(example_data):
    found = sizes(resources(big_alice(example_data), "prod"))
    assert found == {"AliceRStudioTaskDefinition": ("8192", "65536"), "BobRStudioTaskDefinition": ("4096", "57344"),
                     "ChenRStudioTaskDefinition": ("4096", "57344")}  # fmt: skip


def test_a_size_that_gives_only_memory_keeps_the_instances_cpu(example_data):
    example_data["instances"]["prod"]["users"]["bob"]["rstudio"] = {"memory": 49152}
    assert sizes(resources(example_data, "prod"))["BobRStudioTaskDefinition"] == ("4096", "49152")


@pytest.mark.parametrize(("change", "message"), [
    # on Fargate 8 vCPU go with at most 60 GiB
    (lambda d: d["instances"]["dev"].update(rstudio={"mode": "per_user"}, users={
        **d["instances"]["dev"]["users"], "dana": {**d["instances"]["dev"]["users"]["dana"], "rstudio": BIG}}),
     r"instances\.dev\.users\.dana\.rstudio: memory 65536 MiB does not go with cpu 8192 on Fargate"),
    # r6i.2xlarge has 64 GiB, of which a task can reserve less
    (lambda d: big_alice(d, "r6i.2xlarge"),
     r"instances\.prod\.users\.alice\.rstudio: cpu 8192 does not fit on r6i\.2xlarge|"
     r"instances\.prod\.users\.alice\.rstudio: memory 65536 MiB does not fit on r6i\.2xlarge"),
    (lambda d: d["instances"]["dev"]["users"]["dana"].update(rstudio={"cpu": 1024}),
     r"instances\.dev\.users\.dana\.rstudio: a server size per user needs rstudio\.mode per_user"),
    (lambda d: d["instances"]["prod"]["users"]["alice"].update(rstudio={"cpu": 4096, "disk": 5}),
     r"instances\.prod\.users\.alice\.rstudio\.disk: unknown key"),
])  # fmt: skip
def test_a_size_that_cannot_run_is_a_config_error_naming_the_users_key(example_data, change, message):
    change(example_data)
    with pytest.raises(ConfigError, match=message):
        parse_config(example_data)


@pytest.mark.slow
def test_a_user_with_64_gib_and_8_vcpu_deploys_in_the_sandbox(workdir, capsys):
    edit_config(workdir, big_alice)
    assert deploy.main(["deploy", "--sandbox", "--yes"]) == 0
    stack = stack_of(sandbox(workdir), "rstudio-prod")
    definitions = {r.logical_id: r.properties for r in stack.resources.values()
                   if r.resource_type == "AWS::ECS::TaskDefinition"}  # fmt: skip
    assert (definitions["AliceRStudioTaskDefinition"]["Cpu"], definitions["AliceRStudioTaskDefinition"]["Memory"]) \
        == ("8192", "65536")
    assert definitions["BobRStudioTaskDefinition"]["Memory"] == "57344"


# --------------------------------------------------------------------------------------------------------------------
# EC2 sizes against the instance type


def test_the_instance_type_table_has_what_aws_advertises(example_data):
    assert INSTANCE_TYPES["r6i.2xlarge"].vcpus == 8 and INSTANCE_TYPES["r6i.2xlarge"].memory_mib == 64 * 1024
    assert INSTANCE_TYPES["m7i.48xlarge"].memory_mib == 768 * 1024 and "m7i.32xlarge" not in INSTANCE_TYPES
    assert INSTANCE_TYPES["c6i.large"].memory_mib == 4096 and INSTANCE_TYPES["c6i.large"].task_memory < 4096


@pytest.mark.parametrize(("rstudio", "message"), [
    ({"cpu": 16384}, r"instances\.prod\.rstudio: cpu 16384 does not fit on r6i\.2xlarge \(8 vCPU = 8192 units\)"),
    ({"memory": 65536}, r"instances\.prod\.rstudio: memory 65536 MiB does not fit on r6i\.2xlarge: .* about 62259"),
    ({"ec2_instance_type": "x2idn.16xlarge"}, r"instances\.prod\.rstudio: ec2_instance_type x2idn\.16xlarge is not "
     r"in the table .*c6i, c7i, m6i, m7i, r6i, r7i"),
])  # fmt: skip
def test_an_ec2_size_the_instance_type_cannot_hold_is_a_config_error(example_data, rstudio, message):
    example_data["instances"]["prod"]["rstudio"].update(rstudio)
    with pytest.raises(ConfigError, match=message):
        parse_config(example_data)


def test_the_largest_size_that_fits_is_accepted(example_data):
    spec = INSTANCE_TYPES["r6i.2xlarge"]
    example_data["instances"]["prod"]["rstudio"].update(cpu=spec.task_cpu, memory=spec.task_memory)
    assert parse_config(example_data).instances["prod"].rstudio.memory == spec.task_memory
