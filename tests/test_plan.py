"""The plan is pure data: dependency order, targets, output-fed overrides, reversal and cycles."""

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
from tests.conftest import ROOT, TEMPLATES


@pytest.fixture(scope="module")
def plan(cfg):
    return build_plan(cfg, TEMPLATES)


def test_waves_follow_the_design(plan):
    assert plan.waves() == [
        ["rstudio-bootstrap"],
        ["rstudio-central", "rstudio-data", "rstudio-dev-zone", "rstudio-prod-zone"],
        ["rstudio-dev-data", "rstudio-images", "rstudio-network", "rstudio-prod-data"],
        ["rstudio-dev", "rstudio-prod"],
    ]


def test_instance_waits_for_its_zone_the_network_its_data_and_the_images(plan):
    assert plan.nodes["rstudio-prod"].depends_on == (
        "rstudio-images", "rstudio-network", "rstudio-prod-data", "rstudio-prod-zone",
    )  # fmt: skip


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
    assert only.waves()[-2:] == [["rstudio-dev-data", "rstudio-images", "rstudio-network"], ["rstudio-dev"]]
    assert plan.only(["rstudio-network"]).images is None
    assert sorted(plan.only(["rstudio-images"]).steps()) == ["rstudio-bootstrap", "rstudio-central", "rstudio-images"]


def test_image_step_narrows_to_some_images(plan):
    assert [b.image for b in plan.images.select(["bastion", "rstudio"]).images] == ["rstudio", "bastion"]
    with pytest.raises(PlanError, match="unknown image.*bogus; the images are rstudio, shiny, bastion"):
        plan.images.select(["bogus"])


def test_without_images_keeps_the_order_between_stacksets(plan):
    stacksets = plan.without_images()
    assert stacksets.images is None and stacksets.nodes.keys() == plan.nodes.keys()
    assert stacksets.nodes["rstudio-dev"].depends_on == (
        "rstudio-central", "rstudio-dev-data", "rstudio-dev-zone", "rstudio-network",
    )  # fmt: skip


def test_network_name_servers_come_from_each_zone_stack_in_its_account(plan, cfg):
    [override] = plan.nodes["rstudio-network"].overrides
    assert (override.account, override.region) == (cfg.accounts.network, cfg.default_region)
    assert dict(override.parameters) == {
        "DevNameServers": OutputRef("rstudio-dev-zone", "NameServers", "555555555555", "eu-west-1"),
        "ProdNameServers": OutputRef("rstudio-prod-zone", "NameServers", "666666666666", "eu-west-1"),
    }


def test_every_parameter_the_network_template_declares_is_fed(plan):
    node = plan.nodes["rstudio-network"]
    fed = {key for override in node.overrides for key, _ in override.parameters}
    declared = {line.strip().rstrip(":") for line in node.template_body.split("Resources:")[0].splitlines()
                if line.startswith("  ") and not line.startswith("   ") and line.strip().endswith("NameServers:")}
    assert declared and fed == declared


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
    assert not plan.nodes["rstudio-network"].needs_s3


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
    assert sorted(plan.only(["rstudio-network"]).nodes) == [
        "rstudio-bootstrap", "rstudio-dev-zone", "rstudio-network", "rstudio-prod-zone",
    ]  # fmt: skip
    assert sorted(plan.only(["rstudio-network"], with_dependencies=False).nodes) == ["rstudio-network"]
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


def test_urgency_puts_what_most_steps_wait_for_first(cfg):
    plan = build_plan(cfg, TEMPLATES)
    urgency = plan.urgency()
    ranked = sorted(urgency, key=lambda name: (-urgency[name][0], -urgency[name][1], name))
    assert ranked[:2] == ["rstudio-bootstrap", "rstudio-data"]  # the longest chains start there
    assert urgency["rstudio-bootstrap"] == (4, len(plan.steps()) - 1)  # everything waits for it
    assert urgency["rstudio-dev"] == (1, 0)


def test_destroy_only_takes_what_depends_on_the_stackset_never_what_it_depends_on(plan):
    zone = plan.with_dependents(["rstudio-dev-zone"])
    assert sorted(zone.nodes) == ["rstudio-dev", "rstudio-dev-zone", "rstudio-network", "rstudio-prod"]
    assert sorted(plan.with_dependents(["rstudio-dev"]).nodes) == ["rstudio-dev"]
    assert zone.images is None
