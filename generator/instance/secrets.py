"""RStudio's secrets: a generated login password per Linux user and a secure-cookie key per RStudio server.

Secrets Manager generates the values at deploy time, so no template, parameter or log ever holds them. Each one is
encrypted with the instance key and has a stable name (generator/naming.py) so admins and the welcome e-mail (issue 5)
find it. Passwords are letters and digits only: they pass through ECS environment injection, chpasswd and shell
scripts in the image, where quotes, colons or backslashes would break or weaken them; 24 characters of 62 symbols
are still about 143 bits. The cookie key signs RStudio's login cookies: it must outlive any task (otherwise every
restart logs everybody out) and differ per server (otherwise a cookie from one user's server opens another's).

Both are retained: deleting the stack or a user must not silently destroy a password or log everybody out for good;
`destroy` lists them. A re-created stack then needs the old secrets deleted (or restored) first, since names are fixed.
There is no automatic rotation: ECS reads secrets only when a task starts, so rotating would need a rotation Lambda
and a forced redeployment that ends every R session; password changes belong to the welcome/reset flow (issue 5).
"""

from __future__ import annotations

from typing import NamedTuple

from troposphere import GetAtt, Template
from troposphere.kms import Key
from troposphere.secretsmanager import GenerateSecretString, Secret

from generator import naming
from generator.common import retain
from generator.instance.servers import rstudio_servers
from stacksets.config import Config

PASSWORD_LENGTH = 24
COOKIE_KEY_LENGTH = 64


class RStudioSecrets(NamedTuple):
    passwords: dict[str, Secret]
    """Linux user -> its password secret."""
    cookie_keys: dict[str, Secret]
    """RStudioServer.key -> that server's secure-cookie key secret."""


def _generated(t: Template, title: str, name: str, description: str, length: int, key: Key) -> Secret:
    secret = Secret(
        title, Name=name, Description=description, KmsKeyId=GetAtt(key, "Arn"),
        GenerateSecretString=GenerateSecretString(PasswordLength=length, ExcludePunctuation=True,
                                                  RequireEachIncludedType=True),
    )  # fmt: skip
    return t.add_resource(retain(secret))


def add_rstudio_secrets(t: Template, cfg: Config, instance: str, key: Key) -> RStudioSecrets:
    servers = rstudio_servers(cfg, instance)
    users = sorted({user for server in servers for user in server.users})
    passwords = {
        user: _generated(t, naming.logical_id(user, "Password"), naming.user_password_secret_name(instance, user),
                         f"RStudio login password of {user} on instance {instance}", PASSWORD_LENGTH, key)
        for user in users
    }  # fmt: skip
    cookie_keys = {
        server.key: _generated(t, server.id("CookieKey"), naming.cookie_key_secret_name(instance, server.name),
                               f"Secure-cookie key of {server.host}: signs its login cookies", COOKIE_KEY_LENGTH, key)
        for server in servers
    }  # fmt: skip
    return RStudioSecrets(passwords, cookie_keys)
