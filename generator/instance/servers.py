"""Which RStudio servers an instance runs, and the host names everything else (ALB, ACM, DNS, services) is keyed by.

Shared mode runs one server at `rstudio.<zone>` for every user plus the built-in `rstudio` admin user; per-user mode
runs one server per user at `<user>.rstudio.<zone>`, with only that user on it. Logical ids derive from the server's
key (the user name, or nothing for the shared server), so adding a user never renames another user's resources.
"""

from __future__ import annotations

from typing import NamedTuple

from generator.naming import RSTUDIO_TASK_ROLE, logical_id, role_name, rstudio_user_role
from stacksets import naming
from stacksets.config import Config, Mode

SHARED_ADMIN_USER = "rstudio"


class RStudioServer(NamedTuple):
    key: str
    """"shared" or the user's name."""
    host: str
    users: tuple[str, ...]
    """Linux users with a login on this server, sorted."""

    def id(self, *parts: str) -> str:
        """Logical id of one of this server's resources: RStudioService, AliceRStudioService, ..."""
        return logical_id("RStudio", *parts) if self.key == "shared" else logical_id(self.key, "RStudio", *parts)

    @property
    def name(self) -> str:
        """Short physical-name part: "rstudio" or "rstudio-alice"."""
        return "rstudio" if self.key == "shared" else f"rstudio-{self.key}"

    def task_role_name(self, instance: str) -> str:
        """Fixed, because the storage StackSet's file-system policy and the data account's Athena role name it."""
        return role_name(instance, RSTUDIO_TASK_ROLE if self.key == "shared" else rstudio_user_role(self.key))


def zone_name(cfg: Config, instance: str) -> str:
    return naming.instance_zone_name(instance, cfg.dns.subdomain, cfg.dns.base_domain)


def rstudio_servers(cfg: Config, instance: str) -> list[RStudioServer]:
    settings = cfg.instances[instance]
    zone = zone_name(cfg, instance)
    if settings.rstudio.mode is Mode.shared:
        users = tuple(sorted([*settings.users, SHARED_ADMIN_USER]))
        return [RStudioServer("shared", f"rstudio.{zone}", users)]
    return [RStudioServer(user, f"{user}.rstudio.{zone}", (user,)) for user in sorted(settings.users)]


def shiny_host(cfg: Config, instance: str) -> str:
    return f"shiny.{zone_name(cfg, instance)}"
