"""The organization as StackSets expands it: accounts under an OU, recursively, read once per run, and the accounts
StackSets never deploys to.

- An account that is not ACTIVE (SUSPENDED, PENDING_CLOSURE, CLOSED, ...) gets no stack: its instance would end
  SKIPPED_SUSPENDED_ACCOUNT (botocore model StackInstanceComprehensiveStatus). Organizations reports this in
  `Account.State`; `Account.Status` "will be retired on September 9, 2026" (botocore organizations model), so State
  is read first.
- "CloudFormation doesn't deploy stack instances to the organization management account, even if the organization
  management account is in your organization or in an OU in your organization" (botocore model DeploymentTargets).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stacksets.calls import call, pages
from stacksets.run import Run


@dataclass
class Members:
    """Who is under an OU: the accounts StackSets deploys to, and the others with the reason it skips them."""

    deployable: set[str] = field(default_factory=set)
    skipped: dict[str, str] = field(default_factory=dict)  # account -> why

    def merge(self, other: Members) -> None:
        self.deployable |= other.deployable
        self.skipped.update(other.skipped)


class Organization:
    def __init__(self, run: Run) -> None:
        self.run = run

    def accounts_under(self, ou: str) -> set[str]:
        return self.members(ou).deployable

    def members(self, ou: str) -> Members:
        """Every account under `ou` and its child OUs (cached per run: many StackSets share the OUs)."""
        with self.run.lock:
            if ou in self.run.org_cache:
                return self.run.org_cache[ou]
        org = self.run.clients.client("organizations")
        management = self.management_account()
        found = Members()
        for account in pages(self.run, org, "list_accounts_for_parent", "Accounts", ParentId=ou):
            state = account.get("State") or account.get("Status", "ACTIVE")
            if account["Id"] == management:
                found.skipped[account["Id"]] = "the organization's management account: StackSets never deploys to it"
            elif state != "ACTIVE":
                found.skipped[account["Id"]] = f"{state}: StackSets skips it (SKIPPED_SUSPENDED_ACCOUNT)"
            else:
                found.deployable.add(account["Id"])
        for child in pages(self.run, org, "list_children", "Children", ParentId=ou, ChildType="ORGANIZATIONAL_UNIT"):
            found.merge(self.members(child["Id"]))
        with self.run.lock:
            self.run.org_cache[ou] = found
        return found

    def management_account(self) -> str:
        with self.run.lock:
            if self.run.management_account is not None:
                return self.run.management_account
        org = self.run.clients.client("organizations")
        master = call(self.run, org, "describe_organization")["Organization"].get("MasterAccountId", "")
        with self.run.lock:
            self.run.management_account = master
        return master
