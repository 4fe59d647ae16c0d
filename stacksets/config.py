"""The configuration model: `config.yaml` parsed once into frozen, validated objects.

`load_config` is the only entry point. Every user mistake becomes a `ConfigError` whose message names the key path
(`instances.dev.rstudio.memory`) and says what to do, so the CLI can print it and exit 2 without a traceback.
"""

from __future__ import annotations

import ipaddress
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from stacksets import naming
from stacksets.ec2_types import INSTANCE_TYPES, TABLE_DATE
from stacksets.errors import UserError


class ConfigError(UserError):
    """A problem with the user's configuration, worded for the user."""


# --------------------------------------------------------------------------------------------------------------------
# Field types

REGIONS = frozenset(
    {
        "af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
        "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
        "ap-southeast-5", "ap-southeast-6", "ap-southeast-7", "ca-central-1", "ca-west-1", "cn-north-1",
        "cn-northwest-1", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1",
        "eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1", "mx-central-1", "sa-east-1",
        "us-east-1", "us-east-2", "us-gov-east-1", "us-gov-west-1", "us-west-1", "us-west-2",
    }
)  # fmt: skip

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                      3288, 3653)  # fmt: skip

# Fargate (Linux) task sizes: CPU units -> allowed memory in MiB (ECS developer guide, platform 1.4.0).
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}

# Each per-user RStudio server adds eleven resources to the instance template, its own task role, EFS grant and
# alarm among them; 30 come to about 490 in the example's prod (CloudFormation allows 500; tests/test_stack_instance.py
# builds it). It was 32 before every server got its alarm.
MAX_PER_USER_SERVERS = 30

# Names that would collide with accounts the images create, or that read as something else in a host name.
RESERVED_USER_NAMES = frozenset(
    {"root", "admin", "rstudio", "shiny", "bastion", "ec2-user", "ssm-user", "nobody", "daemon", "bin", "sys",
     "staff", "users", "www", "mail"}
)  # fmt: skip

DNS_LABEL = re.compile(r"^[a-z](?:[a-z0-9-]*[a-z0-9])?$")
DOMAIN_NAME = re.compile(r"^(?=.{1,200}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
# Deliberately simple: one @, a dot in the domain, no spaces. SES rejects the rest when it sends.
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")
SSH_PUBLIC_KEY = re.compile(r"^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( [^\n]*)?$")


def _error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def _account_id(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise _error("account_id", "account ids must be quoted strings (YAML turns 012345678901 into a number), "
                     'e.g. "123456789012"')  # fmt: skip
    if not isinstance(value, str) or not re.fullmatch(r"\d{12}", value):
        raise _error("account_id", f"{value!r} is not an AWS account id: use the 12 digits, quoted")
    return value


def _region(value: str) -> str:
    if value not in REGIONS:
        raise _error("region", f"{value!r} is not an AWS region this tool knows, e.g. eu-west-1")
    return value


def _dns_label(max_length: int) -> Any:
    def check(value: str) -> str:
        if not DNS_LABEL.fullmatch(value) or "--" in value:
            raise _error("dns_label", f"{value!r} must be lower-case letters, digits and single hyphens, "
                         "starting with a letter and not ending with a hyphen (it becomes a host and StackSet "
                         "name)")  # fmt: skip
        if len(value) > max_length:
            raise _error("dns_label", f"{value!r} is longer than {max_length} characters (it ends up in S3 bucket "
                         "and IAM role names, which have length limits)")  # fmt: skip
        return value

    return check


def _domain(value: str) -> str:
    if not DOMAIN_NAME.fullmatch(value):
        raise _error("domain", f"{value!r} is not a lower-case DNS name like example.com")
    return value


def _email(value: str) -> str:
    if not EMAIL.fullmatch(value):
        raise _error("email", f"{value!r} is not an e-mail address like alice@example.com")
    return value


def _network(version: int) -> Any:
    def check(value: str) -> str:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise _error("cidr", f"{value!r} is not a CIDR block like 203.0.113.0/24") from None
        if network.version != version:
            raise _error("cidr", f"{value!r} is IPv{network.version}; this list takes IPv{version} blocks")
        if str(network) != value:
            raise _error("cidr", f"{value!r} has host bits set or is not normalised: write {network}")
        return value

    return check


def _retention_days(value: int) -> int:
    if value not in LOG_RETENTION_DAYS:
        raise _error("retention_days", f"{value} is not a retention CloudWatch Logs accepts: "
                     f"{', '.join(map(str, LOG_RETENTION_DAYS))}")  # fmt: skip
    return value


def _ssh_key(value: str) -> str:
    if not SSH_PUBLIC_KEY.fullmatch(value.strip()):
        raise _error("ssh_key", "not an OpenSSH public key (ssh-ed25519, ssh-rsa or ecdsa-sha2-*); never put a "
                     "private key here")  # fmt: skip
    return value.strip()


def _schedule(value: str) -> str:
    """DataSync accepts rate() or cron() and runs a task at most once an hour."""
    rate = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", value)
    if rate:
        amount, unit = int(rate.group(1)), rate.group(2)
        minutes = amount * {"minute": 1, "hour": 60, "day": 1440}[unit.rstrip("s")]
        if amount < 1 or (amount == 1) != (not unit.endswith("s")):
            raise _error("schedule", f"{value!r}: use 'rate(1 hour)' or 'rate(N hours)' (singular unit only for 1)")
        if minutes < 60:
            raise _error("schedule", f"{value!r} runs more often than DataSync allows (at most once an hour)")
        return value
    cron = re.fullmatch(r"cron\(([^()]*)\)", value)
    if not cron:
        raise _error("schedule", f"{value!r} is not a schedule expression: use 'cron(0 * * * ? *)' or 'rate(1 hour)'")
    fields = cron.group(1).split()
    if len(fields) != 6:
        raise _error("schedule", f"{value!r}: an AWS cron expression has 6 fields (minute hour day-of-month month "
                     "day-of-week year)")  # fmt: skip
    minute, _hour, day_of_month, _month, day_of_week, _year = fields
    if not re.fullmatch(r"[0-5]?\d", minute):
        raise _error("schedule", f"{value!r}: the minute field must be one number (0-59), because DataSync runs a "
                     "task at most once an hour")  # fmt: skip
    if "?" not in (day_of_month, day_of_week):
        raise _error("schedule", f"{value!r}: one of day-of-month and day-of-week must be '?'")
    return value


# Writing R Extensions 1.1.1: letters, digits and dots, at least two characters, a letter first, no dot last.
R_PACKAGE_PATTERN = r"^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$"
# Debian Policy 5.6.1: lower-case letters, digits, + - and ., at least two characters, alphanumeric first.
SYSTEM_PACKAGE_PATTERN = r"^[a-z0-9][a-z0-9+.-]+$"


def _package(kind: str, pattern: str, rule: str):
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise _error(kind, f"{value!r} is not a valid {rule}")
        return value

    return check


def _unique_emails(values: tuple[str, ...]) -> tuple[str, ...]:
    # Mail domains and most mailboxes ignore case; two spellings would be two subscriptions to one mailbox.
    seen: dict[str, str] = {}
    for value in values:
        if value.lower() in seen:
            raise _error("duplicate", f"{value!r} is listed more than once (as {seen[value.lower()]!r}); list each "
                         "address once")  # fmt: skip
        seen[value.lower()] = value
    return values


# A standard topic: CloudWatch alarm actions name standard topics, and alarm notifications carry no FIFO group id.
SNS_TOPIC_ARN = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):sns:([a-z]{2}(?:-[a-z]+)+-\d):(\d{12}):"
                           r"([A-Za-z0-9_-]{1,256})$")


def _topic_arn(value: str) -> str:
    if not SNS_TOPIC_ARN.fullmatch(value):
        raise _error("topic_arn", f"{value!r} is not the ARN of a standard SNS topic, "
                     "arn:<partition>:sns:<region>:<12-digit account>:<name> (FIFO topics cannot take alarms)")
    return value


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    doubles = sorted({value for value in values if values.count(value) > 1})
    if doubles:
        raise _error("duplicate", f"listed more than once: {', '.join(doubles)}")
    return values


def _schema(pattern: str | None = None, **extra: Any) -> WithJsonSchema:
    """What editors see for a custom-validated string (the validators themselves say more on error)."""
    schema: dict[str, Any] = {"type": "string", **extra}
    if pattern:
        schema["pattern"] = pattern
    return WithJsonSchema(schema)


DNS_LABEL_PATTERN = "^[a-z](?:[a-z0-9-]*[a-z0-9])?$"
AccountId = Annotated[str, BeforeValidator(_account_id), _schema(r"^\d{12}$")]
Region = Annotated[str, AfterValidator(_region), _schema(enum=sorted(REGIONS))]
RPackage = Annotated[str, AfterValidator(_package("r_package", R_PACKAGE_PATTERN,
                                                  "CRAN package name (letters, digits and dots, a letter first)")),
                     _schema(R_PACKAGE_PATTERN)]  # fmt: skip
SystemPackage = Annotated[str, AfterValidator(_package("system_package", SYSTEM_PACKAGE_PATTERN,
                                                       "Debian/Ubuntu package name (lower-case letters, digits, "
                                                       "+ - and ., at least two characters)")),
                          _schema(SYSTEM_PACKAGE_PATTERN)]  # fmt: skip
RPackages = Annotated[tuple[RPackage, ...], AfterValidator(_unique)]
SystemPackages = Annotated[tuple[SystemPackage, ...], AfterValidator(_unique)]
InstanceName = Annotated[str, AfterValidator(_dns_label(16)), _schema(DNS_LABEL_PATTERN, maxLength=16)]
UserName = Annotated[str, AfterValidator(_dns_label(32)), _schema(DNS_LABEL_PATTERN, maxLength=32)]
DomainName = Annotated[str, AfterValidator(_domain), _schema(DOMAIN_NAME.pattern)]
Email = Annotated[str, AfterValidator(_email), _schema(format="email")]
Ipv4Cidr = Annotated[str, AfterValidator(_network(4)), _schema(description="IPv4 CIDR block, e.g. 203.0.113.0/24")]
Ipv6Cidr = Annotated[str, AfterValidator(_network(6)), _schema(description="IPv6 CIDR block, e.g. 2001:db8::/32")]
RetentionDays = Annotated[int, AfterValidator(_retention_days),
                          WithJsonSchema({"type": "integer", "enum": list(LOG_RETENTION_DAYS)})]  # fmt: skip
# RStudio's logging.conf levels.
LogLevel = Literal["debug", "info", "warn", "error"]
SshPublicKey = Annotated[str, AfterValidator(_ssh_key), _schema(description="OpenSSH public key line")]
TopicArn = Annotated[str, AfterValidator(_topic_arn), _schema(SNS_TOPIC_ARN.pattern)]
ScheduleExpression = Annotated[str, AfterValidator(_schedule), _schema(r"^(cron|rate)\(.*\)$")]


def _pattern(pattern: str, example: str) -> Any:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise _error("pattern", f"{value!r} does not look like {example}")
        return value

    return AfterValidator(check), _schema(f"^({pattern})$")


OrganizationalUnitId = Annotated[str, *_pattern(r"ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}|r-[a-z0-9]{4,32}",
                                               "an OU id (ou-ab12-34cd56ef) or root id (r-ab12)")]  # fmt: skip
OrganizationId = Annotated[str, *_pattern(r"o-[a-z0-9]{10,32}", "an organization id (o-a1b2c3d4e5)")]
HostedZoneId = Annotated[str, *_pattern(r"Z[A-Z0-9]{1,31}", "a Route 53 hosted zone id (Z0123456789ABCDEFGHIJ)")]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


# --------------------------------------------------------------------------------------------------------------------
# Organization-wide settings


class Accounts(Model):
    admin: AccountId
    """Where StackSets are administered: the management account or a delegated administrator."""
    central: AccountId
    """Tooling account: ECR repositories and the image build."""
    network: AccountId
    """Owns the existing public base zone; receives the NS delegation records."""
    data: AccountId
    """Upload buckets, Athena workgroups and the Glue catalog."""


class Organization(Model):
    id: OrganizationId
    """AWS Organizations id (o-...); images may be pulled by any account of this organization."""


class Dns(Model):
    base_domain: DomainName
    """Existing public zone in the network account, e.g. example.com."""
    base_zone_id: HostedZoneId
    """Route 53 hosted zone id of base_domain."""
    subdomain: Annotated[str, AfterValidator(_dns_label(63)), _schema(DNS_LABEL_PATTERN)] = "analytics"
    """Instance zones are <instance>.<subdomain>.<base_domain>."""


class PermissionModel(str, Enum):
    self_managed = "self_managed"
    service_managed = "service_managed"


class CallAs(str, Enum):
    self = "self"
    delegated_admin = "delegated_admin"


class ConcurrencyMode(str, Enum):
    strict_failure_tolerance = "strict_failure_tolerance"
    soft_failure_tolerance = "soft_failure_tolerance"


def _one_form_each(settings: BaseModel) -> None:
    """A count and a percentage of the same setting exclude each other (botocore model StackSetOperationPreferences)."""
    if settings.max_concurrent_count is not None and settings.max_concurrent_percentage is not None:
        raise _error("rollout", "set max_concurrent_count or max_concurrent_percentage, not both")
    if settings.failure_tolerance_count is not None and settings.failure_tolerance_percentage is not None:
        raise _error("rollout", "set failure_tolerance_count or failure_tolerance_percentage, not both")


def _strict_trap(settings: Rollout) -> str | None:
    """Why StackSets would not honour these preferences as written, or None."""
    strict = settings.concurrency_mode is ConcurrencyMode.strict_failure_tolerance
    if strict and settings.max_concurrent_count is not None:
        tolerance = settings.failure_tolerance_count or 0
        if settings.max_concurrent_count > tolerance + 1:
            return (f"under strict_failure_tolerance StackSets never run more than failure_tolerance_count + 1 = "
                    f"{tolerance + 1} instances at once, so max_concurrent_count {settings.max_concurrent_count} "
                    "would silently not apply: raise failure_tolerance_count or use concurrency_mode "
                    "soft_failure_tolerance")  # fmt: skip
    return None


class RolloutOverride(Model):
    """Operation preferences for some StackSets. Each setting given here replaces the default's (a count replaces
    the default's percentage of the same setting, and the other way round); settings left out come from the
    default."""

    max_concurrent_count: int | None = Field(default=None, ge=1)
    max_concurrent_percentage: int | None = Field(default=None, ge=1, le=100)
    failure_tolerance_count: int | None = Field(default=None, ge=0)
    failure_tolerance_percentage: int | None = Field(default=None, ge=0, le=100)
    concurrency_mode: ConcurrencyMode | None = None
    region_concurrency: Literal["sequential", "parallel"] | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> RolloutOverride:
        _one_form_each(self)
        return self


# A setting given in an override replaces the default's setting of the same group, in either form.
_ROLLOUT_GROUPS = (
    ("max_concurrent_count", "max_concurrent_percentage"),
    ("failure_tolerance_count", "failure_tolerance_percentage"),
    ("concurrency_mode",),
    ("region_concurrency",),
)


class Rollout(Model):
    """StackSet operation preferences: these for every StackSet, except where `overrides` says otherwise."""

    max_concurrent_count: int | None = Field(default=None, ge=1)
    max_concurrent_percentage: int | None = Field(default=None, ge=1, le=100)
    failure_tolerance_count: int | None = Field(default=None, ge=0)
    failure_tolerance_percentage: int | None = Field(default=None, ge=0, le=100)
    concurrency_mode: ConcurrencyMode = ConcurrencyMode.soft_failure_tolerance
    region_concurrency: Literal["sequential", "parallel"] = "parallel"
    overrides: dict[str, RolloutOverride] = {}
    """By StackSet kind (bootstrap, central, data, logs, zone, delegation, instance-data, storage, compute) or by
    StackSet name (rstudio-prod): each replaces the settings it gives; a name's override applies after its kind's."""

    @model_validator(mode="after")
    def _one_of_each(self) -> Rollout:
        _one_form_each(self)
        trap = _strict_trap(self)
        if trap:
            raise _error("rollout", trap)
        return self

    def merged(self, *overrides: RolloutOverride) -> Rollout:
        """These preferences with `overrides` applied in order, without overrides of their own; raises
        ValidationError when the result is not a valid rollout (the strict-mode trap)."""
        values = self.model_dump(exclude={"overrides"})
        for override in overrides:
            for group in _ROLLOUT_GROUPS:
                if any(field in override.model_fields_set for field in group):
                    values.update({field: getattr(override, field) for field in group})
        return Rollout.model_validate(values)

    def for_kind(self, kind: str) -> Rollout:
        """The preferences of a StackSet of kind `kind` that has no override of its own name."""
        return self.merged(*([self.overrides[kind]] if kind in self.overrides else []))

    def for_stackset(self, name: str, kind: str) -> Rollout:
        """The preferences of StackSet `name` of kind `kind`: the default, then its kind's override, then its own."""
        return self.merged(*(self.overrides[key] for key in (kind, name) if key in self.overrides))


class Bootstrap(Model):
    organizational_units: tuple[OrganizationalUnitId, ...] = ()
    """service_managed: OUs whose accounts get the reader role (auto-deployed to new accounts)."""
    accounts: tuple[AccountId, ...] = ()
    """self_managed: extra accounts for the reader role; the named and instance accounts are always included."""


class StackSets(Model):
    permission_model: PermissionModel = PermissionModel.service_managed
    call_as: CallAs = CallAs.self
    """delegated_admin when the admin account is a delegated administrator (service_managed only)."""
    bootstrap: Bootstrap = Bootstrap()
    rollout: Rollout = Rollout()

    @model_validator(mode="after")
    def _consistent(self) -> StackSets:
        service = self.permission_model is PermissionModel.service_managed
        if not service and self.call_as is CallAs.delegated_admin:
            raise _error("call_as", "call_as: delegated_admin needs permission_model: service_managed")
        if service and not self.bootstrap.organizational_units:
            raise _error("bootstrap", "service_managed StackSets deploy the bootstrap to OUs: list at least one in "
                         "bootstrap.organizational_units")  # fmt: skip
        if not service and self.bootstrap.organizational_units:
            raise _error("bootstrap", "self_managed StackSets cannot target OUs: list accounts in "
                         "bootstrap.accounts instead")  # fmt: skip
        return self


class EcrSettings(Model):
    keep_tagged_images: int = Field(default=30, ge=1, le=1000)
    """Newest tagged images kept per repository; older ones expire."""
    untagged_expiry_days: int = Field(default=7, ge=1, le=365)


class Central(Model):
    ecr: EcrSettings = EcrSettings()


class RStudioImage(Model):
    """Settings baked into the rstudio image's rserver.conf and rsession.conf (one image serves every instance)."""

    auth_timeout_minutes: int = Field(default=60, ge=5, le=10080)
    """A signed-in browser that stays idle this long must sign in again."""
    session_timeout_minutes: int = Field(default=120, ge=0, le=10080)
    """An idle R session is suspended to its user's home after this long and frees its memory; 0 never suspends."""
    log_level: LogLevel = "warn"
    r_packages: RPackages = ()
    """Extra CRAN packages installed into the image from its dated package snapshot (so pinned to that date)."""
    system_packages: SystemPackages = ()
    """Extra Ubuntu packages installed into the image first (for R packages that need their libraries)."""


class ShinyImage(Model):
    """Settings baked into the shiny image's shiny-server.conf."""

    app_init_timeout_seconds: int = Field(default=120, ge=10, le=3600)
    """How long an app may take to start before its user sees an error."""
    app_idle_timeout_seconds: int = Field(default=300, ge=0, le=86400)
    """An app's R process stays this long after its last session closes, so a reload skips the start-up."""
    r_packages: RPackages = ()
    """Extra CRAN packages installed into the image from its dated package snapshot (so pinned to that date)."""
    system_packages: SystemPackages = ()
    """Extra Ubuntu packages installed into the image first (for R packages that need their libraries)."""


class ImageBuild(Model):
    """The central account's CodeBuild project that builds and pushes the images."""

    compute_type: Literal["BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE", "BUILD_GENERAL1_XLARGE"] = (
        "BUILD_GENERAL1_LARGE"
    )
    """The RStudio image compiles R packages (rJava); MEDIUM takes about twice as long."""
    timeout_minutes: int = Field(default=90, ge=10, le=480)
    log_retention_days: RetentionDays = 90
    context_expiry_days: int = Field(default=90, ge=1, le=3650)
    """Uploaded build contexts are kept this long in the artifact bucket (build logs: log_retention_days)."""


class Images(Model):
    """The rstudio, shiny and bastion images. Their tags are content hashes of container/<image>/, never set here."""

    rstudio: RStudioImage = RStudioImage()
    shiny: ShinyImage = ShinyImage()
    build: ImageBuild = ImageBuild()

    @model_validator(mode="before")
    @classmethod
    def _no_tags(cls, data: Any) -> Any:
        # Configs written before the images were built here named a tag per image.
        for image in ("rstudio", "shiny", "bastion"):
            if isinstance(data, dict) and isinstance(data.get(image), str):
                raise _error(image, f"images.{image}: image tags are content hashes of container/{image}/ now, "
                             "computed by `python deploy.py render`; remove the tag (or give the image's "
                             "settings)")  # fmt: skip
        return data


# --------------------------------------------------------------------------------------------------------------------
# Instances


class Nat(str, Enum):
    per_az = "per_az"
    single = "single"


class Network(Model):
    vpc_cidr: Ipv4Cidr
    availability_zones: int = Field(default=2, ge=2, le=4)
    nat: Nat = Nat.per_az
    """per_az survives an AZ outage; single saves the cost of the extra NAT gateways."""

    @model_validator(mode="after")
    def _vpc_size(self) -> Network:
        prefix = ipaddress.ip_network(self.vpc_cidr).prefixlen
        if not 16 <= prefix <= 24:
            raise _error("vpc_cidr", f"vpc_cidr {self.vpc_cidr} must be between /16 and /24")
        return self


class Mode(str, Enum):
    shared = "shared"
    per_user = "per_user"


class LaunchType(str, Enum):
    fargate = "fargate"
    ec2 = "ec2"


def _fargate_size(cpu: int, memory: int) -> None:
    if cpu not in FARGATE_SIZES:
        raise _error("fargate", f"cpu {cpu} is not a Fargate size; use one of {sorted(FARGATE_SIZES)}")
    allowed = FARGATE_SIZES[cpu]
    if memory not in allowed:
        raise _error("fargate", f"memory {memory} MiB does not go with cpu {cpu} on Fargate; allowed: "
                     f"{allowed[0]}-{allowed[-1]} in steps of {allowed[1] - allowed[0]}")  # fmt: skip


class RStudio(Model):
    mode: Mode = Mode.shared
    """shared: one server for all users; per_user: one server (and host name) per user."""
    launch_type: LaunchType = LaunchType.fargate
    cpu: int = Field(default=2048, ge=256)
    """CPU units per RStudio task (1024 = 1 vCPU)."""
    memory: int = Field(default=8192, ge=512)
    """MiB per RStudio task."""
    ec2_instance_type: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
    """EC2 launch type only: the container instance type, e.g. r6i.xlarge."""
    health_check_grace_seconds: int = Field(default=300, ge=0, le=3600)

    @model_validator(mode="after")
    def _sizes(self) -> RStudio:
        if self.launch_type is LaunchType.fargate:
            _fargate_size(self.cpu, self.memory)
            if self.ec2_instance_type is not None:
                raise _error("ec2_instance_type", "ec2_instance_type only applies to launch_type: ec2")
        elif self.ec2_instance_type is None:
            raise _error("ec2_instance_type", "launch_type: ec2 needs ec2_instance_type, e.g. r6i.xlarge")
        return self


class ShinyAutoscaling(Model):
    min: int = Field(default=2, ge=1, le=50)
    max: int = Field(default=4, ge=1, le=50)
    cpu_target_percent: int = Field(default=70, ge=10, le=95)
    memory_target_percent: int = Field(default=70, ge=10, le=95)
    requests_per_target: int = Field(default=50, ge=1, le=100000)
    scale_in_cooldown_seconds: int = Field(default=300, ge=0, le=3600)
    scale_out_cooldown_seconds: int = Field(default=60, ge=0, le=3600)

    @model_validator(mode="after")
    def _bounds(self) -> ShinyAutoscaling:
        if self.min > self.max:
            raise _error("autoscaling", f"min {self.min} is greater than max {self.max}")
        return self


class Shiny(Model):
    enabled: bool = True
    """false: the instance runs no Shiny Server (no service, host name, certificate name or Shiny task role); the app
    folder stays, because RStudio users keep their apps there."""
    replicas: int = Field(default=2, ge=1, le=50)
    """Must lie between autoscaling.min and max, but sets no task count: Shiny is always autoscaled, so the
    templates leave the count to the scalable target (a new service starts at autoscaling.min, and a stack update
    keeps whatever count the policies chose)."""
    cpu: int = Field(default=1024, ge=256)
    memory: int = Field(default=4096, ge=512)
    autoscaling: ShinyAutoscaling = ShinyAutoscaling()
    stickiness_hours: int = Field(default=24, ge=1, le=168)
    """ALB cookie lifetime: a browser stays on one Shiny task (apps keep state in the R process)."""

    @model_validator(mode="after")
    def _sizes(self) -> Shiny:
        _fargate_size(self.cpu, self.memory)
        if not self.autoscaling.min <= self.replicas <= self.autoscaling.max:
            raise _error("replicas", f"replicas {self.replicas} must lie between autoscaling.min "
                         f"{self.autoscaling.min} and autoscaling.max {self.autoscaling.max}")  # fmt: skip
        return self


class ServerSize(Model):
    """One per-user server's own size; what it leaves out comes from the instance's rstudio settings."""

    cpu: int | None = Field(default=None, ge=256)
    """CPU units of this user's RStudio task (1024 = 1 vCPU)."""
    memory: int | None = Field(default=None, ge=512)
    """MiB of this user's RStudio task."""


class User(Model):
    rstudio: ServerSize | None = None
    """per_user mode only: this user's server gets this size instead of rstudio.cpu and rstudio.memory, checked
    against the instance's launch type (Fargate sizes, or what fits on ec2_instance_type)."""
    email: Email
    """Where the welcome e-mail goes."""
    uid: int = Field(ge=2000, le=50000)
    """Stable POSIX uid: owns the user's EFS home (never change it once files exist); also the priority of the
    user's ALB rule, hence at most 50000."""


class Waf(Model):
    allow_ipv4: tuple[Ipv4Cidr, ...] = ()
    allow_ipv6: tuple[Ipv6Cidr, ...] = ()
    """When either list is non-empty, everything else is blocked."""
    rate_limit_per_5_minutes: int = Field(default=2000, ge=100, le=2_000_000_000)
    """Requests per client IP in any 5-minute window before WAF blocks it."""


class Bastion(Model):
    enabled: bool = False
    """ECS Exec is the default admin path; the SSH bastion is for teams that need plain SSH."""
    allowed_cidrs: tuple[Ipv4Cidr, ...] = ()

    @model_validator(mode="after")
    def _reachable(self) -> Bastion:
        if self.enabled and not self.allowed_cidrs:
            raise _error("bastion", "an enabled bastion needs allowed_cidrs (the networks SSH may come from)")
        if len(set(self.allowed_cidrs)) != len(self.allowed_cidrs):
            # each range is one security-group rule whose logical id comes from it
            raise _error("bastion", "allowed_cidrs lists a range twice; list each once")
        if "0.0.0.0/0" in self.allowed_cidrs:
            raise _error("bastion", "allowed_cidrs must not contain 0.0.0.0/0: SSH would be open to the internet")
        return self


class Logs(Model):
    retention_days: RetentionDays = 30


class DataSync(Model):
    schedule: ScheduleExpression = "cron(0 * * * ? *)"
    """When the hourly task copies s3://<upload bucket>/hourly/ to /s3_data_sync/hourly_sync."""


class SftpUser(Model):
    ssh_public_keys: tuple[SshPublicKey, ...] = Field(min_length=1, max_length=50)
    folder: Literal["hourly", "instant"] = "hourly"
    """Upload prefix the user lands in: hourly (next scheduled sync) or instant (synced on upload)."""


class Sftp(Model):
    enabled: bool = False
    users: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{2,99}$")], SftpUser] = {}

    @model_validator(mode="after")
    def _users(self) -> Sftp:
        if self.enabled and not self.users:
            raise _error("sftp", "an enabled SFTP server needs at least one entry in users")
        return self


class DataSettings(Model):
    """Per-instance resources in the data account."""

    noncurrent_version_expiry_days: int = Field(default=30, ge=1, le=3650)
    """Overwritten or deleted uploads stay recoverable this long."""
    athena_results_expiry_days: int = Field(default=30, ge=1, le=3650)
    athena_bytes_scanned_cutoff: int = Field(default=10 * 1024**3, ge=10 * 1024**2)
    """Queries scanning more than this many bytes are cancelled (cost guard)."""


class WelcomeEmail(Model):
    enabled: bool = False
    sender: Email | None = None
    """A verified SES identity in the instance account."""

    @model_validator(mode="after")
    def _sender(self) -> WelcomeEmail:
        if self.enabled and self.sender is None:
            raise _error("welcome_email", "welcome e-mails need a sender (a verified SES identity)")
        return self


class Alerts(Model):
    """Where the instance's alarms go: its own encrypted SNS topic (always there), with these e-mail addresses
    subscribed, and optionally an existing topic as well."""

    emails: Annotated[tuple[Email, ...], AfterValidator(_unique_emails)] = ()
    """Subscribed to the instance's topic; each address gets a confirmation mail and receives nothing until the link
    in it is followed."""
    topic_arn: TopicArn | None = None
    """An existing topic the alarms notify too (a team's chat or pager topic), in the instance's region; its policy
    must let cloudwatch.amazonaws.com publish (and its key, if encrypted, let CloudWatch use it)."""


class Instance(Model):
    account: AccountId
    region: Region | None = None
    """Defaults to default_region."""
    network: Network
    rstudio: RStudio = RStudio()
    shiny: Shiny = Shiny()
    users: dict[UserName, User] = {}
    waf: Waf = Waf()
    bastion: Bastion = Bastion()
    logs: Logs = Logs()
    datasync: DataSync = DataSync()
    sftp: Sftp = Sftp()
    data: DataSettings = DataSettings()
    welcome_email: WelcomeEmail = WelcomeEmail()
    alerts: Alerts = Alerts()

    @model_validator(mode="after")
    def _users(self) -> Instance:
        for name in self.users:
            if name in RESERVED_USER_NAMES:
                raise _error("users", f"user name {name!r} is reserved (system or service account); choose another")
        if self.rstudio.mode is Mode.per_user and not self.users:
            raise _error("users", "rstudio.mode per_user needs at least one user")
        if self.rstudio.mode is Mode.per_user and len(self.users) > MAX_PER_USER_SERVERS:
            raise _error("users", f"per_user mode is limited to {MAX_PER_USER_SERVERS} users: each server adds "
                         "about eleven resources and a template holds at most 500; split the users over two "
                         "instances")  # fmt: skip
        seen: dict[int, str] = {}
        for name, user in sorted(self.users.items()):
            if user.uid in seen:
                raise _error("users", f"users {seen[user.uid]!r} and {name!r} share uid {user.uid}; uids must be "
                             "unique because they own the EFS homes")  # fmt: skip
            seen[user.uid] = name
        return self


class Config(Model):
    """rstudio-fargate configuration (config.yaml)."""

    organization: Organization
    accounts: Accounts
    default_region: Region
    dns: Dns
    stacksets: StackSets
    central: Central = Central()
    images: Images = Images()
    instances: dict[InstanceName, Instance] = Field(min_length=1)

    def region_of(self, instance: str) -> str:
        return self.instances[instance].region or self.default_region

    def rollout_for(self, stackset: str) -> Rollout:
        """The operation preferences of one of this config's StackSets, overrides applied."""
        kind = naming.stackset_kinds(sorted(self.instances))[stackset]
        return self.stacksets.rollout.for_stackset(stackset, kind)

    @property
    def regions(self) -> tuple[str, ...]:
        """Every region the configuration deploys to, sorted."""
        return tuple(sorted({self.default_region} | {self.region_of(name) for name in self.instances}))

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        named = {"central": self.accounts.central, "network": self.accounts.network, "data": self.accounts.data}
        for role, account in named.items():
            if account == self.accounts.admin and self.stacksets.permission_model is PermissionModel.service_managed:
                raise _error("accounts", f"accounts.{role}: is the admin account; service-managed StackSets never "
                             "deploy to the management account: use another account or self_managed")  # fmt: skip
        fixed = naming.all_stackset_names([])
        for name in sorted(self.instances):
            mine = naming.all_stackset_names([name])[len(fixed):]
            others = fixed + naming.all_stackset_names(sorted(set(self.instances) - {name}))
            clash = sorted(set(mine) & set(others))
            if clash:
                raise _error("instances", f"instances.{name}: would create StackSet {clash[0]}, which another "
                             "StackSet already uses; rename the instance (names like 'data', 'central' or "
                             "'<other instance>-zone' collide)")  # fmt: skip
        _rollout_overrides_apply(self)
        _no_overlapping_vpcs(self)
        for name in self.instances:
            _server_sizes_fit(self, name)
        for name in self.instances:
            _host_names_fit(self, name)
        for name in self.instances:
            _topic_in_region(self, name)
        return self


def partition_of(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def _topic_in_region(cfg: Config, name: str) -> None:
    topic = cfg.instances[name].alerts.topic_arn
    if topic is None:
        return
    partition, region = SNS_TOPIC_ARN.fullmatch(topic).group(1, 2)  # type: ignore[union-attr]  # a TopicArn
    expected = partition_of(cfg.region_of(name))
    if partition != expected:
        raise _error("alerts", f"instances.{name}.alerts.topic_arn: partition {partition}, but the instance runs in "
                     f"{cfg.region_of(name)}, partition {expected}; a topic must be in the alarms' partition")
    if region != cfg.region_of(name):
        raise _error("alerts", f"instances.{name}.alerts.topic_arn: the topic is in {region}, the instance in "
                     f"{cfg.region_of(name)}; CloudWatch alarms notify topics of their own region only: name a topic "
                     f"in {cfg.region_of(name)}")  # fmt: skip


def _rollout_overrides_apply(cfg: Config) -> None:
    """Every override names a kind or a StackSet of this config, and every StackSet's merged preferences are valid."""
    rollout = cfg.stacksets.rollout
    kinds = naming.stackset_kinds(sorted(cfg.instances))
    for key in rollout.overrides:
        if key not in naming.KINDS and key not in kinds:
            raise _error("rollout", f"stacksets.rollout.overrides.{key}: neither a StackSet kind "
                         f"({', '.join(naming.KINDS)}) nor a StackSet of this config ({', '.join(sorted(kinds))})")
    for name, kind in sorted(kinds.items()):
        keys = [key for key in (kind, name) if key in rollout.overrides]
        if not keys:
            continue
        try:
            rollout.for_stackset(name, kind)
        except ValidationError as error:
            reason = error.errors(include_url=False)[0]["msg"]
            raise _error("rollout", f"stacksets.rollout.overrides.{keys[-1]}: for {name} (the default, then "
                         f"{' then '.join(keys)}): {reason}") from None


def _no_overlapping_vpcs(cfg: Config) -> None:
    # Per account, across regions too: VPCs of one account are the ones that get peered or share a transit gateway.
    by_account: dict[str, list[tuple[str, ipaddress.IPv4Network]]] = {}
    for name, inst in sorted(cfg.instances.items()):
        key = inst.account
        network = ipaddress.IPv4Network(inst.network.vpc_cidr)
        for other, other_network in by_account.get(key, []):
            if network.overlaps(other_network):
                raise _error("vpc_cidr", f"instances.{name}.network.vpc_cidr: {network} overlaps "
                             f"instances.{other}.network.vpc_cidr {other_network} in the same account "
                             f"{inst.account}; give each VPC its own range")  # fmt: skip
        by_account.setdefault(key, []).append((name, network))


def server_size(settings: Instance, user: str | None) -> tuple[int, int]:
    """(cpu, memory) of the server of `user` (None: the shared server): the user's override, else the instance's."""
    own = settings.users[user].rstudio if user in settings.users else None
    cpu = own.cpu if own and own.cpu is not None else settings.rstudio.cpu
    memory = own.memory if own and own.memory is not None else settings.rstudio.memory
    return cpu, memory


def _server_sizes_fit(cfg: Config, name: str) -> None:
    settings = cfg.instances[name]
    rstudio = settings.rstudio
    sized = {user for user, spec in settings.users.items() if spec.rstudio is not None}
    if sized and rstudio.mode is not Mode.per_user:
        raise _error("rstudio", f"instances.{name}.users.{min(sized)}.rstudio: a server size per user needs "
                     "rstudio.mode per_user (in shared mode every user is on the one server)")  # fmt: skip
    # The instance-level size only sizes a server when some user has no override (or in shared mode).
    servers = {f"instances.{name}.users.{user}.rstudio": user for user in sorted(sized)}
    if rstudio.mode is Mode.shared or set(settings.users) - sized:
        servers = {f"instances.{name}.rstudio": None, **servers}
    for key, user in servers.items():
        cpu, memory = server_size(settings, user)
        try:
            if rstudio.launch_type is LaunchType.fargate:
                _fargate_size(cpu, memory)
            else:
                _fits_instance_type(cpu, memory, str(rstudio.ec2_instance_type))
        except PydanticCustomError as error:
            raise _error("rstudio", f"{key}: {error.message()}") from None


def _fits_instance_type(cpu: int, memory: int, instance_type: str) -> None:
    """One RStudio task must fit on one container instance; ECS never splits a task across instances."""
    spec = INSTANCE_TYPES.get(instance_type)
    if spec is None:
        families = sorted({known.split(".")[0] for known in INSTANCE_TYPES})
        raise _error("ec2", f"ec2_instance_type {instance_type} is not in the table of instance types this tool "
                     f"checks sizes against ({', '.join(families)}, {TABLE_DATE}; stacksets/ec2_types.py); use "
                     "one of those")  # fmt: skip
    if cpu > spec.task_cpu:
        raise _error("ec2", f"cpu {cpu} does not fit on {instance_type} ({spec.vcpus} vCPU = {spec.task_cpu} "
                     "units); lower cpu or choose a larger ec2_instance_type")  # fmt: skip
    if memory > spec.task_memory:
        raise _error("ec2", f"memory {memory} MiB does not fit on {instance_type}: of its {spec.memory_mib} MiB "
                     f"an ECS task can reserve about {spec.task_memory} (the kernel and the ECS agent keep the "
                     "rest); lower memory or choose a larger ec2_instance_type")  # fmt: skip


def _host_names_fit(cfg: Config, name: str) -> None:
    # ACM refuses a certificate whose first domain name is longer than 64 characters.
    zone = naming.instance_zone_name(name, cfg.dns.subdomain, cfg.dns.base_domain)
    labels = ["rstudio"] + (["shiny"] if cfg.instances[name].shiny.enabled else [])
    labels += [f"{user}.rstudio" for user in cfg.instances[name].users]
    for label in labels:
        host = f"{label}.{zone}"
        if len(host) > 64:
            raise _error("dns", f"instances.{name}: host name {host} is longer than the 64 characters ACM allows "
                         "in a certificate; "
                         "shorten dns.subdomain, dns.base_domain, the instance or the user name")  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# Loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that refuses duplicate keys, which PyYAML would otherwise silently merge."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in the same mapping")
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# The rehearsal scenario file (stacksets/awsmodel/scenario.py) is read and checked the same way as config.yaml.
matching = _pattern


def format_location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False):
        loc = item["loc"]
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key; check the spelling against config.schema.json"
        elif item["type"] == "missing":
            message = "required key is missing"
        # pydantic reports the function-validator wrapper as a loc part for Annotated types; drop it.
        loc = tuple(part for part in loc if not (isinstance(part, str) and part.startswith("function-")))
        if loc and loc[-1] == "[key]":  # the mapping key itself (an instance or user name) is wrong
            loc, message = loc[:-1], f"bad name: {message}"
        lines.append(f"{format_location(loc)}: {message}" if loc else message)
    return "\n".join(lines)


def parse_config(data: Any) -> Config:
    """Validate already-parsed YAML data; raises ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a YAML mapping with organization, accounts, dns, ... keys")
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def read_yaml(path: Path, missing: str) -> Any:
    """A YAML file's data, duplicate keys refused; ConfigError naming the file (and `missing`: what to do when it
    does not exist) otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; {missing}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read it ({error})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    except ConfigError as error:  # the loader's duplicate-key refusal
        raise ConfigError(f"{path}: {error}") from None


def load_config(path: str | Path) -> Config:
    """Read and validate config.yaml; the only way the rest of the code gets a Config."""
    path = Path(path)
    data = read_yaml(path, "pass --config PATH or copy the example config.yaml")
    try:
        return parse_config(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def json_schema() -> dict[str, Any]:
    return Config.model_json_schema()
