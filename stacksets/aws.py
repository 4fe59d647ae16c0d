"""The only place boto3 clients are made: one attempt per call (the executor's calls.py is the only retry layer),
CallAs, the reader role in target accounts and the image publisher role in the central account.

Everything that talks to AWS receives a `Clients` and asks it for what it needs; tests, the benchmark and the sandbox
hand the very same clients to the AWS model through `on_client`, with static credentials of its admin account.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import boto3
from botocore.config import Config as BotoConfig
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import ClientError, NoCredentialsError, ProfileNotFound, TokenRetrievalError
from botocore.session import get_session

from stacksets.config import CallAs
from stacksets.errors import UserError
from stacksets.naming import DEPLOY_READER_ROLE, IMAGE_PUBLISHER_ROLE


class AwsError(UserError):
    """An AWS problem worded for the user (expired credentials, missing permissions, a refused call)."""


class ProfileNotConfigured(AwsError):
    """--profile (or AWS_PROFILE) names a profile that no AWS config or credentials file defines."""


def _unknown_profile(profile: str, from_environment: bool = False) -> ProfileNotConfigured:
    """Name the profiles that do exist and where botocore looked (AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE)."""
    session = get_session()
    files = [session.get_config_variable("config_file")]
    credentials_file = session.get_config_variable("credentials_file")
    if os.path.isfile(os.path.expanduser(credentials_file)):
        files.append(credentials_file)
    known = sorted(session.available_profiles)
    where = " and ".join(files)
    source = " (from AWS_PROFILE)" if from_environment else ""
    fix = f"run `aws configure sso --profile {profile}`"
    if not known:
        return ProfileNotConfigured(f"AWS profile '{profile}'{source} is not configured ({where} defines no "
                                    f"profiles); {fix}")  # fmt: skip
    return ProfileNotConfigured(f"AWS profile '{profile}'{source} is not configured (the profiles in {where} are: "
                                f"{', '.join(known)}); {fix} or pass one of those")  # fmt: skip


ASSUME_ATTEMPTS = 6
CREDENTIAL_ERRORS = {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException",
                     "RequestExpired"}  # fmt: skip


def explain(error: Exception) -> AwsError:
    """Turn credential problems into one clear message; other errors keep their code and text."""
    if isinstance(error, (NoCredentialsError, TokenRetrievalError)):
        return AwsError("no valid AWS credentials: log in to the admin account (e.g. `aws sso login --profile X`) "
                        "and pass --profile, or use --sandbox to rehearse locally")  # fmt: skip
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in CREDENTIAL_ERRORS:
            return AwsError(f"the AWS credentials are expired or invalid ({code}): log in again and re-run; an "
                            "operation already started keeps running and is picked up again")  # fmt: skip
        return AwsError(f"{error.operation_name} failed: {code}: {error.response.get('Error', {}).get('Message', '')}")
    return AwsError(str(error))


def call_as_value(call_as: CallAs | None) -> dict[str, str]:
    """The CallAs argument for StackSets calls, or nothing for self-managed StackSets."""
    return {"CallAs": "DELEGATED_ADMIN" if call_as is CallAs.delegated_admin else "SELF"} if call_as else {}


@dataclass
class Clients:
    """boto3 clients for the admin account, and read-only clients in target accounts through the reader role."""

    region: str
    profile: str | None = None
    endpoint_url: str | None = None
    # Static keys instead of the credential chain (the AWS model's admin account), and a hook every new client
    # passes through (the AWS model installs itself there, under the real botocore client).
    credentials: Mapping[str, str] | None = None
    on_client: Callable[[Any], None] | None = None
    sleep: Callable[[float], None] = time.sleep  # the AWS model's simulated clock in the sandbox and tests
    _session: Any = field(default=None, init=False, repr=False)
    _cache: dict[tuple[str, ...], Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _config(self) -> BotoConfig:
        # One retry layer: the executor's (stacksets/calls.py), which sleeps on the injected clock. botocore retrying
        # inside it as well multiplied the attempts (8 x 8) and hid its sleeps from simulated time.
        return BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"})

    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                try:
                    self._session = boto3.Session(profile_name=self.profile, region_name=self.region,
                                                  **(self.credentials or {}))
                except ProfileNotFound as error:
                    raise _unknown_profile(error.kwargs["profile"], from_environment=self.profile is None) from None
            return self._session

    def client(self, service: str, region: str | None = None) -> Any:
        """A client in the admin account (cached; boto3 clients are thread-safe)."""
        key = ("admin", service, region or self.region)
        with self._lock:
            cached = self._cache.get(key)
        if cached is None:
            cached = self.session().client(service, region_name=region or self.region,
                                           endpoint_url=self.endpoint_url, config=self._config())  # fmt: skip
            if self.on_client is not None:
                self.on_client(cached)
            with self._lock:
                self._cache[key] = cached
        return cached

    def reader(self, account: str, region: str, service: str = "cloudformation") -> Any:
        """A client in a target account through the read-only `rstudio-deploy-reader` role (bootstrap StackSet)."""
        return self._assumed(DEPLOY_READER_ROLE, account, region, service,
                             "is the rstudio-bootstrap StackSet deployed to that account?")  # fmt: skip

    def publisher(self, account: str, region: str, service: str) -> Any:
        """A client in the central account through `rstudio-image-publisher` (rstudio-central): upload build
        contexts, run and follow image builds, read and push images."""
        return self._assumed(IMAGE_PUBLISHER_ROLE, account, region, service,
                             "is the rstudio-central StackSet deployed?")  # fmt: skip

    def _assume_role(self, role_arn: str, hint: str) -> dict[str, Any]:
        """AssumeRole, retried while throttled: a rollout assumes the reader role in every target account within
        seconds, and botocore makes one attempt only (the executor's retry layer does not see this call, which
        botocore makes whenever the credentials need refreshing)."""
        for attempt in range(ASSUME_ATTEMPTS):
            try:
                return self.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="rstudio-fargate")
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code in ("Throttling", "ThrottlingException", "RequestLimitExceeded") and \
                        attempt < ASSUME_ATTEMPTS - 1:  # fmt: skip
                    self.sleep(min(8.0, 0.5 * 2**attempt))
                    continue
                raise AwsError(f"cannot assume {role_arn}: {explain(error)}; {hint}") from None
            except Exception as error:  # noqa: BLE001 - worded for the user below
                raise AwsError(f"cannot assume {role_arn}: {explain(error)}; {hint}") from None
        raise AssertionError("unreachable")

    def _assumed(self, role: str, account: str, region: str, service: str, hint: str) -> Any:
        key = (role, account, region, service)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        partition = "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"
        role_arn = f"arn:{partition}:iam::{account}:role/{role}"

        def assume() -> dict[str, str]:
            found = self._assume_role(role_arn, hint)
            credentials = found["Credentials"]
            return {"access_key": credentials["AccessKeyId"], "secret_key": credentials["SecretAccessKey"],
                    "token": credentials["SessionToken"],
                    "expiry_time": credentials["Expiration"].isoformat()}  # fmt: skip

        # Role sessions end after an hour, and an image build or a large rollout outlasts that: botocore assumes the
        # role again shortly before the credentials expire.
        botocore_session = get_session()
        # One loader for every assumed-role session: each would otherwise parse the service models again (about
        # 9 MiB and 130 ms per target account; 0.4 MiB shared).
        botocore_session.register_component("data_loader", self.session()._session.get_component("data_loader"))
        botocore_session._credentials = RefreshableCredentials.create_from_metadata(
            metadata=assume(), refresh_using=assume, method="sts-assume-role")
        client = boto3.Session(botocore_session=botocore_session).client(
            service, region_name=region, endpoint_url=self.endpoint_url, config=self._config())
        if self.on_client is not None:
            self.on_client(client)
        with self._lock:
            self._cache[key] = client
        return client
