"""The plan is pure data: dependency order, targets, output-fed parameters, reversal, what destroy keeps, and
cycles."""

from __future__ import annotations

import io
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from stacksets.build_context import context_tag, read_context, zip_context
from stacksets.config import parse_config
from stacksets.plan import ImageStep, OutputRef, PlanError, build_plan, operation_preferences
from stacksets.retire import retired_plan
from tests.conftest import ROOT, TEMPLATES


@pytest.fixture(scope="module")
def plan(cfg):
    return build_plan(cfg, TEMPLATES)


def test_waves_follow_the_design(plan):
    assert plan.waves() == [
        ["rstudio-bootstrap"],
        ["rstudio-central", "rstudio-data", "rstudio-dev-storage", "rstudio-dev-zone", "rstudio-logs",
         "rstudio-prod-storage", "rstudio-prod-zone"],
        ["rstudio-dev-data", "rstudio-dev-delegation", "rstudio-images", "rstudio-prod-data",
         "rstudio-prod-delegation"],
        ["rstudio-dev", "rstudio-prod"],
    ]  # fmt: skip


def test_instance_waits_for_its_zone_delegation_data_storage_the_logs_policy_and_the_images(plan):
    assert plan.nodes["rstudio-prod"].depends_on == (
        "rstudio-images", "rstudio-logs", "rstudio-prod-data", "rstudio-prod-delegation", "rstudio-prod-storage",
        "rstudio-prod-zone",
    )  # fmt: skip
    assert plan.nodes["rstudio-prod-delegation"].depends_on == ("rstudio-prod-zone",)
    assert plan.nodes["rstudio-prod-storage"].depends_on == ("rstudio-bootstrap",)
    assert plan.nodes["rstudio-logs"].depends_on == ("rstudio-bootstrap",)


def test_placement_of_the_per_instance_and_logs_stacksets(plan, cfg):
    for instance, account in (("dev", "555555555555"), ("prod", "666666666666")):
        for name in (f"rstudio-{instance}-zone", f"rstudio-{instance}-storage", f"rstudio-{instance}"):
            assert plan.nodes[name].targets.accounts == (account,), name
            assert plan.nodes[name].targets.regions == (cfg.region_of(instance),), name
        delegation = plan.nodes[f"rstudio-{instance}-delegation"].targets
        assert (delegation.accounts, delegation.regions) == ((cfg.accounts.network,), (cfg.default_region,))
        data = plan.nodes[f"rstudio-{instance}-data"].targets
        assert (data.accounts, data.regions) == ((cfg.accounts.data,), (cfg.default_region,))
    logs = plan.nodes["rstudio-logs"].targets
    assert logs.accounts == ("555555555555", "666666666666") and logs.regions == ("eu-west-1",)


def test_image_step_sits_between_central_and_every_instance(plan, cfg):
    step = plan.images
    assert isinstance(step, ImageStep) and step.name == "rstudio-images"
    assert "rstudio-images" not in plan.nodes  # not a StackSet
    assert step.depends_on == ("rstudio-central",)
    assert plan.dependents("rstudio-images") == ["rstudio-dev", "rstudio-prod"]
    assert plan.dependents("rstudio-central") == ["rstudio-images"]
    assert (step.account, step.region) == (cfg.accounts.central, cfg.default_region)
    assert step.bucket == f"rstudio-image-builds-{cfg.accounts.central}-{cfg.default_region}"


def test_image_step_holds_every_committed_context_and_its_tag(plan):
    builds = {build.image: build for build in plan.images.images}
    assert list(builds) == ["rstudio", "shiny", "bastion"]
    for image, build in builds.items():
        files = read_context(ROOT / "container" / image)
        assert build.files == files and build.tag == context_tag(files)
        assert build.key == f"contexts/{image}/{build.tag}.zip"
        for instance in ("rstudio-dev", "rstudio-prod"):  # what the instances pin, where they run the image
            body = plan.nodes[instance].template_body
            assert f"/{image}:ctx-" not in body or f"/{image}:{build.tag}'" in body
    rstudio = builds["rstudio"]
    assert rstudio.executables == {"cont-init.d/00_rstudio_users"} and builds["bastion"].executables == {"start.sh"}
    archive = rstudio.archive()
    assert archive == zip_context(rstudio.files, rstudio.executables)
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        modes = {info.filename: (info.external_attr >> 16) & 0o777 for info in zipped.infolist()}
    assert modes["cont-init.d/00_rstudio_users"] == 0o755 and modes["Dockerfile"] == 0o644


@pytest.fixture
def container(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "container", tmp_path / "container")
    return tmp_path / "container"


def test_a_context_that_differs_from_the_pinned_tag_says_to_render(cfg, container):
    dockerfile = container / "rstudio" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "# changed\n")
    with pytest.raises(PlanError) as error:
        build_plan(cfg, TEMPLATES, container)
    message = str(error.value)
    assert message.startswith(f"{container}/rstudio/ does not match the image tag in {TEMPLATES}/rstudio-dev.yaml")
    assert message.endswith("run `python deploy.py render` and commit")
    assert context_tag(read_context(container / "rstudio")) in message  # what the context hashes to now


def test_a_template_pinning_another_tag_is_refused(cfg, container, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    prod = templates / "rstudio-prod.yaml"
    shiny = context_tag(read_context(container / "shiny"))
    prod.write_text(prod.read_text().replace(f"/shiny:{shiny}", "/shiny:ctx-00000000000000000000"))
    with pytest.raises(PlanError, match=r"container/shiny/ does not match the image tag in .*rstudio-prod\.yaml"):
        build_plan(cfg, templates, container)


def test_a_missing_build_context_is_named(cfg, container):
    shutil.rmtree(container / "bastion")
    with pytest.raises(PlanError, match=r"container/bastion/: build context .* does not exist"):
        build_plan(cfg, TEMPLATES, container)


def test_only_an_instance_pulls_in_the_image_step_and_central(plan):
    only = plan.only(["rstudio-dev"])
    assert only.images == plan.images
    assert {"rstudio-central", "rstudio-bootstrap"} <= set(only.nodes)
    assert only.waves()[-2:] == [["rstudio-dev-data", "rstudio-dev-delegation", "rstudio-images"], ["rstudio-dev"]]
    assert not {name for name in only.nodes if name.startswith("rstudio-prod")}  # nothing of the other instance
    assert plan.only(["rstudio-dev-delegation"]).images is None
    assert sorted(plan.only(["rstudio-images"]).steps()) == ["rstudio-bootstrap", "rstudio-central", "rstudio-images"]


def test_image_step_narrows_to_some_images(plan):
    assert [b.image for b in plan.images.select(["bastion", "rstudio"]).images] == ["rstudio", "bastion"]
    with pytest.raises(PlanError, match="unknown image.*bogus; the images are rstudio, shiny, bastion"):
        plan.images.select(["bogus"])


def test_without_images_keeps_the_order_between_stacksets(plan):
    stacksets = plan.without_images()
    assert stacksets.images is None and stacksets.nodes.keys() == plan.nodes.keys()
    assert stacksets.nodes["rstudio-dev"].depends_on == (
        "rstudio-central", "rstudio-dev-data", "rstudio-dev-delegation", "rstudio-dev-storage", "rstudio-dev-zone",
        "rstudio-logs",
    )  # fmt: skip


def test_each_delegation_takes_the_name_servers_of_its_zone_stack_in_its_account(plan, cfg):
    for instance, account in (("dev", "555555555555"), ("prod", "666666666666")):
        node = plan.nodes[f"rstudio-{instance}-delegation"]
        assert node.overrides == ()
        assert dict(node.parameters) == {
            "NameServers": OutputRef(f"rstudio-{instance}-zone", "NameServers", account, cfg.region_of(instance))}


def test_the_compute_takes_the_storage_outputs_of_its_instance(plan, cfg):
    for instance, account, bastion in (("dev", "555555555555", False), ("prod", "666666666666", True)):
        storage = f"rstudio-{instance}-storage"
        outputs = ["InstanceKeyArn", "FileSystemId", "PasswordSecretArns", "CookieKeySecretArns"] + \
            (["BastionKeySecretArn"] if bastion else [])  # fmt: skip
        assert cfg.instances[instance].bastion.enabled is bastion
        assert dict(plan.nodes[f"rstudio-{instance}"].parameters) == {
            output: OutputRef(storage, output, account, cfg.region_of(instance)) for output in outputs}


@pytest.mark.parametrize("name", ["rstudio-dev-delegation", "rstudio-prod-delegation", "rstudio-dev", "rstudio-prod"])
def test_every_parameter_a_template_declares_without_a_default_is_fed(plan, name):
    node = plan.nodes[name]
    fed = {key for key, _ in node.parameters} | {key for override in node.overrides for key, _ in override.parameters}
    required = {key for key, declared in node.declared if declared.default is None}
    assert required and fed == required


def test_destroy_keeps_what_holds_data_and_what_it_stands_on(plan):
    data = {name for name, node in plan.nodes.items() if node.keeps_data}
    assert data == {"rstudio-central", "rstudio-data", "rstudio-dev-zone", "rstudio-prod-zone", "rstudio-dev-data",
                    "rstudio-prod-data", "rstudio-dev-storage", "rstudio-prod-storage"}  # fmt: skip
    compute = plan.compute()
    assert sorted(compute.nodes) == ["rstudio-dev", "rstudio-dev-delegation", "rstudio-logs", "rstudio-prod",
                                     "rstudio-prod-delegation"]  # fmt: skip
    assert plan.kept() == sorted(data | {"rstudio-bootstrap"})  # the storage StackSets stand on the bootstrap
    assert set(compute.nodes) | set(plan.kept()) == set(plan.nodes)
    assert compute.reversed().waves() == [["rstudio-dev", "rstudio-prod"],
                                          ["rstudio-dev-delegation", "rstudio-logs", "rstudio-prod-delegation"]]


def test_compute_of_a_narrowed_plan_keeps_what_holds_data(plan):
    """destroy --only: the narrowed plan lacks what its steps stand on (the bootstrap), which is not for it to keep."""
    storage = plan.with_dependents(["rstudio-dev-storage"])
    assert sorted(storage.compute().nodes) == ["rstudio-dev"] and storage.kept() == ["rstudio-dev-storage"]
    zone = plan.with_dependents(["rstudio-dev-zone"])
    assert sorted(zone.compute().nodes) == ["rstudio-dev", "rstudio-dev-delegation"]
    assert zone.kept() == ["rstudio-dev-zone"]
    assert plan.with_dependents(["rstudio-dev"]).kept() == []


def test_service_managed_targets_filter_the_bootstrap_ous_down_to_one_account(plan, cfg):
    bootstrap = plan.nodes["rstudio-bootstrap"]
    assert bootstrap.targets.organizational_units == cfg.stacksets.bootstrap.organizational_units
    assert bootstrap.targets.accounts == () and bootstrap.auto_deployment
    data = plan.nodes["rstudio-prod-data"]
    assert data.targets.accounts == (cfg.accounts.data,)
    assert data.targets.organizational_units == cfg.stacksets.bootstrap.organizational_units
    assert data.call_as is not None and data.call_as.value == "delegated_admin"


def test_self_managed_bootstrap_targets_every_account_the_config_names(example_data):
    example_data["stacksets"] = {"permission_model": "self_managed", "bootstrap": {"accounts": ["777777777777"]}}
    plan = build_plan(parse_config(example_data), TEMPLATES)
    bootstrap = plan.nodes["rstudio-bootstrap"]
    assert bootstrap.targets.accounts == (
        "222222222222", "333333333333", "444444444444", "555555555555", "666666666666", "777777777777",
    )  # fmt: skip
    assert bootstrap.targets.organizational_units == () and not bootstrap.auto_deployment
    assert plan.nodes["rstudio-central"].call_as is None


def test_large_templates_are_marked_for_s3(plan):
    assert plan.nodes["rstudio-prod"].needs_s3
    assert not plan.nodes["rstudio-prod-delegation"].needs_s3


def test_template_hash_is_the_committed_bytes(plan):
    import hashlib

    node = plan.nodes["rstudio-central"]
    assert node.template_sha256 == hashlib.sha256((TEMPLATES / node.template_file).read_bytes()).hexdigest()


def test_reversed_plan_destroys_instances_first(plan):
    assert plan.reversed().waves()[0] == ["rstudio-dev", "rstudio-prod"]
    assert plan.reversed().waves()[-1] == ["rstudio-bootstrap"]


def test_reversed_plan_skips_the_image_step_but_central_still_waits_for_the_instances(plan):
    reverse = plan.reversed()
    assert reverse.images is None and "rstudio-images" not in reverse.steps()
    assert reverse.nodes["rstudio-central"].depends_on == ("rstudio-dev", "rstudio-prod")


def test_only_pulls_in_dependencies(plan):
    assert sorted(plan.only(["rstudio-dev-delegation"]).nodes) == [
        "rstudio-bootstrap", "rstudio-dev-delegation", "rstudio-dev-zone",
    ]  # fmt: skip
    assert sorted(plan.only(["rstudio-dev-delegation"], with_dependencies=False).nodes) == ["rstudio-dev-delegation"]
    with pytest.raises(PlanError, match="unknown StackSet"):
        plan.only(["rstudio-nope"])


def test_a_cycle_is_named(plan):
    bootstrap = replace(plan.nodes["rstudio-bootstrap"], depends_on=("rstudio-prod",))
    cyclic = replace(plan, nodes={**plan.nodes, "rstudio-bootstrap": bootstrap})
    with pytest.raises(PlanError, match="cycle: .*rstudio-bootstrap"):
        cyclic.waves()


def test_missing_template_says_to_render(cfg, tmp_path):
    with pytest.raises(PlanError, match="run `python deploy.py render`"):
        build_plan(cfg, tmp_path)


def test_operation_preferences_follow_the_rollout(cfg):
    assert operation_preferences(cfg.stacksets.rollout, ("eu-west-1",)) == {
        "RegionConcurrencyType": "PARALLEL", "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE",
        "MaxConcurrentPercentage": 25, "FailureTolerancePercentage": 10,
    }  # fmt: skip
    assert operation_preferences(cfg.stacksets.rollout, ("us-east-1", "eu-west-1"))["RegionOrder"] == [
        "us-east-1", "eu-west-1",
    ]  # fmt: skip


def test_each_stackset_gets_its_kind_and_name_overrides_over_the_default(example_data):
    example_data["stacksets"]["rollout"]["overrides"] = {
        "bootstrap": {"max_concurrent_count": 50, "failure_tolerance_count": 5},
        "compute": {"region_concurrency": "sequential", "failure_tolerance_percentage": 0},
        "rstudio-prod": {"concurrency_mode": "strict_failure_tolerance", "max_concurrent_count": 1},
    }
    cfg = parse_config(example_data)
    nodes = build_plan(cfg, TEMPLATES).nodes
    default = {"RegionConcurrencyType": "PARALLEL", "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE",
               "MaxConcurrentPercentage": 25, "FailureTolerancePercentage": 10}  # fmt: skip
    # A count replaces the default's percentage of the same setting; the settings an override leaves out stay.
    assert nodes["rstudio-bootstrap"].operation_preferences == {
        "RegionConcurrencyType": "PARALLEL", "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE",
        "MaxConcurrentCount": 50, "FailureToleranceCount": 5,
    }  # fmt: skip
    assert nodes["rstudio-dev"].operation_preferences == {
        **default, "RegionConcurrencyType": "SEQUENTIAL", "FailureTolerancePercentage": 0}
    assert nodes["rstudio-prod"].operation_preferences == {
        "RegionConcurrencyType": "SEQUENTIAL", "ConcurrencyMode": "STRICT_FAILURE_TOLERANCE",
        "MaxConcurrentCount": 1, "FailureTolerancePercentage": 0,
    }  # fmt: skip
    untouched = set(nodes) - {"rstudio-bootstrap", "rstudio-dev", "rstudio-prod"}
    assert untouched and all(
        nodes[name].operation_preferences == operation_preferences(cfg.stacksets.rollout, nodes[name].targets.regions)
        for name in untouched)


def test_retired_stacksets_are_deleted_with_their_kinds_preferences_not_the_bootstraps(example_data):
    example_data["stacksets"]["rollout"]["overrides"] = {
        "bootstrap": {"max_concurrent_count": 50}, "compute": {"region_concurrency": "sequential"}}
    cfg = parse_config(example_data)
    body = "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n"
    retired = retired_plan(build_plan(cfg, TEMPLATES), {"rstudio-qa": body, "rstudio-qa-delegation": body}).nodes
    assert retired["rstudio-qa"].operation_preferences == operation_preferences(cfg.rollout_for("rstudio-dev"), ())
    assert retired["rstudio-qa"].operation_preferences["RegionConcurrencyType"] == "SEQUENTIAL"
    assert retired["rstudio-qa-delegation"].operation_preferences == operation_preferences(cfg.stacksets.rollout, ())


def test_urgency_puts_what_most_steps_wait_for_first(cfg):
    plan = build_plan(cfg, TEMPLATES)
    urgency = plan.urgency()
    ranked = sorted(urgency, key=lambda name: (-urgency[name][0], -urgency[name][1], name))
    assert ranked[:2] == ["rstudio-bootstrap", "rstudio-data"]  # the longest chains start there
    assert urgency["rstudio-bootstrap"] == (4, len(plan.steps()) - 1)  # everything waits for it
    assert urgency["rstudio-dev"] == (1, 0)


def test_destroy_only_takes_what_depends_on_the_stackset_never_what_it_depends_on(plan):
    zone = plan.with_dependents(["rstudio-dev-zone"])
    assert sorted(zone.nodes) == ["rstudio-dev", "rstudio-dev-delegation", "rstudio-dev-zone"]  # not prod
    assert sorted(plan.with_dependents(["rstudio-dev"]).nodes) == ["rstudio-dev"]
    assert zone.images is None
