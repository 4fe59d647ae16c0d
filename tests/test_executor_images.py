"""The image step against the fake: only missing tags are uploaded and built, builds run side by side, a failed build
names itself and stops the instances, and a re-run builds nothing. Time is the fake's clock: nothing really waits."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace

import pytest

from stacksets.aws import AwsError
from stacksets.build_context import zip_context
from stacksets.config import Config
from stacksets.executor import ImageDiff, State
from stacksets.plan import ImageBuild, Plan, build_plan
from tests.conftest import TEMPLATES
from tests.fake_aws import FakeAws, FakeClock
from tests.test_executor import ORGANIZATION, executor

CENTRAL, REGION = "222222222222", "eu-west-1"
BUCKET = f"rstudio-image-builds-{CENTRAL}-{REGION}"


@pytest.fixture
def plan(cfg: Config) -> Plan:
    return build_plan(cfg, TEMPLATES)


@pytest.fixture
def builds(plan: Plan) -> dict[str, ImageBuild]:
    assert plan.images is not None
    return {build.image: build for build in plan.images.images}


@pytest.fixture
def fake() -> FakeAws:
    fake = FakeAws(FakeClock(), organization=ORGANIZATION)
    fake.polls = 1
    fake.build_polls = 3
    return fake


def started_images(fake: FakeAws) -> list[str]:
    return [next(v["value"] for v in kw["environmentVariablesOverride"] if v["name"] == "IMAGE_NAME")
            for kw in fake.calls_for("start_build")]  # fmt: skip


def test_missing_tags_are_uploaded_and_built_present_ones_are_not_touched(fake, plan, builds, tmp_path):
    fake.repositories["shiny"].add(builds["shiny"].tag)  # built by an earlier run
    report = executor(fake, tmp_path).deploy(plan)

    assert report.ok, {name: result.message for name, result in report.results.items()}
    assert started_images(fake) == ["rstudio", "bastion"]
    assert sorted(fake.buckets[BUCKET]) == [builds["bastion"].key, builds["rstudio"].key]
    assert fake.tags("rstudio") == {builds["rstudio"].tag} and fake.tags("bastion") == {builds["bastion"].tag}
    start = fake.calls_for("start_build")[0]
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
    assert report.calls["put_object"] >= 2 and report.calls["start_build"] == 2
    assert report.results["rstudio-dev"].state is State.SUCCEEDED


def test_uploaded_bytes_are_the_zip_of_the_committed_files_with_their_execute_bits(fake, plan, builds, tmp_path):
    executor(fake, tmp_path).deploy(plan.only(["rstudio-images"]))

    rstudio = builds["rstudio"]
    uploaded = fake.buckets[BUCKET][rstudio.key]
    assert uploaded == zip_context(rstudio.files, frozenset({"cont-init.d/00_rstudio_users"}))
    with zipfile.ZipFile(io.BytesIO(uploaded)) as zipped:
        assert {info.filename: zipped.read(info) for info in zipped.infolist()} == dict(rstudio.files)
        mode = zipped.getinfo("cont-init.d/00_rstudio_users").external_attr >> 16
    assert mode & 0o111


def test_builds_run_side_by_side_and_polling_follows_the_options(fake, plan, tmp_path):
    report = executor(fake, tmp_path, poll_s=5).deploy(plan.only(["rstudio-images"]))

    assert report.ok
    apis = [api for _, api, _ in fake.log if api in ("start_build", "batch_get_builds")]
    assert apis[:3] == ["start_build"] * 3  # every build started before the first poll
    assert apis.count("batch_get_builds") == 4  # three polls IN_PROGRESS, then all three done
    assert fake.clock.sleeps[-3:] == [5, 10, 20]
    assert [kw["ids"] for kw in fake.calls_for("batch_get_builds")][0] == list(fake.builds)


def test_second_deploy_builds_nothing_and_makes_no_write_call(fake, plan, tmp_path):
    executor(fake, tmp_path).deploy(plan)
    before = fake.mutating_calls()

    again = executor(fake, tmp_path)
    diffs = again.diff(plan)
    [images] = [d for d in diffs if isinstance(d, ImageDiff)]
    assert not images.changed and [image for image, _ in images.present] == ["rstudio", "shiny", "bastion"]
    report = again.deploy(plan)

    assert report.ok and sum(report.calls.values()) == 0 and fake.mutating_calls() == before
    assert report.results["rstudio-images"].state is State.UNCHANGED
    assert report.results["rstudio-images"].message.startswith("images up to date: rstudio ctx-")


def test_a_failed_build_names_image_build_phase_and_log_and_skips_the_instances(fake, plan, builds, tmp_path):
    fake.fail_builds["rstudio"] = ("BUILD", "Error while executing command: docker build. Reason: exit status 100")
    report = executor(fake, tmp_path).deploy(plan)

    images = report.results["rstudio-images"]
    assert images.state is State.FAILED
    [build_id] = [b.id for b in fake.builds.values() if b.image == "rstudio"]
    assert images.message == (
        f"rstudio {builds['rstudio'].tag}: build {build_id} failed in phase BUILD: Error while executing command: "
        f"docker build. Reason: exit status 100 (log: https://console.aws.amazon.com/cloudwatch/home?region="
        f"eu-west-1#logEvent:group=/rstudio/central/image-build;stream={build_id.split(':', 1)[1]})"
    )
    [failure] = images.failures
    assert failure.reason == f"last lines of the log of {build_id}"
    assert failure.events[-1] == "[Container] Phase BUILD FAILED"
    assert report.results["rstudio-dev"].state is State.SKIPPED
    assert report.results["rstudio-dev"].message == "dependency rstudio-images failed"
    assert report.results["rstudio-prod"].state is State.SKIPPED
    assert "rstudio-dev" not in fake.stacksets
    # the other images were built all the same: the next run only retries rstudio
    assert fake.tags("shiny") == {builds["shiny"].tag} and not fake.tags("rstudio")
    assert report.results["rstudio-network"].state is State.SUCCEEDED


def test_a_context_that_does_not_hash_to_its_tag_fails_in_codebuild(fake, plan, builds, tmp_path):
    step = plan.images
    assert step is not None
    bastion = builds["bastion"]
    tampered = ImageBuild("bastion", bastion.tag, {**bastion.files, "extra": b"not reviewed"}, bastion.executables)
    report = executor(fake, tmp_path).deploy(Plan({}, replace(step, images=(tampered,))))

    assert "failed in phase PRE_BUILD" in report.results["rstudio-images"].message
    assert f"does not hash to {bastion.tag}" in report.results["rstudio-images"].message


def test_missing_repository_says_to_deploy_central(fake, plan, tmp_path):
    del fake.repositories["bastion"]
    report = executor(fake, tmp_path).deploy(plan.only(["rstudio-images"]))

    images = report.results["rstudio-images"]
    assert images.state is State.FAILED
    assert images.message == (f"ECR repository bastion does not exist in {CENTRAL}/{REGION}: "
                              "deploy rstudio-central first")  # fmt: skip
    assert fake.calls["start_build"] == 0


def test_plan_lists_missing_tags_and_notes_missing_repositories(fake, plan, builds, tmp_path):
    fake.repositories["shiny"].add(builds["shiny"].tag)
    del fake.repositories["bastion"]
    [diff] = [d for d in executor(fake, tmp_path).diff(plan) if isinstance(d, ImageDiff)]

    assert diff.changed
    assert diff.missing == (("rstudio", builds["rstudio"].tag), ("bastion", builds["bastion"].tag))
    assert diff.present == (("shiny", builds["shiny"].tag),)
    assert diff.warnings == ("bastion: no ECR repository bastion yet (rstudio-central creates it)",)
    assert fake.mutating_calls() == {}


def test_status_shows_whether_each_tag_is_in_ecr(fake, plan, builds, tmp_path):
    fake.repositories["rstudio"].add(builds["rstudio"].tag)
    rows = [row for row in executor(fake, tmp_path).status(plan) if row.stackset == "rstudio-images"]

    assert [(r.detailed_status, r.status, r.reason, r.account) for r in rows] == [
        ("rstudio", "PRESENT", builds["rstudio"].tag, CENTRAL),
        ("shiny", "MISSING", builds["shiny"].tag, CENTRAL),
        ("bastion", "MISSING", builds["bastion"].tag, CENTRAL),
    ]


def test_builds_past_the_deadline_are_waited_for_by_the_next_run(fake, plan, tmp_path):
    fake.build_polls = 1000
    first = executor(fake, tmp_path, timeout_s=300).deploy(plan.only(["rstudio-images"]))

    message = first.results["rstudio-images"].message
    assert first.results["rstudio-images"].state is State.FAILED and "300 s time limit" in message
    recorded = json.loads((tmp_path / "state.json").read_text())["operations"]
    assert sorted(entry["operation_id"] for entry in recorded.values()) == sorted(fake.builds)

    for build in fake.builds.values():
        build.polls_left = 2  # CodeBuild finishes them meanwhile
    again = executor(fake, tmp_path).deploy(plan.only(["rstudio-images"]))

    assert again.ok and fake.calls["start_build"] == 3  # reattached: no second build of any tag
    assert json.loads((tmp_path / "state.json").read_text())["operations"] == {}


def test_destroy_and_drift_leave_the_images_alone(fake, plan, tmp_path):
    executor(fake, tmp_path).deploy(plan)
    ecr_calls = fake.calls["describe_images"]

    destroyed = executor(fake, tmp_path).destroy(plan)
    drift = executor(fake, tmp_path).drift(plan)

    assert destroyed.ok and "rstudio-images" not in destroyed.results and "rstudio-images" not in drift.results
    assert fake.calls["describe_images"] == ecr_calls and all(fake.tags(image) for image in fake.repositories)


def test_before_central_exists_plan_counts_every_image_missing_and_status_says_unknown(fake, plan, tmp_path):
    def no_role(account: str, region: str, service: str) -> object:
        raise AwsError(f"cannot assume arn:aws:iam::{account}:role/rstudio-image-publisher: AccessDenied; "
                       "is the rstudio-central StackSet deployed?")  # fmt: skip

    fake.publisher = no_role  # type: ignore[method-assign]
    [diff] = [d for d in executor(fake, tmp_path).diff(plan) if isinstance(d, ImageDiff)]
    assert [image for image, _ in diff.missing] == ["rstudio", "shiny", "bastion"]
    assert diff.warnings == ("cannot look into ECR yet, so every image counts as missing: cannot assume "
                             f"arn:aws:iam::{CENTRAL}:role/rstudio-image-publisher: AccessDenied; is the "
                             "rstudio-central StackSet deployed?",)  # fmt: skip
    rows = [row for row in executor(fake, tmp_path).status(plan) if row.stackset == "rstudio-images"]
    assert {row.status for row in rows} == {"UNKNOWN"} and all("AccessDenied" in row.reason for row in rows)

    report = executor(fake, tmp_path).deploy(plan.only(["rstudio-images"]))
    assert report.results["rstudio-images"].state is State.FAILED
    assert "is the rstudio-central StackSet deployed?" in report.results["rstudio-images"].message
