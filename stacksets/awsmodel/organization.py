"""AWS Organizations as the orchestrator sees it: nested OUs, accounts with their State, the management account.

Rules (docs/aws_model.md):
- `Account.State` is ACTIVE, PENDING_ACTIVATION, SUSPENDED, PENDING_CLOSURE or CLOSED; `Account.Status` "will be
  retired on September 9, 2026" (botocore organizations model, Account.Status), so the model answers State only.
- ListAccountsForParent / ListChildren return at most 20 per page (botocore model MaxResults 1-20) with NextToken.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stacksets.awsmodel.adapter import ModelError

ACTIVE = "ACTIVE"
PAGE = 20


@dataclass
class Account:
    id: str
    parent: str  # OU or root id
    state: str = ACTIVE
    name: str = ""

    @property
    def active(self) -> bool:
        return self.state == ACTIVE


@dataclass
class OrganizationalUnit:
    id: str
    parent: str
    name: str = ""


@dataclass
class Organization:
    id: str
    root: str
    management_account: str
    accounts: dict[str, Account] = field(default_factory=dict)
    units: dict[str, OrganizationalUnit] = field(default_factory=dict)

    def parent_exists(self, parent: str) -> bool:
        return parent == self.root or parent in self.units

    def add_unit(self, unit: str, parent: str, name: str = "") -> None:
        self.units.setdefault(unit, OrganizationalUnit(unit, parent, name or unit))

    def place(self, account: str, parent: str, state: str | None = None) -> Account:
        found = self.accounts.setdefault(account, Account(account, parent, name=f"account-{account}"))
        found.parent = parent
        if state is not None:
            found.state = state
        return found

    def accounts_under(self, parent: str) -> list[Account]:
        """Every account in `parent` and its child OUs (StackSets expands OU targets this way: botocore model,
        DeploymentTargets.OrganizationalUnitIds, "accounts within these OUs and their child OUs")."""
        wanted = {parent}
        changed = True
        while changed:
            changed = False
            for unit in self.units.values():
                if unit.parent in wanted and unit.id not in wanted:
                    wanted.add(unit.id)
                    changed = True
        return sorted((a for a in self.accounts.values() if a.parent in wanted), key=lambda a: a.id)

    def top_unit_of(self, account: str, units: list[str]) -> str | None:
        """The targeted OU an account is under (what ListStackInstances reports as its OrganizationalUnitId)."""
        for unit in units:
            if any(a.id == account for a in self.accounts_under(unit)):
                return unit
        return None

    def require_parent(self, parent: str) -> None:
        if not self.parent_exists(parent):
            raise ModelError("ParentNotFoundException", f"parent {parent} not found")

    # --- API -------------------------------------------------------------------------------------------------------

    def describe_organization(self, _: dict) -> dict:
        return {"Organization": {"Id": self.id, "Arn": f"arn:aws:organizations::{self.management_account}:"
                                 f"organization/{self.id}", "FeatureSet": "ALL",
                                 "MasterAccountId": self.management_account,
                                 "MasterAccountArn": f"arn:aws:organizations::{self.management_account}:account/"
                                 f"{self.id}/{self.management_account}"}}  # fmt: skip

    def list_roots(self, _: dict) -> dict:
        return {"Roots": [{"Id": self.root, "Name": "Root",
                           "Arn": f"arn:aws:organizations::{self.management_account}:root/{self.id}/{self.root}"}]}

    def list_accounts_for_parent(self, params: dict) -> dict:
        self.require_parent(params["ParentId"])
        accounts = sorted((a for a in self.accounts.values() if a.parent == params["ParentId"]), key=lambda a: a.id)
        page, token = _page(accounts, params)
        return {"Accounts": [self._account(a) for a in page], **token}

    def list_children(self, params: dict) -> dict:
        self.require_parent(params["ParentId"])
        if params["ChildType"] == "ACCOUNT":
            ids = sorted(a.id for a in self.accounts.values() if a.parent == params["ParentId"])
        else:
            ids = sorted(u.id for u in self.units.values() if u.parent == params["ParentId"])
        page, token = _page(ids, params)
        return {"Children": [{"Id": child, "Type": params["ChildType"]} for child in page], **token}

    def _account(self, account: Account) -> dict:
        return {"Id": account.id, "Name": account.name, "Email": f"{account.id}@example.invalid",
                "Arn": f"arn:aws:organizations::{self.management_account}:account/{self.id}/{account.id}",
                "State": account.state, "JoinedMethod": "CREATED"}  # fmt: skip


def _page(items: list, params: dict) -> tuple[list, dict]:
    size = min(params.get("MaxResults", PAGE), PAGE)
    start = int(params.get("NextToken") or 0)
    page = items[start : start + size]
    return page, ({"NextToken": str(start + size)} if start + size < len(items) else {})
