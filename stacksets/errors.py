"""The one root of every mistake the user can fix: the CLI turns a UserError into its message and exit code 2.

Library modules raise a subclass that says where the problem is (ConfigError for config.yaml, PlanError for the
committed templates, AwsError for credentials and refused calls, ...); nothing else is caught by the CLI, so a bug
still shows its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem worded for the user, naming the key, file or resource and what to do about it."""
