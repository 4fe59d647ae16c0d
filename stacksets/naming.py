"""Names shared by the generator and the orchestrator: StackSets, template files and the deploy reader role."""

from __future__ import annotations

import re

PREFIX = "rstudio"
BOOTSTRAP = f"{PREFIX}-bootstrap"
CENTRAL = f"{PREFIX}-central"
DATA = f"{PREFIX}-data"
# The CloudWatch Logs resource policy of every instance account and Region (generator/stacks/logs.py).
LOGS = f"{PREFIX}-logs"
DEPLOY_READER_ROLE = f"{PREFIX}-deploy-reader"

# The images, each built from container/<image>/ and pushed to the central account's ECR repository of the same name.
IMAGES = ("rstudio", "shiny", "bastion")
# The image build in rstudio-central: `deploy.py images` assumes the publisher role (trusted by the admin account) to
# upload build contexts to the bucket and start the CodeBuild project.
IMAGE_BUILD_PROJECT = f"{PREFIX}-images"
IMAGE_PUBLISHER_ROLE = f"{PREFIX}-image-publisher"
# The plan step between rstudio-central and the instance StackSets that makes sure every pinned image tag is in ECR.
IMAGE_STEP = f"{PREFIX}-images"
# Holds {"username": ..., "token": ...} of a Docker Hub account, filled in by the platform team: anonymous pulls from
# CodeBuild's shared addresses run into Docker Hub's rate limit.
DOCKER_HUB_SECRET = f"{PREFIX}/central/docker-hub"


# The instance template's switch for its load balancer's deletion protection: on by default, and turned off by
# `deploy.py destroy` (a StackSet update) as the first step of removing an instance.
DELETION_PROTECTION_PARAMETER = "LoadBalancerDeletionProtection"
# The instance template's outputs that `deploy` reads after an instance changed: the welcome e-mails that did not go
# out (JSON, reason -> {user: address}) and the function that resends them.
WELCOME_MAIL_UNDELIVERED = "WelcomeMailUndelivered"
WELCOME_MAIL_FUNCTION = "WelcomeMailFunction"


def image_build_bucket(central_account: str, region: str) -> str:
    return f"{PREFIX}-image-builds-{central_account}-{region}"


def build_context_key(image: str, tag: str) -> str:
    """Where `deploy.py images` uploads an image's build context (a zip of container/<image>/) for CodeBuild."""
    return f"contexts/{image}/{tag}.zip"


def instance_stackset(instance: str) -> str:
    return f"{PREFIX}-{instance}"


def zone_stackset(instance: str) -> str:
    return f"{PREFIX}-{instance}-zone"


def delegation_stackset(instance: str) -> str:
    """The NS records delegating the instance's zone, in the network account: one per instance, so one instance's
    zone that fails never holds up another's delegation."""
    return f"{PREFIX}-{instance}-delegation"


def instance_data_stackset(instance: str) -> str:
    return f"{PREFIX}-{instance}-data"


# The storage stack's outputs that the compute template takes as parameters of the same name: the orchestrator
# passes them on (generator/stacks/storage.py writes them, generator/instance/secrets.py declares the parameters).
KEY_ARN = "InstanceKeyArn"
FILE_SYSTEM_ID = "FileSystemId"
PASSWORD_SECRETS = "PasswordSecretArns"  # comma-separated, users sorted
COOKIE_KEY_SECRETS = "CookieKeySecretArns"  # comma-separated, in the order of the instance's RStudio servers
BASTION_KEY_SECRET = "BastionKeySecretArn"  # only with a bastion


def storage_outputs(bastion: bool) -> list[str]:
    return [KEY_ARN, FILE_SYSTEM_ID, PASSWORD_SECRETS, COOKIE_KEY_SECRETS] + ([BASTION_KEY_SECRET] if bastion else [])


def storage_stackset(instance: str) -> str:
    """What holds the instance's own data in its account (key, file system, secrets): kept when compute is not."""
    return f"{PREFIX}-{instance}-storage"


def all_stackset_names(instances: list[str]) -> list[str]:
    """Every StackSet a configuration implies, in a stable order (duplicates kept so callers can detect them)."""
    names = [BOOTSTRAP, CENTRAL, DATA, LOGS]
    for instance in instances:
        names += [zone_stackset(instance), delegation_stackset(instance), instance_data_stackset(instance),
                  storage_stackset(instance), instance_stackset(instance)]
    return names


# What each StackSet is, for settings that differ by kind (stacksets.rollout.overrides): the four shared ones and the
# five of every instance ("compute" is rstudio-<instance>, "instance-data" its StackSet in the data account).
SHARED_KINDS = {BOOTSTRAP: "bootstrap", CENTRAL: "central", DATA: "data", LOGS: "logs"}
KINDS = ("bootstrap", "central", "data", "logs", "zone", "delegation", "instance-data", "storage", "compute")


def stackset_kinds(instances: list[str]) -> dict[str, str]:
    """Every StackSet of a config with these instances -> its kind (one of KINDS)."""
    kinds = dict(SHARED_KINDS)
    for name in instances:
        kinds[zone_stackset(name)] = "zone"
        kinds[delegation_stackset(name)] = "delegation"
        kinds[instance_data_stackset(name)] = "instance-data"
        kinds[storage_stackset(name)] = "storage"
        kinds[instance_stackset(name)] = "compute"
    return kinds


def template_file(stackset: str) -> str:
    return f"{stackset}.yaml"


def instance_zone_name(instance: str, subdomain: str, base_domain: str) -> str:
    return f"{instance}.{subdomain}.{base_domain}"


def logical_id(*parts: str) -> str:
    """`logical_id("prod", "upload", "Bucket")` -> "ProdUploadBucket" (alphanumeric, as CloudFormation needs)."""
    words = []
    for part in parts:
        for word in re.split(r"[^A-Za-z0-9]+", part):
            if word:
                words.append(word[0].upper() + word[1:])
    result = "".join(words)
    if not result or not result[0].isalpha():
        raise ValueError(f"cannot build a logical id from {parts!r}")
    return result
