"""Preflight checks that need AWS but change nothing: is SES ready to send the welcome e-mails?

The welcome e-mail Lambda (generator/instance/welcome.py) sends from the instance account and region, so its sender
must be a verified SES identity there (the address itself or its domain). While that account's SES is in the
sandbox, every recipient must be verified too; production access lifts that for recipients only. A deployment whose
identities are not verified fails late, when the custom resource runs, so this check says it first. It replaces the
seed's check_ses_email.sh, which checked only the first account and never the sender.

SES is asked through the read-only reader role in each instance account (rstudio-bootstrap grants
ses:GetIdentityVerificationAttributes for exactly this).
"""

from __future__ import annotations

from typing import Any

from stacksets.aws import explain
from stacksets.config import Config

# GetIdentityVerificationAttributes accepts at most 100 identities per call.
BATCH = 100


def _roles(cfg: Config) -> dict[tuple[str, str, str], list[str]]:
    """(account, region, identity) -> what the identity is used as, in config terms."""
    roles: dict[tuple[str, str, str], list[str]] = {}
    for name, instance in sorted(cfg.instances.items()):
        mail = instance.welcome_email
        if not mail.enabled or mail.sender is None:
            continue
        where = (instance.account, cfg.region_of(name))
        roles.setdefault((*where, mail.sender), []).append(f"instances.{name}.welcome_email.sender")
        for user, settings in sorted(instance.users.items()):
            roles.setdefault((*where, settings.email), []).append(f"instances.{name}.users.{user}.email")
    return roles


def ses_identities(cfg: Config) -> list[tuple[str, str, str]]:
    """(account, region, e-mail address) of every welcome e-mail sender and recipient, sorted and unique."""
    return sorted(_roles(cfg))


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def _verified(client: Any, addresses: list[str]) -> set[str]:
    """The addresses SES would send as or to: verified themselves or through their domain."""
    wanted = sorted({*addresses, *(_domain(a) for a in addresses)})
    status: dict[str, str] = {}
    for start in range(0, len(wanted), BATCH):
        answer = client.get_identity_verification_attributes(Identities=wanted[start : start + BATCH])
        status.update({k: v.get("VerificationStatus", "") for k, v in answer["VerificationAttributes"].items()})
    return {a for a in addresses if "Success" in (status.get(a), status.get(_domain(a)))}


def check_ses(clients: Any, cfg: Config) -> list[str]:
    """Problems that would stop a welcome e-mail, one line each; empty when SES is ready everywhere."""
    roles = _roles(cfg)
    by_place: dict[tuple[str, str], list[str]] = {}
    for account, region, address in sorted(roles):
        by_place.setdefault((account, region), []).append(address)
    problems = []
    for (account, region), addresses in sorted(by_place.items()):
        try:
            verified = _verified(clients.reader(account, region, "ses"), addresses)
        except Exception as error:  # noqa: BLE001 - reported as a problem; the other accounts are still checked
            reason = str(explain(error))
            if "AccessDenied" in reason:
                reason += "; deploy the current rstudio-bootstrap template (its reader role reads SES verification)"
            problems.append(f"cannot check SES in account {account} ({region}): {reason}")
            continue
        for address in addresses:
            if address in verified:
                continue
            uses = roles[(account, region, address)]
            need = ("the sender must be verified" if any(use.endswith(".sender") for use in uses)
                    else "recipients must be verified while the account's SES is in the sandbox")  # fmt: skip
            command = f"aws ses verify-email-identity --email-address {address} --region {region}"
            problems.append(f"{address} ({', '.join(uses)}) is not a verified SES identity in account {account} "
                            f"({region}): {need}; verify it or its domain {_domain(address)} there, e.g. `{command}`")
    return problems
