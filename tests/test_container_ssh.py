"""The platform team's sshd in the RStudio and Shiny images: ssh/init.sh (s6 cont-init 00_sshd) and ssh/run.sh (the
s6 sshd service) run with bash against a scratch root and the fakes of tests/ssh_scripts.py, the sshd_config they
start with, and the Dockerfile lines that create the admin account generator/instance/ssh.py describes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from generator.instance import ssh
from generator.instance.bastion import ssh_key_secret_name
from generator.instance.security_groups import SSH_PORT
from generator.instance.storage import SHINY_APPS_GID, SHINY_UID
from stacksets.config import RESERVED_USER_NAMES
from tests.ssh_scripts import FAKES, KEY, KEY_BODY, PLACEHOLDER, install_library, make_fakes, mode, sshd_options

REPO = Path(__file__).resolve().parent.parent
IMAGES = ("rstudio", "shiny")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the start-up scripts need bash")


class Run(NamedTuple):
    root: Path
    fakes: Path
    init: subprocess.CompletedProcess[str]
    service: subprocess.CompletedProcess[str]
    commands: list[str]

    @property
    def output(self) -> str:
        return "".join(result.stdout + result.stderr for result in (self.init, self.service))

    @property
    def authorized_keys(self) -> Path:
        return self.root / ssh.ADMIN_HOME.lstrip("/") / ".ssh/authorized_keys"

    @property
    def marker(self) -> Path:
        return self.root / ssh.SSHD_ENABLED_MARKER.lstrip("/")

    def sshd(self) -> list[str]:
        return [line for line in self.commands if line.split()[0].endswith("sshd")]


def boot(tmp_path: Path, image: str, key: str | None, fakes: dict[str, str] = FAKES) -> Run:
    """What s6 does at container start: the cont-init step with the task's environment (also in s6's environment
    folder), then the service's run script in its service directory."""
    context = REPO / "container" / image
    root = tmp_path / "root"
    for folder in ("etc/ssh", ssh.ADMIN_HOME.lstrip("/"), "run", "var/run/s6/container_environment"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(context / "ssh/sshd_config", root / "etc/ssh/sshd_config")
    install_library(root, context)
    service_dir = tmp_path / "services" / "sshd"
    service_dir.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "commands.log"
    log.write_text("", encoding="utf-8")
    fake_dir = make_fakes(tmp_path, fakes)
    env = {"PATH": f"{fake_dir}:{os.environ['PATH']}", "SSH_INIT_ROOT": str(root), "FAKE_LOG": str(log)}
    if key is not None:
        env["SSH_PUBLIC_KEY"] = key
        (root / "var/run/s6/container_environment/SSH_PUBLIC_KEY").write_text(key, encoding="utf-8")

    def run(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(context / "ssh" / script)], env=env, cwd=cwd, capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip

    init = run("init.sh", tmp_path, env)
    # with-contenv gives the service what is left in s6's environment folder, which no longer holds the key.
    service_env = {name: value for name, value in env.items() if name != "SSH_PUBLIC_KEY"}
    service = run("run.sh", service_dir, service_env)
    return Run(root, fake_dir, init, service, log.read_text(encoding="utf-8").splitlines())


def assert_sshd_started(run: Run) -> None:
    assert run.init.returncode == 0, run.output
    assert run.service.returncode == 0, run.output
    # By absolute path (sshd re-executes itself), in the foreground, logging to stderr (the task log).
    assert run.sshd() == [f"{run.fakes}/sshd -D -e -f {run.root}/etc/ssh/sshd_config"]


@pytest.mark.parametrize("image", IMAGES)
def test_a_valid_key_becomes_the_only_authorized_key_of_the_admin(tmp_path: Path, image: str) -> None:
    run = boot(tmp_path, image, KEY)
    assert_sshd_started(run)
    assert run.authorized_keys.read_text(encoding="utf-8") == KEY + "\n"
    assert mode(run.authorized_keys) == 0o600
    assert mode(run.authorized_keys.parent) == 0o700
    assert list(run.authorized_keys.parent.iterdir()) == [run.authorized_keys], "the temporary file is gone"
    owner = f"{ssh.ADMIN_USER}:{ssh.ADMIN_USER}"
    assert f"chown {owner} {run.authorized_keys.parent}" in run.commands
    assert any(line.startswith(f"chown {owner} {run.authorized_keys.parent}/.authorized_keys.")
               for line in run.commands)  # fmt: skip
    assert f"authorized ssh-ed25519 key 'alice@laptop' for user {ssh.ADMIN_USER}" in run.init.stderr
    assert KEY_BODY not in run.output + "\n".join(run.commands)


@pytest.mark.parametrize("image", IMAGES)
def test_the_key_leaves_the_s6_environment_before_rockers_set_env(tmp_path: Path, image: str) -> None:
    run = boot(tmp_path, image, KEY)
    assert not (run.root / "var/run/s6/container_environment/SSH_PUBLIC_KEY").exists()
    dockerfile = (REPO / "container" / image / "Dockerfile").read_text(encoding="utf-8")
    [target] = re.findall(r"^COPY --chmod=0755 ssh/init\.sh (\S+)$", dockerfile, flags=re.M)
    assert target.startswith("/etc/cont-init.d/") and Path(target).name < "01_set_env"


@pytest.mark.parametrize("image", IMAGES)
def test_host_keys_are_made_per_task_and_their_fingerprints_logged(tmp_path: Path, image: str) -> None:
    run = boot(tmp_path, image, KEY)
    made = [line for line in run.commands if line.startswith("ssh-keygen -q -t")]
    assert made == [f"ssh-keygen -q -t {kind} -N  -C  -f {run.root}/etc/ssh/ssh_host_{kind}_key"
                    for kind in ("ed25519", "rsa")]  # fmt: skip
    assert run.init.stderr.count("host key 256 SHA256:fakefingerprint (ED25519)") == 2
    assert mode(run.root / "run/sshd") == 0o755


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize(
    "value",
    [PLACEHOLDER, "", f"ssh-ed25519 {KEY_BODY[:20]}BROKEN alice@laptop", f'command="/bin/sh" {KEY}'],
    ids=["placeholder", "empty", "not-a-key", "options"],
)
def test_anything_else_runs_sshd_with_no_authorized_key_and_says_so(tmp_path: Path, image: str, value: str) -> None:
    stale = tmp_path / "root" / ssh.ADMIN_HOME.lstrip("/") / ".ssh/authorized_keys"
    stale.parent.mkdir(parents=True)
    stale.write_text(KEY + "\n", encoding="utf-8")
    run = boot(tmp_path, image, value)
    assert_sshd_started(run)  # the container does not fail: exit 0 and sshd under s6
    assert not run.authorized_keys.exists()
    assert list(run.authorized_keys.parent.iterdir()) == []
    assert "ERROR" in run.init.stderr and "nobody can log in" in run.init.stderr
    assert ssh_key_secret_name("<instance>") in run.init.stderr
    if value:
        assert value not in run.output


@pytest.mark.parametrize("image", IMAGES)
def test_without_the_variable_no_sshd_runs_and_s6_does_not_restart_it(tmp_path: Path, image: str) -> None:
    marker = tmp_path / "root" / ssh.SSHD_ENABLED_MARKER.lstrip("/")
    marker.parent.mkdir(parents=True)
    marker.write_text("", encoding="utf-8")  # left by an earlier start of the same container
    run = boot(tmp_path, image, None)
    assert run.init.returncode == 0, run.output
    assert "this task runs no sshd" in run.init.stderr
    assert not run.marker.exists()
    assert not [line for line in run.commands if line.startswith("ssh-keygen")]
    assert not (run.root / ssh.ADMIN_HOME.lstrip("/") / ".ssh").exists()
    assert run.service.returncode == 0, run.output
    assert run.sshd() == []
    assert run.commands == [f"s6-svc -O . in {tmp_path}/services/sshd"]


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs the real ssh-keygen")
def test_the_real_ssh_keygen_checks_the_key_and_makes_the_host_keys(tmp_path: Path) -> None:
    fakes = {name: body for name, body in FAKES.items() if name != "ssh-keygen"}
    good = boot(tmp_path / "good", "rstudio", KEY, fakes)
    assert_sshd_started(good)
    assert good.authorized_keys.read_text(encoding="utf-8") == KEY + "\n"
    assert (good.root / "etc/ssh/ssh_host_ed25519_key").read_text(encoding="utf-8").startswith("-----BEGIN OPENSSH")
    assert re.search(r"host key 256 SHA256:\S+ .*\(ED25519\)", good.init.stderr)
    bad = boot(tmp_path / "bad", "shiny", f"ssh-ed25519 {KEY_BODY[:-8]} alice@laptop", fakes)
    assert_sshd_started(bad)
    assert not bad.authorized_keys.exists()


@pytest.mark.parametrize("image", IMAGES)
def test_sshd_config_admits_the_admin_with_a_key_only_and_forwards_nothing(image: str) -> None:
    options = sshd_options(REPO / "container" / image / "ssh/sshd_config")
    assert options["port"] == str(SSH_PORT)
    assert options["allowusers"] == ssh.ADMIN_USER
    assert options["permitrootlogin"] == "no"
    assert options["passwordauthentication"] == "no"
    assert options["kbdinteractiveauthentication"] == "no"
    assert options["authenticationmethods"] == "publickey"
    assert options["permitemptypasswords"] == "no"
    assert options["permituserenvironment"] == "no"
    assert options["usepam"] == "no"
    assert options["disableforwarding"] == "yes"
    for name in ("allowtcpforwarding", "allowagentforwarding", "allowstreamlocalforwarding", "x11forwarding",
                 "permittunnel", "gatewayports"):  # fmt: skip
        assert options[name] == "no", name
    assert options["loglevel"] == "VERBOSE"  # logs the fingerprint of every login's key
    assert "include" not in options, "a drop-in could override the settings above"


def test_the_bastion_and_the_tasks_share_the_admin_and_the_set_up_steps() -> None:
    container = REPO / "container"
    assert sshd_options(container / "bastion/sshd_config")["allowusers"] == ssh.ADMIN_USER
    assert f'user="{ssh.ADMIN_USER}"' in (container / "bastion/start.sh").read_text(encoding="utf-8")
    assert f"--shell /bin/bash {ssh.ADMIN_USER}" in (container / "bastion/Dockerfile").read_text(encoding="utf-8")
    library = (container / "bastion/ssh_setup.sh").read_bytes()
    for image in IMAGES:
        assert (container / image / "ssh/ssh_setup.sh").read_bytes() == library
        for name in ("init.sh", "run.sh", "sshd_config"):
            assert (container / image / "ssh" / name).read_bytes() == (container / "rstudio/ssh" / name).read_bytes()


def test_the_admin_account_cannot_collide_with_rstudio_or_shiny_accounts() -> None:
    assert ssh.ADMIN_UID < 1000  # 00_rstudio_users locks unlisted accounts from 1000 up; RStudio users have 2000+
    assert ssh.ADMIN_UID not in {SHINY_UID, SHINY_APPS_GID}
    assert ssh.ADMIN_USER in RESERVED_USER_NAMES
    assert not ssh.ADMIN_HOME.startswith("/home/")  # /home is EFS
    assert "sudo" not in ssh.ADMIN_GROUPS


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_creates_the_admin_and_ships_no_host_keys(image: str) -> None:
    dockerfile = (REPO / "container" / image / "Dockerfile").read_text(encoding="utf-8")
    uid = ssh.ADMIN_UID
    assert f"groupadd --system --gid {uid} {ssh.ADMIN_USER}" in dockerfile
    assert (f"useradd --system --uid {uid} --gid {uid} --groups {','.join(ssh.ADMIN_GROUPS)} --home-dir "
            f"{ssh.ADMIN_HOME} --create-home --shell /bin/bash {ssh.ADMIN_USER}") in dockerfile  # fmt: skip
    assert f"usermod --password '*' {ssh.ADMIN_USER}" in dockerfile
    assert "rm -f /etc/ssh/ssh_host_*" in dockerfile
    assert not [line for line in dockerfile.splitlines() if "sudo" in line and not line.startswith("#")]
    assert "COPY ssh/sshd_config /etc/ssh/sshd_config" in dockerfile
    assert f"COPY --chmod=0644 ssh/ssh_setup.sh {ssh.SSH_SETUP_LIBRARY}" in dockerfile
    assert "COPY --chmod=0755 ssh/run.sh /etc/services.d/sshd/run" in dockerfile
    assert re.search(rf"^EXPOSE .*\b{SSH_PORT}\b", dockerfile, flags=re.M)
