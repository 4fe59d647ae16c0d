"""Every AWS call the executor makes: counted per API and per StackSet, transient errors retried, credentials
explained.

This is the only retry layer: botocore makes exactly one attempt (`Clients._config`), so every attempt is counted
here and every backoff sleeps on the injected clock. Requests are paced per client first (stacksets/pacing.py), so
a burst of calls waits its turn instead of being throttled. Retries are bounded by the backoff time spent on one
call, not by a count, so a long burst of throttling is ridden out as long as it ends within RETRY_BUDGET_S.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    TokenRetrievalError,
)

from stacksets.aws import CREDENTIAL_ERRORS, AwsError, explain

if TYPE_CHECKING:
    from stacksets.run import Run

THROTTLING = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
              "SlowDown"}  # fmt: skip
MUTATING = {"create_stack_set", "update_stack_set", "delete_stack_set", "create_stack_instances",
            "update_stack_instances", "delete_stack_instances", "detect_stack_set_drift", "create_bucket",
            "put_public_access_block", "put_bucket_encryption", "put_object", "start_build",
            "put_image"}  # fmt: skip
# HTTP 5xx answers AWS documents as retryable (botocore's own standard retry mode treats these codes as transient)
SERVER_ERRORS = {"InternalFailure", "ServiceUnavailable", "InternalError"}
TRANSIENT = THROTTLING | SERVER_ERRORS
CONNECTION_ERRORS = (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError)
RETRY_BASE_S = 1.0
RETRY_CAP_S = 20.0
RETRY_BUDGET_S = 600.0  # backoff one call may spend before its error is final


class CredentialsError(AwsError):
    """Credentials expired or missing: the whole run stops (every further call would fail the same way)."""


def error_code(error: Exception) -> str:
    return error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""


class RetriesExhausted(AwsError):
    """A call that kept failing with transient errors for the whole retry budget; `last` is the final error."""

    def __init__(self, message: str, last: Exception) -> None:
        super().__init__(message)
        self.last = last


def call(run: Run, client: Any, api: str, **kwargs: Any) -> Any:
    """One AWS call: transient errors retried with full-jitter exponential backoff, credential errors explained."""
    spent = 0.0
    pacer = run.pacer(client)
    for attempt in itertools.count():
        wait = pacer.reserve()
        if wait:
            run.sleep(wait)
        run.count(api, mutating=api in MUTATING)
        try:
            answer = getattr(client, api)(**kwargs)
            pacer.answered()
            return answer
        except (NoCredentialsError, TokenRetrievalError) as error:
            raise CredentialsError(str(explain(error))) from None
        except ClientError as error:
            code = error_code(error)
            if code in CREDENTIAL_ERRORS:
                raise CredentialsError(str(explain(error))) from None
            if code in THROTTLING:
                pacer.throttled()
            if code not in TRANSIENT:
                raise
            last: Exception = error
        except CONNECTION_ERRORS as error:
            last = error
        if spent >= RETRY_BUDGET_S:
            raise RetriesExhausted(_exhausted(api, last, attempt + 1, spent), last) from None
        # full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): uniform in [0, capped exponential]
        pause = min(RETRY_BUDGET_S - spent, run.random() * min(RETRY_CAP_S, RETRY_BASE_S * 2**attempt))
        run.sleep(pause)
        spent += pause
    raise AssertionError("unreachable")


def _exhausted(api: str, error: Exception, attempts: int, spent: float) -> str:
    code = error_code(error)
    why = "throttled" if code in THROTTLING else f"failed with {code}" if code else f"could not connect ({error})"
    return (f"{api} was {why} on all {attempts} attempts over {spent:.0f} s of backoff: AWS is overloaded or "
            "unreachable; re-run later (operations already started keep running and are picked up again)")


def pages(run: Run, client: Any, api: str, key: str, **kwargs: Any) -> list[Any]:
    """Every item of a paginated list call."""
    items: list[Any] = []
    while True:
        page = call(run, client, api, **kwargs)
        items += page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return items
        kwargs["NextToken"] = token
