"""The image step on the AWS model: only missing tags are uploaded and built, builds run side by side, a failed build
names itself and stops the instances, and a re-run builds nothing.

The model's CodeBuild runs the image project rstudio-central created, in simulated time, and fails a build whose
uploaded context does not hash to its tag, as the buildspec does; ECR holds the tags a build pushed.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace

import pytest

from stacksets.awsmodel.model import AwsModel
from stacksets.build_context import zip_context
from stacksets.config import Config
from stacksets.executor import ImageDiff, Report, State
from stacksets.plan import ImageBuild, Plan, build_plan
from tests.awsmodel_helpers import copy_model, executor_for, live_stackset, model_for, scenario
from tests.conftest import TEMPLATES

CENTRAL, REGION = "222222222222", "eu-west-1"
BUCKET = f"rstudio-image-builds-{CENTRAL}-{REGION}"
BUILD_S = 30  # each build takes 30 simulated seconds: IN_PROGRESS at the polls at 0, 5 and 15 s of poll_s=5


@pytest.fixture(scope="module")
def plan(cfg: Config) -> Plan:
    return build_plan(cfg, TEMPLATES)


@pytest.fixture
def builds(plan: Plan) -> dict[str, ImageBuild]:
    assert plan.images is not None
    return {build.image: build for build in plan.images.images}


@pytest.fixture(scope="module")
def central_deployed(cfg: Config, plan: Plan, tmp_path_factory: pytest.TempPathFactory) -> AwsModel:
    """rstudio-central (and the bootstrap) deployed, no image built yet. Copy it (`central`), never change it."""
    model = model_for(cfg, scenario(durations={"default": 60, "rstudio-images": BUILD_S}))
    report = executor_for(model, cfg, tmp_path_factory.mktemp("central")).deploy(plan.only(["rstudio-central"]))
    assert report.ok, {name: result.message for name, result in report.results.items()}
    return model


@pytest.fixture(scope="module")
def rolled_out(cfg: Config, plan: Plan, tmp_path_factory: pytest.TempPathFactory) -> tuple[AwsModel, Report]:
    """The whole plan deployed from scratch, images included. Copy it for anything that goes on from there."""
    model = model_for(cfg, scenario(durations={"default": 60, "rstudio-images": BUILD_S}))
    return model, executor_for(model, cfg, tmp_path_factory.mktemp("rollout")).deploy(plan)


@pytest.fixture
def central(central_deployed: AwsModel) -> AwsModel:
    return copy_model(central_deployed)


def images_only(plan: Plan) -> Plan:
    """The image step alone, for a model where rstudio-central is already deployed."""
    return plan.only(["rstudio-images"], with_dependencies=False)


def tags(model: AwsModel, image: str) -> set[str]:
    return model.world.images.tags.get((CENTRAL, REGION, image), set())


def push(model: AwsModel, image: str, tag: str) -> None:
    """A tag an earlier run (or a colleague) already pushed."""
    model.world.images.tags.setdefault((CENTRAL, REGION, image), set()).add(tag)


def delete_repository_by_hand(model: AwsModel, image: str) -> None:
    """Someone deleted the ECR repository outside CloudFormation: the central stack still lists it, ECR has none."""
    stack = live_stackset(model, "rstudio-central").instances[(CENTRAL, REGION)].stack
    logical_id = next(lid for lid, resource in stack.resources.items()
                      if resource.resource_type == "AWS::ECR::Repository" and image in (resource.name,
                                                                                         resource.physical_id))
    del stack.resources[logical_id]  # fmt: skip


def uploaded(model: AwsModel) -> dict[str, bytes]:
    return model.world.s3.buckets[BUCKET].objects


def started_images(model: AwsModel) -> list[str]:
    return [next(v["value"] for v in kw["environmentVariablesOverride"] if v["name"] == "IMAGE_NAME")
            for kw in model.calls_for("start_build")]  # fmt: skip


def test_missing_tags_are_uploaded_and_built_present_ones_are_not_touched(central, cfg, plan, builds, tmp_path):
    push(central, "shiny", builds["shiny"].tag)
    report = executor_for(central, cfg, tmp_path).deploy(images_only(plan))

    assert report.ok, {name: result.message for name, result in report.results.items()}
    assert started_images(central) == ["rstudio", "bastion"]
    assert sorted(uploaded(central)) == [builds["bastion"].key, builds["rstudio"].key]
    assert tags(central, "rstudio") == {builds["rstudio"].tag} and tags(central, "bastion") == {builds["bastion"].tag}
    start = central.calls_for("start_build")[0]
    assert start["projectName"] == "rstudio-images"
    assert start["environmentVariablesOverride"] == [
        {"name": "IMAGE_NAME", "value": "rstudio", "type": "PLAINTEXT"},
        {"name": "IMAGE_TAG", "value": builds["rstudio"].tag, "type": "PLAINTEXT"},
    ]
    images = report.results["rstudio-images"]
    assert images.state is State.SUCCEEDED and images.message == "built rstudio, bastion"
    assert [(o.image, o.outcome) for o in images.images] == [("shiny", "present"), ("rstudio", "built"),
                                                            ("bastion", "built")]  # fmt: skip
    assert all(o.seconds > 0 and o.build_id.startswith("rstudio-images:") for o in images.images[1:])
    assert report.calls["put_object"] == 2 and report.calls["start_build"] == 2


def test_a_first_rollout_builds_every_image_before_the_instances(rolled_out, builds):
    model, report = rolled_out

    assert report.ok, {name: result.message for name, result in report.results.items()}
    assert sorted(started_images(model)) == ["bastion", "rstudio", "shiny"]
    assert all(tags(model, image) == {build.tag} for image, build in builds.items())
    built = max(entry.end for entry in report.timeline if entry.operation.startswith("build "))
    assert built <= min(entry.start for entry in report.timeline if entry.stackset in ("rstudio-dev", "rstudio-prod"))
    assert report.results["rstudio-dev"].state is State.SUCCEEDED


def test_uploaded_bytes_are_the_zip_of_the_committed_files_with_their_execute_bits(central, cfg, plan, builds,
                                                                                 tmp_path):  # fmt: skip
    executor_for(central, cfg, tmp_path).deploy(images_only(plan))

    rstudio = builds["rstudio"]
    archive = uploaded(central)[rstudio.key]
    assert archive == zip_context(rstudio.files, frozenset({"cont-init.d/00_rstudio_users"}))
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        assert {info.filename: zipped.read(info) for info in zipped.infolist()} == dict(rstudio.files)
        mode = zipped.getinfo("cont-init.d/00_rstudio_users").external_attr >> 16
    assert mode & 0o111


def test_builds_run_side_by_side_and_polling_follows_the_options(central, cfg, plan, tmp_path):
    report = executor_for(central, cfg, tmp_path, poll_s=5).deploy(images_only(plan))

    assert report.ok
    apis = [call.api for call in central.log if call.api in ("start_build", "batch_get_builds")]
    assert apis[:3] == ["start_build"] * 3  # every build started before the first poll
    assert apis.count("batch_get_builds") == 4  # three polls IN_PROGRESS (0, 5, 15 s), then all three done (30 s)
    assert central.clock.sleeps[-3:] == [5, 10, 15]  # doubling, capped at 15 s with few waits in flight
    assert [kw["ids"] for kw in central.calls_for("batch_get_builds")][0] == list(central.world.images.builds)


def test_second_deploy_builds_nothing_and_makes_no_write_call(rolled_out, cfg, plan, tmp_path):
    model = copy_model(rolled_out[0])
    again = executor_for(model, cfg, tmp_path)
    diffs = again.diff(plan)
    [images] = [d for d in diffs if isinstance(d, ImageDiff)]
    assert not images.changed and [image for image, _ in images.present] == ["rstudio", "shiny", "bastion"]
    report = again.deploy(plan)

    assert report.ok and sum(report.calls.values()) == 0 and model.mutating_calls() == {}
    assert report.results["rstudio-images"].state is State.UNCHANGED
    assert report.results["rstudio-images"].message.startswith("images up to date: rstudio ctx-")


def test_a_failed_build_names_image_build_phase_and_log_and_skips_the_instances(cfg, plan, builds, tmp_path):
    # the model's builds fail only where the buildspec's own check does: a context that does not hash to its tag
    model = model_for(cfg, scenario(durations={"default": 60, "rstudio-images": BUILD_S}))
    rstudio = builds["rstudio"]
    broken = ImageBuild("rstudio", rstudio.tag, {**rstudio.files, "extra": b"not reviewed"}, rstudio.executables)
    step = plan.images
    assert step is not None
    others = tuple(build for build in step.images if build.image != "rstudio")
    report = executor_for(model, cfg, tmp_path).deploy(Plan(plan.nodes, replace(step, images=(broken, *others))))

    images = report.results["rstudio-images"]
    assert images.state is State.FAILED
    [build_id] = [b.id for b in model.world.images.builds.values() if b.image == "rstudio"]
    reason = f"{rstudio.key} does not hash to {rstudio.tag}"
    assert images.message == (
        f"rstudio {rstudio.tag}: build {build_id} failed in phase PRE_BUILD: {reason} (log: "
        f"https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logEvent:group=/rstudio/central/"
        f"image-build;stream={build_id.split(':', 1)[1]})"
    )
    [failure] = images.failures
    assert failure.reason == f"last lines of the log of {build_id}"
    assert failure.events[-2:] == ("[Container] Phase PRE_BUILD FAILED", reason)
    assert report.results["rstudio-dev"].state is State.SKIPPED
    assert report.results["rstudio-dev"].message == "dependency rstudio-images failed"
    assert report.results["rstudio-prod"].state is State.SKIPPED
    assert live_stackset(model, "rstudio-dev") is None
    # the other images were built all the same: the next run only retries rstudio
    assert tags(model, "shiny") == {builds["shiny"].tag} and not tags(model, "rstudio")
    # and what the instances need besides the images stands
    for name in ("rstudio-dev-delegation", "rstudio-dev-storage", "rstudio-logs"):
        assert report.results[name].state is State.SUCCEEDED, name


def test_a_context_that_does_not_hash_to_its_tag_fails_in_codebuild(central, cfg, plan, builds, tmp_path):
    step = plan.images
    assert step is not None
    bastion = builds["bastion"]
    tampered = ImageBuild("bastion", bastion.tag, {**bastion.files, "extra": b"not reviewed"}, bastion.executables)
    report = executor_for(central, cfg, tmp_path).deploy(Plan({}, replace(step, images=(tampered,))))

    assert "failed in phase PRE_BUILD" in report.results["rstudio-images"].message
    assert f"does not hash to {bastion.tag}" in report.results["rstudio-images"].message
    assert not tags(central, "bastion")


def test_missing_repository_says_to_deploy_central(central, cfg, plan, tmp_path):
    delete_repository_by_hand(central, "bastion")
    report = executor_for(central, cfg, tmp_path).deploy(images_only(plan))

    images = report.results["rstudio-images"]
    assert images.state is State.FAILED
    assert images.message == (f"ECR repository bastion does not exist in {CENTRAL}/{REGION}: "
                              "deploy rstudio-central first")  # fmt: skip
    assert central.calls["start_build"] == 0


def test_plan_lists_missing_tags_and_notes_missing_repositories(central, cfg, plan, builds, tmp_path):
    push(central, "shiny", builds["shiny"].tag)
    delete_repository_by_hand(central, "bastion")
    [diff] = [d for d in executor_for(central, cfg, tmp_path).diff(plan) if isinstance(d, ImageDiff)]

    assert diff.changed
    assert diff.missing == (("rstudio", builds["rstudio"].tag), ("bastion", builds["bastion"].tag))
    assert diff.present == (("shiny", builds["shiny"].tag),)
    assert diff.warnings == ("bastion: no ECR repository bastion yet (rstudio-central creates it)",)
    assert central.mutating_calls() == {}


def test_status_shows_whether_each_tag_is_in_ecr(central, cfg, plan, builds, tmp_path):
    push(central, "rstudio", builds["rstudio"].tag)
    rows = [row for row in executor_for(central, cfg, tmp_path).status(plan) if row.stackset == "rstudio-images"]

    assert [(r.detailed_status, r.status, r.reason, r.account) for r in rows] == [
        ("rstudio", "PRESENT", builds["rstudio"].tag, CENTRAL),
        ("shiny", "MISSING", builds["shiny"].tag, CENTRAL),
        ("bastion", "MISSING", builds["bastion"].tag, CENTRAL),
    ]


def test_builds_past_the_deadline_are_waited_for_by_the_next_run(central, cfg, plan, tmp_path):
    central.world.scenario = central.world.scenario.model_copy(update={"durations": {"rstudio-images": 1000}})
    first = executor_for(central, cfg, tmp_path, timeout_s=300).deploy(images_only(plan))

    message = first.results["rstudio-images"].message
    assert first.results["rstudio-images"].state is State.FAILED and "300 s time limit" in message
    recorded = json.loads((tmp_path / "state.json").read_text())["operations"]
    assert sorted(entry["operation_id"] for entry in recorded.values()) == sorted(central.world.images.builds)

    again = executor_for(central, cfg, tmp_path).deploy(images_only(plan))  # CodeBuild goes on meanwhile

    assert again.ok and central.calls["start_build"] == 3  # reattached: no second build of any tag
    assert central.clock() >= 1000
    assert json.loads((tmp_path / "state.json").read_text())["operations"] == {}


def test_destroy_and_drift_leave_the_images_alone(rolled_out, cfg, plan, builds, tmp_path):
    model = copy_model(rolled_out[0])
    destroyed = executor_for(model, cfg, tmp_path).destroy(plan)
    drift = executor_for(model, cfg, tmp_path).drift(plan)

    assert "rstudio-images" not in destroyed.results and "rstudio-images" not in drift.results
    assert model.calls["describe_images"] == 0 and model.calls["start_build"] == 0
    assert all(tags(model, image) == {build.tag} for image, build in builds.items())


def test_before_central_exists_plan_counts_every_image_missing_and_status_says_unknown(cfg, plan, tmp_path):
    model = model_for(cfg)  # nothing deployed: the publisher role rstudio-central creates does not exist yet
    [diff] = [d for d in executor_for(model, cfg, tmp_path).diff(plan) if isinstance(d, ImageDiff)]
    assert [image for image, _ in diff.missing] == ["rstudio", "shiny", "bastion"]
    [warning] = diff.warnings
    assert warning.startswith("cannot look into ECR yet, so every image counts as missing: cannot assume "
                              f"arn:aws:iam::{CENTRAL}:role/rstudio-image-publisher: ")  # fmt: skip
    assert "AccessDenied" in warning and warning.endswith("is the rstudio-central StackSet deployed?")
    rows = [row for row in executor_for(model, cfg, tmp_path).status(plan) if row.stackset == "rstudio-images"]
    assert {row.status for row in rows} == {"UNKNOWN"} and all("AccessDenied" in row.reason for row in rows)

    report = executor_for(model, cfg, tmp_path).deploy(images_only(plan))
    assert report.results["rstudio-images"].state is State.FAILED
    assert "is the rstudio-central StackSet deployed?" in report.results["rstudio-images"].message
    assert model.mutating_calls() == {}
