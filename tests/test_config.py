"""Config validation: the example loads, and every kind of mistake is reported with the key path that caused it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from stacksets.config import FARGATE_SIZES, ConfigError, load_config, parse_config


def test_example_config_loads(cfg):
    assert sorted(cfg.instances) == ["dev", "prod"]
    assert cfg.instances["prod"].rstudio.mode.value == "per_user"
    assert sorted(cfg.instances["prod"].users) == ["alice", "bob", "chen"]
    assert cfg.regions == ("eu-west-1",)


def test_config_is_frozen(cfg):
    with pytest.raises(Exception):
        cfg.instances["dev"].rstudio.cpu = 4096  # type: ignore[misc]


def set_path(path: str, value: Any) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    return mutate


def delete_path(path: str) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        del node[leaf]

    return mutate


def rename_instance(old: str, new: str) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        data["instances"][new] = data["instances"].pop(old)

    return mutate


def both(*mutations: Callable[[dict], None]) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        for mutation in mutations:
            mutation(data)

    return mutate


# (id, mutation, text the message must contain to name the key, text naming the problem)
BAD_CONFIGS = [
    ("account-unquoted", set_path("accounts.data", 444444444444), "accounts.data", "quoted"),
    ("account-short", set_path("accounts.central", "12345"), "accounts.central", "12 digits"),
    ("account-letters", set_path("instances.dev.account", "55555555555x"), "instances.dev.account", "12 digits"),
    ("unknown-top-key", set_path("regions", ["eu-west-1"]), "regions", "unknown key"),
    ("unknown-nested-key", set_path("instances.dev.rstudio.memry", 4096), "instances.dev.rstudio.memry", "unknown key"),
    ("missing-accounts", delete_path("accounts"), "accounts", "missing"),
    ("missing-vpc", delete_path("instances.dev.network.vpc_cidr"), "instances.dev.network.vpc_cidr", "missing"),
    ("bad-region", set_path("default_region", "eu-west-9"), "default_region", "not an AWS region"),
    ("bad-instance-region", set_path("instances.prod.region", "EU-WEST-1"), "instances.prod.region", "region"),
    ("org-id", set_path("organization.id", "org-123"), "organization.id", "organization id"),
    ("zone-id", set_path("dns.base_zone_id", "zone1"), "dns.base_zone_id", "hosted zone id"),
    ("base-domain", set_path("dns.base_domain", "Example..com"), "dns.base_domain", "DNS name"),
    ("subdomain-underscore", set_path("dns.subdomain", "data_sci"), "dns.subdomain", "lower-case letters"),
    ("instance-uppercase", rename_instance("dev", "Dev"), "instances.Dev", "lower-case"),
    ("instance-too-long", rename_instance("dev", "development-sandbox"), "instances.development-sandbox", "longer"),
    ("instance-collides-stackset", rename_instance("dev", "data"), "instances.data", "rstudio-data"),
    ("instance-collides-zone", rename_instance("dev", "prod-zone"), "instances.prod", "rstudio-prod-zone"),
    ("user-name-dots", set_path("instances.dev.users", {"j.doe": {"email": "j@example.com", "uid": 2100}}),
     "instances.dev.users.j.doe", "lower-case"),
    ("user-reserved", set_path("instances.dev.users.rstudio", {"email": "r@example.com", "uid": 2100}),
     "instances.dev", "reserved"),
    ("user-email", set_path("instances.prod.users.bob.email", "bob-at-example.com"),
     "instances.prod.users.bob.email", "e-mail"),
    ("user-uid-low", set_path("instances.prod.users.bob.uid", 1000), "instances.prod.users.bob.uid", "2000"),
    ("user-uid-high", set_path("instances.prod.users.bob.uid", 50001), "instances.prod.users.bob.uid", "50000"),
    ("user-uid-duplicate", set_path("instances.prod.users.bob.uid", 3001), "instances.prod", "share uid 3001"),
    ("per-user-without-users", set_path("instances.prod.users", {}), "instances.prod", "at least one user"),
    ("fargate-cpu", set_path("instances.dev.rstudio.cpu", 3000), "instances.dev.rstudio", "cpu 3000"),
    ("fargate-memory", set_path("instances.dev.rstudio.memory", 32768), "instances.dev.rstudio", "memory 32768"),
    ("fargate-4vcpu-32gb", both(set_path("instances.dev.rstudio.cpu", 4096), set_path("instances.dev.rstudio.memory",
     32768)), "instances.dev.rstudio", "8192-30720"),  # fmt: skip
    ("shiny-memory", set_path("instances.dev.shiny.memory", 8192), "instances.dev.shiny", "memory 8192"),
    ("ec2-without-type", delete_path("instances.prod.rstudio.ec2_instance_type"), "instances.prod.rstudio",
     "ec2_instance_type"),
    ("ec2-type-on-fargate", set_path("instances.dev.rstudio.ec2_instance_type", "m6i.large"), "instances.dev.rstudio",
     "only applies"),
    ("launch-type", set_path("instances.dev.rstudio.launch_type", "lambda"), "instances.dev.rstudio.launch_type",
     "fargate"),
    ("mode", set_path("instances.dev.rstudio.mode", "individual"), "instances.dev.rstudio.mode", "shared"),
    ("vpc-cidr-parse", set_path("instances.dev.network.vpc_cidr", "10.20.0.0/33"), "instances.dev.network.vpc_cidr",
     "not a CIDR"),
    ("vpc-cidr-host-bits", set_path("instances.dev.network.vpc_cidr", "10.20.1.0/20"),
     "instances.dev.network.vpc_cidr", "10.20.0.0/20"),
    ("vpc-too-small", set_path("instances.dev.network.vpc_cidr", "10.20.0.0/26"), "instances.dev.network", "/24"),
    ("vpc-overlap-same-account", both(set_path("instances.dev.account", "666666666666"),
     set_path("instances.dev.network.vpc_cidr", "10.30.16.0/20")), "instances.prod.network.vpc_cidr", "overlaps"),
    ("nat-mode", set_path("instances.dev.network.nat", "none"), "instances.dev.network.nat", "per_az"),
    ("azs", set_path("instances.dev.network.availability_zones", 1), "instances.dev.network.availability_zones", "2"),
    ("waf-v4-in-v6", set_path("instances.dev.waf.allow_ipv6", ["198.51.100.0/24"]), "instances.dev.waf.allow_ipv6.0",
     "IPv4"),
    ("waf-v6-in-v4", set_path("instances.dev.waf.allow_ipv4", ["2001:db8::/32"]), "instances.dev.waf.allow_ipv4.0",
     "IPv6"),
    ("waf-garbage", set_path("instances.prod.waf.allow_ipv4", ["198.51.100.0/24", "office"]),
     "instances.prod.waf.allow_ipv4.1", "not a CIDR"),
    ("bastion-open", set_path("instances.prod.bastion.allowed_cidrs", ["0.0.0.0/0"]), "instances.prod.bastion",
     "internet"),
    # found by test_config_fuzz: a repeated range gave two security-group rules the same logical id
    ("bastion-twice", set_path("instances.prod.bastion.allowed_cidrs", ["203.0.113.0/24", "203.0.113.0/24"]),
     "instances.prod.bastion", "twice"),
    ("bastion-no-cidrs", set_path("instances.prod.bastion.allowed_cidrs", []), "instances.prod.bastion",
     "allowed_cidrs"),
    ("log-retention", set_path("instances.dev.logs.retention_days", 31), "instances.dev.logs.retention_days",
     "31 is not a retention"),
    ("schedule-garbage", set_path("instances.dev.datasync.schedule", "hourly"), "instances.dev.datasync.schedule",
     "schedule expression"),
    ("schedule-too-often", set_path("instances.dev.datasync.schedule", "rate(30 minutes)"),
     "instances.dev.datasync.schedule", "once an hour"),
    ("cron-every-minute", set_path("instances.dev.datasync.schedule", "cron(* * * * ? *)"),
     "instances.dev.datasync.schedule", "minute field"),
    ("cron-five-fields", set_path("instances.dev.datasync.schedule", "cron(0 * * * *)"),
     "instances.dev.datasync.schedule", "6 fields"),
    ("shiny-replicas-out-of-range", set_path("instances.prod.shiny.replicas", 12), "instances.prod.shiny",
     "between autoscaling.min"),
    ("shiny-min-over-max", set_path("instances.prod.shiny.autoscaling.min", 9), "instances.prod.shiny.autoscaling",
     "greater than max"),
    ("stickiness", set_path("instances.prod.shiny.stickiness_hours", 400), "instances.prod.shiny.stickiness_hours",
     "168"),
    ("sftp-no-users", set_path("instances.prod.sftp.users", {}), "instances.prod.sftp", "at least one"),
    ("sftp-private-key", set_path("instances.prod.sftp.users.partner-acme.ssh_public_keys",
     ["-----BEGIN OPENSSH PRIVATE KEY-----"]), "instances.prod.sftp.users.partner-acme.ssh_public_keys.0",
     "private key"),  # fmt: skip
    ("welcome-without-sender", delete_path("instances.prod.welcome_email.sender"), "instances.prod.welcome_email",
     "sender"),
    ("image-tag-of-old-configs", set_path("images.rstudio", "4.4.2-1"), "images.rstudio", "content hashes"),
    ("image-log-level", set_path("images.rstudio.log_level", "verbose"), "images.rstudio.log_level", "'warn'"),
    ("image-session-timeout", set_path("images.rstudio.session_timeout_minutes", -1),
     "images.rstudio.session_timeout_minutes", "greater than or equal to 0"),
    ("r-package-with-version", set_path("images.rstudio.r_packages", ["data.table", "sf@1.0"]),
     "images.rstudio.r_packages.1", "CRAN package name"),
    ("r-package-shell", set_path("images.shiny.r_packages", ["x; rm -rf /"]), "images.shiny.r_packages.0",
     "CRAN package name"),
    ("r-package-twice", set_path("images.rstudio.r_packages", ["sf", "sf"]), "images.rstudio.r_packages",
     "more than once: sf"),
    ("system-package-upper-case", set_path("images.rstudio.system_packages", ["libGDAL-dev"]),
     "images.rstudio.system_packages.0", "Debian/Ubuntu package name"),
    ("system-package-option", set_path("images.shiny.system_packages", ["--allow-unauthenticated"]),
     "images.shiny.system_packages.0", "Debian/Ubuntu package name"),
    ("build-compute", set_path("images.build.compute_type", "BUILD_GENERAL1_SMALL"), "images.build.compute_type",
     "BUILD_GENERAL1_LARGE"),
    ("call-as-self-managed", set_path("stacksets.permission_model", "self_managed"), "stacksets", "call_as"),
    ("service-managed-without-ous", set_path("stacksets.bootstrap.organizational_units", []), "stacksets",
     "organizational_units"),
    ("ou-id", set_path("stacksets.bootstrap.organizational_units", ["workloads"]),
     "stacksets.bootstrap.organizational_units.0", "OU id"),
    ("strict-concurrency-trap", set_path("stacksets.rollout", {"concurrency_mode": "strict_failure_tolerance",
     "max_concurrent_count": 10, "failure_tolerance_count": 1}), "stacksets.rollout", "silently"),  # fmt: skip
    ("rollout-both-forms", set_path("stacksets.rollout.max_concurrent_count", 5), "stacksets.rollout", "not both"),
    ("rollout-override-unknown", set_path("stacksets.rollout.overrides", {"rstudio-qa": {}}),
     "stacksets.rollout.overrides.rstudio-qa", "instance-data, storage, compute) nor a StackSet of this config"),
    ("rollout-override-both-forms", set_path("stacksets.rollout.overrides", {"bootstrap": {
     "failure_tolerance_count": 1, "failure_tolerance_percentage": 5}}), "stacksets.rollout.overrides.bootstrap",
     "not both"),  # fmt: skip
    ("rollout-override-range", set_path("stacksets.rollout.overrides", {"zone": {"max_concurrent_percentage": 0}}),
     "stacksets.rollout.overrides.zone.max_concurrent_percentage", "greater than or equal to 1"),
    # Valid on its own, the trap only once merged with the override of rstudio-prod's kind.
    ("rollout-override-merged-trap", set_path("stacksets.rollout.overrides", {
     "compute": {"max_concurrent_count": 4}, "rstudio-prod": {"concurrency_mode": "strict_failure_tolerance"}}),
     "stacksets.rollout.overrides.rstudio-prod: for rstudio-prod (the default, then compute then rstudio-prod)",
     "silently"),  # fmt: skip
    ("central-is-admin", set_path("accounts.central", "111111111111"), "accounts.central", "admin account"),
    ("host-name-too-long", set_path("dns.base_domain", "a-really-long-organisation-domain-name.example.com"),
     "dns", "64 characters"),
    ("no-instances", set_path("instances", {}), "instances", "at least 1"),
    ("per-user-too-many-users", set_path("instances.prod.users", {f"user{i:02d}": {"email": f"u{i}@example.com",
     "uid": 3001 + i} for i in range(31)}), "instances.prod", "limited to 30 users"),  # fmt: skip
    ("alert-email-twice", set_path("instances.dev.alerts.emails", ["ops@example.com", "Ops@Example.com"]),
     "instances.dev.alerts.emails", "listed more than once"),
    ("alert-email-invalid", set_path("instances.dev.alerts.emails", ["ops-at-example.com"]),
     "instances.dev.alerts.emails", "not an e-mail address"),
    ("alert-topic-not-an-arn", set_path("instances.dev.alerts.topic_arn", "platform-pager"),
     "instances.dev.alerts.topic_arn", "not the ARN of a standard SNS topic"),
    ("alert-topic-fifo", set_path("instances.dev.alerts.topic_arn", "arn:aws:sns:eu-west-1:555555555555:pager.fifo"),
     "instances.dev.alerts.topic_arn", "FIFO"),
    ("alert-topic-short-account", set_path("instances.dev.alerts.topic_arn", "arn:aws:sns:eu-west-1:5555:pager"),
     "instances.dev.alerts.topic_arn", "12-digit account"),
    ("alert-topic-other-region", set_path("instances.dev.alerts.topic_arn",
                                          "arn:aws:sns:us-east-1:555555555555:pager"),
     "instances.dev.alerts.topic_arn", "their own region only"),
    ("alert-topic-other-partition", set_path("instances.dev.alerts.topic_arn",
                                             "arn:aws-cn:sns:eu-west-1:555555555555:pager"),
     "instances.dev.alerts.topic_arn", "partition aws-cn"),
    ("alert-unknown-key", set_path("instances.dev.alerts.phone", "+4912345"), "instances.dev.alerts.phone",
     "unknown key"),
]


@pytest.mark.parametrize("mutate,key,problem", [case[1:] for case in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_the_key(example_data, mutate, key, problem):
    mutate(example_data)
    with pytest.raises(ConfigError) as caught:
        parse_config(example_data)
    message = str(caught.value)
    assert key in message, message
    assert problem in message, message


def test_there_are_at_least_thirty_bad_config_cases():
    assert len(BAD_CONFIGS) >= 30


@pytest.mark.parametrize("cpu,memories", sorted(FARGATE_SIZES.items()))
def test_every_fargate_size_from_the_aws_table_is_accepted(example_data, cpu, memories):
    for memory in (memories[0], memories[-1]):
        example_data["instances"]["dev"]["rstudio"].update(cpu=cpu, memory=memory)
        assert parse_config(example_data).instances["dev"].rstudio.memory == memory


def test_sixteen_vcpu_accepts_120_gib_but_not_128(example_data):
    example_data["instances"]["dev"]["rstudio"].update(cpu=16384, memory=122880)
    parse_config(example_data)
    example_data["instances"]["dev"]["rstudio"]["memory"] = 131072
    with pytest.raises(ConfigError, match="memory 131072"):
        parse_config(example_data)


def test_overlapping_vpcs_in_different_accounts_are_fine(example_data):
    example_data["instances"]["dev"]["network"]["vpc_cidr"] = "10.30.0.0/20"
    parse_config(example_data)


@pytest.mark.parametrize("text,problem", [
    ("accounts: [\n", "not valid YAML"),
    ("- a\n- b\n", "must be a YAML mapping"),
    ("organization: {id: o-a1b2c3d4e5}\norganization: {id: o-a1b2c3d4e6}\n", "key 'organization' appears twice"),
])  # fmt: skip
def test_unreadable_files_give_one_clear_message(tmp_path: Path, text, problem):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="--config"):
        load_config(tmp_path / "nope.yaml")


def test_overlapping_vpcs_in_one_account_are_refused_across_regions(example_data):
    example_data["instances"]["dev"].update(account="666666666666", region="eu-central-1")
    example_data["instances"]["dev"]["network"]["vpc_cidr"] = "10.30.16.0/20"
    with pytest.raises(ConfigError, match="overlaps"):
        parse_config(example_data)
