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

from generator.instance.servers import rstudio_servers
from generator.instance.welcome import HANDLER, add_welcome_email
from generator.stacks import storage
from stacksets.config import Config, ConfigError, parse_config
from stacksets.naming import WELCOME_MAIL_FUNCTION, WELCOME_MAIL_UNDELIVERED
from tests.instance_parts import groundwork
from tests.lambdas import Responses, load_handler

REGION = "eu-west-1"
SENDER = "rstudio-admin@example.com"
ZONE = "prod.analytics.example.com"


handler_module = load_handler(HANDLER, "welcome_email_handler")


# --------------------------------------------------------------------------------------------------------------------
# Template


def build(cfg: Config, instance: str) -> tuple[Any, dict[str, Any]]:
    g = groundwork(cfg, instance)
    secrets = g.stored.secrets
    resource = add_welcome_email(g.template, cfg, instance, g.key, secrets, rstudio_servers(cfg, instance))
    return resource, g.template.to_dict()["Resources"]


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [r for r in resources.values() if r["Type"] == kind]
    assert len(found) == 1, kind
    return found[0]


def statements(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    role = resources["WelcomeEmailRole"]["Properties"]
    return {s["Sid"]: s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]}


def password(index: int) -> dict[str, Any]:
    """The compute stack's reference to a password secret: its place in the storage stack's list (users sorted)."""
    return {"Fn::Select": [index, {"Ref": "PasswordSecretArns"}]}


def with_welcome(example_data: dict[str, Any], instance: str) -> Config:
    example_data["instances"][instance]["welcome_email"] = {"enabled": True, "sender": "ops@example.org"}
    return parse_config(example_data)


def test_nothing_is_built_unless_enabled(cfg):
    g = groundwork(cfg, "dev")
    secrets = g.stored.secrets
    before = set(g.template.resources)
    assert add_welcome_email(g.template, cfg, "dev", g.key, secrets, rstudio_servers(cfg, "dev")) is None
    assert set(g.template.resources) == before


def test_per_user_mode_mails_each_user_their_own_server(cfg):
    resource, resources = build(cfg, "prod")
    custom = resources[resource.title]
    assert custom["Type"] == "Custom::WelcomeEmail"
    props = custom["Properties"]
    assert props["ServiceToken"] == {"Fn::GetAtt": ["WelcomeEmailFunction", "Arn"]}
    # Only names: what an Update compares. Everything mailed comes from the function's environment.
    assert props["Users"] == [{"User": "alice"}, {"User": "bob"}, {"User": "chen"}]
    assert 0 < props["ServiceTimeout"] <= 3600  # a lost response fails the stack in minutes, not after an hour
    env = resources["WelcomeEmailFunction"]["Properties"]["Environment"]["Variables"]
    assert (env["SENDER"], env["INSTANCE"]) == (SENDER, "prod")
    assert f"Shiny: https://shiny.{ZONE}/\n" in env["SHINY"]
    assert json.loads(env["USERS"]) == {"alice": "alice@example.com", "bob": "bob@example.com",
                                        "chen": "chen.wei@example.com"}  # fmt: skip
    assert [env["URL"].format(user) for user in ("alice", "chen")] == [f"https://alice.rstudio.{ZONE}/",
                                                                       f"https://chen.rstudio.{ZONE}/"]  # fmt: skip
    kept = storage.build(cfg, "prod").to_dict()["Resources"]
    assert env["SECRET"].format("bob") == kept["BobPassword"]["Properties"]["Name"]


def test_shared_mode_gives_every_user_the_shared_url_and_the_admin_no_mail(example_data):
    cfg = with_welcome(example_data, "dev")
    resource, resources = build(cfg, "dev")
    assert resources[resource.title]["Properties"]["Users"] == [{"User": "dana"}, {"User": "erik"}]
    env = resources["WelcomeEmailFunction"]["Properties"]["Environment"]["Variables"]
    assert sorted(json.loads(env["USERS"])) == ["dana", "erik"]
    assert {env["URL"].format(user) for user in ("dana", "erik")} == {"https://rstudio.dev.analytics.example.com/"}
    # The admin's password exists (third in the storage stack's list), but the welcome role may not read it.
    listed = storage.build(cfg, "dev").to_dict()["Outputs"]["PasswordSecretArns"]["Value"]["Fn::Join"][1]
    assert listed == [{"Ref": "DanaPassword"}, {"Ref": "ErikPassword"}, {"Ref": "RstudioPassword"}]
    readable = statements(resources)["ReadMailedPasswords"]["Resource"]
    assert readable == [password(0), password(1)]


def test_the_stack_outputs_what_was_not_mailed_and_the_function_that_resends(cfg):
    g = groundwork(cfg, "prod")
    secrets = g.stored.secrets
    add_welcome_email(g.template, cfg, "prod", g.key, secrets, rstudio_servers(cfg, "prod"))
    outputs = g.template.to_dict()["Outputs"]
    assert outputs[WELCOME_MAIL_UNDELIVERED]["Value"] == {"Fn::GetAtt": ["WelcomeEmail", "Undelivered"]}
    assert outputs[WELCOME_MAIL_FUNCTION]["Value"] == {"Ref": "WelcomeEmailFunction"}


def test_more_addresses_than_the_functions_environment_holds_is_a_config_error(example_data):
    users = {f"user{n:03d}": {"email": f"user{n:03d}.with.a.long.name@analytics.example.com", "uid": 2100 + n}
             for n in range(90)}  # fmt: skip
    example_data["instances"]["dev"]["users"] = users
    with pytest.raises(ConfigError, match=r"^instances\.dev\.welcome_email: .* over Lambda's 4096"):
        build(with_welcome(example_data, "dev"), "dev")


def test_role_reads_exactly_the_mailed_passwords_and_sends_only_as_the_sender(cfg):
    _, resources = build(cfg, "prod")
    found = statements(resources)
    assert set(found) == {"ReadMailedPasswords", "DecryptPasswords", "SendAsConfiguredSender", "WriteOwnLogs"}
    assert found["ReadMailedPasswords"]["Action"] == ["secretsmanager:GetSecretValue"]
    assert found["ReadMailedPasswords"]["Resource"] == [password(i) for i in range(3)]  # alice, bob, chen
    assert found["DecryptPasswords"]["Action"] == ["kms:Decrypt"]
    assert found["DecryptPasswords"]["Resource"] == [{"Ref": "InstanceKeyArn"}]
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
    assert group["DeletionPolicy"] == "RetainExceptOnCreate"
    assert group["UpdateReplacePolicy"] == "Retain"
    assert group["Properties"]["KmsKeyId"] == {"Ref": "InstanceKeyArn"}
    assert group["Properties"]["RetentionInDays"] == cfg.instances["prod"].logs.retention_days == 365


def test_handler_fits_inline_code():
    assert len(HANDLER.read_bytes()) < 4096


# --------------------------------------------------------------------------------------------------------------------
# Handler

PASSWORDS = {"alice": "AlicePw0Secret9x", "bob": "BobPw1Secret8y", "chen": "ChenPw2Secret7z"}


@pytest.fixture
def aws(cfg, monkeypatch, caplog):
    """moto with a verified sender and the three prod users' password secrets, and the function's environment as
    the prod template sets it; yields the secret ARNs."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    _, resources = build(cfg, "prod")
    for name, value in resources["WelcomeEmailFunction"]["Properties"]["Environment"]["Variables"].items():
        monkeypatch.setenv(name, value)
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


def user_props(cfg: Config, users: tuple[str, ...] = ("alice", "bob", "chen")) -> dict:
    """The custom resource's properties as the template sets them."""
    resource, _ = build(cfg, "prod")
    props = json.loads(json.dumps(resource.to_dict()["Properties"]))
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


def undelivered(answer: dict[str, Any]) -> dict[str, dict[str, str]]:
    return json.loads(answer["Data"]["Undelivered"])


def assert_no_password_leaked(caplog, capsys, responses: Responses, answers: Any = ()) -> None:
    logged = [f"{r.getMessage()} {r.__dict__}" for r in caplog.records]
    printed = capsys.readouterr()
    for password in PASSWORDS.values():
        assert not [line for line in logged if password in line]
        assert password not in printed.out + printed.err
        assert not [body for body in [*responses.sent, *answers] if password in json.dumps(body)]


def test_create_mails_every_user_their_url_and_password(cfg, aws, responses, caplog, capsys):
    handler_module.handler(event("Create", user_props(cfg)), None)
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
    assert undelivered(answer) == {}
    assert (answer["StackId"], answer["RequestId"], answer["LogicalResourceId"]) == (
        "arn:aws:cloudformation:eu-west-1:666666666666:stack/rstudio-prod/1", "Create-1", "WelcomeEmail")
    [request] = responses.requests
    assert request.get_method() == "PUT" and request.full_url.startswith("https://cloudformation-custom-resource")
    assert request.get_header("Content-type") == ""  # the pre-signed URL is signed without one
    assert {r.__dict__.get("user") for r in caplog.records if r.getMessage() == "mail sent"} == set(PASSWORDS)
    assert_no_password_leaked(caplog, capsys, responses)


def test_an_instance_without_shiny_mails_no_shiny_paragraph(example_data, monkeypatch, aws, responses):
    example_data["instances"]["prod"]["shiny"] = {"enabled": False}
    without = parse_config(example_data)
    _, resources = build(without, "prod")
    env = resources["WelcomeEmailFunction"]["Properties"]["Environment"]["Variables"]
    assert env["SHINY"] == ""
    monkeypatch.setenv("SHINY", env["SHINY"])
    handler_module.handler(event("Create", user_props(without)), None)
    bodies = [m.body for m in mails()]
    assert len(bodies) == 3
    assert all("Initial password: " in body and "Shiny" not in body and "shiny" not in body for body in bodies)


def test_update_mails_only_users_that_are_new(cfg, aws, responses, caplog, capsys):
    handler_module.handler(event("Update", user_props(cfg), user_props(cfg, ("alice", "bob"))), None)
    assert [m.destinations["ToAddresses"] for m in mails()] == [["chen.wei@example.com"]]
    assert [(r["Status"], r["PhysicalResourceId"]) for r in responses.sent] == [("SUCCESS", "welcome-prod")]
    assert_no_password_leaked(caplog, capsys, responses)


def test_the_update_from_a_template_before_undelivered_mail_mails_nobody_again(cfg, aws, responses):
    """Earlier templates put each user's address, URL and secret into Users; the update away from them compares
    names only, so nobody is mailed twice, and answers the Undelivered the new output needs."""
    earlier = {"Instance": "prod", "Sender": SENDER, "ShinyUrl": f"https://shiny.{ZONE}/",
               "Users": [{"User": user, "Email": f"{user}@example.com", "Url": f"https://{user}.rstudio.{ZONE}/",
                          "SecretArn": arn} for user, arn in aws.items()]}  # fmt: skip
    handler_module.handler(event("Update", user_props(cfg), earlier), None)
    assert mails() == []
    [answer] = responses.sent
    assert answer["Status"] == "SUCCESS" and undelivered(answer) == {}


def test_update_that_removes_users_or_rolls_back_mails_nobody(cfg, aws, responses):
    # A failed update's rollback arrives as an Update with old and new swapped: nobody is new then.
    handler_module.handler(event("Update", user_props(cfg, ("alice",)), user_props(cfg)), None)
    assert mails() == []
    assert [r["Status"] for r in responses.sent] == ["SUCCESS"]


def test_delete_mails_nobody_and_succeeds(cfg, aws, responses):
    handler_module.handler(event("Delete", user_props(cfg)), None)
    assert mails() == []
    assert [(r["Status"], r["PhysicalResourceId"]) for r in responses.sent] == [("SUCCESS", "welcome-prod")]


def test_ses_rejection_is_reported_with_each_address_and_never_fails_the_resource(aws, responses, caplog, capsys,
                                                                                 cfg, monkeypatch):  # fmt: skip
    monkeypatch.setenv("SENDER", "not-verified@example.org")
    handler_module.handler(event("Create", user_props(cfg)), None)
    [answer] = responses.sent
    assert answer["Status"] == "SUCCESS"
    [(why, users)] = undelivered(answer).items()
    assert why.startswith("MessageRejected: Email address not verified")
    assert users == {"alice": "alice@example.com", "bob": "bob@example.com", "chen": "chen.wei@example.com"}
    failed = [r for r in caplog.records if r.getMessage() == "mail failed"]
    assert [r.levelno for r in failed] == [logging.ERROR] * 3
    assert_no_password_leaked(caplog, capsys, responses)


def test_one_users_failure_names_that_user_and_the_others_still_get_mail(cfg, aws, responses, caplog, capsys):
    boto3.client("secretsmanager").delete_secret(SecretId=aws["bob"], ForceDeleteWithoutRecovery=True)
    handler_module.handler(event("Create", user_props(cfg)), None)
    assert sorted(m.destinations["ToAddresses"][0] for m in mails()) == ["alice@example.com", "chen.wei@example.com"]
    [answer] = responses.sent
    assert answer["Status"] == "SUCCESS"
    [(why, users)] = undelivered(answer).items()
    assert why.startswith("ResourceNotFoundException: ") and users == {"bob": "bob@example.com"}
    assert_no_password_leaked(caplog, capsys, responses)


def test_an_answer_stays_within_what_cloudformation_accepts_however_many_fail(aws, responses, monkeypatch):
    many = {f"user{n:03d}": f"user{n:03d}@example.com" for n in range(200)}
    monkeypatch.setenv("USERS", json.dumps(many))
    handler_module.handler(event("Create", {"Users": [{"User": user} for user in many]}), None)
    [request] = responses.requests
    assert len(request.data) <= 4096  # the custom resource response limit
    assert undelivered(responses.sent[0]) == {"200 users: see the log": {}}


def test_resend_mails_the_named_users_again_at_their_configured_addresses(aws, responses, caplog, capsys):
    # Only names count: an address in the request is never used.
    answer = handler_module.handler({"resend": ["bob", "zoe"], "Email": "someone@else.example"}, None)
    assert [(m.destinations["ToAddresses"], PASSWORDS["bob"] in m.body) for m in mails()] == [
        (["bob@example.com"], True)]  # fmt: skip
    assert answer == {"Undelivered": {"unknown user": {"zoe": ""}}}
    assert responses.requests == []  # no CloudFormation request, so nothing to answer there
    assert_no_password_leaked(caplog, capsys, responses, [answer])


def test_errors_that_quote_the_mail_body_never_reach_logs_or_the_reason(aws, caplog, capsys):
    secrets, ses = boto3.client("secretsmanager"), boto3.client("ses")
    with Stubber(ses) as stub:
        stub.add_client_error("send_email", "InvalidParameterValue", f"cannot send: {PASSWORDS['alice']}")
        assert handler_module._mail("alice", "alice@example.com", secrets, ses) == \
            "InvalidParameterValue: cannot send: ***"

    class QuotingClient:
        def send_email(self, **kwargs: Any) -> None:
            raise ValueError(kwargs["Message"]["Body"]["Text"]["Data"])

    # Not an AWS error: only its type is reported, since its text may be anything the call was given.
    assert handler_module._mail("alice", "alice@example.com", secrets, QuotingClient()) == "ValueError"
    assert_no_password_leaked(caplog, capsys, Responses())


def test_a_malformed_event_is_answered_failed_instead_of_raising(aws, responses):
    handler_module.handler(event("Create", {"Instance": "prod"}), None)
    assert [(r["Status"], r["Reason"]) for r in responses.sent] == [("FAILED", "KeyError: 'Users'")]


def test_an_unreachable_response_url_is_retried_and_never_raises(cfg, aws, monkeypatch):
    flaky = Responses(fail=2)
    monkeypatch.setattr(urllib.request, "urlopen", flaky)
    handler_module.handler(event("Delete", user_props(cfg)), None)
    assert len(flaky.requests) == 3 and [r["Status"] for r in flaky.sent] == ["SUCCESS"]

    dead = Responses(fail=99)
    monkeypatch.setattr(urllib.request, "urlopen", dead)
    handler_module.handler(event("Delete", user_props(cfg)), None)  # must not raise: a retry would re-mail
    assert len(dead.requests) == 3
