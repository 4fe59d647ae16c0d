from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from stacksets.awsmodel.scenario import (
    DEFAULT_MANAGEMENT_ACCOUNT,
    Limits,
    ResourceFault,
    Scenario,
    ScenarioError,
    WireFault,
    load_scenario,
    main,
    schema_text,
    write_schema,
)
from stacksets.config import Config, parse_config
from stacksets.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "examples" / "scenarios"
SCHEMA = SCENARIOS / "scenario.schema.json"
EXAMPLES = sorted(SCENARIOS.glob("*.yaml"))
WORKLOADS = "ou-ab12-11111111"  # a bootstrap OU of the example config
SHARED = "ou-ab12-22222222"
DEV = "555555555555"
PROD = "666666666666"
EXTRA = "777777777777"
THROTTLE_CODES = "Throttling, ThrottlingException, RequestLimitExceeded, InternalFailure, ServiceUnavailable"


@pytest.fixture
def write(tmp_path: Path) -> Any:
    def write(text: str) -> Path:
        path = tmp_path / "x.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def load(write: Any, text: str) -> Scenario:
    return load_scenario(write(text))


def refused(write: Any, text: str) -> str:
    """The message of the ScenarioError that loading `text` raises, without the file prefix (after checking it)."""
    path = write(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: "):]


def refused_by(write: Any, text: str, cfg: Config) -> str:
    path = write(text)
    scenario = load_scenario(path)
    with pytest.raises(ScenarioError) as caught:
        scenario.check_against(cfg)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: "):]


def config_with(example_data: dict[str, Any], **stacksets: Any) -> Config:
    example_data["stacksets"].update(stacksets)
    return parse_config(example_data)


# --------------------------------------------------------------------------------------------------------------------
# Defaults and the helpers the model uses


def test_no_file_is_the_default_scenario(cfg: Config) -> None:
    scenario = load_scenario(None)
    assert scenario == Scenario()
    assert scenario.accounts == {} and scenario.faults == () and scenario.strict_creation_order is False
    assert scenario.duration_for("rstudio-dev") == 60
    assert scenario.account_state(DEV) == "ACTIVE"
    assert scenario.quota(DEV, "lambda_concurrent_executions") == 1000
    assert scenario.quota(DEV, "logs_resource_policies") == 10
    assert scenario.verified(PROD) is None
    assert scenario.limits == Limits()
    assert scenario.management_account_id(cfg) == DEFAULT_MANAGEMENT_ACCOUNT
    scenario.check_against(cfg)


def test_limits_defaults_are_the_aws_defaults() -> None:
    limits = Limits()
    assert (limits.stack_sets_per_administrator, limits.stack_instances_per_stack_set) == (1000, 100_000)
    assert limits.concurrent_stack_instance_operations_per_region == 10_000
    assert limits.stack_instances_per_operation == 100
    assert (limits.api_requests_per_second, limits.api_burst) == (10, 40)


def test_an_empty_file_is_the_default_scenario(write: Any) -> None:
    assert load(write, "# nothing but a comment\n").model_dump() == Scenario().model_dump()


def test_scenario_is_frozen() -> None:
    with pytest.raises(Exception, match="frozen"):
        Scenario().strict_creation_order = True  # type: ignore[misc]


def test_an_unknown_quota_name_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="lambda_concurrent_executions"):
        Scenario().quota(DEV, "lambda_concurency")


def test_scenario_error_is_a_user_error() -> None:
    assert issubclass(ScenarioError, UserError)


# --------------------------------------------------------------------------------------------------------------------
# Every key's happy path


def test_accounts(write: Any, cfg: Config) -> None:
    scenario = load(write, f"""
        accounts:
          "{EXTRA}": {{ou: {WORKLOADS}, state: SUSPENDED}}
          "{DEV}": {{state: PENDING_CLOSURE}}
          "{PROD}": {{ou: {SHARED}}}
        """)
    assert scenario.account_state(EXTRA) == "SUSPENDED"
    assert scenario.account_state(DEV) == "PENDING_CLOSURE"
    assert scenario.account_state(PROD) == "ACTIVE"
    assert scenario.accounts[PROD].ou == SHARED
    scenario.check_against(cfg)


def test_organizational_units_nest_below_config_ous_and_each_other(write: Any, cfg: Config) -> None:
    scenario = load(write, f"""
        organizational_units:
          "ou-ab12-44444444": {{parent: {SHARED}, name: teams}}
          "ou-ab12-55555555": {{parent: ou-ab12-44444444, name: data-science}}
        accounts:
          "{EXTRA}": {{ou: ou-ab12-55555555}}
        """)
    assert scenario.organizational_units["ou-ab12-55555555"].parent == "ou-ab12-44444444"
    scenario.check_against(cfg)


def test_a_root_id_is_a_valid_place(write: Any, cfg: Config) -> None:
    load(write, f'accounts: {{"{EXTRA}": {{ou: r-ab12}}}}\nmanagement_account: {{ou: r-ab12}}\n').check_against(cfg)


def test_management_account(write: Any, cfg: Config) -> None:
    scenario = load(write, f'management_account: {{id: "999999999998", ou: {WORKLOADS}}}\n')
    assert scenario.management_account_id(cfg) == "999999999998"
    assert scenario.management_account.ou == WORKLOADS
    scenario.check_against(cfg)


def test_the_management_account_is_the_admin_when_the_config_administers_as_management(
        example_data: dict[str, Any]) -> None:  # fmt: skip
    cfg = config_with(example_data, call_as="self")
    scenario = Scenario()
    assert scenario.management_account_id(cfg) == cfg.accounts.admin
    scenario.check_against(cfg)


def test_quotas_fill_in_the_quotas_not_given(write: Any, cfg: Config) -> None:
    scenario = load(write, f'quotas: {{"{DEV}": {{lambda_concurrent_executions: 10}}}}\n')
    assert scenario.quota(DEV, "lambda_concurrent_executions") == 10
    assert scenario.quota(DEV, "logs_resource_policies") == 10
    assert scenario.quota(PROD, "lambda_concurrent_executions") == 1000
    scenario.check_against(cfg)


def test_limits(write: Any) -> None:
    scenario = load(write, "limits: {stack_sets_per_administrator: 2000, api_requests_per_second: 2.5, api_burst: 5}\n")
    assert scenario.limits.stack_sets_per_administrator == 2000
    assert scenario.limits.api_requests_per_second == 2.5
    assert scenario.limits.api_burst == 5
    assert scenario.limits.stack_instances_per_stack_set == 100_000


def test_durations_by_stackset_with_a_default(write: Any, cfg: Config) -> None:
    scenario = load(write, "durations: {default: 300, rstudio-prod: 2400}\n")
    assert scenario.duration_for("rstudio-prod") == 2400
    assert scenario.duration_for("rstudio-dev") == 300
    scenario.check_against(cfg)


def test_durations_without_default_keep_sixty_seconds(write: Any) -> None:
    assert load(write, "durations: {rstudio-prod: 2400}\n").duration_for("rstudio-dev") == 60


def test_faults_of_both_kinds(write: Any, cfg: Config) -> None:
    scenario = load(write, f"""
        faults:
          - {{api: describe_stack_set_operation, error: Throttling, times: 20}}
          - {{stackset: rstudio-dev, account: "{DEV}", resource: ShinyService}}
          - {{stackset: rstudio-prod, account: "{PROD}", resource: WelcomeEmailFunction, region: eu-west-1,
              reason: "quota", times: 2}}
        """)
    wire, once, twice = scenario.faults
    assert wire == WireFault(api="describe_stack_set_operation", error="Throttling", times=20)
    assert isinstance(once, ResourceFault) and (once.times, once.region, once.reason) == (1, None, None)
    assert isinstance(twice, ResourceFault) and (twice.times, twice.region, twice.reason) == (2, "eu-west-1", "quota")
    scenario.check_against(cfg)


def test_ses_verified_addresses_and_domains(write: Any, cfg: Config) -> None:
    scenario = load(write, f'ses: {{"{PROD}": {{verified: [alice@example.com, example.org]}}}}\n')
    assert scenario.verified(PROD) == frozenset({"alice@example.com", "example.org"})
    assert scenario.verified(DEV) is None
    scenario.check_against(cfg)


def test_strict_creation_order(write: Any) -> None:
    assert load(write, "strict_creation_order: true\n").strict_creation_order is True


# --------------------------------------------------------------------------------------------------------------------
# A bad value per key, with its key path


def test_the_message_names_file_key_path_and_allowed_values(write: Any) -> None:
    path = write("""
        faults:
          - {api: describe_stack_set_operation, error: Throttling}
          - {api: describe_stack_set_operation, error: Throtling}
        """)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value) == f"{path}: faults[1].error: 'Throtling' is not one of {THROTTLE_CODES}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'accounts: {{"{DEV}": {{state: SUSPEND}}}}',
         f"accounts.{DEV}.state: 'SUSPEND' is not one of ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED, "
         "PENDING_ACTIVATION"),
        (f'accounts: {{"{DEV}": {{ou: workloads}}}}', f"accounts.{DEV}.ou: 'workloads' does not look like an OU id"),
        (f'accounts: {{"{DEV}": {{state: ACTIVE, parent: x}}}}', f"accounts.{DEV}.parent: unknown key"),
        (f"accounts: {{{DEV}: {{}}}}", f"accounts.{DEV}: bad key: account ids must be quoted"),
        ('accounts: {"5555": {}}', "accounts.5555: bad key: '5555' is not an AWS account id"),
        ("organizational_units: {r-ab12: {parent: r-ab12, name: x}}",
         "organizational_units.r-ab12: bad key: 'r-ab12' does not look like an OU id"),
        ("organizational_units: {ou-ab12-44444444: {name: x}}",
         "organizational_units.ou-ab12-44444444.parent: required key is missing"),
        ("organizational_units: {ou-ab12-44444444: {parent: r-ab12, name: ''}}",
         "organizational_units.ou-ab12-44444444.name: String should have at least 1 character"),
        ("management_account: {id: 999999999999}", "management_account.id: account ids must be quoted"),
        ("management_account: {ou: root}", "management_account.ou: 'root' does not look like an OU id"),
        (f'quotas: {{"{DEV}": {{lambda_concurrent_executions: 0}}}}',
         f"quotas.{DEV}.lambda_concurrent_executions: Input should be greater than or equal to 1"),
        (f'quotas: {{"{DEV}": {{lambda_concurrency: 10}}}}', f"quotas.{DEV}.lambda_concurrency: unknown key"),
        (f'quotas: {{"{DEV}": {{logs_resource_policies: many}}}}',
         f"quotas.{DEV}.logs_resource_policies: Input should be a valid integer"),
        ("limits: {api_burst: 0}", "limits.api_burst: Input should be greater than or equal to 1"),
        ("limits: {api_requests_per_second: 0}", "limits.api_requests_per_second: Input should be greater than 0"),
        ("limits: {stack_sets_per_admin: 5}", "limits.stack_sets_per_admin: unknown key"),
        ("durations: {rstudio-dev: -5}", "durations.rstudio-dev: Input should be greater than 0"),
        ("durations: {'rstudio dev': 5}", "durations.rstudio dev: bad key: 'rstudio dev' does not look like default"),
        ("faults: [{api: DescribeStackSet, error: Throttling}]",
         "faults[0].api: 'DescribeStackSet' does not look like"),
        ("faults: [{api: describe_stackset_operation, error: Throttling}]",
         "faults[0].api: 'describe_stackset_operation' is not a boto3 method of cloudformation"),
        ("faults: [{api: describe_stack_set}]", "faults[0].error: required key is missing"),
        ("faults: [{api: describe_stack_set, error: Throttling, times: 0}]",
         "faults[0].times: Input should be greater than or equal to 1"),
        ("faults: [{times: 3}]", "faults[0]: a fault has either api and error (a wire fault) or stackset, account"),
        ("faults: [{api: describe_stack_set, error: Throttling, stackset: rstudio-dev}]",
         "faults[0].stackset: unknown key"),
        (f'faults: [{{stackset: rstudio-dev, account: "{DEV}"}}]', "faults[0].resource: required key is missing"),
        (f'faults: [{{stackset: rstudio-dev, account: "{DEV}", resource: Shiny-Service}}]',
         "faults[0].resource: 'Shiny-Service' does not look like a template's logical resource id"),
        (f'faults: [{{stackset: rstudio-dev, account: "{DEV}", resource: ShinyService, region: eu-west-9}}]',
         "faults[0].region: 'eu-west-9' is not an AWS region"),
        (f'faults: [{{stackset: rstudio-dev, account: "{DEV}", resource: ShinyService, reason: ""}}]',
         "faults[0].reason: String should have at least 1 character"),
        (f'ses: {{"{PROD}": {{verified: [alice@example.com, alice]}}}}',
         f"ses.{PROD}.verified[1]: 'alice' is neither an e-mail address nor a lower-case domain"),
        ("strict_creation_order: maybe", "strict_creation_order: Input should be a valid boolean"),
        ("fault: []", "fault: unknown key; check the spelling against examples/scenarios/scenario.schema.json"),
    ],
)
def test_a_bad_value_names_its_key_path(write: Any, text: str, expected: str) -> None:
    assert refused(write, text + "\n").startswith(expected)


def test_a_scenario_must_be_a_mapping(write: Any) -> None:
    assert refused(write, "- accounts\n").startswith("a scenario is a YAML mapping")


def test_duplicate_keys_are_refused(write: Any) -> None:
    message = refused(write, f"""
        accounts:
          "{DEV}": {{state: SUSPENDED}}
          "{DEV}": {{state: ACTIVE}}
        """)
    assert message == f"line 4: key '{DEV}' appears twice in the same mapping"


def test_invalid_yaml_is_refused(write: Any) -> None:
    assert refused(write, "accounts: {\n").startswith("not valid YAML")


def test_a_missing_file_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"nothing\.yaml: no such file; pass --scenario PATH"):
        load_scenario(tmp_path / "nothing.yaml")


def test_an_ou_cycle_is_refused(write: Any) -> None:
    message = refused(write, """
        organizational_units:
          "ou-ab12-44444444": {parent: ou-ab12-55555555, name: a}
          "ou-ab12-55555555": {parent: ou-ab12-44444444, name: b}
        """)
    assert message == ("organizational_units.ou-ab12-44444444.parent: ou-ab12-44444444 -> ou-ab12-55555555 -> "
                       "ou-ab12-44444444 is a cycle; an OU chain must end at an OU of the config or the root")


def test_two_root_ids_are_refused(write: Any) -> None:
    message = refused(write, f'accounts: {{"{EXTRA}": {{ou: r-ab12}}}}\nmanagement_account: {{ou: r-cd34}}\n')
    assert message.startswith("management_account.ou: r-cd34 is a second root id, but an organization has one root "
                              f"(r-ab12 at accounts.{EXTRA}.ou)")  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# Against the config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("durations: {rstudio-test: 60}", "durations.rstudio-test: the config implies no StackSet 'rstudio-test'; "
                                          "use one of rstudio-bootstrap, rstudio-central"),
        (f'faults: [{{stackset: rstudio-test, account: "{DEV}", resource: ShinyService}}]',
         "faults[0].stackset: the config implies no StackSet 'rstudio-test'"),
        (f'accounts: {{"{EXTRA}": {{ou: ou-ab12-99999999}}}}',
         f"accounts.{EXTRA}.ou: ou-ab12-99999999 is neither an OU of the config (ou-ab12-11111111, ou-ab12-22222222), "
         "one declared in organizational_units, nor a root id"),
        ("management_account: {ou: ou-ab12-99999999}", "management_account.ou: ou-ab12-99999999 is neither"),
        ("organizational_units: {ou-ab12-44444444: {parent: ou-ab12-99999999, name: x}}",
         "organizational_units.ou-ab12-44444444.parent: ou-ab12-99999999 is neither"),
        (f"organizational_units: {{{WORKLOADS}: {{parent: r-ab12, name: x}}}}",
         f"organizational_units.{WORKLOADS}: is an OU of the config already"),
        ('accounts: {"111111111111": {state: SUSPENDED}}',
         "accounts.111111111111: is the config's admin account, which administers the StackSets; a scenario cannot "
         "suspend or move it"),
        (f'accounts: {{"111111111111": {{ou: {WORKLOADS}}}}}', "accounts.111111111111: is the config's admin account"),
        (f'accounts: {{"{EXTRA}": {{state: SUSPENDED}}}}',
         f"accounts.{EXTRA}: is not an account of the config, so the scenario creates it: give it an ou"),
        (f'accounts: {{"{DEFAULT_MANAGEMENT_ACCOUNT}": {{state: SUSPENDED}}}}',
         f"accounts.{DEFAULT_MANAGEMENT_ACCOUNT}: is the management account: place it with management_account.ou"),
        (f'quotas: {{"{EXTRA}": {{lambda_concurrent_executions: 10}}}}',
         f"quotas.{EXTRA}: {EXTRA} is neither an account of the config nor one the scenario creates"),
        (f'ses: {{"{EXTRA}": {{verified: []}}}}', f"ses.{EXTRA}: {EXTRA} is neither an account of the config"),
        (f'faults: [{{stackset: rstudio-dev, account: "{EXTRA}", resource: ShinyService}}]',
         f"faults[0].account: {EXTRA} is neither an account of the config"),
        (f'management_account: {{id: "{DEV}"}}',
         f"management_account.id: {DEV} is an account the config deploys to; give the management account its own id"),
        ('management_account: {id: "111111111111"}',
         "management_account.id: 111111111111 is the config's delegated administrator, which cannot be the management "
         "account"),
    ],
)
def test_check_against_refuses_what_the_config_does_not_have(write: Any, cfg: Config, text: str,
                                                             expected: str) -> None:  # fmt: skip
    assert refused_by(write, text + "\n", cfg).startswith(expected)


def test_an_account_the_scenario_creates_may_carry_quotas_ses_and_faults(write: Any, cfg: Config) -> None:
    load(write, f"""
        accounts:
          "{EXTRA}": {{ou: {WORKLOADS}}}
        quotas:
          "{EXTRA}": {{lambda_concurrent_executions: 10}}
        ses:
          "{EXTRA}": {{verified: [dana@example.com]}}
        faults:
          - {{stackset: rstudio-bootstrap, account: "{EXTRA}", resource: DeployReaderRole}}
        """).check_against(cfg)


def test_management_id_must_be_the_admin_when_the_config_administers_as_management(
        write: Any, example_data: dict[str, Any]) -> None:  # fmt: skip
    cfg = config_with(example_data, call_as="self")
    message = refused_by(write, 'management_account: {id: "999999999998"}\n', cfg)
    assert message.startswith("management_account.id: the config administers as the management account (call_as "
                              "self), so the management account is the admin account 111111111111")  # fmt: skip


def test_the_default_management_id_must_not_collide_with_the_config(example_data: dict[str, Any]) -> None:
    example_data["instances"]["dev"]["account"] = DEFAULT_MANAGEMENT_ACCOUNT
    cfg = parse_config(example_data)
    with pytest.raises(ScenarioError) as caught:
        Scenario().check_against(cfg)
    assert str(caught.value).startswith(f"the default scenario: management_account: {DEFAULT_MANAGEMENT_ACCOUNT} is "
                                        "an account the config deploys to")  # fmt: skip


def test_a_root_id_must_match_the_configs(write: Any, example_data: dict[str, Any]) -> None:
    example_data["stacksets"]["bootstrap"]["organizational_units"] = ["r-ab12"]
    cfg = parse_config(example_data)
    load(write, f'accounts: {{"{EXTRA}": {{ou: r-ab12}}}}\n').check_against(cfg)
    message = refused_by(write, f'accounts: {{"{EXTRA}": {{ou: r-cd34}}}}\n', cfg)
    assert message.startswith(f"accounts.{EXTRA}.ou: r-cd34 is a second root id, but an organization has one root "
                              "(r-ab12 at the config's stacksets.bootstrap.organizational_units)")  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# Examples and schema


def test_there_are_the_six_examples() -> None:
    assert [path.name for path in EXAMPLES] == ["failing-create.yaml", "fresh-account.yaml", "management-in-ou.yaml",
                                                "slow-and-throttled.yaml", "suspended-account.yaml",
                                                "unverified-email.yaml"]  # fmt: skip


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_is_valid_against_the_example_config(path: Path, cfg: Config) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# yaml-language-server: $schema=./scenario.schema.json\n#\n# Rehearses ") or \
        text.startswith("# yaml-language-server: $schema=./scenario.schema.json\n#\n# The acceptance rehearsal")
    scenario = load_scenario(path)
    assert scenario.model_dump() != Scenario().model_dump()
    scenario.check_against(cfg)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_the_readme_has_a_command_per_example(path: Path) -> None:
    readme = (SCENARIOS / "README.md").read_text(encoding="utf-8")
    assert f"python deploy.py deploy --sandbox --scenario examples/scenarios/{path.name} --yes" in readme


def test_the_acceptance_scenario(cfg: Config) -> None:
    scenario = load_scenario(SCENARIOS / "slow-and-throttled.yaml")
    assert scenario.account_state(EXTRA) == "SUSPENDED"
    assert scenario.accounts[EXTRA].ou in cfg.stacksets.bootstrap.organizational_units
    assert scenario.management_account.ou in cfg.stacksets.bootstrap.organizational_units
    assert all(scenario.duration_for(name) == 2400 for name in ("rstudio-dev", "rstudio-bootstrap"))
    assert scenario.faults == (WireFault(api="describe_stack_set_operation", error="Throttling", times=20),)


def test_the_suspended_account_is_not_one_of_the_configs(cfg: Config) -> None:
    scenario = load_scenario(SCENARIOS / "suspended-account.yaml")
    suspended = [account for account, entry in scenario.accounts.items() if entry.state == "SUSPENDED"]
    ours = {cfg.accounts.central, cfg.accounts.network, cfg.accounts.data} | {i.account for i in cfg.instances.values()}
    assert suspended and not set(suspended) & ours


def test_the_unverified_example_leaves_a_prod_recipient_unverified(cfg: Config) -> None:
    verified = load_scenario(SCENARIOS / "unverified-email.yaml").verified(cfg.instances["prod"].account)
    assert verified is not None
    recipients = {user.email for user in cfg.instances["prod"].users.values()}
    assert cfg.instances["prod"].welcome_email.sender in verified
    assert recipients - verified


def test_the_committed_schema_is_current() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == schema_text(), (
        f"{SCHEMA} is stale: run `python -m stacksets.awsmodel.scenario --schema examples/scenarios/"
        "scenario.schema.json`")


def test_write_schema_and_the_command_write_the_same_text(tmp_path: Path) -> None:
    write_schema(tmp_path / "a.json")
    assert main(["--schema", str(tmp_path / "b.json")]) == 0
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text() == schema_text()
    assert schema_text().endswith("}\n")
