"""SSH for the platform team: one admin account, the same on the bastion and behind it in the RStudio and Shiny tasks.

    ssh -J admin@<bastion public IP> admin@<task private IP>

The one key in the bastion key secret (generator/instance/bastion.py) opens both hops: ECS injects it as
SSH_PUBLIC_KEY into the bastion and, when the instance has a bastion, into every RStudio and Shiny container
(rstudio.py, shiny.py), whose sshd accepts it for ADMIN_USER only. Without a bastion the tasks get no SSH_PUBLIC_KEY
and run no sshd at all. These constants are the one source of the account: render writes ADMIN_USER into every
sshd_config (generator/images/shared/sshd_config.j2), tests check that the Dockerfiles create the account with these
values, and tools that open a session (`deploy.py connect --ssh`) take the user name from here.

In the RStudio and Shiny images the account is a system account (ADMIN_UID below 1000), because 00_rstudio_users
locks every account from uid 1000 up that the config does not list, and RStudio users have uids of 2000 or more;
"admin" is a reserved user name in the config (stacksets/config.py RESERVED_USER_NAMES), so no RStudio user can take
it. Its home is ADMIN_HOME, on the task's own disk: /home is the EFS file system (or one user's home on it). The
account has no sudo and no group that can write anything shared: it is a member of "adm" only (Debian's group for
reading /var/log). It can list /home and the EFS mounts (owners, modes, `df`), read the world-readable app folder
and the task's processes, but not the users' 0700 homes: root in a task could mount every home with the task role
(generator/instance/rstudio.py). Root work goes through ECS Exec, which logs every session to the exec log group.
"""

from __future__ import annotations

from troposphere import AWSHelperFn

ADMIN_USER = "admin"
ADMIN_UID = 901
ADMIN_HOME = "/var/lib/admin"
# Debian's group for reading system logs; nothing under /var/log is writable by it.
ADMIN_GROUPS = ("adm",)
# Where each image installs the shell functions shared with the bastion (generator/images/shared/ssh_setup.sh).
SSH_SETUP_LIBRARY = "/usr/local/lib/rstudio-fargate/ssh_setup.sh"
# Written by the RStudio and Shiny images' cont-init step when sshd is to run; the s6 service starts sshd only then.
SSHD_ENABLED_MARKER = "/run/rstudio-fargate/sshd-enabled"


def ssh_secret(key_secret: AWSHelperFn | None) -> dict[str, AWSHelperFn]:
    """The container secret an RStudio or Shiny container gets: the bastion key as SSH_PUBLIC_KEY, or nothing when the
    instance has no bastion (and so no sshd runs)."""
    return {"SSH_PUBLIC_KEY": key_secret} if key_secret is not None else {}
