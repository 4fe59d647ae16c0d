"""What the tests of the images' SSH start-up scripts share (the bastion's start.sh, the RStudio and Shiny images'
ssh/init.sh and ssh/run.sh): a real test key, the placeholder, fake system commands and a scratch root.

The fakes log their arguments; the fake sshd ends the run, as the real one would take over the process. The test key
is a real OpenSSH public key (its private half was thrown away): its body must never show up in any output.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

from generator.instance.ssh import SSH_SETUP_LIBRARY

KEY_BODY = "AAAAC3NzaC1lZDI1NTE5AAAAILY+M3u1fxMorOX8jh5K2Vjy9Nvr4mrqEPtyr1/Mgvpr"
KEY = f"ssh-ed25519 {KEY_BODY} alice@laptop"
# What the stack puts into the secret until the platform team replaces it: 32 letters and digits.
PLACEHOLDER = "Zq8xK2mP4vN7bR1tY6wE3uI9oA5sD0fG"

LOG_ARGS = 'printf "%s\\n" "$(basename "$0") $*" >>"$FAKE_LOG"'
FAKES = {
    # -l accepts anything but a key containing BROKEN (a key that matches the pattern but is not a key); -t makes a
    # dummy key pair.
    "ssh-keygen": f"""
{LOG_ARGS}
while [[ $# -gt 0 ]]; do case "$1" in -f) file="$2"; shift 2 ;; -l) list=1; shift ;; *) shift ;; esac; done
if [[ -n "${{list:-}}" ]]; then
    grep -q BROKEN "$file" && exit 255
    echo "256 SHA256:fakefingerprint (ED25519)"
else
    echo private >"$file"; echo "ssh-ed25519 AAAAfake" >"$file.pub"
fi
""",
    "sshd": 'printf "%s\\n" "$0 $*" >>"$FAKE_LOG"',
    "chown": LOG_ARGS,
    # s6's control tool: logs the flags and the service directory it was run in.
    "s6-svc": 'printf "%s\\n" "s6-svc $* in $PWD" >>"$FAKE_LOG"',
}


def make_fakes(tmp_path: Path, fakes: dict[str, str] = FAKES) -> Path:
    folder = tmp_path / "fakes"
    folder.mkdir(exist_ok=True)
    for name, body in fakes.items():
        path = folder / name
        path.write_text(f"#!/bin/bash\nset -euo pipefail\n{body}", encoding="utf-8")
        path.chmod(0o755)
    return folder


def install_library(root: Path, image: Path) -> None:
    """Puts the image's ssh_setup.sh where its Dockerfile does, under the scratch root."""
    source = image / "ssh_setup.sh" if (image / "ssh_setup.sh").is_file() else image / "ssh" / "ssh_setup.sh"
    target = root / SSH_SETUP_LIBRARY.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sshd_options(config: Path) -> dict[str, str]:
    """The options of an sshd_config, names lower-cased, with the first value of each (what sshd takes)."""
    options: dict[str, str] = {}
    for line in config.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.strip().partition(" ")
            options.setdefault(name.lower(), value.strip())
    return options
