"""The Shiny image: the start-up check of the app folder, run with bash against a scratch root, and the Shiny Server
configuration checked against what the templates expect of it (port, ALB idle timeout, EFS folders)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from generator.instance.ingress import IDLE_TIMEOUT_SECONDS
from generator.instance.security_groups import SHINY_PORT
from generator.instance.storage import SHINY_APPS_GID, SHINY_UID, shiny_mounts

REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO / "container" / "shiny"
SCRIPT = IMAGE / "cont-init.d" / "10_check_site_dir"
CONFIG = IMAGE / "shiny-server.conf"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the start-up script needs bash")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving files other owners needs root")


def check(root: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "SHINY_INIT_ROOT": str(root)}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False)


def site(tmp_path: Path, mode: int, uid: int | None = None, gid: int | None = None, apps: int = 0) -> Path:
    folder = tmp_path / "srv/shiny-server"
    folder.mkdir(parents=True)
    for n in range(apps):
        (folder / f"app{n}").mkdir()
    if uid is not None or gid is not None:
        os.chown(folder, -1 if uid is None else uid, -1 if gid is None else gid)
    folder.chmod(mode)
    return tmp_path


@as_root
def test_the_efs_app_folder_passes(tmp_path: Path) -> None:
    result = check(site(tmp_path, 0o3775, uid=0, gid=SHINY_APPS_GID, apps=2))
    assert result.returncode == 0, result.stderr
    assert "serving /srv/shiny-server (2 entries)" in result.stdout


@as_root
@pytest.mark.parametrize(
    ("mode", "uid", "gid", "readable"),
    [
        (0o3750, 0, SHINY_APPS_GID, True),
        (0o700, SHINY_UID, 0, True),
        (0o750, 0, SHINY_UID, True),  # shiny's own primary group
        (0o755, 0, 0, True),
        (0o3770, 0, 0, False),  # root's group only: the EFS folder was created without the shiny-apps group
        (0o705, 0, SHINY_APPS_GID, False),  # the group bits apply to members, whatever "others" may do
        (0o750, 0, 0, False),
        (0o000, 0, 0, False),
    ],
    ids=["efs-folder", "owned-by-shiny", "shiny-group", "world-readable", "root-group", "group-denied", "root-only",
         "no-access"],
)
def test_readability_follows_owner_group_and_mode(tmp_path: Path, mode: int, uid: int, gid: int,
                                                  readable: bool) -> None:  # fmt: skip
    result = check(site(tmp_path, mode, uid=uid, gid=gid))
    assert (result.returncode == 0) is readable, result.stderr
    if not readable:
        assert "not readable by user shiny" in result.stderr
        assert f"{uid} {gid} {mode:o}" in result.stderr


def test_an_unreadable_app_folder_fails_loudly(tmp_path: Path) -> None:
    # Owned by whoever runs the test, who is neither shiny nor in shiny-apps: only the "others" bits count.
    result = check(site(tmp_path, 0o750))
    assert result.returncode != 0
    assert "/srv/shiny-server is not readable by user shiny" in result.stderr


def test_a_world_readable_app_folder_passes_for_any_owner(tmp_path: Path) -> None:
    assert check(site(tmp_path, 0o755)).returncode == 0


def test_a_missing_app_folder_fails_loudly(tmp_path: Path) -> None:
    result = check(tmp_path)
    assert result.returncode != 0
    assert "app folder /srv/shiny-server is missing" in result.stderr


def test_a_file_in_place_of_the_app_folder_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv/shiny-server").write_text("", encoding="utf-8")
    result = check(tmp_path)
    assert result.returncode != 0
    assert "not a directory" in result.stderr


def directives() -> dict[str, str]:
    """Every `name value;` line of the config, keyed by name (each appears once)."""
    found: dict[str, str] = {}
    for line in CONFIG.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"\s*([a-z_]+)\s+([^;{}#]+);\s*", line)
        if match:
            assert match[1] not in found, f"{match[1]} appears twice"
            found[match[1]] = match[2].strip()
    return found


def test_config_serves_the_efs_folders_on_the_task_port() -> None:
    config = directives()
    mounts = {mount.path: mount for mount in shiny_mounts()}
    assert config["listen"] == str(SHINY_PORT)
    assert config["site_dir"] == "/srv/shiny-server" and mounts["/srv/shiny-server"].read_only
    assert config["run_as"] == "shiny"
    # Bookmarks on the read-write EFS home, so that every replica restores them.
    assert config["bookmark_state_dir"].startswith("/home/shiny/") and not mounts["/home/shiny"].read_only


def test_config_logs_to_the_container_and_keeps_no_log_files() -> None:
    config = directives()
    assert config["preserve_logs"] == "false"
    assert config["log_dir"] == "/var/log/shiny-server"
    assert config["sanitize_errors"] == "on"
    assert config["directory_index"] == "off"


def test_config_timeouts_fit_the_load_balancer() -> None:
    config = directives()
    # Heartbeats below common proxy idle limits (60 s); Node's keep-alive outlives the ALB's, so the ALB closes first.
    assert int(config["sockjs_heartbeat_delay"]) < 60
    assert int(config["http_keepalive_timeout"]) > IDLE_TIMEOUT_SECONDS
    assert int(config["app_init_timeout"]) >= 60
    assert int(config["app_idle_timeout"]) >= 60


def test_config_is_rendered_from_config_yaml() -> None:
    assert CONFIG.read_text(encoding="utf-8").startswith("# Generated by `python deploy.py render` from config.yaml")


def test_dockerfile_pins_rocker_shiny_and_fixes_the_efs_ids() -> None:
    dockerfile = (IMAGE / "Dockerfile").read_text(encoding="utf-8")
    froms = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert len(froms) == 1 and re.fullmatch(r"FROM rocker/shiny:4\.4\.\d+", froms[0])
    assert f"groupmod --gid {SHINY_UID} shiny" in dockerfile
    assert f"usermod --uid {SHINY_UID} shiny" in dockerfile
    assert f"groupadd --gid {SHINY_APPS_GID} shiny-apps" in dockerfile
    assert "usermod --append --groups shiny-apps" in dockerfile
    assert "install -d -o root -g shiny-apps -m 3775 /srv/shiny-server" in dockerfile
    assert "S6_BEHAVIOUR_IF_STAGE2_FAILS=2" in dockerfile, "a failed check must stop the container"
    assert "COPY shiny-server.conf /etc/shiny-server/shiny-server.conf" in dockerfile
    assert "COPY --chmod=0755 cont-init.d/10_check_site_dir /etc/cont-init.d/10_check_site_dir" in dockerfile
    assert f"EXPOSE {SHINY_PORT}" in dockerfile
    instructions = [line.split()[0] for line in dockerfile.splitlines() if line and not line.startswith(("#", " "))]
    assert not {"CMD", "ENTRYPOINT", "USER"} & set(instructions), "rocker's /init must stay the command, run as root"


def test_script_ids_match_the_efs_design() -> None:
    script = SCRIPT.read_text(encoding="utf-8")
    assert f"shiny_uid={SHINY_UID}" in script and f"apps_gid={SHINY_APPS_GID}" in script
