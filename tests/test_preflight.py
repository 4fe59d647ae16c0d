"""SES preflight: which welcome e-mail identities must be verified where, checked against moto's SES in the instance
accounts through the real reader-role client factory."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from stacksets.aws import Clients
from stacksets.config import Config, parse_config
from stacksets.preflight import before_deploy, check_ses, ses_identities
from stacksets.results import NodeDiff

REGION = "eu-west-1"
PROD = "666666666666"
DEV = "555555555555"
PROD_ADDRESSES = ["alice@example.com", "bob@example.com", "chen.wei@example.com", "rstudio-admin@example.com"]


def test_identities_are_senders_and_users_of_instances_that_send_welcome_mail(cfg):
    # dev has welcome_email disabled, so its users need nothing.
    assert ses_identities(cfg) == [(PROD, REGION, address) for address in PROD_ADDRESSES]


def test_identities_follow_each_instances_account_and_region_without_duplicates(example_data):
    dev = example_data["instances"]["dev"]
    dev["region"] = "eu-central-1"
    dev["welcome_email"] = {"enabled": True, "sender": "dana@example.com"}  # a user who is also the sender
    identities = ses_identities(parse_config(example_data))
    assert [i for i in identities if i[0] == DEV] == [(DEV, "eu-central-1", "dana@example.com"),
                                                      (DEV, "eu-central-1", "erik@example.com")]  # fmt: skip
    assert len(identities) == len(set(identities)) == 6


@pytest.fixture
def moto_clients(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield Clients(REGION)


def ses_in(account: str, region: str = REGION) -> Any:
    """An SES client in another moto account, the way the reader role reaches it."""
    return Clients(REGION).reader(account, region, "ses")


def test_nothing_to_report_when_sender_and_recipients_are_verified(cfg, moto_clients):
    ses = ses_in(PROD)
    ses.verify_email_identity(EmailAddress="rstudio-admin@example.com")
    for address in ("alice@example.com", "bob@example.com", "chen.wei@example.com"):
        ses.verify_email_identity(EmailAddress=address)
    assert check_ses(moto_clients, cfg) == []


def test_a_verified_domain_covers_its_addresses(cfg, moto_clients):
    ses_in(PROD).verify_domain_identity(Domain="example.com")
    assert check_ses(moto_clients, cfg) == []


def test_each_unverified_identity_is_one_problem_naming_its_config_key(cfg, moto_clients):
    ses_in(PROD).verify_email_identity(EmailAddress="alice@example.com")
    # Verified in another account (or region) does not count: SES sends from the instance account's region.
    ses_in(DEV).verify_email_identity(EmailAddress="rstudio-admin@example.com")
    ses_in(PROD, "us-east-1").verify_email_identity(EmailAddress="bob@example.com")
    problems = check_ses(moto_clients, cfg)
    assert [p.split(" ")[0] for p in problems] == ["bob@example.com", "chen.wei@example.com",
                                                   "rstudio-admin@example.com"]  # fmt: skip
    sender = problems[2]
    assert "(instances.prod.welcome_email.sender)" in sender and "the sender must be verified" in sender
    assert f"account {PROD} ({REGION})" in sender
    assert "verify-email-identity --email-address rstudio-admin@example.com --region eu-west-1" in sender
    assert "(instances.prod.users.chen.email)" in problems[1] and "sandbox" in problems[1]


class StatusReader:
    """Answers GetIdentityVerificationAttributes from a fixed table; records the batches it was asked."""

    def __init__(self, statuses: dict[str, str], error: ClientError | None = None) -> None:
        self.statuses, self.error, self.batches = statuses, error, []

    def reader(self, account: str, region: str, service: str = "cloudformation") -> Any:
        assert service == "ses"
        return self

    def get_identity_verification_attributes(self, Identities: list[str]) -> dict[str, Any]:  # noqa: N803
        if self.error:
            raise self.error
        self.batches.append(Identities)
        return {"VerificationAttributes": {i: {"VerificationStatus": self.statuses[i]} for i in Identities
                                           if i in self.statuses}}  # fmt: skip


def test_pending_or_failed_verification_is_not_verified(cfg):
    statuses = {address: "Success" for address in PROD_ADDRESSES}
    statuses |= {"bob@example.com": "Pending", "example.com": "Failed"}
    problems = check_ses(StatusReader(statuses), cfg)
    assert [p.split(" ")[0] for p in problems] == ["bob@example.com"]


def test_identities_are_asked_in_batches_of_at_most_100(example_data):
    users = {f"user{n:03d}": {"email": f"user{n:03d}@team{n % 3}.example.com", "uid": 2100 + n} for n in range(130)}
    example_data["instances"]["dev"]["users"] = users
    example_data["instances"]["dev"]["welcome_email"] = {"enabled": True, "sender": "ops@example.org"}
    cfg: Config = parse_config(example_data)
    reader = StatusReader({f"team{n}.example.com": "Success" for n in range(3)} | {"ops@example.org": "Success"})
    problems = check_ses(reader, cfg)
    assert [p.split(" ")[0] for p in problems] == PROD_ADDRESSES  # only prod's, none of the 130 dev users
    # prod: 4 addresses and example.com; dev: 130 addresses, the sender and 4 domains, in two calls.
    assert sorted(len(batch) for batch in reader.batches) == [5, 35, 100]


def test_an_account_that_cannot_be_read_is_a_problem_and_the_others_are_still_checked(example_data):
    example_data["instances"]["dev"]["welcome_email"] = {"enabled": True, "sender": "ops@example.org"}
    cfg = parse_config(example_data)
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized"}},
                         "GetIdentityVerificationAttributes")  # fmt: skip

    class OneDenied(StatusReader):
        def reader(self, account: str, region: str, service: str = "cloudformation") -> Any:
            return StatusReader({}, denied) if account == DEV else StatusReader({})

    problems = check_ses(OneDenied({}), cfg)
    assert problems[0].startswith(f"cannot check SES in account {DEV} ({REGION}): ")
    assert "AccessDenied" in problems[0] and "rstudio-bootstrap" in problems[0]
    assert len(problems) == 1 + len(PROD_ADDRESSES)


def diff(name: str, changed: bool) -> NodeDiff:
    return NodeDiff(name, exists=True, template_changed=changed, parameters_changed=False, parameters={})


def test_a_deploy_checks_only_the_instances_whose_stackset_it_changes(example_data):
    example_data["instances"]["dev"]["welcome_email"] = {"enabled": True, "sender": "ops@example.org"}
    cfg = parse_config(example_data)
    reader = StatusReader({})
    found = before_deploy(reader, cfg, [diff("rstudio-dev", False), diff("rstudio-prod", True)])
    assert [p.split(" ")[0] for p in found.problems] == PROD_ADDRESSES and found.notes == []
    assert not [batch for batch in reader.batches if "ops@example.org" in batch]  # dev's mail does not run


def test_an_unreadable_account_is_a_problem_unless_the_deploy_brings_the_reader_role(cfg):
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized"}}, "AssumeRole")
    unchanged = before_deploy(StatusReader({}, denied), cfg, [diff("rstudio-prod", True)])
    assert [p.startswith(f"cannot check SES in account {PROD}") for p in unchanged.problems] == [True]
    bootstrapping = before_deploy(StatusReader({}, denied), cfg, [diff("rstudio-bootstrap", True),
                                                                  diff("rstudio-prod", True)])  # fmt: skip
    assert bootstrapping.problems == [] and len(bootstrapping.notes) == 1
    assert (
        "rstudio-bootstrap, which this deploy creates or updates first, brings the reader role"
        in bootstrapping.notes[0]
    )
