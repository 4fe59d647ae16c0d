"""The storage StackSet: key, file system and secrets, kept apart from the compute, and handed to it by outputs."""

from __future__ import annotations

from typing import Any

import pytest

from generator.common import new_template
from generator.instance.secrets import add_stored_data
from generator.stacks import instance, storage
from stacksets import naming
from stacksets.config import parse_config
from tests.instance_parts import IMAGE_TAGS


def resources(cfg, name: str) -> dict[str, Any]:
    return storage.build(cfg, name).to_dict()["Resources"]


def secrets(cfg, name: str) -> dict[str, Any]:
    return {k: r for k, r in resources(cfg, name).items() if r["Type"] == "AWS::SecretsManager::Secret"}


def test_shared_mode_has_a_password_per_user_plus_the_admin_and_one_cookie_key(cfg):
    assert {r["Properties"]["Name"] for r in secrets(cfg, "dev").values()} == {
        "rstudio/dev/users/dana/password", "rstudio/dev/users/erik/password", "rstudio/dev/users/rstudio/password",
        "rstudio/dev/rstudio/secure-cookie-key",
    }  # fmt: skip


def test_per_user_mode_has_a_password_and_a_cookie_key_per_user_and_the_bastion_key(cfg):
    assert {r["Properties"]["Name"] for r in secrets(cfg, "prod").values()} == {
        *(f"rstudio/prod/users/{user}/password" for user in ("alice", "bob", "chen")),
        *(f"rstudio/prod/rstudio-{user}/secure-cookie-key" for user in ("alice", "bob", "chen")),
        "rstudio/prod/bastion/ssh-public-key",
    }


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_what_holds_data_is_kept_on_deletion_but_not_after_a_failed_first_create(cfg, name):
    for logical, resource in resources(cfg, name).items():
        if resource["Type"] == "AWS::KMS::Alias":
            continue
        # RetainExceptOnCreate: a first create that rolls back leaves no fixed name behind to block the retry
        assert resource["DeletionPolicy"] == "RetainExceptOnCreate", logical
        assert resource["UpdateReplacePolicy"] == "Retain", logical


def test_every_secret_is_generated_and_encrypted_with_the_instance_key(cfg):
    for name, secret in secrets(cfg, "prod").items():
        props = secret["Properties"]
        assert props["KmsKeyId"] == {"Fn::GetAtt": ["InstanceKey", "Arn"]}, name
        assert "SecretString" not in props, name  # the value never passes through the template
        generated = props["GenerateSecretString"]
        # Letters and digits only: the value goes through env injection, chpasswd and shell scripts unquoted.
        assert generated["ExcludePunctuation"] is True and "IncludeSpace" not in generated, name


def test_cookie_keys_are_longer_than_passwords(cfg):
    found = secrets(cfg, "prod")
    assert found["AlicePassword"]["Properties"]["GenerateSecretString"]["PasswordLength"] >= 20
    assert found["AliceRStudioCookieKey"]["Properties"]["GenerateSecretString"]["PasswordLength"] >= 64


def test_adding_a_user_leaves_the_other_users_secrets_untouched(example_data, cfg):
    example_data["instances"]["prod"]["users"]["anna"] = {"email": "anna@example.com", "uid": 3004}
    before, after = secrets(cfg, "prod"), secrets(parse_config(example_data), "prod")
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == ["AnnaPassword", "AnnaRStudioCookieKey"]


def test_the_roles_the_file_system_policy_names_are_the_compute_roles_that_mount(cfg):
    compute = instance.build(cfg, "dev", IMAGE_TAGS).to_dict()["Resources"]
    names = {r["Properties"]["RoleName"] for r in compute.values()
             if r["Type"] == "AWS::IAM::Role" and "RoleName" in r["Properties"]}  # fmt: skip
    mounting = {compute[policy]["Properties"]["Roles"][0]["Ref"] for policy in
                ("RStudioTaskRoleEfsPolicy", "ShinyTaskRoleEfsPolicy", "DataSyncEfsRolePolicy")}  # fmt: skip
    assert {compute[role]["Properties"]["RoleName"] for role in mounting} == {
        "rstudio-dev-rstudio-task", "rstudio-dev-shiny-task", "rstudio-dev-datasync-efs"} <= names  # fmt: skip


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_the_compute_takes_exactly_the_storage_outputs_as_parameters(cfg, name):
    outputs = storage.build(cfg, name).to_dict()["Outputs"]
    parameters = instance.build(cfg, name, IMAGE_TAGS).to_dict()["Parameters"]
    expected = naming.storage_outputs(cfg.instances[name].bastion.enabled)
    assert sorted(outputs) == sorted(expected)
    assert set(expected) <= set(parameters)
    assert "Export" not in str(outputs)  # an export could not be removed while the compute imports it


def test_the_compute_picks_each_users_secret_at_the_position_storage_lists_it(cfg):
    """Both templates derive the order from the config; a mismatch would hand one user another's password."""
    listed = storage.build(cfg, "prod").to_dict()["Outputs"]["PasswordSecretArns"]["Value"]["Fn::Join"][1]
    order = [ref["Ref"] for ref in listed]
    template = instance.build(cfg, "prod", IMAGE_TAGS).to_dict()
    picked = add_stored_data(new_template("probe"), cfg, "prod").secrets.passwords
    for user, select in picked.items():
        assert order[select.to_dict()["Fn::Select"][0]] == naming.logical_id(user, "Password")
    assert "PasswordSecretArns" in template["Parameters"]
