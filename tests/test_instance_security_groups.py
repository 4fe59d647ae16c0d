"""Security groups: clients reach only the ALB; tasks take traffic only from the ALB (and SSH only from the bastion)."""

from __future__ import annotations

from typing import Any

from tests.instance_parts import groundwork


def rules(cfg, instance: str, kind: str) -> dict[str, dict[str, Any]]:
    resources = groundwork(cfg, instance).template.to_dict()["Resources"]
    return {name: r["Properties"] for name, r in resources.items() if r["Type"] == kind}


def group_of(rule: dict[str, Any]) -> str:
    return rule["GroupId"]["Fn::GetAtt"][0]


def test_tasks_accept_only_their_port_from_the_alb_without_a_bastion(cfg):
    ingress = rules(cfg, "dev", "AWS::EC2::SecurityGroupIngress")
    to_tasks = {name: rule for name, rule in ingress.items() if group_of(rule) != "AlbSecurityGroup"}
    assert {(group_of(r), r["FromPort"], r["SourceSecurityGroupId"]["Fn::GetAtt"][0]) for r in to_tasks.values()} == {
        ("RStudioSecurityGroup", 8787, "AlbSecurityGroup"),
        ("ShinySecurityGroup", 3838, "AlbSecurityGroup"),
    }


def test_alb_accepts_https_and_http_from_ipv4_and_ipv6(cfg):
    ingress = rules(cfg, "dev", "AWS::EC2::SecurityGroupIngress")
    alb = [r for r in ingress.values() if group_of(r) == "AlbSecurityGroup"]
    assert sorted((r["FromPort"], r.get("CidrIp") or r.get("CidrIpv6")) for r in alb) == [
        (80, "0.0.0.0/0"), (80, "::/0"), (443, "0.0.0.0/0"), (443, "::/0"),
    ]  # fmt: skip


def test_alb_may_only_talk_to_the_task_ports(cfg):
    egress = rules(cfg, "dev", "AWS::EC2::SecurityGroupEgress")
    alb = [r for r in egress.values() if group_of(r) == "AlbSecurityGroup"]
    assert sorted((r["FromPort"], r["DestinationSecurityGroupId"]["Fn::GetAtt"][0]) for r in alb) == [
        (3838, "ShinySecurityGroup"), (8787, "RStudioSecurityGroup"),
    ]  # fmt: skip


def test_default_allow_all_egress_is_replaced(cfg):
    groups = rules(cfg, "prod", "AWS::EC2::SecurityGroup")
    for group in groups.values():
        [only] = group["SecurityGroupEgress"]
        assert only["CidrIp"] == "255.255.255.255/32"


def test_bastion_takes_ssh_from_configured_cidrs_and_is_the_only_ssh_source_for_tasks(cfg):
    ingress = rules(cfg, "prod", "AWS::EC2::SecurityGroupIngress")
    ssh = [r for r in ingress.values() if r["FromPort"] == 22]
    from_cidrs = sorted(r["CidrIp"] for r in ssh if group_of(r) == "BastionSecurityGroup")
    assert from_cidrs == sorted(cfg.instances["prod"].bastion.allowed_cidrs)
    to_tasks = {(group_of(r), r["SourceSecurityGroupId"]["Fn::GetAtt"][0]) for r in ssh if "SourceSecurityGroupId" in r}
    assert to_tasks == {("RStudioSecurityGroup", "BastionSecurityGroup"),
                        ("ShinySecurityGroup", "BastionSecurityGroup")}  # fmt: skip


def test_cluster_has_container_insights_and_encrypted_logged_exec(cfg):
    resources = groundwork(cfg, "prod").template.to_dict()["Resources"]
    cluster = resources["Cluster"]["Properties"]
    assert cluster["ClusterSettings"] == [{"Name": "containerInsights", "Value": "enabled"}]
    exec_config = cluster["Configuration"]["ExecuteCommandConfiguration"]
    assert exec_config["KmsKeyId"] == {"Ref": "InstanceKeyArn"}
    assert exec_config["Logging"] == "OVERRIDE"
    assert exec_config["LogConfiguration"] == {"CloudWatchEncryptionEnabled": True,
                                               "CloudWatchLogGroupName": {"Ref": "ExecLogGroup"}}  # fmt: skip
    assert resources["ExecLogGroup"]["Properties"]["RetentionInDays"] == 365
