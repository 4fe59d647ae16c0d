"""RStudio secrets: one generated, KMS-encrypted, retained password per Linux user and one cookie key per server."""

from __future__ import annotations

from typing import Any

from generator.instance.secrets import RStudioSecrets, add_rstudio_secrets
from stacksets.config import parse_config
from tests.instance_parts import groundwork


def build_secrets(cfg, instance: str) -> tuple[RStudioSecrets, dict[str, Any]]:
    g = groundwork(cfg, instance)
    secrets = add_rstudio_secrets(g.template, cfg, instance, g.key)
    resources = g.template.to_dict()["Resources"]
    return secrets, {name: r for name, r in resources.items() if r["Type"] == "AWS::SecretsManager::Secret"}


def test_shared_mode_has_a_password_per_user_plus_the_admin_and_one_cookie_key(cfg):
    secrets, found = build_secrets(cfg, "dev")
    assert sorted(secrets.passwords) == ["dana", "erik", "rstudio"]
    assert list(secrets.cookie_keys) == ["shared"]
    assert {r["Properties"]["Name"] for r in found.values()} == {
        "rstudio/dev/users/dana/password", "rstudio/dev/users/erik/password", "rstudio/dev/users/rstudio/password",
        "rstudio/dev/rstudio/secure-cookie-key",
    }  # fmt: skip


def test_per_user_mode_has_a_password_and_a_cookie_key_per_user_and_no_admin(cfg):
    secrets, found = build_secrets(cfg, "prod")
    assert sorted(secrets.passwords) == sorted(secrets.cookie_keys) == ["alice", "bob", "chen"]
    assert {r["Properties"]["Name"] for r in found.values()} == {
        *(f"rstudio/prod/users/{user}/password" for user in ("alice", "bob", "chen")),
        *(f"rstudio/prod/rstudio-{user}/secure-cookie-key" for user in ("alice", "bob", "chen")),
    }
    assert secrets.cookie_keys["alice"].title == "AliceRStudioCookieKey"


def test_every_secret_is_generated_encrypted_with_the_instance_key_and_retained(cfg):
    for instance in ("dev", "prod"):
        for name, secret in build_secrets(cfg, instance)[1].items():
            props = secret["Properties"]
            assert secret["DeletionPolicy"] == secret["UpdateReplacePolicy"] == "Retain", name
            assert props["KmsKeyId"] == {"Fn::GetAtt": ["InstanceKey", "Arn"]}, name
            assert "SecretString" not in props, name  # the value never passes through the template
            generated = props["GenerateSecretString"]
            # Letters and digits only: the value goes through env injection, chpasswd and shell scripts unquoted.
            assert generated["ExcludePunctuation"] is True and "IncludeSpace" not in generated, name
            assert "SecretStringTemplate" not in generated  # a plain string, as ECS injects it whole


def test_cookie_keys_are_longer_than_passwords(cfg):
    _, found = build_secrets(cfg, "prod")
    lengths = {name: r["Properties"]["GenerateSecretString"]["PasswordLength"] for name, r in found.items()}
    assert lengths["AlicePassword"] >= 20
    assert lengths["AliceRStudioCookieKey"] >= 64


def test_adding_a_user_leaves_the_other_users_secrets_untouched(example_data, cfg):
    example_data["instances"]["prod"]["users"]["anna"] = {"email": "anna@example.com", "uid": 3004}
    _, before = build_secrets(cfg, "prod")
    _, after = build_secrets(parse_config(example_data), "prod")
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == ["AnnaPassword", "AnnaRStudioCookieKey"]
