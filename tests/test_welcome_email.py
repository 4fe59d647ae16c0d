"""Welcome e-mail: the custom-resource handler against moto's Secrets Manager and SES with a fake ResponseURL, and the
template part (role scoping, per-user and shared URLs, inline code) built from the example config."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from generator.instance.secrets import add_rstudio_secrets
from generator.instance.servers import rstudio_servers
from generator.instance.welcome import HANDLER, add_welcome_email
from stacksets.config import Config, parse_config
from tests.instance_parts import groundwork
from tests.lambdas import load_handler

REGION = "eu-west-1"
SENDER = "rstudio-admin@example.com"
ZONE = "prod.analytics.example.com"


handler_module = load_handler(HANDLER, "welcome_email_handler")


# --------------------------------------------------------------------------------------------------------------------
# Template


def build(cfg: Config, instance: str) -> tuple[Any, dict[str, Any]]:
    g = groundwork(cfg, instance)
    secrets = add_rstudio_secrets(g.template, cfg, instance, g.key)
    resource = add_welcome_email(g.template, cfg, instance, g.key, secrets, rstudio_servers(cfg, instance))
    return resource, g.template.to_dict()["Resources"]


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [r for r in resources.values() if r["Type"] == kind]
    assert len(found) == 1, kind
    return found[0]


def statements(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    role = resources["WelcomeEmailRole"]["Properties"]
    return {s["Sid"]: s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]}


def with_welcome(example_data: dict[str, Any], instance: str) -> Config:
    example_data["instances"][instance]["welcome_email"] = {"enabled": True, "sender": "ops@example.org"}
    return parse_config(example_data)


def test_nothing_is_built_unless_enabled(cfg):
    g = groundwork(cfg, "dev")
    secrets = add_rstudio_secrets(g.template, cfg, "dev", g.key)
    before = set(g.template.resources)
    assert add_welcome_email(g.template, cfg, "dev", g.key, secrets, rstudio_servers(cfg, "dev")) is None
    assert set(g.template.resources) == before


def test_per_user_mode_mails_each_user_their_own_server(cfg):
    resource, resources = build(cfg, "prod")
    custom = resources[resource.title]
    assert custom["Type"] == "Custom::WelcomeEmail"
    props = custom["Properties"]
    assert props["ServiceToken"] == {"Fn::GetAtt": ["WelcomeEmailFunction", "Arn"]}
    assert props["Sender"] == SENDER and props["Instance"] == "prod"
    assert props["ShinyUrl"] == f"https://shiny.{ZONE}/"
    assert props["Users"] == [
        {"User": "alice", "Email": "alice@example.com", "Url": f"https://alice.rstudio.{ZONE}/",
         "SecretArn": {"Ref": "AlicePassword"}},
        {"User": "bob", "Email": "bob@example.com", "Url": f"https://bob.rstudio.{ZONE}/",
         "SecretArn": {"Ref": "BobPassword"}},
        {"User": "chen", "Email": "chen.wei@example.com", "Url": f"https://chen.rstudio.{ZONE}/",
         "SecretArn": {"Ref": "ChenPassword"}},
    ]  # fmt: skip
    assert 0 < props["ServiceTimeout"] <= 3600  # a lost response fails the stack in minutes, not after an hour


def test_shared_mode_gives_every_user_the_shared_url_and_the_admin_no_mail(example_data):
    resource, resources = build(with_welcome(example_data, "dev"), "dev")
    users = resources[resource.title]["Properties"]["Users"]
    assert [u["User"] for u in users] == ["dana", "erik"]
    assert {u["Url"] for u in users} == {"https://rstudio.dev.analytics.example.com/"}
    # The admin's password exists, but the welcome role may not read it.
    assert "RstudioPassword" in resources
    readable = statements(resources)["ReadMailedPasswords"]["Resource"]
    assert readable == [{"Ref": "DanaPassword"}, {"Ref": "ErikPassword"}]


def test_role_reads_exactly_the_mailed_passwords_and_sends_only_as_the_sender(cfg):
    _, resources = build(cfg, "prod")
    found = statements(resources)
    assert set(found) == {"ReadMailedPasswords", "DecryptPasswords", "SendAsConfiguredSender", "WriteOwnLogs"}
    assert found["ReadMailedPasswords"]["Action"] == ["secretsmanager:GetSecretValue"]
    assert found["ReadMailedPasswords"]["Resource"] == [{"Ref": f"{u}Password"} for u in ("Alice", "Bob", "Chen")]
    assert found["DecryptPasswords"]["Action"] == ["kms:Decrypt"]
    assert found["DecryptPasswords"]["Resource"] == [{"Fn::GetAtt": ["InstanceKey", "Arn"]}]
    send = found["SendAsConfiguredSender"]
    assert sorted(send["Action"]) == ["ses:SendEmail", "ses:SendRawEmail"]
    assert send["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/*"}]
    assert send["Condition"] == {"StringEquals": {"ses:FromAddress": SENDER}}
    assert found["WriteOwnLogs"]["Resource"] == [{"Fn::Sub": ["${Group}:*", {"Group": {"Fn::GetAtt": [
        "WelcomeEmailLogGroup", "Arn"]}}]}]  # fmt: skip
    assert all(s["Effect"] == "Allow" and "*" not in s["Resource"] for s in found.values())
    trust = resources["WelcomeEmailRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "lambda.amazonaws.com"}]


def test_function_runs_the_tested_handler_file(cfg):
    _, resources = build(cfg, "prod")
    props = resources["WelcomeEmailFunction"]["Properties"]
    assert props["Code"]["ZipFile"] == HANDLER.read_text(encoding="utf-8")
    assert props["Handler"] == "index.handler"
    assert (props["Runtime"], props["Architectures"], props["Timeout"]) == ("python3.12", ["arm64"], 120)
    assert "ReservedConcurrentExecutions" not in props  # a fresh account (quota 10) refuses any reservation
    assert props["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": {"Ref": "WelcomeEmailLogGroup"},
                                      "ApplicationLogLevel": "INFO", "SystemLogLevel": "WARN"}  # fmt: skip
    # CloudFormation invokes asynchronously: a Lambda retry would mail the passwords again.
    invoke = of_type(resources, "AWS::Lambda::EventInvokeConfig")["Properties"]
    assert invoke["MaximumRetryAttempts"] == 0 and invoke["FunctionName"] == {"Ref": "WelcomeEmailFunction"}


def test_log_group_is_encrypted_retained_and_keeps_the_configured_retention(cfg):
    _, resources = build(cfg, "prod")
    group = resources["WelcomeEmailLogGroup"]
    assert group["DeletionPolicy"] == group["UpdateReplacePolicy"] == "Retain"
    assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["InstanceKey", "Arn"]}
    assert group["Properties"]["RetentionInDays"] == cfg.instances["prod"].logs.retention_days == 365


def test_handler_fits_inline_code():
    assert len(HANDLER.read_bytes()) < 4096


# --------------------------------------------------------------------------------------------------------------------
# Handler

PASSWORDS = {"alice": "AlicePw0Secret9x", "bob": "BobPw1Secret8y", "chen": "ChenPw2Secret7z"}


class Responses:
    """Stands in for CloudFormation's pre-signed ResponseURL: records what the handler PUTs there."""

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[dict[str, Any]] = []
        self.requests: list[urllib.request.Request] = []
        self.fail = fail

    def __call__(self, request: urllib.request.Request, timeout: float | None = None) -> Any:
        self.requests.append(request)
        if self.fail:
            self.fail -= 1
            raise OSError("connection reset")
        self.sent.append(json.loads(request.data))
        return self

    def close(self) -> None:
        pass


@pytest.fixture
def aws(monkeypatch, caplog):
    """moto with a verified sender and the three prod users' password secrets; yields the secret ARNs."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    caplog.set_level(logging.INFO)
    with mock_aws():
        boto3.client("ses").verify_email_identity(EmailAddress=SENDER)
        secrets = boto3.client("secretsmanager")
        yield {user: secrets.create_secret(Name=f"rstudio/prod/users/{user}/password", SecretString=password)["ARN"]
               for user, password in PASSWORDS.items()}  # fmt: skip


@pytest.fixture
def responses(monkeypatch) -> Responses:
    fake = Responses()
    monkeypatch.setattr(urllib.request, "urlopen", fake)
    return fake


def user_props(cfg: Config, arns: dict[str, str], users: tuple[str, ...] = ("alice", "bob", "chen")) -> dict:
    """The custom resource's properties as the template sets them, with the secret Refs resolved."""
    resource, _ = build(cfg, "prod")
    props = json.loads(json.dumps(resource.to_dict()["Properties"]))
    for user in props["Users"]:
        user["SecretArn"] = arns[user["User"]]
    props["Users"] = [u for u in props["Users"] if u["User"] in users]
    return props


def event(kind: str, props: dict, old: dict | None = None) -> dict[str, Any]:
    result = {
        "RequestType": kind, "ResponseURL": "https://cloudformation-custom-resource-response.s3.amazonaws.com/x?sig=1",
        "StackId": "arn:aws:cloudformation:eu-west-1:666666666666:stack/rstudio-prod/1", "RequestId": f"{kind}-1",
        "LogicalResourceId": "WelcomeEmail", "ResourceType": "Custom::WelcomeEmail", "ResourceProperties": props,
    }  # fmt: skip
    if kind != "Create":
        result["PhysicalResourceId"] = "welcome-prod"
    if old is not None:
        result["OldResourceProperties"] = old
    return result


def mails() -> list[Any]:
    return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


def assert_no_password_leaked(caplog, capsys, responses: Responses) -> None:
    logged = [f"{r.getMessage()} {r.__dict__}" for r in caplog.records]
    printed = capsys.readouterr()
    for password in PASSWORDS.values():
        assert not [line for line in logged if password in line]
        assert password not in printed.out + printed.err
        assert not [body for body in responses.sent if password in json.dumps(body)]


def test_create_mails_every_user_their_url_and_password(cfg, aws, responses, caplog, capsys):
    handler_module.handler(event("Create", user_props(cfg, aws)), None)
    sent = {m.destinations["ToAddresses"][0]: m for m in mails()}
    assert sorted(sent) == ["alice@example.com", "bob@example.com", "chen.wei@example.com"]
    for user, address in (("alice", "alice@example.com"), ("chen", "chen.wei@example.com")):
        mail = sent[address]
        assert mail.source == SENDER and mail.subject == "Your RStudio on prod"
        assert f"https://{user}.rstudio.{ZONE}/" in mail.body and f"https://shiny.{ZONE}/" in mail.body
        assert PASSWORDS[user] in mail.body and f"User name: {user}" in mail.body
        assert "/srv/shiny-server" in mail.body
        assert [p for p in PASSWORDS.values() if p in mail.body] == [PASSWORDS[user]]  # nobody else's password
    [answer] = responses.sent
    assert answer["Status"] == "SUCCESS" and answer["PhysicalResourceId"] == "welcome-prod"
    assert (answer["StackId"], answer["RequestId"], answer["LogicalResourceId"]) == (
        "arn:aws:cloudformation:eu-west-1:666666666666:stack/rstudio-prod/1", "Create-1", "WelcomeEmail")
    [request] = responses.requests
    assert request.get_method() == "PUT" and request.full_url.startswith("https://cloudformation-custom-resource")
    assert request.get_header("Content-type") == ""  # the pre-signed URL is signed without one
    assert {r.__dict__.get("user") for r in caplog.records if r.getMessage() == "mail sent"} == set(PASSWORDS)
    assert_no_password_leaked(caplog, capsys, responses)


def test_update_mails_only_users_that_are_new(cfg, aws, responses, caplog, capsys):
    old = user_props(cfg, aws, ("alice", "bob"))
    new = user_props(cfg, aws)
    new["Users"][0]["Email"] = "alice.new@example.com"  # a changed address is no reason to resend a password
    handler_module.handler(event("Update", new, old), None)
    assert [m.destinations["ToAddresses"] for m in mails()] == [["chen.wei@example.com"]]
    assert [(r["Status"], r["PhysicalResourceId"]) for r in responses.sent] == [("SUCCESS", "welcome-prod")]
    assert_no_password_leaked(caplog, capsys, responses)


def test_update_that_removes_users_or_rolls_back_mails_nobody(cfg, aws, responses):
    # A failed update's rollback arrives as an Update with old and new swapped: nobody is new then.
    handler_module.handler(event("Update", user_props(cfg, aws, ("alice",)), user_props(cfg, aws)), None)
    assert mails() == []
    assert [r["Status"] for r in responses.sent] == ["SUCCESS"]


def test_delete_mails_nobody_and_succeeds(cfg, aws, responses):
    handler_module.handler(event("Delete", user_props(cfg, aws)), None)
    assert mails() == []
    assert [(r["Status"], r["PhysicalResourceId"]) for r in responses.sent] == [("SUCCESS", "welcome-prod")]


def test_ses_rejection_fails_the_resource_naming_the_users_and_the_error(cfg, aws, responses, caplog, capsys):
    props = user_props(cfg, aws)
    props["Sender"] = "not-verified@example.org"
    handler_module.handler(event("Create", props), None)
    [answer] = responses.sent
    assert answer["Status"] == "FAILED"
    for user in PASSWORDS:
        assert f"{user}: MessageRejected: Email address not verified" in answer["Reason"]
    failed = [r for r in caplog.records if r.getMessage() == "mail failed"]
    assert [r.levelno for r in failed] == [logging.ERROR] * 3
    assert_no_password_leaked(caplog, capsys, responses)


def test_one_users_failure_names_that_user_and_the_others_still_get_mail(cfg, aws, responses, caplog, capsys):
    props = user_props(cfg, aws)
    props["Users"][1]["SecretArn"] = aws["bob"].replace("password", "missing")
    handler_module.handler(event("Create", props), None)
    assert sorted(m.destinations["ToAddresses"][0] for m in mails()) == ["alice@example.com", "chen.wei@example.com"]
    [answer] = responses.sent
    assert answer["Status"] == "FAILED"
    assert "bob: ResourceNotFoundException" in answer["Reason"]
    assert "alice" not in answer["Reason"] and "chen" not in answer["Reason"]
    assert_no_password_leaked(caplog, capsys, responses)


def test_errors_that_quote_the_mail_body_never_reach_logs_or_the_reason(aws, caplog, capsys):
    props = {"Instance": "prod", "ShinyUrl": f"https://shiny.{ZONE}/", "Sender": SENDER}
    user = {"User": "alice", "Email": "alice@example.com", "Url": f"https://alice.rstudio.{ZONE}/",
            "SecretArn": aws["alice"]}  # fmt: skip
    secrets, ses = boto3.client("secretsmanager"), boto3.client("ses")
    with Stubber(ses) as stub:
        stub.add_client_error("send_email", "InvalidParameterValue", f"cannot send: {PASSWORDS['alice']}")
        assert handler_module._mail(props, user, secrets, ses) == "alice: InvalidParameterValue: cannot send: ***"

    class QuotingClient:
        def send_email(self, **kwargs: Any) -> None:
            raise ValueError(kwargs["Message"]["Body"]["Text"]["Data"])

    # Not an AWS error: only its type is reported, since its text may be anything the call was given.
    assert handler_module._mail(props, user, secrets, QuotingClient()) == "alice: ValueError"
    assert_no_password_leaked(caplog, capsys, Responses())


def test_a_malformed_event_is_answered_failed_instead_of_raising(aws, responses):
    handler_module.handler(event("Create", {"Instance": "prod", "Sender": SENDER}), None)
    assert [(r["Status"], r["Reason"]) for r in responses.sent] == [("FAILED", "KeyError: 'Users'")]


def test_an_unreachable_response_url_is_retried_and_never_raises(cfg, aws, monkeypatch):
    flaky = Responses(fail=2)
    monkeypatch.setattr(urllib.request, "urlopen", flaky)
    handler_module.handler(event("Delete", user_props(cfg, aws)), None)
    assert len(flaky.requests) == 3 and [r["Status"] for r in flaky.sent] == ["SUCCESS"]

    dead = Responses(fail=99)
    monkeypatch.setattr(urllib.request, "urlopen", dead)
    handler_module.handler(event("Delete", user_props(cfg, aws)), None)  # must not raise: a retry would re-mail
    assert len(dead.requests) == 3
