"""Preflight checks that need AWS but change nothing: is SES ready to send the welcome e-mails?

The welcome e-mail Lambda (generator/instance/welcome.py) sends from the instance account and region, so its sender
must be a verified SES identity there (the address itself or its domain). While that account's SES is in the
sandbox, every recipient must be verified too; production access lifts that for recipients only. A deployment whose
identities are not verified fails late, when the custom resource runs, so this check says it first. It replaces the
seed's check_ses_email.sh, which checked only the first account and never the sender.

SES is asked through the read-only reader role in each instance account (rstudio-bootstrap grants
ses:GetIdentityVerificationAttributes for exactly this).

`deploy` runs `before_deploy` ahead of its first write and stops on what it finds unless told to go on: since an
undeliverable welcome mail no longer fails an instance, the finding is that users would get no mail, and stopping
first is cheaper than resending afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from stacksets import naming
from stacksets.aws import explain
from stacksets.config import Config
from stacksets.errors import UserError
from stacksets.results import Diff

# GetIdentityVerificationAttributes accepts at most 100 identities per call.
BATCH = 100


@dataclass(frozen=True)
class Preflight:
    problems: list[str]  # what would keep welcome e-mails from going out
    notes: list[str]  # what could not be checked before the first write, and why the deploy may go on


class PreflightFailed(UserError):
    """The preflight found problems and the operator did not pass --ignore-preflight: nothing was written."""

    def __init__(self, problems: list[str]) -> None:
        listed = "".join(f"\n  - {problem}" for problem in problems)
        super().__init__(f"preflight found {len(problems)} problem(s), so nothing was deployed:{listed}\nThe "
                         "instances would deploy without these welcome e-mails (a mail that cannot be sent is only "
                         "reported, and can be resent later): fix the problems and deploy again, or pass "
                         "--ignore-preflight to deploy now")  # fmt: skip


def _roles(cfg: Config, instances: Iterable[str] | None = None) -> dict[tuple[str, str, str], list[str]]:
    """(account, region, identity) -> what the identity is used as, in config terms (of `instances`, or all)."""
    roles: dict[tuple[str, str, str], list[str]] = {}
    for name, instance in sorted(cfg.instances.items()):
        if instances is not None and name not in instances:
            continue
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
    return [text for text, _ in _findings(clients, cfg)]


def before_deploy(clients: Any, cfg: Config, diffs: Iterable[Diff]) -> Preflight:
    """The preflight of a deploy with these diffs: SES for the instances whose StackSet it creates or changes (the
    only ones whose welcome mail can run). An account whose reader role cannot be used yet is only a note when the
    deploy creates or changes rstudio-bootstrap, which brings that role; otherwise it is a problem like any other."""
    changed = {diff.name for diff in diffs if diff.changed}
    instances = [name for name in cfg.instances if naming.instance_stackset(name) in changed]
    problems, notes = [], []
    for text, unreadable in _findings(clients, cfg, instances):
        if unreadable and naming.BOOTSTRAP in changed:
            notes.append(f"{text}; not checked before the first write: {naming.BOOTSTRAP}, which this deploy "
                         "creates or updates first, brings the reader role (run `python deploy.py preflight` after "
                         "it); the deploy report names any welcome e-mail that does not go out")  # fmt: skip
        else:
            problems.append(text)
    return Preflight(problems, notes)


def _findings(clients: Any, cfg: Config, instances: Iterable[str] | None = None) -> list[tuple[str, bool]]:
    """(problem, whether it is that SES could not be read at all), per identity or unreadable account."""
    roles = _roles(cfg, None if instances is None else set(instances))
    by_place: dict[tuple[str, str], list[str]] = {}
    for account, region, address in sorted(roles):
        by_place.setdefault((account, region), []).append(address)
    findings = []
    for (account, region), addresses in sorted(by_place.items()):
        try:
            verified = _verified(clients.reader(account, region, "ses"), addresses)
        except Exception as error:  # noqa: BLE001 - reported as a problem; the other accounts are still checked
            reason = str(explain(error))
            if "AccessDenied" in reason:
                reason += "; deploy the current rstudio-bootstrap template (its reader role reads SES verification)"
            findings.append((f"cannot check SES in account {account} ({region}): {reason}", True))
            continue
        for address in addresses:
            if address in verified:
                continue
            uses = roles[(account, region, address)]
            need = ("the sender must be verified" if any(use.endswith(".sender") for use in uses)
                    else "recipients must be verified while the account's SES is in the sandbox")  # fmt: skip
            command = f"aws ses verify-email-identity --email-address {address} --region {region}"
            findings.append((f"{address} ({', '.join(uses)}) is not a verified SES identity in account {account} "
                             f"({region}): {need}; verify it or its domain {_domain(address)} there, e.g. "
                             f"`{command}`", False))  # fmt: skip
    return findings
