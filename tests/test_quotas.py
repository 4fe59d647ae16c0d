from __future__ import annotations

from pathlib import Path

from stacksets import naming
from stacksets.awsmodel.scenario import Limits, load_scenario
from stacksets.config import Config
from stacksets.quotas import quota_warnings


def test_the_example_config_is_far_below_the_default_quotas(cfg: Config) -> None:
    names = naming.all_stackset_names(sorted(cfg.instances))
    assert len(names) == 14  # 4 shared StackSets + 5 per instance (dev, prod)
    assert quota_warnings(len(names), {name: 1 for name in names}) == []


def test_stacksets_below_ninety_percent_of_the_quota_are_quiet() -> None:
    assert quota_warnings(899, {}) == []  # 899 / 1000 < 90 %


def test_stacksets_at_ninety_percent_of_the_quota_warn() -> None:
    assert quota_warnings(900, {}) == [
        "StackSets in the administrator account: 900 is within 10 % of the quota 'Stack sets per administrator "
        "account' (1000); request an increase in the Service Quotas console (service AWS CloudFormation) before "
        "deploying"
    ]


def test_stacksets_at_the_quota_are_still_within_it() -> None:
    [warning] = quota_warnings(1000, {})
    assert "1000 is within 10 % of the quota 'Stack sets per administrator account' (1000)" in warning


def test_stacksets_over_the_quota_exceed_it() -> None:
    [warning] = quota_warnings(1001, {})
    assert "1001 exceeds the quota 'Stack sets per administrator account' (1000)" in warning


def test_instances_per_stackset_against_the_default_quota() -> None:
    assert quota_warnings(10, {"rstudio-bootstrap": 89_999}) == []
    [warning] = quota_warnings(10, {"rstudio-bootstrap": 100_001})
    assert warning == (
        "stack instances of rstudio-bootstrap: 100001 exceeds the quota 'Stack instances per stack set' (100000); "
        "request an increase in the Service Quotas console (service AWS CloudFormation) before deploying"
    )


def test_each_stackset_over_its_instance_quota_warns_in_name_order() -> None:
    limits = Limits(stack_instances_per_stack_set=20)
    warnings = quota_warnings(3, {"rstudio-zeta": 21, "rstudio-alpha": 18, "rstudio-mid": 17}, limits)
    # 17 * 10 = 170 < 20 * 9 = 180: quiet; 18 -> 180: within; 21 > 20: exceeds.
    assert warnings == [
        "stack instances of rstudio-alpha: 18 is within 10 % of the quota 'Stack instances per stack set' (20); "
        "request an increase in the Service Quotas console (service AWS CloudFormation) before deploying",
        "stack instances of rstudio-zeta: 21 exceeds the quota 'Stack instances per stack set' (20); "
        "request an increase in the Service Quotas console (service AWS CloudFormation) before deploying",
    ]


def test_both_quotas_warn_together() -> None:
    limits = Limits(stack_sets_per_administrator=10, stack_instances_per_stack_set=5)
    warnings = quota_warnings(12, {"rstudio-bootstrap": 6}, limits)
    assert [w.split(":")[0] for w in warnings] == ["StackSets in the administrator account",
                                                   "stack instances of rstudio-bootstrap"]  # fmt: skip


def test_a_scenario_that_raises_the_quota_silences_the_warning(tmp_path: Path) -> None:
    path = tmp_path / "raised.yaml"
    path.write_text("limits: {stack_sets_per_administrator: 2000}\n", encoding="utf-8")
    limits = load_scenario(path).limits
    assert quota_warnings(1001, {}, limits) == []  # 1001 * 10 < 2000 * 9
    assert len(quota_warnings(1800, {}, limits)) == 1
