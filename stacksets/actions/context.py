"""Everything an action needs for one run, built once per public executor call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generator, TypeVar

from stacksets.builders import Builder
from stacksets.instances import InstanceViews
from stacksets.operations import Operations
from stacksets.organization import Organization
from stacksets.parameters import ParameterResolver
from stacksets.plan import Node
from stacksets.run import Run
from stacksets.stackset_api import StackSetApi
from stacksets.staging import TemplateStaging
from stacksets.state import StateFile
from stacksets.targets import Pair, desired_pairs
from stacksets.walk import Park

T = TypeVar("T")
Steps = Generator[Park, None, T]  # an action that yields whenever it only waits (see stacksets.walk)


@dataclass
class Context:
    run: Run
    state: StateFile
    builder: Builder
    organization: Organization
    views: InstanceViews
    parameters: ParameterResolver
    staging: TemplateStaging
    operations: Operations

    @classmethod
    def create(cls, run: Run, state: StateFile, builder: Builder) -> Context:
        views = InstanceViews(run)
        return cls(run, state, builder, Organization(run), views, ParameterResolver(run, views), TemplateStaging(run),
                   Operations(run, state, views))  # fmt: skip

    def api(self, node: Node) -> StackSetApi:
        return StackSetApi(self.run, node)

    def desired_pairs(self, node: Node) -> tuple[list[Pair], list[str]]:
        """The pairs a StackSet should have, and why each account of its OUs that StackSets skips is left out."""
        pairs, warnings = desired_pairs(node.targets, self.organization.accounts_under)
        for ou in node.targets.organizational_units:
            for account, why in sorted(self.organization.members(ou).skipped.items()):
                if not node.targets.accounts or account in node.targets.accounts:
                    warnings.append(f"account {account} in {ou} is {why}")
        return pairs, warnings
