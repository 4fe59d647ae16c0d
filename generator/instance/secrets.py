"""The instance's stored data as the compute stack sees it: parameters filled from the storage stack's outputs.

The key, the file system and the secrets live in the `rstudio-<instance>-storage` StackSet
(generator/stacks/storage.py), so destroying and rebuilding the compute finds the same homes and passwords. The
orchestrator reads that stack's outputs and passes them in here; the secret lists are comma-separated in an order
both templates derive from the same config (users sorted, servers in rstudio_servers order), so `Fn::Select` picks
each one without a parameter per user.
"""

from __future__ import annotations

from typing import NamedTuple

from troposphere import AWSHelperFn, Parameter, Ref, Select, Sub, Template

from generator.instance.servers import rstudio_servers
from generator.instance.storage import FileSystemRef
from generator.stacks.storage import password_users
from stacksets.config import Config
from stacksets.naming import (
    BASTION_KEY_SECRET,
    COOKIE_KEY_SECRETS,
    FILE_SYSTEM_ID,
    KEY_ARN,
    PASSWORD_SECRETS,
    storage_stackset,
)


class RStudioSecrets(NamedTuple):
    passwords: dict[str, AWSHelperFn]
    """Linux user -> the ARN of its password secret."""
    cookie_keys: dict[str, AWSHelperFn]
    """RStudioServer.key -> the ARN of that server's secure-cookie key secret."""


class StoredData(NamedTuple):
    key: Parameter
    """The instance key's ARN."""
    file_system: FileSystemRef
    secrets: RStudioSecrets
    bastion_key: AWSHelperFn | None
    """The ARN of the bastion admin's SSH key secret, when the instance has a bastion."""


def add_stored_data(t: Template, cfg: Config, instance: str) -> StoredData:
    source = f"the {storage_stackset(instance)} StackSet's output of the same name"

    def parameter(name: str, kind: str, description: str) -> Parameter:
        return t.add_parameter(Parameter(name, Type=kind, Description=f"{description}: {source}"))

    key = parameter(KEY_ARN, "String", "ARN of the instance KMS key")
    file_system_id = parameter(FILE_SYSTEM_ID, "String", "The instance's file system")
    passwords = parameter(PASSWORD_SECRETS, "CommaDelimitedList", "Login password secrets, users sorted")
    cookie_keys = parameter(COOKIE_KEY_SECRETS, "CommaDelimitedList", "Secure-cookie key secrets, per server")
    secrets = RStudioSecrets(
        {user: Select(i, Ref(passwords)) for i, user in enumerate(password_users(cfg, instance))},
        {server.key: Select(i, Ref(cookie_keys)) for i, server in enumerate(rstudio_servers(cfg, instance))},
    )
    bastion_key = None
    if cfg.instances[instance].bastion.enabled:
        bastion_key = Ref(parameter(BASTION_KEY_SECRET, "String", "The bastion admin's SSH public key secret"))
    arn = Sub("arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:file-system/${Id}",
              Id=Ref(file_system_id))  # fmt: skip
    return StoredData(key, FileSystemRef(Ref(file_system_id), arn), secrets, bastion_key)
