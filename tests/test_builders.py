"""The local docker builder against a stand-in `docker` on PATH (it logs its argv and how much it read on stdin), with
the central account's ECR in the AWS model. CodeBuild's side is in tests/test_executor_images.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from stacksets.awsmodel.model import AwsModel
from stacksets.awsmodel.services import ECR_PASSWORD
from stacksets.builders import BuilderError, LocalDocker
from stacksets.config import Config
from stacksets.executor import Executor, Options, State
from stacksets.plan import Plan, build_plan
from tests.awsmodel_helpers import clients_for, copy_model, executor_for, model_for
from tests.conftest import TEMPLATES

REGISTRY = "222222222222.dkr.ecr.eu-west-1.amazonaws.com"

FAKE_DOCKER = """#!{python}
import json, os, sys
argv = sys.argv[1:]
secret = sys.stdin.read() if "--password-stdin" in argv else ""
entry = {{"argv": argv, "stdin_size": len(secret)}}
if argv[0] == "build":
    context = argv[-1]
    paths = [os.path.join(d, f) for d, _, files in os.walk(context) for f in files]
    entry["files"] = sorted(os.path.relpath(p, context) for p in paths)
    entry["executables"] = sorted(os.path.relpath(p, context) for p in paths if os.access(p, os.X_OK))
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\\n")
fail = os.environ.get("FAKE_DOCKER_FAIL", "")
if fail == "login" and argv[0] == "login":
    print("Error response from daemon: Get https://registry: unauthorized: password " + secret, file=sys.stderr)
    sys.exit(1)
if fail and argv[0] == "build" and "/" + fail + ":" in argv[-2]:
    print("Step 3/9 : RUN apt-get install -y nope")
    print("E: Unable to locate package nope", file=sys.stderr)
    sys.exit(100)
"""


@pytest.fixture
def docker_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    log = tmp_path / "docker.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    monkeypatch.delenv("FAKE_DOCKER_FAIL", raising=False)
    return log


def logged(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def plan(cfg: Config) -> Plan:
    return build_plan(cfg, TEMPLATES).only(["rstudio-images"], with_dependencies=False)


@pytest.fixture(scope="module")
def central(cfg: Config, tmp_path_factory: pytest.TempPathFactory) -> AwsModel:
    """The central account with its repositories and publisher role, deployed once for the module."""
    model = model_for(cfg)
    report = executor_for(model, cfg, tmp_path_factory.mktemp("central")).deploy(
        build_plan(cfg, TEMPLATES).only(["rstudio-central"]))
    assert report.ok, {name: result.message for name, result in report.results.items()}
    return model


@pytest.fixture
def model(central: AwsModel, docker_log: Path, tmp_path: Path) -> AwsModel:
    model = copy_model(central)

    def pushed() -> list[tuple[str, str]]:  # what the docker stand-in pushed is in ECR
        refs = [entry["argv"][1] for entry in logged(docker_log) if entry["argv"][0] == "push"]
        return [tuple(ref.rsplit("/", 1)[1].split(":")) for ref in refs]  # type: ignore[misc]

    model.world.images.pushed_outside = pushed
    return model


def run(model: AwsModel, cfg: Config, plan: Plan, tmp_path: Path) -> Any:
    executor = Executor(clients_for(model, cfg.default_region), options=Options(state_path=tmp_path / "state.json"),
                        clock=model.clock, sleep=model.clock.sleep, builder=LocalDocker())  # fmt: skip
    return executor.deploy(plan)


def test_logs_in_once_on_stdin_then_builds_and_pushes_each_missing_image(model, cfg, plan, docker_log, tmp_path):
    report = run(model, cfg, plan, tmp_path)

    assert report.ok, report.results["rstudio-images"].message
    entries = logged(docker_log)
    tags = {build.image: build.tag for build in plan.images.images}
    login, *rest = entries
    assert login == {"argv": ["login", "--username", "AWS", "--password-stdin", REGISTRY],
                     "stdin_size": len(ECR_PASSWORD)}  # fmt: skip
    expected = []
    for image in ("rstudio", "shiny", "bastion"):
        reference = f"{REGISTRY}/{image}:{tags[image]}"
        expected += [["build", "--pull", "--platform", "linux/amd64", "--tag", reference], ["push", reference]]
    assert [entry["argv"][:6] for entry in rest] == expected
    assert all(entry["stdin_size"] == 0 for entry in rest)
    # docker builds the unzipped context: every committed file, executables still executable
    rstudio_build = rest[0]
    rstudio = plan.images.images[0]
    assert rstudio_build["files"] == sorted(rstudio.files)
    assert rstudio_build["executables"] == sorted(rstudio.executables) == ["cont-init.d/00_rstudio_users"]
    assert ECR_PASSWORD not in docker_log.read_text()
    assert [(o.image, o.outcome) for o in report.results["rstudio-images"].images] == [
        ("rstudio", "built"), ("shiny", "built"), ("bastion", "built")]  # fmt: skip
    assert report.calls == {"docker push": 3}  # counted with the writes; nothing uploaded, no CodeBuild


def test_present_images_are_not_built_again(model, cfg, plan, docker_log, tmp_path):
    run(model, cfg, plan, tmp_path)
    before = logged(docker_log)
    again = run(model, cfg, plan, tmp_path)

    assert again.ok and again.results["rstudio-images"].state is State.UNCHANGED
    assert logged(docker_log) == before and sum(again.calls.values()) == 0


def test_a_failing_build_names_the_image_and_shows_the_end_of_its_output(model, cfg, plan, docker_log, tmp_path,
                                                                         monkeypatch):  # fmt: skip
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "shiny")
    report = run(model, cfg, plan, tmp_path)

    images = report.results["rstudio-images"]
    assert images.state is State.FAILED
    shiny = next(build.tag for build in plan.images.images if build.image == "shiny")
    assert images.message == (f"shiny {shiny}: build local:shiny:{shiny} failed in phase docker build: "
                              "exit status 100")  # fmt: skip
    [failure] = images.failures
    assert failure.events == ("Step 3/9 : RUN apt-get install -y nope", "E: Unable to locate package nope")
    pushed = [entry["argv"][1].rsplit("/", 1)[1].split(":")[0] for entry in logged(docker_log)
              if entry["argv"][0] == "push"]  # fmt: skip
    assert pushed == ["rstudio", "bastion"]


def test_a_refused_login_never_shows_the_password(model, cfg, plan, docker_log, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "login")
    report = run(model, cfg, plan, tmp_path)

    images = report.results["rstudio-images"]
    assert images.state is State.FAILED and "failed in phase docker login: exit status 1" in images.message
    shown = images.message + "\n".join(event for failure in images.failures for event in failure.events)
    assert "unauthorized: password ****" in shown and ECR_PASSWORD not in shown
    assert all(ECR_PASSWORD not in " ".join(entry["argv"]) for entry in logged(docker_log))
    assert not any(entry["argv"][0] in ("build", "push") for entry in logged(docker_log))


def test_without_docker_on_path_the_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BuilderError, match="`docker` is not on PATH: install Docker .* leave out --local"):
        LocalDocker()
