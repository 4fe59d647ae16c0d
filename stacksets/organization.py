"""Accounts under an organizational unit, recursively, read once per run."""

from __future__ import annotations

from stacksets.calls import pages
from stacksets.run import Run


class Organization:
    def __init__(self, run: Run) -> None:
        self.run = run

    def accounts_under(self, ou: str) -> set[str]:
        """Every active account under `ou` and its child OUs (cached per run: many StackSets share the OUs)."""
        with self.run.lock:
            if ou in self.run.org_cache:
                return self.run.org_cache[ou]
        org = self.run.clients.client("organizations")
        accounts = {a["Id"] for a in pages(self.run, org, "list_accounts_for_parent", "Accounts", ParentId=ou)
                    if a.get("Status", "ACTIVE") == "ACTIVE"}  # fmt: skip
        for child in pages(self.run, org, "list_children", "Children", ParentId=ou, ChildType="ORGANIZATIONAL_UNIT"):
            accounts |= self.accounts_under(child["Id"])
        with self.run.lock:
            self.run.org_cache[ou] = accounts
        return accounts
