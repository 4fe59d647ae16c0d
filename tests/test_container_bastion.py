"""The bastion image: start.sh run with bash against a scratch root and fake ssh-keygen, sshd and chown
(tests/ssh_scripts.py), and the sshd configuration it starts with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from generator.instance.bastion import ssh_key_secret_name
from generator.instance.security_groups import SSH_PORT
from tests.ssh_scripts import FAKES, KEY, KEY_BODY, PLACEHOLDER, install_library, make_fakes, mode, sshd_options

REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO / "container" / "bastion"
SCRIPT = IMAGE / "start.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the start script needs bash")


class Run(NamedTuple):
    root: Path
    fakes: Path
    result: subprocess.CompletedProcess[str]
    commands: list[str]

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr

    @property
    def authorized_keys(self) -> Path:
        return self.root / "home/admin/.ssh/authorized_keys"


def start(tmp_path: Path, key: str | None, fakes: dict[str, str] = FAKES, **env: str) -> Run:
    root = tmp_path / "root"
    for folder in ("etc/ssh", "home/admin", "run"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "etc/ssh/sshd_config").write_text((IMAGE / "sshd_config").read_text(encoding="utf-8"), encoding="utf-8")
    install_library(root, IMAGE)
    log = tmp_path / "commands.log"
    log.write_text("", encoding="utf-8")
    fake_dir = make_fakes(tmp_path, fakes)
    env = {"PATH": f"{fake_dir}:{os.environ['PATH']}", "BASTION_INIT_ROOT": str(root), "FAKE_LOG": str(log), **env}
    if key is not None:
        env["SSH_PUBLIC_KEY"] = key
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)
    return Run(root, fake_dir, result, log.read_text(encoding="utf-8").splitlines())


def assert_sshd_started(run: Run) -> None:
    assert run.result.returncode == 0, run.output
    sshd = [line for line in run.commands if line.split()[0].endswith("sshd")]
    # By absolute path (sshd re-executes itself), in the foreground, logging to stderr.
    assert sshd == [f"{run.fakes}/sshd -D -e -f {run.root}/etc/ssh/sshd_config"]


def test_a_valid_key_becomes_the_only_authorized_key(tmp_path: Path) -> None:
    run = start(tmp_path, KEY)
    assert_sshd_started(run)
    assert run.authorized_keys.read_text(encoding="utf-8") == KEY + "\n"
    assert mode(run.authorized_keys) == 0o600
    assert mode(run.authorized_keys.parent) == 0o700
    ssh_dir = run.root / "home/admin/.ssh"
    assert f"chown admin:admin {ssh_dir}" in run.commands
    assert any(line.startswith(f"chown admin:admin {ssh_dir}/.authorized_keys.") for line in run.commands)
    assert list(ssh_dir.iterdir()) == [run.authorized_keys], "the temporary file is gone"
    assert "authorized ssh-ed25519 key 'alice@laptop' for user admin" in run.result.stderr


def test_the_key_body_is_never_printed(tmp_path: Path) -> None:
    run = start(tmp_path, KEY)
    assert KEY_BODY not in run.output
    assert KEY_BODY not in "\n".join(run.commands)


def test_a_pasted_key_with_trailing_newline_and_carriage_return_is_trimmed(tmp_path: Path) -> None:
    run = start(tmp_path, f"  {KEY}\r\n")
    assert_sshd_started(run)
    assert run.authorized_keys.read_text(encoding="utf-8") == KEY + "\n"


@pytest.mark.parametrize(
    "value",
    [
        PLACEHOLDER,
        "",
        f"ssh-ed25519 {KEY_BODY[:20]}BROKEN alice@laptop",  # looks like a key, ssh-keygen disagrees
        f'command="/bin/sh",no-pty {KEY}',  # options must not come from the secret
        f"{KEY}\n{KEY.replace('alice', 'mallory')}",  # one key only
        f"ssh-dss {KEY_BODY} alice@laptop",  # a type sshd no longer accepts
    ],
    ids=["placeholder", "empty", "not-a-key", "options", "two-keys", "dsa"],
)
def test_anything_else_leaves_sshd_running_with_no_authorized_key(tmp_path: Path, value: str) -> None:
    stale = tmp_path / "root/home/admin/.ssh/authorized_keys"
    stale.parent.mkdir(parents=True)
    stale.write_text(KEY + "\n", encoding="utf-8")
    run = start(tmp_path, value)
    assert_sshd_started(run)
    assert not run.authorized_keys.exists()
    assert list(run.authorized_keys.parent.iterdir()) == []
    assert "ERROR" in run.result.stderr
    assert ssh_key_secret_name("<instance>") in run.result.stderr
    if value:
        assert value.splitlines()[0] not in run.output


def test_the_error_names_the_instance_secret_when_the_instance_is_known(tmp_path: Path) -> None:
    run = start(tmp_path, PLACEHOLDER, RSTUDIO_INSTANCE="team")
    assert ssh_key_secret_name("team") in run.result.stderr
    assert PLACEHOLDER not in run.output


def test_a_missing_variable_fails_loudly_without_starting_sshd(tmp_path: Path) -> None:
    run = start(tmp_path, None)
    assert run.result.returncode != 0
    assert "SSH_PUBLIC_KEY" in run.result.stderr
    assert not any(line.split()[0].endswith("sshd") for line in run.commands)


def test_host_keys_are_made_per_task_and_kept_when_present(tmp_path: Path) -> None:
    run = start(tmp_path, KEY)
    made = [line for line in run.commands if line.startswith("ssh-keygen -q -t")]
    assert made == [f"ssh-keygen -q -t {kind} -N  -C  -f {run.root}/etc/ssh/ssh_host_{kind}_key"
                    for kind in ("ed25519", "rsa")]  # fmt: skip
    assert "host key 256 SHA256:fakefingerprint (ED25519)" in run.result.stderr
    assert mode(run.root / "run/sshd") == 0o755

    again = start(tmp_path, KEY)
    assert_sshd_started(again)
    assert not [line for line in again.commands if line.startswith("ssh-keygen -q -t")]


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs the real ssh-keygen")
def test_the_real_ssh_keygen_accepts_the_key_and_rejects_a_truncated_one(tmp_path: Path) -> None:
    fakes = {name: body for name, body in FAKES.items() if name != "ssh-keygen"}
    good = start(tmp_path / "good", KEY, fakes)
    assert good.authorized_keys.read_text(encoding="utf-8") == KEY + "\n"
    bad = start(tmp_path / "bad", f"ssh-ed25519 {KEY_BODY[:-8]} alice@laptop", fakes)
    assert_sshd_started(bad)
    assert not bad.authorized_keys.exists()




def test_sshd_config_allows_key_only_login_for_admin() -> None:
    options = sshd_options(IMAGE / "sshd_config")
    assert options["port"] == str(SSH_PORT)
    assert options["allowusers"] == "admin"
    assert options["permitrootlogin"] == "no"
    assert options["passwordauthentication"] == "no"
    assert options["kbdinteractiveauthentication"] == "no"
    assert options["authenticationmethods"] == "publickey"
    assert options["permitemptypasswords"] == "no"
    assert "include" not in options, "a drop-in could override the settings above"


def test_sshd_config_uses_modern_algorithms_and_forwards_only_to_ssh() -> None:
    options = sshd_options(IMAGE / "sshd_config")
    kex, ciphers, macs = (options[name].split(",") for name in ("kexalgorithms", "ciphers", "macs"))
    assert "curve25519-sha256" in kex and not [k for k in kex if "sha1" in k or "group14" in k]
    assert not [c for c in ciphers if c.endswith("-cbc") or c.startswith("3des")]
    assert macs and all(mac.endswith("-etm@openssh.com") for mac in macs)
    assert options["allowtcpforwarding"] == "local"
    assert options["permitopen"] == f"*:{SSH_PORT}"
    assert options["x11forwarding"] == options["allowagentforwarding"] == options["permittunnel"] == "no"


@pytest.mark.skipif(not Path("/usr/sbin/sshd").exists() or not Path("/run/sshd").is_dir(),
                    reason="needs OpenSSH's sshd and its privilege separation directory")  # fmt: skip
def test_the_real_sshd_accepts_the_config(tmp_path: Path) -> None:
    host_key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    lines = (IMAGE / "sshd_config").read_text(encoding="utf-8").splitlines()
    config = tmp_path / "sshd_config"
    config.write_text("\n".join(line for line in lines if not line.startswith("HostKey "))
                      + f"\nHostKey {host_key}\n", encoding="utf-8")  # fmt: skip
    result = subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(config)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_dockerfile_pins_the_base_and_ships_no_host_keys() -> None:
    dockerfile = (IMAGE / "Dockerfile").read_text(encoding="utf-8")
    froms = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert len(froms) == 1 and froms[0].startswith("FROM debian:12.") and froms[0].endswith("-slim")
    assert "rm -f /etc/ssh/ssh_host_*" in dockerfile
    assert "usermod --password '*' admin" in dockerfile
    assert "COPY sshd_config /etc/ssh/sshd_config" in dockerfile
    assert "COPY --chmod=0644 ssh_setup.sh /usr/local/lib/rstudio-fargate/ssh_setup.sh" in dockerfile
    assert 'CMD ["/usr/local/sbin/start.sh"]' in dockerfile
    assert f"EXPOSE {SSH_PORT}" in dockerfile
