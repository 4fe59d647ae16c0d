"""Optional welcome e-mail: a custom resource whose Lambda mails each user their URLs and initial password via SES.

The handler, lambda_src/welcome_email/handler.py, is read at build time and inlined (`Code.ZipFile`), so the tested
file is the code that runs and any change to it shows in the template diff. It never logs a password. Its role
reads exactly the password secrets of the users it mails (not the shared-mode admin `rstudio`, who gets no mail)
and may send only as the configured sender. The sender and, while the account's SES is in the sandbox, every
recipient must be verified SES identities in the instance account and region: `stacksets.preflight.check_ses`
says which are not, and `deploy` checks before it writes anything.

Contract of the function:
- As the custom resource it gets the user names (`Users`): Create mails every one, Update only names that are new,
  Delete nobody. It always answers SUCCESS when it could try: an undeliverable mail must not roll an instance back.
  Its Data `Undelivered` (the stack output WELCOME_MAIL_UNDELIVERED) is JSON, reason -> {user: address}, for the
  users it could not mail in that run, "{}" when all went out. FAILED is left for a malformed request.
- Invoked directly with {"resend": ["dana", ...]} (the stack output WELCOME_MAIL_FUNCTION names it) it mails those
  users again and returns {"Undelivered": {reason: {user: address}}}. Addresses, URLs and secret names come from its
  environment, set here from the config, so a caller can name users but never an address.
- Retries are off: a retry would mail passwords again.
"""

from __future__ import annotations

import json
from pathlib import Path

import awacs.kms
import awacs.logs
import awacs.secretsmanager
import awacs.ses
import awacs.sts
from awacs.aws import Condition, Principal, StringEquals
from troposphere import AWSHelperFn, GetAtt, Output, Parameter, Ref, Sub, Template
from troposphere.awslambda import Code, Environment, EventInvokeConfig, Function
from troposphere.cloudformation import CustomResource
from troposphere.iam import Policy as RolePolicy
from troposphere.iam import Role
from troposphere.logs import LogGroup

from generator.common import skip_checkov
from generator.iam import Allow, Statement, document, regional_arn
from generator.instance.inline import RESPONSE_TIMEOUT_SECONDS, FunctionLoggingConfig, inline_code
from generator.instance.secrets import RStudioSecrets
from generator.instance.servers import SHARED_ADMIN_USER, RStudioServer, shiny_host
from generator.instance.tasks import add_log_group
from generator.naming import logical_id, user_password_secret_name
from stacksets.config import Config, ConfigError
from stacksets.naming import WELCOME_MAIL_FUNCTION, WELCOME_MAIL_UNDELIVERED

HANDLER = Path(__file__).resolve().parents[2] / "lambda_src" / "welcome_email" / "handler.py"
ENVIRONMENT_LIMIT = 4096  # Lambda's limit for all of a function's environment variables together
SHINY_PARAGRAPH = """
Shiny: https://{}/
Shiny apps you save in /srv/shiny-server (one folder per app) are published there.
"""


class WelcomeEmail(CustomResource):
    resource_type = "Custom::WelcomeEmail"


def add_welcome_email(t: Template, cfg: Config, instance: str, key: Parameter, secrets: RStudioSecrets,
                      servers: list[RStudioServer]) -> WelcomeEmail | None:  # fmt: skip
    settings = cfg.instances[instance]
    if not settings.welcome_email.enabled or settings.welcome_email.sender is None:
        return None
    recipients = sorted((user, server) for server in servers for user in server.users if user != SHARED_ADMIN_USER)
    log_group = add_log_group(t, logical_id("WelcomeEmail", "LogGroup"), f"/rstudio/{instance}/welcome-email", key,
                              settings.logs.retention_days)  # fmt: skip
    role = add_welcome_role(t, settings.welcome_email.sender, key, log_group,
                            [secrets.passwords[user] for user, _ in recipients])  # fmt: skip
    function = add_welcome_function(t, instance, role, log_group, welcome_environment(cfg, instance, recipients))
    # Users keep the shape earlier templates gave them ({"User": name, ...}), so the update from such a template
    # compares names and mails nobody again. The function reads the secrets by name; its role names each one by the
    # ARN the storage StackSet, deployed first, reports.
    resource = t.add_resource(
        WelcomeEmail(
            logical_id("WelcomeEmail"),
            ServiceToken=GetAtt(function, "Arn"),
            ServiceTimeout=RESPONSE_TIMEOUT_SECONDS,
            Users=[{"User": user} for user, _ in recipients],
        )
    )
    t.add_output(Output(WELCOME_MAIL_UNDELIVERED, Value=GetAtt(resource, "Undelivered"),
                        Description="Welcome e-mails not sent when the mail last ran: JSON, reason -> {user: address}"))
    t.add_output(Output(WELCOME_MAIL_FUNCTION, Value=Ref(function),
                        Description='Invoke with {"resend": ["<user>", ...]} to mail those users again'))  # fmt: skip
    return resource


def welcome_environment(cfg: Config, instance: str, recipients: list[tuple[str, RStudioServer]]) -> dict[str, str]:
    """What the function mails, from the config: str.format patterns for the RStudio URL and the password secret's
    name, and each user's address."""
    settings = cfg.instances[instance]
    urls = {f"https://{server.host}/" if server.key != user else f"https://{{}}{server.host.removeprefix(user)}/"
            for user, server in recipients}  # fmt: skip
    if len(urls) > 1:
        raise ValueError(f"instance {instance}: the RStudio URLs follow no one pattern ({sorted(urls)})")
    environment = {
        "SENDER": str(settings.welcome_email.sender), "INSTANCE": instance,
        # The mail's Shiny paragraph, empty when the instance runs no Shiny (the handler has no bytes to spare for
        # the choice).
        "SHINY": SHINY_PARAGRAPH.format(shiny_host(cfg, instance)) if settings.shiny.enabled else "",
        "URL": next(iter(urls), ""),
        "SECRET": user_password_secret_name(instance, "{}"),
        "USERS": json.dumps({user: settings.users[user].email for user, _ in recipients}, sort_keys=True,
                            separators=(",", ":")),
    }  # fmt: skip
    # Lambda measures the variables as one JSON object ("String measured: {...}" in its refusal).
    size = len(json.dumps(environment, separators=(",", ":")))
    if size > ENVIRONMENT_LIMIT:
        raise ConfigError(f"instances.{instance}.welcome_email: the welcome function's environment would hold "
                          f"{size} bytes for {len(recipients)} users' addresses, over Lambda's {ENVIRONMENT_LIMIT}; "
                          "split the users over two instances, or switch welcome_email off")  # fmt: skip
    return environment


def add_welcome_role(t: Template, sender: str, key: Parameter, log_group: LogGroup,
                     passwords: list[AWSHelperFn]) -> Role:  # fmt: skip
    via_secrets_manager = StringEquals("kms:ViaService", Sub("secretsmanager.${AWS::Region}.amazonaws.com"))
    statements = document(
        Statement(Sid="ReadMailedPasswords", Effect=Allow, Action=[awacs.secretsmanager.GetSecretValue],
                  Resource=list(passwords)),
        Statement(Sid="DecryptPasswords", Effect=Allow, Action=[awacs.kms.Decrypt], Resource=[Ref(key)],
                  Condition=Condition(via_secrets_manager)),
        # SES authorizes sending on the identity (address or domain) the mail is sent as; the condition pins the sender.
        Statement(Sid="SendAsConfiguredSender", Effect=Allow, Action=[awacs.ses.SendEmail, awacs.ses.SendRawEmail],
                  Resource=[regional_arn("ses", "identity/*")],
                  Condition=Condition(StringEquals("ses:FromAddress", sender))),
        Statement(Sid="WriteOwnLogs", Effect=Allow, Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents],
                  Resource=[Sub("${Group}:*", Group=GetAtt(log_group, "Arn"))]),
    )  # fmt: skip
    # No aws:SourceArn/SourceAccount condition: Lambda does not document setting them when it assumes an execution
    # role, and only principals of this account allowed iam:PassRole can attach the role to a function anyway.
    trust = document(Statement(Effect=Allow, Principal=Principal("Service", "lambda.amazonaws.com"),
                               Action=[awacs.sts.AssumeRole]))  # fmt: skip
    return t.add_resource(Role(logical_id("WelcomeEmail", "Role"), AssumeRolePolicyDocument=trust,
                               Description="Welcome e-mail Lambda: reads the mailed users' passwords, sends via SES",
                               Policies=[RolePolicy(PolicyName="welcome-email", PolicyDocument=statements)]))


def add_welcome_function(t: Template, instance: str, role: Role, log_group: LogGroup,
                         environment: dict[str, str]) -> Function:  # fmt: skip
    function = t.add_resource(
        Function(
            logical_id("WelcomeEmail", "Function"),
            Description=f"Mails new RStudio users of instance {instance} their URLs and initial password",
            Runtime="python3.12",
            Architectures=["arm64"],
            Handler="index.handler",
            Code=Code(ZipFile=inline_code(HANDLER)),
            Role=GetAtt(role, "Arn"),
            Timeout=120,
            MemorySize=128,
            Environment=Environment(Variables=environment),
            LoggingConfig=FunctionLoggingConfig(LogFormat="JSON", LogGroup=Ref(log_group), ApplicationLogLevel="INFO",
                                                SystemLogLevel="WARN"),  # fmt: skip
        )
    )
    skip_checkov(
        function,
        CKV_AWS_115="no reserved concurrency: Lambda keeps min(100, quota) executions unreserved, so a fresh account "
        "(quota 10) refuses any reservation; a cap of 1 never kept a password from being mailed twice either: "
        "CloudFormation sends one request per operation, Lambda retries none (InvokeConfig; a throttled event has not "
        "run yet), and a duplicate delivery from Lambda's queue would run after the first rather than beside it",
        CKV_AWS_116="the handler answers CloudFormation itself on every error and retries are off (a retry would mail "
        "passwords again); a lost invocation fails the stack after ServiceTimeout, which a queue would not improve",
        CKV_AWS_117="talks only to the SES and Secrets Manager APIs; a VPC would add ENIs and endpoints for no gain",
        CKV_AWS_173="the environment holds addresses, URLs and secret names, all in this template's text already, and "
        "no secret; Lambda encrypts it at rest with its AWS managed key, and the instance key would let the role "
        "decrypt outside Secrets Manager",
    )
    # CloudFormation invokes custom resources asynchronously; Lambda's default two retries would resend the mails.
    t.add_resource(EventInvokeConfig(logical_id("WelcomeEmail", "InvokeConfig"), FunctionName=Ref(function),
                                     Qualifier="$LATEST", MaximumRetryAttempts=0))  # fmt: skip
    return function
