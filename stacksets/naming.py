"""Names shared by the generator and the orchestrator: StackSets, template files and the deploy reader role."""

from __future__ import annotations

import re

PREFIX = "rstudio"
BOOTSTRAP = f"{PREFIX}-bootstrap"
CENTRAL = f"{PREFIX}-central"
DATA = f"{PREFIX}-data"
NETWORK = f"{PREFIX}-network"
DEPLOY_READER_ROLE = f"{PREFIX}-deploy-reader"


def instance_stackset(instance: str) -> str:
    return f"{PREFIX}-{instance}"


def zone_stackset(instance: str) -> str:
    return f"{PREFIX}-{instance}-zone"


def instance_data_stackset(instance: str) -> str:
    return f"{PREFIX}-{instance}-data"


def all_stackset_names(instances: list[str]) -> list[str]:
    """Every StackSet a configuration implies, in a stable order (duplicates kept so callers can detect them)."""
    names = [BOOTSTRAP, CENTRAL, DATA, NETWORK]
    for instance in instances:
        names += [zone_stackset(instance), instance_data_stackset(instance), instance_stackset(instance)]
    return names


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
