"""The rehearsal scenario: what the AWS model's organization looks like and which faults it injects.

A scenario lets `deploy.py deploy --sandbox --scenario FILE`, the tests and the benchmark rehearse a rollout and its
failures before it runs against AWS: suspended or misplaced accounts, a management account inside a target OU, slow
stack operations, throttling, a resource that fails to create, a low Lambda quota, an unverified SES recipient.

`load_scenario` is the only entry point; `Scenario.check_against(cfg)` then refuses names the config does not have.
Every mistake is a `ScenarioError` that starts with the file and the key path (`faults[1].error`).
The file format is documented in examples/scenarios/README.md; `python -m stacksets.awsmodel.scenario --schema PATH`
writes its JSON schema.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
from pathlib import Path
from typing import Annotated, Any

import botocore.session
from botocore import xform_name
from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from stacksets import naming
from stacksets.config import (
    DOMAIN_NAME,
    EMAIL,
    AccountId,
    CallAs,
    Config,
    ConfigError,
    Model,
    OrganizationalUnitId,
    PermissionModel,
    Region,
    matching,
    read_yaml,
)
from stacksets.errors import UserError


class ScenarioError(UserError):
    """A problem with a rehearsal scenario file, worded for the user: file, key path, what to do."""


# --------------------------------------------------------------------------------------------------------------------
# Field types

ACCOUNT_STATES = ("ACTIVE", "SUSPENDED", "PENDING_CLOSURE", "CLOSED", "PENDING_ACTIVATION")
# Three throttling codes botocore retries (botocore/retries/standard.py) and the two answers of an outage, which it
# retries by their HTTP status (InternalFailure 500, ServiceUnavailable 503): a wire fault exercises those retries.
WIRE_ERRORS = ("Throttling", "ThrottlingException", "RequestLimitExceeded", "InternalFailure", "ServiceUnavailable")
# The services the orchestrator calls; a wire fault on any other method name could never fire.
FAULTABLE_SERVICES = ("cloudformation", "organizations", "sts", "s3", "ecr", "codebuild", "logs", "ses", "sesv2",
                      "lambda")  # fmt: skip
# Not an account of any config we ship; check_against refuses it when a config uses it.
DEFAULT_MANAGEMENT_ACCOUNT = "999999999999"
DEFAULT_DURATION_SECONDS = 60.0
ROOT_ID = re.compile(r"r-[a-z0-9]{4,32}")


def _one_of(allowed: tuple[str, ...]) -> Any:
    def check(value: str) -> str:
        if value not in allowed:
            raise PydanticCustomError("one_of", f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return AfterValidator(check), WithJsonSchema({"type": "string", "enum": list(allowed)})


@functools.cache
def _api_names() -> frozenset[str]:
    session = botocore.session.get_session()
    return frozenset(xform_name(operation) for service in FAULTABLE_SERVICES
                     for operation in session.get_service_model(service).operation_names)  # fmt: skip


def _known_api(value: str) -> str:
    if value not in _api_names():
        raise PydanticCustomError("api", f"{value!r} is not a boto3 method of {', '.join(FAULTABLE_SERVICES)}; use "
                                  "the snake_case name, e.g. describe_stack_set_operation")  # fmt: skip
    return value


def _ses_identity(value: str) -> str:
    # SES verifies either one address or a whole domain.
    if not (EMAIL.fullmatch(value) or DOMAIN_NAME.fullmatch(value)):
        raise PydanticCustomError("ses_identity", f"{value!r} is neither an e-mail address nor a lower-case domain")
    return value


AccountState = Annotated[str, *_one_of(ACCOUNT_STATES)]
WireError = Annotated[str, *_one_of(WIRE_ERRORS)]
ApiName = Annotated[str, *matching(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*", "a boto3 method name (describe_stack_set)"),
                    AfterValidator(_known_api)]  # fmt: skip
NestedOuId = Annotated[str, *matching(r"ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}", "an OU id (ou-ab12-34cd56ef)")]
StackSetName = Annotated[str, *matching(r"[A-Za-z][A-Za-z0-9-]{0,127}", "a StackSet name (rstudio-dev)")]
DurationKey = Annotated[str, *matching(r"default|[A-Za-z][A-Za-z0-9-]{0,127}", "default or a StackSet name")]
LogicalId = Annotated[str, *matching(r"[A-Za-z0-9]{1,255}", "a template's logical resource id (ShinyService)")]
SesIdentity = Annotated[str, AfterValidator(_ses_identity),
                        WithJsonSchema({"type": "string", "description": "e-mail address or domain"})]  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# The scenario's parts


class Account(Model):
    state: AccountState = "ACTIVE"
    """Organizations account status; anything but ACTIVE makes StackSets fail in that account."""
    ou: OrganizationalUnitId | None = None
    """Move the account here (an OU of the config, one declared in organizational_units, or the root r-...); an
    account the config does not name is created here."""


class OrganizationalUnit(Model):
    parent: OrganizationalUnitId
    """An OU of the config, another declared OU, or the root id r-..."""
    name: str = Field(min_length=1, max_length=128)


class ManagementAccount(Model):
    id: AccountId | None = None
    """Default: the admin account when it administers as the management account (service_managed, call_as self),
    otherwise 999999999999."""
    ou: OrganizationalUnitId | None = None
    """Default: the organization's root."""


class Quotas(Model):
    """Service quotas of one account that bound what a deploy may create there."""

    # 1,000 by default, but "new AWS accounts have reduced concurrency": https://docs.aws.amazon.com/lambda/latest/dg/
    # gettingstarted-limits.html; the 100 kept unreserved: https://docs.aws.amazon.com/lambda/latest/dg/
    # configuration-concurrency.html ("reserve up to the Unreserved account concurrency value ... minus 100").
    lambda_concurrent_executions: int = Field(default=1000, ge=1)
    """Lambda "Concurrent executions"; a reservation must leave 100 of them unreserved."""
    # "An account can have up to 10 resource policies per AWS Region":
    # https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutResourcePolicy.html
    logs_resource_policies: int = Field(default=10, ge=1)
    """CloudWatch Logs resource policies per Region."""
    # "VPCs per Region", default 5, adjustable (quota L-F678F1CE): https://docs.aws.amazon.com/general/latest/gr/
    # vpc-service.html. The account's default VPC takes one of them (stricter reading: it is an ordinary VPC).
    vpcs_per_region: int = Field(default=5, ge=1)
    """VPCs per Region, the default VPC included."""
    # "EC2-VPC Elastic IPs", default 5 per Region, adjustable (quota L-0263D0A3): https://docs.aws.amazon.com/
    # AWSEC2/latest/UserGuide/elastic-ip-addresses-eip.html#using-instance-addressing-limit
    elastic_ips_per_region: int = Field(default=5, ge=1)
    """Elastic IP addresses per Region (one per NAT gateway here)."""


# Lambda keeps this much of "Concurrent executions" unreserved (configuration-concurrency.html, above).
LAMBDA_MIN_UNRESERVED = 100


class Limits(Model):
    """StackSets quotas of the administrator account and the model's API rate limits."""

    # The first three are the defaults on https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/
    # cloudformation-limits.html ("StackSets", "Stack instances", "StackSets instance operations"); archived versions
    # of that page (github.com/awsdocs/aws-cloudformation-user-guide, doc_source/cloudformation-limits.md, archived
    # 2023) list 100, 2,000 and 3,500.
    stack_sets_per_administrator: int = Field(default=1000, ge=1)
    """Service Quotas: "Stack sets per administrator account"."""
    stack_instances_per_stack_set: int = Field(default=100_000, ge=1)
    """Service Quotas: "Stack instances per stack set"."""
    concurrent_stack_instance_operations_per_region: int = Field(default=10_000, ge=1)
    """Stack instances, across all StackSets, in operations at the same time in one Region."""
    # "The maximum speed of deployment is 100 concurrent stack instances per stack set": StackSets operation options,
    # https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stacksets-concepts.html
    stack_instances_per_operation: int = Field(default=100, ge=1)
    """Stack instances one StackSet operation runs at the same time, whatever MaxConcurrentCount asks for."""
    # AWS publishes no request rates for these APIs (CloudFormation, Organizations, STS, ...), only that it throttles;
    # these conservative values make a rehearsal throttle earlier than AWS probably would.
    api_requests_per_second: float = Field(default=10.0, gt=0)
    """Token-bucket refill rate per account, Region and service."""
    api_burst: int = Field(default=40, ge=1)
    """Token-bucket size per account, Region and service."""


class WireFault(Model):
    """The next `times` calls of `api` fail on the wire with `error`, as AWS throttling or an outage would."""

    api: ApiName
    error: WireError
    times: int = Field(default=1, ge=1)


class ResourceFault(Model):
    """A resource of a StackSet's stack fails to create or update, `times` times."""

    stackset: StackSetName
    account: AccountId
    resource: LogicalId
    region: Region | None = None
    """Default: the fault fires in any Region."""
    reason: str | None = Field(default=None, min_length=1)
    """The status reason the stack event shows; default: a generic CloudFormation failure."""
    times: int = Field(default=1, ge=1)


def _fault_kind(value: Any) -> str | None:
    """Which kind of fault a YAML mapping (or, when serialising, a parsed fault) is; None when it is neither."""
    if isinstance(value, WireFault):
        return "api-fault"
    if isinstance(value, ResourceFault):
        return "resource-fault"
    if isinstance(value, dict):
        if "api" in value or "error" in value:
            return "api-fault"
        if {"stackset", "account", "resource"} & value.keys():
            return "resource-fault"
    return None


FAULT_TAGS = ("api-fault", "resource-fault")
Fault = Annotated[
    Annotated[WireFault, Tag("api-fault")] | Annotated[ResourceFault, Tag("resource-fault")],
    Discriminator(_fault_kind, custom_error_type="fault_kind",
                  custom_error_message="a fault has either api and error (a wire fault) or stackset, account and "
                                       "resource (a resource fault)"),  # fmt: skip
]


class SesIdentities(Model):
    verified: tuple[SesIdentity, ...] = ()
    """Addresses and domains verified in SES in this account; every other sender or recipient is refused."""


# --------------------------------------------------------------------------------------------------------------------
# The scenario


class _Problem(Exception):
    """One mistake found after parsing: the key path and what is wrong, worded for the user."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(where, what)
        self.where, self.what = where, what


class Scenario(Model):
    """rstudio-fargate rehearsal scenario (deploy.py --sandbox --scenario FILE)."""

    accounts: dict[AccountId, Account] = {}
    organizational_units: dict[NestedOuId, OrganizationalUnit] = {}
    management_account: ManagementAccount = ManagementAccount()
    quotas: dict[AccountId, Quotas] = {}
    """Per account; accounts not listed get the AWS defaults."""
    limits: Limits = Limits()
    durations: dict[DurationKey, Annotated[float, Field(gt=0)]] = {"default": DEFAULT_DURATION_SECONDS}
    """Simulated seconds per stack instance operation, by StackSet name; 'default' for the rest (60)."""
    faults: tuple[Fault, ...] = ()
    ses: dict[AccountId, SesIdentities] = {}
    """Per account; accounts not listed treat every address as verified."""
    strict_creation_order: bool = False
    """Creation-order races (an EIP that does not wait for the gateway attachment) fail instead of warning; AWS
    fails them only sometimes."""

    _source: str = PrivateAttr(default="the default scenario")

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        problem = _second_root(_root_refs(self))
        for ou in self.organizational_units:
            problem = problem or _cycle(self, ou)
        if problem:
            raise PydanticCustomError("scenario", f"{problem.where}: {problem.what}")
        return self

    # ----------------------------------------------------------------------------------------------------------------
    # What the AWS model asks

    def duration_for(self, stackset: str) -> float:
        return self.durations.get(stackset, self.durations.get("default", DEFAULT_DURATION_SECONDS))

    def account_state(self, account: str) -> str:
        entry = self.accounts.get(account)
        return entry.state if entry else "ACTIVE"

    def quota(self, account: str, name: str) -> int:
        if name not in Quotas.model_fields:
            raise KeyError(f"no quota {name!r}; the scenario knows {', '.join(Quotas.model_fields)}")
        return getattr(self.quotas.get(account, Quotas()), name)

    def verified(self, account: str) -> frozenset[str] | None:
        """The SES identities verified in `account`, or None when the scenario does not restrict them."""
        entry = self.ses.get(account)
        return frozenset(entry.verified) if entry else None

    def management_account_id(self, cfg: Config) -> str:
        if self.management_account.id:
            return self.management_account.id
        return cfg.accounts.admin if _admin_is_management(cfg) else DEFAULT_MANAGEMENT_ACCOUNT

    # ----------------------------------------------------------------------------------------------------------------
    # Against a config

    def check_against(self, cfg: Config) -> None:
        """Refuse StackSets, OUs and accounts the config does not have, and changes to its admin account."""
        try:
            _check_stacksets(self, cfg)
            _check_organizational_units(self, cfg)
            _check_accounts(self, cfg)
            _check_management_account(self, cfg)
        except _Problem as problem:
            raise ScenarioError(f"{self._source}: {problem.where}: {problem.what}") from None


# --------------------------------------------------------------------------------------------------------------------
# Checks


def _resource_faults(scenario: Scenario) -> list[tuple[int, ResourceFault]]:
    return [(i, fault) for i, fault in enumerate(scenario.faults) if isinstance(fault, ResourceFault)]


def _ou_refs(scenario: Scenario) -> list[tuple[str, str]]:
    """(key path, OU or root id) of every place the scenario puts an account or an OU."""
    refs = [(f"accounts.{account}.ou", entry.ou) for account, entry in scenario.accounts.items() if entry.ou]
    if scenario.management_account.ou:
        refs.append(("management_account.ou", scenario.management_account.ou))
    refs += [(f"organizational_units.{ou}.parent", entry.parent) for ou, entry in scenario.organizational_units.items()]
    return refs


def _root_refs(scenario: Scenario) -> list[tuple[str, str]]:
    return [(where, ref) for where, ref in _ou_refs(scenario) if ROOT_ID.fullmatch(ref)]


def _second_root(refs: list[tuple[str, str]]) -> _Problem | None:
    for where, root in refs:
        first_where, first = refs[0]
        if root != first:
            return _Problem(where, f"{root} is a second root id, but an organization has one root ({first} at "
                            f"{first_where}); write the same r-... everywhere")  # fmt: skip
    return None


def _cycle(scenario: Scenario, start: str) -> _Problem | None:
    chain = [start]
    parent = scenario.organizational_units[start].parent
    while parent in scenario.organizational_units:
        if parent in chain:
            return _Problem(f"organizational_units.{start}.parent", f"{' -> '.join(chain + [parent])} is a cycle; an "
                            "OU chain must end at an OU of the config or the root")  # fmt: skip
        chain.append(parent)
        parent = scenario.organizational_units[parent].parent
    return None


def _check_stacksets(scenario: Scenario, cfg: Config) -> None:
    names = naming.all_stackset_names(sorted(cfg.instances))
    used = [(f"durations.{key}", key) for key in scenario.durations if key != "default"]
    used += [(f"faults[{i}].stackset", fault.stackset) for i, fault in _resource_faults(scenario)]
    for where, name in used:
        if name not in names:
            raise _Problem(where, f"the config implies no StackSet {name!r}; use one of {', '.join(names)}")


def _check_organizational_units(scenario: Scenario, cfg: Config) -> None:
    config_ous = set(cfg.stacksets.bootstrap.organizational_units)
    for ou in scenario.organizational_units:
        if ou in config_ous:
            raise _Problem(f"organizational_units.{ou}", "is an OU of the config already; declare only extra OUs")
    config_roots = [("the config's stacksets.bootstrap.organizational_units", ou) for ou in sorted(config_ous)
                    if ROOT_ID.fullmatch(ou)]  # fmt: skip
    problem = _second_root(config_roots + _root_refs(scenario))
    if problem:
        raise problem
    known = config_ous | set(scenario.organizational_units)
    for where, ref in _ou_refs(scenario):
        if ref not in known and not ROOT_ID.fullmatch(ref):
            raise _Problem(where, f"{ref} is neither an OU of the config ({', '.join(sorted(config_ous)) or 'none'}), "
                           "one declared in organizational_units, nor a root id (r-...)")  # fmt: skip


def config_accounts(cfg: Config) -> set[str]:
    """Every account the config names: the four roles, the instances and the self-managed bootstrap targets."""
    named = {cfg.accounts.admin, cfg.accounts.central, cfg.accounts.network, cfg.accounts.data}
    return named | {inst.account for inst in cfg.instances.values()} | set(cfg.stacksets.bootstrap.accounts)


def _check_accounts(scenario: Scenario, cfg: Config) -> None:
    ours = config_accounts(cfg)
    management = scenario.management_account_id(cfg)
    for account, entry in scenario.accounts.items():
        if account == cfg.accounts.admin:
            raise _Problem(f"accounts.{account}", "is the config's admin account, which administers the StackSets; a "
                           "scenario cannot suspend or move it (use management_account for the management account)")
        if account == management:
            raise _Problem(f"accounts.{account}", "is the management account: place it with management_account.ou")
        if account not in ours and entry.ou is None:
            raise _Problem(f"accounts.{account}", "is not an account of the config, so the scenario creates it: give "
                           "it an ou to create it in")  # fmt: skip
    known = ours | set(scenario.accounts) | {management}
    used = [(f"quotas.{account}", account) for account in scenario.quotas]
    used += [(f"ses.{account}", account) for account in scenario.ses]
    used += [(f"faults[{i}].account", fault.account) for i, fault in _resource_faults(scenario)]
    for where, account in used:
        if account not in known:
            raise _Problem(where, f"{account} is neither an account of the config nor one the scenario creates under "
                           "accounts")  # fmt: skip


def _admin_is_management(cfg: Config) -> bool:
    # Service-managed StackSets are administered by the management account or a delegated administrator; call_as self
    # means the former.
    service = cfg.stacksets.permission_model is PermissionModel.service_managed
    return service and cfg.stacksets.call_as is CallAs.self


def _check_management_account(scenario: Scenario, cfg: Config) -> None:
    management = scenario.management_account_id(cfg)
    others = config_accounts(cfg) - {cfg.accounts.admin}
    if management in others:
        where = "management_account.id" if scenario.management_account.id else "management_account"
        raise _Problem(where, f"{management} is an account the config deploys to; give the management account its own "
                       "id with management_account.id")  # fmt: skip
    if _admin_is_management(cfg) and management != cfg.accounts.admin:
        raise _Problem("management_account.id", f"the config administers as the management account (call_as self), "
                       f"so the management account is the admin account {cfg.accounts.admin}; drop the id")
    if cfg.stacksets.call_as is CallAs.delegated_admin and management == cfg.accounts.admin:
        raise _Problem("management_account.id", f"{management} is the config's delegated administrator, which cannot "
                       "be the management account; use another id")  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# Loading


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not (part in FAULT_TAGS or part.startswith("function-")):
            text += f".{part}" if text else part
    return text


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False):
        loc, message = item["loc"], item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key; check the spelling against examples/scenarios/scenario.schema.json"
        elif item["type"] == "missing":
            message = "required key is missing"
        where = _location(loc)
        if loc and loc[-1] == "[key]":  # the mapping key itself (an account or OU id) is wrong, and may be a number
            where, message = f"{_location(loc[:-2])}.{loc[-2]}", f"bad key: {message}"
        lines.append(f"{where}: {message}" if where else message)
    return "\n".join(lines)


def _read(path: Path) -> Any:
    try:
        return read_yaml(path, "pass --scenario PATH, e.g. one of examples/scenarios/")
    except ConfigError as error:
        raise ScenarioError(str(error)) from None


def load_scenario(path: Path | None) -> Scenario:
    """Read and validate a scenario file; None is the default scenario (AWS defaults, no faults)."""
    if path is None:
        return Scenario()
    path = Path(path)
    data = _read(path)
    if data is None:  # an empty file, or only comments
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a YAML mapping with accounts, faults, ... keys")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        raise ScenarioError(f"{path}: {_describe(error)}") from None
    scenario._source = str(path)
    return scenario


def json_schema() -> dict[str, Any]:
    return Scenario.model_json_schema()


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: Path) -> None:
    Path(path).write_text(schema_text(), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stacksets.awsmodel.scenario", description=__doc__.splitlines()[0])
    parser.add_argument("--schema", type=Path, required=True, metavar="PATH", help="write the JSON schema here")
    args = parser.parse_args(argv)
    write_schema(args.schema)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
