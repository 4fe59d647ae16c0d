"""The RStudio image's start-up script, run with bash against a scratch root and fake system commands.

The fakes keep /etc/passwd and /etc/group under the scratch root, so getent sees what useradd and groupadd did, and
log their arguments; the fake chpasswd logs only the user names it was given, so any password found anywhere after a
run was leaked by the script itself.
"""

from __future__ import annotations

import configparser
import os
import secrets
import shutil
import stat
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO / "container" / "rstudio"
SCRIPT = IMAGE / "cont-init.d" / "00_rstudio_users"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the start-up script needs bash")

LOG_ARGS = 'printf "%s\\n" "$(basename "$0") $*" >>"$FAKE_LOG"'
FAKES = {
    "groupadd": f"""
{LOG_ARGS}
while [[ $# -gt 1 ]]; do case "$1" in --gid) gid="$2"; shift 2 ;; *) shift ;; esac; done
printf '%s:x:%s:\\n' "$1" "$gid" >>"$RSTUDIO_INIT_ROOT/etc/group"
""",
    "useradd": f"""
{LOG_ARGS}
while [[ $# -gt 1 ]]; do
    case "$1" in --uid) uid="$2"; shift 2 ;; --gid) gid="$2"; shift 2 ;; --home-dir) home="$2"; shift 2 ;;
        --shell) shell="$2"; shift 2 ;; *) shift ;; esac
done
printf '%s:x:%s:%s::%s:%s\\n' "$1" "$uid" "$gid" "$home" "$shell" >>"$RSTUDIO_INIT_ROOT/etc/passwd"
""",
    "usermod": LOG_ARGS,
    "chown": LOG_ARGS,
    "chpasswd": 'printf "chpasswd %s\\n" "$(cut -d: -f1 | tr "\\n" " ")" >>"$FAKE_LOG"',
    "getent": """
file="$RSTUDIO_INIT_ROOT/etc/$1"
if [[ $# -eq 1 ]]; then cat "$file"; exit 0; fi
if [[ "$2" =~ ^[0-9]+$ ]]; then field=3; else field=1; fi
awk -F: -v key="$2" -v field="$field" '$field == key { print; found = 1 } END { exit found ? 0 : 2 }' "$file"
""",
}

# What rocker/rstudio ships: root, the default user rstudio (1000) and the staff group.
PASSWD = "root:x:0:0:root:/root:/bin/bash\nrstudio:x:1000:1000::/home/rstudio:/bin/bash\n"
GROUP = "root:x:0:\nstaff:x:50:rstudio\nrstudio:x:1000:\n"
RENVIRON = "R_LIBS_SITE=/usr/local/lib/R/site-library\nAWS_DEFAULT_REGION=us-east-1\n"

PUBLIC_ENV = {
    "ATHENA_REGION": "eu-west-1",
    "ATHENA_ROLE_ARN": "arn:aws:iam::222222222222:role/rstudio-team-athena",
    "ATHENA_WORKGROUP": "rstudio-team",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/0f3c",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


# Build-context path -> where the Dockerfile puts it, for the files the script reads at start.
IMAGE_FILES = {"config/aws.config": "/opt/rstudio-fargate/aws.config", "examples/": "/opt/rstudio-fargate/examples/"}


class Run(NamedTuple):
    root: Path
    result: subprocess.CompletedProcess[str]
    commands: list[str]
    secrets: dict[str, str]


def secret() -> str:
    return "s3cret" + secrets.token_hex(12)


def scratch(tmp_path: Path) -> tuple[Path, Path]:
    root, fakes = tmp_path / "root", tmp_path / "fakes"
    for folder in ("etc", "home", "srv/shiny-server", "var/run/s6/container_environment", "usr/local/lib/R/etc"):
        (root / folder).mkdir(parents=True)
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    (root / "usr/local/lib/R/etc/Renviron.site").write_text(RENVIRON)
    (root / "srv/shiny-server").chmod(0o755)
    for source, target in IMAGE_FILES.items():
        if source.endswith("/"):
            shutil.copytree(IMAGE / source, root / target.strip("/"))
        else:
            (root / target.strip("/")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(IMAGE / source, root / target.strip("/"))
    fakes.mkdir()
    for name, body in FAKES.items():
        (fakes / name).write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + body)
        (fakes / name).chmod(0o755)
    return root, fakes


def run_script(tmp_path: Path, users: str | None, secret_env: dict[str, str], prepare=None) -> Run:
    """Runs the script like s6 would: the container environment both as variables and as s6's envdir files."""
    root, fakes = scratch(tmp_path)
    if prepare:
        prepare(root)
    container_env = {**PUBLIC_ENV, **secret_env, **({"RSTUDIO_USERS": users} if users is not None else {})}
    for name, value in container_env.items():
        (root / "var/run/s6/container_environment" / name).write_text(value)
    log = tmp_path / "commands.log"
    log.touch()
    env = {"PATH": f"{fakes}:/usr/bin:/bin", "RSTUDIO_INIT_ROOT": str(root), "FAKE_LOG": str(log),
           "R_HOME": "/usr/local/lib/R", **container_env}  # fmt: skip
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)
    return Run(root, result, log.read_text().splitlines(), secret_env)


def files_containing(tmp_path: Path, value: str) -> list[Path]:
    return [path for path in tmp_path.rglob("*") if path.is_file() and value.encode() in path.read_bytes()]


def assert_passwords_nowhere(tmp_path: Path, run: Run) -> None:
    for name, value in run.secrets.items():
        if name.startswith("PASSWORD"):
            assert files_containing(tmp_path, value) == [], name
        assert value not in run.result.stdout + run.result.stderr, name


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def renviron(root: Path) -> str:
    return (root / "usr/local/lib/R/etc/Renviron.site").read_text()


@pytest.fixture
def per_user(tmp_path: Path) -> Run:
    def efs_home(root: Path) -> None:  # the access point created alice's home, and she has worked in it
        (root / "home/alice/project").mkdir(parents=True)
        (root / "home/alice").chmod(0o700)

    return run_script(tmp_path, "alice:3001", {"PASSWORD_ALICE": secret(), "SECURE_COOKIE_KEY": secret()}, efs_home)


@pytest.fixture
def shared(tmp_path: Path) -> Run:
    def efs_root(root: Path) -> None:  # EFS created /home for a per-user home once; erik's home already exists
        (root / "home").chmod(0o700)
        (root / "home/erik").mkdir(mode=0o700)

    secret_env = {"PASSWORD_DANA": secret(), "PASSWORD_ERIK": secret(), "PASSWORD_JO_ANN": secret(),
                  "PASSWORD_RSTUDIO": secret(), "SECURE_COOKIE_KEY": secret()}  # fmt: skip
    return run_script(tmp_path, "dana:2001 erik:2002 jo-ann:2003 rstudio:1000", secret_env, efs_root)


def test_per_user_server_creates_its_user_and_leaves_the_efs_home_alone(per_user: Run) -> None:
    assert per_user.result.returncode == 0, per_user.result.stderr
    assert "groupadd --gid 3001 alice" in per_user.commands
    assert "useradd --uid 3001 --gid 3001 --no-create-home --home-dir /home/alice --shell /bin/bash alice" in (
        per_user.commands
    )
    assert "chpasswd alice " in per_user.commands
    # Only the examples file it added is chowned; the home itself and what alice has in it are left as they are.
    chowns = [command for command in per_user.commands if "home/alice" in command and command.startswith("chown")]
    assert chowns == [f"chown 3001:3001 {per_user.root}/home/alice/athena_examples.R"]
    assert not [command for command in per_user.commands if "-R" in command.split()]


def test_per_user_server_locks_the_image_default_user(per_user: Run) -> None:
    assert "usermod --lock --expiredate 1 rstudio" in per_user.commands
    assert not [command for command in per_user.commands if command.startswith("chpasswd") and "rstudio" in command]


def test_shiny_groups_and_membership(per_user: Run) -> None:
    assert "groupadd --gid 1999 shiny-apps" in per_user.commands
    assert "groupadd --gid 999 shiny" in per_user.commands
    assert "useradd --uid 999 --gid 999 --no-create-home --home-dir /home/shiny --shell /usr/sbin/nologin shiny" in (
        per_user.commands
    )
    assert "usermod --append --groups shiny-apps alice" in per_user.commands
    assert "usermod --append --groups shiny-apps shiny" in per_user.commands
    assert mode(per_user.root / "srv/shiny-server") == 0o3775
    assert f"chown root:shiny-apps {per_user.root}/srv/shiny-server" in per_user.commands


def test_shared_server_creates_missing_homes_only(shared: Run) -> None:
    assert shared.result.returncode == 0, shared.result.stderr
    root = shared.root
    for name, uid in {"dana": 2001, "jo-ann": 2003, "rstudio": 1000}.items():
        assert mode(root / "home" / name) == 0o700
        assert f"chown {uid}:{uid} {root}/home/{name}" in shared.commands
    chowns = [command for command in shared.commands if command.startswith("chown") and "home/erik" in command]
    assert chowns == [f"chown 2002:2002 {root}/home/erik/athena_examples.R"]
    assert mode(root / "home") == 0o755
    assert f"chown root:root {root}/home" in shared.commands


def test_shared_server_sets_every_password_and_keeps_the_admin(shared: Run) -> None:
    assert "chpasswd dana " in shared.commands
    assert "chpasswd erik " in shared.commands
    assert "chpasswd jo-ann " in shared.commands
    assert "chpasswd rstudio " in shared.commands
    assert not [command for command in shared.commands if command.startswith("useradd") and "rstudio" in command]
    assert not [command for command in shared.commands if command.startswith("usermod --lock")]
    for name in ("dana", "erik", "jo-ann", "rstudio"):
        assert f"usermod --append --groups shiny-apps {name}" in shared.commands


@pytest.mark.parametrize("scenario", ["per_user", "shared"])
def test_secrets_leave_the_container_environment(request: pytest.FixtureRequest, tmp_path: Path,
                                                 scenario: str) -> None:  # fmt: skip
    run: Run = request.getfixturevalue(scenario)
    assert run.result.returncode == 0, run.result.stderr
    assert_passwords_nowhere(tmp_path, run)
    key_file = run.root / "var/lib/rstudio-server/secure-cookie-key"
    assert files_containing(tmp_path, run.secrets["SECURE_COOKIE_KEY"]) == [key_file]
    assert key_file.read_text() == run.secrets["SECURE_COOKIE_KEY"]
    assert mode(key_file) == 0o600
    assert f"chown root:root {key_file}" in run.commands
    left = sorted(path.name for path in (run.root / "var/run/s6/container_environment").iterdir())
    assert left == sorted([*PUBLIC_ENV, "RSTUDIO_USERS"])


def test_renviron_gets_credentials_and_athena_but_no_secrets(per_user: Run) -> None:
    text = renviron(per_user.root)
    for name, value in PUBLIC_ENV.items():
        assert f"{name}={value}\n" in text
    assert text.count("AWS_DEFAULT_REGION=") == 1
    assert "R_LIBS_SITE=/usr/local/lib/R/site-library\n" in text
    assert "PASSWORD" not in text
    assert "SECURE_COOKIE_KEY" not in text


@pytest.mark.parametrize("missing", ["RSTUDIO_USERS", "SECURE_COOKIE_KEY", "PASSWORD_ERIK"])
def test_missing_variable_fails_naming_it(tmp_path: Path, missing: str) -> None:
    secret_env = {"PASSWORD_DANA": secret(), "PASSWORD_ERIK": secret(), "SECURE_COOKIE_KEY": secret()}
    users = None if missing == "RSTUDIO_USERS" else "dana:2001 erik:2002"
    run = run_script(tmp_path, users, {name: value for name, value in secret_env.items() if name != missing})
    assert run.result.returncode == 1
    assert missing in run.result.stderr
    assert run.commands == []
    assert_passwords_nowhere(tmp_path, run)
    assert not [path for path in (run.root / "var/run/s6/container_environment").iterdir() if path.name in secret_env]


def test_existing_user_with_another_uid_fails(tmp_path: Path) -> None:
    run = run_script(tmp_path, "rstudio:1001", {"PASSWORD_RSTUDIO": secret(), "SECURE_COOKIE_KEY": secret()})
    assert run.result.returncode == 1
    assert "rstudio exists with gid 1000, expected 1001" in run.result.stderr
    assert not [command for command in run.commands if command.startswith("chpasswd")]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("alice", "is not name:uid"),
        ("alice:0999", "is not name:uid"),
        ("Alice:3001", "is not name:uid"),
        ("alice:999", "has a uid below 1000"),
    ],
)
def test_malformed_user_list_fails(tmp_path: Path, entry: str, message: str) -> None:
    run = run_script(tmp_path, entry, {"PASSWORD_ALICE": secret(), "SECURE_COOKIE_KEY": secret()})
    assert run.result.returncode == 1
    assert f"RSTUDIO_USERS entry '{entry}' {message}" in run.result.stderr
    assert run.commands == []


def test_image_runs_the_script_before_rocker_copies_the_environment() -> None:
    dockerfile = (IMAGE / "Dockerfile").read_text()
    copies = [line for line in dockerfile.splitlines() if line.startswith("COPY") and SCRIPT.name in line]
    target = copies[0].split()[-1]
    assert os.path.dirname(target) == "/etc/cont-init.d"
    assert os.path.basename(target) < "01_set_env"
    assert "/etc/cont-init.d/02_userconf" in next(line for line in dockerfile.splitlines() if line.startswith("RUN rm"))
    # s6-overlay v2 would otherwise start rserver after the script failed.
    assert "ENV S6_BEHAVIOUR_IF_STAGE2_FAILS=2" in dockerfile.splitlines()


def test_rserver_reads_the_key_file_the_script_writes() -> None:
    options = dict(line.split("=", 1) for line in (IMAGE / "config/rserver.conf").read_text().splitlines()
                   if line and not line.startswith("#"))  # fmt: skip
    assert options["secure-cookie-key-file"] == "/var/lib/rstudio-server/secure-cookie-key"
    assert 'cookie_key_file="${root}/var/lib/rstudio-server/secure-cookie-key"' in SCRIPT.read_text()
    assert options["www-port"] == "8787"
    assert options["auth-cookies-force-secure"] == "1"
    assert int(options["auth-minimum-user-id"]) > 999  # the shiny user must never sign in


def test_image_copies_what_the_script_reads_where_the_script_reads_it() -> None:
    copies = [line.split() for line in (IMAGE / "Dockerfile").read_text().splitlines() if line.startswith("COPY")]
    for source, target in IMAGE_FILES.items():
        assert [source, target] in [words[-2:] for words in copies]
    script = SCRIPT.read_text()
    assert 'aws_config_template="${root}/opt/rstudio-fargate/aws.config"' in script
    assert 'examples_dir="${root}/opt/rstudio-fargate/examples"' in script


def aws_config(root: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read_string((root / "etc/aws/config").read_text())
    return parser


def test_aws_config_assumes_the_instance_athena_role_from_the_task_role(per_user: Run) -> None:
    assert per_user.result.returncode == 0, per_user.result.stderr
    default = aws_config(per_user.root)["default"]
    assert dict(default) == {"role_arn": PUBLIC_ENV["ATHENA_ROLE_ARN"], "credential_source": "EcsContainer",
                             "region": PUBLIC_ENV["ATHENA_REGION"]}  # fmt: skip
    assert mode(per_user.root / "etc/aws/config") == 0o644
    assert "AWS_CONFIG_FILE=/etc/aws/config\n" in (IMAGE / "config/athena.Renviron").read_text()


@pytest.mark.parametrize(("name", "value"), [
    ("ATHENA_ROLE_ARN", "arn:aws:iam::222222222222:role/x|e"),  # would end sed's s||| and inject a command
    ("ATHENA_ROLE_ARN", "arn:aws:iam::222222222222:role/x\nrole_arn = arn:aws:iam::333333333333:role/y"),
    ("ATHENA_REGION", "eu-west-1\n[profile other]"),
])  # fmt: skip
def test_malformed_athena_settings_fail_before_any_config_is_written(tmp_path: Path, name: str, value: str) -> None:
    env = {"PASSWORD_ALICE": secret(), "SECURE_COOKIE_KEY": secret(), name: value}
    run = run_script(tmp_path, "alice:3001", env)
    assert run.result.returncode == 1
    assert name in run.result.stderr
    assert not (run.root / "etc/aws/config").exists()


def test_examples_reach_new_homes_and_never_replace_a_users_file(tmp_path: Path) -> None:
    def homes(root: Path) -> None:  # erik edited his copy; jo-ann deleted hers and left a dangling link in its place
        (root / "home/erik").mkdir(mode=0o700)
        (root / "home/erik/athena_examples.R").write_text("my own version\n")
        (root / "home/jo-ann").mkdir(mode=0o700)
        (root / "home/jo-ann/athena_examples.R").symlink_to(root / "nowhere")

    env = {"PASSWORD_DANA": secret(), "PASSWORD_ERIK": secret(), "PASSWORD_JO_ANN": secret(),
           "SECURE_COOKIE_KEY": secret()}  # fmt: skip
    run = run_script(tmp_path, "dana:2001 erik:2002 jo-ann:2003", env, homes)
    assert run.result.returncode == 0, run.result.stderr
    copied = run.root / "home/dana/athena_examples.R"
    assert copied.read_text() == (IMAGE / "examples/athena_examples.R").read_text()
    assert mode(copied) == 0o644
    assert f"chown 2001:2001 {copied}" in run.commands
    assert (run.root / "home/erik/athena_examples.R").read_text() == "my own version\n"
    assert (run.root / "home/jo-ann/athena_examples.R").is_symlink()
    assert not (run.root / "nowhere").exists()


def test_examples_need_no_credentials_and_use_the_instance_settings() -> None:
    text = (IMAGE / "examples/athena_examples.R").read_text()
    for library in ("noctua::athena()", "RJDBC::JDBC(", "paws::s3("):
        assert library in text
    for variable in ("ATHENA_WORKGROUP", "ATHENA_REGION", "ATHENA_JDBC_DRIVER", "ATHENA_JDBC_JAR"):
        assert f'Sys.getenv("{variable}")' in text
    assert "CredentialsProvider=ProfileCredentials;ProfileName=default" in text
    for forbidden in ("aws_access_key_id", "AWS_SECRET", "role_arn =", "SecretKey", "AccessKey"):
        assert forbidden not in text
